// pybind11 module ntengine._C_cuda: the CUDA kernels, integers in, nothing out.
//
// Each op takes exactly the arguments of its CPU twin in bindings_kernels.cpp plus a
// trailing `stream` (torch.cuda.Stream.cuda_stream; 0 is the legacy default stream).
// Pointers arrive as integers (torch's data_ptr()) so no torch headers are needed, and
// ntengine/ops.py validates devices, dtypes, shapes and strides first. Kernels launch on the
// CUDA device current to the calling thread, so the caller makes the tensors' device
// current. The CUDA runtime is linked statically: importing needs no CUDA install, and
// device_count() reports 0 (instead of raising) where there is no driver or GPU.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "common/check.h"
#include "bindings_common.h"
#include "kernels/kernels.h"

#ifndef NTE_CUDA_ARCHS
#define NTE_CUDA_ARCHS "unknown"  // set by CMakeLists.txt from NTENGINE_CUDA_ARCHS
#endif

namespace py = pybind11;

namespace ntengine {
namespace {

using binding::ptr;
using binding::to_dtype;

// cudaGetDeviceCount with its error; the (non-sticky) error is cleared so that it does
// not surface later as the "last error" of an unrelated launch.
cudaError_t query_device_count(int* count) {
  *count = 0;
  const cudaError_t err = cudaGetDeviceCount(count);
  if (err != cudaSuccess) {
    *count = 0;
    cudaGetLastError();
  }
  return err;
}

std::string runtime_version() {
  return std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
}

}  // namespace
}  // namespace ntengine

PYBIND11_MODULE(_C_cuda, m) {
  using namespace ntengine;
  m.doc() = "ntengine CUDA kernels (see ntengine/ops.py); same arguments as _C plus a stream.";

  m.def(
      "qkv_rope",
      [](uintptr_t qkv, int64_t qkv_row_stride, uintptr_t q, uintptr_t k, uintptr_t v,
         uintptr_t positions, uintptr_t cos, uintptr_t sin, int64_t B, int64_t L, int64_t H,
         int64_t D, float q_scale, int dtype, uintptr_t stream) {
        const DType dt = to_dtype(dtype);
        py::gil_scoped_release release;
        qkv_rope_cuda(ptr(qkv), qkv_row_stride, ptr(q), ptr(k), ptr(v),
                      ptr<const int32_t>(positions), ptr<const float>(cos), ptr<const float>(sin),
                      B, L, H, D, q_scale, dt, ptr(stream));
      },
      "QKV epilogue on CUDA: [B, L, 3E] -> q, k, v [B, H, L, D] (scale + rotary); see kernels.h.");
  m.def(
      "swiglu",
      [](uintptr_t x, int64_t x_row_stride, uintptr_t out, int64_t N, int64_t F, int dtype,
         uintptr_t stream) {
        const DType dt = to_dtype(dtype);
        py::gil_scoped_release release;
        swiglu_cuda(ptr(x), x_row_stride, ptr(out), N, F, dt, ptr(stream));
      },
      "SwiGLU on CUDA: [N, 2F] -> [N, F] = silu(a) * b; see kernels.h.");
  m.def(
      "add_layernorm",
      [](uintptr_t x, int64_t x_row_stride, uintptr_t delta, int64_t delta_row_stride,
         uintptr_t weight, uintptr_t bias, uintptr_t sum, uintptr_t normed, int64_t N, int64_t E,
         float eps, int dtype, uintptr_t stream) {
        const DType dt = to_dtype(dtype);
        py::gil_scoped_release release;
        add_layernorm_cuda(ptr(x), x_row_stride, ptr(delta), delta_row_stride, ptr(weight),
                           ptr(bias), ptr(sum), ptr(normed), N, E, eps, dt, ptr(stream));
      },
      "Residual add + LayerNorm on CUDA: (x + delta, LN(x + delta)); see kernels.h.");

  m.def(
      "device_count",
      []() {
        int count = 0;
        py::gil_scoped_release release;  // the first call initialises the driver
        query_device_count(&count);
        return count;
      },
      "Number of visible CUDA devices; 0 (not an error) without a driver or GPU.");
  m.def(
      "device_status",
      []() -> std::string {
        int count = 0;
        cudaError_t err;
        {
          py::gil_scoped_release release;
          err = query_device_count(&count);
        }
        if (err != cudaSuccess) {
          return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
        }
        return std::to_string(count) + " CUDA device(s)";
      },
      "Why device_count() is what it is: the CUDA error, or 'N CUDA device(s)'.");
  m.attr("cuda_version") = runtime_version();  // CUDA runtime this module was built with
  m.attr("cuda_archs") = NTE_CUDA_ARCHS;       // CMAKE_CUDA_ARCHITECTURES, comma-separated
}

// pybind11 module ntengine._C_cuda: the CUDA kernels, integers in, nothing out.
//
// The ops are bound by bindings_ops.h, as in the CPU module: each takes exactly its CPU
// twin's arguments plus a trailing `stream` (torch.cuda.Stream.cuda_stream).
// Pointers arrive as integers (torch's data_ptr()) so no torch headers are needed, and
// ntengine/ops.py validates devices, dtypes, shapes and strides first. Kernels launch on the
// CUDA device current to the calling thread, so the caller makes the tensors' device
// current. The CUDA runtime is linked statically: importing needs no CUDA install, and
// device_count() reports 0 (instead of raising) where there is no driver or GPU.
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bindings_common.h"
#include "bindings_ops.h"
#include "kernels/kernels.h"

#ifndef NTE_CUDA_ARCHS
#define NTE_CUDA_ARCHS "unknown"  // set by CMakeLists.txt from NTENGINE_CUDA_ARCHS
#endif

namespace py = pybind11;

namespace ntengine {
namespace {

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

  binding::bind_fused_ops<uintptr_t>(m);  // the CPU ops' arguments plus a stream: see bindings_ops.h

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

// The fused ops both extension modules expose, written once: ntengine._C binds them with
// no extra argument (CPU kernels), ntengine._C_cuda with a trailing `stream`
// (torch.cuda.Stream.cuda_stream; 0 is the legacy default stream). A CUDA op therefore takes
// exactly its CPU twin's arguments plus the stream; both launchers run the same host-side
// checks (kernels/launch_checks.h).
// (Attention is CPU-only: on CUDA the model uses torch's SDPA; see bindings_kernels.cpp.)
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bindings_common.h"
#include "kernels/kernels.h"

namespace ntengine::binding {

/// Binds qkv_rope, swiglu and add_layernorm into m; Stream is empty (CPU) or uintptr_t (CUDA).
/// The CUDA launcher is named only in the branch a CUDA instantiation compiles, so the CPU
/// module links without the CUDA kernels.
template <class... Stream>
void bind_fused_ops(pybind11::module_& m) {
  namespace py = pybind11;
  constexpr bool kCuda = sizeof...(Stream) == 1;
  static_assert(sizeof...(Stream) <= 1, "at most one trailing stream argument");
  const char* on = kCuda ? " on CUDA" : "";
  m.def(
      "qkv_rope",
      [](uintptr_t qkv, int64_t qkv_row_stride, uintptr_t q, uintptr_t k, uintptr_t v,
         uintptr_t positions, uintptr_t cos, uintptr_t sin, int64_t B, int64_t L, int64_t H,
         int64_t D, float q_scale, int dtype, Stream... stream) {
        const DType dt = to_dtype(dtype);
        py::gil_scoped_release release;
        if constexpr (kCuda) {
          qkv_rope_cuda(ptr(qkv), qkv_row_stride, ptr(q), ptr(k), ptr(v), ptr<const int32_t>(positions),
                        ptr<const float>(cos), ptr<const float>(sin), B, L, H, D, q_scale, dt, ptr(stream)...);
        } else {
          qkv_rope_cpu(ptr(qkv), qkv_row_stride, ptr(q), ptr(k), ptr(v), ptr<const int32_t>(positions),
                       ptr<const float>(cos), ptr<const float>(sin), B, L, H, D, q_scale, dt);
        }
      },
      (std::string("QKV epilogue") + on + ": [B, L, 3E] -> q, k, v [B, H, L, D] (scale + rotary); see kernels.h.")
          .c_str());
  m.def(
      "swiglu",
      [](uintptr_t x, int64_t x_row_stride, uintptr_t out, int64_t N, int64_t F, int dtype, Stream... stream) {
        const DType dt = to_dtype(dtype);
        py::gil_scoped_release release;
        if constexpr (kCuda) {
          swiglu_cuda(ptr(x), x_row_stride, ptr(out), N, F, dt, ptr(stream)...);
        } else {
          swiglu_cpu(ptr(x), x_row_stride, ptr(out), N, F, dt);
        }
      },
      (std::string("SwiGLU") + on + ": [N, 2F] -> [N, F] = silu(a) * b; see kernels.h.").c_str());
  m.def(
      "add_layernorm",
      [](uintptr_t x, int64_t x_row_stride, uintptr_t delta, int64_t delta_row_stride, uintptr_t weight,
         uintptr_t bias, uintptr_t sum, uintptr_t normed, int64_t N, int64_t E, float eps, int dtype,
         Stream... stream) {
        const DType dt = to_dtype(dtype);
        py::gil_scoped_release release;
        if constexpr (kCuda) {
          add_layernorm_cuda(ptr(x), x_row_stride, ptr(delta), delta_row_stride, ptr(weight), ptr(bias),
                             ptr(sum), ptr(normed), N, E, eps, dt, ptr(stream)...);
        } else {
          add_layernorm_cpu(ptr(x), x_row_stride, ptr(delta), delta_row_stride, ptr(weight), ptr(bias),
                            ptr(sum), ptr(normed), N, E, eps, dt);
        }
      },
      (std::string("Residual add + LayerNorm") + on + ": (x + delta, LN(x + delta)); see kernels.h.").c_str());
}

}  // namespace ntengine::binding

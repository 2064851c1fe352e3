// pybind11 glue for the CPU kernels in ntengine._C: integers in, nothing out.
//
// Pointers arrive as integers (torch's data_ptr()) so this module needs no torch
// headers; ntengine/ops.py validates devices, dtypes, shapes and strides first.
#include <pybind11/pybind11.h>

#include <cstdint>

#include <pybind11/stl.h>

#include "bindings_common.h"
#include "kernels/cpu_isa.h"
#include "kernels/kernels.h"

namespace py = pybind11;

namespace ntengine {

using binding::ptr;
using binding::to_dtype;

void bind_cpu_kernels(py::module_& m) {
  m.def("cpu_isa", &cpu_isa, "The ISA level the CPU kernels run at (see kernels/cpu_isa.h).");
  m.def("cpu_isa_supported", &cpu_isa_supported, "Levels this CPU runs that this build has, narrowest first.");
  m.def("set_cpu_isa", &set_cpu_isa, py::arg("level"),
        "Run the CPU kernels at `level`; ValueError (unknown) or RuntimeError (not runnable here).");
  m.def("cpu_model", &cpu_model, "The CPU's brand string.");
  m.def("cpu_flags", &cpu_flags, "The instruction-set flags (with OS support) the kernels care about.");
  m.def(
      "qkv_rope",
      [](uintptr_t qkv, int64_t qkv_row_stride, uintptr_t q, uintptr_t k, uintptr_t v,
         uintptr_t positions, uintptr_t cos, uintptr_t sin, int64_t B, int64_t L, int64_t H,
         int64_t D, float q_scale, int dtype) {
        const DType dt = to_dtype(dtype);
        // Rotate-half pairs j with j + D/2; without tables any D works (AgroNT-1B: D = 75).
        NTE_CHECK(cos == 0 || D % 2 == 0, "qkv_rope: rotary embeddings need an even head size D, got ", D);
        py::gil_scoped_release release;
        qkv_rope_cpu(ptr(qkv), qkv_row_stride, ptr(q), ptr(k), ptr(v), ptr<const int32_t>(positions),
                     ptr<const float>(cos), ptr<const float>(sin), B, L, H, D, q_scale, dt);
      },
      "QKV epilogue: [B, L, 3E] -> q, k, v [B, H, L, D] (scale + rotary); see kernels.h.");
  m.def(
      "swiglu",
      [](uintptr_t x, int64_t x_row_stride, uintptr_t out, int64_t N, int64_t F, int dtype) {
        const DType dt = to_dtype(dtype);
        py::gil_scoped_release release;
        swiglu_cpu(ptr(x), x_row_stride, ptr(out), N, F, dt);
      },
      "SwiGLU: [N, 2F] -> [N, F] = silu(a) * b; see kernels.h.");
  m.def(
      "add_layernorm",
      [](uintptr_t x, int64_t x_row_stride, uintptr_t delta, int64_t delta_row_stride,
         uintptr_t weight, uintptr_t bias, uintptr_t sum, uintptr_t normed, int64_t N, int64_t E,
         float eps, int dtype) {
        const DType dt = to_dtype(dtype);
        py::gil_scoped_release release;
        add_layernorm_cpu(ptr(x), x_row_stride, ptr(delta), delta_row_stride, ptr(weight),
                          ptr(bias), ptr(sum), ptr(normed), N, E, eps, dt);
      },
      "Residual add + LayerNorm: (x + delta, LN(x + delta)); see kernels.h.");
  m.def(
      "attention",
      [](uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t out, uintptr_t lengths,
         uintptr_t cu_seqlens, int64_t n_seqs, int64_t B, int64_t H, int64_t L, int64_t D,
         int dtype) {
        const DType dt = to_dtype(dtype);
        py::gil_scoped_release release;
        attention_cpu(ptr(q), ptr(k), ptr(v), ptr(out), ptr<const int32_t>(lengths),
                      ptr<const int32_t>(cu_seqlens), n_seqs, B, H, L, D, dt);
      },
      "Flash-style attention with key padding or packed segments; see kernels.h.");
}

}  // namespace ntengine

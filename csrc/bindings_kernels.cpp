// pybind11 glue for the CPU kernels in ntengine._C: integers in, nothing out.
//
// Pointers arrive as integers (torch's data_ptr()) so this module needs no torch
// headers; ntengine/ops.py validates devices, dtypes, shapes and strides first.
#include <pybind11/pybind11.h>

#include <cstdint>

#include <pybind11/stl.h>

#include "bindings_common.h"
#include "bindings_ops.h"
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
  binding::bind_fused_ops<>(m);  // qkv_rope, swiglu, add_layernorm: see bindings_ops.h
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

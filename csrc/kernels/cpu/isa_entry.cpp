// This build's table of kernels (see kernels/cpu_isa.h). Compiled once per ISA level with
// -Dntengine=ntengine_cpu_<level> and NTE_CPU_ENTRY=nte_cpu_<level>.
#include "kernels/cpu_isa.h"
#include "kernels/kernels.h"

#ifndef NTE_CPU_ENTRY
#error "kernels/cpu/ is compiled once per ISA level: CMake defines NTE_CPU_ENTRY"
#endif

namespace {

using ntengine::DType;

const NteCpuKernelTable kTable = {
    [](const void* qkv, int64_t qkv_row_stride, void* q, void* k, void* v, const int32_t* positions,
       const float* cos, const float* sin, int64_t B, int64_t L, int64_t H, int64_t D, float q_scale,
       int dtype) {
      ntengine::qkv_rope_cpu(qkv, qkv_row_stride, q, k, v, positions, cos, sin, B, L, H, D, q_scale,
                             static_cast<DType>(dtype));
    },
    [](const void* x, int64_t x_row_stride, void* out, int64_t N, int64_t F, int dtype) {
      ntengine::swiglu_cpu(x, x_row_stride, out, N, F, static_cast<DType>(dtype));
    },
    [](const void* x, int64_t x_row_stride, const void* delta, int64_t delta_row_stride,
       const void* weight, const void* bias, void* sum, void* normed, int64_t N, int64_t E, float eps,
       int dtype) {
      ntengine::add_layernorm_cpu(x, x_row_stride, delta, delta_row_stride, weight, bias, sum, normed,
                                  N, E, eps, static_cast<DType>(dtype));
    },
    [](const void* q, const void* k, const void* v, void* out, const int32_t* lengths,
       const int32_t* cu_seqlens, int64_t n_seqs, int64_t B, int64_t H, int64_t L, int64_t D,
       int dtype) {
      ntengine::attention_cpu(q, k, v, out, lengths, cu_seqlens, n_seqs, B, H, L, D,
                              static_cast<DType>(dtype));
    },
};

}  // namespace

extern "C" const NteCpuKernelTable* NTE_CPU_ENTRY() { return &kTable; }

// Fused kernels of the NT forward pass: one framework-free declaration per op.
//
// Every kernel takes raw pointers, sizes, row strides (in elements) and a DType;
// CUDA variants also take the stream (cudaStream_t passed as void*). Storage dtype is
// fp32, fp16 (CUDA) or bf16; all arithmetic is fp32. Kernels never throw from worker
// threads; every launcher, CPU and CUDA, first runs the same argument checks
// (launch_checks.h), and ntengine/ops.py checks shapes before the call.
//
// Shapes: B batch, L tokens per row, H heads, D head size (any; even with rotary tables:
// v1 models may have odd D, e.g. AgroNT-1B's 75), E = H * D,
// N rows (tokens), F FFN width.
#pragma once

#include <cstdint>

#include "common/dtype.h"

namespace ntengine {

/// @brief QKV epilogue: split the merged QKV GEMM output into per-head q, k, v,
///        scale q and apply the rotary embedding (rotate-half) to q and k, in one pass.
///
/// For row b, token t, head h, feature j < D/2, with p = positions ? positions[b*L+t] : t,
///   c = cos[p*(D/2)+j], s = sin[p*(D/2)+j],  x1 = x[j], x2 = x[j + D/2]:
///   out[j] = x1*c - x2*s,  out[j + D/2] = x2*c + x1*s      (q additionally * q_scale)
/// Without tables (cos == nullptr: learned-position v1 models) q = x*q_scale, k = x.
/// D must be even with tables (the launchers and ops.py refuse odd D there); without
/// them any D works (AgroNT-1B: D = 75).
///
/// @param[in]  qkv        [B, L, 3E] rows of (q | k | v), row stride `qkv_row_stride`
///                        elements between consecutive tokens; heads are [H, D] within E.
/// @param[in]  qkv_row_stride  elements between token t and t+1 (>= 3E)
/// @param[out] q, k, v    [B, H, L, D] contiguous, same dtype as qkv
/// @param[in]  positions  [B, L] int32 rotary positions, or nullptr for p = t
/// @param[in]  cos, sin   [P, D/2] fp32 tables (P > every position), or both nullptr
/// @param[in]  q_scale    multiplies q (1/sqrt(D) folds the attention scale in)
void qkv_rope_cpu(const void* qkv, int64_t qkv_row_stride, void* q, void* k, void* v,
                  const int32_t* positions, const float* cos, const float* sin, int64_t B,
                  int64_t L, int64_t H, int64_t D, float q_scale, DType dtype);

/// @brief SwiGLU: out[n, f] = silu(x[n, f]) * x[n, F + f].
/// @param[in]  x      [N, 2F], row stride `x_row_stride` elements
/// @param[out] out    [N, F] contiguous
void swiglu_cpu(const void* x, int64_t x_row_stride, void* out, int64_t N, int64_t F, DType dtype);

/// @brief Residual add + LayerNorm: sum = x + delta (rounded to dtype), then
///        normed = (sum - mean) / sqrt(var + eps) * weight + bias over E, fp32 statistics
///        computed from the rounded sum (what an unfused model computes).
/// @param[in]  x, delta   [N, E], row strides given (elements)
/// @param[in]  weight, bias  [E], same dtype as x
/// @param[out] sum, normed   [N, E] contiguous
void add_layernorm_cpu(const void* x, int64_t x_row_stride, const void* delta,
                       int64_t delta_row_stride, const void* weight, const void* bias, void* sum,
                       void* normed, int64_t N, int64_t E, float eps, DType dtype);

/// @brief Attention with a key-padding mask: out = softmax(q k^T) v per head, flash-style
///        (tiled, online softmax, fp32 accumulation), no L x L matrix in memory.
///        q is expected pre-scaled (see qkv_rope_cpu's q_scale).
///
/// Two modes over the same layout:
///   padded: B rows; row b has lengths[b] real tokens (keys >= lengths[b] get no weight;
///           query rows >= lengths[b] are written as 0); lengths == nullptr means all L.
///   packed: B == 1 and cu_seqlens [n_seqs + 1] (0 = cu[0] < ... < cu[n] <= L): tokens
///           attend only within their own segment [cu[s], cu[s+1]); tokens >= cu[n] are 0.
///
/// @param[in]  q, k, v   [B, H, L, D] contiguous (fp32 or bf16)
/// @param[out] out       [B, L, H, D] contiguous (= [B, L, E], what out_proj reads)
/// @param[in]  lengths   [B] int32 or nullptr
/// @param[in]  cu_seqlens  [n_seqs + 1] int32 or nullptr (packed mode)
void attention_cpu(const void* q, const void* k, const void* v, void* out, const int32_t* lengths,
                   const int32_t* cu_seqlens, int64_t n_seqs, int64_t B, int64_t H, int64_t L,
                   int64_t D, DType dtype);

// CUDA twins (built into ntengine._C_cuda when nvcc is found). Same contracts as the CPU
// versions above; `stream` is a cudaStream_t. Attention on CUDA uses torch's SDPA.
// All pointers are device pointers on the thread's current CUDA device (the caller makes
// the tensors' device current). The launch is asynchronous on `stream`; the host launcher
// throws CheckError for negative sizes, a row stride shorter than the row, an odd D with
// rotary tables, only one of cos/sin, an unknown dtype, or a failed launch, and returns
// without launching when there is no work. 16-byte vector loads are used when every base
// pointer is 16-byte aligned and the row strides and widths (D/2 with rotary tables, D
// without, F, E) are multiples of 16 bytes' worth of elements; otherwise a scalar path gives
// the same results.
void qkv_rope_cuda(const void* qkv, int64_t qkv_row_stride, void* q, void* k, void* v,
                   const int32_t* positions, const float* cos, const float* sin, int64_t B,
                   int64_t L, int64_t H, int64_t D, float q_scale, DType dtype, void* stream);
void swiglu_cuda(const void* x, int64_t x_row_stride, void* out, int64_t N, int64_t F, DType dtype,
                 void* stream);
void add_layernorm_cuda(const void* x, int64_t x_row_stride, const void* delta,
                        int64_t delta_row_stride, const void* weight, const void* bias, void* sum,
                        void* normed, int64_t N, int64_t E, float eps, DType dtype, void* stream);

}  // namespace ntengine

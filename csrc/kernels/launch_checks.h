// Host-side argument checks every launcher runs before touching memory, CPU and CUDA alike
// (one copy, so the two cannot drift): a bad size or stride is an out-of-bounds access,
// on the GPU one that poisons the CUDA context for the whole process. `op` names the
// launcher in the message. Calling-thread only (they throw ntengine::CheckError).
#pragma once

#include <cstdint>

#include "common/check.h"

namespace ntengine {

inline void check_qkv_rope_args(const char* op, int64_t qkv_row_stride, const void* cos, const void* sin,
                                int64_t B, int64_t L, int64_t H, int64_t D) {
  NTE_CHECK(B >= 0 && L >= 0 && H >= 0 && D >= 0, op, ": negative size B=", B, " L=", L, " H=", H, " D=", D);
  // Items per token are counted in int inside the kernels.
  NTE_CHECK(3 * H * D < (int64_t{1} << 31), op, ": 3*H*D = ", 3 * H * D, " too large");
  NTE_CHECK(B * L <= 1 || qkv_row_stride >= 3 * H * D, op, ": qkv_row_stride ", qkv_row_stride, " < 3E = ",
            3 * H * D);
  NTE_CHECK((cos == nullptr) == (sin == nullptr), op, ": cos and sin must both be given or both be null");
  // Rotate-half pairs j with j + D/2: rotary needs an even D. Without tables any D works
  // (v1 models; AgroNT-1B's D = 75 is odd).
  NTE_CHECK(cos == nullptr || D % 2 == 0, op, ": rotary embeddings need an even head size D, got ", D);
}

inline void check_swiglu_args(const char* op, int64_t x_row_stride, int64_t N, int64_t F) {
  NTE_CHECK(N >= 0 && F >= 0, op, ": negative size N=", N, " F=", F);
  NTE_CHECK(N <= 1 || x_row_stride >= 2 * F, op, ": x_row_stride ", x_row_stride, " < 2F = ", 2 * F);
}

inline void check_add_layernorm_args(const char* op, int64_t x_row_stride, int64_t delta_row_stride, int64_t N,
                                     int64_t E) {
  NTE_CHECK(N >= 0 && E >= 0, op, ": negative size N=", N, " E=", E);
  NTE_CHECK(N <= 1 || (x_row_stride >= E && delta_row_stride >= E), op, ": row strides (", x_row_stride, ", ",
            delta_row_stride, ") must be >= E = ", E);
}

}  // namespace ntengine

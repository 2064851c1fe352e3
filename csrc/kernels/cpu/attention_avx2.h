// AVX2 + FMA tiles of attention_cpu (included by attention.cpp when NTE_AVX2 and not
// NTE_AVX512): packing, register-blocked Q K^T and P V micro-kernels, online softmax.
// The task split and the loop order are those of the AVX-512 worker (top of attention.cpp),
// resized for 16 ymm registers and 8 fp32 lanes:
//   for each block of kRowsPerBlock = 60 queries, for each key tile of <= kTileK = 512 keys,
//   for each strip of kRows = 6 queries:
//     S = Q K^T        6 rows x 16 keys per step: 12 accumulators + 2 K loads + 1 broadcast
//     online softmax   exp2 polynomial, running max and sum per row, P written over S
//     O = alpha O + P V  6 rows x 16 columns (or 8 for the last block of D % 16 == 8)
// All math and all packed buffers are fp32 (bf16 storage is widened once while packing:
// AVX2 has no bf16 dot product), so bf16 and fp32 share one micro-kernel.
// Packed layouts (floats; D any, d8 = D rounded up to 8):
//   q  [kRowsPerBlock][D]     rows of the query block, rows past the block's end zero
//   k  [keys / 16][D][16]     16 keys per step, two ymm; keys past len zero
//   v  [keys][d8]             one output column per lane, columns past D zero
//   s  [kRows][kTileK]        scores of one strip, then (in place) softmax weights
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/cpu_vec.h"

namespace ntengine {
namespace {
namespace avx2 {

constexpr int kRows = 6;                     // query rows per register strip
constexpr int64_t kRowsPerBlock = 10 * kRows;  // queries whose O rows are kept together
constexpr int64_t kTileK = 512;              // keys per tile (a multiple of 16)

/// 2^t for t <= ~0 (scores minus the running max, log2 units): t = n + f, |f| <= 1/2,
/// 2^f by a minimax polynomial times 2^n. t is clamped at -127 so n >= -127. n comes
/// from the 1.5 * 2^23 rounding trick with the exponent bias folded into the constant:
/// the low bits of t + kMagic are n + 127 (>= 0), which shifted into the exponent field
/// give 2^n, and exactly 0 for n = -127 (weights below 2^-126 of the row max are dropped:
/// they cannot change an fp32 sum that holds a 1). Relative error: degree 5 2.3e-7 (fp32
/// storage), degree 3 7.5e-5 (bf16 outputs: 2e-3 per ulp).
template <int kDegree>
inline __m256 exp2_8(__m256 t) {
  const __m256 magic = _mm256_set1_ps(12582912.0f + 127.0f);  // 1.5 * 2^23 + bias
  t = _mm256_max_ps(t, _mm256_set1_ps(-127.f));  // NaN (t second) stays NaN
  const __m256 nb = _mm256_add_ps(t, magic);     // round to nearest: low bits n + 127
  const __m256 f = _mm256_sub_ps(t, _mm256_sub_ps(nb, magic));
  __m256 p;
  if constexpr (kDegree == 5) {
    p = _mm256_fmadd_ps(_mm256_set1_ps(1.327647129073739e-3f), f, _mm256_set1_ps(9.675540961325169e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550713092088699e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022120237350464e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931469440460205e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0000001192092896f));
  } else {
    static_assert(kDegree == 3, "degree 3 or 5");
    p = _mm256_fmadd_ps(_mm256_set1_ps(5.51716648042202e-2f), f, _mm256_set1_ps(2.426111251115799e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.932609677314758e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.999280571937561e-1f));
  }
  return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(nb), 23)));
}

/// S[kRows, 16 * n_blk] = Q K^T: q [kRows][D] floats, k n_blk packed 16-key blocks
/// ([blk][D][16]), s rows of stride lds.
inline void qk_tile(const float* q, const float* k, int64_t D, int64_t n_blk, float* s, int64_t lds) {
  for (int64_t g = 0; g < n_blk; ++g) {
    const float* kb = k + g * D * 16;
    __m256 acc[kRows][2];
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t d = 0; d < D; ++d) {
      const __m256 k0 = _mm256_load_ps(kb + d * 16), k1 = _mm256_load_ps(kb + d * 16 + 8);
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) {
        const __m256 b = _mm256_broadcast_ss(q + r * D + d);
        acc[r][0] = _mm256_fmadd_ps(k0, b, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(k1, b, acc[r][1]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      _mm256_store_ps(s + r * lds + g * 16, acc[r][0]);
      _mm256_store_ps(s + r * lds + g * 16 + 8, acc[r][1]);
    }
  }
}

/// O[kRows, 8 * NC] = alpha * O + P V over `steps` keys: p [kRows][ldp] weights,
/// v [steps][ldv] (this column block), o [kRows][ldo].
template <int NC>
inline void pv_tile(const float* p, int64_t ldp, const float* v, int64_t ldv, int64_t steps,
                    float* o, int64_t ldo, const float* alpha) {
  __m256 acc[kRows][NC];
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r) {
    const __m256 a = _mm256_set1_ps(alpha[r]);
#pragma GCC unroll 2
    for (int c = 0; c < NC; ++c) acc[r][c] = _mm256_mul_ps(_mm256_load_ps(o + r * ldo + 8 * c), a);
  }
  for (int64_t j = 0; j < steps; ++j) {
    __m256 vv[NC];
#pragma GCC unroll 2
    for (int c = 0; c < NC; ++c) vv[c] = _mm256_load_ps(v + j * ldv + 8 * c);
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      const __m256 b = _mm256_broadcast_ss(p + r * ldp + j);
#pragma GCC unroll 2
      for (int c = 0; c < NC; ++c) acc[r][c] = _mm256_fmadd_ps(vv[c], b, acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 2
    for (int c = 0; c < NC; ++c) _mm256_store_ps(o + r * ldo + 8 * c, acc[r][c]);
}

/// One thread's worker: owns the packed K / V of one (segment, head) and the per-block
/// buffers. T is the storage type (float or bf16_t).
template <typename T>
class Worker {
  static constexpr bool kBf = std::is_same_v<T, bf16_t>;
  static constexpr int kExpDegree = kBf ? 3 : 5;  // bf16 outputs do not need 2e-7 weights

 public:
  /// max_len: the longest segment this worker will see; D: head size.
  Worker(int64_t max_len, int64_t D) : D_(D), d8_((D + 7) / 8 * 8), kpad_((max_len + 15) / 16 * 16) {
    const int64_t floats = kpad_ * D_ + kpad_ * d8_ + kRowsPerBlock * D_ + kRowsPerBlock * d8_ +
                           kRows * kTileK + 3 * kRowsPerBlock;
    float* base = static_cast<float*>(scratch_.get(4 * (floats + 64)));
    // Every region starts on a 32-byte boundary (aligned ymm loads / stores).
    auto take = [&base](int64_t n) {
      float* p = base;
      base += (n + 7) / 8 * 8;
      return p;
    };
    k_ = take(kpad_ * D_);
    v_ = take(kpad_ * d8_);
    q_ = take(kRowsPerBlock * D_);
    o_ = take(kRowsPerBlock * d8_);
    s_ = take(kRows * kTileK);
    m_ = take(kRowsPerBlock);
    l_ = take(kRowsPerBlock);
    alpha_ = take(kRowsPerBlock);
  }

  /// Attend queries [q_begin, q_end) of one (segment, head): q, k, v point at token 0 of
  /// the segment ([len, D] rows), out at its output row ([len] rows of stride out_stride).
  /// `key` names the (segment, head): K and V are re-packed only when it changes.
  void run(const T* q, const T* k, const T* v, T* out, int64_t out_stride, int64_t len,
           int64_t q_begin, int64_t q_end, int64_t key) {
    if (key != packed_key_) {
      pack_kv(k, v, len);
      packed_key_ = key;
    }
    for (int64_t q0 = q_begin; q0 < q_end; q0 += kRowsPerBlock)
      block(q, out, out_stride, len, q0, std::min(kRowsPerBlock, q_end - q0));
  }

 private:
  /// Queries [q0, q0 + mq), mq <= kRowsPerBlock, against all len keys.
  void block(const T* q, T* out, int64_t out_stride, int64_t len, int64_t q0, int64_t mq) {
    const int64_t n_strips = (mq + kRows - 1) / kRows;
    const int64_t rows = n_strips * kRows;
    for (int64_t r = 0; r < rows; ++r) {  // Q rows as fp32, rows past mq zero
      float* dst = q_ + r * D_;
      if (r < mq) {
        const T* src = q + (q0 + r) * D_;
        for (int64_t d = 0; d < D_; ++d) dst[d] = cpu::to_f32(src[d]);
      } else {
        std::fill(dst, dst + D_, 0.f);
      }
    }
    std::fill(o_, o_ + rows * d8_, 0.f);
    std::fill(m_, m_ + rows, -INFINITY);
    std::fill(l_, l_ + rows, 0.f);
    for (int64_t j0 = 0; j0 < len; j0 += kTileK) {
      const int64_t nk = std::min(kTileK, len - j0);
      const int64_t n_blk = (nk + 15) / 16;
      const float* kt = k_ + j0 * D_;  // block j0 / 16 of [blk][D][16]
      const float* vt = v_ + j0 * d8_;
      for (int64_t st = 0; st < n_strips; ++st) {
        const int64_t r0 = st * kRows;
        qk_tile(q_ + r0 * D_, kt, D_, n_blk, s_, kTileK);
        softmax_strip(nk, m_ + r0, l_ + r0, alpha_ + r0);
        pv(nk, o_ + r0 * d8_, alpha_ + r0, vt);
      }
    }
    store_rows(out, out_stride, q0, mq);
  }

  /// K as [blk][D][16] and V as [len][d8] fp32, zero-padded (keys to a multiple of 16,
  /// V columns to d8): padded keys give finite scores (masked out by the softmax) and
  /// padded columns 0.
  void pack_kv(const T* k, const T* v, int64_t len) {
    const int64_t kpad = (len + 15) / 16 * 16;
    for (int64_t key0 = 0; key0 < kpad; key0 += 16) {
      float* dst = k_ + key0 * D_;
      const int64_t live = std::min<int64_t>(16, len - key0);
      for (int64_t i = 0; i < 16; ++i) {
        if (i < live) {
          const T* row = k + (key0 + i) * D_;
          for (int64_t d = 0; d < D_; ++d) dst[d * 16 + i] = cpu::to_f32(row[d]);
        } else {
          for (int64_t d = 0; d < D_; ++d) dst[d * 16 + i] = 0.f;
        }
      }
    }
    for (int64_t j = 0; j < len; ++j) {
      float* dst = v_ + j * d8_;
      const T* row = v + j * D_;
      for (int64_t d = 0; d < D_; ++d) dst[d] = cpu::to_f32(row[d]);
      for (int64_t d = D_; d < d8_; ++d) dst[d] = 0.f;
    }
  }

  /// Online softmax of one strip over its nk scores per row (in s_, 16 * ceil(nk / 16)
  /// computed): row maxima, m / l / alpha updated (m in log2 units), weights written over
  /// the scores (padded keys get weight 0).
  void softmax_strip(int64_t nk, float* m, float* l, float* alpha) {
    const int64_t n16 = (nk + 15) / 16 * 16;
    const __m256 log2e = _mm256_set1_ps(1.4426950408889634f);
    for (int r = 0; r < kRows; ++r) {
      float* sr = s_ + r * kTileK;
      for (int64_t c = nk; c < n16; ++c) sr[c] = -INFINITY;  // exp2 of -inf: 0
      __m256 mx0 = _mm256_load_ps(sr), mx1 = _mm256_load_ps(sr + 8);
      for (int64_t c = 16; c < n16; c += 16) {
        mx0 = _mm256_max_ps(mx0, _mm256_load_ps(sr + c));
        mx1 = _mm256_max_ps(mx1, _mm256_load_ps(sr + c + 8));
      }
      const float m_old = m[r];
      const float m_new = std::max(m_old, cpu::hmax8(_mm256_max_ps(mx0, mx1)) * 1.4426950408889634f);
      // m_old is -inf on the first tile (O and l are still 0): the clamp keeps alpha finite;
      // alpha is exactly 1 where the max did not move.
      const float a = m_new == m_old ? 1.f : std::exp2(std::max(m_old - m_new, -126.f));
      m[r] = m_new;
      alpha[r] = a;
      const __m256 neg = _mm256_set1_ps(-m_new);
      __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
      for (int64_t c = 0; c < n16; c += 16) {
        const __m256 p0 = exp2_8<kExpDegree>(_mm256_fmadd_ps(_mm256_load_ps(sr + c), log2e, neg));
        const __m256 p1 = exp2_8<kExpDegree>(_mm256_fmadd_ps(_mm256_load_ps(sr + c + 8), log2e, neg));
        _mm256_store_ps(sr + c, p0);
        _mm256_store_ps(sr + c + 8, p1);
        sum0 = _mm256_add_ps(sum0, p0);
        sum1 = _mm256_add_ps(sum1, p1);
      }
      l[r] = l[r] * a + cpu::hsum8(_mm256_add_ps(sum0, sum1));
    }
  }

  /// O strip = alpha * O + P V over all columns, in register blocks of 16 columns (the
  /// last one 8 when d8 % 16 == 8).
  void pv(int64_t nk, float* o, const float* alpha, const float* vt) {
    int64_t c = 0;
    for (; c + 16 <= d8_; c += 16) pv_tile<2>(s_, kTileK, vt + c, d8_, nk, o + c, d8_, alpha);
    if (c < d8_) pv_tile<1>(s_, kTileK, vt + c, d8_, nk, o + c, d8_, alpha);
  }

  /// out row = O row / l for the mq real queries of the block (bf16: round to nearest even).
  void store_rows(T* out, int64_t out_stride, int64_t q0, int64_t mq) {
    for (int64_t r = 0; r < mq; ++r) {
      const __m256 inv = _mm256_set1_ps(1.f / l_[r]);
      T* dst = out + (q0 + r) * out_stride;
      const float* src = o_ + r * d8_;
      cpu::for_chunks8(D_, [&](int64_t c, int64_t live) {
        cpu::store8(dst + c, _mm256_mul_ps(_mm256_load_ps(src + c), inv), live);
      });
    }
  }

  int64_t D_, d8_, kpad_;
  Scratch scratch_;
  float *k_, *v_, *q_, *o_, *s_, *m_, *l_, *alpha_;
  int64_t packed_key_ = -1;
};

}  // namespace avx2
}  // namespace
}  // namespace ntengine

// AVX-512 tiles of attention_cpu (included by attention.cpp only when NTE_AVX512):
// packing, register-blocked Q K^T and P V micro-kernels, and the online softmax.
// Layouts and the loop order are described at the top of attention.cpp.
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
namespace avx512 {

#if defined(__AVX512BF16__)
constexpr bool kHaveBf16Dot = true;
#else
constexpr bool kHaveBf16Dot = false;
#endif

/// acc += a * b per lane: vdpbf16ps on bf16 pairs (kBf) or fp32 FMA on one float per word.
template <bool kBf>
inline __m512 madd(__m512 acc, __m512i a, __m512i b) {
#if defined(__AVX512BF16__)
  if constexpr (kBf) return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
#endif
  return _mm512_fmadd_ps(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b), acc);
}

/// 2^t: t = n + f with |f| <= 1/2, 2^f by a minimax polynomial, scaled by 2^n (vscalefps
/// gives 0 for n below the fp32 range). Relative error: degree 5 2.3e-7 (fp32 weights),
/// degree 3 7.5e-5 (weights rounded to bf16 anyway: half an ulp there is 2e-3).
/// t must not be -inf (n - n would be nan): masked lanes are zeroed by the caller.
template <int kDegree>
inline __m512 exp2_ps(__m512 t) {
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p;
  if constexpr (kDegree == 5) {
    p = _mm512_fmadd_ps(_mm512_set1_ps(1.327647129073739e-3f), f, _mm512_set1_ps(9.675540961325169e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550713092088699e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022120237350464e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931469440460205e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0000001192092896f));
  } else {
    static_assert(kDegree == 3, "degree 3 or 5");
    p = _mm512_fmadd_ps(_mm512_set1_ps(5.51716648042202e-2f), f, _mm512_set1_ps(2.426111251115799e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.932609677314758e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.999280571937561e-1f));
  }
  return _mm512_scalef_ps(p, n);
}

/// Lanes [0, n) set, for n in [0, 16] (a partial block of keys).
inline __mmask16 first_lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

/// Lane r (r < 8) = max over the 16 lanes of x[r]: a transposing reduction (25 ops for
/// 8 rows instead of 8 separate horizontal reductions).
inline __m512 row_max8(const __m512* x) {
  __m512 y[4];  // y[i]: lanes 0-7 partial maxima of row 2i, lanes 8-15 of row 2i + 1
  for (int i = 0; i < 4; ++i)
    y[i] = _mm512_max_ps(_mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], 0xEE));
  // z: 128-bit chunk c = 4 partial maxima of row c (z0) / row c + 4 (z1)
  const __m512 z0 = _mm512_max_ps(_mm512_shuffle_f32x4(y[0], y[1], 0x88), _mm512_shuffle_f32x4(y[0], y[1], 0xDD));
  const __m512 z1 = _mm512_max_ps(_mm512_shuffle_f32x4(y[2], y[3], 0x88), _mm512_shuffle_f32x4(y[2], y[3], 0xDD));
  // chunk c: [row c, row c, row c + 4, row c + 4] partials, then [row c, row c + 4, ...]
  const __m512 w = _mm512_max_ps(_mm512_shuffle_ps(z0, z1, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(z0, z1, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 v = _mm512_max_ps(_mm512_shuffle_ps(w, w, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(w, w, _MM_SHUFFLE(3, 1, 3, 1)));
  // row r < 4 sits in lane 4r, row r >= 4 in lane 4(r - 4) + 1
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0), v);
}

/// S[MR, 16 * n_blk] = Q K^T for MR query rows (q: [MR][np] words) and n_blk 16-key blocks
/// of packed K ([blk][np][16] words); n_blk is a multiple of NR. Also folds the first nk
/// columns of each row into the lane-wise running maxima mx[MR].
template <bool kBf, int MR, int NR>
inline void qk_tile(const uint32_t* q, const uint32_t* k, int64_t np, int n_blk, int64_t nk,
                    float* s, int64_t lds, __m512* mx) {
  for (int g = 0; g < n_blk; g += NR) {
    __m512 acc[MR][NR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int n = 0; n < NR; ++n) acc[r][n] = _mm512_setzero_ps();
    for (int64_t p = 0; p < np; ++p) {
      __m512i kv[NR];
#pragma GCC unroll 4
      for (int n = 0; n < NR; ++n) kv[n] = _mm512_load_si512(k + ((g + n) * np + p) * 16);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const __m512i b = _mm512_set1_epi32(static_cast<int>(q[r * np + p]));
#pragma GCC unroll 4
        for (int n = 0; n < NR; ++n) acc[r][n] = madd<kBf>(acc[r][n], kv[n], b);
      }
    }
#pragma GCC unroll 4
    for (int n = 0; n < NR; ++n) {
      const __mmask16 live = first_lanes(nk - (g + n) * 16);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        _mm512_store_ps(s + r * lds + (g + n) * 16, acc[r][n]);
        mx[r] = _mm512_mask_max_ps(mx[r], live, mx[r], acc[r][n]);
      }
    }
  }
}

/// O[MR, 16 * NC] = alpha * O + P V over `steps` words of keys: p [MR][ldp] words,
/// v [steps][ldv] words (this column block), o [MR][ldo] floats.
template <bool kBf, int MR, int NC>
inline void pv_tile(const uint32_t* p, int64_t ldp, const uint32_t* v, int64_t ldv, int64_t steps,
                    float* o, int64_t ldo, const float* alpha) {
  __m512 acc[MR][NC];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    const __m512 a = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) acc[r][c] = _mm512_mul_ps(_mm512_load_ps(o + r * ldo + 16 * c), a);
  }
  for (int64_t j = 0; j < steps; ++j) {
    __m512i vv[NC];
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) vv[c] = _mm512_load_si512(v + j * ldv + 16 * c);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512i b = _mm512_set1_epi32(static_cast<int>(p[r * ldp + j]));
#pragma GCC unroll 4
      for (int c = 0; c < NC; ++c) acc[r][c] = madd<kBf>(acc[r][c], vv[c], b);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NC; ++c) _mm512_store_ps(o + r * ldo + 16 * c, acc[r][c]);
}

/// 16 elements [i0, i0 + 16) of a row of n (lanes past n are 0) as zero-extended 32-bit
/// lanes: raw bf16 bits, or fp32 bits.
inline __m512i lanes16(const bf16_t* row, int64_t i0, int64_t n) {
  return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(first_lanes(n - i0), row + i0));
}
inline __m512i lanes16(const float* row, int64_t i0, int64_t n) {
  return _mm512_castps_si512(_mm512_maskz_loadu_ps(first_lanes(n - i0), row + i0));
}

/// In-register transpose of a 16 x 16 tile of 32-bit words: r[i][j] -> r[j][i].
inline void transpose16(__m512i* r) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // u[4i + j], 128-bit chunk c: column 4c + j of rows 4i .. 4i + 3.
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512i a_lo = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x88);
    const __m512i a_hi = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xDD);
    const __m512i b_lo = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x88);
    const __m512i b_hi = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xDD);
    t[j] = _mm512_shuffle_i32x4(a_lo, b_lo, 0x88);
    t[8 + j] = _mm512_shuffle_i32x4(a_lo, b_lo, 0xDD);
    t[4 + j] = _mm512_shuffle_i32x4(a_hi, b_hi, 0x88);
    t[12 + j] = _mm512_shuffle_i32x4(a_hi, b_hi, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

/// Keys per tile. Measured on the 2-core Zen (bench/attention.py, D = 32 / 64 / 128): 512
/// beats 128 by 5-15%: fewer per-tile row-max reductions and O rescales. The K / V tile
/// (<= 512 x 128 x 2 x 4 B) then streams from L2; each of its loads feeds 8 query rows.
constexpr int64_t kTileK = 512;

/// One thread's worker: owns the packed K / V of one (segment, head) and the per-strip
/// buffers. T is the storage type; bf16 storage uses vdpbf16ps when the CPU has it.
template <typename T>
class Worker {
  static constexpr bool kBf = std::is_same_v<T, bf16_t> && kHaveBf16Dot;
  static constexpr int kPair = kBf ? 2 : 1;  // elements per 32-bit word
  static constexpr int kExpDegree = kBf ? 3 : 5;  // weights are rounded to bf16 on the bf16 path

 public:
  /// max_len: the longest segment this worker will see; D: head size.
  Worker(int64_t max_len, int64_t D)
      : D_(D), np_((D + kPair - 1) / kPair), d16_((D + 15) / 16 * 16),
        lpad_((max_len + 31) / 32 * 32) {
    const int64_t words = lpad_ * np_ + lpad_ / kPair * d16_ + kBlockQ * np_;
    words_ = static_cast<uint32_t*>(scratch_.get(4 * words));
    k_ = words_;
    v_ = k_ + lpad_ * np_;
    q_ = v_ + lpad_ / kPair * d16_;
    floats_ = static_cast<float*>(
        fscratch_.get(4 * (kBlockQ * d16_ + kStrip * kTileK * 2 + 4 * kBlockQ + kBlockQ * 16)));
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
    for (int64_t q0 = q_begin; q0 < q_end; q0 += kBlockQ)
      block(q, out, out_stride, len, q0, std::min(kBlockQ, q_end - q0));
  }

 private:
  /// Queries [q0, q0 + mq), mq <= kBlockQ, against all len keys.
  void block(const T* q, T* out, int64_t out_stride, int64_t len, int64_t q0, int64_t mq) {
    const int64_t n_strips = (mq + kStrip - 1) / kStrip;
    pack_rows(q + q0 * D_, n_strips * kStrip, mq);
    float* o = floats_;                  // [kBlockQ][d16] unnormalised output rows
    float* s = o + kBlockQ * d16_;       // [kStrip][kTileK] scores of one strip
    float* pbuf = s + kStrip * kTileK;   // [kStrip][kTileK] weights (bf16 or fp32 elements)
    float* m = pbuf + kStrip * kTileK;   // [strips][16] running max (log2 units), lane = row
    float* alpha = m + 2 * kBlockQ;      // [strips][16] rescale of O for this tile
    float* l = alpha + 2 * kBlockQ;      // [kBlockQ][16] running sums, per lane
    std::fill(o, o + n_strips * kStrip * d16_, 0.f);
    std::fill(m, m + 2 * kBlockQ, -INFINITY);
    std::fill(l, l + kBlockQ * 16, 0.f);
    for (int64_t j0 = 0; j0 < len; j0 += kTileK) {
      const int64_t nk = std::min(kTileK, len - j0);
      const int n_blk = static_cast<int>((nk + 31) / 32 * 2);
      const uint32_t* kt = k_ + j0 * np_;  // 16-key blocks: j0 / 16 * np * 16
      const uint32_t* vt = v_ + j0 / kPair * d16_;
      for (int64_t st = 0; st < n_strips; ++st) {
        const int64_t r0 = st * kStrip;
        __m512 mx[kStrip];
        for (__m512& x : mx) x = _mm512_set1_ps(-INFINITY);
        qk_tile<kBf, kStrip, 2>(q_ + r0 * np_, kt, np_, n_blk, nk, s, kTileK, mx);
        uint32_t* pw = reinterpret_cast<uint32_t*>(pbuf);
        if (nk % 32 == 0) {
          softmax_strip<false>(s, nk, mx, pw, m + 2 * r0, alpha + 2 * r0, l + r0 * 16);
        } else {
          softmax_strip<true>(s, nk, mx, pw, m + 2 * r0, alpha + 2 * r0, l + r0 * 16);
        }
        pv(reinterpret_cast<uint32_t*>(pbuf), vt, (nk + kPair - 1) / kPair, o + r0 * d16_,
           alpha + 2 * r0);
      }
    }
    store_rows(o, l, out, out_stride, q0, mq);
  }

  /// Words [w0, w0 + 16) of a row of D elements (words past np are 0): kBf packs bf16
  /// neighbours (2w, 2w + 1) into one word, otherwise a word is the fp32 value.
  __m512i words16(const T* row, int64_t w0) const {
    if constexpr (kBf) {
      const int64_t n = D_ - 2 * w0;  // elements left; odd D leaves the last high half 0
      const __mmask32 live = n >= 32 ? ~__mmask32(0) : __mmask32((1ull << n) - 1);
      return _mm512_maskz_loadu_epi16(live, row + 2 * w0);
    } else {
      const __m512i x = lanes16(row, w0, D_);
      return std::is_same_v<T, float> ? x : _mm512_slli_epi32(x, 16);  // bf16 bits -> fp32
    }
  }

  /// K as [blk][np][16] words (16-key blocks transposed in registers) and V as
  /// [len / kPair][d16] words, zero-padded to kpad keys.
  void pack_kv(const T* k, const T* v, int64_t len) {
    const int64_t kpad = (len + 31) / 32 * 32;
    for (int64_t key0 = 0; key0 < kpad; key0 += 16) {
      for (int64_t w0 = 0; w0 < np_; w0 += 16) {
        __m512i tile[16];
        for (int i = 0; i < 16; ++i)
          tile[i] = key0 + i < len ? words16(k + (key0 + i) * D_, w0) : _mm512_setzero_si512();
        transpose16(tile);
        uint32_t* dst = k_ + (key0 * np_ + w0 * 16);  // block key0 / 16, word w0
        for (int64_t w = 0; w < std::min<int64_t>(16, np_ - w0); ++w)
          _mm512_store_si512(dst + w * 16, tile[w]);
      }
    }
    for (int64_t j = 0; j < (len + kPair - 1) / kPair; ++j) {
      uint32_t* dst = v_ + j * d16_;
      const T* row = v + j * kPair * D_;
      for (int64_t c = 0; c < d16_; c += 16) {
        __m512i w = lanes16(row, c, D_);
        if constexpr (kBf) {  // keys 2j (low half) and 2j + 1 (high half)
          if (2 * j + 1 < len) w = _mm512_or_si512(w, _mm512_slli_epi32(lanes16(row + D_, c, D_), 16));
        } else if constexpr (!std::is_same_v<T, float>) {
          w = _mm512_slli_epi32(w, 16);
        }
        _mm512_store_si512(dst + c, w);
      }
    }
  }

  /// Q rows [0, rows) as [rows][np] words; rows >= mq are zero.
  void pack_rows(const T* q, int64_t rows, int64_t mq) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t w0 = 0; w0 < np_; w0 += 16)
        _mm512_mask_storeu_epi32(q_ + r * np_ + w0, first_lanes(np_ - w0),
                                 r < mq ? words16(q + r * D_, w0) : _mm512_setzero_si512());
  }

  /// Online softmax of one strip: s [kStrip][kTileK] scores (first nk real; kTail: nk is not
  /// a multiple of 32), mx their lane-wise row maxima -> p elements [kStrip][kTileK], updating
  /// the running max m and O rescale alpha ([16], lane r = row r; m in log2 units) and the
  /// lane sums l ([kStrip][16]).
  template <bool kTail>
  void softmax_strip(const float* s, int64_t nk, const __m512* mx, uint32_t* p, float* m,
                     float* alpha, float* l) {
    const __m512 log2e = _mm512_set1_ps(1.4426950408889634f);
    // The 8 rows' new maxima and alpha = 2^(m_old - m_new), lane r = row r, kept in
    // registers (a masked store followed by scalar loads would stall store forwarding).
    // m_old is -inf on the first tile (O and l are still 0): the clamp keeps alpha finite.
    const __m512 m_old = _mm512_load_ps(m);
    const __m512 m_new = _mm512_max_ps(m_old, _mm512_mul_ps(row_max8(mx), log2e));
    const __m512 diff = _mm512_max_ps(_mm512_sub_ps(m_old, m_new), _mm512_set1_ps(-126.f));
    // alpha is exactly 1 where the max did not move (the polynomial's 2^0 is 1 + 1e-7).
    const __mmask16 same = _mm512_cmp_ps_mask(diff, _mm512_setzero_ps(), _CMP_EQ_OQ);
    const __m512 a = _mm512_mask_mov_ps(exp2_ps<5>(diff), same, _mm512_set1_ps(1.f));
    _mm512_store_ps(m, m_new);
    _mm512_store_ps(alpha, a);
    const __m512 neg = _mm512_sub_ps(_mm512_setzero_ps(), m_new);
    const int64_t n32 = (nk + 31) / 32 * 32;
    for (int r = 0; r < kStrip; ++r) {
      const float* sr = s + r * kTileK;
      const __m512i lane = _mm512_set1_epi32(r);
      const __m512 neg_r = _mm512_permutexvar_ps(lane, neg);
      __m512 sum = _mm512_setzero_ps();
      for (int64_t c = 0; c < n32; c += 32) {
        __m512 p0 = exp2_ps<kExpDegree>(_mm512_fmadd_ps(_mm512_load_ps(sr + c), log2e, neg_r));
        __m512 p1 = exp2_ps<kExpDegree>(_mm512_fmadd_ps(_mm512_load_ps(sr + c + 16), log2e, neg_r));
        if constexpr (kTail) {
          p0 = _mm512_maskz_mov_ps(first_lanes(nk - c), p0);
          p1 = _mm512_maskz_mov_ps(first_lanes(nk - c - 16), p1);
        }
        sum = _mm512_add_ps(sum, _mm512_add_ps(p0, p1));
        if constexpr (kBf) {
#if defined(__AVX512BF16__)
          _mm512_store_si512(p + r * kTileK / 2 + c / 2, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
#endif
        } else {
          _mm512_store_ps(reinterpret_cast<float*>(p + r * kTileK + c), p0);
          _mm512_store_ps(reinterpret_cast<float*>(p + r * kTileK + c + 16), p1);
        }
      }
      const __m512 lr = _mm512_load_ps(l + r * 16);
      _mm512_store_ps(l + r * 16, _mm512_fmadd_ps(lr, _mm512_permutexvar_ps(lane, a), sum));
    }
  }

  /// O strip = alpha * O + P V over all columns, in register blocks of 1-3 zmm (64 = 32 + 32).
  void pv(const uint32_t* p, const uint32_t* v, int64_t steps, float* o, const float* alpha) {
    const int64_t ldp = kTileK / kPair;
    for (int64_t c = 0; c < d16_;) {
      const int64_t rest = d16_ - c;
      if (rest >= 48 && rest != 64) {
        pv_tile<kBf, kStrip, 3>(p, ldp, v + c, d16_, steps, o + c, d16_, alpha);
        c += 48;
      } else if (rest >= 32) {
        pv_tile<kBf, kStrip, 2>(p, ldp, v + c, d16_, steps, o + c, d16_, alpha);
        c += 32;
      } else {
        pv_tile<kBf, kStrip, 1>(p, ldp, v + c, d16_, steps, o + c, d16_, alpha);
        c += 16;
      }
    }
  }

  /// out row = O row / l for the mq real queries of the block (bf16: round to nearest even).
  void store_rows(const float* o, const float* l, T* out, int64_t out_stride, int64_t q0,
                  int64_t mq) {
    for (int64_t r = 0; r < mq; ++r) {
      const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(_mm512_load_ps(l + r * 16)));
      T* dst = out + (q0 + r) * out_stride;
      for (int64_t c = 0; c < D_; c += 16) {
        const __m512 x = _mm512_mul_ps(_mm512_load_ps(o + r * d16_ + c), inv);
        if constexpr (std::is_same_v<T, float>) {
          _mm512_mask_storeu_ps(dst + c, first_lanes(D_ - c), x);
        } else {
          const __m512i u = _mm512_castps_si512(x);  // + 0x7fff + lowest kept bit: ties to even
          const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
          const __m512i rounded = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd);
          _mm256_mask_storeu_epi16(dst + c, first_lanes(D_ - c),
                                   _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16)));
        }
      }
    }
  }

  int64_t D_, np_, d16_, lpad_;
  Scratch scratch_, fscratch_;
  uint32_t *words_, *k_, *v_, *q_;
  float* floats_;
  int64_t packed_key_ = -1;
};

}  // namespace avx512
}  // namespace
}  // namespace ntengine

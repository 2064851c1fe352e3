// AVX2 layer of the CPU kernels: 8 fp32 lanes per step (FMA for the arithmetic, F16C for
// half storage), storage types converted on load / store, partial chunks for tails, a
// Cephes exp and the horizontal reductions the kernels need.
//
// Everything here exists only when the compiler targets AVX2 + FMA + F16C (e.g. -mavx2
// -mfma -mf16c, or -march=native on Zen 2/3 / Haswell and later): NTE_AVX2 is then 1.
// AVX-512 targets have these too, so NTE_AVX2 is 1 there as well; kernels write
//   #if NTE_AVX512 ... #elif NTE_AVX2 ... #else (kernels/cpu/scalar.h) #endif
// so an AVX-512 build keeps its 16-lane path and this layer serves AVX2-only builds.
// Names differ from avx512.h's (load8 / store8 / exp8 ...), so both headers can be
// included in one translation unit.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/cpu/avx512.h"
#include "kernels/cpu/scalar.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define NTE_AVX2 1
#include <immintrin.h>
#else
#define NTE_AVX2 0
#endif

#if NTE_AVX2
namespace ntengine {
namespace cpu {

/// @brief body(i, live) for i = 0, 8, 16, ... < n with live = min(8, n - i): full chunks
///        first with a constant live = 8 (the helpers below then fold to plain loads and
///        stores), then at most one partial chunk.
template <typename Body>
inline void for_chunks8(int64_t n, Body&& body) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) body(i, int64_t{8});
  if (i < n) body(i, n - i);
}

/// @brief for_chunks8 two chunks per step, body(i, u, live) with u = 0, 1 for i + 8 * u:
///        two accumulators for reductions. A tail's second chunk may have live <= 0 (the
///        helpers then touch no memory and give 0 lanes).
template <typename Body>
inline void for_chunks16x8(int64_t n, Body&& body) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    body(i, 0, int64_t{8});
    body(i + 8, 1, int64_t{8});
  }
  if (i < n) {
    body(i, 0, n - i);
    body(i + 8, 1, n - i - 8);
  }
}

/// All-ones in 32-bit lanes [0, n), n clamped to [0, 8]: a maskload / maskstore mask.
inline __m256i lanes_below(int64_t n) {
  const int m = n <= 0 ? 0 : n >= 8 ? 8 : static_cast<int>(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// 8 raw 16-bit elements, the first n (<= 0: none) from p, the rest 0; never reads past
/// p + n.
inline __m128i load8_u16(const void* p, int64_t n = 8) {
  if (n >= 8) return _mm_loadu_si128(static_cast<const __m128i*>(p));
  alignas(16) uint16_t buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  if (n > 0) std::memcpy(buf, p, 2 * static_cast<size_t>(n));
  return _mm_load_si128(reinterpret_cast<const __m128i*>(buf));
}
/// Store the first n (<= 8) of 8 raw 16-bit elements.
inline void store8_u16(void* p, __m128i h, int64_t n = 8) {
  if (n >= 8) {
    _mm_storeu_si128(static_cast<__m128i*>(p), h);
    return;
  }
  if (n <= 0) return;
  alignas(16) uint16_t buf[8];
  _mm_store_si128(reinterpret_cast<__m128i*>(buf), h);
  std::memcpy(p, buf, 2 * static_cast<size_t>(n));
}

/// bf16 bits (8 x u16) -> fp32 lanes: the bits are the top half of the fp32 bits.
inline __m256 bf16x8_to_f32(__m128i h) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/// @brief 8 elements of storage type T -> fp32 lanes; with n < 8 only the first n are read
///        (the rest are 0), so a tail never touches memory past the end of a row.
inline __m256 load8(const float* p, int64_t n = 8) {
  if (n >= 8) return _mm256_loadu_ps(p);
  return _mm256_maskload_ps(p, lanes_below(n));
}
inline __m256 load8(const bf16_t* p, int64_t n = 8) { return bf16x8_to_f32(load8_u16(p, n)); }
inline __m256 load8(const f16_t* p, int64_t n = 8) { return _mm256_cvtph_ps(load8_u16(p, n)); }

/// @brief fp32 lanes -> bf16 bits by integer arithmetic: round to nearest even, subnormals
///        kept, NaN -> 0x7fc0; bit-identical to c10::BFloat16 (and to_bf16x16_exact).
inline __m128i to_bf16x8(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc00000), nan);
  r = _mm256_srli_epi32(r, 16);  // <= 0xffff: the unsigned-saturating pack is exact
  return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}
/// fp32 lanes -> IEEE half bits, round to nearest even (F16C), as c10::Half.
inline __m128i to_f16x8(__m256 v) {
  return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

/// Store the first n (<= 8) fp32 lanes as storage type T; the rest of memory untouched.
inline void store8(float* p, __m256 v, int64_t n = 8) {
  if (n >= 8)
    _mm256_storeu_ps(p, v);
  else
    _mm256_maskstore_ps(p, lanes_below(n), v);
}
inline void store8(bf16_t* p, __m256 v, int64_t n = 8) { store8_u16(p, to_bf16x8(v), n); }
inline void store8(f16_t* p, __m256 v, int64_t n = 8) { store8_u16(p, to_f16x8(v), n); }

/// @brief store8, returning the stored values widened back to fp32 (v rounded to T).
inline __m256 store8_rounded(float* p, __m256 v, int64_t n = 8) {
  store8(p, v, n);
  return v;
}
inline __m256 store8_rounded(bf16_t* p, __m256 v, int64_t n = 8) {
  const __m128i h = to_bf16x8(v);
  store8_u16(p, h, n);
  return bf16x8_to_f32(h);
}
inline __m256 store8_rounded(f16_t* p, __m256 v, int64_t n = 8) {
  const __m128i h = to_f16x8(v);
  store8_u16(p, h, n);
  return _mm256_cvtph_ps(h);
}

/// Horizontal sum / max of 8 lanes.
inline float hsum8(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}
inline float hmax8(__m256 v) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = _mm_max_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

/// @brief exp1 on 8 lanes (same Cephes polynomial). 2^n (n in [-150, 128] after the
///        clamp) is applied as two normal powers of two, 2^h * 2^(n - h) with h = n >> 1,
///        so results round once into the subnormal range and overflow to inf like expf.
///        NaN stays NaN.
inline __m256 exp8(__m256 x) {
  // Constant first: vmaxps / vminps return the second operand when one is NaN.
  x = _mm256_min_ps(_mm256_set1_ps(kExpHi), _mm256_max_ps(_mm256_set1_ps(kExpLo), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kExpP[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpP[i]));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n);  // exact: n is an integer in [-150, 128]
  const __m256i h = _mm256_srai_epi32(ni, 1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
  const __m256 s2 =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
}

/// @brief silu on 8 lanes: a / (1 + exp(-a)), true division for ~2 ulp.
inline __m256 silu8(__m256 a) {
  const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), a));
  return _mm256_div_ps(a, _mm256_add_ps(e, _mm256_set1_ps(1.0f)));
}

/// @brief v unchanged, but opaque to the optimiser: GCC treats _mm256_mul_ps / _sub_ps as
///        plain vector arithmetic and contracts a*b - c*d into an FMA under the default
///        -ffp-contract=fast; passing a product through this keeps it a separate rounding
///        (AVX2 has no _round_ forms to do that, unlike AVX-512).
inline __m256 opaque8(__m256 v) {
  __asm__("" : "+x"(v));
  return v;
}

#if !NTE_AVX512  // avx512.h defines the same helper for AVX-512 builds
/// @brief Software prefetch of the line `bytes` after p (kLocality 3 = L1, 2 = L2); the
///        address may lie past the end of p's buffer: prefetches never fault.
template <int kLocality = 3>
inline void prefetch(const void* p, int64_t bytes) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes);
  __builtin_prefetch(reinterpret_cast<const void*>(at), 0, kLocality);
}
constexpr int64_t kPrefetchBytes = 4096;
#endif

}  // namespace cpu
}  // namespace ntengine
#endif  // NTE_AVX2

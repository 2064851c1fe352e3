// AVX-512 layer of the CPU kernels: 16 fp32 lanes per step, storage types converted on
// load / store, masks for tails, a Cephes exp and a prefetch helper.
//
// Everything here exists only when the compiler targets AVX-512 F/BW/VL/DQ (NTENGINE_NATIVE
// on such a CPU): NTE_AVX512 is then 1, and kernels write `#if NTE_AVX512 ... #else` with
// the portable code of kernels/cpu/scalar.h in the #else branch.
#pragma once

#include <cstdint>

#include "kernels/cpu/scalar.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__)
#define NTE_AVX512 1
// GCC 12 reports its own `__Y = __Y` placeholders in the AVX-512 headers as
// -W(maybe-)uninitialized once they are inlined into OpenMP bodies: a known false positive.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#define NTE_AVX512 0
#endif

#if NTE_AVX512
namespace ntengine {
namespace cpu {

/// @brief Mask with lanes [0, n) set; n >= 16 gives all lanes, n <= 0 none.
inline __mmask16 tail_mask(int64_t n) {
  if (n <= 0) return 0;
  return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
}

/// @brief body(i, mask) for i = 0, 16, 32, ... < n: full chunks first with a constant
///        all-ones mask (GCC folds it, so masked loads and stores become plain ones, which
///        matters for masked stores), then at most one tail chunk with a partial mask.
template <typename Body>
inline void for_chunks16(int64_t n, Body&& body) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) body(i, static_cast<__mmask16>(0xffff));
  if (i < n) body(i, tail_mask(n - i));
}

/// @brief for_chunks16 two chunks per step, body(i, u, mask) with u = 0, 1 for i + 16 * u:
///        lets a reduction keep two accumulators so consecutive adds do not wait on each
///        other's latency. Tail masks may be empty (an empty mask touches no memory).
template <typename Body>
inline void for_chunks32(int64_t n, Body&& body) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    body(i, 0, static_cast<__mmask16>(0xffff));
    body(i + 16, 1, static_cast<__mmask16>(0xffff));
  }
  if (i < n) {
    body(i, 0, tail_mask(n - i));
    body(i + 16, 1, tail_mask(n - i - 16));
  }
}

/// 16 elements of storage type T -> fp32 lanes; masked-off lanes read as 0 and do not
/// touch memory (safe at the end of a buffer).
inline __m512 load16(const float* p, __mmask16 m = 0xffff) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16(const bf16_t* p, __mmask16 m = 0xffff) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline __m512 load16(const f16_t* p, __mmask16 m = 0xffff) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

/// @brief fp32 lanes -> bf16 bits by integer arithmetic: round to nearest even, subnormals
///        kept, NaN -> 0x7fc0; bit-identical to c10::BFloat16's conversion.
inline __m256i to_bf16x16_exact(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7fc00000));
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

/// @brief fp32 lanes -> bf16 bits, round to nearest even, equal to torch's `.to(bfloat16)`
///        for every non-NaN input (NaN stays a NaN, its payload may differ).
/// With AVX512_BF16, VCVTNEPS2BF16 does it in one instruction (~15% faster bf16 kernels
/// here), but it flushes subnormal inputs to zero where torch keeps them: a vector holding
/// any subnormal (vfpclassps class 0x20; rare) takes the integer path instead.
inline __m256i to_bf16x16(__m512 v) {
#if defined(__AVX512BF16__)
  if (__builtin_expect(_mm512_fpclass_ps_mask(v, 0x20) == 0, 1))
    return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
#endif
  return to_bf16x16_exact(v);
}

/// Store 16 fp32 lanes as storage type T (masked-off lanes untouched).
inline void store16(float* p, __m512 v, __mmask16 m = 0xffff) { _mm512_mask_storeu_ps(p, m, v); }
inline void store16(bf16_t* p, __m512 v, __mmask16 m = 0xffff) {
  _mm256_mask_storeu_epi16(p, m, to_bf16x16(v));
}
inline void store16(f16_t* p, __m512 v, __mmask16 m = 0xffff) {
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/// @brief store16, returning the stored values widened back to fp32 (v rounded to T):
///        what a later load16 would see, without the reload.
inline __m512 store16_rounded(float* p, __m512 v, __mmask16 m = 0xffff) {
  store16(p, v, m);
  return v;
}
inline __m512 store16_rounded(bf16_t* p, __m512 v, __mmask16 m = 0xffff) {
  const __m256i h = to_bf16x16(v);
  _mm256_mask_storeu_epi16(p, m, h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline __m512 store16_rounded(f16_t* p, __m512 v, __mmask16 m = 0xffff) {
  const __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  _mm256_mask_storeu_epi16(p, m, h);
  return _mm512_cvtph_ps(h);
}

/// @brief exp1 on 16 lanes (same Cephes polynomial); 2^n applied with vscalefps, which
///        rounds once into the subnormal range and saturates to inf itself.
inline __m512 exp16(__m512 x) {
  // Constant first: vmaxps / vminps return the second operand when one is NaN.
  x = _mm512_min_ps(_mm512_set1_ps(kExpHi), _mm512_max_ps(_mm512_set1_ps(kExpLo), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kExpP[0]);
  for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpP[i]));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(y, n);
}

/// @brief silu on 16 lanes: a / (1 + exp(-a)), true division for ~2 ulp.
inline __m512 silu16(__m512 a) {
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), a));
  return _mm512_div_ps(a, _mm512_add_ps(e, _mm512_set1_ps(1.0f)));
}

/// @brief Software prefetch of the line `bytes` after p (kLocality 3 = into L1, like
///        _MM_HINT_T0; 2 = L2, _MM_HINT_T1). The address is formed with integer arithmetic
///        because it may lie past the end of p's buffer: prefetches never fault.
template <int kLocality = 3>
inline void prefetch(const void* p, int64_t bytes) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes);
  __builtin_prefetch(reinterpret_cast<const void*>(at), 0, kLocality);
}

/// Prefetch distance for kernels that read a few sequential streams while computing: on
/// Zen 4 the hardware prefetcher alone left single-thread swiglu at ~21 GB/s, prefetching
/// 4 KB ahead into L1 gave ~28 GB/s.
constexpr int64_t kPrefetchBytes = 4096;

}  // namespace cpu
}  // namespace ntengine
#endif  // NTE_AVX512

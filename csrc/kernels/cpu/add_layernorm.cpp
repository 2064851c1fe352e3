// Residual add + LayerNorm on the CPU, one row (E <= a few thousand) per iteration.
//
// Per row: pass 1 adds x + delta, rounds to the storage dtype, stores `sum` and accumulates
// the fp32 row sum of the rounded values (a first mean); pass 2 re-reads the rounded sums
// (from L1: E * 4 bytes <= 10 KB at E = 2560) for the sums of c = sum - mean and c^2, which
// give an exact-ish mean correction and the variance without E[x^2] - mean^2 cancellation;
// pass 3 writes `normed`. For 16-bit storage each thread keeps fp32 copies of weight, bias
// and the row's rounded sums, so passes 2 and 3 do no conversions.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_vec.h"
#include "kernels/kernels.h"

namespace ntengine {
namespace {

/// One row. x, d [E] in (storage T); w, b [E] fp32 affine; s [E] out (sum, storage T) and
/// s32 [E] its fp32 copy (== s when T is float); y [E] out (normed).
template <typename T>
inline void add_layernorm_row(const T* __restrict x, const T* __restrict d, const float* w,
                              const float* b, T* s, float* s32, T* __restrict y, int64_t E,
                              float eps) {
  constexpr bool kCopy = !std::is_same_v<T, float>;
#if NTE_AVX512
  // Masked-off lanes of tail chunks load as 0, so they add nothing to the sums.
  __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  cpu::for_chunks32(E, [&](int64_t i, int u, __mmask16 m) {
    const __m512 v = _mm512_add_ps(cpu::load16(x + i, m), cpu::load16(d + i, m));
    // The statistics see the sum the caller gets: rounded to T.
    const __m512 r = cpu::store16_rounded(s + i, v, m);
    if constexpr (kCopy) _mm512_mask_storeu_ps(s32 + i, m, r);
    acc[u] = _mm512_add_ps(acc[u], r);
  });
  const float mean0 = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1])) / static_cast<float>(E);
  // Pass 2 sums c = s - mean0 and c^2: the centred sums are small, so sum(c) / E corrects
  // the rounding of mean0 (~ulp(E * mean) / E, 1e-4 at mean 1e3) almost exactly.
  const __m512 vmean0 = _mm512_set1_ps(mean0);
  __m512 sq[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  acc[0] = acc[1] = _mm512_setzero_ps();
  cpu::for_chunks32(E, [&](int64_t i, int u, __mmask16 m) {
    // masked-off lanes stay 0 (not -mean0), so they add nothing
    const __m512 c = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, s32 + i), vmean0);
    acc[u] = _mm512_add_ps(acc[u], c);
    sq[u] = _mm512_fmadd_ps(c, c, sq[u]);
  });
  const float shift = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1])) / static_cast<float>(E);
  const float var =
      _mm512_reduce_add_ps(_mm512_add_ps(sq[0], sq[1])) / static_cast<float>(E) - shift * shift;
  // Centre as (s - mean0) - shift: mean0 + shift rounded to fp32 would lose the correction.
  const __m512 vshift = _mm512_set1_ps(shift);
  const __m512 vrstd = _mm512_set1_ps(1.0f / std::sqrt(std::max(var, 0.0f) + eps));
  cpu::for_chunks16(E, [&](int64_t i, __mmask16 m) {
    __m512 c = _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s32 + i), vmean0), vshift);
    c = _mm512_mul_ps(c, vrstd);
    const __m512 wv = _mm512_maskz_loadu_ps(m, w + i), bv = _mm512_maskz_loadu_ps(m, b + i);
    cpu::store16(y + i, _mm512_fmadd_ps(c, wv, bv), m);
  });
#elif NTE_AVX2
  // The AVX-512 algorithm on 8 lanes; partial chunks load 0 past E, so they add nothing.
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  cpu::for_chunks16x8(E, [&](int64_t i, int u, int64_t n) {
    if (n <= 0) return;
    const __m256 v = _mm256_add_ps(cpu::load8(x + i, n), cpu::load8(d + i, n));
    const __m256 r = cpu::store8_rounded(s + i, v, n);  // the statistics see the rounded sum
    if constexpr (kCopy) cpu::store8(s32 + i, r, n);
    acc[u] = _mm256_add_ps(acc[u], r);
  });
  const float mean0 = cpu::hsum8(_mm256_add_ps(acc[0], acc[1])) / static_cast<float>(E);
  const __m256 vmean0 = _mm256_set1_ps(mean0);
  __m256 sq[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  acc[0] = acc[1] = _mm256_setzero_ps();
  cpu::for_chunks16x8(E, [&](int64_t i, int u, int64_t n) {
    if (n <= 0) return;
    __m256 c = _mm256_sub_ps(cpu::load8(s32 + i, n), vmean0);
    if (n < 8) c = _mm256_and_ps(c, _mm256_castsi256_ps(cpu::lanes_below(n)));  // 0, not -mean0
    acc[u] = _mm256_add_ps(acc[u], c);
    sq[u] = _mm256_fmadd_ps(c, c, sq[u]);
  });
  const float shift = cpu::hsum8(_mm256_add_ps(acc[0], acc[1])) / static_cast<float>(E);
  const float var = cpu::hsum8(_mm256_add_ps(sq[0], sq[1])) / static_cast<float>(E) - shift * shift;
  const __m256 vshift = _mm256_set1_ps(shift);
  const __m256 vrstd = _mm256_set1_ps(1.0f / std::sqrt(std::max(var, 0.0f) + eps));
  cpu::for_chunks8(E, [&](int64_t i, int64_t n) {
    __m256 c = _mm256_sub_ps(_mm256_sub_ps(cpu::load8(s32 + i, n), vmean0), vshift);
    c = _mm256_mul_ps(c, vrstd);
    cpu::store8(y + i, _mm256_fmadd_ps(c, cpu::load8(w + i, n), cpu::load8(b + i, n)), n);
  });
#else
  float acc = 0.0f;
  for (int64_t e = 0; e < E; ++e) {
    cpu::store1(s + e, cpu::load1(x + e) + cpu::load1(d + e));
    if constexpr (kCopy) s32[e] = cpu::load1(s + e);
    acc += s32[e];
  }
  const float mean0 = acc / static_cast<float>(E);
  float sc = 0.0f, sq = 0.0f;  // shifted sums, as in the vector path
  for (int64_t e = 0; e < E; ++e) {
    const float c = s32[e] - mean0;
    sc += c;
    sq += c * c;
  }
  const float shift = sc / static_cast<float>(E);
  const float var = sq / static_cast<float>(E) - shift * shift;
  const float rstd = 1.0f / std::sqrt(std::max(var, 0.0f) + eps);
  for (int64_t e = 0; e < E; ++e) cpu::store1(y + e, (s32[e] - mean0 - shift) * rstd * w[e] + b[e]);
#endif
}

}  // namespace

void add_layernorm_cpu(const void* x, int64_t x_row_stride, const void* delta,
                       int64_t delta_row_stride, const void* weight, const void* bias, void* sum,
                       void* normed, int64_t N, int64_t E, float eps, DType dtype) {
  cpu::dispatch_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    constexpr bool kCopy = !std::is_same_v<T, float>;
    const T* xp = static_cast<const T*>(x);      // [N, E], row stride x_row_stride
    const T* dp = static_cast<const T*>(delta);  // [N, E], row stride delta_row_stride
    const T* w = static_cast<const T*>(weight);  // [E]
    const T* b = static_cast<const T*>(bias);    // [E]
    T* sp = static_cast<T*>(sum);                // [N, E]
    T* yp = static_cast<T*>(normed);             // [N, E]
    const bool parallel = N * E > cpu::kParallelMinElems;
    // fp32 scratch for 16-bit storage, per thread: weight, bias [E] and one row of rounded
    // sums [E]. Allocated here, on the calling thread, because worker threads never throw.
    std::vector<float> scratch(kCopy ? (parallel ? omp_get_max_threads() : 1) * 3 * E : 0);
#pragma omp parallel if (parallel)
    {
      float* mine = scratch.data() + (kCopy ? omp_get_thread_num() * 3 * E : 0);
      const float* w32;
      const float* b32;
      if constexpr (kCopy) {
        for (int64_t e = 0; e < E; ++e) {
          mine[e] = cpu::load1(w + e);
          mine[E + e] = cpu::load1(b + e);
        }
        w32 = mine, b32 = mine + E;
      } else {
        w32 = w, b32 = b;
      }
#pragma omp for schedule(static)
      for (int64_t n = 0; n < N; ++n) {
        T* s = sp + n * E;
        float* s32;
        if constexpr (kCopy)
          s32 = mine + 2 * E;
        else
          s32 = s;
        add_layernorm_row(xp + n * x_row_stride, dp + n * delta_row_stride, w32, b32, s, s32,
                          yp + n * E, E, eps);
      }
    }
  });
}

}  // namespace ntengine

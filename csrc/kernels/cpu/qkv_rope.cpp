// QKV epilogue on the CPU: split heads, rotate q and k (rotate-half RoPE), scale q.
//
// One pass over memory: each token's [3E] row is read from DRAM once, and its 3H head
// slices are written to q, k, v [B, H, L, D]. Threads take tiles of tokens (see below).
// The rotation keeps the reference's operation order (two products, then the
// difference, then * q_scale; no FMA), so on the AVX-512 and AVX2 paths fp32 results
// match qkv_rope_ref bit for bit (the scalar path may be FMA-contracted by the compiler).
#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/cpu_vec.h"
#include "kernels/kernels.h"

namespace ntengine {
namespace {

constexpr int64_t kTileBytes = 192 * 1024;  // input rows per tile: well inside a 1 MB L2
constexpr int64_t kMaxTile = 64;            // tokens: runs of up to 64 * D output elements

#if NTE_AVX512
// Why the _round forms: GCC treats _mm512_mul_ps / _mm512_sub_ps as plain vector
// arithmetic and contracts x1*c - x2*s into an FMA (one rounding fewer than the
// reference). The _round builtins are opaque to that; CUR_DIRECTION emits plain vmulps.
constexpr int kRound = _MM_FROUND_CUR_DIRECTION;
inline __m512 mul(__m512 a, __m512 b) { return _mm512_mul_round_ps(a, b, kRound); }
inline __m512 sub(__m512 a, __m512 b) { return _mm512_sub_round_ps(a, b, kRound); }
inline __m512 add(__m512 a, __m512 b) { return _mm512_add_round_ps(a, b, kRound); }
#endif

/// Rotate one head: x, o [D] with D = 2 * half; c, s [half] the table rows of its position.
template <typename T>
inline void rope_head(const T* __restrict x, T* __restrict o, const float* __restrict c,
                      const float* __restrict s, int64_t half, float scale) {
#if NTE_AVX512
  const __m512 vscale = _mm512_set1_ps(scale);
  cpu::for_chunks16(half, [&](int64_t j, __mmask16 m) {  // D = 8 heads use 4 lanes
    const __m512 x1 = cpu::load16(x + j, m), x2 = cpu::load16(x + half + j, m);
    const __m512 vc = _mm512_maskz_loadu_ps(m, c + j), vs = _mm512_maskz_loadu_ps(m, s + j);
    const __m512 r1 = sub(mul(x1, vc), mul(x2, vs));
    const __m512 r2 = add(mul(x2, vc), mul(x1, vs));
    cpu::store16(o + j, mul(r1, vscale), m);
    cpu::store16(o + half + j, mul(r2, vscale), m);
  });
#elif NTE_AVX2
  // Products made opaque (cpu::opaque8) so GCC cannot contract them into FMAs: bit-equal
  // to the reference, like the AVX-512 path.
  const __m256 vscale = _mm256_set1_ps(scale);
  cpu::for_chunks8(half, [&](int64_t j, int64_t n) {  // D = 8 heads use 4 lanes
    const __m256 x1 = cpu::load8(x + j, n), x2 = cpu::load8(x + half + j, n);
    const __m256 vc = cpu::load8(c + j, n), vs = cpu::load8(s + j, n);
    const __m256 r1 = _mm256_sub_ps(cpu::opaque8(_mm256_mul_ps(x1, vc)), cpu::opaque8(_mm256_mul_ps(x2, vs)));
    const __m256 r2 = _mm256_add_ps(cpu::opaque8(_mm256_mul_ps(x2, vc)), cpu::opaque8(_mm256_mul_ps(x1, vs)));
    cpu::store8(o + j, _mm256_mul_ps(r1, vscale), n);
    cpu::store8(o + half + j, _mm256_mul_ps(r2, vscale), n);
  });
#else
  for (int64_t j = 0; j < half; ++j) {
    const float x1 = cpu::load1(x + j), x2 = cpu::load1(x + half + j);
    const float r1 = x1 * c[j] - x2 * s[j], r2 = x2 * c[j] + x1 * s[j];
    cpu::store1(o + j, r1 * scale);
    cpu::store1(o + half + j, r2 * scale);
  }
#endif
}

/// No rotary (v1 models): o = x * scale over one head x, o [D]. Any D, odd included
/// (AgroNT-1B: D = 75): masked tail chunk / scalar loop, no pairs of features.
template <typename T>
inline void scale_head(const T* __restrict x, T* __restrict o, int64_t D, float scale) {
#if NTE_AVX512
  const __m512 vscale = _mm512_set1_ps(scale);
  cpu::for_chunks16(D, [&](int64_t j, __mmask16 m) {
    cpu::store16(o + j, _mm512_mul_ps(cpu::load16(x + j, m), vscale), m);
  });
#elif NTE_AVX2
  const __m256 vscale = _mm256_set1_ps(scale);
  cpu::for_chunks8(D, [&](int64_t j, int64_t n) {
    cpu::store8(o + j, _mm256_mul_ps(cpu::load8(x + j, n), vscale), n);
  });
#else
  for (int64_t j = 0; j < D; ++j) cpu::store1(o + j, cpu::load1(x + j) * scale);
#endif
}

}  // namespace

void qkv_rope_cpu(const void* qkv, int64_t qkv_row_stride, void* q, void* k, void* v,
                  const int32_t* positions, const float* cos, const float* sin, int64_t B,
                  int64_t L, int64_t H, int64_t D, float q_scale, DType dtype) {
  cpu::dispatch_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* in = static_cast<const T*>(qkv);  // [B*L, 3E], row stride qkv_row_stride
    T* qp = static_cast<T*>(q);                // [B, H, L, D]
    T* kp = static_cast<T*>(k);                // [B, H, L, D]
    T* vp = static_cast<T*>(v);                // [B, H, L, D]
    const int64_t E = H * D, half = D / 2;
    // Tiles of tokens: the tile's input rows stay in L2 while each head's slice of them is
    // written out, so every output stream gets tile * D contiguous elements at a time.
    // (Token by token, each token scattered D elements to 3H streams ~L*D apart: at v2-50M
    // that is 48 streams of 64 bytes, and bf16 ran at half fp32's bandwidth.)
    const int64_t row_bytes = 3 * E * static_cast<int64_t>(sizeof(T));
    const int64_t tile = std::clamp<int64_t>(kTileBytes / row_bytes, 1, kMaxTile);
    const int64_t tiles = (L + tile - 1) / tile;  // per batch row
#pragma omp parallel for schedule(static) if (B * L * 3 * E > cpu::kParallelMinElems)
    for (int64_t bi = 0; bi < B * tiles; ++bi) {
      const int64_t b = bi / tiles, t0 = (bi - b * tiles) * tile, t1 = std::min(L, t0 + tile);
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t t = t0; t < t1; ++t) {
          const T* x = in + (b * L + t) * qkv_row_stride + h * D;  // (q | k | v) of head h
          const int64_t o = ((b * H + h) * L + t) * D;             // [b, h, t, :]
#if NTE_AVX512 || NTE_AVX2
          // The same slices of the next tile's rows, into L2, so they arrive while this
          // tile is processed (measured at v2-50M fp32, one thread: 3.8 -> 2.7 ms).
          for (int64_t part = 0; part < 3 * E; part += E)
            for (int64_t byte = 0; byte < D * static_cast<int64_t>(sizeof(T)); byte += 64)
              cpu::prefetch<2>(x, (tile * qkv_row_stride + part) * sizeof(T) + byte);
#endif
          if (cos) {
            const int64_t p = positions ? positions[b * L + t] : t;
            rope_head(x, qp + o, cos + p * half, sin + p * half, half, q_scale);
            rope_head(x + E, kp + o, cos + p * half, sin + p * half, half, 1.0f);
          } else {
            scale_head(x, qp + o, D, q_scale);
            std::memcpy(kp + o, x + E, D * sizeof(T));  // k = x: bit copy
          }
          std::memcpy(vp + o, x + 2 * E, D * sizeof(T));  // v is never transformed
        }
      }
    }
  });
}

}  // namespace ntengine

// Storage types and scalar fp32 math shared by the CPU kernels (the portable layer).
//
// bf16 / fp16 <-> fp32 by bit manipulation, rounding to nearest even exactly like torch's
// `.to(dtype)`; a libm-free fp32 exp / silu. Everything is branch-free inline code so the
// kernels' plain loops auto-vectorise at any -march (SSE2 in portable builds). The
// AVX-512 layer on top is kernels/cpu/avx512.h.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/dtype.h"

namespace ntengine {
namespace cpu {

/// Raw 16-bit storage types: distinct so templates can dispatch on them.
struct bf16_t {
  uint16_t bits;
};
struct f16_t {
  uint16_t bits;
};

/// Bit casts between fp32 and its IEEE bits (memcpy: the defined way before C++20).
inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// @brief bf16 -> fp32 is exact: the bf16 bits are the top half of the fp32 bits.
inline float to_f32(bf16_t x) { return bits_f32(static_cast<uint32_t>(x.bits) << 16); }
inline float to_f32(float x) { return x; }

/// @brief fp32 -> bf16, round to nearest even; NaN stays a (quiet) NaN, as in c10::BFloat16.
inline bf16_t to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  if (std::isnan(f)) return bf16_t{0x7fc0};
  // Adding 0x7fff plus the lowest kept bit rounds half-way cases to the even neighbour.
  const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return bf16_t{static_cast<uint16_t>(rounded >> 16)};
}

/// @brief IEEE half -> fp32 (exact, subnormals included).
inline float to_f32(f16_t x) {
  const uint32_t h = x.bits;
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp != 0) return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
  // Subnormal (or zero): value = man * 2^-24, exact in fp32.
  const float mag = static_cast<float>(man) * 5.9604644775390625e-8f;
  return sign ? -mag : mag;
}

/// @brief fp32 -> IEEE half, round to nearest even (overflow -> inf), as c10::Half does.
inline f16_t to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return f16_t{static_cast<uint16_t>(sign | 0x7e00u)};  // nan
  if (a >= 0x477ff000u) return f16_t{static_cast<uint16_t>(sign | 0x7c00u)};  // >= 65520: inf
  if (a < 0x38800000u) {
    // Result is subnormal or zero: adding 0.5 lets the FPU do the RNE shift for us
    // (0.5 has the ulp 2^-24 of a half subnormal, expressed as an fp32 with exponent -1).
    const float r = bits_f32(a) + 0.5f;
    return f16_t{static_cast<uint16_t>(sign | (f32_bits(r) - 0x3f000000u))};
  }
  const uint32_t odd = (a >> 13) & 1u;
  const uint32_t rebased = a + ((15u - 127u) << 23) + 0xfffu + odd;
  return f16_t{static_cast<uint16_t>(sign | (rebased >> 13))};
}

/// Load / store one element of storage type T as fp32.
template <typename T>
inline float load1(const T* p) {
  return to_f32(*p);
}
template <typename T>
inline void store1(T* p, float v);
template <>
inline void store1<float>(float* p, float v) {
  *p = v;
}
template <>
inline void store1<bf16_t>(bf16_t* p, float v) {
  *p = to_bf16(v);
}
template <>
inline void store1<f16_t>(f16_t* p, float v) {
  *p = to_f16(v);
}

// Cephes expf: exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2 / 2, with ln2 split
// in two (kLn2Hi has 9 significant bits, so n * kLn2Hi is exact) to keep r accurate;
// degree-5 minimax polynomial for exp(r). Max error ~1 ulp for normal results. Shared by
// the scalar and AVX-512 paths.
constexpr float kExpHi = 89.0f;    // > ln(FLT_MAX): clamping here still overflows to inf
constexpr float kExpLo = -104.0f;  // < ln(smallest subnormal): clamping here still gives 0
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kExpP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                            4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

/// @brief exp(x) in fp32 without libm, branch-free so loops over it auto-vectorise.
///        Overflows to inf and underflows through subnormals to 0 like expf.
inline float exp1(float x) {
  // Clamp to [kExpLo, kExpHi] so n stays in [-150, 128]. Done with integer masks on the
  // bits: GCC will not if-convert float compares under its default -ftrapping-math, and
  // with a plain select it threads the constant clamped arm into a branch; either stops
  // the loop from vectorising. Negative floats order like their bits as unsigned,
  // non-negative ones as signed. (NaN clamps too: exp1(NaN) is 0 or inf, while
  // silu(NaN) = NaN / ... stays NaN.)
  uint32_t u = f32_bits(x);
  const uint32_t lo = f32_bits(kExpLo), below = 0u - static_cast<uint32_t>(u > lo);
  u = (u & ~below) | (lo & below);
  const uint32_t hi = f32_bits(kExpHi);
  const bool over = static_cast<int32_t>(u) > static_cast<int32_t>(hi);
  const uint32_t above = 0u - static_cast<uint32_t>(over);
  x = bits_f32((u & ~above) | (hi & above));
  // Round to nearest via the 1.5 * 2^23 trick: no floor()/lrint() calls to block vectorising.
  const float n = (x * kLog2e + 12582912.0f) - 12582912.0f;
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float p = kExpP[0];
  for (int i = 1; i < 6; ++i) p = p * r + kExpP[i];
  const float y = p * r * r + r + 1.0f;
  // 2^n as two normal powers of two (|n / 2| <= 75), so the range ends reach inf / 0.
  const int32_t ni = static_cast<int32_t>(n), h = ni / 2;
  return y * bits_f32(static_cast<uint32_t>(h + 127) << 23) *
         bits_f32(static_cast<uint32_t>(ni - h + 127) << 23);
}

/// @brief silu(a) = a / (1 + exp(-a)) in fp32 (scalar path; ~2 ulp).
inline float silu1(float a) { return a / (1.0f + exp1(-a)); }

/// ntengine::dispatch_dtype (common/dtype.h) with the CPU storage types.
template <typename Fn>
inline void dispatch_dtype(DType dtype, Fn&& fn) {
  ::ntengine::dispatch_dtype<float, f16_t, bf16_t>(dtype, static_cast<Fn&&>(fn));
}

/// Work (elements) below which OpenMP's fork/join costs more than it saves.
constexpr int64_t kParallelMinElems = 1 << 15;

}  // namespace cpu
}  // namespace ntengine

// SwiGLU on the CPU: out[n, f] = silu(x[n, f]) * x[n, F + f], fp32 math.
//
// Memory-bound (read 2F, write F per row) except for exp: silu uses the Cephes exp of
// kernels/cpu/{scalar,avx512,avx2}.h (~2 ulp), 16 lanes at a time with AVX-512 or 8 with
// AVX2 + FMA when the build targets it. Rows are split statically over OpenMP threads.
// (Streaming stores for outputs beyond the L3 were tried: no gain outside noise in an
// in-process A/B at v2-50M.)
#include <type_traits>

#include "kernels/cpu/cpu_vec.h"
#include "kernels/kernels.h"

namespace ntengine {
namespace {

/// One row: a [F] (gate input), g [F] (linear half), o [F].
template <typename T>
inline void swiglu_row(const T* __restrict a, const T* __restrict g, T* __restrict o, int64_t F) {
#if NTE_AVX512
  cpu::for_chunks16(F, [&](int64_t f, __mmask16 m) {  // tail: masked lanes read 0, not stored
    cpu::prefetch(a + f, cpu::kPrefetchBytes);
    cpu::prefetch(g + f, cpu::kPrefetchBytes);
    const __m512 v = _mm512_mul_ps(cpu::silu16(cpu::load16(a + f, m)), cpu::load16(g + f, m));
    cpu::store16(o + f, v, m);
  });
#elif NTE_AVX2
  // Two chunks per step: the exp's dependent chain is long, two in flight hide it.
  int64_t f = 0;
  for (; f + 16 <= F; f += 16) {
    cpu::prefetch(a + f, cpu::kPrefetchBytes);
    cpu::prefetch(g + f, cpu::kPrefetchBytes);
    const __m256 v0 = _mm256_mul_ps(cpu::silu8(cpu::load8(a + f)), cpu::load8(g + f));
    const __m256 v1 = _mm256_mul_ps(cpu::silu8(cpu::load8(a + f + 8)), cpu::load8(g + f + 8));
    cpu::store8(o + f, v0);
    cpu::store8(o + f + 8, v1);
  }
  cpu::for_chunks8(F - f, [&](int64_t i, int64_t live) {  // tail: lanes past F read 0, not stored
    const __m256 v = _mm256_mul_ps(cpu::silu8(cpu::load8(a + f + i, live)), cpu::load8(g + f + i, live));
    cpu::store8(o + f + i, v, live);
  });
#else
  for (int64_t f = 0; f < F; ++f)
    cpu::store1(o + f, cpu::silu1(cpu::load1(a + f)) * cpu::load1(g + f));
#endif
}

}  // namespace

void swiglu_cpu(const void* x, int64_t x_row_stride, void* out, int64_t N, int64_t F, DType dtype) {
  cpu::dispatch_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* xp = static_cast<const T*>(x);  // [N, 2F], row stride x_row_stride
    T* op = static_cast<T*>(out);            // [N, F]
#pragma omp parallel for schedule(static) if (N * F > cpu::kParallelMinElems)
    for (int64_t n = 0; n < N; ++n) {
      const T* row = xp + n * x_row_stride;
      swiglu_row(row, row + F, op + n * F, F);
    }
  });
}

}  // namespace ntengine

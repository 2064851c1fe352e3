// SwiGLU on CUDA: out[n, f] = silu(x[n, f]) * x[n, F + f], fp32 arithmetic, one rounding
// to the storage dtype at the end. Contract: swiglu_cuda in kernels/kernels.h.
#include <type_traits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/kernels.h"
#include "kernels/launch_checks.h"

namespace ntengine {
namespace {

// One block per row (grid-stride over rows); the block's threads stride over the row in
// chunks of V elements. V = kVec<T> moves 16 bytes per load, V = 1 is the scalar fallback
// for unaligned pointers or widths that are not a multiple of the vector.
template <typename T, int V>
__global__ void swiglu_kernel(const T* __restrict__ x,  // [N, 2F], row stride x_row_stride
                              int64_t x_row_stride,
                              T* __restrict__ out,  // [N, F] contiguous
                              int64_t N, int64_t F) {
  const int64_t chunks = F / V;
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const T* a_row = x + n * x_row_stride;  // gate half: x[n, :F]
    const T* b_row = a_row + F;             // value half: x[n, F:]
    T* o_row = out + n * F;
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      const cuda::Pack<T, V> a = cuda::load<T, V>(a_row + c * V);
      const cuda::Pack<T, V> b = cuda::load<T, V>(b_row + c * V);
      cuda::Pack<T, V> o;
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const float av = cuda::to_float(a.v[i]);
        // silu(a) = a / (1 + exp(-a)) as torch computes it; expf (not __expf) and IEEE
        // division keep the result within an ulp or two of the CPU kernel. For very
        // negative a, exp overflows to inf and silu is -0, as it should be.
        const float silu = av / (1.0f + expf(-av));
        o.v[i] = cuda::from_float<T>(silu * cuda::to_float(b.v[i]));
      }
      cuda::store<T, V>(o_row + c * V, o);
    }
  }
}

template <typename T>
void launch_swiglu(const T* x, int64_t x_row_stride, T* out, int64_t N, int64_t F,
                   cudaStream_t stream) {
  constexpr int V = cuda::kVec<T>;
  // Row starts and the value half (offset F) stay 16-byte aligned only if both the stride
  // and F are multiples of the vector; otherwise take the scalar path.
  const bool vec = F % V == 0 && x_row_stride % V == 0 && cuda::aligned16(x) &&
                   cuda::aligned16(out);
  const int threads = cuda::block_threads(vec ? F / V : F);
  const unsigned int blocks = cuda::grid_blocks(N);
  if (vec) {
    swiglu_kernel<T, V><<<blocks, threads, 0, stream>>>(x, x_row_stride, out, N, F);
  } else {
    swiglu_kernel<T, 1><<<blocks, threads, 0, stream>>>(x, x_row_stride, out, N, F);
  }
  cuda::check_launch("swiglu_kernel");
}

}  // namespace

void swiglu_cuda(const void* x, int64_t x_row_stride, void* out, int64_t N, int64_t F, DType dtype,
                 void* stream) {
  check_swiglu_args("swiglu_cuda", x_row_stride, N, F);
  if (N == 0 || F == 0) return;  // an empty grid is a launch error, and there is no work
  cuda::dispatch_dtype(dtype, [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    launch_swiglu(static_cast<const scalar_t*>(x), x_row_stride, static_cast<scalar_t*>(out), N, F,
                  static_cast<cudaStream_t>(stream));
  });
}

}  // namespace ntengine

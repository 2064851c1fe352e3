// Residual add + LayerNorm on CUDA: sum = round(x + delta), normed = LN(sum) * weight + bias,
// with two-pass fp32 statistics taken from the rounded sum (what an unfused model computes).
// Contract: add_layernorm_cuda in kernels/kernels.h.
#include <type_traits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/kernels.h"
#include "kernels/launch_checks.h"

namespace ntengine {
namespace {

constexpr unsigned int kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// Sum of `v` over the block, returned to every thread. `red` is 32 floats of shared
// memory; the leading barrier lets callers reuse it for consecutive reductions.
// Requires blockDim.x to be a multiple of 32 (see cuda::block_threads).
__device__ __forceinline__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int n_warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  // Every warp folds the per-warp partials itself: same order, same result everywhere,
  // and no second broadcast barrier.
  return warp_sum(lane < n_warps ? red[lane] : 0.0f);
}

// One block per row (grid-stride over rows); threads stride over the row in V-wide chunks.
// Pass 1 writes the rounded sum, passes 2 and 3 read it back: each thread reads only the
// chunks it wrote itself, so program order makes them visible without a barrier, and the
// reread hits L1/L2 instead of keeping an unbounded row in registers.
template <typename T, int V>
__global__ void add_layernorm_kernel(const T* x,       // [N, E], row stride x_row_stride
                                     int64_t x_row_stride,
                                     const T* delta,   // [N, E], row stride delta_row_stride
                                     int64_t delta_row_stride,
                                     const T* weight,  // [E]
                                     const T* bias,    // [E]
                                     T* sum,           // [N, E] contiguous
                                     T* normed,        // [N, E] contiguous
                                     int64_t N, int64_t E, float eps) {
  __shared__ float red[32];
  const int64_t chunks = E / V;
  const float e_f = static_cast<float>(E);
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const T* x_row = x + n * x_row_stride;
    const T* d_row = delta + n * delta_row_stride;
    T* s_row = sum + n * E;
    T* y_row = normed + n * E;

    float acc = 0.0f;
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      const cuda::Pack<T, V> a = cuda::load<T, V>(x_row + c * V);
      const cuda::Pack<T, V> b = cuda::load<T, V>(d_row + c * V);
      cuda::Pack<T, V> s;
#pragma unroll
      for (int i = 0; i < V; ++i) {
        s.v[i] = cuda::from_float<T>(cuda::to_float(a.v[i]) + cuda::to_float(b.v[i]));
        acc += cuda::to_float(s.v[i]);  // statistics see the stored (rounded) value
      }
      cuda::store<T, V>(s_row + c * V, s);
    }
    const float mean = block_sum(acc, red) / e_f;

    // Two-pass variance: centred squares avoid the cancellation of E[s^2] - mean^2
    // when |mean| >> std, as happens on residual streams.
    float sq = 0.0f;
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      const cuda::Pack<T, V> s = cuda::load<T, V>(s_row + c * V);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const float d = cuda::to_float(s.v[i]) - mean;
        sq += d * d;
      }
    }
    // IEEE sqrt and division (not rsqrtf's ~2 ulp) as the CPU kernel computes it.
    const float rstd = 1.0f / sqrtf(block_sum(sq, red) / e_f + eps);

    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      const cuda::Pack<T, V> s = cuda::load<T, V>(s_row + c * V);
      const cuda::Pack<T, V> w = cuda::load<T, V>(weight + c * V);
      const cuda::Pack<T, V> b = cuda::load<T, V>(bias + c * V);
      cuda::Pack<T, V> y;
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const float z = (cuda::to_float(s.v[i]) - mean) * rstd;
        y.v[i] = cuda::from_float<T>(z * cuda::to_float(w.v[i]) + cuda::to_float(b.v[i]));
      }
      cuda::store<T, V>(y_row + c * V, y);
    }
  }
}

template <typename T>
void launch_add_layernorm(const T* x, int64_t x_row_stride, const T* delta,
                          int64_t delta_row_stride, const T* weight, const T* bias, T* sum,
                          T* normed, int64_t N, int64_t E, float eps, cudaStream_t stream) {
  constexpr int V = cuda::kVec<T>;
  // Every row start must stay 16-byte aligned: E (contiguous outputs) and both input
  // strides must be multiples of the vector, and all six base pointers aligned.
  const bool vec = E % V == 0 && x_row_stride % V == 0 && delta_row_stride % V == 0 &&
                   cuda::aligned16(x) && cuda::aligned16(delta) && cuda::aligned16(weight) &&
                   cuda::aligned16(bias) && cuda::aligned16(sum) && cuda::aligned16(normed);
  // Up to 512 threads: d_model 2560 in fp32 is 640 chunks, two per thread.
  const int threads = cuda::block_threads(vec ? E / V : E, 512);
  const unsigned int blocks = cuda::grid_blocks(N);
  if (vec) {
    add_layernorm_kernel<T, V><<<blocks, threads, 0, stream>>>(
        x, x_row_stride, delta, delta_row_stride, weight, bias, sum, normed, N, E, eps);
  } else {
    add_layernorm_kernel<T, 1><<<blocks, threads, 0, stream>>>(
        x, x_row_stride, delta, delta_row_stride, weight, bias, sum, normed, N, E, eps);
  }
  cuda::check_launch("add_layernorm_kernel");
}

}  // namespace

void add_layernorm_cuda(const void* x, int64_t x_row_stride, const void* delta,
                        int64_t delta_row_stride, const void* weight, const void* bias, void* sum,
                        void* normed, int64_t N, int64_t E, float eps, DType dtype, void* stream) {
  check_add_layernorm_args("add_layernorm_cuda", x_row_stride, delta_row_stride, N, E);
  if (N == 0 || E == 0) return;  // an empty grid is a launch error, and there is no work
  cuda::dispatch_dtype(dtype, [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    launch_add_layernorm(static_cast<const scalar_t*>(x), x_row_stride,
                         static_cast<const scalar_t*>(delta), delta_row_stride,
                         static_cast<const scalar_t*>(weight), static_cast<const scalar_t*>(bias),
                         static_cast<scalar_t*>(sum), static_cast<scalar_t*>(normed), N, E, eps,
                         static_cast<cudaStream_t>(stream));
  });
}

}  // namespace ntengine

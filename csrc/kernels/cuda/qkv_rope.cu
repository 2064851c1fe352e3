// QKV epilogue on CUDA: split the merged QKV GEMM output into per-head q, k, v [B, H, L, D],
// scale q and rotate q and k (rotate-half RoPE) in one pass, fp32 arithmetic.
// Contract: qkv_rope_cuda in kernels/kernels.h.
#include <type_traits>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/kernels.h"
#include "kernels/launch_checks.h"

namespace ntengine {
namespace {

// Rotary (v2 models, even D). One block per token (grid-stride over the B*L tokens). The
// block's threads stride over the token's 3*H*(D/2)/V work items: (section q|k|v, head h,
// V-wide chunk j of the first half). Each item reads x1 = x[j..j+V) and its partner
// x2 = x[j+D/2..), so the rotation needs no shuffles and every load and store is a whole pack.
template <typename T, int V>
__global__ void qkv_rope_kernel(const T* __restrict__ qkv,  // [B, L, 3E], row stride given
                                int64_t qkv_row_stride,
                                T* __restrict__ q,  // [B, H, L, D]
                                T* __restrict__ k,  // [B, H, L, D]
                                T* __restrict__ v,  // [B, H, L, D]
                                const int32_t* __restrict__ positions,  // [B, L] or nullptr
                                const float* __restrict__ cos,  // [P, D/2]
                                const float* __restrict__ sin,  // [P, D/2]
                                int64_t B, int64_t L, int H, int D, float q_scale) {
  const int half = D / 2;
  const int chunks = half / V;     // packs per half head
  const int per_sec = H * chunks;  // items per section (q, k or v)
  const int items = 3 * per_sec;
  const int64_t E = static_cast<int64_t>(H) * D;
  for (int64_t row = blockIdx.x; row < B * L; row += gridDim.x) {
    const int64_t b = row / L;
    const int64_t t = row - b * L;
    const int64_t p = positions != nullptr ? positions[row] : t;
    const T* src = qkv + row * qkv_row_stride;
    for (int i = threadIdx.x; i < items; i += blockDim.x) {
      const int sec = i / per_sec;  // 0 q, 1 k, 2 v
      const int r = i - sec * per_sec;
      const int h = r / chunks;
      const int j = (r - h * chunks) * V;
      const T* x = src + sec * E + static_cast<int64_t>(h) * D + j;
      T* dst = (sec == 0 ? q : sec == 1 ? k : v) + ((b * H + h) * L + t) * D + j;
      const cuda::Pack<T, V> x1 = cuda::load<T, V>(x);
      const cuda::Pack<T, V> x2 = cuda::load<T, V>(x + half);
      if (sec == 2) {  // v is copied bit for bit: no round trip through fp32
        cuda::store<T, V>(dst, x1);
        cuda::store<T, V>(dst + half, x2);
        continue;
      }
      const float scale = sec == 0 ? q_scale : 1.0f;
      cuda::Pack<T, V> o1, o2;
      const cuda::Pack<float, V> c = cuda::load<float, V>(cos + p * half + j);
      const cuda::Pack<float, V> s = cuda::load<float, V>(sin + p * half + j);
      // The _rn intrinsics stop nvcc from contracting into FMAs: two products, then the
      // sum, then * scale, rounded like the reference and the CPU kernel (fp32 bit-exact).
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const float a = cuda::to_float(x1.v[e]);
        const float bb = cuda::to_float(x2.v[e]);
        const float r1 = __fsub_rn(__fmul_rn(a, c.v[e]), __fmul_rn(bb, s.v[e]));
        const float r2 = __fadd_rn(__fmul_rn(bb, c.v[e]), __fmul_rn(a, s.v[e]));
        o1.v[e] = cuda::from_float<T>(__fmul_rn(r1, scale));
        o2.v[e] = cuda::from_float<T>(__fmul_rn(r2, scale));
      }
      cuda::store<T, V>(dst, o1);
      cuda::store<T, V>(dst + half, o2);
    }
  }
}

// No rotary (learned-position v1 models): any head size. Items are V-wide chunks of whole
// heads, not of half heads, because D may be odd: AgroNT-1B has D = 75, which the half-head
// items of the rotary kernel cannot cover. q is scaled, k and v are copied bit for bit.
template <typename T, int V>
__global__ void qkv_split_kernel(const T* __restrict__ qkv,  // [B, L, 3E], row stride given
                                 int64_t qkv_row_stride,
                                 T* __restrict__ q,  // [B, H, L, D]
                                 T* __restrict__ k,  // [B, H, L, D]
                                 T* __restrict__ v,  // [B, H, L, D]
                                 int64_t B, int64_t L, int H, int D, float q_scale) {
  const int chunks = D / V;        // packs per head
  const int per_sec = H * chunks;  // items per section (q, k or v)
  const int items = 3 * per_sec;
  const int64_t E = static_cast<int64_t>(H) * D;
  for (int64_t row = blockIdx.x; row < B * L; row += gridDim.x) {
    const int64_t b = row / L;
    const int64_t t = row - b * L;
    const T* src = qkv + row * qkv_row_stride;
    for (int i = threadIdx.x; i < items; i += blockDim.x) {
      const int sec = i / per_sec;  // 0 q, 1 k, 2 v
      const int r = i - sec * per_sec;
      const int h = r / chunks;
      const int j = (r - h * chunks) * V;
      const T* x = src + sec * E + static_cast<int64_t>(h) * D + j;
      T* dst = (sec == 0 ? q : sec == 1 ? k : v) + ((b * H + h) * L + t) * D + j;
      const cuda::Pack<T, V> x1 = cuda::load<T, V>(x);
      if (sec != 0) {  // k and v: no round trip through fp32
        cuda::store<T, V>(dst, x1);
        continue;
      }
      cuda::Pack<T, V> o;
#pragma unroll
      for (int e = 0; e < V; ++e) o.v[e] = cuda::from_float<T>(cuda::to_float(x1.v[e]) * q_scale);
      cuda::store<T, V>(dst, o);
    }
  }
}

template <typename T>
void launch_qkv_rope(const T* qkv, int64_t qkv_row_stride, T* q, T* k, T* v,
                     const int32_t* positions, const float* cos, const float* sin, int64_t B,
                     int64_t L, int H, int D, float q_scale, cudaStream_t stream) {
  constexpr int V = cuda::kVec<T>;
  const unsigned int blocks = cuda::grid_blocks(B * L);
  const bool bases = qkv_row_stride % V == 0 && cuda::aligned16(qkv) && cuda::aligned16(q) &&
                     cuda::aligned16(k) && cuda::aligned16(v);
  if (cos == nullptr) {
    // With D and the row stride multiples of V, every offset (row, section, head, output
    // [b, h, t]) is a multiple of V elements; D = 75 (odd) takes the scalar path.
    const bool vec = D % V == 0 && bases;
    const int threads = cuda::block_threads(3LL * H * (D / (vec ? V : 1)));
    if (vec) {
      qkv_split_kernel<T, V><<<blocks, threads, 0, stream>>>(qkv, qkv_row_stride, q, k, v, B, L, H,
                                                             D, q_scale);
    } else {
      qkv_split_kernel<T, 1><<<blocks, threads, 0, stream>>>(qkv, qkv_row_stride, q, k, v, B, L, H,
                                                             D, q_scale);
    }
    cuda::check_launch("qkv_split_kernel");
    return;
  }
  // With D/2 and the row stride multiples of V, every offset (row, section, head, half,
  // output [b, h, t]) is a multiple of V elements, and the fp32 table offsets p*D/2 + j a
  // multiple of V >= 4 floats, so aligned bases are all the vector path needs.
  const bool vec = (D / 2) % V == 0 && bases && cuda::aligned16(cos) && cuda::aligned16(sin);
  const int threads = cuda::block_threads(3LL * H * ((D / 2) / (vec ? V : 1)));
  if (vec) {
    qkv_rope_kernel<T, V><<<blocks, threads, 0, stream>>>(qkv, qkv_row_stride, q, k, v, positions,
                                                          cos, sin, B, L, H, D, q_scale);
  } else {
    qkv_rope_kernel<T, 1><<<blocks, threads, 0, stream>>>(qkv, qkv_row_stride, q, k, v, positions,
                                                          cos, sin, B, L, H, D, q_scale);
  }
  cuda::check_launch("qkv_rope_kernel");
}

}  // namespace

void qkv_rope_cuda(const void* qkv, int64_t qkv_row_stride, void* q, void* k, void* v,
                   const int32_t* positions, const float* cos, const float* sin, int64_t B,
                   int64_t L, int64_t H, int64_t D, float q_scale, DType dtype, void* stream) {
  check_qkv_rope_args("qkv_rope_cuda", qkv_row_stride, cos, sin, B, L, H, D);
  if (B == 0 || L == 0 || H == 0 || D == 0) return;  // no work, and an empty grid is an error
  cuda::dispatch_dtype(dtype, [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    launch_qkv_rope(static_cast<const scalar_t*>(qkv), qkv_row_stride, static_cast<scalar_t*>(q),
                    static_cast<scalar_t*>(k), static_cast<scalar_t*>(v), positions, cos, sin, B, L,
                    static_cast<int>(H), static_cast<int>(D), q_scale,
                    static_cast<cudaStream_t>(stream));
  });
}

}  // namespace ntengine

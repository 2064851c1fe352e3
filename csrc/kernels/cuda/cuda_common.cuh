// Shared pieces of the CUDA kernels: dtype dispatch, fp32 <-> storage conversion,
// 16-byte packs, launch sizing and the host-side launch check. Included by .cu files only.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/check.h"
#include "common/dtype.h"

namespace ntengine {
namespace cuda {

/// ntengine::dispatch_dtype (common/dtype.h) with the CUDA storage types.
template <typename Fn>
inline void dispatch_dtype(DType dtype, Fn&& fn) {
  ::ntengine::dispatch_dtype<float, __half, __nv_bfloat16>(dtype, static_cast<Fn&&>(fn));
}

// ---- fp32 <-> storage (round to nearest even, as torch's .to() does) --------------------
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// ---- vector packs --------------------------------------------------------------------------
/// Elements of T in one 16-byte load (4 fp32, 8 fp16/bf16).
template <typename T>
constexpr int kVec = 16 / static_cast<int>(sizeof(T));

/// V consecutive elements moved as one unit. Alignment is capped at 16 bytes: that is
/// all the launchers check, so a 32-byte pack (8 fp32 of a rotary table) becomes two
/// 16-byte loads rather than one the address cannot honour.
template <typename T, int V>
struct alignas(sizeof(T) * V < 16 ? sizeof(T) * V : 16) Pack {
  T v[V];
};

template <typename T, int V>
__device__ __forceinline__ Pack<T, V> load(const T* p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}

template <typename T, int V>
__device__ __forceinline__ void store(T* p, const Pack<T, V>& x) {
  *reinterpret_cast<Pack<T, V>*>(p) = x;
}

/// True when `p` may be read or written with 16-byte vector instructions.
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// ---- launch sizing ---------------------------------------------------------------------------
/// Threads per block for `work` items per row: a whole number of warps (the block
/// reductions shuffle with a full mask), at least one warp, at most `cap`.
inline int block_threads(int64_t work, int cap = 256) {
  const int64_t warps = (work + 31) / 32;
  const int64_t threads = warps * 32;
  return static_cast<int>(threads < 32 ? 32 : (threads > cap ? cap : threads));
}

/// Blocks for `rows` rows with one block per row; the kernels grid-stride over rows,
/// so very tall inputs reuse blocks instead of exceeding the grid limit.
inline unsigned int grid_blocks(int64_t rows) {
  constexpr int64_t kMaxBlocks = 65535;
  return static_cast<unsigned int>(rows < kMaxBlocks ? rows : kMaxBlocks);
}

/// Throws CheckError naming `kernel` if the last launch on this thread failed
/// (bad configuration, no device, no driver). Host side only.
inline void check_launch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  NTE_CHECK(err == cudaSuccess, kernel, " launch failed: ", cudaGetErrorName(err), " (",
            cudaGetErrorString(err), ")");
}

}  // namespace cuda
}  // namespace ntengine

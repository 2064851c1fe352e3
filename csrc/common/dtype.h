// Our own dtype tag for raw-buffer kernels (no torch types cross this boundary).
// The numeric values are part of the binding ABI: ntengine/ops.py passes them.
#pragma once

#include <cstdint>

namespace ntengine {

enum class DType : int32_t {
  kFloat32 = 0,
  kFloat16 = 1,
  kBFloat16 = 2,
};

/// @brief The one dtype dispatch of the CPU and CUDA kernels: calls fn(static_cast<T*>(nullptr))
///        with T = Float, Half or BFloat16, the storage type of `dtype` on that device (CPU:
///        float, f16_t, bf16_t; CUDA: float, __half, __nv_bfloat16); a generic lambda recovers
///        T from the tag's type. The bindings reject codes outside the enum (no default case).
template <typename Float, typename Half, typename BFloat16, typename Fn>
inline void dispatch_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kFloat32:
      fn(static_cast<Float*>(nullptr));
      break;
    case DType::kFloat16:
      fn(static_cast<Half*>(nullptr));
      break;
    case DType::kBFloat16:
      fn(static_cast<BFloat16*>(nullptr));
      break;
  }
}

}  // namespace ntengine

// What the two binding files (bindings_kernels.cpp, bindings_cuda.cpp) share: turning
// the integers that ntengine/ops.py passes into pointers and dtypes.
#pragma once

#include <cstdint>

#include "common/check.h"
#include "common/dtype.h"

namespace ntengine::binding {

/// A tensor's data_ptr() (an integer from Python) as a typed pointer.
template <typename T = void>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

/// The DType code ops.DTYPE_CODES sends (0 fp32, 1 fp16, 2 bf16).
inline DType to_dtype(int code) {
  NTE_CHECK(code >= 0 && code <= 2, "unknown dtype code ", code);
  return static_cast<DType>(code);
}

}  // namespace ntengine::binding

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

}  // namespace ntengine

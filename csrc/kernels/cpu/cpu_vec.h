// Shared CPU kernel helpers: the portable scalar layer (kernels/cpu/scalar.h) and, when the
// build targets AVX-512, the 16-lane layer (kernels/cpu/avx512.h; NTE_AVX512 says which).
#pragma once

#include "kernels/cpu/avx512.h"
#include "kernels/cpu/scalar.h"

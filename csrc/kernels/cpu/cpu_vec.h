// Shared CPU kernel helpers: the portable scalar layer (kernels/cpu/scalar.h) and, when the
// build targets them, the 16-lane AVX-512 layer (kernels/cpu/avx512.h; NTE_AVX512 says
// which) and the 8-lane AVX2 + FMA + F16C layer (kernels/cpu/avx2.h; NTE_AVX2).
// Kernels choose with `#if NTE_AVX512 ... #elif NTE_AVX2 ... #else ... #endif`.
#pragma once

#include "kernels/cpu/avx2.h"
#include "kernels/cpu/avx512.h"
#include "kernels/cpu/scalar.h"

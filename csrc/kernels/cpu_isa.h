// Run-time choice among the builds of the CPU kernels, one per x86-64 ISA level.
//
// Every file in kernels/cpu/ is compiled once per level (CMakeLists.txt: baseline,
// x86-64-v3 = AVX2 + FMA + F16C + BMI1/2 + LZCNT + MOVBE, x86-64-v4 = + AVX-512
// F/BW/CD/DQ/VL, and v4 + AVX512_BF16), each build in a namespace of its own
// (ntengine_cpu_<level>), as ATen's CPU_CAPABILITY builds are, so no inline function compiled
// for a wider ISA can be linked into a narrower build. Each build exports one table of
// plain function pointers (below); the kernels.h functions choose a table once, from
// cpuid, or from NTENGINE_CPU_ISA / set_cpu_isa(). Nothing depends on the build machine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

/// The kernels of one build, with the dtype as its int code (common/dtype.h values): plain
/// types only, so the table means the same in every build's namespace.
struct NteCpuKernelTable {
  void (*qkv_rope)(const void*, int64_t, void*, void*, void*, const int32_t*, const float*,
                   const float*, int64_t, int64_t, int64_t, int64_t, float, int);
  void (*swiglu)(const void*, int64_t, void*, int64_t, int64_t, int);
  void (*add_layernorm)(const void*, int64_t, const void*, int64_t, const void*, const void*,
                        void*, void*, int64_t, int64_t, float, int);
  void (*attention)(const void*, const void*, const void*, void*, const int32_t*,
                    const int32_t*, int64_t, int64_t, int64_t, int64_t, int64_t, int);
};

namespace ntengine {

/// Levels from narrowest to widest; names as NTENGINE_CPU_ISA spells them.
inline const std::vector<std::string>& cpu_isa_levels() {
  static const std::vector<std::string> levels = {"baseline", "avx2", "avx512", "avx512_bf16"};
  return levels;
}

/// The levels this CPU (and its OS) can run that this binary was built with.
std::vector<std::string> cpu_isa_supported();

/// The level the kernels run at: the widest supported, unless forced.
std::string cpu_isa();

/// Force a level; throws std::invalid_argument (unknown name) or std::runtime_error
/// (built or CPU lacks it, naming the missing instructions).
void set_cpu_isa(const std::string& level);

/// CPU brand string and the feature flags that matter here (cpuid + OS state).
std::string cpu_model();
std::vector<std::string> cpu_flags();

}  // namespace ntengine

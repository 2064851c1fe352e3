// The kernels.h CPU functions: forward to the build of the kernels this CPU runs best, or
// to the one NTENGINE_CPU_ISA / set_cpu_isa() forces. Compiled once, for the baseline ISA.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu_isa.h"
#include "kernels/kernels.h"
#include "kernels/launch_checks.h"

#if defined(__x86_64__) || defined(_M_X64)
#define NTE_X86 1
#if defined(_MSC_VER)
#include <immintrin.h>
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#else
#define NTE_X86 0
#endif

// One entry per level CMake built (NTE_CPU_BUILT_<LEVEL> defined for each).
extern "C" const NteCpuKernelTable* nte_cpu_baseline();
#ifdef NTE_CPU_BUILT_AVX2
extern "C" const NteCpuKernelTable* nte_cpu_avx2();
#endif
#ifdef NTE_CPU_BUILT_AVX512
extern "C" const NteCpuKernelTable* nte_cpu_avx512();
#endif
#ifdef NTE_CPU_BUILT_AVX512_BF16
extern "C" const NteCpuKernelTable* nte_cpu_avx512_bf16();
#endif

namespace ntengine {
namespace {

struct Features {
  bool avx2 = false, fma = false, f16c = false, os_avx = false;
  bool bmi1 = false, bmi2 = false, lzcnt = false, movbe = false;  // the rest of x86-64-v3
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512cd = false;
  bool os_avx512 = false;
  bool avx512_bf16 = false, amx_bf16 = false;
};

#if NTE_X86
void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
#if defined(_MSC_VER)
  int out[4];
  __cpuidex(out, static_cast<int>(leaf), static_cast<int>(sub));
  for (int i = 0; i < 4; ++i) r[i] = static_cast<unsigned>(out[i]);
#else
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

uint64_t xgetbv0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
#endif
}
#endif

const Features& features() {
  static const Features f = [] {
    Features x;
#if NTE_X86
    unsigned r[4];
    cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    cpuid(1, 0, r);
    const bool osxsave = r[2] & (1u << 27);
    x.fma = r[2] & (1u << 12);
    x.movbe = r[2] & (1u << 22);
    x.f16c = r[2] & (1u << 29);
    // The OS must save the wider registers on a context switch: XCR0 bits 1-2 (AVX) and
    // 5-7 (AVX-512 opmask and upper ZMM state).
    const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    x.os_avx = (r[2] & (1u << 28)) && (xcr0 & 0x6) == 0x6;
    x.os_avx512 = x.os_avx && (xcr0 & 0xe0) == 0xe0;
    if (max_leaf >= 7) {
      cpuid(7, 0, r);
      const unsigned max_sub = r[0];
      x.bmi1 = r[1] & (1u << 3);
      x.avx2 = r[1] & (1u << 5);
      x.bmi2 = r[1] & (1u << 8);
      x.avx512cd = r[1] & (1u << 28);
      x.avx512f = r[1] & (1u << 16);
      x.avx512dq = r[1] & (1u << 17);
      x.avx512bw = r[1] & (1u << 30);
      x.avx512vl = r[1] & (1u << 31);
      x.amx_bf16 = r[3] & (1u << 22);
      if (max_sub >= 1) {
        cpuid(7, 1, r);
        x.avx512_bf16 = r[0] & (1u << 5);
      }
    }
    cpuid(0x80000000u, 0, r);
    if (r[0] >= 0x80000001u) {
      cpuid(0x80000001u, 0, r);
      x.lzcnt = r[2] & (1u << 5);
    }
#endif
    return x;
  }();
  return f;
}

/// Instructions `level` needs that this CPU or its OS lacks ("" when it can run it).
std::string missing(const std::string& level) {
  const Features& f = features();
  std::string out;
  auto need = [&](bool ok, const char* name) {
    if (!ok) out += (out.empty() ? "" : " ") + std::string(name);
  };
  if (level == "baseline") return out;
  need(f.os_avx && f.avx2, "AVX2");
  need(f.fma, "FMA");
  need(f.f16c, "F16C");
  need(f.bmi1, "BMI1");
  need(f.bmi2, "BMI2");
  need(f.lzcnt, "LZCNT");
  need(f.movbe, "MOVBE");
  if (level == "avx2") return out;
  need(f.os_avx512 && f.avx512f, "AVX512F");
  need(f.avx512bw, "AVX512BW");
  need(f.avx512vl, "AVX512VL");
  need(f.avx512dq, "AVX512DQ");
  need(f.avx512cd, "AVX512CD");
  if (level == "avx512") return out;
  need(f.avx512_bf16, "AVX512_BF16");
  return out;
}

const NteCpuKernelTable* table_for(const std::string& level) {
  if (level == "baseline") return nte_cpu_baseline();
#ifdef NTE_CPU_BUILT_AVX2
  if (level == "avx2") return nte_cpu_avx2();
#endif
#ifdef NTE_CPU_BUILT_AVX512
  if (level == "avx512") return nte_cpu_avx512();
#endif
#ifdef NTE_CPU_BUILT_AVX512_BF16
  if (level == "avx512_bf16") return nte_cpu_avx512_bf16();
#endif
  return nullptr;
}

std::mutex g_mutex;
std::string g_level;                               // guarded by g_mutex
std::atomic<const NteCpuKernelTable*> g_table{nullptr};

std::string widest_supported() {
  const std::vector<std::string> ok = cpu_isa_supported();
  return ok.back();
}

void select(const std::string& level) {
  const auto& all = cpu_isa_levels();
  bool known = false;
  for (const auto& l : all) known = known || l == level;
  if (!known) {
    std::string names;
    for (const auto& l : all) names += (names.empty() ? "" : ", ") + l;
    throw std::invalid_argument("unknown CPU ISA level '" + level + "': choose one of " + names);
  }
  const NteCpuKernelTable* t = table_for(level);
  if (t == nullptr)
    throw std::runtime_error("CPU ISA level '" + level + "' was not built into this ntengine (" +
                             "a compiler without its flags, or not an x86-64 build)");
  const std::string lacks = missing(level);
  if (!lacks.empty())
    throw std::runtime_error("CPU ISA level '" + level + "' needs " + lacks +
                             ", which this CPU (or its OS) lacks; the widest it runs is '" +
                             widest_supported() + "'");
  g_level = level;
  g_table.store(t);
}

const NteCpuKernelTable& table() {
  const NteCpuKernelTable* t = g_table.load();
  if (t != nullptr) return *t;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_table.load() == nullptr) {
    // A bad NTENGINE_CPU_ISA is refused by ntengine/cpu.py before any kernel runs; here
    // (C++ callers, worker threads) it must not throw, so it falls back to the widest level.
    const char* env = std::getenv("NTENGINE_CPU_ISA");
    try {
      select(env && *env ? std::string(env) : widest_supported());
    } catch (const std::exception&) {
      select(widest_supported());
    }
  }
  return *g_table.load();
}

}  // namespace

std::vector<std::string> cpu_isa_supported() {
  std::vector<std::string> out;
  for (const auto& level : cpu_isa_levels())
    if (table_for(level) != nullptr && missing(level).empty()) out.push_back(level);
  return out;
}

std::string cpu_isa() {
  table();
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_level;
}

void set_cpu_isa(const std::string& level) {
  std::lock_guard<std::mutex> lock(g_mutex);
  select(level);
}

std::string cpu_model() {
#if NTE_X86
  unsigned r[4];
  cpuid(0x80000000u, 0, r);
  if (r[0] < 0x80000004u) return "unknown x86-64 CPU";
  char brand[49] = {};
  for (unsigned i = 0; i < 3; ++i) {
    cpuid(0x80000002u + i, 0, r);
    std::memcpy(brand + 16 * i, r, 16);
  }
  std::string s(brand);
  const size_t a = s.find_first_not_of(' '), b = s.find_last_not_of(' ');
  return a == std::string::npos ? "unknown x86-64 CPU" : s.substr(a, b - a + 1);
#else
  return "non-x86 CPU";
#endif
}

std::vector<std::string> cpu_flags() {
  const Features& f = features();
  std::vector<std::string> out;
  const std::pair<bool, const char*> flags[] = {
      {f.os_avx && f.avx2, "avx2"},   {f.fma, "fma"},           {f.f16c, "f16c"},
      {f.os_avx512 && f.avx512f, "avx512f"}, {f.avx512bw, "avx512bw"}, {f.avx512vl, "avx512vl"},
      {f.avx512dq, "avx512dq"},       {f.avx512cd, "avx512cd"},   {f.avx512_bf16, "avx512_bf16"},
      {f.amx_bf16, "amx_bf16"},       {f.bmi2, "bmi2"},           {f.movbe, "movbe"}};
  for (const auto& [ok, name] : flags)
    if (ok) out.push_back(name);
  return out;
}

void qkv_rope_cpu(const void* qkv, int64_t qkv_row_stride, void* q, void* k, void* v,
                  const int32_t* positions, const float* cos, const float* sin, int64_t B, int64_t L,
                  int64_t H, int64_t D, float q_scale, DType dtype) {
  check_qkv_rope_args("qkv_rope_cpu", qkv_row_stride, cos, sin, B, L, H, D);
  if (B == 0 || L == 0 || H == 0 || D == 0) return;
  table().qkv_rope(qkv, qkv_row_stride, q, k, v, positions, cos, sin, B, L, H, D, q_scale,
                   static_cast<int>(dtype));
}

void swiglu_cpu(const void* x, int64_t x_row_stride, void* out, int64_t N, int64_t F, DType dtype) {
  check_swiglu_args("swiglu_cpu", x_row_stride, N, F);
  if (N == 0 || F == 0) return;
  table().swiglu(x, x_row_stride, out, N, F, static_cast<int>(dtype));
}

void add_layernorm_cpu(const void* x, int64_t x_row_stride, const void* delta, int64_t delta_row_stride,
                       const void* weight, const void* bias, void* sum, void* normed, int64_t N, int64_t E,
                       float eps, DType dtype) {
  check_add_layernorm_args("add_layernorm_cpu", x_row_stride, delta_row_stride, N, E);
  if (N == 0 || E == 0) return;
  table().add_layernorm(x, x_row_stride, delta, delta_row_stride, weight, bias, sum, normed, N, E, eps,
                        static_cast<int>(dtype));
}

void attention_cpu(const void* q, const void* k, const void* v, void* out, const int32_t* lengths,
                   const int32_t* cu_seqlens, int64_t n_seqs, int64_t B, int64_t H, int64_t L, int64_t D,
                   DType dtype) {
  table().attention(q, k, v, out, lengths, cu_seqlens, n_seqs, B, H, L, D, static_cast<int>(dtype));
}

}  // namespace ntengine

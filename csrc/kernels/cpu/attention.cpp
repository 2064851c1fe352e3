// Flash-style attention on the CPU: softmax(q k^T) v per (segment, head), never forming
// the L x L matrix. Contract in kernels.h (attention_cpu).
//
// Work split. A "segment" is one run of tokens that attend to each other: row b's first
// lengths[b] tokens (padded mode) or [cu[s], cu[s+1]) of the single row (packed mode).
// Tasks are (segment, head, query range): whole heads when there are >= 8 per thread,
// else heads split into query blocks; scheduled dynamically over OpenMP threads. A thread
// packs K and V of the (segment, head) it works on into its own scratch (again only when
// the pair changes), so padded keys and other segments are never read or computed.
//
// AVX-512 path, per task: for each block of kBlockQ = 64 queries, for each key tile of
// n_k = 512 keys, for each strip of kStrip = 8 queries: S = Q K^T (register-blocked
// 8 rows x 32 keys), online softmax of the strip (fp32 exp2 polynomial, running max and
// sum per row), O = alpha * O + P V (register-blocked 8 rows x up to 48 columns). A strip's
// S, P and O rows live in L1; the K / V tile in L2.
// The inner products run on 32-bit "words": bf16 storage uses vdpbf16ps on pairs of
// bf16 (a word = two neighbours along the reduction), fp32 uses FMA (a word = one float).
// Packed layouts, in words (np = reduction words per row, D16 = D rounded up to 16):
//   q  [kBlockQ][np]           rows of the query block, zero-padded
//   k  [keys/16][np][16]       16 keys per zmm, one reduction word per lane
//   v  [keys/kPair][D16]       one output column per lane, kPair keys per word
//   p  [kStrip][n_k] elements  softmax weights (bf16 or fp32), row-major
// AVX2 + FMA builds (no AVX-512) take the 8-lane worker of kernels/cpu/attention_avx2.h:
// same split and loop order, 6-row strips, fp32 FMA for both storage types.
// Without either (portable builds) a plain per-row loop computes the same thing.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_vec.h"
#include "kernels/kernels.h"

namespace ntengine {
namespace {

using cpu::bf16_t;

/// Tokens [start, start + len) of batch row b attend to each other.
struct Segment {
  int64_t b, start, len;
};

constexpr int64_t kBlockQ = 64;  // queries whose O rows are accumulated together
constexpr int kStrip = 8;        // queries per register strip

std::vector<Segment> segments(const int32_t* lengths, const int32_t* cu, int64_t n_seqs, int64_t B,
                              int64_t L) {
  std::vector<Segment> segs;
  if (cu != nullptr) {
    for (int64_t s = 0; s < n_seqs; ++s)
      if (cu[s + 1] > cu[s]) segs.push_back({0, cu[s], cu[s + 1] - cu[s]});
  } else {
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = lengths ? std::clamp<int64_t>(lengths[b], 0, L) : L;
      if (len > 0) segs.push_back({b, 0, len});
    }
  }
  return segs;
}

/// 64-byte aligned fp32/word scratch owned by one thread.
struct Scratch {
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> mem;
  size_t bytes = 0;
  void* get(size_t n) {
    if (n > bytes) {
      bytes = (n + 63) / 64 * 64;
      mem.reset(std::aligned_alloc(64, bytes));
    }
    return mem.get();
  }
};

// ------------------------------------------------------------------ portable fallback
/// One query row against keys [0, len) of its segment: two-pass softmax in fp32.
template <typename T>
void attend_row(const T* q, const T* k, const T* v, T* out, int64_t len, int64_t D, float* s,
                float* acc) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < len; ++j) {
    float dot = 0.f;
    for (int64_t d = 0; d < D; ++d) dot += cpu::to_f32(q[d]) * cpu::to_f32(k[j * D + d]);
    s[j] = dot;
    mx = std::max(mx, dot);
  }
  float sum = 0.f;
  for (int64_t j = 0; j < len; ++j) sum += (s[j] = std::exp(s[j] - mx));
  std::fill(acc, acc + D, 0.f);
  for (int64_t j = 0; j < len; ++j)
    for (int64_t d = 0; d < D; ++d) acc[d] += s[j] * cpu::to_f32(v[j * D + d]);
  for (int64_t d = 0; d < D; ++d) cpu::store1(out + d, acc[d] / sum);
}

}  // namespace
}  // namespace ntengine

#if NTE_AVX512
#include "kernels/cpu/attention_avx512.h"
#define NTE_ATTENTION_TILED 1
namespace ntengine {
namespace {
namespace tiled = avx512;
}  // namespace
}  // namespace ntengine
#elif NTE_AVX2
#include "kernels/cpu/attention_avx2.h"
#define NTE_ATTENTION_TILED 1
namespace ntengine {
namespace {
namespace tiled = avx2;
}  // namespace
}  // namespace ntengine
#else
#define NTE_ATTENTION_TILED 0
#endif

namespace ntengine {
namespace {

/// kTiled: the AVX-512 / AVX2 worker (fp32 / bf16 storage); otherwise the per-row loop.
template <typename T, bool kTiled>
void attention_typed(const T* q, const T* k, const T* v, T* out, const int32_t* lengths,
                     const int32_t* cu, int64_t n_seqs, int64_t B, int64_t H, int64_t L,
                     int64_t D) {
  const std::vector<Segment> segs = segments(lengths, cu, n_seqs, B, L);
  // Tasks are (segment, head, query range). Whole heads when there are enough of them
  // (each head's K / V is then packed once); otherwise heads split into query blocks
  // until there are ~8 tasks per thread.
  struct Task {
    int32_t seg, h;
    int64_t q_begin, q_end;
  };
  const int64_t n_heads = static_cast<int64_t>(segs.size()) * H;
  const int64_t want = 8 * omp_get_max_threads();
  const int64_t split = n_heads >= want ? 1 : (want + n_heads - 1) / std::max<int64_t>(n_heads, 1);
  std::vector<Task> tasks;
  for (size_t s = 0; s < segs.size(); ++s) {
    const int64_t n_blocks = (segs[s].len + kBlockQ - 1) / kBlockQ;
    const int64_t per_task = (n_blocks + split - 1) / split * kBlockQ;
    for (int64_t h = 0; h < H; ++h)
      for (int64_t q0 = 0; q0 < segs[s].len; q0 += per_task)
        tasks.push_back({static_cast<int32_t>(s), static_cast<int32_t>(h), q0,
                         std::min(q0 + per_task, segs[s].len)});
  }
  const int64_t n_tasks = static_cast<int64_t>(tasks.size());
  int64_t max_len = 0;  // sizes the per-thread K / V scratch (packed rows: not all of L)
  for (const Segment& sg : segs) max_len = std::max(max_len, sg.len);

#pragma omp parallel
  {
#if NTE_ATTENTION_TILED
    std::unique_ptr<tiled::Worker<T>> worker;
    if constexpr (kTiled) worker = std::make_unique<tiled::Worker<T>>(max_len, D);
#endif
    std::vector<float> s(kTiled ? 0 : max_len), acc(kTiled ? 0 : D);
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t i = 0; i < n_tasks; ++i) {
      const Task& t = tasks[i];
      const Segment& sg = segs[t.seg];
      const int64_t head = (sg.b * H + t.h) * L + sg.start;  // token 0 of the q/k/v rows
      T* o = out + ((sg.b * L + sg.start) * H + t.h) * D;    // [len] rows of stride H * D
#if NTE_ATTENTION_TILED
      if constexpr (kTiled) {
        worker->run(q + head * D, k + head * D, v + head * D, o, H * D, sg.len, t.q_begin, t.q_end,
                    t.seg * H + t.h);
        continue;
      }
#endif
      for (int64_t r = t.q_begin; r < t.q_end; ++r)
        attend_row(q + (head + r) * D, k + head * D, v + head * D, o + r * H * D, sg.len, D,
                   s.data(), acc.data());
    }
    // Rows that belong to no segment (padding) are written as 0.
#pragma omp for schedule(static)
    for (int64_t row = 0; row < B * L; ++row) {
      const int64_t b = row / L, t = row % L;
      const bool real = cu ? t >= cu[0] && t < cu[n_seqs] : t < (lengths ? lengths[b] : L);
      if (!real) std::memset(static_cast<void*>(out + row * H * D), 0, sizeof(T) * H * D);
    }
  }
}

}  // namespace

void attention_cpu(const void* q, const void* k, const void* v, void* out, const int32_t* lengths,
                   const int32_t* cu_seqlens, int64_t n_seqs, int64_t B, int64_t H, int64_t L,
                   int64_t D, DType dtype) {
  cpu::dispatch_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    // fp16 is refused by ops.py; should it arrive anyway it takes the per-row loop.
    constexpr bool kTiled = NTE_ATTENTION_TILED && !std::is_same_v<T, cpu::f16_t>;
    attention_typed<T, kTiled>(static_cast<const T*>(q), static_cast<const T*>(k),
                               static_cast<const T*>(v), static_cast<T*>(out), lengths,
                               cu_seqlens, n_seqs, B, H, L, D);
  });
}

}  // namespace ntengine

// The kmer.h entry points: the AVX2 build of the tokenizer where the CPU kernels run at
// avx2 or wider (kernels/cpu_isa.h decides, NTENGINE_CPU_ISA included), else the SSE2 one.
#include <string>

#include "kernels/cpu_isa.h"
#include "tokenizer/kmer.h"

struct NteTokenizerTable {  // as in kmer_entry.cpp
  void (*count)(const void*, int64_t, const void*, int64_t*, int, int64_t*);
  void (*fill)(const void*, int64_t, const void*, int64_t, int32_t*, int64_t*, uint8_t*, int);
  const char* (*simd_level)();
};

extern "C" const NteTokenizerTable* nte_tok_baseline();
#ifdef NTE_TOK_BUILT_AVX2
extern "C" const NteTokenizerTable* nte_tok_avx2();
#endif

namespace ntengine::kmer {
namespace {

const NteTokenizerTable& table() {
#ifdef NTE_TOK_BUILT_AVX2
  if (ntengine::cpu_isa() != "baseline") return *nte_tok_avx2();
#endif
  return *nte_tok_baseline();
}

}  // namespace

Status count_tokens(const Seq* seqs, int64_t n_seqs, const Options& opts, int64_t* counts, int num_threads) {
  int64_t st[4];
  table().count(seqs, n_seqs, &opts, counts, num_threads, st);
  Status out;
  out.code = static_cast<StatusCode>(st[0]);
  out.seq = st[1], out.start = st[2], out.end = st[3];
  return out;
}

void fill_tokens(const Seq* seqs, int64_t n_seqs, const Options& opts, int64_t max_len, int32_t* ids,
                 int64_t* offsets, uint8_t* mask, int num_threads) {
  table().fill(seqs, n_seqs, &opts, max_len, ids, offsets, mask, num_threads);
}

const char* simd_level() { return table().simd_level(); }

}  // namespace ntengine::kmer

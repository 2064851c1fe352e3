// This build's tokenizer entry points, with plain types only, for kmer_dispatch.cpp. Like
// the CPU kernels, kmer.cpp is compiled once per ISA level it has code for (SSE2 baseline,
// AVX2) with -Dntengine=ntengine_tok_<level>; the structs are the same layout in every build.
#include "tokenizer/kmer.h"

#ifndef NTE_TOK_ENTRY
#error "tokenizer/kmer.cpp is compiled once per ISA level: CMake defines NTE_TOK_ENTRY"
#endif

namespace kmer = ntengine::kmer;

struct NteTokenizerTable {
  void (*count)(const void* seqs, int64_t n, const void* opts, int64_t* counts, int threads,
                int64_t* status);  // status: [code, seq, start, end]
  void (*fill)(const void* seqs, int64_t n, const void* opts, int64_t max_len, int32_t* ids,
               int64_t* offsets, uint8_t* mask, int threads);
  const char* (*simd_level)();
};

extern "C" const NteTokenizerTable* NTE_TOK_ENTRY() {
  static const NteTokenizerTable table = {
      [](const void* seqs, int64_t n, const void* opts, int64_t* counts, int threads, int64_t* status) {
        const kmer::Status st = kmer::count_tokens(static_cast<const kmer::Seq*>(seqs), n,
                                                   *static_cast<const kmer::Options*>(opts), counts, threads);
        status[0] = static_cast<int64_t>(st.code), status[1] = st.seq, status[2] = st.start, status[3] = st.end;
      },
      [](const void* seqs, int64_t n, const void* opts, int64_t max_len, int32_t* ids, int64_t* offsets,
         uint8_t* mask, int threads) {
        kmer::fill_tokens(static_cast<const kmer::Seq*>(seqs), n, *static_cast<const kmer::Options*>(opts),
                          max_len, ids, offsets, mask, threads);
      },
      &kmer::simd_level,
  };
  return &table;
}

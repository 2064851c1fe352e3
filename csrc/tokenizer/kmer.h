// 6-mer tokenizer for Nucleotide Transformer: framework-free batch encode.
//
// The algorithm (identical, id for id, to InstaDeep's NucleotidesKmersTokenizer):
// `<cls>` first; the sequence is split on N; each N is its own token; each
// N-free piece is cut into 6-mers from its own start; a tail shorter than 6
// becomes one token per base. Every token carries its [start, end) byte offset
// into the input; `<cls>` and padding get (0, 0).
//
// Work is split in two passes so the caller can size padded outputs exactly:
//   count_tokens: validates every sequence and counts its tokens (including <cls>);
//   fill_tokens:  writes ids / offsets / mask into caller-provided [B, L] buffers.
// Both run over the batch on std::threads and never throw: the first error (lowest
// sequence index, then first in token order) comes back in a Status.
#pragma once

#include <cstdint>

namespace ntengine::kmer {

/// How bytes other than upper-case A C G T N are treated.
enum class Mode : int32_t {
  /// Official behaviour: case-sensitive, only 'N' splits; a token that is not in
  /// the vocabulary is an error (the whole 6-byte chunk, or the single byte in a
  /// tail), except a chunk that is exactly "<mask>", which is the mask token.
  kStrict = 0,
  /// acgtn fold to ACGTN; any other byte is an error at its position.
  kFoldCase = 1,
  /// acgtn fold to ACGTN; any other byte is treated as N (splits, own token).
  kFoldCaseInvalidAsN = 2,
};

/// Token id layout of one vocabulary (v1 and v2 differ only in these numbers).
struct Options {
  int32_t kmer_offset = 6;    ///< id of AAAAAA; 6-mers are base-4 with A=0 T=1 C=2 G=3
  int32_t base_offset = 4102; ///< id of single A; T C G N follow at +1..+4
  int32_t cls_id = 3;
  int32_t pad_id = 1;
  int32_t mask_id = 2;
  Mode mode = Mode::kFoldCase;
};

/// One input sequence: bytes, not NUL-terminated (may contain NUL).
struct Seq {
  const uint8_t* data;
  int64_t size;
};

enum class StatusCode : int32_t {
  kOk = 0,
  kInvalidChar = 1,    ///< kFoldCase: byte at [start, start+1) is not A C G T N (any case)
  kUnknownToken = 2,   ///< kStrict: token [start, end) is not in the vocabulary
};

/// Outcome of a pass; on error names the sequence and the byte range at fault.
struct Status {
  StatusCode code = StatusCode::kOk;
  int64_t seq = -1;    ///< index in the batch
  int64_t start = -1;  ///< first byte of the bad character / token
  int64_t end = -1;    ///< one past its last byte
  bool ok() const { return code == StatusCode::kOk; }
};

/// Validates and counts tokens (including <cls>) of every sequence.
///
/// @param[in]  seqs         [n_seqs] input sequences
/// @param[in]  n_seqs       batch size
/// @param[in]  opts         id layout and mode
/// @param[out] counts       [n_seqs] token count per sequence (valid when ok)
/// @param[in]  num_threads  worker threads (>= 1; fewer are used for small batches)
/// @return the error with the lowest sequence index, or ok
Status count_tokens(const Seq* seqs, int64_t n_seqs, const Options& opts, int64_t* counts,
                    int num_threads);

/// Writes the first min(count, max_len) tokens of each sequence and pads the rest.
///
/// Sequences must have passed count_tokens with the same options (fill does not
/// re-validate). Tokens beyond max_len are dropped (truncation).
///
/// @param[in]  seqs         [n_seqs] input sequences
/// @param[in]  n_seqs       batch size
/// @param[in]  opts         id layout and mode
/// @param[in]  max_len      L, row length of the outputs (>= 1)
/// @param[out] ids          [n_seqs, L] token ids, pad_id after the last token
/// @param[out] offsets      [n_seqs, L, 2] byte offsets (start, end); (0, 0) for cls / pad
/// @param[out] mask         [n_seqs, L] 1 for real tokens (incl. <cls>), 0 for padding
/// @param[in]  num_threads  worker threads (>= 1)
void fill_tokens(const Seq* seqs, int64_t n_seqs, const Options& opts, int64_t max_len,
                 int32_t* ids, int64_t* offsets, uint8_t* mask, int num_threads);

/// Which vector path find_nonbase was compiled with: "avx2", "sse2" or "scalar".
const char* simd_level();

}  // namespace ntengine::kmer

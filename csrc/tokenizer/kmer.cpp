// 6-mer tokenizer: byte tables, SIMD scan for non-ACGT bytes, count and fill passes.
//
// Hot path (real genomes): a piece of N-free A/C/G/T bytes. count_tokens needs only
// the position of the next non-ACGT byte (a SIMD scan, ~32 bytes per few ops) and
// fill_tokens turns each 6-byte chunk into an id with a handful of 64-bit ops (no
// per-base branches or table lookups), or four chunks at once with AVX2 shuffles and
// multiply-adds (1.5x the fill pass on Zen 3). Everything else (N runs, lower case in
// strict mode, "<mask>", bad bytes) goes through plain scalar code.
#include "tokenizer/kmer.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include <system_error>

#if defined(__AVX2__) || defined(__SSE2__)
#include <immintrin.h>
#endif
#if defined(_MSC_VER)
#include <intrin.h>
#endif

namespace ntengine::kmer {
namespace {

// ---- portable bit helpers --------------------------------------------------------

inline int ctz32(uint32_t x) {  // x != 0
#if defined(_MSC_VER)
  unsigned long i;
  _BitScanForward(&i, x);
  return static_cast<int>(i);
#else
  return __builtin_ctz(x);
#endif
}

// 8 bytes at p as an integer whose most significant byte is p[0].
inline uint64_t load_be64(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
#if defined(_MSC_VER)
  return _byteswap_uint64(w);
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return w;
#else
  return __builtin_bswap64(w);
#endif
}

// ---- byte tables -----------------------------------------------------------------

enum ByteClass : uint8_t { kBase = 0, kSplit = 1, kBad = 2 };

// Class of every byte under one mode (see Mode in kmer.h).
constexpr std::array<uint8_t, 256> make_class_table(Mode mode) {
  std::array<uint8_t, 256> t{};
  for (int b = 0; b < 256; ++b) {
    const bool upper_base = b == 'A' || b == 'C' || b == 'G' || b == 'T';
    const bool lower_base = b == 'a' || b == 'c' || b == 'g' || b == 't';
    if (mode == Mode::kStrict) {
      t[b] = upper_base ? kBase : (b == 'N' ? kSplit : kBad);
    } else if (upper_base || lower_base) {
      t[b] = kBase;
    } else if (b == 'N' || b == 'n' || mode == Mode::kFoldCaseInvalidAsN) {
      t[b] = kSplit;
    } else {
      t[b] = kBad;
    }
  }
  return t;
}

constexpr auto kClassStrict = make_class_table(Mode::kStrict);
constexpr auto kClassFold = make_class_table(Mode::kFoldCase);
constexpr auto kClassFoldN = make_class_table(Mode::kFoldCaseInvalidAsN);

const uint8_t* class_table(Mode mode) {
  switch (mode) {
    case Mode::kStrict: return kClassStrict.data();
    case Mode::kFoldCaseInvalidAsN: return kClassFoldN.data();
    default: return kClassFold.data();
  }
}

// 2-bit code of a base byte: A=0 T=1 C=2 G=3 (the vocabulary's digit order).
// Why arithmetic: bits 1..2 of the ASCII code are A=0 C=1 T=2 G=3 in both cases
// (A 0x41, C 0x43, G 0x47, T 0x54, lower case +0x20); swapping those two bits gives
// the vocabulary order. The same trick runs on 8 bytes at once in kmer_id8.
constexpr uint32_t base_code(uint8_t b) {
  const uint32_t x = (b >> 1) & 3u;
  return ((x & 1u) << 1) | (x >> 1);
}

// Id (0..4095, before kmer_offset) of the 6 bases at p; reads exactly 6 bytes.
inline uint32_t kmer_id6(const uint8_t* p) {
  uint32_t id = 0;
  for (int i = 0; i < 6; ++i) id = (id << 2) | base_code(p[i]);
  return id;
}

// Same as kmer_id6 but reads 8 bytes (the last 2 are ignored): caller guarantees
// p + 8 <= end of buffer. SWAR: load so p[0] is the top byte, take every byte's
// 2-bit code, then pack the eight 2-bit fields 8 bits apart into 16 bits.
inline uint32_t kmer_id8(const uint8_t* p) {
  const uint64_t w = load_be64(p);                    // byte 7 = p[0] ... byte 0 = p[7]
  const uint64_t x = (w >> 1) & 0x0303030303030303ull;  // ACTG order, 2 bits per byte
  uint64_t y = ((x & 0x0101010101010101ull) << 1) | ((x >> 1) & 0x0101010101010101ull);
  y = (y | (y >> 6)) & 0x000F000F000F000Full;        // 4 bits per 16-bit lane
  y = (y | (y >> 12)) & 0x000000FF000000FFull;       // 8 bits per 32-bit lane
  y = (y | (y >> 24)) & 0xFFFFull;                   // p[0..7] as 8 base-4 digits
  return static_cast<uint32_t>(y >> 4);               // drop p[6], p[7]
}

#if defined(__AVX2__)
// kmer_id8 for the four 6-mers at p, p + 6, p + 12, p + 18, plus offset; reads 32 bytes.
// Each byte's 2-bit code (the base_code trick, by table), the tokens' bytes moved into
// 8-byte slots [c0..c5, 0, 0] (tokens 2, 3 start in the upper 128-bit lane), then
// multiply-adds with base-4 weights: 4 c0 + c1, ..., then 256 w0 + 16 w1 + w2.
inline __m128i kmer_ids4(const uint8_t* p, int32_t offset) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i x = _mm256_and_si256(_mm256_srli_epi16(raw, 1), _mm256_set1_epi8(3));
  const __m256i lut = _mm256_setr_epi8(0, 2, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                       0, 2, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  __m256i c = _mm256_shuffle_epi8(lut, x);
  c = _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 1, 2, 3, 3, 4, 5, 6));  // bytes 0-15 | 12-27
  const __m256i slots = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, -1, -1, 6, 7, 8, 9, 10, 11, -1, -1,
                                         0, 1, 2, 3, 4, 5, -1, -1, 6, 7, 8, 9, 10, 11, -1, -1);
  c = _mm256_shuffle_epi8(c, slots);
  const __m256i w = _mm256_maddubs_epi16(c, _mm256_set1_epi16(0x0104));  // bytes (4, 1)
  const __m256i d = _mm256_madd_epi16(w, _mm256_set1_epi64x(0x0000000100100100ll));  // (256, 16, 1, 0)
  const __m256i ids = _mm256_hadd_epi32(d, d);  // lanes: [t0 t1 t0 t1 | t2 t3 t2 t3]
  const __m256i packed = _mm256_permutevar8x32_epi32(ids, _mm256_setr_epi32(0, 1, 4, 5, 0, 0, 0, 0));
  return _mm_add_epi32(_mm256_castsi256_si128(packed), _mm_set1_epi32(offset));
}
#endif

// ---- scan for the next non-ACGT byte ----------------------------------------------

// First position >= pos whose byte is not A/C/G/T (also a/c/g/t when kFold), or n.
template <bool kFold>
int64_t find_nonbase(const uint8_t* s, int64_t pos, int64_t n) {
#if defined(__AVX2__)
  // OR-ing 0x20 folds case; only A/a, C/c, G/g, T/t map onto a, c, g, t.
  const __m256i fold = _mm256_set1_epi8(kFold ? 0x20 : 0);
  const __m256i a = _mm256_set1_epi8(kFold ? 'a' : 'A'), c = _mm256_set1_epi8(kFold ? 'c' : 'C');
  const __m256i g = _mm256_set1_epi8(kFold ? 'g' : 'G'), t = _mm256_set1_epi8(kFold ? 't' : 'T');
  for (; pos + 32 <= n; pos += 32) {
    const __m256i v = _mm256_or_si256(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + pos)), fold);
    const __m256i hit = _mm256_or_si256(
        _mm256_or_si256(_mm256_cmpeq_epi8(v, a), _mm256_cmpeq_epi8(v, c)),
        _mm256_or_si256(_mm256_cmpeq_epi8(v, g), _mm256_cmpeq_epi8(v, t)));
    const uint32_t miss = ~static_cast<uint32_t>(_mm256_movemask_epi8(hit));
    if (miss) return pos + ctz32(miss);
  }
#elif defined(__SSE2__)
  const __m128i fold = _mm_set1_epi8(kFold ? 0x20 : 0);
  const __m128i a = _mm_set1_epi8(kFold ? 'a' : 'A'), c = _mm_set1_epi8(kFold ? 'c' : 'C');
  const __m128i g = _mm_set1_epi8(kFold ? 'g' : 'G'), t = _mm_set1_epi8(kFold ? 't' : 'T');
  for (; pos + 16 <= n; pos += 16) {
    const __m128i v =
        _mm_or_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + pos)), fold);
    const __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, a), _mm_cmpeq_epi8(v, c)),
                                     _mm_or_si128(_mm_cmpeq_epi8(v, g), _mm_cmpeq_epi8(v, t)));
    const uint32_t miss = ~static_cast<uint32_t>(_mm_movemask_epi8(hit)) & 0xFFFFu;
    if (miss) return pos + ctz32(miss);
  }
#endif
  const uint8_t* cls = kFold ? kClassFold.data() : kClassStrict.data();
  while (pos < n && cls[s[pos]] == kBase) ++pos;
  return pos;
}

// ---- sinks: what a pass does with the tokens it finds -----------------------------

// Counting pass: token arithmetic only, nothing written.
struct CountSink {
  int64_t count = 1;  // <cls>
  bool full() const { return false; }
  void bases(const uint8_t*, int64_t, int64_t begin, int64_t end) {
    const int64_t m = end - begin;
    count += m / 6 + m % 6;
  }
  void token(int64_t, int64_t, int32_t) { ++count; }
};

// Filling pass: writes into one row of the [B, L] outputs, stops when it is full.
struct FillSink {
  const Options& o;
  int32_t* ids;      // [L]
  int64_t* offsets;  // [L, 2]
  int64_t cap;       // L
  int64_t t = 1;     // next token slot (slot 0 is <cls>)

  bool full() const { return t >= cap; }

  void token(int64_t start, int64_t len, int32_t id) {
    if (t >= cap) return;
    ids[t] = id;
    offsets[2 * t] = start;
    offsets[2 * t + 1] = start + len;
    ++t;
  }

  // An N-free, all-base piece [begin, end) of s (n bytes in all).
  void bases(const uint8_t* s, int64_t n, int64_t begin, int64_t end) {
    const int64_t chunks = std::min((end - begin) / 6, cap - t);
    // Chunks whose 8-byte load stays inside the buffer use kmer_id8.
    const int64_t fast = n - begin >= 8 ? std::min(chunks, (n - begin - 8) / 6 + 1) : 0;
    int32_t* id = ids + t;
    int64_t* off = offsets + 2 * t;
    int64_t p = begin;
    int64_t i = 0;
#if defined(__AVX2__)
    // Four tokens per step while a 32-byte load stays inside the buffer.
    const int64_t simd = std::min(fast, n - begin >= 32 ? (n - begin - 32) / 6 + 1 : 0) / 4 * 4;
    for (; i < simd; i += 4, p += 24) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(id + i), kmer_ids4(s + p, o.kmer_offset));
      const __m256i lo = _mm256_add_epi64(_mm256_set1_epi64x(p), _mm256_setr_epi64x(0, 6, 6, 12));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(off + 2 * i), lo);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(off + 2 * i + 4),
                          _mm256_add_epi64(lo, _mm256_set1_epi64x(12)));
    }
#endif
    for (; i < fast; ++i, p += 6) {
      id[i] = o.kmer_offset + static_cast<int32_t>(kmer_id8(s + p));
      off[2 * i] = p;
      off[2 * i + 1] = p + 6;
    }
    for (int64_t i = fast; i < chunks; ++i, p += 6) {
      id[i] = o.kmer_offset + static_cast<int32_t>(kmer_id6(s + p));
      off[2 * i] = p;
      off[2 * i + 1] = p + 6;
    }
    t += chunks;
    if (t >= cap) return;
    for (; p < end; ++p) token(p, 1, o.base_offset + static_cast<int32_t>(base_code(s[p])));
  }
};

// ---- one sequence -------------------------------------------------------------------

// Strict mode, a piece [begin, end) holding at least one byte outside the vocabulary:
// token by token, accepting a chunk that is exactly "<mask>" (as the official tokenizer
// does), failing on the first other unknown token.
template <class Sink>
Status strict_piece(const uint8_t* s, int64_t begin, int64_t end, const Options& o, Sink& sink) {
  const int64_t full_end = begin + (end - begin) / 6 * 6;
  int64_t p = begin;
  for (; p < full_end; p += 6) {
    if (find_nonbase<false>(s, p, p + 6) == p + 6) {
      sink.token(p, 6, o.kmer_offset + static_cast<int32_t>(kmer_id6(s + p)));
    } else if (std::memcmp(s + p, "<mask>", 6) == 0) {
      sink.token(p, 6, o.mask_id);
    } else {
      return Status{StatusCode::kUnknownToken, -1, p, p + 6};
    }
  }
  for (; p < end; ++p) {
    if (kClassStrict[s[p]] != kBase) return Status{StatusCode::kUnknownToken, -1, p, p + 1};
    sink.token(p, 1, o.base_offset + static_cast<int32_t>(base_code(s[p])));
  }
  return Status{};
}

// Tokenizes s[0, n) into sink; returns the first error (seq left as -1).
template <bool kFold, class Sink>
Status scan(const uint8_t* s, int64_t n, const Options& o, Sink& sink) {
  const uint8_t* cls = class_table(o.mode);
  const int32_t n_id = o.base_offset + 4;
  int64_t pos = 0;  // always the start of a piece (or of an N run)
  while (pos < n && !sink.full()) {
    int64_t q = find_nonbase<kFold>(s, pos, n);
    if (q < n && cls[s[q]] == kBad) {
      if (o.mode != Mode::kStrict) return Status{StatusCode::kInvalidChar, -1, q, q + 1};
      while (q < n && cls[s[q]] != kSplit) ++q;  // rare path: find the piece end
      const Status st = strict_piece(s, pos, q, o, sink);
      if (!st.ok()) return st;
    } else {
      sink.bases(s, n, pos, q);
    }
    for (; q < n && cls[s[q]] == kSplit && !sink.full(); ++q) sink.token(q, 1, n_id);
    pos = q;
  }
  return Status{};
}

template <class Sink>
Status scan_any(const Seq& seq, const Options& o, Sink& sink) {
  return o.mode == Mode::kStrict ? scan<false>(seq.data, seq.size, o, sink)
                                 : scan<true>(seq.data, seq.size, o, sink);
}

// ---- threads ------------------------------------------------------------------------

// Minimum input bytes per thread. Why: starting a std::thread costs ~20-50 us (more in
// VMs), so each thread needs about 100 us of work to pay off. The count pass reads at
// tens of GB/s, the fill pass at ~3 GB/s per core, hence two thresholds. (Threads are
// started per call rather than pooled so that the library stays fork-safe.)
constexpr int64_t kCountBytesPerThread = int64_t{4} << 20;
constexpr int64_t kFillBytesPerThread = int64_t{256} << 10;

// Runs fn(begin, end, worker) over contiguous ranges of the batch, balanced by bytes.
// The calling thread takes the last range.
template <class Fn>
void parallel_over_batch(const Seq* seqs, int64_t n_seqs, int num_threads,
                         int64_t min_bytes_per_thread, Fn fn) {
  // Why the +64: a batch of many tiny sequences still has per-sequence work to share.
  int64_t total = 0;
  for (int64_t i = 0; i < n_seqs; ++i) total += seqs[i].size + 64;
  int64_t workers = std::min<int64_t>({std::max(num_threads, 1), std::max<int64_t>(n_seqs, 1),
                                       std::max<int64_t>(total / min_bytes_per_thread, 1)});
  std::vector<int64_t> bounds{0};
  int64_t acc = 0;
  for (int64_t i = 0, w = 1; i < n_seqs && w < workers; ++i) {
    acc += seqs[i].size + 64;
    if (acc * workers >= total * w) {
      bounds.push_back(i + 1);
      ++w;
    }
  }
  bounds.push_back(n_seqs);
  workers = static_cast<int64_t>(bounds.size()) - 1;
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (int64_t w = 0; w + 1 < workers; ++w) {
    try {
      pool.emplace_back(fn, bounds[w], bounds[w + 1], static_cast<int>(w));
    } catch (const std::system_error&) {  // no thread to be had: do that range here
      fn(bounds[w], bounds[w + 1], static_cast<int>(w));
    }
  }
  fn(bounds[workers - 1], bounds[workers], static_cast<int>(workers - 1));
  for (auto& th : pool) th.join();
}

}  // namespace

// ---- public entry points ------------------------------------------------------------

const char* simd_level() {
#if defined(__AVX2__)
  return "avx2";
#elif defined(__SSE2__)
  return "sse2";
#else
  return "scalar";
#endif
}

Status count_tokens(const Seq* seqs, int64_t n_seqs, const Options& opts, int64_t* counts,
                    int num_threads) {
  std::vector<Status> errors(std::max(num_threads, 1));
  // Lowest failing index so far: workers past it stop early (its error wins anyway).
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};
  parallel_over_batch(seqs, n_seqs, num_threads, kCountBytesPerThread,
                      [&](int64_t begin, int64_t end, int worker) {
    for (int64_t i = begin; i < end && i < first_bad.load(std::memory_order_relaxed); ++i) {
      CountSink sink;
      Status st = scan_any(seqs[i], opts, sink);
      if (!st.ok()) {
        st.seq = i;
        errors[worker] = st;
        int64_t cur = first_bad.load();
        while (i < cur && !first_bad.compare_exchange_weak(cur, i)) {
        }
        return;
      }
      counts[i] = sink.count;
    }
  });
  Status first;
  for (const Status& st : errors)
    if (!st.ok() && (first.ok() || st.seq < first.seq)) first = st;
  return first;
}

void fill_tokens(const Seq* seqs, int64_t n_seqs, const Options& opts, int64_t max_len,
                 int32_t* ids, int64_t* offsets, uint8_t* mask, int num_threads) {
  parallel_over_batch(seqs, n_seqs, num_threads, kFillBytesPerThread,
                      [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) {
      int32_t* row_ids = ids + i * max_len;
      int64_t* row_off = offsets + i * max_len * 2;
      FillSink sink{opts, row_ids, row_off, max_len};
      row_ids[0] = opts.cls_id;
      row_off[0] = row_off[1] = 0;
      scan_any(seqs[i], opts, sink);  // validated by count_tokens: cannot fail here
      std::fill(row_ids + sink.t, row_ids + max_len, opts.pad_id);
      std::fill(row_off + 2 * sink.t, row_off + 2 * max_len, int64_t{0});
      std::fill(mask + i * max_len, mask + i * max_len + sink.t, uint8_t{1});
      std::fill(mask + i * max_len + sink.t, mask + (i + 1) * max_len, uint8_t{0});
    }
  });
}

}  // namespace ntengine::kmer

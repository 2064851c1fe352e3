"""Reference and alternative windows around a variant, and the token that holds it.

Conventions (all 0-based, half-open):

- The reference window has `window` bp (default 5,994 = 999 six-mers, which with <cls>
  is the 1,000-token input of public NT variant recipes) and starts at pos - window // 2,
  shifted inside the record near its ends. For 5,994 bp the variant's first base is then
  base 2,997 = 6 x 499 + 3 of the window: the 4th base of 6-mer 500 (token 500 after
  <cls>), and on the reverse strand the 3rd base of that same 6-mer index.
- The alternative window applies the allele to the same span: the bases before the
  variant are unchanged, REF is replaced by ALT and the window keeps its length by taking
  more bases on the far (right) side after a deletion and dropping them after an
  insertion. Tokens before the variant are therefore identical in both windows.
- The variant's token on a strand is the token covering its first *changed* base there:
  p = the first window position, from the variant on, where the reference and alternative
  windows differ (`changed_base`; for SNVs the variant itself), p on the forward strand,
  L - 1 - p on the reverse-complement strand (L = window length). For indels this is not
  the VCF anchor base: the anchor is shared by REF and ALT, and so, when it ends its 6-mer,
  is the whole token (an insertion in a homopolymer moves the change further still);
  scoring the anchor's token gave LLR = 0 exactly. Ns earlier in the window shift the
  6-mer grid; the token is found from the tokenizer's offsets, so that stays right.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DEFAULT_WINDOW = 5994


class VariantWindows(NamedTuple):
    start: int  # of the reference window on the record
    ref: str  # reference window
    alt: str  # alternative window, same length (shorter only at a record's end)
    offset: int  # variant's first base within the windows


def ref_window_start(pos: int, record_length: int, window: int) -> int:
    """Start of the `window`-bp reference window centred on 0-based `pos`."""
    return max(0, min(pos - window // 2, record_length - window))


def build_windows(fetch, chrom: str, pos: int, ref: str, alt: str, record_length: int,
                  window: int) -> VariantWindows:
    """Both windows of one allele; fetch(chrom, start, end) reads the genome."""
    start = ref_window_start(pos, record_length, window)
    end = min(start + window, record_length)
    ref_seq = fetch(chrom, start, end)
    offset = pos - start
    left = ref_seq[:offset]
    need = max(0, len(ref_seq) - len(left) - len(alt))
    right_start = pos + len(ref)
    right = fetch(chrom, right_start, min(right_start + need, record_length)) if need else ""
    alt_seq = (left + alt + right)[:len(ref_seq)]
    return VariantWindows(start, ref_seq, alt_seq, offset)


def changed_base(w: VariantWindows) -> int:
    """First window position from the variant on where the two windows differ (the
    variant's own position if they never do within the window)."""
    for i in range(w.offset, min(len(w.ref), len(w.alt))):
        if w.ref[i] != w.alt[i]:
            return i
    return w.offset


def token_at(offsets: np.ndarray, n_tokens: int, position: int) -> int:
    """Index of the token (not <cls>) whose [start, end) covers `position`."""
    starts, ends = offsets[1:n_tokens, 0], offsets[1:n_tokens, 1]
    hit = np.flatnonzero((starts <= position) & (position < ends))
    if not hit.size:
        raise ValueError(f"no token covers window position {position}")
    return int(hit[0]) + 1


def span_tokens(offsets: np.ndarray, n_tokens: int, lo: int, hi: int) -> np.ndarray:
    """Indices of the tokens overlapping window positions [lo, hi)."""
    starts, ends = offsets[1:n_tokens, 0], offsets[1:n_tokens, 1]
    return np.flatnonzero((starts < hi) & (ends > lo)) + 1

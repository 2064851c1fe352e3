"""Masked log-likelihood ratios of every single-nucleotide substitution in a window: the
core of genome-wide SNV scores (issue 17; the `ntengine scan` job is built on it).

Definition. NT predicts tokens: a masked 6-mer token gets a distribution over the 4,096
6-mers (and the other tokens), so for each of the 18 substitutions inside it (3
alternative bases × 6 positions)

    LLR = log P(alt 6-mer) − log P(ref 6-mer)

at that token, masked. A base in a single-base token (a tail shorter than 6, or beside an
N) gets log P(alt base) − log P(ref base) of its masked token. N bases and substitutions to
the reference base have no score (NaN and 0).

Masking. One masked token per forward pass is exact but costs a pass per token. Instead
pass p masks every `every`-th nucleotide token (those whose rank among the window's
nucleotide tokens is p modulo `every`), so `every` passes mask each token once; every ≥ 7
keeps ≤ 15% masked per pass, as in pretraining; `every` = the window's token count is one
mask per pass. v1 models rescale by the masked fraction (token dropout): the model does
that itself from the <mask> tokens it sees, as in training.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ntengine.pooling import log_softmax

BASES = "ACGT"


def mask_passes(nucleotide: np.ndarray, every: int) -> list[np.ndarray]:
    """Token positions each pass masks: nucleotide token i goes to pass (its rank) % every."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    positions = np.flatnonzero(nucleotide)
    return [p for p in (positions[r::every] for r in range(every)) if p.size]


@lru_cache(maxsize=None)
def substitution_table(version: str) -> np.ndarray:
    """int32 [vocab, 6, 4]: the id of token `id` with its base j replaced by A, C, G, T
    (columns in BASES order); -1 where the token has no base j or is not A/C/G/T-only
    (specials, N). Built once from the vocabulary itself."""
    from ntengine.tokenizer import Tokenizer

    tok = Tokenizer(version)
    index = {t: i for i, t in enumerate(tok.vocab)}
    table = np.full((len(tok.vocab), 6, 4), -1, np.int32)
    for i, token in enumerate(tok.vocab):
        if token.startswith("<") or not set(token) <= set(BASES):
            continue
        for j in range(len(token)):
            for b, base in enumerate(BASES):
                table[i, j, b] = index[token[:j] + base + token[j + 1:]]
    return table


def window_llr(engine, seq: str, every: int = 7, *, batch_size: int | None = None, tokenizer=None) -> np.ndarray:
    """float32 [len(seq), 4]: the LLR of substituting each base of `seq` by A, C, G, T
    (columns in that order): 0 for the reference base, NaN at N and for bases no token
    covers. `seq` must fit the model's context; its passes run `batch_size` at a time (all
    at once by default), tokenised by `tokenizer` (default the engine's)."""
    tok = tokenizer or engine.tokenizer
    ids, offsets = tok.encode_with_offsets(seq)
    nucleotide = engine.nucleotide_mask(ids[None])[0]
    passes = mask_passes(nucleotide, every)
    table = substitution_table(engine.config.version)
    out = np.full((len(seq), 4), np.nan, np.float32)
    step = batch_size or max(1, len(passes))
    for first in range(0, len(passes), step):
        group = passes[first:first + step]
        batch = np.repeat(ids[None], len(group), axis=0)
        for row, masked in enumerate(group):
            batch[row, masked] = tok.mask_id
        logits = engine.forward(batch, logits=True)["logits"]
        for row, masked in enumerate(group):
            logp = log_softmax(logits[row, masked].astype(np.float64))  # [m, V]
            ref = ids[masked]
            alt = table[ref]  # [m, 6, 4]
            llr = np.take_along_axis(logp, np.maximum(alt, 0).reshape(len(masked), -1), axis=1).reshape(alt.shape)
            llr -= logp[np.arange(len(masked)), ref][:, None, None]
            positions = offsets[masked, :1] + np.arange(6)  # [m, 6]: the base each j stands for
            has = (alt >= 0).all(-1)  # [m, 6]: base j exists and is A/C/G/T
            out[positions[has]] = llr[has]
    return out


def both_strands_llr(engine, seq: str, every: int = 7, **kwargs) -> np.ndarray:
    """The mean of `window_llr` on `seq` and on its reverse complement, mapped back: base i
    of the reverse strand is base len-1-i here, and its column b is the complement of b
    (ACGT reversed)."""
    from ntengine.genome.fasta import reverse_complement

    reverse = window_llr(engine, reverse_complement(seq), every, **kwargs)[::-1, ::-1]
    return (window_llr(engine, seq, every, **kwargs) + reverse) / 2

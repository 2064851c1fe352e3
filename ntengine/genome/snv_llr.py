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

import numpy as np

from ntengine.pooling import log_softmax

BASES = "ACGT"


def mask_passes(nucleotide: np.ndarray, every: int) -> list[np.ndarray]:
    """Token positions each pass masks: nucleotide token i goes to pass (its rank) % every."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    positions = np.flatnonzero(nucleotide)
    return [p for p in (positions[r::every] for r in range(every)) if p.size]


def window_llr(engine, seq: str, every: int = 7) -> np.ndarray:
    """float32 [len(seq), 4]: the LLR of substituting each base of `seq` by A, C, G, T
    (columns in that order): 0 for the reference base, NaN at N and for bases no token
    covers. `seq` must fit the model's context; its passes run as one batch."""
    tok = engine.tokenizer
    ids, offsets = tok.encode_with_offsets(seq)
    nucleotide = engine.nucleotide_mask(ids[None])[0]
    passes = mask_passes(nucleotide, every)
    batch = np.repeat(ids[None], len(passes), axis=0)
    for row, masked in enumerate(passes):
        batch[row, masked] = tok.mask_id
    logits = engine.forward(batch, logits=True)["logits"]
    out = np.full((len(seq), 4), np.nan, np.float32)
    for row, masked in enumerate(passes):
        logp = log_softmax(logits[row, masked].astype(np.float64))
        for t, lp in zip(masked, logp):
            start, end = (int(x) for x in offsets[t])
            ref = seq[start:end].upper()
            if "N" in ref:
                continue
            ref_id = ids[t]
            for j in range(end - start):
                for b, base in enumerate(BASES):
                    alt = ref[:j] + base + ref[j + 1:]
                    out[start + j, b] = lp[tok.token_to_id(alt)] - lp[ref_id]
    return out

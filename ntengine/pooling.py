"""What every caller of the model does with its inputs and outputs in the same way:
length-sorted sub-batches, mean pooling over nucleotide tokens, log-softmax.

Used by `Engine.embed`, genome jobs, variant scoring and the fine-tuning head, so that
their embeddings and scores agree by construction.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def sorted_batches(lengths: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """(row indices, longest length among them) for groups of `batch_size` rows, longest
    first (stable): each group padded only to its own longest row carries little padding."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    for lo in range(0, len(order), batch_size):
        rows = order[lo:lo + batch_size]
        yield rows, int(lengths[rows].max())


def pool_mean(emb, weight):
    """Mean of emb [..., T, E] over the tokens where weight [..., T] is 1 (nucleotide tokens:
    not `<cls>`, `<mask>` or padding); numpy arrays or torch tensors (differentiable)."""
    w = weight[..., None].to(emb.dtype) if hasattr(weight, "to") else weight[..., None].astype(emb.dtype)
    return (emb * w).sum(-2) / w.sum(-2)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, in float64 (scores are differences of these)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))

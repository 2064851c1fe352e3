"""Per-base bigWig tracks from a genome store's per-token scores.

    logprob.bw  at each base: log P(token) — the natural log of the probability the LM
                head gives the observed 6-mer (or single-base / N) token covering that
                base, at that token's own position, in one forward pass over the whole
                window with nothing masked. (A masked pseudo-log-likelihood would need
                one pass per token; this is the cheap, unmasked score.)
    entropy.bw  at each base: the entropy, in nats, of that same predicted distribution
                over the vocabulary (4,107 tokens; at most ln 4107 = 8.32).

Every base a token covers gets the token's value; where windows overlap (stride <
window), a base gets the mean over the windows that cover it. `<cls>`, padding, skipped
(all-N) windows and bases trimmed from shortened windows carry no value: they are gaps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ntengine.genome.store import STATUS

TRACKS = {"logprob": "token_logprob", "entropy": "token_entropy"}


def _block_runs(starts, ends, values, b0: int, b1: int):
    """(run starts, run ends, run values) of the per-base mean over tokens within [b0, b1)."""
    ok = (starts >= 0) & np.isfinite(values) & (ends > b0) & (starts < b1)
    s, e, v = np.clip(starts[ok], b0, b1) - b0, np.clip(ends[ok], b0, b1) - b0, values[ok].astype(np.float64)
    size = b1 - b0
    total, count = np.zeros(size + 1), np.zeros(size + 1, np.int64)
    np.add.at(total, s, v)
    np.add.at(total, e, -v)
    np.add.at(count, s, 1)
    np.add.at(count, e, -1)
    total, count = np.cumsum(total)[:size], np.cumsum(count)[:size]
    value = np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
    covered = count > 0
    # A run starts where coverage or the value changes.
    change = np.ones(size, bool)
    change[1:] = (covered[1:] != covered[:-1]) | ((value[1:] != value[:-1]) & covered[1:])
    first = np.flatnonzero(change)
    last = np.append(first[1:], size)
    keep = covered[first]
    return first[keep] + b0, last[keep] + b0, value[first[keep]]


def write_bigwigs(group, folder, lengths: dict[str, int], block: int = 1 << 20) -> list[Path]:
    """Write logprob.bw and entropy.bw for the store `group` into `folder`; returns their paths.
    `lengths` is keyed by the store's record names.

    Reads the store a block of the genome at a time (memory bounded by `block` bp and the
    windows that overlap it). Files are written under a temporary name and renamed.
    """
    import pyBigWig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = group.attrs["ntengine"]["records"]  # as the store names them (--rename applied)
    record, start, end = group["record"][:], group["window_start"][:], group["window_end"][:]
    status = group["window_status"][:]
    usable = (status == STATUS["embedded"]) | (status == STATUS["shortened"])
    paths = []
    for track, array in TRACKS.items():
        path, tmp = folder / f"{track}.bw", folder / f".{track}.bw.partial"
        bw = pyBigWig.open(str(tmp), "w")
        bw.addHeader([(name, lengths[name]) for name in names], maxZooms=10)
        for name in names:
            idx = np.flatnonzero(usable & (record == name))
            if not idx.size:
                continue
            lo, hi = int(start[idx].min()), int(end[idx].max())
            for b0 in range(lo, hi, block):
                b1 = min(b0 + block, hi)
                sel = idx[(start[idx] < b1) & (end[idx] > b0)]
                if not sel.size:
                    continue
                ts = group["token_start"].oindex[sel, :].ravel()
                te = group["token_end"].oindex[sel, :].ravel()
                tv = group[array].oindex[sel, :].ravel()
                s, e, v = _block_runs(ts, te, tv, b0, b1)
                if s.size:
                    bw.addEntries([name] * s.size, s.tolist(), ends=e.tolist(), values=v.tolist())
        bw.close()
        tmp.replace(path)
        paths.append(path)
    return paths

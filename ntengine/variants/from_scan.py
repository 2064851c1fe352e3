"""Variant scores read from a scan (`ntengine scan`) instead of running the model.

`score-variants --scan OUT` gives each SNV the scan's LLR at its position (`ScanScores`:
the mean over the scan windows covering it). Where the definitions match: both are
log P(alt 6-mer) - log P(ref 6-mer) at the masked token covering the variant. Where they
differ: the scan's windows tile the genome (the variant sits wherever its window puts
it, so its token's 6-mer frame and context differ from score-variants' window centred on
the variant) and each pass masks every k-th token rather than the variant's alone; with
a scan of k = the window's tokens, a window starting where score-variants' does (a
record's first window, for variants within half a window of its start) gives the same
number. Only SNVs are in a scan: other alleles are skipped (not_snv), as are SNVs the
scan does not cover or scored as N (not_in_scan). Only NT_LLR is filled.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ntengine.genome.snv_llr import BASES
from ntengine.genome.snv_outputs import ScanScores
from ntengine.genome.store import open_group
from ntengine.variants.scoring import SCORES

_BLOCK = 1 << 16  # bp read from the scan at a time (variants come sorted: neighbours share it)


class ScanScorer:
    """`Scorer`'s interface (skip_reason, score, stats) over a scan folder."""

    def __init__(self, folder, fasta_sha256: str):
        from ntengine.genome.scan import STORE

        path = Path(folder) / STORE
        if not (path / "zarr.json").exists():
            raise ValueError(f"{folder}: not a scan (no {STORE} inside): run `ntengine scan` first")
        self.scores = ScanScores(open_group(path, "r"))
        meta = self.scores.meta
        if meta["genome"]["sha256"] != fasta_sha256:
            raise ValueError(f"{folder} scanned another genome ({meta['genome']['path']}, sha256 "
                             f"{meta['genome']['sha256'][:12]}...) than --fasta: scores would not match its positions")
        self.renamed = meta.get("renamed", {})  # FASTA name -> the scan's name
        self.job = {"scan": str(path.resolve()), "model": meta["model"]["sha256"], "params": meta["params"]}
        self.stats = dict.fromkeys(("windows_requested", "windows_computed", "masked_requested", "masked_computed"), 0)

    @lru_cache(maxsize=32)
    def _block(self, name: str, b0: int) -> np.ndarray:
        return self.scores.block(name, b0, min(b0 + _BLOCK, self.scores.lengths[name]))[0]

    def llr(self, chrom: str, pos: int, alt: str) -> float:
        """The scan's LLR of `alt` at 0-based `pos` of FASTA record `chrom` (NaN: none)."""
        name = self.renamed.get(chrom, chrom)
        if name not in self.scores.lengths or alt not in BASES:
            return float("nan")
        b0 = pos - pos % _BLOCK
        return float(self._block(name, b0)[pos - b0, BASES.index(alt)])

    def skip_reason(self, t) -> str | None:
        if len(t.ref) != 1 or len(t.alt) != 1:
            return "not_snv"
        return None if np.isfinite(self.llr(t.chrom, t.pos, t.alt)) else "not_in_scan"

    def score(self, tasks, on_batch=None) -> np.ndarray:
        out = np.full((len(tasks), len(SCORES)), np.nan)
        out[:, SCORES.index("llr")] = [self.llr(t.chrom, t.pos, t.alt) for t in tasks]
        if on_batch is not None:
            on_batch(1.0)
        return out

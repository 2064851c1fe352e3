"""`ntengine scan`: the masked LLR of every possible SNV of a genome (or regions).

    ntengine scan CKPT GENOME.fa -o OUT [--regions chrM] [--mask-every 7] [--both-strands]
                  [--format bigwig,parquet,zarr]

A genome job (`embed_genome`, so the same windows, N handling, input checks, chunk
commits, resume after kill -9, Ray workers and progress) whose workers store, per
window, the LLR of substituting each base by A, C, G and T (`snv_llr.window_llr`: every
k-th token masked per pass, k passes per window). OUT holds that store (windows.zarr)
and the per-base files `snv_outputs` writes from it once every window is done.

Cost: k forward passes per window instead of one, i.e. k x an embedding job's time.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ntengine.genome.job import embed_genome
from ntengine.genome.settings import EmbedSettings
from ntengine.genome.snv_outputs import write_outputs
from ntengine.genome.store import open_group
from ntengine.locking import output_lock

STORE = "windows.zarr"


def scan_genome(model, fasta, out, settings: EmbedSettings = EmbedSettings(snv_every=7), *,
                formats=("bigwig", "parquet"), **job) -> dict:
    """Scan `fasta` with `model` into the folder `out`; returns the genome job's summary
    plus "outputs" (the files written).

    Args:
        settings: the job's windows and batching; snv_every (default 7) is k, and
            reverse_complement averages both strands' LLRs.
        formats: any of "bigwig", "parquet", "zarr" (see `snv_outputs`).
        job: embed_genome's keywords (regions, bed, records, device, dtype, backend,
            trust_pickle, ray, workers, progress, adapter, rename).
    Rerunning the same call resumes an interrupted scan and rewrites the files.
    """
    if not settings.snv_every:
        settings = replace(settings, snv_every=7)
    out = Path(out)
    with output_lock(out):
        summary = embed_genome(model, fasta, out / STORE, settings, **job)
        summary["outputs"] = [str(p) for p in write_outputs(open_group(out / STORE, "r"), out, formats)]
    return summary

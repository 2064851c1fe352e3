"""Whole-genome embedding jobs: FASTA -> windows -> engine -> zarr (+ bigWig tracks).

    ntengine embed CKPT GENOME.fa -o OUT.zarr [--bigwig DIR] [--regions chr1:1-50000] ...

The job is a list of windows cut into chunks of `chunk_windows`. A chunk is the unit of
work, of batching and of commit (`ntengine.genome.worker`); this module plans the job,
opens or resumes the store and hands the chunks still to do to a local or Ray runner.
"""

from __future__ import annotations

import errno
from dataclasses import replace
from pathlib import Path

from ntengine.genome.fasta import FastaScan, fasta_index, scan_fasta
from ntengine.genome.store import STATUS, STATUS_DOC, FORMAT, create_or_open, done_chunks
from ntengine.genome.settings import EmbedSettings
from ntengine.genome.windows import output_names, plan_spans, read_bed, select_regions
from ntengine.genome.worker import JobSpec, run_chunks
from ntengine.locking import output_lock
from ntengine.progress import progress as reporter


def _resolve_engine(model, device, dtype, backend, trust_pickle, batch_size, adapter=None):
    """(engine, engine spec for workers): `model` is a checkpoint (path or hub id) or an Engine."""
    import ntengine
    from ntengine.checkpoint import resolve_checkpoint

    if hasattr(model, "forward") and hasattr(model, "config"):
        return model, {}
    # Workers get the local folder a hub id resolved to, not the id: they must not download.
    local = str(resolve_checkpoint(model, trust_pickle=trust_pickle).resolve())
    spec = {"checkpoint": local, "device": device, "dtype": dtype, "backend": backend, "trust_pickle": trust_pickle,
            "adapter": None if adapter is None else
            str(resolve_checkpoint(adapter, trust_pickle=trust_pickle).resolve())}
    return ntengine.compile(local, device=device, dtype=dtype, backend=backend, trust_pickle=trust_pickle,
                            batch_size=batch_size, adapter=spec["adapter"]), spec


def embed_genome(model, fasta, out, settings: EmbedSettings = EmbedSettings(), *, regions=None, bed=None,
                 records=None, bigwig=None, device="cpu", dtype="float32", backend: str = "auto",
                 trust_pickle: bool = False, ray=None, workers: int | None = None, progress: bool = True,
                 adapter=None, rename=None) -> dict:
    """Embed a genome (or regions of it) into a zarr store; optionally write bigWig tracks.

    Args:
        model: checkpoint folder / hub id / .onnx / .plan (compiled with device, dtype, backend,
            with the PEFT `adapter` merged if given), or an Engine (local runs only: Ray
            workers compile the checkpoint themselves).
        fasta: FASTA file: plain, gzip or BGZF (see `ntengine.genome.fasta`).
        out: the .zarr store. Rerunning the same call on an unfinished store resumes it;
            a store written with anything different is refused.
        settings: what to compute (window, stride, layer, strands, per-token outputs,
            IUPAC policy, batching): see `EmbedSettings`.
        regions: samtools-style strings ("chr1:1,000-50,000", 1-based inclusive) or names;
            bed: a BED file of regions; records: record names. Default: every record.
        bigwig: folder for logprob.bw and entropy.bw (see `ntengine.genome.tracks`); implies
            settings.tracks.
        rename: {FASTA record name: name in the outputs} (the store's `record`, the bigWig
            chromosomes), or the path of an alias file of such pairs (see `read_aliases`);
            regions and records may use either name.
        ray: None (local), or a Ray address ("auto", "ray://host:10001", "" for a fresh
            local cluster); workers: Ray actors (default: one per GPU, else 2).
    Returns:
        a summary dict: windows, embedded, skipped_all_n, shortened, bp, chunks_run, path.
    """

    from ntengine import __version__

    with output_lock(out):  # one writer per store, refused before any work; a killed run's lock is taken over
        if bigwig is not None:
            settings = replace(settings, tracks=True)
        scan: FastaScan = scan_fasta(fasta, allow_iupac=settings.invalid == "N")
        index = fasta_index(fasta, scan)
        lengths = {r.name: r.length for r in scan.records}
        renamed = output_names(lengths, rename)
        wanted = list(regions or []) + (read_bed(bed) if bed else [])
        spans = select_regions(lengths, wanted or None, records, aliases={v: k for k, v in renamed.items()})
        engine, engine_spec = _resolve_engine(model, device, dtype, backend, trust_pickle, settings.batch_size, adapter)
        cfg = engine.config
        settings = settings.for_model(cfg)
        windows = [tuple(w) for w in plan_spans(spans, settings.window, settings.stride)][:settings.max_windows]
        names = [r.name for r in scan.records]
        meta = {
            "format": FORMAT, "ntengine_version": __version__, "status_codes": STATUS_DOC,
            "records": [renamed[n] for n in names],
            **({"renamed": {k: v for k, v in renamed.items() if k != v}} if rename else {}),
            "model": {"sha256": engine.runtime.fingerprint(), "config": cfg.to_dict(), "backend": engine.backend,
                      "dtype": str(engine.dtype).removeprefix("torch."), "device": engine.device.type},
            "genome": {"path": str(Path(fasta).resolve()), "sha256": scan.sha256,
                       "lengths": [[r.name, r.length] for r in scan.records]},
            "params": settings.params(spans),
            "layout": {"windows": len(windows), "chunk_windows": settings.chunk_windows, "embed_dim": cfg.embed_dim,
                       "tokens": cfg.max_positions, "token_embeddings": bool(settings.token_embeddings),
                       "tracks": settings.tracks,
                       **({"snv_window": settings.window} if settings.snv_every else {})},
        }
        group = create_or_open(out, meta, windows, renamed)
        spec = JobSpec(fasta=str(Path(fasta).resolve()), index=index, store=str(Path(out).resolve()),
                       windows=windows, settings=settings, engine=engine_spec)
        done = done_chunks(group)
        todo = [c for c in range(spec.n_chunks) if not done[c] and spec.chunk(c)]
        total = sum(e - s for c in todo for _, s, e in spec.chunk(c))
        task = "scanning" if settings.snv_every else "embedding"
        with reporter(total, task, "bp", enabled=progress, unit_scale=True, smoothing=0.1) as bar:
            def on_done(_chunk, bp):
                bar.update(bp)

            try:
                if ray is None:
                    run_chunks(spec, engine, todo, on_done)
                else:
                    if not engine_spec:
                        raise ValueError("a Ray job needs a checkpoint path (workers compile it), not an Engine "
                                         "object")
                    from ntengine.genome.ray_runner import run_on_ray

                    run_on_ray(spec, todo, ray, workers, on_done)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                raise RuntimeError(f"{out}: the disk is full ({err.strerror}); the {bar.n:,} bp of chunks committed "
                                   "so far are safe: free some space and rerun the same command to resume") from None
        status = group["window_status"][:]
        summary = {"path": str(out), "windows": len(windows), "chunks_run": len(todo),
                   "embedded": int((status == STATUS["embedded"]).sum() + (status == STATUS["shortened"]).sum()),
                   "skipped_all_n": int((status == STATUS["skipped_all_n"]).sum()),
                   "shortened": int((status == STATUS["shortened"]).sum()),
                   "bp": int(sum(e - s for _, s, e in windows))}
        if (status == STATUS["pending"]).any():
            raise RuntimeError(f"{out}: {(status == STATUS['pending']).sum()} windows still pending after the run")
        if bigwig is not None:
            from ntengine.genome.tracks import write_bigwigs

            summary["bigwig"] = [str(p) for p in write_bigwigs(group, bigwig, {renamed[n]: length for n, length
                                                                              in lengths.items()})]
        return summary


"""Whole-genome embedding jobs: FASTA -> windows -> engine -> zarr (+ bigWig tracks).

    ntengine embed CKPT GENOME.fa -o OUT.zarr [--bigwig DIR] [--regions chr1:1-50000] ...

The job is a list of windows cut into chunks of `chunk_windows`. A chunk is the unit of
work, of batching and of commit: its windows are read, tokenised, sorted by length and
batched the same way whoever runs it, so a resumed or distributed job writes the same
bytes as one uninterrupted local run. A background thread reads and tokenises the next
chunks while the model runs the current one.
"""

from __future__ import annotations

import hashlib
import json
import queue
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ntengine.genome.fasta import FastaScan, has_acgt, open_sequences, reverse_complement, scan_fasta
from ntengine.genome.store import STATUS, STATUS_DOC, FORMAT, create_or_open, done_chunks, write_chunk
from ntengine.genome.windows import default_window_bp, plan_spans, read_bed, select_regions
from ntengine.pooling import log_softmax, pool_mean, sorted_batches



@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs to run chunks of a job (picklable, for Ray)."""

    fasta: str
    indexable: bool
    store: str
    windows: list  # (record, start, end), store order
    chunk_windows: int
    batch_size: int
    layer: int | None  # 1-based block for pooled embeddings; None = final embeddings
    token_layer: int | None  # per-token embeddings from this layer (0 = off)
    tracks: bool
    reverse_complement: bool
    invalid: str
    engine: dict = field(default_factory=dict)  # checkpoint, device, dtype, backend, trust_pickle

    @property
    def n_chunks(self) -> int:
        return max(1, -(-len(self.windows) // self.chunk_windows))

    def chunk(self, c: int) -> list:
        return self.windows[c * self.chunk_windows:(c + 1) * self.chunk_windows]


def model_sha256(engine) -> str:
    """Hash of what the engine computes with: its artefact file, or config + weights."""
    h = hashlib.sha256()
    if hasattr(engine.model, "path"):
        with open(engine.model.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
        return h.hexdigest()
    h.update(json.dumps(engine.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(engine.model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy())
    return h.hexdigest()


class ChunkRunner:
    """Reads, tokenises and runs the chunks of one job with one engine."""

    def __init__(self, spec: JobSpec, engine):
        self.spec, self.engine = spec, engine
        self.context = engine.config.max_positions
        self.tokenizer = type(engine.tokenizer)(version=engine.config.version, invalid=spec.invalid,
                                                max_length=self.context)
        self.sequences = open_sequences(spec.fasta, spec.indexable)

    def prepare(self, c: int) -> dict:
        """Read and tokenise chunk c (the part that overlaps the model's work)."""
        windows = self.spec.chunk(c)
        keep, seqs, spans = [], [], []
        for i, (record, start, end) in enumerate(windows):
            seq = self.sequences.fetch(record, start, end)
            if has_acgt(seq):  # all-N windows are skipped
                keep.append(i)
                seqs.append(seq)
                spans.append((start, end))
        counts = self.tokenizer.count_tokens(seqs) if seqs else np.zeros(0, np.int64)
        for j in np.flatnonzero(counts > self.context):  # one token per N: trim terminal N runs to fit
            seq, (start, end) = seqs[j], spans[j]
            lead, trail = len(seq) - len(seq.lstrip("Nn")), len(seq) - len(seq.rstrip("Nn"))
            seqs[j], spans[j] = seq[lead:len(seq) - trail], (start + lead, end - trail)
        strands = [seqs] + ([[reverse_complement(x) for x in seqs]] if self.spec.reverse_complement else [])
        encoded = [(self.tokenizer.batch_encode(x, truncation=True), self.tokenizer.count_tokens(x))
                   if x else (None, counts) for x in strands]
        return {"chunk": c, "windows": windows, "keep": keep, "spans": spans, "shortened": counts > self.context,
                "encoded": encoded}

    def run(self, prepared: dict) -> dict[str, np.ndarray]:
        """The chunk's rows of every store array."""
        spec, windows, keep = self.spec, prepared["windows"], prepared["keep"]
        n, dim, t = len(windows), self.engine.config.embed_dim, self.context
        out = {"window_status": np.full(n, STATUS["skipped_all_n"], np.int8),
               "window_start": np.array([w[1] for w in windows], np.int64),
               "window_end": np.array([w[2] for w in windows], np.int64),
               "embeddings": np.full((n, dim), np.nan, np.float32),
               "n_tokens": np.zeros(n, np.int32)}
        if spec.token_layer or spec.tracks:
            out["token_start"] = np.full((n, t), -1, np.int64)
            out["token_end"] = np.full((n, t), -1, np.int64)
        if spec.token_layer:
            out["token_embeddings"] = np.zeros((n, t, dim), np.float16)
        if spec.tracks:
            out["token_logprob"] = np.full((n, t), np.nan, np.float32)
            out["token_entropy"] = np.full((n, t), np.nan, np.float32)
        if not keep:
            return out
        pooled = [self._pool_strand(enc, counts, prepared, out if strand == 0 else None)
                  for strand, (enc, counts) in enumerate(prepared["encoded"])]
        out["embeddings"][keep] = np.mean(pooled, axis=0)
        return out

    def _pool_strand(self, enc, counts, prepared, out) -> np.ndarray:
        """Mean-pooled embeddings [len(keep), E] of one strand; fills out's per-window
        and per-token arrays when `out` is given (the forward strand)."""
        spec, engine, keep = self.spec, self.engine, prepared["keep"]
        lengths = enc.attention_mask.sum(1)
        pooled = np.empty((len(keep), engine.config.embed_dim), np.float32)
        key = "embeddings" if spec.layer is None else f"embeddings_{spec.layer}"
        layers = tuple(sorted({x for x in (spec.layer, spec.token_layer) if x}))
        want_logits = out is not None and spec.tracks
        for rows, width in sorted_batches(lengths, spec.batch_size):
            ids, mask = enc.ids[rows, :width], enc.attention_mask[rows, :width]
            res = engine.forward(ids, mask, layers=layers, logits=want_logits)
            pooled[rows] = pool_mean(res[key], engine.nucleotide_mask(ids) & mask)
            if out is None:
                continue
            for j, r in enumerate(rows):
                w, m = keep[r], int(lengths[r])
                start, end = prepared["spans"][r]
                if counts[r] > m:  # still too long after trimming: keep the first `context` tokens
                    end = start + int(enc.offsets[r, m - 1, 1])
                out["window_start"][w], out["window_end"][w], out["n_tokens"][w] = start, end, m
                shortened = prepared["shortened"][r] or counts[r] > m
                out["window_status"][w] = STATUS["shortened" if shortened else "embedded"]
                if spec.token_layer or spec.tracks:
                    out["token_start"][w, 1:m] = start + enc.offsets[r, 1:m, 0]
                    out["token_end"][w, 1:m] = start + enc.offsets[r, 1:m, 1]
                if spec.token_layer:
                    out["token_embeddings"][w, :m] = res[f"embeddings_{spec.token_layer}"][j, :m]
                if want_logits:
                    logp, entropy = _logprob_entropy(res["logits"][j, 1:m], ids[j, 1:m])
                    out["token_logprob"][w, 1:m] = logp
                    out["token_entropy"][w, 1:m] = entropy
        return pooled

    def close(self):
        self.sequences.close()


def _logprob_entropy(logits: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log P(ids[t]) and the entropy (nats) of softmax(logits[t]), per token."""
    logp = log_softmax(logits)
    entropy = -(np.exp(logp) * logp).sum(-1)
    return logp[np.arange(len(ids)), ids].astype(np.float32), entropy.astype(np.float32)


def run_chunks(spec: JobSpec, engine, chunks, on_done=None, prefetch: int = 2) -> None:
    """Run `chunks` in order, reading/tokenising up to `prefetch` ahead in a thread,
    and commit each to the store; on_done(chunk, bp) after each commit."""
    from ntengine.genome.store import open_group

    runner = ChunkRunner(spec, engine)
    group = open_group(Path(spec.store), "r+")
    todo: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def produce():
        try:
            for c in chunks:
                if stop.is_set():
                    return
                todo.put(runner.prepare(c))
            todo.put(None)
        except BaseException as err:  # handed to the consumer, raised there
            todo.put(err)

    thread = threading.Thread(target=produce, name="ntengine-reader", daemon=True)
    thread.start()
    try:
        while (item := todo.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            write_chunk(group, item["chunk"], spec.chunk_windows, runner.run(item))
            if on_done:
                on_done(item["chunk"], sum(e - s for _, s, e in item["windows"]))
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                todo.get_nowait()
            except queue.Empty:
                thread.join(0.05)
        runner.close()


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


def embed_genome(model, fasta, out, *, window: int | None = None, stride: int | None = None,
                 layer: int | None = None, regions=None, bed=None, records=None,
                 reverse_complement: bool = False, token_embeddings: int | None = None, bigwig=None,
                 invalid: str = "raise", batch_size: int = 8, chunk_windows: int = 32,
                 device="cpu", dtype="float32", backend: str = "auto", trust_pickle: bool = False,
                 ray=None, workers: int | None = None, progress: bool = True, adapter=None) -> dict:
    """Embed a genome (or regions of it) into a zarr store; optionally write bigWig tracks.

    Args:
        model: checkpoint folder / hub id / .onnx / .plan (compiled with device, dtype, backend,
            with the PEFT `adapter` merged if given), or an Engine (local runs only: Ray
            workers compile the checkpoint themselves).
        fasta: FASTA file: plain, gzip or BGZF (see `ntengine.genome.fasta`).
        out: the .zarr store. Rerunning the same call on an unfinished store resumes it;
            a store written with anything different is refused.
        window, stride: window length and step in bp (default: the model's context,
            6 x (max_positions - 1) bp; stride = window, no overlap).
        layer: 1-based block for the pooled embeddings (default: final embeddings).
        regions: samtools-style strings ("chr1:1,000-50,000", 1-based inclusive) or names;
            bed: a BED file of regions; records: record names. Default: every record.
        reverse_complement: also embed each window's reverse complement and store the
            mean of the two strands' pooled embeddings (per-token outputs stay forward).
        token_embeddings: also store per-token embeddings (float16) from this layer.
        bigwig: folder for logprob.bw and entropy.bw (see `ntengine.genome.tracks`).
        invalid: "raise" (default: any IUPAC code other than N is an error naming record,
            line and column) or "N" (read them as N, as the tokenizer's policy).
        batch_size: windows per forward pass; chunk_windows: windows per committed chunk.
        ray: None (local), or a Ray address ("auto", "ray://host:10001", "" for a fresh
            local cluster); workers: Ray actors (default: one per GPU, else 2).
    Returns:
        a summary dict: windows, embedded, skipped_all_n, shortened, bp, chunks_run, path.
    """
    from tqdm import tqdm

    from ntengine import __version__

    if batch_size < 1 or chunk_windows < 1:
        raise ValueError("batch_size and chunk_windows must be >= 1")
    if invalid not in ("raise", "N"):
        raise ValueError(f"invalid must be 'raise' or 'N', got {invalid!r}")
    scan: FastaScan = scan_fasta(fasta, allow_iupac=invalid == "N")
    lengths = {r.name: r.length for r in scan.records}
    wanted = list(regions or []) + (read_bed(bed) if bed else [])
    spans = select_regions(lengths, wanted or None, records)
    engine, engine_spec = _resolve_engine(model, device, dtype, backend, trust_pickle, batch_size, adapter)
    cfg = engine.config
    for name, value in (("layer", layer), ("token_embeddings", token_embeddings)):
        if value is not None and not 1 <= value <= cfg.num_layers:
            raise ValueError(f"{name} {value} out of range 1..{cfg.num_layers}")
    window = window or default_window_bp(cfg)
    windows = [tuple(w) for w in plan_spans(spans, window, stride)]
    names = [r.name for r in scan.records]
    meta = {
        "format": FORMAT, "ntengine_version": __version__, "status_codes": STATUS_DOC,
        "records": names,
        "model": {"sha256": model_sha256(engine), "config": cfg.to_dict(), "backend": engine.backend,
                  "dtype": str(engine.dtype).removeprefix("torch."), "device": engine.device.type},
        "genome": {"path": str(Path(fasta).resolve()), "sha256": scan.sha256,
                   "lengths": [[r.name, r.length] for r in scan.records]},
        "params": {"window": window, "stride": stride or window, "layer": layer, "spans": spans,
                   "reverse_complement": reverse_complement, "token_embeddings": token_embeddings,
                   "tracks": bigwig is not None, "invalid": invalid, "batch_size": batch_size},
        "layout": {"windows": len(windows), "chunk_windows": chunk_windows, "embed_dim": cfg.embed_dim,
                   "tokens": cfg.max_positions, "token_embeddings": bool(token_embeddings),
                   "tracks": bigwig is not None},
    }
    group = create_or_open(out, meta, windows, {n: i for i, n in enumerate(names)})
    spec = JobSpec(str(Path(fasta).resolve()), scan.indexable, str(Path(out).resolve()), windows, chunk_windows,
                   batch_size, layer, token_embeddings, bigwig is not None, reverse_complement, invalid, engine_spec)
    done = done_chunks(group)
    todo = [c for c in range(spec.n_chunks) if not done[c] and spec.chunk(c)]
    total = sum(e - s for c in todo for _, s, e in spec.chunk(c))
    with tqdm(total=total, desc="embedding", unit="bp", unit_scale=True, disable=not progress,
              file=sys.stderr, smoothing=0.1) as bar:
        def on_done(_chunk, bp):
            bar.update(bp)

        if ray is None:
            run_chunks(spec, engine, todo, on_done)
        else:
            if not engine_spec:
                raise ValueError("a Ray job needs a checkpoint path (workers compile it), not an Engine object")
            from ntengine.genome.ray_runner import run_on_ray

            run_on_ray(spec, todo, ray, workers, on_done)
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

        summary["bigwig"] = [str(p) for p in write_bigwigs(group, bigwig, lengths)]
    return summary


"""The worker side of a genome job: one chunk of windows -> engine -> arrays for the store.

`ChunkRunner` is what every runner uses, local (`run_chunks`, with a background thread
reading and tokenising the next chunks) or on Ray (`ray_runner`): a chunk's windows are
read, tokenised, sorted by length and batched the same way whoever runs it, so a resumed
or distributed job writes the same bytes as one uninterrupted local run.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ntengine.genome.fasta import FastaIndex, has_acgt, open_sequences, reverse_complement
from ntengine.genome.settings import EmbedSettings
from ntengine.genome.snv_llr import both_strands_llr, window_llr
from ntengine.genome.store import STATUS, write_chunk
from ntengine.pooling import log_softmax, pool_mean, sorted_batches


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """Everything a worker needs to run chunks of a job (picklable, for Ray)."""

    fasta: str
    index: FastaIndex | None  # fasta_index's choice: workers read with the index the job checked
    store: str
    windows: list  # (record, start, end), store order
    settings: EmbedSettings
    engine: dict = field(default_factory=dict)  # checkpoint, device, dtype, backend, trust_pickle

    @property
    def n_chunks(self) -> int:
        return max(1, -(-len(self.windows) // self.settings.chunk_windows))

    def chunk(self, c: int) -> list:
        return self.windows[c * self.settings.chunk_windows:(c + 1) * self.settings.chunk_windows]


class ChunkRunner:
    """Reads, tokenises and runs the chunks of one job with one engine."""

    def __init__(self, spec: JobSpec, engine, on_batch=None):
        self.spec, self.engine = spec, engine
        self.on_batch = on_batch  # on_batch(bp): a forward-strand batch of that many bases is done
        self.context = engine.config.max_positions
        self.tokenizer = type(engine.tokenizer)(version=engine.config.version, invalid=spec.settings.invalid,
                                                max_length=self.context)
        self.sequences = open_sequences(spec.fasta, spec.index)

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
        settings = self.spec.settings  # a scan reverses its strands itself (`both_strands_llr`)
        strands = [seqs] + ([[reverse_complement(x) for x in seqs]]
                            if settings.reverse_complement and not settings.snv_every else [])
        encoded = [(self.tokenizer.batch_encode(x, truncation=True), self.tokenizer.count_tokens(x))
                   if x else (None, counts) for x in strands]
        return {"chunk": c, "windows": windows, "keep": keep, "seqs": seqs, "spans": spans,
                "shortened": counts > self.context, "encoded": encoded}

    def run(self, prepared: dict) -> dict[str, np.ndarray]:
        """The chunk's rows of every store array."""
        settings, windows, keep = self.spec.settings, prepared["windows"], prepared["keep"]
        n, dim, t = len(windows), self.engine.config.embed_dim, self.context
        out = {"window_status": np.full(n, STATUS["skipped_all_n"], np.int8),
               "window_start": np.array([w[1] for w in windows], np.int64),
               "window_end": np.array([w[2] for w in windows], np.int64),
               "n_tokens": np.zeros(n, np.int32)}
        if settings.snv_every:
            return self._scan(prepared, out)
        out["embeddings"] = np.full((n, dim), np.nan, np.float32)
        if settings.token_embeddings or settings.tracks:
            out["token_start"] = np.full((n, t), -1, np.int64)
            out["token_end"] = np.full((n, t), -1, np.int64)
        if settings.token_embeddings:
            out["token_embeddings"] = np.zeros((n, t, dim), np.float16)
        if settings.tracks:
            out["token_logprob"] = np.full((n, t), np.nan, np.float32)
            out["token_entropy"] = np.full((n, t), np.nan, np.float32)
        if not keep:
            return out
        pooled = [self._pool_strand(enc, counts, prepared, out if strand == 0 else None)
                  for strand, (enc, counts) in enumerate(prepared["encoded"])]
        out["embeddings"][keep] = np.mean(pooled, axis=0)
        return out

    def _scan(self, prepared, out) -> dict[str, np.ndarray]:
        """`run` for a scan: each kept window's bases and the LLR of its every SNV. A window
        whose tokens overflow the context even with its terminal N runs trimmed (Ns inside
        it) is scanned in consecutive pieces that fit, so no base goes unscored."""
        settings, (enc, counts) = self.spec.settings, prepared["encoded"][0]
        n, b = len(prepared["windows"]), settings.window
        out["bases"] = np.zeros((n, b), np.uint8)
        out["snv_llr"] = np.full((n, b, 4), np.nan, np.float32)
        llr = both_strands_llr if settings.reverse_complement else window_llr
        for r, w in enumerate(prepared["keep"]):
            (start, end), seq = prepared["spans"][r], prepared["seqs"][r]
            out["window_start"][w], out["window_end"][w] = start, end
            m = int(enc.attention_mask[r].sum())  # tokens of the first piece
            out["n_tokens"][w] = m
            out["window_status"][w] = STATUS["shortened" if prepared["shortened"][r] or counts[r] > self.context
                                             else "embedded"]
            out["bases"][w, :len(seq)] = np.frombuffer(seq.upper().encode(), np.uint8)
            done, fits = 0, int(enc.offsets[r, m - 1, 1])  # bases the first piece's tokens hold
            while True:
                out["snv_llr"][w, done:done + fits] = llr(self.engine, seq[done:done + fits], settings.snv_every,
                                                         batch_size=settings.batch_size, tokenizer=self.tokenizer)
                done += fits
                if done >= len(seq):
                    break
                piece = self.tokenizer.batch_encode([seq[done:]], truncation=True)
                fits = int(piece.offsets[0, int(piece.attention_mask[0].sum()) - 1, 1])
            if self.on_batch:
                self.on_batch(end - start)
        return out

    def _pool_strand(self, enc, counts, prepared, out) -> np.ndarray:
        """Mean-pooled embeddings [len(keep), E] of one strand; fills out's per-window
        and per-token arrays when `out` is given (the forward strand)."""
        settings, engine, keep = self.spec.settings, self.engine, prepared["keep"]
        lengths = enc.attention_mask.sum(1)
        pooled = np.empty((len(keep), engine.config.embed_dim), np.float32)
        key = "embeddings" if settings.layer is None else f"embeddings_{settings.layer}"
        layers = tuple(sorted({x for x in (settings.layer, settings.token_embeddings) if x}))
        want_logits = out is not None and settings.tracks
        for rows, width in sorted_batches(lengths, settings.batch_size):
            ids, mask = enc.ids[rows, :width], enc.attention_mask[rows, :width]
            res = engine.forward(ids, mask, layers=layers, logits=want_logits)
            pooled[rows] = pool_mean(res[key], engine.nucleotide_mask(ids) & mask)
            if out is None:
                continue
            if self.on_batch:
                self.on_batch(sum(prepared["spans"][r][1] - prepared["spans"][r][0] for r in rows))
            for j, r in enumerate(rows):
                w, m = keep[r], int(lengths[r])
                start, end = prepared["spans"][r]
                if counts[r] > m:  # still too long after trimming: keep the first `context` tokens
                    end = start + int(enc.offsets[r, m - 1, 1])
                out["window_start"][w], out["window_end"][w], out["n_tokens"][w] = start, end, m
                shortened = prepared["shortened"][r] or counts[r] > m
                out["window_status"][w] = STATUS["shortened" if shortened else "embedded"]
                if settings.token_embeddings or settings.tracks:
                    out["token_start"][w, 1:m] = start + enc.offsets[r, 1:m, 0]
                    out["token_end"][w, 1:m] = start + enc.offsets[r, 1:m, 1]
                if settings.token_embeddings:
                    out["token_embeddings"][w, :m] = res[f"embeddings_{settings.token_embeddings}"][j, :m]
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
    and commit each to the store. on_done(chunk, bp): bp more bases of chunk are done,
    after every batch (so a progress bar moves while a chunk runs) and at its commit
    (the rest: skipped all-N windows, trimmed ends); per chunk they sum to its bases."""
    from ntengine.genome.store import open_group

    progress = {"chunk": None, "bp": 0}  # the chunk running, and its bases reported so far

    def on_batch(bp):
        progress["bp"] += bp
        if on_done:
            on_done(progress["chunk"], bp)

    runner = ChunkRunner(spec, engine, on_batch)
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
            progress.update(chunk=item["chunk"], bp=0)
            write_chunk(group, item["chunk"], spec.settings.chunk_windows, runner.run(item))
            if on_done:
                on_done(item["chunk"], sum(e - s for _, s, e in item["windows"]) - progress["bp"])
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                todo.get_nowait()
            except queue.Empty:
                thread.join(0.05)
        runner.close()

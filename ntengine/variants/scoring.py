"""Zero-shot scores of alleles, computed in shared batches.

Per allele (definitions; `windows.py` has the window and token conventions):

    llr            log P(alt k-mer) - log P(ref k-mer) at the variant's token (the one
                   covering its first changed base: for indels, not the anchor), from one
                   forward pass of the *reference* window with that token masked (log-
                   softmax over the vocabulary). Shared by every allele at the locus.
    logit_diff     logit(alt k-mer) - logit(ref k-mer) at the same masked position, the
                   mean of the forward and reverse-complement strands (as public NT
                   recipes: 999 six-mers + <cls>, central token masked).
    l1, l2, cosine, dot
                   between the mean-pooled embeddings (nucleotide tokens) of the
                   unmasked reference and alternative windows, at the chosen layer.
    token_l1 .. token_dot
                   the same between the mean embeddings of the tokens overlapping the
                   allele: REF's bases in the reference window, ALT's in the alternative.

With both_strands, llr and the distances are the mean over the forward and reverse-
complement strands (logit_diff always is). Identical windows are computed once per
block: the reference window (and its masked pass) of a locus is shared by all its
alleles and by every record at that locus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ntengine.genome.fasta import has_acgt, reverse_complement
from ntengine.genome.windows import default_window_bp
from ntengine.pooling import log_softmax, pool_mean, sorted_batches
from ntengine.variants.windows import (DEFAULT_WINDOW, VariantWindows, build_windows, changed_base, span_tokens,
                                       token_at)

_NON_ACGTN = re.compile(r"[^ACGTNacgtn]")
SCORES = ("llr", "logit_diff", "l1", "l2", "cosine", "dot", "token_l1", "token_l2", "token_cosine", "token_dot")


@dataclass(frozen=True, kw_only=True)
class ScoreSettings:
    """What variant scoring computes and how it batches.

    Attributes:
        window: window length in bp (default 5,994 = 999 six-mers; at most the model's context).
        layer: 1-based layer for the distances (default final embeddings).
        both_strands: average llr and the distances over both strands.
        batch_size: windows per forward pass.
        block_records: records read, scored in shared batches and written at a time.
        share_reference: compute each distinct window once per block (turn off only to
            measure what sharing saves).
        invalid: "raise" (an IUPAC code other than N in a reference window is an error
            naming its genome position) or "N" (read as N), as for genome jobs.
    """

    window: int = DEFAULT_WINDOW
    layer: int | None = None
    both_strands: bool = False
    batch_size: int = 8
    block_records: int = 256
    share_reference: bool = True
    invalid: str = "raise"

    def check(self, config) -> None:
        """Raise ValueError if these settings do not fit the model of `config`."""
        limit = default_window_bp(config)
        if not 1 <= self.window <= limit:
            raise ValueError(f"window must be 1..{limit} bp for this model (its context), got {self.window}")
        if self.layer is not None and not 1 <= self.layer <= config.num_layers:
            raise ValueError(f"layer {self.layer} out of range 1..{config.num_layers}")
        if self.batch_size < 1 or self.block_records < 1:
            raise ValueError("batch_size and block_records must be >= 1")
        if self.invalid not in ("raise", "N"):
            raise ValueError(f"invalid must be 'raise' or 'N', got {self.invalid!r}")


class AlleleTask(NamedTuple):
    chrom: str
    pos: int  # 0-based first base of REF
    ref: str
    alt: str
    record_length: int


def distances(a: np.ndarray, b: np.ndarray) -> list[float]:
    """L1, L2, cosine similarity, dot product of two vectors (float64)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    dot = float(a @ b)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return [float(np.abs(a - b).sum()), float(np.linalg.norm(a - b)), dot / norm if norm else float("nan"), dot]


class Scorer:
    """Scores blocks of alleles with one engine.

    Attributes: stats = {"windows_requested", "windows_computed", "masked_requested",
    "masked_computed"} over all blocks (how much sharing saved).
    """

    def __init__(self, engine, fetch, settings: ScoreSettings = ScoreSettings()):
        settings.check(engine.config)
        self.engine, self.fetch, self.settings = engine, fetch, settings
        self.tokenizer = type(engine.tokenizer)(version=engine.config.version, invalid=settings.invalid,
                                                max_length=engine.config.max_positions)
        self._planned: dict = {}  # task -> windows, built once per block (planning, then scoring)
        self.stats = dict.fromkeys(("windows_requested", "windows_computed", "masked_requested",
                                    "masked_computed"), 0)

    def windows(self, t: AlleleTask) -> VariantWindows | None:
        """The allele's reference and alternative windows, fitted to the model's context.

        Each N is a token of its own, so a window reaching into an N gap can hold more
        tokens than the model takes: its terminal N runs are then trimmed (the same tail
        from both windows, never into the allele). None when it still does not fit, or
        holds no A/C/G/T at all: the variant sits in or between N runs (skipped as "n_gap",
        as genome jobs skip all-N windows).
        """
        if t not in self._planned:
            self._planned[t] = self._fit(t)
        return self._planned[t]

    def skip_reason(self, t: AlleleTask) -> str | None:
        """Why `t` cannot be scored ("n_gap": see `windows`), or None."""
        return "n_gap" if self.windows(t) is None else None

    def _fit(self, t: AlleleTask) -> VariantWindows | None:
        w = build_windows(self.fetch, t.chrom, t.pos, t.ref, t.alt, t.record_length, self.settings.window)
        if self.settings.invalid == "raise" and (bad := _NON_ACGTN.search(w.ref)):
            raise ValueError(f"{t.chrom}:{w.start + bad.start() + 1:,}: reference base {bad.group()!r} is not "
                             "A/C/G/T/N (an IUPAC code): pass invalid='N' (--invalid N) to read it as N")
        limit = self.engine.config.max_positions
        if not has_acgt(w.ref):
            return None
        if self.tokenizer.count_tokens([w.ref, w.alt]).max() <= limit:
            return w
        lead = min(len(w.ref) - len(w.ref.lstrip("Nn")), w.offset)
        tail = min(len(w.ref) - len(w.ref.rstrip("Nn")), len(w.ref) - w.offset - len(t.ref),
                   len(w.alt) - len(w.alt.rstrip("Nn")), len(w.alt) - w.offset - len(t.alt))
        fitted = VariantWindows(w.start + lead, w.ref[lead:len(w.ref) - tail], w.alt[lead:len(w.alt) - tail],
                                w.offset - lead)
        fits = has_acgt(fitted.ref) and self.tokenizer.count_tokens([fitted.ref, fitted.alt]).max() <= limit
        return fitted if fits else None

    def score(self, tasks: list[AlleleTask], on_batch=None) -> np.ndarray:
        """float64 [len(tasks), len(SCORES)]. `on_batch(fraction)`, when given, is called after
        every forward pass with the fraction of this call's windows computed so far."""
        plans, windows, masked = [], {}, {}
        for i, t in enumerate(tasks):
            w = self.windows(t)
            if w is None:
                raise ValueError(f"{t.chrom}:{t.pos + 1}: the windows around this allele do not fit the model's "
                                 "context (an N gap): skip it (score_variants marks it n_gap)")
            n, changed = len(w.ref), changed_base(w)
            strands = []
            for rc in (False, True):
                ref, alt = (reverse_complement(w.ref), reverse_complement(w.alt)) if rc else (w.ref, w.alt)
                q = n - 1 - changed if rc else changed  # the variant's first changed base on this strand
                # allele spans on this strand: [lo, hi) of REF in ref, of ALT in alt
                ref_span = (n - w.offset - len(t.ref), n - w.offset) if rc else (w.offset, w.offset + len(t.ref))
                alt_len = min(len(t.alt), len(alt) - w.offset)
                alt_span = (len(alt) - w.offset - alt_len, len(alt) - w.offset) if rc else (w.offset,
                                                                                          w.offset + alt_len)
                unmasked = not rc or self.settings.both_strands
                strands.append({"q": q, "ref": ref, "alt": alt, "unmasked": unmasked,
                                "ref_key": self._request(windows, ref, ref_span, i) if unmasked else None,
                                "alt_key": self._request(windows, alt, alt_span, i) if unmasked else None,
                                "mask_key": self._request_masked(masked, ref, q, i)})
            plans.append(strands)
        total, done = len(windows) + len(masked), 0

        def batch_done(rows: int) -> None:
            nonlocal done
            done += rows
            if on_batch is not None:
                on_batch(done / total)

        emb = self._run_unmasked(windows, batch_done)
        logits = self._run_masked(masked, batch_done)
        self._planned.clear()
        out = np.empty((len(tasks), len(SCORES)))
        for i, strands in enumerate(plans):
            llr, diff, dist, tok = [], [], [], []
            for strand in strands:
                row, ref_id = logits[strand["mask_key"]]
                alt_ids, alt_offsets = self.tokenizer.encode_with_offsets(strand["alt"])
                alt_id = alt_ids[token_at(alt_offsets, len(alt_ids), strand["q"])]
                logp = log_softmax(row)
                llr.append(logp[alt_id] - logp[ref_id])
                diff.append(row[alt_id] - row[ref_id])
                if strand["unmasked"]:
                    (ref_pool, ref_tok), (alt_pool, alt_tok) = emb[strand["ref_key"]], emb[strand["alt_key"]]
                    dist.append(distances(ref_pool, alt_pool))
                    tok.append(distances(ref_tok, alt_tok))
            n_llr = 2 if self.settings.both_strands else 1
            out[i] = [np.mean(llr[:n_llr]), np.mean(diff), *np.mean(dist, 0), *np.mean(tok, 0)]
        return out

    def _request(self, windows: dict, seq: str, span: tuple[int, int], task: int) -> tuple:
        """Ask for `seq`'s pooled embedding and its `span` tokens' mean; returns the result key."""
        owner = None if self.settings.share_reference else task  # sharing: one computation per distinct window
        self.stats["windows_requested"] += 1
        windows.setdefault((seq, owner), set()).add(span)
        return seq, owner, span

    def _request_masked(self, masked: dict, seq: str, q: int, task: int) -> tuple:
        """Ask for the logits at the token covering `q` of `seq`, masked; returns the key."""
        key = (seq, q, None if self.settings.share_reference else task)
        self.stats["masked_requested"] += 1
        masked[key] = None
        return key

    def _batches(self, seqs: list[str]):
        """(rows, ids, mask, offsets, lengths) batches of `seqs`, longest first."""
        enc = self.tokenizer.batch_encode(seqs)
        lengths = enc.attention_mask.sum(1)
        for rows, width in sorted_batches(lengths, self.settings.batch_size):
            yield rows, enc.ids[rows, :width].copy(), enc.attention_mask[rows, :width], enc.offsets[rows], lengths

    def _run_unmasked(self, windows: dict, batch_done) -> dict:
        """{(seq, owner, span): (pooled embedding, mean of the span's tokens)}."""
        keys = list(windows)
        seqs = [seq for seq, _ in keys]
        self.stats["windows_computed"] += len(keys)
        name = "embeddings" if self.settings.layer is None else f"embeddings_{self.settings.layer}"
        layers = () if self.settings.layer is None else (self.settings.layer,)
        out = {}
        if not seqs:
            return out
        for rows, ids, mask, offsets, lengths in self._batches(seqs):
            emb = self.engine.forward(ids, mask, layers=layers, logits=False)[name]
            pooled = pool_mean(emb, self.engine.nucleotide_mask(ids) & mask)
            for j, r in enumerate(rows):
                for span in windows[keys[r]]:
                    toks = span_tokens(offsets[j], int(lengths[r]), *span)
                    out[(*keys[r], span)] = (pooled[j], emb[j, toks].mean(0))
            batch_done(len(rows))
        return out

    def _run_masked(self, masked: dict, batch_done) -> dict:
        """{key: (logits row at the masked token, the reference token id there)}."""
        keys = list(masked)
        self.stats["masked_computed"] += len(keys)
        out = {}
        if not keys:
            return out
        mask_id = self.tokenizer.mask_id
        for rows, ids, mask, offsets, lengths in self._batches([k[0] for k in keys]):
            positions = [token_at(offsets[j], int(lengths[r]), keys[r][1]) for j, r in enumerate(rows)]
            ref_ids = [int(ids[j, k]) for j, k in enumerate(positions)]
            ids[np.arange(len(rows)), positions] = mask_id
            logits = self.engine.forward(ids, mask, logits=True)["logits"]
            for j, r in enumerate(rows):
                out[keys[r]] = (logits[j, positions[j]].astype(np.float64), ref_ids[j])
            batch_done(len(rows))
        return out

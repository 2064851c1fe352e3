"""`ntengine score-variants`: zero-shot scores for every allele of a VCF / BCF.

Reads with pysam (htslib), in blocks of records (bounded memory, shared batches within a
block), and writes every input record back out, in order, with the scores as INFO fields
declared in the header (Number=A: one value per ALT, "." where an allele was not
scored) plus a TSV (or Parquet) table with one row per allele. Multi-allelic records
are split per ALT for scoring. Not scored, with a reason (INFO NT_SKIP, counted in the
summary): symbolic alleles (<DEL>, <*>...), the spanning deletion *, breakends,
structural variants (INFO SVTYPE, or alleles longer than half the window), alleles
with characters other than A C G T N, alleles in or between N gaps whose windows cannot
fit the model's context even with their terminal N runs trimmed (n_gap), and records
whose REF does not match the FASTA — those also get FILTER NT_REF_MISMATCH — or whose
POS lies outside the contig (pos_outside_contig: VCF's telomere POS 0); contigs missing
from the header are declared. They are flagged, never scored, never fatal. A malformed
line (wrong column count, truncated file) is an error naming the record before it, found
by a first parsing pass before any output is written.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ntengine.genome.fasta import fasta_index, open_sequences, parse_region, scan_fasta
from ntengine.locking import output_lock
from ntengine.progress import progress as reporter
from ntengine.variants.parts import BlockParts
from ntengine.variants.scoring import SCORES, AlleleTask, Scorer, ScoreSettings

INFO = {  # INFO ID -> (score column, description)
    "NT_LLR": ("llr", "log P(alt k-mer) - log P(ref k-mer) at the variant's masked token"),
    "NT_LOGIT_DIFF": ("logit_diff", "logit(alt k-mer) - logit(ref k-mer) at the masked token, mean of both strands"),
    "NT_L1": ("l1", "L1 distance of mean-pooled ref/alt window embeddings"),
    "NT_L2": ("l2", "L2 distance of mean-pooled ref/alt window embeddings"),
    "NT_COS": ("cosine", "cosine similarity of mean-pooled ref/alt window embeddings"),
    "NT_DOT": ("dot", "dot product of mean-pooled ref/alt window embeddings"),
    "NT_TOK_L1": ("token_l1", "L1 distance of the mean embeddings of the tokens covering the allele"),
    "NT_TOK_L2": ("token_l2", "L2 distance of the mean embeddings of the tokens covering the allele"),
    "NT_TOK_COS": ("token_cosine", "cosine similarity of the mean embeddings of the tokens covering the allele"),
    "NT_TOK_DOT": ("token_dot", "dot product of the mean embeddings of the tokens covering the allele"),
}
SKIP_INFO, MISMATCH_FILTER = "NT_SKIP", "NT_REF_MISMATCH"
_BASES = frozenset("ACGTNacgtn")


def skip_reason(rec, alt: str | None, window: int) -> str | None:
    """Why an allele is not scored (None: it is)."""
    if alt is None or alt == ".":
        return "missing_alt"
    if alt == "*":
        return "spanning_deletion"
    if alt.startswith("<"):
        return "symbolic"
    if "[" in alt or "]" in alt:
        return "breakend"
    if "SVTYPE" in rec.info or max(len(alt), len(rec.ref)) > window // 2:
        return "structural"
    if not _BASES.issuperset(alt) or not _BASES.issuperset(rec.ref):
        return "non_acgtn_allele"
    return None


def _output_mode(path: Path) -> str:
    name = path.name.lower()
    return "wb" if name.endswith(".bcf") else "wz" if name.endswith((".vcf.gz", ".vcf.bgz")) else "w"


def _open_vcf(path):
    """pysam reader without htslib's 'Could not retrieve index file' noise (we read sequentially)."""
    import pysam

    previous = pysam.set_verbosity(0)
    try:
        return pysam.VariantFile(str(path))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable VCF/BCF ({err})") from None
    finally:
        pysam.set_verbosity(previous)


def _in_regions(regions: list[tuple[str, int | None, int | None]]):
    """A predicate: does a record start in one of these (name, start, end) regions (all
    records when there are none)?"""
    def selected(rec) -> bool:
        return not regions or any(rec.chrom == name and (start is None or start <= rec.start < end)
                                  for name, start, end in regions)
    return selected


def _declare_implicit_fields(path, header, selected=lambda rec: True) -> int:
    """htslib defines the contigs and INFO/FORMAT keys a VCF uses without declaring them
    while it parses records, too late for a writer opened before: one parsing pass finds
    them all, and finds malformed lines before any output is written. END is declared
    as the VCF spec reserves it (pysam writes it back from every record's stop).
    Returns the number of `selected` records (the progress bar's total)."""
    with _open_vcf(path) as first:
        n, kept, last = 0, 0, None
        try:
            for rec in first:
                n, kept, last = n + 1, kept + selected(rec), f"{rec.chrom}:{rec.pos}"
        except (OSError, ValueError) as err:
            after = f"after record {n} ({last})" if last else "before the first record"
            raise ValueError(f"{path}: malformed line {after}: {err} (wrong number of columns, a truncated file, "
                             "or a value htslib cannot parse)") from None
        for key in first.header.contigs:
            if key not in header.contigs:
                header.contigs.add(key)
        for kind, ours, theirs in (("INFO", header.info, first.header.info),
                                   ("FORMAT", header.formats, first.header.formats)):
            for key, meta in theirs.items():
                if key not in ours and (kind, key) != ("INFO", "END"):
                    ours.add(key, "." if meta.number is None else meta.number, meta.type or "String",
                             meta.description or "not declared in the input VCF")
    if "END" not in header.info:
        header.info.add("END", 1, "Integer", "End position of the variant (declared by ntengine: the input did not)")
    return kept


def _prepare_header(header, lengths: dict[str, int], argv: str) -> None:
    for info_id, (_, text) in INFO.items():
        header.info.add(info_id, "A", "Float", f"ntengine: {text}")
    header.info.add(SKIP_INFO, "A", "String", "ntengine: why an allele was not scored (. = scored)")
    header.filters.add(MISMATCH_FILTER, None, None, "ntengine: REF does not match the reference FASTA")
    for name, length in lengths.items():
        if name not in header.contigs:
            header.contigs.add(name, length=length)
    header.add_line(f"##ntengine_command={argv}")


COLUMNS = ["chrom", "pos", "id", "ref", "alt", "status", *SCORES]


class TableWriter:
    """One row per allele: TSV streamed as blocks finish; .parquet (pandas + pyarrow)
    collected and written at the end. Written under a temporary name, then renamed."""

    def __init__(self, path):
        self.path = Path(path) if path else None
        self.parquet = self.path is not None and self.path.suffix == ".parquet"
        self.rows: list[dict] = []
        if self.parquet:
            try:
                import pandas  # noqa: F401
                import pyarrow  # noqa: F401
            except ImportError as err:
                raise RuntimeError(f"Parquet output needs pandas and pyarrow ({err}): write a .tsv instead") from None
        elif self.path:
            self.tmp = self.path.with_name(self.path.name + ".partial")
            self.file = open(self.tmp, "w", newline="")
            self.writer = csv.DictWriter(self.file, COLUMNS, delimiter="\t", lineterminator="\n")
            self.writer.writeheader()

    def write(self, rows: list[dict]) -> None:
        if self.parquet:
            self.rows.extend(rows)
        elif self.path:
            self.writer.writerows(rows)

    def close(self) -> None:
        if self.parquet:
            import pandas as pd

            pd.DataFrame(self.rows, columns=COLUMNS).to_parquet(self.path)
        elif self.path:
            self.file.close()
            self.tmp.replace(self.path)


def score_variants(model, vcf, fasta, out, settings: ScoreSettings = ScoreSettings(), *, tsv=None, device="cpu",
                   dtype="float32", backend: str = "auto", trust_pickle: bool = False, progress: bool = True,
                   adapter=None, regions=None, max_records: int | None = None, scan=None) -> dict:
    """Score every allele of `vcf` against `fasta`; write `out` (VCF/VCF.gz/BCF) and `tsv`.

    Args:
        model: checkpoint folder / hub id / .onnx / .plan (with the PEFT `adapter` merged if
            given), or an Engine.
        settings: window, layer, strands and batching: see `ScoreSettings`.
        regions: only records starting in these samtools-style regions ("chrM:1-5,000" or a
            contig name); max_records: only the first N (selected) records. The output holds
            the selected records only.
        scan: a folder written by `ntengine scan` of this FASTA: read SNV LLRs from it
            instead of running a model (model must then be None; see `from_scan`).
    Returns:
        summary: records, alleles, scored, skipped {reason: count}, ref_mismatch_records,
        and the Scorer's window statistics.
    """
    import pysam

    import ntengine

    if (model is None) == (scan is None):
        raise ValueError("give a model or a scan to read the scores from, not both")
    genome = scan_fasta(fasta, allow_iupac=True)
    lengths = {r.name: r.length for r in genome.records}
    sequences = open_sequences(fasta, fasta_index(fasta, genome))
    if scan is not None:
        from ntengine.variants.from_scan import ScanScorer

        scorer = ScanScorer(scan, genome.sha256)
        source = scorer.job
    else:
        engine = model if hasattr(model, "forward") and hasattr(model, "config") else ntengine.compile(
            model, device=device, dtype=dtype, backend=backend, trust_pickle=trust_pickle,
            batch_size=settings.batch_size, adapter=adapter)
        scorer = Scorer(engine, lambda c, a, b: sequences.fetch(c, a, b).upper(), settings)
        source = {"model": engine.runtime.fingerprint(), "dtype": str(engine.dtype)}
    out = Path(out)
    if max_records is not None and max_records < 1:
        raise ValueError(f"max_records must be >= 1, got {max_records}")
    wanted = [parse_region(r) for r in regions or []]
    unknown = [name for name, _, _ in wanted if name not in lengths]
    if unknown:
        raise ValueError(f"region {unknown[0]}: no such record in {Path(fasta).name} (it has "
                         f"{', '.join(list(lengths)[:5])}{', ...' if len(lengths) > 5 else ''})")
    selected = _in_regions(wanted)
    reader = _open_vcf(vcf)
    n_records = min(_declare_implicit_fields(vcf, reader.header, selected), max_records or float("inf"))
    _prepare_header(reader.header, lengths, " ".join(sys.argv))
    job = {**source, "settings": asdict(settings),
           "vcf_sha256": _sha256(vcf), "fasta_sha256": genome.sha256, "regions": list(regions or []),
           "max_records": max_records}
    with output_lock(out):  # one run per output; a killed run's lock is taken over
        parts = BlockParts(out, job, reader.header)  # committed blocks: a rerun resumes after them
        results = []
        with reporter(n_records, "scoring", "records", enabled=progress) as bar:
            records = itertools.islice((rec for rec in reader if selected(rec)), max_records)
            for b, block in enumerate(_blocks(records, settings.block_records)):
                shown = 0

                def advance(fraction: float) -> None:  # the block's records, as its batches finish
                    nonlocal shown
                    bar.update(int(fraction * len(block)) - shown)
                    shown = int(fraction * len(block))

                result = parts.done(b) or parts.run(b, lambda part: _score_block(
                    block, scorer, lengths, sequences, settings.window, part, advance))
                results.append(result)
                advance(1.0)
        sequences.close()
        tmp = out.with_name(out.name + ".partial")
        with pysam.VariantFile(str(tmp), _output_mode(out), header=reader.header) as writer:
            parts.assemble(writer, len(results))
        reader.close()  # after the writer: its header is the reader's
        table = TableWriter(tsv)
        for result in results:
            table.write(result["rows"])
        table.close()
        tmp.replace(out)
        parts.remove()
    counts = {k: sum(r["counts"][k] for r in results) for k in ("records", "alleles", "scored", "ref_mismatch_records")}
    stats = {k: sum(r["stats"][k] for r in results) for k in scorer.stats}
    skipped = sum((Counter(r["skipped"]) for r in results), Counter())
    return {**counts, "skipped": dict(skipped), **stats, "path": str(out)}


def _blocks(reader, size: int):
    block: list = []
    for rec in reader:
        block.append(rec)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def _score_block(block, scorer, lengths, sequences, window, writer, on_batch=None) -> dict:
    """Score a block of records in shared batches and write them out in order; returns the
    block's table rows, counts, skip reasons and window statistics. `on_batch(fraction)`
    follows the scoring (see `Scorer.score`)."""
    counts = {"records": 0, "alleles": 0, "scored": 0, "ref_mismatch_records": 0}
    skipped: Counter = Counter()
    stats_before = dict(scorer.stats)
    tasks, where, reasons = [], [], []
    for r, rec in enumerate(block):
        alts = rec.alts or (None,)
        per_alt = [skip_reason(rec, alt, window) for alt in alts]
        if rec.chrom not in lengths:
            per_alt = ["contig_not_in_fasta"] * len(alts)
        elif not 0 <= rec.start < lengths[rec.chrom]:  # POS 0 / N+1: VCF's telomere positions
            per_alt = ["pos_outside_contig"] * len(alts)
        elif (end := rec.start + len(rec.ref)) > lengths[rec.chrom] or \
                sequences.fetch(rec.chrom, rec.start, end).upper() != rec.ref.upper():  # not rec.stop: END= moves it
            per_alt = ["ref_mismatch"] * len(alts)
            rec.filter.add(MISMATCH_FILTER)
            counts["ref_mismatch_records"] += 1
        for a, (alt, reason) in enumerate(zip(alts, per_alt)):
            task = None if reason else AlleleTask(rec.chrom, rec.start, rec.ref.upper(), alt.upper(),
                                                  lengths[rec.chrom])
            if task is not None and (why := scorer.skip_reason(task)):
                per_alt[a] = reason = why
            if reason is None:
                where.append((r, a))
                tasks.append(task)
        reasons.append(per_alt)
    scores = scorer.score(tasks, on_batch) if tasks else np.zeros((0, len(SCORES)))
    by_allele = {ra: s for ra, s in zip(where, scores)}
    rows = []
    for r, rec in enumerate(block):
        alts = rec.alts or (None,)
        values = [by_allele.get((r, a)) for a in range(len(alts))]
        if rec.alts:
            for info_id, (column, _) in INFO.items():
                k = SCORES.index(column)
                rec.info[info_id] = tuple(None if v is None or not np.isfinite(v[k]) else float(v[k])
                                          for v in values)
            rec.info[SKIP_INFO] = tuple(reason or "." for reason in reasons[r])
        try:
            writer.write(rec)
        except (OSError, TypeError) as err:  # htslib refuses records its header cannot describe
            raise ValueError(f"record {rec.chrom}:{rec.pos} cannot be written back ({err}; htslib's reason is "
                             "printed above): is its header complete (e.g. END and ALT lines for <DEL>)?") from None
        counts["records"] += 1
        for a, alt in enumerate(alts):
            counts["alleles"] += 1
            reason = reasons[r][a]
            if reason:
                skipped[reason] += 1
            counts["scored"] += reason is None
            row = {"chrom": rec.chrom, "pos": rec.pos, "id": rec.id or ".", "ref": rec.ref, "alt": alt or ".",
                   "status": reason or "scored"}
            row.update({c: ("" if values[a] is None or not np.isfinite(values[a][k]) else f"{values[a][k]:.6g}")
                        for k, c in enumerate(SCORES)})
            rows.append(row)
    stats = {k: v - stats_before[k] for k, v in scorer.stats.items()}
    return {"rows": rows, "counts": counts, "skipped": dict(skipped), "stats": stats}

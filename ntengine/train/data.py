"""Training data: genome windows for pretraining, labelled sequences for fine-tuning."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ntengine.genome.fasta import fasta_index, has_acgt, open_sequences, reverse_complement, scan_fasta



class GenomeSampler:
    """Windows of `bp` bases at random positions of a genome (records weighted by length).

    Sample i is a pure function of (seed, i): training that resumes at a step draws the
    same data as one that never stopped, and processes draw disjoint sample indices.
    Windows without A/C/G/T are redrawn; with `reverse_complement`, half the windows
    (chosen by the same seed) are reverse-complemented.
    """

    def __init__(self, fasta, bp: int, seed: int = 0, reverse_complement: bool = False):
        scan = scan_fasta(fasta)
        self.names = [r.name for r in scan.records if r.length >= bp]
        if not self.names:
            raise ValueError(f"{fasta}: no record is at least {bp} bp long")
        lengths = np.array([r.length for r in scan.records if r.length >= bp], np.float64)
        self.lengths, self.weights = lengths.astype(np.int64), lengths / lengths.sum()
        self.sequences = open_sequences(fasta, fasta_index(fasta, scan))
        self.bp, self.seed, self.reverse_complement = bp, seed, reverse_complement

    def sample(self, i: int) -> str:
        g = np.random.default_rng([self.seed, i])
        for _ in range(100):
            r = int(g.choice(len(self.names), p=self.weights))
            start = int(g.integers(0, self.lengths[r] - self.bp + 1))
            seq = self.sequences.fetch(self.names[r], start, start + self.bp)
            flip = self.reverse_complement and g.random() < 0.5
            if has_acgt(seq):
                return reverse_complement(seq) if flip else seq
        raise ValueError("100 windows in a row were all N: is this genome mostly N?")


def read_labelled(path, limit: int | None = None, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """(sequences, labels) from CSV/TSV with a header naming `sequence` and `label`
    columns, or FASTA whose headers carry ``label=VALUE``. Labels that are all integers
    come back as int64 (classes), anything else as float64 (regression targets).
    `limit`: a seeded random `limit` of the rows, in file order (quick trial runs)."""
    seqs, labels = _read_labelled(Path(path))
    if limit is None or limit >= len(seqs):
        return seqs, labels
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    keep = np.sort(np.random.default_rng(seed).choice(len(seqs), limit, replace=False))
    return [seqs[i] for i in keep], labels[keep]


def _read_labelled(path: Path) -> tuple[list[str], np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    seqs, labels = [], []
    if path.suffix.lower() in (".fa", ".fasta", ".fna") or path.name.lower().endswith((".fa.gz", ".fasta.gz")):
        import pysam

        with pysam.FastxFile(str(path)) as f:
            for i, rec in enumerate(f, 1):
                fields = dict(x.split("=", 1) for x in (rec.comment or "").split() if "=" in x)
                if "label" not in fields:
                    raise ValueError(f"{path}: record {i} ({rec.name}) has no label=VALUE in its header")
                seqs.append(rec.sequence)
                labels.append(fields["label"])
    else:
        with open(path, newline="") as f:
            delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
            reader = csv.DictReader(f, delimiter=delimiter)
            if not reader.fieldnames or not {"sequence", "label"} <= set(reader.fieldnames):
                raise ValueError(f"{path}: expected a header with 'sequence' and 'label' columns, got "
                                 f"{reader.fieldnames}")
            for line, row in enumerate(reader, 2):
                if not row["sequence"] or row["label"] in (None, ""):
                    raise ValueError(f"{path}: line {line}: empty sequence or label")
                seqs.append(row["sequence"])
                labels.append(row["label"])
    if not seqs:
        raise ValueError(f"{path}: no labelled sequences")
    try:
        return seqs, np.array([int(x) for x in labels], np.int64)
    except ValueError:
        try:
            return seqs, np.array([float(x) for x in labels], np.float64)
        except ValueError as err:
            raise ValueError(f"{path}: labels must be numbers ({err})") from None


"""FASTA reading through pysam (htslib): plain, gzip and bgzip files, streamed by record."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple


class Record(NamedTuple):
    name: str
    sequence: str


def read_records(path) -> Iterator[Record]:
    """Yield the records of a FASTA file one at a time (one record in memory at once)."""
    import pysam

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such FASTA file")
    with pysam.FastxFile(str(path)) as handle:
        for i, entry in enumerate(handle):
            if entry.sequence is None or entry.quality is not None:
                raise ValueError(f"{path}: record {i + 1} ({entry.name}) is not a FASTA record")
            yield Record(entry.name, entry.sequence)

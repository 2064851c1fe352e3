"""FASTA input: a validating scan, and window sequences read through pysam (htslib).

`scan_fasta` reads the file once in 1 MB blocks (what `gzip` and bytes methods do at C
speed, never the whole genome at once) to list the records and their lengths, hash the
content and stop at the first malformed spot with an error naming the record, line
and column: htslib only prints "error when opening file" for those.

`open_sequences` then gives window sequences: plain and BGZF files by random access
through pysam's faidx (`fasta_index`: the .fai / .gzi beside the file when they are there
and describe it, else ntengine's own in its cache: nothing is ever written beside your
inputs, which are often read-only or shared); plain gzip cannot be indexed, so its
records are streamed in order with one record in memory (bgzip such files for the
bounded-memory path).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Iterator, NamedTuple

log = logging.getLogger(__name__)
# The genome shipped in the package: quickstart, export validation and `ntengine bench` read it.
EXAMPLE_GENOME = Path(__file__).resolve().parents[1] / "data" / "phiX174_NC_001422.1.fasta.gz"
BLOCK = 1 << 20  # small enough that a truncated gzip is reported near its end
ACGTN = b"ACGTNacgtn"
# IUPAC ambiguity codes beyond N: the tokenizer reads them as N with invalid="N".
IUPAC = b"RYKMSWBDHVUryksmwbdhvu"


# IUPAC complements (ambiguity codes included, case kept).
_COMPLEMENT = str.maketrans("ACGTNacgtnRYKMSWBDHVUrykmswbdhvu", "TGCANtgcanYRMKSWVHDBAyrmkswvhdba")
_ACGT = frozenset("ACGTacgt")


def reverse_complement(seq: str) -> str:
    return seq.translate(_COMPLEMENT)[::-1]


def has_acgt(seq: str) -> bool:
    """False for windows of N (or other ambiguity codes) only: nothing to embed."""
    return not _ACGT.isdisjoint(seq)


class Record(NamedTuple):
    name: str
    sequence: str


class RecordInfo(NamedTuple):
    name: str
    length: int
    line: int  # 1-based line of the header
    # What a correct .fai says of the record: byte offset of its first base in the
    # (decompressed) text, bases and bytes per line of its first sequence line.
    offset: int = 0
    line_bases: int = 0
    line_bytes: int = 0


class FastaError(ValueError):
    """A malformed FASTA file; the message names the file, record, line and column."""


class FastaScan(NamedTuple):
    records: list[RecordInfo]
    sha256: str  # of the decompressed text
    indexable: bool  # random access possible: plain or BGZF
    gzip: bool


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _is_bgzf(path: Path) -> bool:
    with open(path, "rb") as f:  # BGZF: a gzip member with the 'BC' extra subfield
        head = f.read(18)
    return len(head) == 18 and head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


def scan_fasta(path, allow_iupac: bool = False) -> FastaScan:
    """Check a FASTA file and list its records.

    Sequence lines may hold A C G T N in any case, and with `allow_iupac` the other IUPAC
    codes (which the tokenizer's invalid="N" policy reads as N). Raises FastaError on: no
    header before the first sequence line, an empty record, a duplicate name, any other
    character, or a truncated / corrupt gzip stream.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such FASTA file")
    compressed = _is_gzip(path)
    allowed = ACGTN + (IUPAC if allow_iupac else b"") + b"\r"
    records: list[RecordInfo] = []
    seen: set[str] = set()
    digest = hashlib.sha256()
    line_no, length, name, header_line = 0, 0, None, 0
    byte, first_line = 0, None  # text offset of the current line; (offset, bases, bytes) of a record's first
    short_line, ragged = False, False  # a line narrower than the record's first seen; widths differ
    pending = b""  # an incomplete last line carried to the next block

    def close_record():
        if name is not None:
            if length == 0:
                raise FastaError(f"{path}: record {name!r} (line {header_line}) has no sequence")
            records.append(RecordInfo(name, length, header_line, *first_line))

    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            while True:
                block = f.read1(BLOCK)  # read1: a truncated gzip fails after what it could decode
                digest.update(block)
                data = pending + block
                if not block:
                    lines, pending = ([data] if data else []), b""
                else:
                    cut = data.rfind(b"\n") + 1
                    lines, pending = data[:cut].split(b"\n")[:-1], data[cut:]
                for line in lines:
                    line_no += 1
                    line_start, byte = byte, byte + len(line) + 1
                    if line.startswith(b">"):
                        close_record()
                        if b"\r" in line.rstrip(b"\r"):
                            raise FastaError(f"{path}: line {line_no}: CR-only line endings (classic Mac): convert "
                                             "them first, e.g. `tr '\\r' '\\n'`")
                        try:
                            name = line[1:].split(None, 1)[0].decode("utf-8") if line[1:].strip() else ""
                        except UnicodeDecodeError as err:
                            raise FastaError(f"{path}: line {line_no}: the header is not UTF-8 text ({err})") from None
                        if not name:
                            raise FastaError(f"{path}: line {line_no}: header without a name")
                        if name in seen:
                            raise FastaError(f"{path}: line {line_no}: duplicate record name {name!r}")
                        seen.add(name)
                        length, header_line, first_line, short_line = 0, line_no, None, False
                        continue
                    bad = line.translate(None, allowed)
                    if bad:
                        col = line.index(bad[:1])
                        char = chr(bad[0]) if bad[0] < 128 else bad[:1]
                        where = f"record {name!r}, position {length + col}" if name else "before any '>' header"
                        hint = "" if allow_iupac or chr(bad[0]).upper().encode() not in IUPAC else \
                            " (an IUPAC code: pass invalid='N' / --invalid N to read it as N)"
                        raise FastaError(f"{path}: line {line_no}, column {col + 1}: invalid character {char!r} "
                                         f"in {where}{hint}")
                    if line.strip() and name is None:
                        raise FastaError(f"{path}: line {line_no}: sequence before the first '>' header")
                    if first_line is None and line.strip():
                        first_line = (line_start, len(line) - line.endswith(b"\r"), len(line) + 1)
                    elif first_line is not None:
                        # faidx needs every line but a record's last as wide as its first: a line
                        # after a shorter one, or a wider one, means reading this file sequentially.
                        ragged = ragged or bool(line.strip()) and (short_line or len(line) + 1 > first_line[2])
                        short_line = short_line or len(line) + 1 != first_line[2]
                    length += len(line) - line.endswith(b"\r")
                if not block:
                    break
    except (EOFError, gzip.BadGzipFile, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        where = f" in record {name!r}" if name else ""
        raise FastaError(f"{path}: corrupt or truncated gzip stream: it ends after {byte + len(pending):,} bytes of "
                         f"text ({line_no:,} complete lines read{where}): {err}") from None
    close_record()
    if not records:
        raise FastaError(f"{path}: no FASTA records (no line starts with '>')")
    return FastaScan(records, digest.hexdigest(), not ragged and (not compressed or _is_bgzf(path)), compressed)


class FastaIndex(NamedTuple):
    fai: str
    gzi: str | None  # BGZF files only


def fasta_index(path, scan: FastaScan) -> FastaIndex | None:
    """The faidx index to read an indexable FASTA with (None: not indexable, streamed).

    The .fai (and .gzi) beside the file when they describe it; a stale one (the file was
    edited, or the index belongs to another version of it) would make faidx read the
    wrong bases without any error, so it is ignored, with a warning, and left as it is.
    Otherwise ntengine's own, built once into the cache under the file's content hash
    (so it can never be stale) and shared by every later job on that content."""
    import pysam

    if not scan.indexable:
        return None
    path = Path(path)
    bgzf = scan.gzip  # indexable and gzip: BGZF
    want = [(r.name, r.length, r.offset, r.line_bases, r.line_bytes) for r in scan.records]
    beside = FastaIndex(str(path) + ".fai", str(path) + ".gzi" if bgzf else None)
    if Path(beside.fai).is_file() and (not bgzf or Path(beside.gzi).is_file()):
        if _fai_entries(beside.fai) == want:
            return beside
        log.warning(
            f"{beside.fai} does not describe {path.name} (stale: record names, lengths or offsets differ): "
            "ignoring it, reading through ntengine's own index")
    from ntengine.cache import cache_root

    folder = cache_root() / "fasta-index" / scan.sha256[:32]
    own = FastaIndex(str(folder / (path.name + ".fai")), str(folder / (path.name + ".gzi")) if bgzf else None)
    if _fai_entries(own.fai) == want:
        return own
    folder.mkdir(parents=True, exist_ok=True)
    tmp = FastaIndex(f"{own.fai}.{os.getpid()}.partial", own.gzi and f"{own.gzi}.{os.getpid()}.partial")
    try:
        pysam.faidx(str(path), "--fai-idx", tmp.fai, *(("--gzi-idx", tmp.gzi) if bgzf else ()))
        if bgzf:
            os.replace(tmp.gzi, own.gzi)
        os.replace(tmp.fai, own.fai)  # last: a complete .fai means a complete index
    except (OSError, pysam.SamtoolsError) as err:
        raise FastaError(f"{path}: htslib could not index it into {folder} ({err}): set NTENGINE_CACHE to a "
                         "writable folder") from None
    if _fai_entries(own.fai) != want:
        raise FastaError(f"{own.fai}: built, but it disagrees with the file: is {path.name} being written to?")
    return own


def _fai_entries(fai) -> list | None:
    """(name, length, offset, line bases, line bytes) per record of a .fai; None if absent or malformed."""
    try:
        return [(f[0], *map(int, f[1:5])) for f in (ln.split("\t") for ln in Path(fai).read_text().splitlines())]
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None


class IndexedSequences:
    """Random access through htslib's faidx (plain or BGZF), with the index `fasta_index` chose."""

    def __init__(self, path, index: FastaIndex):
        import pysam

        self.path = Path(path)
        try:
            self._fasta = pysam.FastaFile(str(self.path), filepath_index=index.fai,
                                          filepath_index_compressed=index.gzi)
        except OSError as err:
            raise FastaError(f"{self.path}: htslib could not open it with the index {index.fai} ({err})") from None

    def fetch(self, record: str, start: int, end: int) -> str:
        return self._fasta.fetch(record, start, end)

    def close(self):
        self._fasta.close()


class StreamedSequences:
    """Plain gzip: records read in file order, one in memory; going back re-opens the file."""

    def __init__(self, path):
        self.path = Path(path)
        self._records, self._name, self._seq = None, None, ""

    def fetch(self, record: str, start: int, end: int) -> str:
        if record != self._name:
            self._advance_to(record)
        return self._seq[start:end]

    def _advance_to(self, record: str) -> None:
        for restarted in (False, True):
            if self._records is None or restarted:
                self._records = read_records(self.path)
            for rec in self._records:
                if rec.name == record:
                    self._name, self._seq = rec.name, rec.sequence
                    return
        raise FastaError(f"{self.path}: no record {record!r}")

    def close(self):
        self._records, self._seq = None, ""


def open_sequences(path, index: FastaIndex | None):
    """A `fetch(record, start, end)` source: random access with a `fasta_index`, else streamed."""
    return IndexedSequences(path, index) if index else StreamedSequences(path)


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


_REGION = re.compile(r"^(?P<name>[^\s:]+)(?::(?P<start>[\d,]+)-(?P<end>[\d,]+))?$")


def parse_region(text: str) -> tuple[str, int | None, int | None]:
    """samtools-style 'chr1:1,000-50,000' (1-based, inclusive) -> ('chr1', 999, 50000),
    0-based half-open; a bare name -> (name, None, None)."""
    m = _REGION.match(text.strip())
    if not m:
        raise ValueError(f"region {text!r}: write NAME or NAME:START-END (1-based, inclusive)")
    if m["start"] is None:
        return m["name"], None, None
    start, end = int(m["start"].replace(",", "")), int(m["end"].replace(",", ""))
    if not 1 <= start <= end:
        raise ValueError(f"region {text!r}: need 1 <= START <= END")
    return m["name"], start - 1, end

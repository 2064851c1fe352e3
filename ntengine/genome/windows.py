"""Window planning: where on a record each model input starts and ends."""

from __future__ import annotations

from typing import NamedTuple

from ntengine.config import NTConfig


class Window(NamedTuple):
    record: str
    start: int  # 0-based, inclusive
    end: int  # exclusive


def default_window_bp(config: NTConfig) -> int:
    """Longest window that always fits the context: 6 bp per token after the `<cls>`."""
    return 6 * (config.max_positions - 1)


def plan_windows(record: str, length: int, window: int, stride: int | None = None) -> list[Window]:
    """Windows of `window` bp starting every `stride` bp (default: no overlap) on [0, length).

    The last window may be shorter. With stride <= window every base is covered; a
    larger stride samples the record, leaving gaps.
    """
    stride = stride or window
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be positive, got {window} and {stride}")
    last = max(length - window, 0)  # the first start at or past this reaches the end
    return [Window(record, s, min(s + window, length)) for s in range(0, last + stride, stride) if s < length]


def sample_windows(bases: str, count: int, tokens: int, seed: int = 0) -> list[str]:
    """`count` windows of 6 x (tokens - 1) bp, so each is exactly `tokens` tokens with
    `<cls>`, from seeded random starts; the sequence is read circularly (phiX174 is a
    circle; other genomes wrap at their end) and windows holding an N are drawn again."""
    import numpy as np

    width = 6 * (tokens - 1)
    ring = bases * (2 + width // max(1, len(bases)))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        for _attempt in range(1000):
            start = int(rng.integers(0, len(bases)))
            window = ring[start:start + width]
            if "N" not in window:
                break
        else:
            raise ValueError(f"no {width:,} bp window without N found in the genome given")
        out.append(window)
    return out


def read_bed(path) -> list[tuple[str, int, int]]:
    """(name, start, end) of each BED interval (0-based, half-open; extra columns ignored)."""
    out = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            cols = line.split("\t") if "\t" in line else line.split()
            try:
                name, start, end = cols[0], int(cols[1]), int(cols[2])
            except (IndexError, ValueError):
                raise ValueError(f"{path}: line {i}: expected NAME START END, got {line.strip()!r}") from None
            if not 0 <= start < end:
                raise ValueError(f"{path}: line {i}: need 0 <= start < end, got {start} {end}")
            out.append((name, start, end))
    return out


def read_aliases(path) -> dict[str, str]:
    """{FASTA record name: output name} from a file of `FROM TO` lines (tab- or space-
    separated; further columns, blank lines and # comments ignored)."""
    out: dict[str, str] = {}
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t") if "\t" in line else line.split()
            if len(cols) < 2 or not cols[0] or not cols[1]:
                raise ValueError(f"{path}: line {i}: expected FROM TO (a FASTA record name and its new name), "
                                 f"got {line.strip()!r}")
            if cols[0] in out:
                raise ValueError(f"{path}: line {i}: {cols[0]} is renamed twice")
            out[cols[0]] = cols[1].strip()
    return out


def output_names(lengths: dict[str, int], rename=None) -> dict[str, str]:
    """FASTA record name -> the name outputs use, for every record. `rename` is None, a
    {from: to} dict, or an alias file (`read_aliases`); a name it does not list is kept."""
    if rename is None:
        return {name: name for name in lengths}
    pairs = read_aliases(rename) if not isinstance(rename, dict) else rename
    unknown = [k for k in pairs if k not in lengths]
    if unknown:
        known = ", ".join(list(lengths)[:3]) + (", ..." if len(lengths) > 3 else "")
        raise ValueError(f"rename: no record named {unknown[0]!r} in the FASTA (it has {known})")
    names = {name: pairs.get(name, name) for name in lengths}
    seen: dict[str, str] = {}
    for old, new in names.items():
        if new in seen:
            raise ValueError(f"rename: {seen[new]!r} and {old!r} would both be called {new!r}")
        seen[new] = old
    return names


def select_regions(lengths: dict[str, int], regions=None, records=None,
                   aliases: dict[str, str] | None = None) -> list[tuple[str, int, int]]:
    """The (record, start, end) spans a job covers, in the order given (default: every
    record whole, in file order). `regions` is a list of samtools-style strings and/or
    (name, start, end) tuples (BED rows); `records` a list of names; either may use the
    names of `aliases` ({output name: FASTA name}). Spans are checked against the record
    lengths; END past a record's end is an error, not clipped."""
    from ntengine.genome.fasta import parse_region

    if regions and records:
        raise ValueError("give regions or records, not both")
    spans = []
    for item in regions or [(name, None, None) for name in (records or lengths)]:
        name, start, end = parse_region(item) if isinstance(item, str) else item
        name = name if name in lengths else (aliases or {}).get(name, name)
        if name not in lengths:
            known = ", ".join(list(lengths)[:5]) + (", ..." if len(lengths) > 5 else "")
            raise ValueError(f"region {name}: no such record in the FASTA (it has {known})")
        start, end = (0, lengths[name]) if start is None else (start, end)
        if end > lengths[name]:
            raise ValueError(f"region {name}:{start + 1}-{end} ends past the record's {lengths[name]:,} bp")
        spans.append((name, start, end))
    return spans


def plan_spans(spans, window: int, stride: int | None = None) -> list[Window]:
    """Windows over each span (`plan_windows` shifted to the span's start)."""
    return [Window(name, a + w.start, a + w.end) for name, a, b in spans for w in plan_windows(name, b - a, window,
                                                                                                 stride)]

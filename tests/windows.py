"""Consecutive windows of a real genome, for batches of mixed lengths."""


def consecutive_windows(genome: str, lengths, start: int = 0) -> list[str]:
    """genome[start:start + n1], the next n2 bases, ... for each n in `lengths`."""
    out, pos = [], start
    for n in lengths:
        out.append(genome[pos:pos + n])
        pos += n
    return out

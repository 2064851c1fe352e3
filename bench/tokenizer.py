"""Tokenizer throughput: C++ batch_encode (1 and 2 threads) against the pure-Python twin,
on real genome windows, in one process.

    python bench/tokenizer.py                      # 10 Mbp, 12 kb windows, 5 repeats
    python bench/tokenizer.py --window 6000 --mbp 20 -r 9 --threads 1,2,4 --batch 32,0

The C++ tokenizer runs over all windows in calls of --batch windows each: 64 windows
(~0.8 MB in, ~2.7 MB out at 12 kb) is what an engine batch looks like and stays in
cache; 0 means one call for everything (~35 MB of fresh output for 10 Mbp), which
measures page faults and DRAM bandwidth more than the tokenizer.

Input: FASTA files (plain or gzip) with headers and newlines stripped, concatenated in
order (and repeated if they hold fewer than --mbp), cut into --window byte windows. By
default E. coli (4.6 Mbp, upper case), yeast chrIV (1.5 Mbp) and hg38 chr2:1-2.3M
(soft-masked, a 10 kb N run): 8.5 Mbp, so the default 10 Mbp wraps around once.

Napkin math: each 6-mer token writes a 4-byte id and two 8-byte offsets (+1 byte of
mask), so 1 GB/s of input is ~3.5 GB/s of output; the count pass only reads.
Results: a table on stdout and JSON in bench/results/tokenizer.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import RESULTS, machine_info, print_table, timeit, write_json
from ntengine import _C
from ntengine.genome.fasta import read_records
from ntengine.tokenizer import Tokenizer, encode_python

GENOMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "genomes"
DEFAULT_GENOMES = [GENOMES / "ecoli_K12_MG1655_NC_000913.3.fna.gz", GENOMES / "yeast_sacCer3_chrIV.fa",
                   GENOMES / "human_hg38_chr2_1-2333275.fa.gz"]


def read_fasta(path: Path) -> str:
    """All records of a FASTA file as one string (headers and newlines removed)."""
    return "".join(record.sequence for record in read_records(path))


def load_genome(paths: list[Path], mbp: float) -> tuple[str, int]:
    """(text of exactly mbp * 1e6 bytes, bytes of distinct sequence it was made from)."""
    text = "".join(read_fasta(p) for p in paths)
    if not text:
        raise SystemExit(f"no sequence in {[str(p) for p in paths]}")
    want = int(mbp * 1e6)
    return (text * (want // len(text) + 1))[:want], len(text)


def windows(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def validate(tokenizer: Tokenizer, wins: list[str]) -> None:
    """C++ output must equal the Python twin before anything is timed."""
    enc = tokenizer.batch_encode(wins)
    for row, win in enumerate(wins):
        ids, offsets = encode_python(win, tokenizer.version)
        if not (np.array_equal(enc.ids[row, : len(ids)], ids)
                and np.array_equal(enc.offsets[row, : len(ids)], offsets)):
            raise SystemExit(f"C++ and Python twin differ on window {row}: not timing a wrong answer")


def _encode_all(tokenizer: Tokenizer, calls: list[list[str]]) -> None:
    # Why not a list comprehension: keeping every output alive would make each call
    # fault in fresh pages; an engine consumes a batch before it tokenizes the next.
    for call in calls:
        tokenizer.batch_encode(call)


def row(name: str, threads: int, nbytes: int, t: dict, batch: int) -> dict:
    mb = nbytes / 1e6
    return {"impl": name, "threads": threads, "batch": batch, "input_MB": round(mb, 3),
            "median_ms": t["median"] * 1e3,
            "iqr_ms": t["iqr"] * 1e3, "MB_per_s": mb / t["median"],
            "MB_per_s_q1_q3": [mb / t["q3"], mb / t["q1"]], "times_s": t["times"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--genome", type=Path, action="append",
                   help="FASTA(.gz) to read; repeat for several (default: E. coli + yeast chrIV + hg38 chr2 slice)")
    p.add_argument("--mbp", type=float, default=10.0, help="Mbp of sequence for the C++ runs (default 10)")
    p.add_argument("--python-mbp", type=float, default=0.5, help="Mbp for the slow Python twin (default 0.5)")
    p.add_argument("--window", type=int, default=12_000, help="window size in bytes (default 12000; NT v1: 6000)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--batch", default="64,0",
                   help="comma-separated windows per batch_encode call; 0 = all in one call (default 64,0)")
    p.add_argument("--version", choices=["v1", "v2"], default="v2", help="vocabulary (default v2)")
    p.add_argument("-r", "--repeats", type=int, default=5, help="timed repeats per case (default 5)")
    p.add_argument("--out", type=Path, default=RESULTS / "tokenizer.json", help="JSON output path")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batch.split(",")]

    paths = args.genome or DEFAULT_GENOMES
    text, distinct = load_genome(paths, args.mbp)
    wins = windows(text, args.window)
    py_wins = windows(text[: int(args.python_mbp * 1e6)], args.window)
    validate(Tokenizer(args.version, num_threads=max(threads)), py_wins)

    rows = []
    for batch in batches:
        calls = [wins[i : i + batch] for i in range(0, len(wins), batch)] if batch > 0 else [wins]
        for n in threads:
            tokenizer = Tokenizer(args.version, num_threads=n)
            t = timeit(lambda: _encode_all(tokenizer, calls), args.repeats)
            rows.append(row("C++ batch_encode", n, len(text), t, batch or len(wins)))
    py = row("Python twin", 1, sum(map(len, py_wins)),
             timeit(lambda: [encode_python(w, args.version) for w in py_wins], args.repeats, warmup=0), 1)
    rows.append(py)
    for r in rows:
        r["vs_python"] = r["MB_per_s"] / py["MB_per_s"]

    print(f"tokenizer {args.version}, {len(wins)} windows of {args.window} bytes, {len(text) / 1e6:.1f} Mbp "
          f"({distinct / 1e6:.1f} Mbp distinct), {args.repeats} repeats, simd={_C.simd_level()}")
    print_table(rows, ["impl", "batch", "threads", "input_MB", "median_ms", "iqr_ms", "MB_per_s", "vs_python"])
    payload = {"benchmark": "tokenizer", "machine": {**machine_info(), "simd": _C.simd_level()},
               "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "genomes": [str(p) for p in paths], "windows": len(wins), "results": rows}
    payload["args"]["genome"] = [str(p) for p in paths]
    print(f"wrote {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Whole-genome job throughput vs the bare forward pass, and peak memory vs genome size.

    python bench/genome.py                          # NT-v2-50M shape, fused bf16, E. coli
    python bench/genome.py --preset v2-50m --dtype float32 --sizes 1000000
    python bench/genome.py --device cuda --batch-size 32 --sizes 4641652

For each job size (the first N bp of E. coli K-12, or all 4.6 Mbp), runs
`ntengine embed` in a child process (its wall time and peak RSS, from wait4) and, in
this process, the same engine's bare `forward` over the same windows in the same
batches, already tokenised (the ceiling a job could reach). Both use the same random
checkpoint of a published shape. Reported: bp/s of each, their ratio (goal >= 90%),
the child's peak RSS (goal: flat in genome size) and the projected time for a 3.1 Gbp
human genome at the job's rate.

The job's wall time includes the child's start-up (Python, torch import, compile, FASTA
scan, store creation): it is what a user waits for.

Results: a table on stdout and JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import RESULTS, machine_info, print_table, timeit, write_json
from ntengine import compile as compile_engine
from ntengine.checkpoint import init_checkpoint
from ntengine.genome.fasta import read_records
from ntengine.genome.windows import default_window_bp, plan_windows

GENOME = Path(__file__).resolve().parents[2] / "shared" / "data" / "genomes" / "ecoli_K12_MG1655_NC_000913.3.fna.gz"
HUMAN_BP = 3.1e9


def run_job(ckpt: Path, size: int, args, out: Path) -> dict:
    """`ntengine embed` on the first `size` bp in a child: wall seconds and peak RSS (MB)."""
    cmd = [sys.executable, "-m", "ntengine.cli", "embed", str(ckpt), str(args.genome), "-o", str(out), "-q",
           "--regions", f"NC_000913.3:1-{size}", "--dtype", args.dtype, "--batch-size", str(args.batch_size),
           "--device", args.device]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read()}")
    return {"job_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def bare_forward(engine, genome: str, size: int, batch_size: int) -> float:
    """Seconds of engine.forward over the job's windows and batches, tokenised beforehand."""
    windows = plan_windows("x", size, default_window_bp(engine.config))
    enc = engine.tokenizer.batch_encode([genome[w.start:w.end] for w in windows], truncation=True)
    lengths = enc.attention_mask.sum(1)
    order = np.argsort(-lengths, kind="stable")
    batches = []
    for lo in range(0, len(order), batch_size):
        rows = order[lo:lo + batch_size]
        width = int(lengths[rows].max())
        batches.append((enc.ids[rows, :width], enc.attention_mask[rows, :width]))

    def run():
        for ids, mask in batches:
            engine.forward(ids, mask, logits=False)

    return timeit(run, repeats=1, warmup=0)["median"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="v2-50m", help="published shape of the random checkpoint (default v2-50m)")
    parser.add_argument("--dtype", default="bfloat16", help="compute dtype (default bfloat16: fastest on this CPU)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    parser.add_argument("--sizes", default="1000000,4641652", help="job sizes in bp (default 1 Mbp and all 4.6 Mbp)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--genome", type=Path, default=GENOME, help="E. coli K-12's FASTA (default: ../shared's)")
    parser.add_argument("--out", default=str(RESULTS / "genome.json"), help="JSON path")
    args = parser.parse_args()

    genome = next(read_records(args.genome)).sequence
    rows = []
    with tempfile.TemporaryDirectory(prefix="ntengine-bench-genome-") as tmp:
        ckpt = init_checkpoint(args.preset, Path(tmp) / "ckpt")
        engine = compile_engine(ckpt, device=args.device, dtype=args.dtype)
        bare_forward(engine, genome, 50_000, args.batch_size)  # warm-up: oneDNN primitive caches, CUDA kernels
        for size in (int(s) for s in args.sizes.split(",")):
            job = run_job(ckpt, size, args, Path(tmp) / f"job-{size}.zarr")
            bare = bare_forward(engine, genome, size, args.batch_size)
            rate = size / job["job_s"]
            rows.append({"bp": size, "job_s": job["job_s"], "job_bp_per_s": rate, "forward_s": bare,
                         "forward_bp_per_s": size / bare, "job_vs_forward": bare / job["job_s"],
                         "peak_rss_mb": job["peak_rss_mb"], "human_genome_days": HUMAN_BP / rate / 86400})
            print(f"done {size:,} bp", flush=True)
    where = torch.cuda.get_device_name(engine.device) if engine.device.type == "cuda" else machine_info()["cpu"]
    print(f"\n{args.preset} ({args.dtype}, {engine.backend}, {engine.device}), {where}, "
          f"{torch.get_num_threads()} threads")
    print_table(rows, ["bp", "job_s", "job_bp_per_s", "forward_s", "forward_bp_per_s", "job_vs_forward",
                       "peak_rss_mb", "human_genome_days"])
    out = write_json(Path(args.out), {"preset": args.preset, "dtype": args.dtype, "backend": engine.backend,
                                      "device": str(engine.device), "device_name": where,
                                      "batch_size": args.batch_size, "machine": machine_info(),
                                      "threads": torch.get_num_threads(), "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

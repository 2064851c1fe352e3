"""Zero-shot variant scoring throughput, and what shared reference windows save.

    python bench/variants.py                        # NT-v2-50M shape, fused bf16, 100 chrM records
    python bench/variants.py --records 300 --dtype float32

Scores the first N records of the real 1000 Genomes chrM VCF (shared/data/variants)
against rCRS with a random checkpoint of a published shape, default 5,994 bp windows
(1,000 tokens), twice in one process: with shared batching (each distinct window -
a locus's reference window and its masked passes - computed once per block) and
without (every allele computes its own). Reports variants/s (scored alleles per
second), forward windows run and the saving.

Results: a table on stdout and JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pysam
import torch

from common import RESULTS, machine_info, print_table, write_json
from ntengine import compile as compile_engine
from ntengine.checkpoint import init_checkpoint
from ntengine.variants.scoring import ScoreSettings
from ntengine.variants.vcf import score_variants

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VCF = DATA / "variants" / "human_chrM_1000g_mutserve_nobaq.vcf.gz"
FASTA = DATA / "genomes" / "human_chrM_rCRS_NC_012920.fasta"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="v2-50m", help="published shape of the random checkpoint (default v2-50m)")
    parser.add_argument("--dtype", default="bfloat16", help="compute dtype (default bfloat16)")
    parser.add_argument("--records", type=int, default=100, help="first N records of the chrM VCF (default 100)")
    parser.add_argument("--window", type=int, default=5994, help="window in bp (default 5994 = 1000 tokens)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    parser.add_argument("--out", default=str(RESULTS / "variants.json"), help="JSON path")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="ntengine-bench-variants-") as tmp:
        tmp = Path(tmp)
        subset = tmp / "subset.vcf.gz"
        with pysam.VariantFile(str(VCF)) as reader, pysam.VariantFile(str(subset), "wz", header=reader.header) as w:
            for i, rec in enumerate(reader):
                if i == args.records:
                    break
                w.write(rec)
        engine = compile_engine(init_checkpoint(args.preset, tmp / "ckpt"), dtype=args.dtype,
                                batch_size=args.batch_size)
        for share in (True, False):
            t0 = time.perf_counter()
            s = score_variants(engine, subset, FASTA, tmp / f"out-{share}.vcf.gz", ScoreSettings(
                window=args.window, batch_size=args.batch_size, share_reference=share), progress=False)
            dt = time.perf_counter() - t0
            windows = s["windows_computed"] + s["masked_computed"]
            rows.append({"batching": "shared" if share else "per allele", "records": s["records"],
                         "alleles_scored": s["scored"], "skipped": sum(s["skipped"].values()), "seconds": dt,
                         "variants_per_s": s["scored"] / dt, "windows_run": windows,
                         "windows_requested": s["windows_requested"] + s["masked_requested"]})
            print(f"done {rows[-1]['batching']}", flush=True)
    rows[0]["speedup"] = rows[1]["seconds"] / rows[0]["seconds"]
    rows[1]["speedup"] = 1.0
    print(f"\n{args.preset} ({args.dtype}, {engine.backend}), window {args.window} bp, {machine_info()['cpu']}, "
          f"{torch.get_num_threads()} threads")
    print_table(rows, ["batching", "records", "alleles_scored", "skipped", "seconds", "variants_per_s", "windows_run",
                       "windows_requested", "speedup"])
    out = write_json(Path(args.out), {"preset": args.preset, "dtype": args.dtype, "window": args.window,
                                      "machine": machine_info(), "threads": torch.get_num_threads(), "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

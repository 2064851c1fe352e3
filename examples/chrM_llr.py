"""Zero-shot variant scores along the human mitochondrial genome.

    python examples/chrM_llr.py -o out/chrM             # 40 records of the 1000 Genomes chrM VCF

Takes --max-records records spread evenly along the VCF, scores every allele against the
rCRS reference with `ntengine score-variants` (as its Python function), and plots the LLR,
log P(alt k-mer) - log P(ref k-mer) at the masked variant token, along chrM. Writes
OUT/subset.vcf.gz (the records scored), OUT/scored.vcf.gz, OUT/scores.tsv and OUT/llr.png.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import common

VCF = "variants/human_chrM_1000g_mutserve_nobaq.vcf.gz"
FASTA = "genomes/human_chrM_rCRS_NC_012920.fasta"
TRANSITIONS = {("A", "G"), ("G", "A"), ("C", "T"), ("T", "C")}
CONTROL_REGION = ((16024, 16569), (1, 576))  # rCRS D-loop, 1-based inclusive (it spans the origin)


def subset_vcf(src: Path, dst: Path, n: int) -> int:
    """Write n records of `src` spread evenly along it (all of them if n is 0 or more than it
    holds) to `dst`; returns how many were written. (score_variants' max_records keeps the
    first n instead: in this sorted VCF, all near the start of chrM.)"""
    import pysam

    pysam.set_verbosity(0)  # htslib would complain that this bgzipped VCF has no index (it is read in order)
    with pysam.VariantFile(str(src)) as reader:
        total = sum(1 for _ in reader)
    keep = set(range(total)) if not 0 < n < total else set(np.linspace(0, total - 1, n).astype(int).tolist())
    with pysam.VariantFile(str(src)) as reader, pysam.VariantFile(str(dst), "wz", header=reader.header) as writer:
        for i, rec in enumerate(reader):
            if i in keep:
                writer.write(rec)
    return len(keep)


def kind(ref: str, alt: str) -> str:
    if len(ref) == len(alt) == 1:
        return "transition" if (ref, alt) in TRANSITIONS else "transversion"
    return "indel / MNV"


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--vcf", type=Path, help=f"the variants (default: DATA/{VCF})")
    p.add_argument("--fasta", type=Path, help=f"their reference (default: DATA/{FASTA})")
    p.add_argument("--max-records", type=int, default=40, help="records to score, spread along the VCF "
                                                               "(0: all; default %(default)s)")
    p.add_argument("--window", type=int, default=600, help="scoring window, bp (default %(default)s; "
                                                           "the library's default is 5,994)")
    args = p.parse_args()

    from ntengine.variants.scoring import ScoreSettings
    from ntengine.variants.vcf import score_variants

    vcf, fasta = args.vcf or args.data / VCF, args.fasta or args.data / FASTA
    engine, label = common.load_engine(args)
    subset = args.output / "subset.vcf.gz"
    n = subset_vcf(vcf, subset, args.max_records)
    tsv = args.output / "scores.tsv"
    summary = score_variants(engine, subset, fasta, args.output / "scored.vcf.gz", ScoreSettings(window=args.window),
                             tsv=tsv)
    print(f"{n} records, {summary['alleles']} alleles: {summary['scored']} scored, skipped {summary['skipped']} "
          f"-> {summary['path']}, {tsv}")

    with open(tsv, newline="") as f:  # one row per allele; llr is empty where it was not scored
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["status"] == "scored"]
    fig, ax = plt.subplots(figsize=(11, 4), constrained_layout=True)
    for i, (a, b) in enumerate(CONTROL_REGION):
        ax.axvspan(a, b, color="0.9", zorder=0, label=None if i else "D-loop (control region)")
    ax.axhline(0, color="0.5", lw=0.8)
    pos = np.array([int(r["pos"]) for r in rows])
    llr = np.array([float(r["llr"]) for r in rows])
    ax.vlines(pos, 0, llr, color="0.7", lw=0.8)
    kinds = np.array([kind(r["ref"], r["alt"]) for r in rows])
    for name, colour in (("transition", "tab:blue"), ("transversion", "tab:orange"), ("indel / MNV", "tab:green")):
        if (sel := kinds == name).any():
            ax.scatter(pos[sel], llr[sel], color=colour, s=24, label=f"{name} ({sel.sum()})", zorder=3)
    ax.set(xlim=(1, 16569), xlabel="chrM position (rCRS, bp)", ylabel="LLR  log P(alt) - log P(ref)",
           title=f"{vcf.name}: {len(rows)} alleles of {n} records, {args.window} bp windows\n{label}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    common.save(fig, args.output / "llr.png")


if __name__ == "__main__":
    main()

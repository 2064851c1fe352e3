"""Genome-wide SNV scores over a human region: the masked LLR of every substitution.

    python examples/snv_scan.py -o out/scan              # hg38 chr2:10,001-40,000

Runs `ntengine scan` over one region (k = 7 masked passes per window) and plots, read
back from its bigWigs, max |LLR| over the three alternatives at each base and the LLR of
each alternative base (moving means), above the region's soft-masked bases (repeats), which are shaded.
Writes OUT/scan/ (windows.zarr, llr_*.bw, llr.parquet) and OUT/snv_scan.png.
"""

from __future__ import annotations

import shutil

import matplotlib.pyplot as plt
import numpy as np

import common
from tracks import FASTA, moving_mean, shade_repeats, soft_masked


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--region", default="chr2:10,001-40,000", help="samtools-style, 1-based inclusive "
                                                                  "(default %(default)s: just after the telomere gap)")
    p.add_argument("--window", type=int, help="model window, bp (default: the model's context, 12,282 for v2)")
    p.add_argument("--mask-every", type=int, default=7, help="k: every k-th token masked per pass (default 7)")
    p.add_argument("--smooth", type=int, default=200, help="moving-average width drawn over max |LLR|, bp "
                                                           "(default %(default)s)")
    args = p.parse_args()

    import pyBigWig

    from ntengine.genome.fasta import parse_region
    from ntengine.genome.scan import scan_genome
    from ntengine.genome.settings import EmbedSettings

    fasta = args.data / FASTA
    chrom, start, end = parse_region(args.region)
    engine, label = common.load_engine(args)
    folder = args.output / "scan"
    shutil.rmtree(folder, ignore_errors=True)  # this script's own output: a rerun may change the region
    summary = scan_genome(engine, fasta, folder, EmbedSettings(window=args.window, snv_every=args.mask_every),
                          regions=[args.region])
    print(f"{summary['windows']} windows x {args.mask_every} passes over {summary['bp']:,} bp -> "
          + ", ".join(summary["outputs"]))

    tracks = {}
    for name in ("max_abs", "A", "C", "G", "T"):
        with pyBigWig.open(str(folder / f"llr_{name}.bw")) as bw:
            tracks[name] = bw.values(chrom, start, end, numpy=True)
    masked = soft_masked(fasta, chrom, start, end)
    top = tracks["max_abs"]
    print(f"max |LLR|: median {np.nanmedian(top):.3f}, 99th percentile {np.nanpercentile(top, 99):.3f}; mean "
          f"{np.nanmean(top[masked]):.3f} in repeats, {np.nanmean(top[~masked]):.3f} elsewhere")

    x = (start + np.arange(len(masked)) + 1) / 1e3  # 1-based position, kb
    fig, axes = plt.subplots(3, 1, figsize=(11, 6), sharex=True, height_ratios=[3, 3, 1], constrained_layout=True)
    axes[0].plot(x, top, lw=0.3, color="0.6")
    axes[0].plot(x, moving_mean(top, args.smooth), lw=1.2, color="tab:blue", label=f"{args.smooth} bp mean")
    axes[0].set(ylabel="max |LLR|", title="llr_max_abs.bw: the strongest of the three substitutions")
    axes[0].legend(loc="upper right", fontsize=8)
    for base, color in zip("ACGT", ("tab:green", "tab:blue", "tab:orange", "tab:red")):
        axes[1].plot(x, moving_mean(tracks[base], args.smooth), lw=1, color=color, label=f"to {base}")
    axes[1].set(ylabel=f"LLR, {args.smooth} bp mean",
                title="llr_A/C/G/T.bw: log P(alt 6-mer) - log P(ref 6-mer), masked")
    axes[1].legend(loc="upper right", fontsize=8, ncol=4)
    shade_repeats(axes, x, masked, chrom)
    fig.suptitle(f"ntengine scan, {fasta.name} {args.region}, k = {args.mask_every}\n{label}")
    common.save(fig, args.output / "snv_scan.png")


if __name__ == "__main__":
    main()

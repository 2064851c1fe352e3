"""Per-base language-model tracks over a human region, beside its repeat annotation.

    python examples/tracks.py -o out/tracks            # hg38 chr2:10,001-40,000

Runs ntengine's genome job with bigWig output over one region: logprob.bw (log P of the
observed 6-mer at each base, one unmasked pass) and entropy.bw (entropy of that
prediction, nats). Plots both, read back with pyBigWig, above the region's soft-masked
bases (lowercase in UCSC FASTA = RepeatMasker / TRF repeats), which are shaded. Writes
OUT/region.zarr, OUT/tracks/{logprob,entropy}.bw and OUT/tracks.png.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import common

FASTA = "genomes/human_hg38_chr2_1-2333275.fa.gz"


def runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of True in a bool array, 0-based half-open."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))  # starts and ends alternate
    return edges[0::2], edges[1::2]


def moving_mean(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over `width` bases; gaps (NaN) and the region's ends are left out."""
    ok, kernel = np.isfinite(values), np.ones(width)
    total = np.convolve(np.where(ok, values, 0), kernel, mode="same")
    count = np.convolve(ok.astype(np.float64), kernel, mode="same")
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def soft_masked(fasta: Path, chrom: str, start: int, end: int) -> np.ndarray:
    """Bool per base of [start, end): lowercase in the FASTA (RepeatMasker / TRF repeats)."""
    from ntengine.genome.fasta import fasta_index, open_sequences, scan_fasta

    sequences = open_sequences(fasta, fasta_index(fasta, scan_fasta(fasta)))
    seq = sequences.fetch(chrom, start, end)  # case kept: lowercase = soft-masked
    sequences.close()
    return np.frombuffer(seq.encode("ascii"), np.uint8) >= ord("a")


def shade_repeats(axes, x: np.ndarray, masked: np.ndarray, chrom: str) -> None:
    """Shade the repeats in every track axis, and draw them as bars in the last one."""
    repeats = [(x[a], (b - a) / 1e3) for a, b in zip(*runs(masked))]  # (start, width) in kb
    for ax in axes[:-1]:
        for left, width in repeats:
            ax.axvspan(left, left + width, color="tab:red", alpha=0.12, lw=0)
    axes[-1].broken_barh(repeats, (0, 1), color="tab:red", lw=0)
    axes[-1].set(yticks=[], xlabel=f"{chrom} position (kb)", title="soft-masked (RepeatMasker / TRF)",
                 xlim=(x[0], x[-1]))


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--fasta", type=Path, help=f"a soft-masked genome (default: DATA/{FASTA})")
    p.add_argument("--region", default="chr2:10,001-40,000", help="samtools-style, 1-based inclusive "
                                                                  "(default %(default)s: just after the telomere gap)")
    p.add_argument("--window", type=int, help="model window, bp (default: the model's context, 12,282 for v2)")
    p.add_argument("--smooth", type=int, default=200, help="moving-average width drawn over the tracks, bp "
                                                           "(default %(default)s)")
    args = p.parse_args()

    import pyBigWig

    from ntengine.genome.fasta import parse_region
    from ntengine.genome.job import embed_genome
    from ntengine.genome.settings import EmbedSettings

    fasta = args.fasta or args.data / FASTA
    chrom, start, end = parse_region(args.region)
    engine, label = common.load_engine(args)
    store, folder = args.output / "region.zarr", args.output / "tracks"
    shutil.rmtree(store, ignore_errors=True)  # this script's own intermediate: a rerun may change the region
    summary = embed_genome(engine, fasta, store, EmbedSettings(window=args.window), regions=[args.region],
                           bigwig=folder)
    print(f"{summary['windows']} windows over {summary['bp']:,} bp -> {store}, {', '.join(summary['bigwig'])}")

    tracks = {}
    for name in ("logprob", "entropy"):
        with pyBigWig.open(str(folder / f"{name}.bw")) as bw:
            tracks[name] = bw.values(chrom, start, end, numpy=True)
    masked = soft_masked(fasta, chrom, start, end)
    lp = tracks["logprob"]
    print(f"{masked.mean():.1%} of {args.region} soft-masked ({len(runs(masked)[0])} runs); mean logprob "
          f"{np.nanmean(lp[masked]):.3f} in repeats, {np.nanmean(lp[~masked]):.3f} elsewhere")

    x = (start + np.arange(len(masked)) + 1) / 1e3  # 1-based position, kb
    fig, axes = plt.subplots(3, 1, figsize=(11, 6), sharex=True, height_ratios=[3, 3, 1], constrained_layout=True)
    for ax, (name, values), unit in zip(axes, tracks.items(), ("log P(token)", "entropy (nats)")):
        ax.plot(x, values, lw=0.3, color="0.6")
        ax.plot(x, moving_mean(values, args.smooth), lw=1.2, color="tab:blue", label=f"{args.smooth} bp mean")
        ax.set(ylabel=unit, title=f"{name}.bw")
        ax.legend(loc="upper right", fontsize=8)
    shade_repeats(axes, x, masked, chrom)
    fig.suptitle(f"{fasta.name} {args.region}\n{label}")
    common.save(fig, args.output / "tracks.png")


if __name__ == "__main__":
    main()

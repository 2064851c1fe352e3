"""PCA of window embeddings along a genome.

    python examples/embeddings_pca.py -o out/pca          # lambda phage, 1 kb windows

Cuts the genome into windows, embeds each (mean over its tokens) into a zarr store with
ntengine's genome job, and draws PC1 vs PC2 of the window embeddings twice: coloured by
the window's position, and by its GC content. Writes OUT/embeddings.zarr and OUT/pca.png.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import common

LAMBDA = "genomes/lambda_phage_NC_001416.1.fa"


def gc_fraction(seq: str) -> float:
    """G+C over A+C+G+T (N and case ignored)."""
    seq = seq.upper()
    gc, acgt = seq.count("G") + seq.count("C"), sum(seq.count(b) for b in "ACGT")
    return gc / acgt


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--fasta", type=Path, help=f"the genome (default: DATA/{LAMBDA})")
    p.add_argument("--window", type=int, default=1000, help="window length, bp (default %(default)s)")
    p.add_argument("--stride", type=int, help="step between window starts, bp (default: the window length)")
    args = p.parse_args()

    import zarr
    from sklearn.decomposition import PCA

    from ntengine.genome.fasta import fasta_index, open_sequences, scan_fasta
    from ntengine.genome.job import embed_genome
    from ntengine.genome.settings import EmbedSettings

    fasta = args.fasta or args.data / LAMBDA
    engine, label = common.load_engine(args)
    store = args.output / "embeddings.zarr"
    shutil.rmtree(store, ignore_errors=True)  # this script's own intermediate: a rerun may change the windows
    summary = embed_genome(engine, fasta, store, EmbedSettings(window=args.window, stride=args.stride))
    print(f"embedded {summary['embedded']} of {summary['windows']} windows ({summary['bp']:,} bp) -> {store}")

    g = zarr.open_group(str(store), mode="r")  # or xarray.open_zarr(store)
    emb, record = g["embeddings"][:], g["record"][:]
    start, end = g["window_start"][:], g["window_end"][:]
    ok = np.isfinite(emb).all(axis=1)  # all-N windows are skipped: NaN rows
    sequences = open_sequences(fasta, fasta_index(fasta, scan_fasta(fasta)))
    gc = [gc_fraction(sequences.fetch(r, s, e)) for r, s, e in zip(record[ok], start[ok], end[ok])]
    sequences.close()

    pca = PCA(n_components=2)
    pcs = pca.fit_transform(emb[ok])
    var = 100 * pca.explained_variance_ratio_
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    for ax, values, what, cmap in ((axes[0], (start[ok] + end[ok]) / 2e3, "window centre (kb)", "viridis"),
                                   (axes[1], 100 * np.array(gc), "GC content (%)", "coolwarm")):
        dots = ax.scatter(pcs[:, 0], pcs[:, 1], c=values, cmap=cmap, s=22, edgecolors="none")
        fig.colorbar(dots, ax=ax, label=what)
        ax.set(xlabel=f"PC1 ({var[0]:.1f}% of variance)", ylabel=f"PC2 ({var[1]:.1f}%)", title=f"coloured by {what}")
    fig.suptitle(f"{fasta.name}: {ok.sum()} windows of {args.window:,} bp, mean-pooled embeddings\n{label}")
    common.save(fig, args.output / "pca.png")


if __name__ == "__main__":
    main()

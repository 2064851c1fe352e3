"""FASTA indexes as users have them: left over from an earlier version of the file."""

import shutil

import numpy as np
import pysam
import zarr

import ntengine
from ntengine.genome.job import embed_genome
from ntengine.genome.settings import EmbedSettings


def test_a_stale_fai_is_rebuilt_not_trusted(fixtures_dir, shared_data, tmp_path):
    """An index left from an earlier version of the file (here: a longer header line, so
    every offset moved) made faidx read shifted bases with exit code 0."""
    lines = (shared_data / "genomes" / "lambda_phage_NC_001416.1.fa").read_text().splitlines(keepends=True)
    fasta = tmp_path / "lambda.fa"
    fasta.write_text("".join(lines))
    pysam.faidx(str(fasta))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(fasta, fresh / "lambda.fa")  # no index: faidx builds a correct one
    fasta.write_text(lines[0].rstrip("\n") + " edited: a longer header line\n" + "".join(lines[1:]))
    stale = (tmp_path / "lambda.fa.fai").read_text()
    settings, engine = EmbedSettings(window=3000), ntengine.compile(fixtures_dir / "v2_tiny")
    embed_genome(engine, fasta, tmp_path / "a.zarr", settings, progress=False)
    embed_genome(engine, fresh / "lambda.fa", tmp_path / "b.zarr", settings, progress=False)
    assert (tmp_path / "lambda.fa.fai").read_text() != stale
    a, b = zarr.open_group(str(tmp_path / "a.zarr"), mode="r"), zarr.open_group(str(tmp_path / "b.zarr"), mode="r")
    np.testing.assert_array_equal(a["embeddings"][:], b["embeddings"][:])
    assert a["window_start"][:].tolist() == b["window_start"][:].tolist()

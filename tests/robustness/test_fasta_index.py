"""FASTA indexes as users have them: left over from an earlier version of the file."""

import shutil

import numpy as np
import pysam
import zarr

import ntengine
from ntengine.genome.job import embed_genome
from ntengine.genome.settings import EmbedSettings


def test_a_stale_fai_is_ignored_not_trusted(fixtures_dir, shared_data, tmp_path, monkeypatch, caplog):
    """An index left from an earlier version of the file (here: a longer header line, so
    every offset moved) made faidx read shifted bases with exit code 0. It is now ignored
    (and left alone) and the job reads through ntengine's own index, from its cache."""
    monkeypatch.setenv("NTENGINE_CACHE", str(tmp_path / "cache"))
    lines = (shared_data / "genomes" / "lambda_phage_NC_001416.1.fa").read_text().splitlines(keepends=True)
    fasta = tmp_path / "lambda.fa"
    fasta.write_text("".join(lines))
    pysam.faidx(str(fasta))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(fasta, fresh / "lambda.fa")  # no index beside it: ntengine builds one in its cache
    fasta.write_text(lines[0].rstrip("\n") + " edited: a longer header line\n" + "".join(lines[1:]))
    stale = (tmp_path / "lambda.fa.fai").read_text()
    settings, engine = EmbedSettings(window=3000), ntengine.compile(fixtures_dir / "v2_tiny")
    embed_genome(engine, fasta, tmp_path / "a.zarr", settings, progress=False)
    assert "lambda.fa.fai does not describe lambda.fa (stale" in caplog.text
    embed_genome(engine, fresh / "lambda.fa", tmp_path / "b.zarr", settings, progress=False)
    assert (tmp_path / "lambda.fa.fai").read_text() == stale and list(fresh.iterdir()) == [fresh / "lambda.fa"]
    assert len(list((tmp_path / "cache" / "fasta-index").rglob("*.fai"))) == 2  # two contents, two indexes
    a, b = zarr.open_group(str(tmp_path / "a.zarr"), mode="r"), zarr.open_group(str(tmp_path / "b.zarr"), mode="r")
    np.testing.assert_array_equal(a["embeddings"][:], b["embeddings"][:])
    assert a["window_start"][:].tolist() == b["window_start"][:].tolist()


def test_read_only_reference_folders_are_read_not_written(fixtures_dir, shared_data, tmp_path, monkeypatch):
    """Reference genomes often live in read-only or shared folders: a job indexes them in
    ntengine's cache, once per content, and writes nothing beside them (BGZF too)."""
    monkeypatch.setenv("NTENGINE_CACHE", str(tmp_path / "cache"))
    ref = tmp_path / "ref"
    ref.mkdir()
    shutil.copy(shared_data / "genomes" / "human_chrM_rCRS_NC_012920.fasta", ref / "chrM.fa")
    shutil.copy(shared_data / "genomes" / "human_hg38_chr2_1-2333275.fa.gz", ref / "chr2.fa.gz")
    ref.chmod(0o555)
    try:
        engine = ntengine.compile(fixtures_dir / "v2_tiny")
        for name, region in (("chrM.fa", "chrM:3001-4800"), ("chr2.fa.gz", "chr2:10001-11800")):
            s = embed_genome(engine, ref / name, tmp_path / f"{name}.zarr", EmbedSettings(window=600),
                             regions=[region], progress=False)
            assert s["windows"] == 3
        assert sorted(p.name for p in ref.iterdir()) == ["chr2.fa.gz", "chrM.fa"]
        assert sorted(p.name for p in (tmp_path / "cache").rglob("*.*i")) == ["chr2.fa.gz.fai", "chr2.fa.gz.gzi",
                                                                               "chrM.fa.fai"]
    finally:
        ref.chmod(0o755)

"""Quick trial runs: a few windows, records, steps or sequences of a real job, recorded so
that the full job is never mistaken for the trial."""

import csv

import numpy as np
import pysam
import pytest
import zarr

import ntengine
from ntengine.cli import main
from ntengine.genome.job import embed_genome
from ntengine.genome.settings import EmbedSettings
from ntengine.train.data import read_labelled
from ntengine.variants.scoring import ScoreSettings
from ntengine.variants.vcf import score_variants


@pytest.fixture(scope="module")
def engine(fixtures_dir):
    return ntengine.compile(fixtures_dir / "v2_tiny")


def test_embed_max_windows(engine, shared_data, tmp_path):
    fasta = shared_data / "genomes" / "lambda_phage_NC_001416.1.fa"
    out = tmp_path / "trial.zarr"
    s = embed_genome(engine, fasta, out, EmbedSettings(window=1200, max_windows=3), progress=False)
    assert s["windows"] == 3 and s["bp"] == 3600
    assert zarr.open_group(str(out), mode="r")["embeddings"].shape[0] == 3
    with pytest.raises(ValueError, match="max_windows"):  # the full job into the trial's store is refused
        embed_genome(engine, fasta, out, EmbedSettings(window=1200), progress=False)


def test_score_variants_regions_and_max_records(engine, shared_data, tmp_path):
    fasta = shared_data / "genomes" / "human_chrM_rCRS_NC_012920.fasta"
    vcf = shared_data / "variants" / "human_chrM_1000g_mutserve_nobaq.vcf.gz"
    out, tsv = tmp_path / "trial.vcf", tmp_path / "trial.tsv"
    s = score_variants(engine, vcf, fasta, out, ScoreSettings(window=600), tsv=tsv, progress=False,
                       regions=["chrM:2,000-4,000"], max_records=7)
    with pysam.VariantFile(str(out)) as f:
        positions = [rec.pos for rec in f]
    with pysam.VariantFile(str(vcf)) as f:
        expected = [rec.pos for rec in f if 2000 <= rec.pos <= 4000][:7]
    assert s["records"] == 7 and positions == expected
    with open(tsv) as f:
        assert {int(row["pos"]) for row in csv.DictReader(f, delimiter="\t")} == set(expected)
    with pytest.raises(ValueError, match="region chr1: no such record in human_chrM_rCRS_NC_012920.fasta"):
        score_variants(engine, vcf, fasta, tmp_path / "x.vcf", regions=["chr1:1-100"], progress=False)
    with pytest.raises(ValueError, match="max_records must be >= 1"):
        score_variants(engine, vcf, fasta, tmp_path / "x.vcf", max_records=0, progress=False)


def test_read_labelled_limit_is_a_seeded_subset_in_file_order(shared_data):
    path = shared_data / "tasks" / "ienhancer_layer2_strong_vs_weak" / "train.csv"
    seqs, labels = read_labelled(path)
    few, few_labels = read_labelled(path, limit=50, seed=3)
    index = {s: i for i, s in enumerate(seqs)}
    rows = [index[s] for s in few]
    assert len(few) == 50 and rows == sorted(rows) and np.array_equal(labels[rows], few_labels)
    assert read_labelled(path, limit=50, seed=3)[0] == few and read_labelled(path, limit=50, seed=4)[0] != few
    assert read_labelled(path, limit=10**6)[0] == seqs


def test_cli_finetune_max_steps_and_probe_limit(fixtures_dir, shared_data, tmp_path, capsys):
    import json

    task = shared_data / "tasks" / "ienhancer_layer2_strong_vs_weak"
    ckpt = str(fixtures_dir / "v2_tiny")
    assert main(["train", "finetune", ckpt, "--train", str(task / "train.csv"), "-o", str(tmp_path / "ft"),
                 "--epochs", "3", "--batch-size", "8", "--max-steps", "2", "--limit", "120", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [e["epoch"] for e in result["epochs"]] == [1]  # 108 training rows = 14 steps an epoch: stopped in the first
    assert main(["train", "probe", ckpt, "--train", str(task / "train.csv"), "--test", str(task / "test.csv"),
                 "--folds", "2", "--limit", "60", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["probe"]["2"]["test_auc"] <= 1 and "cv_mcc" in result["kmer_baseline"]

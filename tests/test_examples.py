"""The examples/ scripts run end to end, as a user runs them, on small inputs: each exits 0
and draws a real PNG, and the numbers behind it hold up."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
@pytest.fixture(scope="module")
def data(shared_data) -> Path:
    """The shared data, read in place: ntengine indexes FASTAs in its cache, never beside them."""
    return shared_data


def run(script: str, out: Path, data: Path, *options: str) -> str:
    """Run examples/SCRIPT as a user would (its own process, Agg backend); returns its stdout."""
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--data", str(data), "-o", str(out), *options],
                          capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"}, timeout=600)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc.stdout


def check_png(path: Path) -> None:
    """A figure was drawn: a PNG matplotlib reads back, of a sensible size, with many colours."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4) and min(img.shape[:2]) >= 300, img.shape
    assert len(np.unique(img.reshape(-1, img.shape[2]), axis=0)) > 50  # not a blank or flat canvas


def test_every_script_has_help():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py") if p.name != "common.py")
    assert scripts == ["chrM_llr.py", "embeddings_pca.py", "probing_roc.py", "snv_scan.py", "tracks.py"]
    for script in scripts:
        proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "--checkpoint" in proc.stdout and "--output" in proc.stdout, proc.stderr


def test_embeddings_pca_with_its_own_random_checkpoint(data, tmp_path):
    import zarr

    # No --checkpoint: the script writes a random one and says so.
    stdout = run("embeddings_pca.py", tmp_path, data, "--window", "1000", "--stride", "4000")
    assert "RANDOM weights" in stdout and (tmp_path / "nt-v2-50m-random" / "config.json").is_file()
    check_png(tmp_path / "pca.png")
    g = zarr.open_group(str(tmp_path / "embeddings.zarr"), mode="r")
    # 48,502 bp, windows starting every 4 kb: 0, 4000, ..., 48000 -> 13 windows, one embedding each
    np.testing.assert_array_equal(g["window_start"][:], np.arange(0, 48502, 4000))
    assert g["embeddings"].shape == (13, 512) and np.isfinite(g["embeddings"][:]).all()


def test_chrm_llr(data, tmp_path, v2_50m):
    stdout = run("chrM_llr.py", tmp_path, data, "--checkpoint", str(v2_50m), "--max-records", "8",
                 "--window", "300")
    assert "RANDOM" not in stdout
    check_png(tmp_path / "llr.png")
    with open(tmp_path / "scores.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    scored = [r for r in rows if r["status"] == "scored"]
    assert len({r["pos"] for r in rows}) == 8 and len(scored) >= 6
    positions = [int(r["pos"]) for r in rows]
    assert positions == sorted(positions) and positions[-1] - positions[0] > 10_000  # spread along chrM
    assert all(math.isfinite(float(r["llr"])) for r in scored)


def test_tracks(data, tmp_path, v2_50m):
    import pyBigWig

    run("tracks.py", tmp_path, data, "--checkpoint", str(v2_50m), "--region", "chr2:10,001-16,000",
        "--window", "2000")
    check_png(tmp_path / "tracks.png")
    for name, low, high in (("logprob", -math.inf, 0), ("entropy", 0, math.log(4107))):  # 4,107 tokens
        with pyBigWig.open(str(tmp_path / "tracks" / f"{name}.bw")) as bw:
            values = bw.values("chr2", 10_000, 16_000, numpy=True)
        assert np.isfinite(values).all() and ((values > low) & (values <= high)).all(), name


def test_snv_scan(data, tmp_path, v2_50m):
    import pyarrow.parquet as pq

    out = run("snv_scan.py", tmp_path, data, "--checkpoint", str(v2_50m), "--region", "chr2:10,001-13,000",
              "--window", "1500")
    check_png(tmp_path / "snv_scan.png")
    assert "2 windows x 7 passes over 3,000 bp" in out
    table = pq.read_table(tmp_path / "scan" / "llr.parquet")
    assert table.num_rows == 3 * 3000 and np.isfinite(table.column("llr").to_numpy()).all()


def test_probing_roc(data, tmp_path, v2_50m):
    run("probing_roc.py", tmp_path, data, "--checkpoint", str(v2_50m), "--train-limit", "60",
        "--test-limit", "40")
    check_png(tmp_path / "roc.png")
    with open(tmp_path / "train_subset.csv") as f:
        labels = [row["label"] for row in csv.DictReader(f)]
    assert len(labels) == 60 and set(labels) == {"0", "1"}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("probe", "kmer_baseline"):
        assert 0 <= metrics[name]["test_auc"] <= 1 and 0 <= metrics[name]["cv_auc"] <= 1
        # the curve drawn is the classifier the library scored
        assert metrics["curve_auc"][name] == pytest.approx(metrics[name]["test_auc"], abs=1e-12)

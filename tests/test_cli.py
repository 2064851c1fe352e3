"""The `ntengine` command line: help, init, embed, quickstart."""

import subprocess
import sys

import numpy as np
import pytest
import zarr

import ntengine
from ntengine.cli import EXAMPLE_GENOME, build_parser, main
from ntengine.genome.fasta import read_records
from tolerances import FP32, rel_err

COMMANDS = ["init", "embed", "quickstart", "export", "score-variants", "train"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: ntengine " + command in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "ntengine.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"ntengine {ntengine.__version__}"


def test_embed_writes_a_zarr_store_matching_the_engine(fixtures_dir, tmp_path, capsys):
    out = tmp_path / "phix.zarr"
    assert main(["embed", str(fixtures_dir / "v2_tiny"), str(EXAMPLE_GENOME), "-o", str(out),
                 "--window", "1000", "--stride", "900", "--layer", "1", "--progress", "bar"]) == 0
    err = capsys.readouterr().err
    assert "embedding: 100%" in err and "6 windows (6 embedded, 0 all-N skipped, 0 shortened to fit)" in err
    g = zarr.open_group(str(out), mode="r")
    genome = next(iter(read_records(EXAMPLE_GENOME))).sequence
    # windows start every 900 bp and cover the whole genome
    np.testing.assert_array_equal(g["window_start"][:], np.arange(0, 5386, 900))
    assert g["window_end"][-1] == 5386 and g.attrs["ntengine"]["records"] == ["NC_001422.1"]
    engine = ntengine.compile(fixtures_dir / "v2_tiny")
    ref = engine.embed([genome[s:e] for s, e in zip(g["window_start"][:], g["window_end"][:])], layer=1)
    assert rel_err(g["embeddings"][:], ref) <= FP32
    assert not list(tmp_path.glob("*.partial*"))


def test_embed_reports_errors_cleanly(fixtures_dir, tmp_path, capsys):
    ckpt = str(fixtures_dir / "v2_tiny")
    assert main(["embed", ckpt, str(tmp_path / "none.fa"), "-o", str(tmp_path / "x.zarr")]) == 2
    assert "no such FASTA file" in capsys.readouterr().err
    assert main(["embed", str(fixtures_dir / "v1_tiny" / "jax_model"), str(EXAMPLE_GENOME), "-o",
                 str(tmp_path / "x.zarr")]) == 2
    assert "--trust-pickle" in capsys.readouterr().err


def test_init_and_quickstart(tmp_path, capsys):
    assert main(["init", "--preset", "v2-50m", "-o", str(tmp_path / "ckpt"), "--layout", "ntengine"]) == 0
    assert ntengine.compile(tmp_path / "ckpt").config.num_layers == 12
    assert main(["quickstart", "-o", str(tmp_path / "qs")]) == 0
    err = capsys.readouterr().err
    assert "embedded 5,386 bp of phiX174" in err
    emb = zarr.open_group(str(tmp_path / "qs" / "phiX174.zarr"), mode="r")["embeddings"][:]
    assert emb.shape == (5, 512) and np.isfinite(emb).all()
    assert (tmp_path / "qs" / "phiX174_tracks" / "logprob.bw").is_file()

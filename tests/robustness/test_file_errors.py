"""Broken files users have (truncated downloads, hand-edited configs, odd FASTA encodings,
a full disk) give an error naming the file and what is wrong, never a raw traceback, and
leave no output that looks complete."""

import errno
import gzip
import json
import shutil

import numpy as np
import pytest
import zarr

import ntengine
from ntengine.checkpoint import CheckpointError
from ntengine.genome.fasta import FastaError
from ntengine.genome.job import embed_genome
from ntengine.genome.settings import EmbedSettings

LAMBDA = "lambda_phage_NC_001416.1.fa"


def broken_checkpoint(fixtures_dir, tmp_path, how):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(fixtures_dir / "v2_tiny", ckpt)
    weights, config = ckpt / "model.safetensors", ckpt / "config.json"
    if how == "truncated_weights":
        with open(weights, "r+b") as f:
            f.truncate(1000)
    elif how == "empty_weights":
        weights.write_bytes(b"")
    elif how == "config_missing_key":
        d = json.loads(config.read_text())
        del d["hidden_size"]
        config.write_text(json.dumps(d))
    elif how == "config_not_json":
        config.write_text(config.read_text() + "{oops")
    return ckpt


@pytest.mark.parametrize("how, message", [
    ("truncated_weights", r"model.safetensors: not a readable safetensors file .*truncated or corrupt"),
    ("empty_weights", r"model.safetensors: not a readable safetensors file"),
    ("config_missing_key", r"config.json: no 'hidden_size' key"),
    ("config_not_json", r"config.json: not valid JSON"),
])
def test_broken_checkpoint_files_name_the_file(fixtures_dir, tmp_path, how, message):
    with pytest.raises(CheckpointError, match=message):
        ntengine.compile(broken_checkpoint(fixtures_dir, tmp_path, how))


@pytest.fixture(scope="module")
def engine(fixtures_dir):
    return ntengine.compile(fixtures_dir / "v2_tiny")


def lambda_lines(shared_data):
    lines = (shared_data / "genomes" / LAMBDA).read_text().splitlines()
    return lines[0], lines[1:]


@pytest.mark.parametrize("kind, message", [
    ("non_utf8_header", r"line 1: the header is not UTF-8 text"),
    ("cr_only", r"line 1: CR-only line endings"),
    ("truncated_gzip", r"corrupt or truncated gzip stream: it ends after [\d,]+ bytes of text \([1-9][\d,]* complete "
                       r"lines read in record"),
])
def test_broken_fasta_files_name_file_and_line_and_leave_no_store(engine, shared_data, tmp_path, kind, message):
    header, body = lambda_lines(shared_data)
    text = (header + "\n" + "\n".join(body) + "\n").encode()
    fasta = tmp_path / ("in.fa.gz" if kind == "truncated_gzip" else "in.fa")
    if kind == "non_utf8_header":
        fasta.write_bytes(b">lam\xff\xfe x\n" + text.split(b"\n", 1)[1])
    elif kind == "cr_only":
        fasta.write_bytes(text.replace(b"\n", b"\r"))
    else:
        data = gzip.compress(text)
        fasta.write_bytes(data[:len(data) // 3])
    with pytest.raises(FastaError, match=rf"{fasta.name}: {message}"):
        embed_genome(engine, fasta, tmp_path / "out.zarr", EmbedSettings(window=1200), progress=False)
    assert not list(tmp_path.glob("out.zarr*"))


def test_ragged_line_widths_are_read_sequentially(engine, shared_data, tmp_path):
    """faidx cannot index lines of different widths (htslib's error said 'is its folder
    writable?'): the file is read sequentially instead, with the same embeddings."""
    header, body = lambda_lines(shared_data)
    ragged = tmp_path / "ragged.fa"
    ragged.write_text(header + "\n" + body[0] + "\n" + body[1][:30] + "\n" + body[1][30:] + "\n"
                      + "\n".join(body[2:]) + "\n")
    settings = EmbedSettings(window=1200)
    embed_genome(engine, ragged, tmp_path / "ragged.zarr", settings, progress=False)
    embed_genome(engine, shared_data / "genomes" / LAMBDA, tmp_path / "even.zarr", settings, progress=False)
    a, b = (zarr.open_group(str(tmp_path / n), mode="r") for n in ("ragged.zarr", "even.zarr"))
    np.testing.assert_array_equal(a["embeddings"][:], b["embeddings"][:])


def test_a_full_disk_says_so_and_the_rerun_resumes(engine, shared_data, tmp_path, monkeypatch):
    import ntengine.genome.worker as worker

    fasta, out, settings = shared_data / "genomes" / LAMBDA, tmp_path / "out.zarr", EmbedSettings(window=1200,
                                                                                                     chunk_windows=8)
    real, calls = worker.write_chunk, []

    def fills_up(group, chunk, *args):
        calls.append(chunk)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(group, chunk, *args)

    monkeypatch.setattr(worker, "write_chunk", fills_up)
    with pytest.raises(RuntimeError, match=r"out.zarr: the disk is full \(No space left on device\); the [\d,]+ bp "
                                           r"of chunks committed so far are safe.*rerun the same command to resume"):
        embed_genome(engine, fasta, out, settings, progress=False)
    monkeypatch.setattr(worker, "write_chunk", real)
    summary = embed_genome(engine, fasta, out, settings, progress=False)
    assert summary["chunks_run"] == summary["windows"] // 8 + 1 - 2  # the 2 committed chunks are not redone
    embed_genome(engine, fasta, tmp_path / "whole.zarr", settings, progress=False)
    whole = zarr.open_group(str(tmp_path / "whole.zarr"), mode="r")
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["embeddings"][:], whole["embeddings"][:])

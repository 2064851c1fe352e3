"""The README's Python blocks run as written, and say what they compute.

Each block runs in a fresh namespace in a temporary folder set up as a new user's would be
after the README's first command (`ntengine quickstart` leaves its random-weight model in
./ntengine-quickstart); the tests then check the values the block's comments promise.
"""

import re
from pathlib import Path

import numpy as np
import pysam
import pytest

import ntengine
from ntengine.checkpoint import init_checkpoint
from ntengine.genome.fasta import read_records

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> dict[str, str]:
    """{heading of the section: its ```python block} for every block in the README."""
    blocks, heading, fence, lines = {}, None, None, []
    for line in README.read_text().splitlines():
        if fence is None and line.startswith("```"):
            fence, lines = line[3:].strip(), []
        elif fence is not None and line.strip() == "```":
            if fence == "python":
                assert heading not in blocks, f"two Python blocks under {heading!r}: give each its own section"
                blocks[heading] = "\n".join(lines) + "\n"
            fence = None
        elif fence is not None:
            lines.append(line)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
    return blocks


def run_block(heading: str, cwd: Path, monkeypatch) -> dict:
    monkeypatch.chdir(cwd)
    namespace: dict = {}
    exec(compile(python_blocks()[heading], f"README.md ({heading})", "exec"), namespace)
    return namespace


TESTED = ("Using it", "Running an exported model without ntengine")


def test_every_python_block_is_tested():
    assert sorted(python_blocks()) == sorted(TESTED)


def test_using_it(tmp_path, monkeypatch):
    init_checkpoint("v2-50m", tmp_path / "ntengine-quickstart" / "nt-v2-50m-random", seed=0)  # as quickstart does
    ns = run_block("Using it", tmp_path, monkeypatch)
    assert ns["eng"].tokenizer.encode("ACGTACGGN").tolist() == [3, 728, 4105, 4105, 4106]
    ids, mask, offsets = ns["ids"], ns["mask"], ns["offsets"]
    assert (ids.dtype, ids.shape, mask.dtype, offsets.dtype, offsets.shape) == (
        np.int32, (2, 501), np.bool_, np.int64, (2, 501, 2))
    assert set(ns["out"]) == {"logits", "embeddings", "embeddings_6", "attention_map_layer_1_number_0"}
    vecs = ns["vecs"]
    assert vecs.dtype == np.float32 and vecs.shape == (2, 512) and np.isfinite(vecs).all()


def test_onnx_without_ntengine(fixtures_dir, shared_data, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="the block runs onnxruntime: pip install 'ntengine[onnx]'")
    from ntengine.export import to_onnx

    code = python_blocks()["Running an exported model without ntengine"]
    assert "ntengine" not in re.sub(r"#.*|\".*?\"", "", code), "the block must not use ntengine"
    path = to_onnx(fixtures_dir / "v2_tiny", tmp_path / "model.onnx", validate=False)
    ns = run_block("Running an exported model without ntengine", tmp_path, monkeypatch)
    engine = ntengine.compile(path)
    ids = ns["ids"]
    assert ids.shape == (1, 16)
    ref = engine.forward(ids, ids >= 0, logits=False)["embeddings"]
    np.testing.assert_allclose(ns["embeddings"], ref, rtol=0, atol=1e-6)
    # Its encode() is NT's tokenizer on real warts: rCRS's lone N at 3107, the end of hg38
    # chr2's telomere N run into soft-masked bases, and short tails.
    tok = ntengine.Tokenizer(engine.config.version)
    data = shared_data / "genomes"
    chrM = next(read_records(data / "human_chrM_rCRS_NC_012920.fasta")).sequence
    with pysam.FastaFile(str(data / "human_hg38_chr2_1-2333275.fa.gz")) as chr2:  # its .fai/.gzi are shipped
        seqs = [chrM[3040:3171], chr2.fetch("chr2", 9950, 10437), chrM[:3]]
    assert "N" in seqs[0] and "N" in seqs[1] and any(c.islower() for c in seqs[1])
    for seq in seqs:
        assert ns["encode"](seq) == tok.encode(seq).tolist(), seq

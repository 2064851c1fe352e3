"""TensorRT export and backend.

The profile logic and the errors without TensorRT run everywhere; building and running
plans needs the tensorrt package and a CUDA GPU, and those tests skip with the reason
otherwise. On a GPU: plans of the v1/v2 fixtures (fp32, fp16) and of a v2-50M-shaped
checkpoint (fp16) against the fp32 PyTorch reference on phiX174 windows.
"""

import json

import numpy as np
import pytest
import torch

import ntengine
from ntengine.checkpoint import init_checkpoint
from ntengine.cli import main
from ntengine.export.tensorrt import require_tensorrt, resolve_profile, sidecar
from ntengine.export.validate import compare, genome_batch
from tolerances import rel_err

pytest.importorskip("onnxscript", reason="TensorRT export goes through ONNX: `pip install 'ntengine[tensorrt]'`")

try:
    require_tensorrt()
    TRT_MISSING = None
except RuntimeError as err:
    TRT_MISSING = str(err)
needs_trt = pytest.mark.skipif(TRT_MISSING is not None, reason=f"TensorRT: {TRT_MISSING}")
TRT_FP32 = 1e-4  # TensorRT's fp32 kernels (TF32 is off unless asked for) vs torch
TRT_FP16 = 1e-2  # fp16 weights and compute vs the fp32 reference (the bound)


def test_profile_defaults_and_checks():
    assert resolve_profile(2048) == {"min": (1, 1), "opt": (8, 1000), "max": (8, 2048)}
    assert resolve_profile(1000, max_shape="4x500") == {"min": (1, 1), "opt": (4, 500), "max": (4, 500)}
    assert resolve_profile(2048, "2x16", "16 x 512", (32, 1024))["opt"] == (16, 512)
    with pytest.raises(ValueError, match="1 <= min <= opt <= max"):
        resolve_profile(2048, min_shape="9x1")
    with pytest.raises(ValueError, match="exceeds the model's context of 1000"):
        resolve_profile(1000, max_shape="8x2048")
    with pytest.raises(ValueError, match="write BATCHxTOKENS"):
        resolve_profile(1000, opt_shape="eight")


@pytest.mark.skipif(TRT_MISSING is None, reason="TensorRT and a GPU are present: the error paths cannot be reached")
def test_without_tensorrt_errors_say_what_is_missing(fixtures_dir, tmp_path, capsys):
    code = main(["export", str(fixtures_dir / "v2_tiny"), "-o", str(tmp_path / "t.plan"), "--format", "tensorrt"])
    assert code == 2 and TRT_MISSING in capsys.readouterr().err
    assert not (tmp_path / "t.plan").exists()
    with pytest.raises(RuntimeError, match="TensorRT"):
        ntengine.compile(fixtures_dir / "v2_tiny", backend="tensorrt")


@pytest.fixture(scope="module")
def plans(fixtures_dir, tmp_path_factory):
    """{(fixture, dtype): plan} built once; outputs embeddings, logits, embeddings_1."""
    from ntengine.export import to_tensorrt

    out = tmp_path_factory.mktemp("trt")
    return {(m, d): to_tensorrt(fixtures_dir / m, out / f"{m}-{d}.plan", dtype=d,
                                outputs=("embeddings", "logits", "embeddings_1"), timing_cache=out / "timing.cache")
            for m in ("v1_tiny", "v2_tiny") for d in ("float32", "float16")}


def reference_outputs(ckpt, ids, mask):
    engine = ntengine.compile(ckpt, backend="torch")
    return engine.forward(ids, mask, layers=(1,))


@needs_trt
@pytest.mark.parametrize("name", ["v1_tiny", "v2_tiny"])
@pytest.mark.parametrize("dtype,tol", [("float32", TRT_FP32), ("float16", TRT_FP16)])
def test_fixture_plans_match_reference(plans, fixtures_dir, name, dtype, tol):
    engine = ntengine.compile(plans[name, dtype])
    assert engine.backend == "tensorrt" and engine.device.type == "cuda"
    meta = json.loads(sidecar(plans[name, dtype]).read_text())
    assert meta["ntengine.dtype"] == dtype and meta["ntengine.profile"]["opt"] == [8, 1000]
    for lengths in [(1,), (60, 17, 5, 33), (engine.config.max_positions,) * 2, (9,) * 8]:
        ids, mask = genome_batch(engine.config, lengths, seed=len(lengths))
        got = engine.forward(ids, mask, layers=(1,))
        errors = compare(got, reference_outputs(fixtures_dir / name, ids, mask), mask)
        assert all(r <= tol for _, r in errors.values()), (lengths, errors)


@needs_trt
def test_plan_profile_and_sidecar_errors(plans, tmp_path):
    engine = ntengine.compile(plans["v2_tiny", "float16"])
    ids, mask = genome_batch(engine.config, (5,) * 9)
    with pytest.raises(ValueError, match="outside this plan's profile"):
        engine.forward(ids, mask)
    lonely = tmp_path / "lonely.plan"
    lonely.write_bytes(plans["v2_tiny", "float16"].read_bytes())
    with pytest.raises(ValueError, match="no lonely.plan.json beside it"):
        ntengine.compile(lonely)
    junk = tmp_path / "junk.plan"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    sidecar(junk).write_text(sidecar(plans["v2_tiny", "float16"]).read_text())
    with pytest.raises(ValueError, match="TensorRT could not load this plan"):
        ntengine.compile(junk)


@needs_trt
def test_v2_50m_fp16_plan_and_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("NTENGINE_CACHE", str(tmp_path / "cache"))
    ckpt = init_checkpoint("v2-50m", tmp_path / "ckpt")
    trt_engine = ntengine.compile(ckpt, backend="tensorrt", dtype="float16")  # built into the cache, validated
    ref = ntengine.compile(ckpt, backend="torch", device="cuda")
    seqs = ["ACGTAGGCTAGCATCGATCG" * 30, "ACGTTT", "NNACGTTAGCATCAGGAC" * 7]
    assert rel_err(trt_engine.embed(seqs), ref.embed(seqs)) <= TRT_FP16
    ids, mask = genome_batch(trt_engine.config, (2048, 1000, 512, 7, 1, 1, 1, 1))
    got, want = trt_engine.forward(ids, mask), ref.forward(ids, mask)
    assert all(r <= TRT_FP16 for _, r in compare(got, want, mask).values())
    assert len(list((tmp_path / "cache").rglob("*.plan"))) == 1
    out = trt_engine.forward(torch.from_numpy(ids).cuda(), torch.from_numpy(mask).cuda(), logits=False)
    assert out["embeddings"].is_cuda  # device in, device out: no host copies

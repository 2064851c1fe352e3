"""Weights that would run but compute garbage are refused at load, naming the tensor."""

import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import ntengine
from ntengine.checkpoint import CheckpointError


@pytest.mark.parametrize("poison", ["nan", "inf", "int64"])
def test_broken_weights_are_refused_naming_the_tensor(fixtures_dir, tmp_path, poison):

    ckpt = tmp_path / "ckpt"
    shutil.copytree(fixtures_dir / "v2_tiny", ckpt)
    tensors = load_file(str(ckpt / "model.safetensors"))
    name = next(k for k in tensors if k.endswith("intermediate.dense.weight"))
    t = tensors[name].clone()
    if poison == "int64":
        t = t.long()
    else:
        t[0, 0] = float(poison)
    tensors[name] = t
    save_file(tensors, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    message = "is stored as int64, expected floating-point" if poison == "int64" else "holds NaN or Inf values"
    with pytest.raises(CheckpointError, match=re.escape(f"{name} {message}")):
        ntengine.compile(ckpt)
    assert torch.isfinite(load_file(str(fixtures_dir / "v2_tiny" / "model.safetensors"))[name]).all()


def test_a_trusted_joblib_still_cannot_run_code(fixtures_dir, tmp_path):
    """trust_pickle allows the official pytree_ckpt.joblib, whose pickle only builds numpy
    arrays; one that asks for anything else (here os.system) is refused, not run."""
    import joblib

    ckpt = tmp_path / "jax_ckpt"
    shutil.copytree(fixtures_dir / "v2_tiny" / "jax_model", ckpt / "jax_model")
    assert ntengine.compile(ckpt, trust_pickle=True, layout="jax").config.num_layers == 2  # the real file loads
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    params = joblib.load(ckpt / "jax_model" / "pytree_ckpt.joblib")
    params["evil"] = {"w": Payload()}
    joblib.dump(params, ckpt / "jax_model" / "pytree_ckpt.joblib")
    with pytest.raises(CheckpointError, match=r"asks for (posix|os)\.system.*refused"):
        ntengine.compile(ckpt, trust_pickle=True, layout="jax")
    assert not marker.exists()
    params.pop("evil")
    params[next(iter(params))]["objects"] = np.array([1, "x"], dtype=object)
    joblib.dump(params, ckpt / "jax_model" / "pytree_ckpt.joblib")
    with pytest.raises(CheckpointError, match="array of Python objects"):
        ntengine.compile(ckpt, trust_pickle=True, layout="jax")


def test_a_sharded_index_cannot_reach_outside_the_folder(fixtures_dir, tmp_path):
    import json

    ckpt = tmp_path / "ckpt"
    shutil.copytree(fixtures_dir / "v2_tiny", ckpt)
    outside = tmp_path / "elsewhere.safetensors"
    (ckpt / "model.safetensors").rename(outside)
    names = load_file(str(outside))
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {name: "../elsewhere.safetensors" for name in names}}))
    with pytest.raises(CheckpointError, match=r"shard '\.\./elsewhere\.safetensors' lies outside the checkpoint"):
        ntengine.compile(ckpt)


def test_written_checkpoints_are_readable_by_others(tmp_path):
    """safetensors writes 0600; a checkpoint gets what the umask gives, like any file."""
    import os
    import stat

    from ntengine.checkpoint import init_checkpoint

    old = os.umask(0o022)
    try:
        folder = init_checkpoint("v2-50m", tmp_path / "ckpt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((folder / "model.safetensors").stat().st_mode) == 0o644
    assert stat.S_IMODE((folder / "config.json").stat().st_mode) == 0o644

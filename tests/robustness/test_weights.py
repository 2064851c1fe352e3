"""Weights that would run but compute garbage are refused at load, naming the tensor."""

import re
import shutil

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

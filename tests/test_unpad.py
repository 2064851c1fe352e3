"""Padded batches run as packed rows (ntengine.backends.unpad) compute what the padded
batch computes: on the CPU, through both PyTorch backends, with the unpadding forced on
(it is on by default for fused CUDA only, where tests/test_fused_cuda.py checks it)."""

import numpy as np
import pytest
import torch

import ntengine
from ntengine.backends import unpad
from tolerances import FP32, rel_err
from windows import consecutive_windows


def _batch(engine, genome, lengths):
    enc = engine.tokenizer.batch_encode(consecutive_windows(genome, lengths))
    return enc.ids, enc.attention_mask.astype(bool)


@pytest.mark.parametrize("backend", ["torch", "fused"])
@pytest.mark.parametrize("model", ["v1_tiny", "v2_tiny"])
def test_unpadded_equals_padded(fixtures_dir, ecoli, model, backend, monkeypatch):
    """Every output at every real token, v1's token dropout (masked tokens) and learned
    positions included; rows of padding come back 0."""
    engine = ntengine.compile(fixtures_dir / model, backend=backend)
    ids, mask = _batch(engine, ecoli, [300, 7, 1, 155, 61])
    ids[0, 3:9] = engine.config.mask_id  # the dropout rescaling is per sequence
    n = engine.config.num_layers
    args = dict(layers=range(1, n + 1))
    engine.runtime.unpad_padded = False
    padded = engine.forward(ids, mask, **args)
    engine.runtime.unpad_padded = True
    calls, real_forward = [], unpad.forward
    monkeypatch.setattr(unpad, "forward", lambda *a, **k: calls.append(1) or real_forward(*a, **k))
    got = engine.forward(ids, mask, **args)
    assert calls, "the batch was not unpadded"
    assert got.keys() == padded.keys()
    for key in got:
        assert got[key].shape == padded[key].shape
        assert rel_err(got[key][mask], padded[key][mask]) <= FP32, key
        assert not got[key][~mask].any(), key


def test_attention_maps_and_full_batches_stay_padded(fixtures_dir, ecoli, monkeypatch):
    engine = ntengine.compile(fixtures_dir / "v2_tiny")
    engine.runtime.unpad_padded = True
    monkeypatch.setattr(unpad, "forward", lambda *a, **k: pytest.fail("unpadded"))
    ids, mask = _batch(engine, ecoli, [300, 7])
    out = engine.forward(ids, mask, attention_maps=[(1, 0)])
    assert out["attention_map_layer_1_number_0"].shape == (2, ids.shape[1], ids.shape[1])
    full_ids, full_mask = _batch(engine, ecoli, [120, 120, 120])
    assert full_mask.all()
    engine.forward(full_ids, full_mask)


def _mask(lengths, width):
    return torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]


def test_plan():
    assert unpad.plan(_mask([100, 100], 100)) is None  # no padding
    assert unpad.plan(_mask([100, 99], 100)) is None  # 0.5%: below MIN_PADDING
    assert unpad.plan(_mask([100, 0], 100)) is None  # an empty row cannot be packed
    mask = _mask([3, 1, 4, 2], 5)
    plan = unpad.plan(mask)
    assert plan.real.tolist() == mask.flatten().nonzero().squeeze(1).tolist() == [0, 1, 2, 5, 10, 11, 12, 13, 15, 16]
    assert plan.cu_seqlens.tolist() == [0, 3, 4, 8, 10]


def test_left_padding_is_refused(fixtures_dir):
    engine = ntengine.compile(fixtures_dir / "v2_tiny")
    engine.runtime.unpad_padded = True
    ids = np.full((2, 20), 5)
    mask = np.ones((2, 20), bool)
    mask[1, :10] = False
    with pytest.raises(ValueError, match="prefix of each row"):
        unpad.plan(torch.from_numpy(mask))
    with pytest.raises(ValueError, match="prefix of each row"):
        engine.forward(ids, mask)

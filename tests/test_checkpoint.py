"""Checkpoint layouts: round trips, strict checking, pickle refusal, presets."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import ntengine
from ntengine.checkpoint import CheckpointError, detect_layout, load_checkpoint, save_checkpoint
from ntengine.checkpoint import init_checkpoint
from ntengine.config import PRESETS, NTConfig
from tolerances import FP32, rel_err


def _load(*args, **kwargs):
    ckpt = load_checkpoint(*args, **kwargs)
    return ckpt.config, ckpt.state


def _tensors_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("model", ["v1_tiny", "v2_tiny"])
def test_hf_and_jax_layouts_hold_the_same_weights(fixtures_dir, model):
    cfg_hf, sd_hf = _load(fixtures_dir / model, layout="hf")
    cfg_jax, sd_jax = _load(fixtures_dir / model / "jax_model", trust_pickle=True)
    assert cfg_hf == cfg_jax
    _tensors_equal(sd_hf, sd_jax)


@pytest.mark.parametrize("model", ["v1_tiny", "v2_tiny"])
@pytest.mark.parametrize("layout", ["ntengine", "hf"])
def test_write_then_read_round_trip(fixtures_dir, tmp_path, model, layout):
    cfg, sd = _load(fixtures_dir / model)
    save_checkpoint(tmp_path / "out", cfg, sd, layout=layout)
    assert detect_layout(tmp_path / "out") == layout
    cfg2, sd2 = _load(tmp_path / "out")
    assert cfg2 == cfg
    _tensors_equal(sd, sd2)


def test_written_hf_layout_uses_instadeep_names(fixtures_dir, tmp_path):
    cfg, sd = _load(fixtures_dir / "v2_tiny")
    save_checkpoint(tmp_path, cfg, sd, layout="hf")
    ours = load_file(str(tmp_path / "model.safetensors"))
    theirs = load_file(str(fixtures_dir / "v2_tiny" / "model.safetensors"))
    # The fixture also stores the derivable rotary inv_freq buffers and, as InstaDeep's v2 files
    # do, a position table and a contact head that v2 never reads; we write none of them.
    unused = {"esm.embeddings.position_embeddings.weight", "esm.contact_head.regression.weight",
              "esm.contact_head.regression.bias"}
    assert set(theirs) - set(ours) == {k for k in theirs if k.endswith("inv_freq")} | unused
    hf_cfg = json.loads((tmp_path / "config.json").read_text())
    for key in ("hidden_size", "num_hidden_layers", "intermediate_size", "max_position_embeddings",
                "position_embedding_type", "add_bias_fnn", "vocab_size", "layer_norm_eps"):
        assert hf_cfg[key] == json.loads((fixtures_dir / "v2_tiny" / "config.json").read_text())[key], key


def _copy_hf(fixtures_dir, tmp_path, model="v2_tiny"):
    dst = tmp_path / model
    shutil.copytree(fixtures_dir / model, dst, ignore=shutil.ignore_patterns("jax_model", "golden*"))
    return dst


def test_every_bad_tensor_is_listed_in_one_error(fixtures_dir, tmp_path):
    folder = _copy_hf(fixtures_dir, tmp_path)
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["esm.encoder.layer.1.attention.self.key.bias"]  # missing
    tensors["esm.encoder.layer.0.extra.weight"] = torch.zeros(3)  # unexpected
    tensors["lm_head.dense.weight"] = torch.zeros(5, 5)  # misshaped
    tensors["esm.contact_head.regression.weight"] = torch.zeros(1, 8)  # known (2 layers x 4 heads), ignored
    tensors["esm.embeddings.position_embeddings.weight"] = torch.zeros(2048, 32)  # known, but misshaped
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(folder)
    msg = str(err.value)
    assert "4 problem(s)" in msg
    assert "wrong shape for esm.embeddings.position_embeddings.weight: [2048, 32], expected [2050, 32]" in msg
    assert "missing esm.encoder.layer.1.attention.self.key.bias" in msg
    assert "unexpected esm.encoder.layer.0.extra.weight" in msg
    assert "wrong shape for lm_head.dense.weight: [5, 5], expected [32, 32]" in msg


def test_rotary_buffer_is_checked_not_dropped(fixtures_dir, tmp_path):
    folder = _copy_hf(fixtures_dir, tmp_path)
    tensors = load_file(str(folder / "model.safetensors"))
    key = "esm.encoder.layer.0.attention.self.rotary_embeddings.inv_freq"
    tensors[key] = tensors[key] * 1.5
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"{key} disagrees with the config"):
        load_checkpoint(folder)


def test_rescaling_factor_changes_the_rotary_base(fixtures_dir, tmp_path):
    """A config with SegmentNT's rescaling_factor no longer matches the stored inv_freq."""
    folder = _copy_hf(fixtures_dir, tmp_path)
    hf_cfg = json.loads((folder / "config.json").read_text())
    hf_cfg["rescaling_factor"] = 2.44140625
    (folder / "config.json").write_text(json.dumps(hf_cfg))
    with pytest.raises(CheckpointError, match="inv_freq disagrees"):
        load_checkpoint(folder)
    cfg = NTConfig.from_dict({**load_checkpoint(fixtures_dir / "v2_tiny").config.to_dict(),
                              "rotary_rescaling_factor": 2.44140625})
    d = cfg.head_dim
    assert cfg.rotary_base == pytest.approx(10000 * 2.44140625 ** (d / (d - 2)))


def test_pickle_needs_trust(fixtures_dir, tmp_path):
    with pytest.raises(CheckpointError, match="trust_pickle=True"):
        load_checkpoint(fixtures_dir / "v1_tiny", layout="jax")
    folder = _copy_hf(fixtures_dir, tmp_path, "v1_tiny")
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="pickle-based"):
        ntengine.compile(folder)
    cfg, sd = _load(folder, trust_pickle=True)
    _tensors_equal(sd, load_checkpoint(fixtures_dir / "v1_tiny").state)


def test_sharded_safetensors(fixtures_dir, tmp_path):
    folder = _copy_hf(fixtures_dir, tmp_path, "v1_tiny")
    tensors = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    keys = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for name, part in halves.items():
        save_file({k: tensors[k] for k in part}, str(folder / name))
        weight_map.update({k: name for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _tensors_equal(load_checkpoint(folder).state, load_checkpoint(fixtures_dir / "v1_tiny").state)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not an NT checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing")


def test_unsupported_architecture_is_refused(fixtures_dir, tmp_path):
    folder = _copy_hf(fixtures_dir, tmp_path)
    hf_cfg = json.loads((folder / "config.json").read_text())
    hf_cfg["add_bias_fnn"] = True
    (folder / "config.json").write_text(json.dumps(hf_cfg))
    with pytest.raises(CheckpointError, match="not an NT architecture"):
        load_checkpoint(folder)


def test_published_sizes():
    # Sanity: the presets have the parameter counts their names promise.
    sizes = {name: cfg.num_parameters / 1e6 for name, cfg in PRESETS.items()}
    assert 50 <= sizes["v2-50m"] <= 60 and 90 <= sizes["v2-100m"] <= 100
    assert 230 <= sizes["v2-250m"] <= 240 and 490 <= sizes["v2-500m"] <= 500
    assert 480 <= sizes["v1-500m-human-ref"] <= 490 and 2500 <= sizes["v1-2b5-multi-species"] <= 2600
    assert PRESETS["v2-50m"].max_positions == 2048 and PRESETS["v1-500m-1000g"].max_positions == 1000


def test_init_writes_a_loadable_v2_50m(tmp_path):
    init_checkpoint("v2-50m", tmp_path / "a", seed=3)
    init_checkpoint("v2-50m", tmp_path / "b", seed=3)
    cfg, sd = _load(tmp_path / "a")
    assert cfg == PRESETS["v2-50m"]
    assert sum(t.numel() for t in sd.values()) == cfg.num_parameters
    _tensors_equal(sd, load_checkpoint(tmp_path / "b").state)  # seeded: reproducible


def test_hf_and_ntengine_layouts_compute_the_same(fixtures_dir, tmp_path):
    cfg, sd = _load(fixtures_dir / "v1_tiny")
    save_checkpoint(tmp_path, cfg, sd, layout="ntengine")
    ids = np.load(fixtures_dir / "v1_tiny" / "golden.npz")["tokens"]
    a = ntengine.compile(fixtures_dir / "v1_tiny").forward(ids)["logits"]
    b = ntengine.compile(tmp_path).forward(ids)["logits"]
    assert rel_err(a, b) <= FP32


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_optional_modules_round_trip(tmp_path, version):
    """emb_layer_norm_before and (v1) learned positions go through both written layouts."""
    from ntengine.model import NTModel, init_random_weights

    vocab = 4105 if version == "v1" else 4107
    cfg = NTConfig(version, vocab, embed_dim=16, num_layers=1, num_heads=2, ffn_dim=32, max_positions=64,
                   emb_layer_norm_before=True, token_dropout=version == "v1")
    sd = init_random_weights(NTModel(cfg), seed=5).state_dict()
    assert "emb_layer_norm_before.weight" in sd
    for layout in ("hf", "ntengine"):
        save_checkpoint(tmp_path / layout, cfg, sd, layout=layout)
        cfg2, sd2 = _load(tmp_path / layout)
        assert cfg2 == cfg
        _tensors_equal(sd, sd2)


def test_v2_file_as_published_loads_and_reports_what_it_never_reads(fixtures_dir):
    engine = ntengine.compile(fixtures_dir / "v2_tiny")
    report = engine.load_report
    assert {u.split()[0] for u in report.unused} == {"esm.embeddings.position_embeddings.weight",
                                                     "esm.contact_head.regression.weight",
                                                     "esm.contact_head.regression.bias"}
    assert report.unused_parameters == 2050 * 32 + 2 * 4 + 1
    assert report.used_parameters == engine.config.num_parameters  # the count formula agrees with the file
    assert report.stored_dtypes == {"float32": len(load_file(str(fixtures_dir / "v2_tiny" / "model.safetensors")))}
    assert "0.07M never read (esm.embeddings.position_embeddings.weight [2050, 32]" in repr(engine)


@pytest.mark.parametrize("preset,published", [("v2-50m", 55.9), ("v2-100m", 97.9)])
def test_published_v2_counts_are_ours_plus_the_unused_position_table(preset, published):
    cfg = PRESETS[preset]
    assert round((cfg.num_parameters + (cfg.max_positions + 2) * cfg.embed_dim) / 1e6, 1) == published


def test_every_published_model_is_a_preset_with_its_hub_id():
    from ntengine.config import HUB_IDS

    assert set(HUB_IDS) == set(PRESETS)
    agro = PRESETS["agront-1b"]
    assert (agro.version, agro.embed_dim, agro.num_layers, agro.num_heads, agro.head_dim) == ("v1", 1500, 40, 20, 75)
    # 4 bytes per fp32 parameter: the published pytorch_model.bin is 3,965,239,677 bytes with its pickle framing.
    assert 0 < 3_965_239_677 - 4 * agro.num_parameters < 300_000

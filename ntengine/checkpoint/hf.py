"""InstaDeep's Hugging Face layout: config.json (model_type esm) + safetensors | .bin | shards."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from ntengine.checkpoint.common import CheckpointError, match_strict, refuse_pickle
from ntengine.checkpoint.names import expected_shapes, external_names
from ntengine.config import NTConfig

# HF keys some published checkpoints carry that do not affect inference.
_HF_IGNORED = re.compile(r"^esm\.contact_head\.|^esm\.embeddings\.position_ids$")
# The per-layer rotary buffer of older checkpoints: checked against the config, not loaded.
_HF_INV_FREQ = re.compile(r"^esm\.encoder\.layer\.(\d+)\.attention\.self\.rotary_embeddings\.inv_freq$")


def config_from_hf(d: dict) -> NTConfig:
    pos = d.get("position_embedding_type", "absolute")
    if pos not in ("absolute", "rotary"):
        raise CheckpointError(f"unsupported position_embedding_type {pos!r} (NT uses absolute or rotary)")
    version = "v2" if pos == "rotary" else "v1"
    bias_ffn = d.get("add_bias_fnn", True)
    if bias_ffn != (version == "v1"):
        raise CheckpointError(
            f"add_bias_fnn={bias_ffn} with {pos} positions is not an NT architecture "
            "(v1: absolute + FFN biases; v2: rotary + SwiGLU without biases)"
        )
    return NTConfig(
        version=version,
        vocab_size=d["vocab_size"],
        embed_dim=d["hidden_size"],
        num_layers=d["num_hidden_layers"],
        num_heads=d["num_attention_heads"],
        ffn_dim=d["intermediate_size"],
        max_positions=d["max_position_embeddings"] - 2,
        layer_norm_eps=d.get("layer_norm_eps", 1e-12),
        emb_layer_norm_before=bool(d.get("emb_layer_norm_before", False)),
        token_dropout=bool(d.get("token_dropout", False)),
        rotary_rescaling_factor=d.get("rescaling_factor"),  # as SegmentNT's configs spell it
        pad_id=d.get("pad_token_id", 1),
        mask_id=d.get("mask_token_id", 2),
    )


def config_to_hf(cfg: NTConfig) -> dict:
    # HF's ESM has no embed_scale and hard-codes the token-dropout ratio (0.15 * 0.8).
    custom_dropout = cfg.token_dropout and not math.isclose(cfg.masking_ratio * cfg.masking_prob, 0.12)
    if cfg.embed_scale != 1.0 or custom_dropout:
        raise CheckpointError("the HF layout cannot store embed_scale != 1 or a custom token-dropout "
                              "ratio; write the ntengine layout instead")
    d = {
        "architectures": ["EsmForMaskedLM"],
        "model_type": "esm",
        "add_bias_fnn": not cfg.rotary,
        "attention_probs_dropout_prob": 0.0,
        "hidden_dropout_prob": 0.0,
        "emb_layer_norm_before": cfg.emb_layer_norm_before,
        "hidden_size": cfg.embed_dim,
        "intermediate_size": cfg.ffn_dim,
        "layer_norm_eps": cfg.layer_norm_eps,
        "mask_token_id": cfg.mask_id,
        "pad_token_id": cfg.pad_id,
        "max_position_embeddings": cfg.max_positions + 2,
        "num_attention_heads": cfg.num_heads,
        "num_hidden_layers": cfg.num_layers,
        "position_embedding_type": "rotary" if cfg.rotary else "absolute",
        "tie_word_embeddings": False,
        "token_dropout": cfg.token_dropout,
        "torch_dtype": "float32",
        "vocab_size": cfg.vocab_size,
    }
    if cfg.rotary_rescaling_factor is not None:
        d["rescaling_factor"] = cfg.rotary_rescaling_factor
    return d


def _read_hf_tensors(folder: Path, trust_pickle: bool) -> dict[str, torch.Tensor]:
    for index_name, pickled in (("model.safetensors.index.json", False), ("pytorch_model.bin.index.json", True)):
        index = folder / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            tensors = {}
            for shard in shards:
                tensors.update(_read_hf_file(folder / shard, trust_pickle))
            return tensors
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return _read_hf_file(folder / name, trust_pickle)
    raise CheckpointError(f"{folder}: no model.safetensors, pytorch_model.bin or sharded index found")


def _read_hf_file(path: Path, trust_pickle: bool) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    refuse_pickle(path, trust_pickle)
    return torch.load(path, map_location="cpu", weights_only=True)


def _check_inv_freq(config: NTConfig, stored: dict[str, torch.Tensor], problems: list[str]) -> None:
    from ntengine.model import rotary_inv_freq

    want = rotary_inv_freq(config)
    for key, value in stored.items():
        if not config.rotary:
            problems.append(f"unexpected {key}: rotary buffer in a model with learned positions")
        elif value.shape != want.shape or not torch.allclose(value.float(), want, rtol=1e-5, atol=0):
            problems.append(
                f"{key} disagrees with the config (head size {config.head_dim}, base "
                f"{config.rotary_base:g}): stored {value.flatten()[:4].tolist()}..., "
                f"expected {want[:4].tolist()}..."
            )


def load_hf(folder: Path, trust_pickle: bool):
    config = config_from_hf(json.loads((folder / "config.json").read_text()))
    tensors = _read_hf_tensors(folder, trust_pickle)
    hf_to_ours = {external_names(name, "hf")[0]: name for name in expected_shapes(config)}
    found, unplaced, inv_freq = {}, {}, {}
    for key, value in tensors.items():
        if key in hf_to_ours:
            found[hf_to_ours[key]] = value
        elif _HF_INV_FREQ.match(key):
            inv_freq[key] = value
        elif not _HF_IGNORED.match(key):
            unplaced[key] = key
    problems: list[str] = []
    _check_inv_freq(config, inv_freq, problems)
    return config, match_strict(config, found, unplaced, lambda n: external_names(n, "hf")[0], problems)

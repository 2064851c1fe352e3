"""The one table of weight names: ours, InstaDeep's HF keys and the official JAX params.

Official module names appear here and nowhere else.
"""

from __future__ import annotations

import re

import torch

from ntengine.config import NTConfig

# One row per parameter: our name, InstaDeep's HF name, the official JAX module and
# param. "{i}" is the 0-based block index in all three. JAX "w" params are [in, out].
_J = "esm_transformer"
_JL = _J + "/attention_layer_{i}/~/"
_JH = _J + "/~/esm_roberta_lm_head/~/"
WEIGHT_NAMES: list[tuple[str, str, str, str]] = [
    ("embed_tokens.weight", "esm.embeddings.word_embeddings.weight", _J + "/~/embed", "embeddings"),
    ("embed_positions.weight", "esm.embeddings.position_embeddings.weight",
     _J + "/~/esm_learned_positional_embeddings/~/embed", "embeddings"),
    ("emb_layer_norm_before.weight", "esm.embeddings.layer_norm.weight", _J + "/~/emb_layer_norm_before", "scale"),
    ("emb_layer_norm_before.bias", "esm.embeddings.layer_norm.bias", _J + "/~/emb_layer_norm_before", "offset"),
    ("layers.{i}.attn_norm.weight", "esm.encoder.layer.{i}.attention.LayerNorm.weight",
     _JL + "mha_layer_norm", "scale"),
    ("layers.{i}.attn_norm.bias", "esm.encoder.layer.{i}.attention.LayerNorm.bias", _JL + "mha_layer_norm", "offset"),
    ("layers.{i}.attn.q_proj.weight", "esm.encoder.layer.{i}.attention.self.query.weight", _JL + "mha/query", "w"),
    ("layers.{i}.attn.q_proj.bias", "esm.encoder.layer.{i}.attention.self.query.bias", _JL + "mha/query", "b"),
    ("layers.{i}.attn.k_proj.weight", "esm.encoder.layer.{i}.attention.self.key.weight", _JL + "mha/key", "w"),
    ("layers.{i}.attn.k_proj.bias", "esm.encoder.layer.{i}.attention.self.key.bias", _JL + "mha/key", "b"),
    ("layers.{i}.attn.v_proj.weight", "esm.encoder.layer.{i}.attention.self.value.weight", _JL + "mha/value", "w"),
    ("layers.{i}.attn.v_proj.bias", "esm.encoder.layer.{i}.attention.self.value.bias", _JL + "mha/value", "b"),
    ("layers.{i}.attn.out_proj.weight", "esm.encoder.layer.{i}.attention.output.dense.weight",
     _JL + "mha/mha_output", "w"),
    ("layers.{i}.attn.out_proj.bias", "esm.encoder.layer.{i}.attention.output.dense.bias",
     _JL + "mha/mha_output", "b"),
    ("layers.{i}.ffn_norm.weight", "esm.encoder.layer.{i}.LayerNorm.weight", _JL + "final_layer_norm", "scale"),
    ("layers.{i}.ffn_norm.bias", "esm.encoder.layer.{i}.LayerNorm.bias", _JL + "final_layer_norm", "offset"),
    ("layers.{i}.ffn.fc1.weight", "esm.encoder.layer.{i}.intermediate.dense.weight", _JL + "fc1", "w"),
    ("layers.{i}.ffn.fc1.bias", "esm.encoder.layer.{i}.intermediate.dense.bias", _JL + "fc1", "b"),
    ("layers.{i}.ffn.fc2.weight", "esm.encoder.layer.{i}.output.dense.weight", _JL + "fc2", "w"),
    ("layers.{i}.ffn.fc2.bias", "esm.encoder.layer.{i}.output.dense.bias", _JL + "fc2", "b"),
    ("final_norm.weight", "esm.encoder.emb_layer_norm_after.weight", _JH + "emb_layer_norm_after", "scale"),
    ("final_norm.bias", "esm.encoder.emb_layer_norm_after.bias", _JH + "emb_layer_norm_after", "offset"),
    ("lm_head.dense.weight", "lm_head.dense.weight", _JH + "lm_head_fc_1", "w"),
    ("lm_head.dense.bias", "lm_head.dense.bias", _JH + "lm_head_fc_1", "b"),
    ("lm_head.norm.weight", "lm_head.layer_norm.weight", _JH + "lm_head_layer_norm", "scale"),
    ("lm_head.norm.bias", "lm_head.layer_norm.bias", _JH + "lm_head_layer_norm", "offset"),
    ("lm_head.decoder.weight", "lm_head.decoder.weight", _JH + "lm_final_fc", "w"),
    ("lm_head.decoder.bias", "lm_head.bias", _JH + "lm_final_fc", "b"),
]
_BY_OURS = {row[0]: row for row in WEIGHT_NAMES}


def _row_for(ours: str) -> tuple[tuple[str, str, str, str], dict]:
    m = re.match(r"^layers\.(\d+)\.(.*)$", ours)
    if m:
        return _BY_OURS["layers.{i}." + m.group(2)], {"i": m.group(1)}
    return _BY_OURS[ours], {}


def external_names(ours: str, layout: str) -> tuple[str, ...]:
    """Our parameter name in another layout: (hf_key,) or (jax_module, jax_param)."""
    row, fmt = _row_for(ours)
    if layout == "hf":
        return (row[1].format(**fmt),)
    if layout == "jax":
        return (row[2].format(**fmt), row[3])
    raise ValueError(f"unknown layout {layout!r}")


def expected_shapes(config: NTConfig) -> dict[str, tuple[int, ...]]:
    """Our parameter names and shapes for `config`, from the model itself (meta device)."""
    from ntengine.model import NTModel

    with torch.device("meta"):
        model = NTModel(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}

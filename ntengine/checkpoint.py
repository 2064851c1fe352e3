"""Read and write NT checkpoints in three layouts, with one table of weight names.

Layouts (detected from the folder's contents, or chosen with ``layout=``):

* ``"ntengine"``: ``config.json`` with ``"ntengine_format"`` + ``model.safetensors``
  under our own parameter names. What we write by default.
* ``"hf"``: InstaDeep's Hugging Face layout: ``config.json`` (``model_type: esm``) +
  ``model.safetensors`` | ``pytorch_model.bin`` | a sharded ``*.index.json``.
* ``"jax"``: the official layout: ``jax_model/hyperparams.json`` +
  ``jax_model/pytree_ckpt.joblib`` (Haiku params, linear weights stored [in, out]).

Every load is strict: one error lists every missing, unexpected or misshaped tensor.
Pickle-based files (.bin, .joblib) load only with ``trust_pickle=True``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import torch

from ntengine.config import V1_VOCAB_SIZE, V2_VOCAB_SIZE, NTConfig

FORMAT_VERSION = 1

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
    ("layers.{i}.attn_norm.weight", "esm.encoder.layer.{i}.attention.LayerNorm.weight", _JL + "mha_layer_norm", "scale"),
    ("layers.{i}.attn_norm.bias", "esm.encoder.layer.{i}.attention.LayerNorm.bias", _JL + "mha_layer_norm", "offset"),
    ("layers.{i}.attn.q_proj.weight", "esm.encoder.layer.{i}.attention.self.query.weight", _JL + "mha/query", "w"),
    ("layers.{i}.attn.q_proj.bias", "esm.encoder.layer.{i}.attention.self.query.bias", _JL + "mha/query", "b"),
    ("layers.{i}.attn.k_proj.weight", "esm.encoder.layer.{i}.attention.self.key.weight", _JL + "mha/key", "w"),
    ("layers.{i}.attn.k_proj.bias", "esm.encoder.layer.{i}.attention.self.key.bias", _JL + "mha/key", "b"),
    ("layers.{i}.attn.v_proj.weight", "esm.encoder.layer.{i}.attention.self.value.weight", _JL + "mha/value", "w"),
    ("layers.{i}.attn.v_proj.bias", "esm.encoder.layer.{i}.attention.self.value.bias", _JL + "mha/value", "b"),
    ("layers.{i}.attn.out_proj.weight", "esm.encoder.layer.{i}.attention.output.dense.weight", _JL + "mha/mha_output", "w"),
    ("layers.{i}.attn.out_proj.bias", "esm.encoder.layer.{i}.attention.output.dense.bias", _JL + "mha/mha_output", "b"),
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

# HF keys some published checkpoints carry that do not affect inference.
_HF_IGNORED = re.compile(r"^esm\.contact_head\.|^esm\.embeddings\.position_ids$")
# The per-layer rotary buffer of older checkpoints: checked against the config, not loaded.
_HF_INV_FREQ = re.compile(r"^esm\.encoder\.layer\.(\d+)\.attention\.self\.rotary_embeddings\.inv_freq$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked; the message says why."""


# --------------------------------------------------------------------------- names


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


# --------------------------------------------------------------------------- configs


def _config_from_hf(d: dict) -> NTConfig:
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


def _config_to_hf(cfg: NTConfig) -> dict:
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


def _config_from_jax(d: dict) -> NTConfig:
    unsupported = []
    if d.get("add_bias_kv"):
        unsupported.append("add_bias_kv=true")
    if d.get("k_for_kmers", 6) != 6:
        unsupported.append(f"k_for_kmers={d['k_for_kmers']}")
    if d.get("key_dim") not in (None, d["embed_dim"] // d["attention_heads"]):
        unsupported.append(f"key_dim={d['key_dim']}")
    rotary = bool(d.get("use_rotary_embedding"))
    act = d.get("ffn_activation_name")
    if rotary and not (d.get("use_glu_in_ffn") and act in ("swish", "silu") and not d.get("add_bias_ffn")):
        unsupported.append(f"rotary model with FFN glu={d.get('use_glu_in_ffn')} act={act}")
    if not rotary and (d.get("use_glu_in_ffn") or act != "gelu-no-approx" or not d.get("add_bias_ffn", True)
                       or d.get("positional_embedding") != "learned"):
        unsupported.append(f"learned-position model with FFN glu={d.get('use_glu_in_ffn')} act={act}")
    if unsupported:
        raise CheckpointError("unsupported JAX hyperparameters: " + ", ".join(unsupported))
    return NTConfig(
        version="v2" if rotary else "v1",
        # The official loader takes the vocabulary from the tokenizer: 4107 ids for v2,
        # 4107 - 2 for v1 (whose models drop <eos> and <bos>).
        vocab_size=V2_VOCAB_SIZE if rotary else V1_VOCAB_SIZE,
        embed_dim=d["embed_dim"],
        num_layers=d["num_layers"],
        num_heads=d["attention_heads"],
        ffn_dim=d["ffn_embed_dim"],
        max_positions=d["max_positions"],
        layer_norm_eps=1e-5,  # Haiku's LayerNorm default; not stored in hyperparams.json
        embed_scale=d.get("embed_scale", 1.0),
        emb_layer_norm_before=bool(d.get("emb_layer_norm_before", False)),
        token_dropout=bool(d.get("token_dropout", False)),
        masking_ratio=d.get("masking_ratio", 0.15),
        masking_prob=d.get("masking_prob", 0.8),
        rotary_rescaling_factor=d.get("rescaling_factor"),
    )


# --------------------------------------------------------------------------- reading


def detect_layout(path: Path) -> str:
    """'ntengine', 'hf' or 'jax' for a checkpoint folder (or a file inside one)."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    config = path / "config.json"
    if config.is_file():
        d = json.loads(config.read_text())
        if "ntengine_format" in d:
            return "ntengine"
        if d.get("model_type") == "esm":
            return "hf"
    if (path / "jax_model" / "hyperparams.json").is_file() or (path / "hyperparams.json").is_file():
        return "jax"
    raise CheckpointError(
        f"{path}: not an NT checkpoint (expected config.json from ntengine or InstaDeep's HF "
        "layout, or jax_model/hyperparams.json from the official JAX layout)"
    )


def _refuse_pickle(path: Path, trust_pickle: bool) -> None:
    if not trust_pickle:
        raise CheckpointError(
            f"{path} is a pickle-based file, and loading a pickle can run arbitrary code. "
            "Pass trust_pickle=True (CLI: --trust-pickle) only if you trust its source, "
            "or convert it to safetensors."
        )


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
    _refuse_pickle(path, trust_pickle)
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


def _match(config: NTConfig, found: dict[str, torch.Tensor], source: dict[str, str], where: str,
           problems: list[str]) -> dict[str, torch.Tensor]:
    """Strictly match tensors found under our names against the model's expectations.

    `found` maps our names to tensors; `source` maps every external key we could not
    place to itself (reported as unexpected). Raises one error listing every offender.
    """
    shapes = expected_shapes(config)
    for name, shape in shapes.items():
        if name not in found:
            problems.append(f"missing {where(name)} (shape {list(shape)})")
        elif tuple(found[name].shape) != shape:
            problems.append(
                f"wrong shape for {where(name)}: {list(found[name].shape)}, expected {list(shape)}"
            )
    problems.extend(f"unexpected {key}" for key in sorted(source))
    problems.extend(f"unexpected {where(name)}" for name in sorted(set(found) - set(shapes)))
    if problems:
        raise CheckpointError(f"{len(problems)} problem(s) in the checkpoint:\n  " + "\n  ".join(problems))
    return {name: found[name].contiguous() for name in shapes}


def _load_hf(folder: Path, trust_pickle: bool):
    config = _config_from_hf(json.loads((folder / "config.json").read_text()))
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
    return config, _match(config, found, unplaced, lambda n: external_names(n, "hf")[0], problems)


def _load_jax(folder: Path, trust_pickle: bool):
    jax_dir = folder / "jax_model" if (folder / "jax_model").is_dir() else folder
    config = _config_from_jax(json.loads((jax_dir / "hyperparams.json").read_text()))
    params_path = jax_dir / "pytree_ckpt.joblib"
    if not params_path.is_file():
        raise CheckpointError(f"{jax_dir}: pytree_ckpt.joblib not found")
    _refuse_pickle(params_path, trust_pickle)
    import joblib

    params = joblib.load(params_path)
    jax_to_ours = {external_names(name, "jax"): name for name in expected_shapes(config)}
    found, unplaced = {}, {}
    for module, module_params in params.items():
        for param, value in module_params.items():
            key = (module, param)
            if key not in jax_to_ours:
                unplaced[f"{module}/{param}"] = key
                continue
            tensor = torch.from_numpy(np.asarray(value, dtype=np.float32))
            found[jax_to_ours[key]] = tensor.T if param == "w" else tensor  # Haiku: [in, out]
    return config, _match(config, found, unplaced, lambda n: "/".join(external_names(n, "jax")), [])


def _load_ntengine(folder: Path):
    from safetensors.torch import load_file

    meta = json.loads((folder / "config.json").read_text())
    if meta["ntengine_format"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} was written by a newer ntengine (format {meta['ntengine_format']}); upgrade"
        )
    config = NTConfig.from_dict(meta["config"])
    tensors = load_file(str(folder / "model.safetensors"))
    shapes = expected_shapes(config)
    unplaced = {k: k for k in tensors if k not in shapes}
    found = {k: v for k, v in tensors.items() if k in shapes}
    return config, _match(config, found, unplaced, lambda n: n, [])


def load_checkpoint(path, trust_pickle: bool = False, layout: str | None = None):
    """Load a checkpoint folder.

    Args:
        path: checkpoint folder (or a file inside it).
        trust_pickle: allow pickle-based files (pytorch_model.bin, pytree_ckpt.joblib).
        layout: "ntengine" | "hf" | "jax"; detected when None. A folder from InstaDeep's
            hub holds both the HF and the JAX layout: the HF one is detected first.

    Returns:
        (NTConfig, state dict under our parameter names, float32 or as stored).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    folder = path if path.is_dir() else path.parent
    if folder.name == "jax_model" and layout in (None, "jax"):
        folder, layout = folder.parent, "jax"
    layout = layout or detect_layout(folder)
    if layout == "hf":
        return _load_hf(folder, trust_pickle)
    if layout == "jax":
        return _load_jax(folder, trust_pickle)
    if layout == "ntengine":
        return _load_ntengine(folder)
    raise ValueError(f"layout must be 'ntengine', 'hf' or 'jax', got {layout!r}")


# --------------------------------------------------------------------------- writing


def save_checkpoint(path, config: NTConfig, state_dict: dict[str, torch.Tensor], layout: str = "ntengine") -> Path:
    """Write `state_dict` (our names) as a safetensors checkpoint folder in `layout`.

    "ntengine" stores our names and the full NTConfig; "hf" writes InstaDeep's HF layout
    (config.json + model.safetensors), loadable by their code and by ntengine.
    """
    from safetensors.torch import save_file

    folder = Path(path)
    shapes = expected_shapes(config)
    _match(config, dict(state_dict), {}, lambda n: n, [])  # refuse to write a broken model
    tensors = {name: state_dict[name].detach().to("cpu").contiguous() for name in shapes}
    if layout == "ntengine":
        meta = {"ntengine_format": FORMAT_VERSION, "config": config.to_dict()}
    elif layout == "hf":
        meta = _config_to_hf(config)
        tensors = {external_names(name, "hf")[0]: t for name, t in tensors.items()}
    else:
        raise ValueError(f"can write layout 'ntengine' or 'hf', got {layout!r}")
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder

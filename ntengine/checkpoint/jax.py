"""The official JAX layout: jax_model/hyperparams.json + jax_model/pytree_ckpt.joblib.

Haiku params: a dict module -> {param -> array}; linear weights are stored [in, out].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ntengine.checkpoint.common import (Checkpoint, CheckpointError, LoadReport, match_strict, read_json,
                                       refuse_pickle)
from ntengine.checkpoint.names import expected_shapes, external_names
from ntengine.config import V1_VOCAB_SIZE, V2_VOCAB_SIZE, NTConfig


def config_from_jax(d: dict) -> NTConfig:
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


def load_pytree(path: Path) -> dict:
    """A joblib pytree of numpy arrays, read without running code from the file.

    Trusting a checkpoint (trust_pickle) must not mean executing it: unpickling may only
    build plain containers, numpy dtypes and arrays (joblib's array wrapper), and arrays
    of Python objects, which joblib would unpickle again unrestricted, are refused.
    """
    from joblib import numpy_pickle

    def numeric_dtype(*args):
        dtype = np.dtype(*args)
        if dtype.hasobject:
            raise CheckpointError(f"{path}: holds an array of Python objects, not weights: refused")
        return dtype

    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): numeric_dtype,
               ("joblib.numpy_pickle", "NumpyArrayWrapper"): numpy_pickle.NumpyArrayWrapper,
               ("collections", "OrderedDict"): dict, ("builtins", "dict"): dict}

    class WeightsOnly(numpy_pickle.NumpyUnpickler):
        def find_class(self, module, name):
            if (module, name) not in allowed:
                raise CheckpointError(f"{path}: the pickle asks for {module}.{name}, which a pytree of weights "
                                      "never needs: refused (only numpy arrays and plain containers are read)")
            return allowed[module, name]

    with open(path, "rb") as f:
        if f.read(1) != b"\x80":  # joblib's compressed formats wrap the pickle: not read here
            raise CheckpointError(f"{path}: not an uncompressed joblib pickle; re-save it with joblib.dump(params, "
                                  "path) (no compress=)")
        f.seek(0)
        return WeightsOnly(str(path), f, True).load()


def load_jax(folder: Path, trust_pickle: bool):
    jax_dir = folder / "jax_model" if (folder / "jax_model").is_dir() else folder
    try:
        config = config_from_jax(read_json(jax_dir / "hyperparams.json"))
    except KeyError as err:
        raise CheckpointError(f"{jax_dir / 'hyperparams.json'}: no {err} key: not a complete NT config") from None
    params_path = jax_dir / "pytree_ckpt.joblib"
    if not params_path.is_file():
        raise CheckpointError(f"{jax_dir}: pytree_ckpt.joblib not found")
    refuse_pickle(params_path, trust_pickle)
    params = load_pytree(params_path)
    jax_to_ours = {external_names(name, "jax"): name for name in expected_shapes(config)}
    found, unplaced, stored = {}, {}, {}
    for module, module_params in params.items():
        for param, value in module_params.items():
            key = (module, param)
            stored[key] = value
            if key not in jax_to_ours:
                unplaced[f"{module}/{param}"] = key
                continue
            tensor = torch.from_numpy(np.asarray(value, dtype=np.float32))
            found[jax_to_ours[key]] = tensor.T if param == "w" else tensor  # Haiku: [in, out]
    state = match_strict(config, found, unplaced, lambda n: "/".join(external_names(n, "jax")), [])
    report = LoadReport(source=str(folder), folder=str(folder), layout="jax",
                        files=[str(params_path.relative_to(folder))])
    report.count(state, stored)
    return Checkpoint(config, state, report)

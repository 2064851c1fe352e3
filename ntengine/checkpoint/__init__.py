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
from pathlib import Path

import torch

from ntengine.checkpoint.common import CheckpointError, match_strict
from ntengine.checkpoint.hf import config_to_hf, load_hf
from ntengine.checkpoint.jax import load_jax
from ntengine.checkpoint.names import WEIGHT_NAMES, expected_shapes, external_names
from ntengine.config import NTConfig

__all__ = ["CheckpointError", "WEIGHT_NAMES", "detect_layout", "external_names", "load_checkpoint",
           "save_checkpoint"]

FORMAT_VERSION = 1


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
    return config, match_strict(config, found, unplaced, lambda n: n, [])


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
        return load_hf(folder, trust_pickle)
    if layout == "jax":
        return load_jax(folder, trust_pickle)
    if layout == "ntengine":
        return _load_ntengine(folder)
    raise ValueError(f"layout must be 'ntengine', 'hf' or 'jax', got {layout!r}")


def save_checkpoint(path, config: NTConfig, state_dict: dict[str, torch.Tensor], layout: str = "ntengine") -> Path:
    """Write `state_dict` (our names) as a safetensors checkpoint folder in `layout`.

    "ntengine" stores our names and the full NTConfig; "hf" writes InstaDeep's HF layout
    (config.json + model.safetensors), loadable by their code and by ntengine.
    """
    from safetensors.torch import save_file

    folder = Path(path)
    shapes = expected_shapes(config)
    match_strict(config, dict(state_dict), {}, lambda n: n, [])  # refuse to write a broken model
    tensors = {name: state_dict[name].detach().to("cpu").contiguous() for name in shapes}
    if layout == "ntengine":
        meta = {"ntengine_format": FORMAT_VERSION, "config": config.to_dict()}
    elif layout == "hf":
        meta = config_to_hf(config)
        tensors = {external_names(name, "hf")[0]: t for name, t in tensors.items()}
    else:
        raise ValueError(f"can write layout 'ntengine' or 'hf', got {layout!r}")
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder

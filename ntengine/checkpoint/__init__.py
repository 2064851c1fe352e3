"""Read and write NT checkpoints in three layouts, with one table of weight names.

Layouts (detected from the folder's contents, or chosen with ``layout=``):

* ``"ntengine"``: ``config.json`` with ``"ntengine_format"`` + ``model.safetensors``
  under our own parameter names. What we write by default.
* ``"hf"``: InstaDeep's Hugging Face layout: ``config.json`` (``model_type: esm``) +
  ``model.safetensors`` | ``pytorch_model.bin`` | a sharded ``*.index.json``; also as
  transformers writes it (gamma/beta LayerNorm names, tied decoder, EsmModel without
  the ``esm.`` prefix, Esm{Sequence,Token}Classification heads).
* ``"jax"``: the official layout: ``jax_model/hyperparams.json`` +
  ``jax_model/pytree_ckpt.joblib`` (Haiku params, linear weights stored [in, out]).

Every load is strict: one error lists every missing, unexpected or misshaped tensor.
Tensors known to be unused (v2's learned-position table, ESM's contact head, the
EsmModel pooler, ``position_ids``) are shape-checked and listed in the load report.
Pickle-based files (.bin, .joblib) load only with ``trust_pickle=True``. Hub ids
resolve through huggingface_hub; no hub code is ever run (no ``trust_remote_code``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ntengine.checkpoint.common import (Checkpoint, CheckpointError, LoadReport, match_strict, read_json,
                                       read_safetensors, write_safetensors)
from ntengine.checkpoint.heads import load_head
from ntengine.checkpoint.hf import config_to_hf, load_hf, tokenizer_files
from ntengine.checkpoint.hub import resolve_checkpoint
from ntengine.checkpoint.jax import load_jax
from ntengine.checkpoint.names import WEIGHT_NAMES, expected_shapes, external_names
from ntengine.checkpoint.peft import ADAPTER_CONFIG, adapter_base, is_adapter, merge_adapter
from ntengine.config import NTConfig
from ntengine.model import NTModel, init_random_weights

__all__ = ["Checkpoint", "CheckpointError", "LoadReport", "WEIGHT_NAMES", "detect_layout", "external_names",
           "init_checkpoint", "load_checkpoint", "load_model", "resolve_checkpoint", "save_checkpoint"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def detect_layout(path: Path) -> str:
    """'ntengine', 'hf' or 'jax' for a checkpoint folder (or a file inside one)."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    config = path / "config.json"
    if config.is_file():
        d = read_json(config)
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


def _load_ntengine(folder: Path) -> Checkpoint:
    meta = read_json(folder / "config.json")
    if meta["ntengine_format"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} was written by a newer ntengine (format {meta['ntengine_format']}); upgrade"
        )
    config = NTConfig.from_dict(meta["config"])
    tensors = read_safetensors(folder / "model.safetensors")
    shapes = expected_shapes(config)
    unplaced = {k: k for k in tensors if k not in shapes}
    found = {k: v for k, v in tensors.items() if k in shapes}
    state = match_strict(config, found, unplaced, lambda n: n, [])
    report = LoadReport(source=str(folder), folder=str(folder), layout="ntengine", files=["model.safetensors"])
    report.count(state, tensors)
    return Checkpoint(config, state, report)


def load_checkpoint(path, trust_pickle: bool = False, layout: str | None = None, revision: str | None = None,
                    adapter=None) -> Checkpoint:
    """Load a checkpoint: a local folder, a Hugging Face hub id or a hub cache folder.

    Args:
        path: checkpoint folder (or a file inside it); a hub id ``ORG/NAME[@REVISION]``
            (resolved through huggingface_hub: its cache, HF_HOME and HF_HUB_OFFLINE apply);
            a hub cache folder ``models--ORG--NAME``; or a PEFT adapter folder, whose
            ``base_model_name_or_path`` is then loaded and the adapter merged.
        trust_pickle: allow pickle-based files (pytorch_model.bin, pytree_ckpt.joblib,
            adapter_model.bin).
        layout: "ntengine" | "hf" | "jax"; detected when None. A folder from InstaDeep's
            hub holds both the HF and the JAX layout: the HF one is detected first.
        revision: hub branch, tag or commit (hub ids and cache folders only).
        adapter: a PEFT adapter (LoRA or IA3) folder or hub id, merged into the weights.

    Returns:
        a `Checkpoint`: config, state dict under our names (as stored: float32, float16 or
        bfloat16), the load report (files read, stored dtypes, tensors accepted unused)
        and the task head of a fine-tuned model, if any.
    """
    folder = resolve_checkpoint(path, revision=revision, trust_pickle=trust_pickle)
    if folder.is_file():
        folder = folder.parent
    if is_adapter(folder) and not (folder / "config.json").is_file():
        if adapter is not None:
            raise CheckpointError(f"{path} is itself a PEFT adapter: pass its base model as the checkpoint")
        adapter_config = read_json(folder / ADAPTER_CONFIG)
        base = adapter_base(folder)
        if not base:
            raise CheckpointError(f"{path} is a PEFT adapter without base_model_name_or_path: pass the base "
                                  "checkpoint and adapter=PATH")
        return load_checkpoint(base, trust_pickle, layout, revision=adapter_config.get("revision"), adapter=folder)
    if folder.name == "jax_model" and layout in (None, "jax"):
        folder, layout = folder.parent, "jax"
    layout = layout or detect_layout(folder)
    if layout == "hf":
        ckpt = load_hf(folder, trust_pickle)
    elif layout == "jax":
        ckpt = load_jax(folder, trust_pickle)
    elif layout == "ntengine":
        ckpt = _load_ntengine(folder)
    else:
        raise ValueError(f"layout must be 'ntengine', 'hf' or 'jax', got {layout!r}")
    ckpt.report.source = str(path)
    ckpt.head = ckpt.head or load_head(folder)
    if adapter is not None:
        merge_adapter(ckpt, resolve_checkpoint(adapter, trust_pickle=trust_pickle), trust_pickle)
    log.debug("loaded %s: %s%s", path, ckpt.report.summary(), "".join(f"; {n}" for n in ckpt.report.notes))
    return ckpt


def load_model(path, **load_options) -> tuple[NTModel, Checkpoint]:
    """(the checkpoint's NTModel in eval mode, the `Checkpoint` it came from: report, head).

    The weights keep their stored dtype and are not copied (the model is built on the meta
    device and the loaded tensors assigned). load_options: those of `load_checkpoint`.
    """
    ckpt = load_checkpoint(path, **load_options)
    with torch.device("meta"):
        model = NTModel(ckpt.config)
    model.load_state_dict(ckpt.state, strict=True, assign=True)
    return model.eval(), ckpt


def init_checkpoint(preset: str, out, seed: int = 0, layout: str = "hf") -> Path:
    """Write a random-weight checkpoint of a published shape (for tests and benchmarks)."""
    config = NTConfig.from_preset(preset)
    model = init_random_weights(NTModel(config), seed)  # every parameter, from its own generator
    return save_checkpoint(out, config, model.state_dict(), layout=layout)


def save_checkpoint(path, config: NTConfig, state_dict: dict[str, torch.Tensor], layout: str = "ntengine") -> Path:
    """Write `state_dict` (our names) as a safetensors checkpoint folder in `layout`.

    "ntengine" stores our names and the full NTConfig; "hf" writes InstaDeep's HF layout
    (config.json + model.safetensors + tokenizer files), loadable by their code, by
    transformers (model and tokenizer) and by ntengine.
    """
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
    write_safetensors(tensors, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    if layout == "hf":  # what transformers needs to open the folder's tokenizer too
        for name, text in tokenizer_files(config).items():
            (folder / name).write_text(text)
    return folder

"""PEFT adapters (LoRA, IA3) trained on an NT checkpoint, merged into its weights at load.

A PEFT adapter folder holds ``adapter_config.json`` + ``adapter_model.safetensors`` (or
``adapter_model.bin``), keyed by the transformers module names of the base model
(``base_model.model.esm.encoder.layer.0.attention.self.query.lora_A.weight``). Merging
the deltas here means the fused, ONNX and TensorRT paths run the adapted model at no
extra cost. The arithmetic is PEFT's, from its documentation:

* LoRA: W += s * B @ A, with s = lora_alpha / r (lora_alpha / sqrt(r) with use_rslora);
  embeddings: E += s * (B @ A)^T; a LoRA bias (lora_bias) adds s * b_B to the bias.
* IA3: a vector l; l of shape [out, 1] rescales the layer's outputs (rows of W and the
  bias), l of shape [1, in] (feed-forward modules) rescales its inputs (columns of W).

Tensors saved with ``modules_to_save`` (a classifier head, or any full layer) replace the
base model's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ntengine.checkpoint.common import Checkpoint, CheckpointError, refuse_pickle
from ntengine.checkpoint.heads import esm_head
from ntengine.checkpoint.hf import canonical_keys, unused_shapes
from ntengine.checkpoint.names import external_names

ADAPTER_CONFIG = "adapter_config.json"
_PREFIX = "base_model.model."
_LORA = re.compile(r"^(.*)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.default)?(?:\.(weight|bias))?$")
_IA3 = re.compile(r"^(.*)\.ia3_l(?:\.default)?$")


def is_adapter(folder: Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def adapter_base(folder: Path) -> str | None:
    """The base checkpoint a PEFT adapter folder names, when the folder holds no model of its own."""
    folder = Path(folder)
    if not folder.is_dir() or not is_adapter(folder) or (folder / "config.json").is_file():
        return None
    return json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")


def read_adapter(folder: Path, trust_pickle: bool) -> tuple[dict, dict[str, torch.Tensor]]:
    """(adapter_config.json, tensors with the ``base_model.model.`` prefix removed)."""
    folder = Path(folder)
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    if (folder / "adapter_model.safetensors").is_file():
        from safetensors.torch import load_file

        tensors = load_file(str(folder / "adapter_model.safetensors"))
    elif (folder / "adapter_model.bin").is_file():
        refuse_pickle(folder / "adapter_model.bin", trust_pickle)
        tensors = torch.load(folder / "adapter_model.bin", map_location="cpu", weights_only=True)
    else:
        raise CheckpointError(f"{folder}: {ADAPTER_CONFIG} but no adapter_model.safetensors or adapter_model.bin")
    return config, {k.removeprefix(_PREFIX): v for k, v in tensors.items()}


def _alpha(config: dict, module: str) -> float:
    # PEFT matches alpha_pattern keys against the end of the module name.
    for pattern, alpha in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return float(alpha)
    return float(config["lora_alpha"])


def merge_adapter(ckpt: Checkpoint, folder: Path, trust_pickle: bool = False) -> Checkpoint:
    """Fold the PEFT adapter in `folder` into `ckpt` (in place) and return it."""
    config, tensors = read_adapter(folder, trust_pickle)
    kind = config.get("peft_type")
    if kind not in ("LORA", "IA3"):
        raise CheckpointError(f"{folder}: peft_type {kind!r} is not supported (LoRA and IA3 are)")
    # Options whose model is not base + merged deltas (or not an nn.Linear one): refused, not approximated.
    unsupported = [k for k in ("use_dora", "fan_in_fan_out", "layer_replication", "alora_invocation_tokens",
                               "trainable_token_indices") if config.get(k)]
    if str(config.get("init_lora_weights")).lower().startswith(("pissa", "olora", "corda")):
        unsupported.append(f"init_lora_weights={config['init_lora_weights']} (it changes the base weights)")
    if unsupported or any("lora_magnitude_vector" in k for k in tensors):
        raise CheckpointError(f"{folder}: {', '.join(unsupported) or 'DoRA'} adapters are not supported")
    # Keys as the base's: PEFT names a wrapped layer's own tensors `<module>.base_layer.<param>`,
    # and an adapter on transformers' bare EsmModel has no "esm." prefix.
    tensors = canonical_keys({k.replace(".base_layer.", "."): v for k, v in tensors.items()}, [])
    hf_to_ours = {external_names(name, "hf")[0]: name for name in ckpt.state}
    state, problems, lora, merged, skipped = ckpt.state, [], {}, 0, set()
    unused = unused_shapes(ckpt.config)

    def ours(module: str, param: str = "weight") -> str | None:
        """Our name of an adapted tensor; None (and why) for one we cannot or need not place."""
        key = f"{module}.{param}"
        if key in unused:  # e.g. LoRA on "dense" also wraps EsmModel's pooler, which NT never runs
            skipped.add(module)
        elif key not in hf_to_ours:
            problems.append(f"{key}: no such parameter in the base model")
        return hf_to_ours.get(key)

    replaced = {k: tensors.pop(k) for k in list(tensors) if not (_LORA.match(k) or _IA3.match(k))}
    for key, value in tensors.items():
        m = _IA3.match(key)
        if m:
            name = ours(m.group(1))
            if name is None:
                continue
            w, scale = state[name], value.to(torch.float32)
            if scale.shape == (w.shape[0], 1):  # rescales the outputs: rows and the bias
                state[name] = (w.float() * scale).to(w.dtype)
                bias = name.removesuffix("weight") + "bias"
                if bias in state:
                    state[bias] = (state[bias].float() * scale[:, 0]).to(state[bias].dtype)
            elif scale.shape == (1, w.shape[1]):  # a feed-forward module: rescales the inputs
                state[name] = (w.float() * scale).to(w.dtype)
            else:
                problems.append(f"{key}: shape {list(scale.shape)} fits neither rows nor columns of "
                                f"{list(w.shape)}")
            merged += 1
            continue
        m = _LORA.match(key)
        lora.setdefault(m.group(1), {})[m.group(2) + ("_bias" if m.group(3) == "bias" else "")] = value
    for module, parts in lora.items():
        embedding = "lora_embedding_A" in parts
        a, b = (parts.get("lora_embedding_A"), parts.get("lora_embedding_B")) if embedding else \
            (parts.get("lora_A"), parts.get("lora_B"))
        name = ours(module)
        if name is None:
            continue
        if a is None or b is None:
            problems.append(f"{module}: LoRA needs both A and B, found {sorted(parts)}")
            continue
        rank = a.shape[0]
        scale = _alpha(config, module) / (rank ** 0.5 if config.get("use_rslora") else rank)
        delta = scale * (b.float() @ a.float())
        delta = delta.T if embedding else delta
        w = state[name]
        if delta.shape != w.shape:
            problems.append(f"{module}: LoRA delta {list(delta.shape)} does not fit {list(w.shape)}")
            continue
        state[name] = (w.float() + delta).to(w.dtype)
        if "lora_B_bias" in parts:
            bias = ours(module, "bias")
            if bias:
                state[bias] = (state[bias].float() + scale * parts["lora_B_bias"].float()).to(state[bias].dtype)
        merged += 1
    head_tensors = {k: replaced.pop(k) for k in list(replaced) if k.startswith("classifier.")}
    for key, value in replaced.items():  # modules_to_save, trained biases: full tensors
        module, _, param = key.rpartition(".")
        name = ours(module, param)
        if name is not None and value.shape != state[name].shape:
            problems.append(f"{key}: shape {list(value.shape)}, the base model's is {list(state[name].shape)}")
        elif name is not None:
            state[name] = value.to(state[name].dtype)
    if head_tensors:
        # The labels and problem_type lived in the training script, not in the adapter: the
        # task follows transformers' default (one output: regression, else single-label).
        ckpt.head = esm_head(head_tensors, {}, ckpt.config.embed_dim)
    elif config.get("task_type") in ("SEQ_CLS", "TOKEN_CLS") and ckpt.head is None:
        problems.append(f"the adapter was trained for {config['task_type']} but holds no classifier weights, and "
                        "the base checkpoint has none: PEFT would start from a random head (why such models "
                        "'predict badly after save/load'); save the adapter with modules_to_save=['classifier']")
    if problems:
        raise CheckpointError(f"{len(problems)} problem(s) merging the adapter {folder}:\n  " + "\n  ".join(problems))
    ckpt.report.notes.append(f"PEFT {kind} adapter {folder} merged: {merged} modules"
                             + (f", {len(replaced) + len(head_tensors)} tensors replaced" if replaced or head_tensors
                                else "")
                             + (f"; skipped {sorted(skipped)}, which NT never runs" if skipped else ""))
    return ckpt

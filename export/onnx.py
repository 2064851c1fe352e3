"""ONNX export of NTModel, traced in ops "torch" mode so the graph holds standard ONNX ops.

The artefact takes

    input_ids       int32 [B, L]  `<cls>` first, right-padded with pad_id
    attention_mask  bool  [B, L]  true at real tokens, false at padding (a prefix of each row)

exactly what `Tokenizer.batch_encode` returns, with B and L dynamic (1 <= L <=
max_positions), and returns float32 outputs named as the engine names them:
``embeddings`` [B, L, E], ``logits`` [B, L, V], ``embeddings_{i}`` [B, L, E]. Values at
padding positions are not meaningful. metadata_props hold the model's NTConfig (JSON),
the output list and the compute dtype, so `ntengine.compile("model.onnx")` can rebuild an
Engine, and the vocabulary and tokenisation rules, so the file also runs without ntengine
(README, "Running an exported model without ntengine"). Files exported before took int64
inputs; the onnxruntime backend still runs them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ntengine import ops
from ntengine.backends.artefact import (META_CONFIG, META_DTYPE, META_OUTPUTS, ONNX_INSTALL_HINT, parse_outputs,
                                        tokenizer_metadata)
from ntengine.model import NTModel

log = logging.getLogger("ntengine.export")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise RuntimeError(f"ONNX export needs onnx and onnxscript ({err}): {ONNX_INSTALL_HINT}") from None


class _Exported(nn.Module):
    """NTModel with fixed outputs, returning a tuple of float32 tensors (what the exporter wants)."""

    def __init__(self, model: NTModel, outputs: Sequence[str]):
        super().__init__()
        self.model = model
        self.outputs, self.layers, self.logits = parse_outputs(outputs, model.config.num_layers)

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids.long(), attention_mask, layers=self.layers, logits=self.logits)
        return tuple(out[name].float() for name in self.outputs)


def export_model(source, trust_pickle: bool = False, revision: str | None = None, adapter=None) -> NTModel:
    """An fp32 CPU copy of the NTModel in `source`: a checkpoint (folder or hub id, with a PEFT
    `adapter` merged if given), an NTModel or an Engine (anything with an NTModel ``.model``).
    In-memory models are copied, not changed."""
    model = getattr(source, "model", source)
    if isinstance(model, NTModel):
        return copy.deepcopy(model).to(device="cpu", dtype=torch.float32).eval()
    if not isinstance(source, (str, Path)):
        raise TypeError(f"export takes a checkpoint folder, an NTModel or a PyTorch Engine, not {type(model).__name__}")
    from ntengine.checkpoint import load_model

    return load_model(source, trust_pickle=trust_pickle, revision=revision, adapter=adapter)[0].float()


def _example_inputs(model: NTModel) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of 2 (sizes > 1 so the exporter keeps B and L symbolic), typed as
    `Tokenizer.batch_encode` types its output."""
    cfg = model.config
    length = min(8, cfg.max_positions)
    ids = torch.full((2, length), cfg.mask_id + 2, dtype=torch.int32)
    ids[:, 0] = cfg.cls_id
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, length // 2:] = False
    ids[1, length // 2:] = cfg.pad_id
    return ids, mask


def to_onnx(source, path, dtype: str = "float32", outputs: Sequence[str] = ("embeddings",),
            opset: int | None = None, validate: bool = True, trust_pickle: bool = False) -> Path:
    """Export a model to an ONNX file and (by default) check it against PyTorch.

    Args:
        source: checkpoint folder (any layout `load_checkpoint` reads), NTModel or Engine.
        path: the .onnx file to write.
        dtype: "float32", "float16" or "bfloat16" (weights and compute; outputs are float32).
            onnxruntime's CPU kernels cannot run bfloat16 graphs (no bf16 MatMul): such
            files are for TensorRT, which validates its engine on the GPU instead.
        outputs: names among "embeddings", "logits", "embeddings_{i}" (1-based), in the
            order of the graph's outputs; a comma-separated string works too.
        opset: ONNX opset (default: the exporter's, 20 with torch 2.13). 23 maps attention to
            ONNX's Attention op: measured ~25% faster in onnxruntime 1.32 on 4 x 512 tokens
            (NT-v2-50M shape, 2-core CPU), the same at 1 x 128; it needs a runtime with
            Attention-23 kernels.
        validate: run the artefact in onnxruntime on phiX174 windows and raise if it
            differs from the fp32 PyTorch reference beyond tolerance (1e-4 fp32, 1e-2 fp16);
            not possible for bfloat16.
        trust_pickle: allow pickle-based checkpoint weights.
    Returns:
        the path written.
    """
    _require_onnx()
    import onnx

    if dtype not in DTYPES:
        raise ValueError(f"ONNX export dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if validate and dtype == "bfloat16":
        raise ValueError("a bfloat16 ONNX file cannot be validated in onnxruntime (its CPU kernels have no bf16 "
                         "MatMul): pass validate=False / --no-validate, or build a TensorRT engine from it")
    reference = export_model(source, trust_pickle)
    wrapper = _Exported(copy.deepcopy(reference).to(DTYPES[dtype]), outputs).eval()
    cfg = reference.config
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1)
    tokens = torch.export.Dim("tokens", min=1, max=cfg.max_positions)
    log.info(f"exporting {cfg.num_layers} layers x {cfg.embed_dim} to ONNX ({dtype}, outputs {', '.join(wrapper.outputs)})")
    with ops.use("torch"), torch.no_grad(), warnings.catch_warnings(), _exporter_quiet():
        warnings.simplefilter("ignore")  # the exporter's deprecation and axis-naming chatter
        program = torch.onnx.export(
            wrapper, _example_inputs(reference), dynamo=True, opset_version=opset,
            input_names=["input_ids", "attention_mask"], output_names=list(wrapper.outputs),
            dynamic_shapes=({0: batch, 1: tokens}, {0: batch, 1: tokens}), verbose=False)
    proto = program.model_proto
    meta = {META_CONFIG: json.dumps(cfg.to_dict()), META_OUTPUTS: json.dumps(list(wrapper.outputs)),
            META_DTYPE: dtype, **tokenizer_metadata(cfg)}
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    tmp = path.with_name(path.name + ".partial")
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    if validate:
        log.info(f"checking {path.name} against PyTorch in onnxruntime")
        from ntengine.export.validate import validate_onnx

        validate_onnx(path, reference)
    return path


@contextlib.contextmanager
def _exporter_quiet():
    """Mute torch's exporter logger below errors while it runs: it warns once per torchvision
    op it cannot register ("torchvision is not installed"), which says nothing about NT."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)

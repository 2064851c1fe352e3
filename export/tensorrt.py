"""TensorRT engines built from the ONNX export, for NVIDIA GPUs.

    ntengine export CKPT --format tensorrt -o model.plan --dtype float16 --opt 8x1000 --max 8x2048

The model is exported to ONNX in the engine's dtype (`to_onnx`; the rotary tables are
computed in float32 in the graph from a Range, which TensorRT's parser takes), parsed
into a strongly typed network (TensorRT 11 has no other kind: precision comes from the
graph's types, not from builder flags) and built with one optimisation profile over
batch and token ranges. A timing cache file, when given, is read before and rewritten
after the build so later builds of the same shapes skip kernel timing.

A plan runs only on the TensorRT version and GPU model that built it. It is written
with a JSON sidecar (``model.plan.json``) that holds what ``metadata_props`` holds in
ONNX files (NTConfig, outputs, dtype, vocabulary, tokenisation rules), plus the profile, TensorRT version and GPU, so
`ntengine.compile("model.plan")` can rebuild an Engine and explain mismatches.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from ntengine.backends.artefact import (META_CONFIG, META_DTYPE, META_GPU, META_OUTPUTS, META_PROFILE, META_TRT,
                                        parse_outputs, require_tensorrt, sidecar, tokenizer_metadata)
from ntengine.export.onnx import export_model, to_onnx

log = logging.getLogger("ntengine.export")
DEFAULT_OPT = (8, 1000)  # (batch, tokens) the kernels are tuned for: NT's 6 kb windows, 8 at a time


def parse_shape(text) -> tuple[int, int]:
    """'8x1000' (or a (batch, tokens) pair) -> (8, 1000)."""
    if isinstance(text, (tuple, list)):
        batch, tokens = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", str(text))
        if not m:
            raise ValueError(f"shape {text!r}: write BATCHxTOKENS, e.g. 8x1000")
        batch, tokens = m.groups()
    return int(batch), int(tokens)


def resolve_profile(max_positions: int, min_shape=None, opt_shape=None, max_shape=None) -> dict[str, tuple]:
    """{min, opt, max}: (batch, tokens) each, defaults 1x1, 8x1000 and 8 x the model's
    context (opt is capped by max), checked to be ordered and within the context."""
    lo = parse_shape(min_shape or (1, 1))
    hi = parse_shape(max_shape or (max(DEFAULT_OPT[0], lo[0]), max_positions))
    opt = parse_shape(opt_shape or (min(DEFAULT_OPT[0], hi[0]), min(DEFAULT_OPT[1], hi[1])))
    if not (1 <= lo[0] <= opt[0] <= hi[0] and 1 <= lo[1] <= opt[1] <= hi[1]):
        raise ValueError(f"profile shapes must satisfy 1 <= min <= opt <= max in batch and tokens: "
                         f"min {lo}, opt {opt}, max {hi}")
    if hi[1] > max_positions:
        raise ValueError(f"max tokens {hi[1]} exceeds the model's context of {max_positions}")
    return {"min": lo, "opt": opt, "max": hi}


def _parse_onnx(trt, builder, logger, onnx_path: Path):
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):  # opt-in on 10.x, the only mode on 11.x
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors}")
    return network, parser


def build_plan(onnx_path, plan_path, profile: dict, timing_cache=None, workspace_gib: float | None = None,
               allow_tf32: bool = False, verbose: bool = False) -> Path:
    """Build a TensorRT plan from an ntengine ONNX file (inputs input_ids, attention_mask).
    float32 graphs run in true fp32 unless `allow_tf32` (TensorRT's default is TF32 matmuls,
    ~1e-3 relative: an fp32 engine should match fp32 PyTorch)."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse_onnx(trt, builder, logger, Path(onnx_path))  # the parser owns the weights
    config = builder.create_builder_config()
    if not allow_tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    opt_profile = builder.create_optimization_profile()
    for name in ("input_ids", "attention_mask"):
        opt_profile.set_shape(name, profile["min"], profile["opt"], profile["max"])
    config.add_optimization_profile(opt_profile)
    cache_file = Path(timing_cache) if timing_cache else None
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file and cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT could not build an engine from {Path(onnx_path).name} (see its log above)")
    plan_path = Path(plan_path)
    tmp = plan_path.with_name(plan_path.name + ".partial")
    tmp.write_bytes(bytes(plan))
    tmp.replace(plan_path)
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_bytes(bytes(config.get_timing_cache().serialize()))
    return plan_path


def to_tensorrt(source, path, dtype: str = "float16", outputs: Sequence[str] = ("embeddings",),
                min_shape=None, opt_shape=None, max_shape=None, timing_cache=None,
                workspace_gib: float | None = None, opset: int | None = None, validate: bool = True,
                trust_pickle: bool = False, verbose: bool = False) -> Path:
    """Export a model to a TensorRT plan (with its JSON sidecar) and check it on the GPU.

    Args:
        source: checkpoint folder, NTModel or PyTorch Engine (as `to_onnx`).
        path: the plan file to write (e.g. model.plan).
        dtype: "float16" (default), "bfloat16" or "float32": weights and compute.
        outputs: as `to_onnx`.
        min_shape, opt_shape, max_shape: (batch, tokens) or "BxL" strings of the
            optimisation profile (default 1x1, 8x1000, 8 x the model's context).
        timing_cache: file to read and update with TensorRT's kernel timings.
        workspace_gib: cap on TensorRT's scratch memory (default: TensorRT's, the GPU's).
        opset: ONNX opset of the intermediate export.
        validate: run the plan and the fp32 PyTorch reference on phiX174 windows and raise
            beyond tolerance (1e-4 fp32, 1e-2 fp16, 5e-2 bf16, relative to max|reference|).
    """
    trt = require_tensorrt()  # before the minutes of export
    reference = export_model(source, trust_pickle)
    profile = resolve_profile(reference.config.max_positions, min_shape, opt_shape, max_shape)
    outputs = parse_outputs(outputs, reference.config.num_layers)[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ntengine-trt-") as tmp:
        onnx_path = to_onnx(reference, Path(tmp) / "model.onnx", dtype=dtype, outputs=outputs, opset=opset,
                            validate=validate and dtype != "bfloat16")
        log.info(f"building a TensorRT {dtype} engine for {torch.cuda.get_device_name()}, batch x tokens "
                 f"{profile['min']}..{profile['max']} (minutes; --timing-cache speeds up rebuilds)")
        build_plan(onnx_path, path, profile, timing_cache, workspace_gib, verbose=verbose)
    meta = {META_CONFIG: json.dumps(reference.config.to_dict()), META_OUTPUTS: json.dumps(list(outputs)),
            META_DTYPE: dtype, META_PROFILE: profile, META_TRT: trt.__version__,
            META_GPU: torch.cuda.get_device_name(), **tokenizer_metadata(reference.config)}
    sidecar(path).write_text(json.dumps(meta, indent=1))
    if validate:
        from ntengine.backends.trt_backend import TrtBackend
        from ntengine.export.validate import validate_artefact

        lo, hi = profile["min"], profile["max"]
        lengths = [min(max(n, lo[1]), hi[1]) for n in (48, 31, 7)][:hi[0]]
        lengths += [lengths[-1]] * (lo[0] - len(lengths))
        validate_artefact(TrtBackend(path), reference, lengths=lengths)
    return path

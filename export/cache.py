"""Artefacts built once from a checkpoint and kept in the on-disk cache, for
``compile(..., backend="onnxruntime" | "tensorrt")``.

The cache key covers the resolved checkpoint (and adapter) folders' files and the build
settings, so a changed checkpoint or a new TensorRT / GPU builds a new artefact.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ntengine.backends.artefact import require_tensorrt, sidecar
from ntengine.config import NTConfig
from ntengine.model import NTModel
from ntengine.export.onnx import to_onnx
from ntengine.export.tensorrt import to_tensorrt


def all_outputs(config: NTConfig) -> list[str]:
    """Every output an engine may ask for: embeddings, logits (with an LM head), embeddings_1..N-1."""
    return ["embeddings"] + (["logits"] if config.lm_head else []) + [f"embeddings_{i}"
                                                                      for i in range(1, config.num_layers)]


def cache_path(checkpoint, kind: str, tag: str, suffix: str, cache_dir=None, revision=None, adapter=None,
               trust_pickle: bool = False) -> Path:
    """Where an artefact built from `checkpoint` (+ `adapter`) is cached: ``$NTENGINE_CACHE``
    (or ``~/.cache/ntengine``) / kind / name-tag-hash.suffix. The hash covers the resolved
    folders (hub ids resolve to their snapshot), their files' sizes and mtimes, and `tag`."""
    from ntengine.cache import cache_root
    from ntengine.checkpoint import resolve_checkpoint
    from ntengine.checkpoint.peft import adapter_base

    root = cache_root(cache_dir) / kind
    sources = [resolve_checkpoint(checkpoint, revision=revision, trust_pickle=trust_pickle).resolve()]
    base = adapter_base(sources[0])
    if base is not None:  # an adapter folder standing for base + adapter: both make the artefact
        sources.append(resolve_checkpoint(base, trust_pickle=trust_pickle).resolve())
    if adapter is not None:
        sources.append(resolve_checkpoint(adapter, trust_pickle=trust_pickle).resolve())
    h = hashlib.sha256(f"{'|'.join(map(str, sources))}|{tag}".encode())
    for src in sources:
        for f in sorted(src.rglob("*")) if src.is_dir() else [src]:
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(src) if src.is_dir() else f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return root / f"{sources[0].name}-{tag}-{h.hexdigest()[:16]}{suffix}"


def cached_artefact(backend: str, model: NTModel, checkpoint, dtype: str, trust_pickle: bool = False,
                    cache_dir=None, revision=None, adapter=None) -> Path:
    """The artefact for `backend` ("onnxruntime" | "tensorrt") of `model`, loaded from
    `checkpoint` (+ `adapter`) which keys the cache (see `cache_path`): exported once with
    every output, and for TensorRT built once per TensorRT version and GPU model with the
    default profile; a hit builds nothing."""
    key = {"cache_dir": cache_dir, "revision": revision, "adapter": adapter, "trust_pickle": trust_pickle}
    outputs = all_outputs(model.config)
    if backend == "onnxruntime":
        path = cache_path(checkpoint, "onnx", dtype, ".onnx", **key)
        if not path.is_file():
            to_onnx(model, path, dtype=dtype, outputs=outputs)
        return path
    trt = require_tensorrt()
    gpu = torch.cuda.get_device_name().replace(" ", "_")
    path = cache_path(checkpoint, "tensorrt", f"{dtype}-trt{trt.__version__}-{gpu}", ".plan", **key)
    if not (path.is_file() and sidecar(path).is_file()):
        try:
            to_tensorrt(model, path, dtype=dtype, outputs=outputs, timing_cache=path.parent / "timing.cache")
        except BaseException:  # never leave a plan that failed validation in the cache
            path.unlink(missing_ok=True)
            sidecar(path).unlink(missing_ok=True)
            raise
    return path

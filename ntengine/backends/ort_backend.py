"""ONNX Runtime backend: runs an artefact written by `ntengine.export.to_onnx`.

onnxruntime is imported lazily (``pip install 'ntengine[onnx]'``). The artefact carries
the NTConfig, its output list and its dtype in metadata_props; files without them are
refused with a clear error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ntengine.config import NTConfig

from ntengine.export.onnx import INSTALL_HINT, META_CONFIG, META_DTYPE, META_OUTPUTS, parse_outputs


def _ort():
    try:
        import onnxruntime
    except ImportError as err:
        raise RuntimeError(f"the onnxruntime backend needs onnxruntime ({err}): {INSTALL_HINT}") from None
    return onnxruntime


class OrtModel:
    """An ONNX Runtime session over an ntengine artefact, called like NTModel.forward.

    Attributes: config (NTConfig), outputs (names in the artefact), dtype ("float32" |
    "float16"), path.
    """

    name = "onnxruntime"

    def __init__(self, path, threads: int | None = None):
        ort = _ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: not a loadable ONNX model ({type(err).__name__}: {err})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [k for k in (META_CONFIG, META_OUTPUTS, META_DTYPE) if k not in meta]
        if missing:
            raise ValueError(f"{self.path}: an ONNX model without ntengine metadata ({', '.join(missing)}); "
                             "export it with `ntengine export` / ntengine.export.to_onnx")
        self.config = NTConfig.from_dict(json.loads(meta[META_CONFIG]))
        self.outputs = tuple(json.loads(meta[META_OUTPUTS]))
        self.dtype = meta[META_DTYPE]
        graph_outputs = {o.name for o in self.session.get_outputs()}
        inputs = {i.name for i in self.session.get_inputs()}
        if not set(self.outputs) <= graph_outputs or inputs != {"input_ids", "attention_mask"}:
            raise ValueError(f"{self.path}: graph inputs {sorted(inputs)} / outputs {sorted(graph_outputs)} do not "
                             f"match its ntengine metadata (outputs {list(self.outputs)})")

    @property
    def layers_logits(self) -> tuple[tuple[str, ...], tuple[int, ...], bool]:
        """(outputs, 1-based layers of its embeddings_{i}, has logits)."""
        return parse_outputs(self.outputs, self.config.num_layers)

    def run(self, ids: np.ndarray, mask: np.ndarray, names) -> dict[str, np.ndarray]:
        """Run the session: ids, mask [B, L] -> {name: float32 array} for `names`."""
        names = list(names)
        res = self.session.run(names, {"input_ids": np.ascontiguousarray(ids, np.int64),
                                       "attention_mask": np.ascontiguousarray(mask, np.int64)})
        return dict(zip(names, res))

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, layers=(),
                 attention_maps=(), logits: bool = True, cu_seqlens=None) -> dict[str, torch.Tensor]:
        """NTModel.forward's contract for what the artefact holds; anything else raises."""
        if cu_seqlens is not None:
            raise ValueError("the onnxruntime backend runs padded batches only (no cu_seqlens / packed)")
        if attention_maps:
            raise ValueError("the onnxruntime backend returns no attention maps")
        n = self.config.num_layers
        want = ["embeddings"] + (["logits"] if logits else [])
        for i in dict.fromkeys(layers):
            if not 1 <= i <= n:
                raise ValueError(f"layer {i} out of range 1..{n}")
            want.append(f"embeddings_{i}")
        missing = [w for w in want if w not in self.outputs and not (w == f"embeddings_{n}")]
        if "embeddings" not in self.outputs and f"embeddings_{n}" not in self.outputs:
            missing.insert(0, "embeddings")
        if missing:
            hint = " (pass logits=False)" if missing == ["logits"] else ""
            raise ValueError(f"{self.path.name} has no output {', '.join(missing)}{hint}; it holds "
                             f"{list(self.outputs)}: re-export with --outputs naming what you need")
        _, length = input_ids.shape
        if length > self.config.max_positions:
            raise ValueError(f"input has {length} tokens but this model takes at most {self.config.max_positions}")
        ids = input_ids.cpu().numpy()
        mask = (ids != self.config.pad_id) if attention_mask is None else attention_mask.cpu().numpy()
        # The last block's output is the final embeddings: either name serves both.
        alias = {"embeddings": f"embeddings_{n}", f"embeddings_{n}": "embeddings"}
        source = {w: w if w in self.outputs else alias[w] for w in want}
        res = self.run(ids, mask.astype(np.int64), dict.fromkeys(source.values()))
        return {w: torch.from_numpy(res[s]) for w, s in source.items()}


def cached_export(checkpoint, dtype: str = "float32", trust_pickle: bool = False, cache_dir=None) -> Path:
    """Export `checkpoint` (all outputs: embeddings, logits, embeddings_1..N) once into
    the cache (``$NTENGINE_CACHE`` or ``~/.cache/ntengine``) and return the file.

    The cache key hashes the checkpoint's resolved path, its files' sizes and mtimes, and dtype.
    """
    from ntengine.checkpoint import load_checkpoint
    from ntengine.export import to_onnx

    root = Path(cache_dir or os.environ.get("NTENGINE_CACHE") or Path.home() / ".cache" / "ntengine") / "onnx"
    src = Path(checkpoint).resolve()
    h = hashlib.sha256(f"{src}|{dtype}".encode())
    for f in sorted(src.rglob("*")) if src.is_dir() else [src]:
        if f.is_file():
            st = f.stat()
            h.update(f"{f.relative_to(src) if src.is_dir() else f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    path = root / f"{src.name}-{dtype}-{h.hexdigest()[:16]}.onnx"
    if not path.is_file():
        config, _ = load_checkpoint(src, trust_pickle=trust_pickle)
        outputs = ["embeddings", "logits"] + [f"embeddings_{i}" for i in range(1, config.num_layers)]
        to_onnx(src, path, dtype=dtype, outputs=outputs, trust_pickle=trust_pickle)
    return path

"""What the ONNX Runtime and TensorRT backends share: reading an exported artefact's
ntengine metadata, NTModel.forward's contract over the outputs the artefact holds, and
the on-disk cache of artefacts built from checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ntengine.config import NTConfig

from ntengine.export.onnx import META_CONFIG, META_DTYPE, META_OUTPUTS, parse_outputs


class ArtefactModel:
    """An exported model called like NTModel.forward. Subclasses set name, device and
    path, call `_read_metadata`, and implement `_run`.

    Attributes: config (NTConfig), outputs (names the artefact holds), dtype ("float32" |
    "float16" | "bfloat16": its compute dtype; outputs are float32).
    """

    name: str
    device: torch.device
    path: Path

    def _read_metadata(self, meta: dict) -> None:
        missing = [k for k in (META_CONFIG, META_OUTPUTS, META_DTYPE) if k not in meta]
        if missing:
            raise ValueError(f"{self.path}: an artefact without ntengine metadata ({', '.join(missing)}); "
                             "export it with `ntengine export`")
        self.config = NTConfig.from_dict(json.loads(meta[META_CONFIG]))
        self.outputs = tuple(json.loads(meta[META_OUTPUTS]))
        self.dtype = meta[META_DTYPE]

    @property
    def layers_logits(self) -> tuple[tuple[str, ...], tuple[int, ...], bool]:
        """(outputs, 1-based layers of its embeddings_{i}, has logits)."""
        return parse_outputs(self.outputs, self.config.num_layers)

    def _run(self, ids: torch.Tensor, mask: torch.Tensor, names) -> dict[str, torch.Tensor]:
        """ids, mask int64 [B, L] -> {name: float32 tensor} for `names` (outputs it holds)."""
        raise NotImplementedError

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, layers=(),
                 attention_maps=(), logits: bool = True, cu_seqlens=None) -> dict[str, torch.Tensor]:
        """NTModel.forward's contract for what the artefact holds; anything else raises."""
        if cu_seqlens is not None:
            raise ValueError(f"the {self.name} backend runs padded batches only (no cu_seqlens / packed)")
        if attention_maps:
            raise ValueError(f"the {self.name} backend returns no attention maps")
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
        mask = (input_ids != self.config.pad_id) if attention_mask is None else attention_mask
        # The last block's output is the final embeddings: either name serves both.
        alias = {"embeddings": f"embeddings_{n}", f"embeddings_{n}": "embeddings"}
        source = {w: w if w in self.outputs else alias[w] for w in want}
        res = self._run(input_ids.long(), mask.long(), list(dict.fromkeys(source.values())))
        return {w: res[s] for w, s in source.items()}


def all_outputs(config: NTConfig) -> list[str]:
    """Every output an engine may ask for: embeddings, logits (with an LM head), embeddings_1..N-1."""
    return ["embeddings"] + (["logits"] if config.lm_head else []) + [f"embeddings_{i}"
                                                                      for i in range(1, config.num_layers)]


def cache_path(checkpoint, kind: str, tag: str, suffix: str, cache_dir=None, revision=None, adapter=None,
               trust_pickle: bool = False) -> Path:
    """Where an artefact built from `checkpoint` (+ `adapter`) is cached: ``$NTENGINE_CACHE``
    (or ``~/.cache/ntengine``) / kind / name-tag-hash.suffix. The hash covers the resolved
    folders (hub ids resolve to their snapshot), their files' sizes and mtimes, and `tag`."""
    from ntengine.checkpoint import resolve_checkpoint
    from ntengine.checkpoint.peft import adapter_base

    root = Path(cache_dir or os.environ.get("NTENGINE_CACHE") or Path.home() / ".cache" / "ntengine") / kind
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

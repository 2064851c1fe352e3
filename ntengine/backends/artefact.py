"""The artefact backends' shared half: the ntengine metadata an exported ONNX file
(metadata_props) or TensorRT plan (JSON sidecar) carries, which `ntengine.export` writes
and the ONNX Runtime and TensorRT backends read, and the `Backend` call over the outputs
an artefact holds.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Sequence

import torch

from ntengine.backends.base import Backend
from ntengine.config import NTConfig

META_CONFIG, META_OUTPUTS, META_DTYPE = "ntengine.config", "ntengine.outputs", "ntengine.dtype"
META_VOCAB, META_TOKENIZER = "ntengine.vocab", "ntengine.tokenizer"  # since 0.1.0: readable without ntengine
META_PROFILE, META_TRT, META_GPU = "ntengine.profile", "tensorrt.version", "tensorrt.gpu"  # plans only
ONNX_INSTALL_HINT = "pip install 'ntengine[onnx]'"
TRT_INSTALL_HINT = "pip install 'ntengine[tensorrt]' (TensorRT >= 10 for CUDA 13) on a machine with an NVIDIA GPU"


def parse_outputs(outputs: Sequence[str], num_layers: int) -> tuple[tuple[str, ...], tuple[int, ...], bool]:
    """(names, 1-based layers for ``embeddings_{i}``, logits?) of an output list; checks the names."""
    if isinstance(outputs, str):
        outputs = [o.strip() for o in outputs.split(",") if o.strip()]
    names = tuple(dict.fromkeys(outputs))
    if not names:
        raise ValueError("outputs must name at least one of embeddings, logits, embeddings_{i}")
    layers = []
    for name in names:
        m = re.fullmatch(r"embeddings_(\d+)", name)
        if m:
            if not 1 <= int(m.group(1)) <= num_layers:
                raise ValueError(f"output {name}: layer out of range 1..{num_layers}")
            layers.append(int(m.group(1)))
        elif name not in ("embeddings", "logits"):
            raise ValueError(f"unknown output {name!r}: use embeddings, logits or embeddings_{{i}} (1..{num_layers})")
    return names, tuple(layers), "logits" in names


def tokenizer_metadata(config: NTConfig) -> dict[str, str]:
    """What an artefact needs to be run without ntengine: its vocabulary (token strings in id
    order, one per line) and how NT tokenises (JSON: vocabulary version, k, the rules)."""
    from ntengine import __version__
    from ntengine.tokenizer import Tokenizer

    tok = Tokenizer(config.version)
    rules = {"version": config.version, "k": 6, "ntengine": __version__,
             "rules": "<cls> first; split on N (one N token each); k-mers from the start of each piece, "
                      "single-base tokens for a tail shorter than k; no <eos>; right-padded with <pad>",
             "cls_id": tok.cls_id, "pad_id": tok.pad_id, "mask_id": tok.mask_id, "unk_id": tok.unk_id}
    return {META_VOCAB: "\n".join(tok.vocab), META_TOKENIZER: json.dumps(rules)}


def sidecar(plan) -> Path:
    """The JSON metadata file that travels with a plan."""
    return Path(str(plan) + ".json")


def require_tensorrt():
    """The tensorrt module, or RuntimeError saying what is missing (package, version or GPU)."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise RuntimeError(f"TensorRT is not installed ({err}): {TRT_INSTALL_HINT}") from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise RuntimeError(f"TensorRT {trt.__version__} is too old: ntengine needs >= 10 (strongly typed networks, "
                           "execute_async_v3)")
    if not torch.cuda.is_available():
        raise RuntimeError("TensorRT needs an NVIDIA GPU, and this torch sees no CUDA device")
    return trt


class ArtefactBackend(Backend):
    """An exported model: padded batches, the outputs it was exported with. Subclasses set
    name, device and path, call `_read_metadata`, and implement `_run`.

    Attributes: outputs (the names the artefact holds), path (its file).
    """

    path: Path

    def _read_metadata(self, meta: dict) -> None:
        missing = [k for k in (META_CONFIG, META_OUTPUTS, META_DTYPE) if k not in meta]
        if missing:
            raise ValueError(f"{self.path}: an artefact without ntengine metadata ({', '.join(missing)}); "
                             "export it with `ntengine export`")
        self.config = NTConfig.from_dict(json.loads(meta[META_CONFIG]))
        self.outputs = tuple(json.loads(meta[META_OUTPUTS]))
        self.dtype = getattr(torch, meta[META_DTYPE])
        # Artefacts written before the vocabulary was stored have none: ntengine's is theirs.
        if META_VOCAB in meta and meta[META_VOCAB] != tokenizer_metadata(self.config)[META_VOCAB]:
            raise ValueError(f"{self.path}: its vocabulary is not ntengine's {self.config.version} vocabulary, "
                             "so ntengine's tokenizer would feed it wrong ids")

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
        return h.hexdigest()

    @property
    def layers_logits(self) -> tuple[tuple[str, ...], tuple[int, ...], bool]:
        """(outputs, 1-based layers of its embeddings_{i}, has logits)."""
        return parse_outputs(self.outputs, self.config.num_layers)

    def _run(self, ids: torch.Tensor, mask: torch.Tensor, names) -> dict[str, torch.Tensor]:
        """ids (any integer type), mask (bool or integer) [B, L] -> {name: float32 tensor} for
        `names` (outputs it holds); the subclass casts them to the types its graph takes."""
        raise NotImplementedError

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, layers=(),
                 attention_maps=(), logits: bool = True, cu_seqlens=None) -> dict[str, torch.Tensor]:
        """The contract for what the artefact holds; anything else (packed rows, attention
        maps, outputs it was not exported with) raises."""
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
        res = self._run(input_ids, mask, list(dict.fromkeys(source.values())))
        return {w: res[s] for w, s in source.items()}

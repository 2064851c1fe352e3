"""Engine = model + weights + tokenizer + backend; `compile()` builds one.

The engine owns what users should not have to write: tokenising, sorting sequences
by length so batches carry little padding, batching long lists, pooling, and
returning float32 whatever the compute dtype.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ntengine.checkpoint import load_checkpoint
from ntengine.config import NTConfig
from ntengine.model import NTModel
from ntengine.tokenizer import Tokenizer

BACKENDS = ("torch",)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
POOLINGS = ("mean", "cls", "none")


def _resolve_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")


def _resolve_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} asked for, but this torch sees no CUDA GPU")
    return device


class Engine:
    """A compiled NT model ready for inference.

    Attributes:
        config: the model's NTConfig.
        tokenizer: a `Tokenizer` for the model's vocabulary and context length.
        device, dtype, backend: where and how the model runs.
    """

    def __init__(self, model: NTModel, device="cpu", dtype="float32", backend="auto", batch_size: int = 8):
        if backend not in ("auto",) + BACKENDS:
            raise ValueError(f"backend must be 'auto' or one of {list(BACKENDS)}, got {backend!r}")
        self.backend = "torch" if backend == "auto" else backend
        self.device = _resolve_device(device)
        self.dtype = _resolve_dtype(dtype)
        self.config: NTConfig = model.config
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tokenizer = Tokenizer(version=self.config.version, max_length=self.config.max_positions)
        self.batch_size = batch_size
        # Ids that are not nucleotides: excluded from mean pooling.
        tok = self.tokenizer
        self._special_ids = np.array(sorted({tok.unk_id, tok.pad_id, tok.mask_id, tok.cls_id,
                                             tok.token_to_id("<eos>"), tok.token_to_id("<bos>")}))

    def __repr__(self):
        c = self.config
        return (f"Engine({c.version}, {c.num_layers} layers x {c.embed_dim}, "
                f"{c.num_parameters / 1e6:.1f}M params, {self.device}, {self.dtype}, {self.backend})")

    # ------------------------------------------------------------------ forward

    @torch.inference_mode()
    def forward(self, ids, attention_mask=None, layers: Sequence[int] = (),
                attention_maps: Sequence[tuple[int, int]] = (), logits: bool = True) -> dict:
        """Run one padded batch.

        Args:
            ids: [B, L] token ids (numpy or torch), `<cls>` first, right-padded.
            attention_mask: [B, L], nonzero at real tokens; default ``ids != pad_id``.
            layers, attention_maps, logits: as `NTModel.forward` (layers 1-based,
                heads 0-based: the map returned is exactly the head asked for).

        Returns:
            dict of float32 arrays named as the official code names them (``logits``,
            ``embeddings``, ``embeddings_{i}``, ``attention_map_layer_{l}_number_{h}``):
            numpy if `ids` was numpy, torch tensors on the engine's device otherwise.
        """
        as_numpy = not isinstance(ids, torch.Tensor)
        ids_t = torch.as_tensor(np.asarray(ids) if as_numpy else ids).to(self.device, torch.long)
        mask_t = None
        if attention_mask is not None:
            mask_t = torch.as_tensor(np.asarray(attention_mask) if as_numpy else attention_mask)
            mask_t = mask_t.to(self.device).bool()
        out = self.model(ids_t, mask_t, layers=layers, attention_maps=attention_maps, logits=logits)
        out = {k: v.float() for k, v in out.items()}
        return {k: v.cpu().numpy() for k, v in out.items()} if as_numpy else out

    def _batches(self, seqs: Sequence[str], batch_size: int | None):
        """Yield (row indices into seqs, ids [b, L], mask [b, L]) of length-sorted batches.

        Sorting by token count keeps each batch's padding small; results go back to the
        caller's order through the row indices.
        """
        if isinstance(seqs, (str, bytes)):
            raise TypeError("pass a list of sequences, not a single string")
        counts = self.tokenizer.count_tokens(seqs)  # validates: errors name the sequence index
        limit = self.config.max_positions
        if (counts > limit).any():
            i = int(np.flatnonzero(counts > limit)[0])
            raise ValueError(f"sequence {i} has {counts[i]} tokens (including <cls>); this model "
                             f"takes at most {limit} (about {6 * (limit - 1)} bp): cut it into windows")
        order = np.argsort(-counts, kind="stable")
        size = batch_size or self.batch_size
        for start in range(0, len(order), size):
            rows = order[start:start + size]
            enc = self.tokenizer.batch_encode([seqs[i] for i in rows])
            yield rows, enc.ids, enc.attention_mask

    # ------------------------------------------------------------------ conveniences

    def embed(self, seqs: Sequence[str], layer: int | None = None, pooling: str = "mean",
              batch_size: int | None = None):
        """Embed DNA sequences.

        Args:
            seqs: list of DNA strings (A C G T N, any case).
            layer: 1-based block whose output to use; None = final embeddings (after the
                final LayerNorm, which is also what ``layer=num_layers`` gives).
            pooling: "mean" over nucleotide tokens (no `<cls>`, no padding), "cls", or
                "none" for every token.
            batch_size: sequences per forward pass (default: the engine's).

        Returns:
            float32 [N, E] for "mean"/"cls"; for "none", a list of [T_i, E] arrays whose
            rows match ``tokenizer.encode(seqs[i])`` (row 0 is `<cls>`).
        """
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        key = "embeddings" if layer is None else f"embeddings_{layer}"
        layers = () if layer is None else (layer,)
        results: list = [None] * len(seqs)
        for rows, ids, mask in self._batches(seqs, batch_size):
            hidden = self.forward(ids, mask, layers=layers, logits=False)[key]  # [b, L, E]
            if pooling == "cls":
                pooled = hidden[:, 0]
            elif pooling == "mean":
                nucleotide = mask & ~np.isin(ids, self._special_ids)
                counts = nucleotide.sum(1)
                if (counts == 0).any():
                    bad = int(rows[np.flatnonzero(counts == 0)[0]])
                    raise ValueError(f"sequence {bad} has no nucleotide tokens to average")
                pooled = (hidden * nucleotide[..., None]).sum(1) / counts[:, None]
            for r, i in enumerate(rows):
                results[i] = hidden[r, : mask[r].sum()].copy() if pooling == "none" else pooled[r]
        if pooling == "none":
            return results
        return np.stack(results).astype(np.float32) if results else np.zeros((0, self.config.embed_dim), np.float32)

    def logits(self, seqs: Sequence[str], batch_size: int | None = None) -> list[np.ndarray]:
        """LM-head logits, one float32 [T_i, V] array per sequence (row 0 is `<cls>`)."""
        results: list = [None] * len(seqs)
        for rows, ids, mask in self._batches(seqs, batch_size):
            logits = self.forward(ids, mask)["logits"]
            for r, i in enumerate(rows):
                results[i] = logits[r, : mask[r].sum()].copy()
        return results


def compile(checkpoint, device="cpu", dtype="float32", backend: str = "auto",
            trust_pickle: bool = False, layout: str | None = None, batch_size: int = 8) -> Engine:
    """Turn a checkpoint into an `Engine`.

    Args:
        checkpoint: folder in ntengine's, InstaDeep's HF or the official JAX layout.
        device: "cpu", "cuda", "cuda:1", ...
        dtype: "float32" | "bfloat16" | "float16" (compute dtype; outputs are float32).
        backend: "auto" or one of `BACKENDS`.
        trust_pickle: allow pickle-based weights (pytorch_model.bin, JAX joblib).
        layout: force "ntengine" | "hf" | "jax" instead of detecting it.
        batch_size: default sequences per forward pass in `embed`/`logits`.
    """
    config, state = load_checkpoint(checkpoint, trust_pickle=trust_pickle, layout=layout)
    with torch.device("meta"):
        model = NTModel(config)
    model.load_state_dict(state, strict=True, assign=True)
    return Engine(model, device=device, dtype=dtype, backend=backend, batch_size=batch_size)

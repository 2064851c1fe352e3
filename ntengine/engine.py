"""Engine = model + weights + tokenizer + backend; `compile()` builds one.

The engine owns what users should not have to write: tokenising, sorting sequences
by length so batches carry little padding, batching long lists, pooling, and
returning float32 whatever the compute dtype.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ntengine import cpu
from ntengine.backends import Backend
from ntengine.backends.torch_backend import open_torch
from ntengine.checkpoint import load_model
from ntengine.pooling import pool_mean, sorted_batches
from ntengine.tokenizer import Tokenizer

ARTEFACT_SUFFIXES = {".onnx": "onnxruntime", ".plan": "tensorrt"}
POOLINGS = ("mean", "cls", "none")


class Engine:
    """A compiled NT model ready for inference.

    Attributes:
        config: the model's NTConfig.
        tokenizer: a `Tokenizer` for the model's vocabulary and context length.
        device, dtype: where it runs and its compute dtype (outputs are float32).
        runtime: the `ntengine.backends.Backend` that runs the encoded batches.
    """

    def __init__(self, runtime: Backend, batch_size: int = 8, packed: bool = False):
        if packed and not runtime.packed:
            raise ValueError(f"the {runtime.name} backend runs padded batches only: packed=False")
        self.runtime = runtime
        self.device, self.dtype, self.config = runtime.device, runtime.dtype, runtime.config
        # Tokens computed vs tokens that were padding, over embed()/logits() calls.
        self.stats = {"real_tokens": 0, "padded_tokens": 0}
        self.tokenizer = Tokenizer(version=self.config.version, max_length=self.config.max_positions)
        self.batch_size = batch_size
        self.packed = packed
        # (head config, head module) of a fine-tuned checkpoint: see `predict`.
        self.head = None
        # What loading read and accepted unused (`ntengine.checkpoint.LoadReport`), if loaded here.
        self.load_report = None

    @property
    def backend(self) -> str:
        """"torch" | "fused" | "onnxruntime" | "tensorrt"."""
        return self.runtime.name

    @property
    def model(self):
        """The torch NTModel the runtime runs (None for an exported artefact)."""
        return self.runtime.model

    @property
    def padding_fraction(self) -> float:
        """Share of the tokens computed by embed()/logits() so far that were padding."""
        total = self.stats["real_tokens"] + self.stats["padded_tokens"]
        return self.stats["padded_tokens"] / total if total else 0.0

    def __repr__(self):
        c = self.config
        params = self.load_report.summary() if self.load_report else f"{c.num_parameters / 1e6:.1f}M parameters"
        kernels = f"[cpu kernels: {cpu.isa()}]" if self.backend == "fused" and self.device.type == "cpu" else ""
        return (f"Engine({c.version}, {c.num_layers} layers x {c.embed_dim}, {params}, "
                f"{self.device}, {self.dtype}, {self.backend}{kernels})")

    # ------------------------------------------------------------------ forward

    @torch.inference_mode()
    def forward(self, ids, attention_mask=None, layers: Sequence[int] = (),
                attention_maps: Sequence[tuple[int, int]] = (), logits: bool | None = None, cu_seqlens=None) -> dict:
        """Run one batch: padded rows, or one packed row with `cu_seqlens`.

        Args:
            ids: [B, L] token ids (numpy or torch), `<cls>` first, right-padded; or [1, L]
                holding several sequences end to end when `cu_seqlens` is given.
            attention_mask: [B, L], nonzero at real tokens; default ``ids != pad_id``.
            layers, attention_maps, logits, cu_seqlens: as `NTModel.forward` (layers
                1-based, heads 0-based: the map returned is exactly the head asked for);
                logits=None computes them when the model has an LM head.

        Returns:
            dict of float32 arrays named as the official code names them (``logits``,
            ``embeddings``, ``embeddings_{i}``, ``attention_map_layer_{l}_number_{h}``):
            numpy if `ids` was numpy, torch tensors on the engine's device otherwise.
        """
        as_numpy = not isinstance(ids, torch.Tensor)
        logits = self.config.lm_head if logits is None else logits

        def tensor(a):
            if a is None:
                return None
            t = torch.as_tensor(np.asarray(a) if as_numpy else a)
            if self.device.type == "cuda" and t.device.type == "cpu":  # pinned: an async copy
                return t.pin_memory().to(self.device, non_blocking=True)
            return t.to(self.device)

        ids_t, mask_t, cu_t = tensor(ids).long(), tensor(attention_mask), tensor(cu_seqlens)
        out = self.runtime(ids_t, None if mask_t is None else mask_t.bool(), layers=layers,
                         attention_maps=attention_maps, logits=logits, cu_seqlens=cu_t)
        out = {k: v.float() for k, v in out.items()}
        return {k: v.cpu().numpy() for k, v in out.items()} if as_numpy else out

    def _per_sequence(self, seqs: Sequence[str], batch_size: int | None, key: str, layers=(), progress=False):
        """Yield (index into seqs, ids [T], output `key` rows [T, ...]) for every sequence.

        Sequences are sorted by token count and grouped `batch_size` at a time, so each
        padded batch carries little padding; a packed engine lays each group end to end
        in one row instead and computes no padding at all. `progress` (True, or the
        label to show) reports the sequences done after every batch.
        """
        from ntengine.progress import progress as reporter

        if isinstance(seqs, (str, bytes)):
            raise TypeError("pass a list of sequences, not a single string")
        counts = self.tokenizer.count_tokens(seqs)  # validates: errors name the sequence index
        limit = self.config.max_positions
        if (counts > limit).any():
            i = int(np.flatnonzero(counts > limit)[0])
            raise ValueError(f"sequence {i} has {counts[i]} tokens (including <cls>); this model "
                             f"takes at most {limit} (about {6 * (limit - 1)} bp): cut it into windows")
        bar = reporter(len(seqs), progress if isinstance(progress, str) else key, "sequences", enabled=bool(progress))
        for rows, _ in sorted_batches(counts, batch_size or self.batch_size):
            enc = self.tokenizer.batch_encode([seqs[i] for i in rows])
            real = int(counts[rows].sum())
            if self.packed:  # concatenate the group's sequences: [1, sum of lengths]
                ids = enc.ids[enc.attention_mask]
                cu = np.concatenate([[0], np.cumsum(counts[rows])]).astype(np.int32)
                out = self.forward(ids[None], layers=layers, logits=key == "logits", cu_seqlens=cu)[key][0]
                slices = [(ids[a:b], out[a:b]) for a, b in zip(cu[:-1], cu[1:])]
            else:
                out = self.forward(enc.ids, enc.attention_mask, layers=layers, logits=key == "logits")[key]
                slices = [(enc.ids[r, :counts[i]], out[r, :counts[i]]) for r, i in enumerate(rows)]
            self.stats["real_tokens"] += real
            self.stats["padded_tokens"] += 0 if self.packed else enc.ids.size - real
            for i, (seq_ids, seq_out) in zip(rows, slices):
                yield int(i), seq_ids, seq_out
            bar.update(len(rows))
        bar.close()

    def nucleotide_mask(self, ids: np.ndarray) -> np.ndarray:
        """True at nucleotide tokens (6-mers, single bases, N): what mean pooling averages."""
        return ~np.isin(ids, self.tokenizer.special_ids)

    # ------------------------------------------------------------------ conveniences

    def embed(self, seqs: Sequence[str], layer: int | None = None, pooling: str = "mean",
              batch_size: int | None = None, progress: bool | str = False):
        """Embed DNA sequences.

        Args:
            seqs: list of DNA strings (A C G T N, any case).
            layer: 1-based block whose output to use; None = final embeddings (after the
                final LayerNorm, which is also what ``layer=num_layers`` gives).
            pooling: "mean" over nucleotide tokens (no `<cls>`, no padding), "cls", or
                "none" for every token.
            batch_size: sequences per forward pass (default: the engine's).
            progress: show the sequences done (True, or the label to show; see
                `ntengine.progress`).

        Returns:
            float32 [N, E] for "mean"/"cls"; for "none", a list of [T_i, E] arrays whose
            rows match ``tokenizer.encode(seqs[i])`` (row 0 is `<cls>`).
        """
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        key = "embeddings" if layer is None else f"embeddings_{layer}"
        results: list = [None] * len(seqs)
        for i, ids, rows in self._per_sequence(seqs, batch_size, key, () if layer is None else (layer,), progress):
            if pooling == "none":
                results[i] = rows.copy()
            elif pooling == "cls":
                results[i] = rows[0].copy()
            else:
                nucleotide = self.nucleotide_mask(ids)
                if not nucleotide.any():
                    raise ValueError(f"sequence {i} has no nucleotide tokens to average")
                results[i] = pool_mean(rows, nucleotide)
        if pooling == "none":
            return results
        return np.stack(results).astype(np.float32) if results else np.zeros((0, self.config.embed_dim), np.float32)

    def predict(self, seqs: Sequence[str], batch_size: int | None = None, progress: bool | str = False):
        """Apply a fine-tuned head to DNA sequences: one written by `ntengine train finetune`,
        transformers' EsmForSequenceClassification / EsmForTokenClassification head, or one
        saved with a PEFT adapter.

        Returns float32 class probabilities [N, C] (classification: softmax, column order =
        ``engine.head[0]["labels"]``; multi-label: sigmoid) or values [N, K] (regression);
        for a token-level head, one [T_i, C] array per sequence, rows as ``tokenizer.encode``.
        `progress` as in `embed`.
        """
        if self.head is None:
            raise ValueError("this engine has no fine-tuned head: compile a checkpoint written by "
                             "`ntengine train finetune`, a transformers Esm*Classification checkpoint, "
                             "or a PEFT adapter saved with its classifier")
        config, head = self.head

        def apply(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                out = head(torch.from_numpy(x))
            if config["task"] == "classification":
                out = out.softmax(-1)
            elif config["task"] == "multi_label":
                out = out.sigmoid()
            return out.numpy()

        pooled = self.embed(seqs, layer=config["layer"], pooling=config["pooling"], batch_size=batch_size,
                            progress=progress)
        return [apply(rows) for rows in pooled] if config["pooling"] == "none" else apply(pooled)

    def logits(self, seqs: Sequence[str], batch_size: int | None = None) -> list[np.ndarray]:
        """LM-head logits, one float32 [T_i, V] array per sequence (row 0 is `<cls>`)."""
        results: list = [None] * len(seqs)
        for i, _, rows in self._per_sequence(seqs, batch_size, "logits"):
            results[i] = rows.copy()
        return results


def compile(checkpoint, device="cpu", dtype="float32", backend: str = "auto",
            trust_pickle: bool = False, layout: str | None = None, batch_size: int = 8,
            packed: bool = False, revision: str | None = None, adapter=None, cuda_graphs: bool = False) -> Engine:
    """Turn a checkpoint into an `Engine`.

    Args:
        checkpoint: folder in ntengine's, InstaDeep's HF or the official JAX layout; a hub id
            such as "InstaDeepAI/nucleotide-transformer-v2-50m-multi-species" (resolved
            through huggingface_hub and its cache; HF_HUB_OFFLINE is honoured; no hub code
            is ever run) or its ``models--...`` cache folder; a PEFT adapter folder; or an
            ``.onnx`` file from `ntengine.export.to_onnx` (runs in ONNX Runtime on the CPU) or
            a ``.plan`` from `ntengine.export.to_tensorrt` (runs in TensorRT on `device`, "cuda"
            when left at "cpu"); an artefact's dtype and outputs are its own, `dtype` is ignored.
        device: "cpu", "cuda", "cuda:1", ...
        dtype: "float32" | "bfloat16" | "float16" (compute dtype; outputs are float32).
        backend: "torch" (plain PyTorch, the reference), "fused" (our C++/CUDA kernels,
            QKV merged into one GEMM), "auto" (fused where it can run here, else torch) or
            "onnxruntime" (export to ONNX once, cached under ~/.cache/ntengine, and run it in
            ONNX Runtime on the CPU; dtype "float32" or "float16"; padded batches only) or
            "tensorrt" (build a TensorRT plan once per GPU model, cached likewise, and run it
            on the GPU; dtype "float16" (use it), "bfloat16" or "float32"; padded batches of
            1..8 rows only, the default profile).
        trust_pickle: allow pickle-based weights (pytorch_model.bin, JAX joblib).
        layout: force "ntengine" | "hf" | "jax" instead of detecting it.
        batch_size: default sequences per forward pass in `embed`/`logits`.
        packed: `embed`/`logits` lay each batch's sequences end to end in one row
            (variable-length attention, no padding computed) instead of padding them.
        revision: hub branch, tag or commit of a hub id.
        adapter: a PEFT adapter (LoRA or IA3: folder or hub id) to merge into the weights at
            load, so every backend runs the adapted model at no extra cost.
        cuda_graphs: on CUDA with the torch/fused backends, capture one CUDA graph per input
            shape and replay it (`ntengine.backends.cuda_graphs`): faster small batches.

    The engine's ``load_report`` lists what was read and what was accepted unused.
    """
    artefact = ARTEFACT_SUFFIXES.get(Path(str(checkpoint)).suffix)
    if artefact:
        if backend not in ("auto", artefact):
            raise ValueError(f"a {Path(str(checkpoint)).suffix} file runs on backend {artefact!r}, not {backend!r}")
        if adapter is not None or revision is not None:
            raise ValueError(f"a {Path(str(checkpoint)).suffix} file holds its weights already: adapter/revision "
                             "apply to checkpoints (export the adapted model instead)")
        return Engine(_open_artefact(artefact, checkpoint, device), batch_size=batch_size, packed=packed)
    model, ckpt = load_model(checkpoint, trust_pickle=trust_pickle, layout=layout, revision=revision, adapter=adapter)
    if backend in ARTEFACT_SUFFIXES.values():
        from ntengine.export.cache import cached_artefact

        path = cached_artefact(backend, model, checkpoint, dtype, trust_pickle, revision=revision, adapter=adapter)
        runtime = _open_artefact(backend, path, device)
    else:
        runtime = open_torch(model, device, dtype, backend)
    if cuda_graphs:
        from ntengine.backends.cuda_graphs import CudaGraphBackend

        if runtime.name not in ("torch", "fused"):
            raise ValueError(f"cuda_graphs applies to the torch and fused backends, not {runtime.name}")
        runtime = CudaGraphBackend(runtime)
    engine = Engine(runtime, batch_size=batch_size, packed=packed)
    # The task head and the report live beside the weights, not in an artefact.
    engine.head, engine.load_report = ckpt.head, ckpt.report
    return engine


def _open_artefact(backend: str, path, device) -> Backend:
    if backend == "onnxruntime":
        from ntengine.backends.ort_backend import OrtBackend

        return OrtBackend(path)
    from ntengine.backends.trt_backend import TrtBackend

    return TrtBackend(path, "cuda" if str(device) == "cpu" else device)

"""The contract between `Engine` and what computes: the engine tokenises, batches and
pools; a backend runs one encoded batch and says what it is."""

from __future__ import annotations

from typing import Sequence

import torch

from ntengine.config import NTConfig


class Backend:
    """Runs encoded batches of one model.

    Attributes:
        name: "torch" | "fused" | "onnxruntime" | "tensorrt".
        device, dtype: where it runs and its compute dtype (outputs are float32).
        config: the model's NTConfig.
        packed: whether it runs packed rows (`cu_seqlens`) as well as padded batches.
        model: the torch NTModel it runs (torch backends), for export and inspection; else None.
    """

    name: str
    device: torch.device
    dtype: torch.dtype
    config: NTConfig
    packed: bool = False
    model = None

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 layers: Sequence[int] = (), attention_maps: Sequence[tuple[int, int]] = (), logits: bool = True,
                 cu_seqlens: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """NTModel.forward's contract: {output name: tensor} on `device`."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """sha256 of what it computes with (weights + config, or the artefact file): a resumed
        job refuses to mix outputs of two different models."""
        raise NotImplementedError

"""A sequence-level head on the NT encoder, for fine-tuning and probing; stored beside a
checkpoint by `ntengine.checkpoint.heads.save_head`."""

from __future__ import annotations

import torch
from torch import nn

from ntengine.checkpoint.heads import POOLINGS, TASKS
from ntengine.model import NTModel
from ntengine.pooling import pool_mean


class SequenceModel(nn.Module):
    """NTModel -> pooled embedding ("mean" over nucleotide tokens, or "cls") at `layer`
    (None: final embeddings) -> linear head -> class logits or regression values."""

    def __init__(self, backbone: NTModel, num_outputs: int, special_ids, task: str = "classification",
                 pooling: str = "mean", layer: int | None = None):
        super().__init__()
        if task not in TASKS or pooling not in POOLINGS:
            raise ValueError(f"task must be one of {TASKS} and pooling one of {POOLINGS}")
        self.backbone, self.task, self.pooling, self.layer = backbone, task, pooling, layer
        self.head = nn.Linear(backbone.config.embed_dim, num_outputs)
        self.register_buffer("special_ids", torch.as_tensor(special_ids), persistent=False)

    def pooled(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        key = "embeddings" if self.layer is None else f"embeddings_{self.layer}"
        emb = self.backbone(ids, mask, layers=() if self.layer is None else (self.layer,), logits=False)[key]
        if self.pooling == "cls":
            return emb[:, 0]
        return pool_mean(emb, mask.bool() & ~torch.isin(ids, self.special_ids))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(ids, mask).to(self.head.weight.dtype))

    def head_config(self, labels=None) -> dict:
        return {"task": self.task, "pooling": self.pooling, "layer": self.layer,
                "num_outputs": self.head.out_features, "labels": labels}

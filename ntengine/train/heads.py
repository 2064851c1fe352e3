"""A sequence-level head on the NT encoder, and how it is stored beside a checkpoint.

A fine-tuned checkpoint is a plain ntengine checkpoint folder plus ``head.json`` (task,
pooling, layer, labels) and ``head.safetensors`` (one linear layer). `ntengine.compile`
loads the head when it is there and `Engine.predict(seqs)` applies it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ntengine.model import NTModel

HEAD_CONFIG, HEAD_WEIGHTS = "head.json", "head.safetensors"
TASKS, POOLINGS = ("classification", "regression"), ("mean", "cls")


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
        weight = (mask.bool() & ~torch.isin(ids, self.special_ids)).to(emb.dtype)[..., None]
        return (emb * weight).sum(1) / weight.sum(1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(ids, mask).to(self.head.weight.dtype))

    def head_config(self, labels=None) -> dict:
        return {"task": self.task, "pooling": self.pooling, "layer": self.layer,
                "num_outputs": self.head.out_features, "labels": labels}


def save_head(folder, config: dict, head: nn.Linear) -> None:
    from safetensors.torch import save_file

    folder = Path(folder)
    save_file({k: v.detach().float().cpu().contiguous() for k, v in head.state_dict().items()},
              str(folder / HEAD_WEIGHTS))
    (folder / HEAD_CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def load_head(folder) -> tuple[dict, nn.Linear] | None:
    """(head config, float32 linear head) stored in a checkpoint folder, or None."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder.is_dir() and (folder / HEAD_CONFIG).is_file()):
        return None
    config = json.loads((folder / HEAD_CONFIG).read_text())
    state = load_file(str(folder / HEAD_WEIGHTS))
    out, width = state["weight"].shape
    head = nn.Linear(width, out)
    head.load_state_dict(state)
    if out != config["num_outputs"] or config["task"] not in TASKS or config["pooling"] not in POOLINGS:
        raise ValueError(f"{folder}: {HEAD_CONFIG} does not match {HEAD_WEIGHTS}")
    return config, head.eval()

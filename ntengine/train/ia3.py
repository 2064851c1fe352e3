"""IA3 (Liu et al. 2022) as the NT paper fine-tunes: learned vectors that rescale the
attention keys, the values and the FFN's intermediate activations; everything else
frozen. Implemented natively with torch parametrizations (PEFT's IA3 wraps nn.Linear
calls, which our model does not make: it passes modules to `ops.linear`).

Rescaling an output of `k_proj` is rescaling the rows of its weight and its bias;
rescaling the FFN intermediate activations is rescaling the columns of `fc2`. The
parametrization computes exactly that, so `merge_ia3` folds the vectors into the
weights and the merged model is a plain NTModel: the fused engine, ONNX and TensorRT
run it with zero overhead.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ntengine.model import NTModel


class _Rows(nn.Module):
    """weight [out, in] -> diag(scale) weight; the scale starts at 1 (the identity)."""

    def __init__(self, n: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n))

    def forward(self, weight):
        return weight * self.scale.to(weight.dtype)[:, None]


class _Bias(nn.Module):
    """bias [out] -> scale * bias, with the scale of the weight's _Rows (shared)."""

    def __init__(self, rows: _Rows):
        super().__init__()
        self.rows = rows

    def forward(self, bias):
        return bias * self.rows.scale.to(bias.dtype)


class _Columns(nn.Module):
    """weight [out, in] -> weight diag(scale): scales the layer's input features."""

    def __init__(self, n: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n))

    def forward(self, weight):
        return weight * self.scale.to(weight.dtype)[None, :]


def add_ia3(model: NTModel) -> list[nn.Parameter]:
    """Freeze `model` and add IA3 vectors (l_k, l_v [E] and l_ff [F] per block); returns them."""
    if model.layers[0].attn.qkv_proj is not None:
        raise ValueError("add IA3 before merging q/k/v (use a torch-backend model, not a fused engine's)")
    model.requires_grad_(False)
    params = []
    for block in model.layers:
        for proj in (block.attn.k_proj, block.attn.v_proj):
            rows = _Rows(proj.out_features)
            parametrize.register_parametrization(proj, "weight", rows)
            parametrize.register_parametrization(proj, "bias", _Bias(rows))
            params.append(rows.scale)
        cols = _Columns(block.ffn.fc2.in_features)
        parametrize.register_parametrization(block.ffn.fc2, "weight", cols)
        params.append(cols.scale)
    return params


@torch.no_grad()
def merge_ia3(model: NTModel) -> NTModel:
    """Fold the IA3 vectors into the weights and drop the parametrizations (in place)."""
    for block in model.layers:
        for module in (block.attn.k_proj, block.attn.v_proj, block.ffn.fc2):
            for name in ("weight", "bias"):
                if parametrize.is_parametrized(module, name):
                    parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model

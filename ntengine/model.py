"""The one PyTorch definition of Nucleotide Transformer v1 and v2.

This module is the reference: the engine, training and export all run it. It
follows the official JAX/Haiku implementation (nucleotide_transformer/model.py):

    tokens -> embed * embed_scale -> [v1: token dropout, + learned positions]
           -> [emb_layer_norm_before] -> N x pre-LN block -> final LayerNorm
           -> "embeddings" -> RoBERTa LM head -> "logits"

    block(x) = x + MHA(LN(x));  x + FFN(LN(x))
    v1 FFN   = fc2(gelu(fc1(x)))                      (biases)
    v2 FFN   = fc2(silu(a) * b), [a, b] = fc1(x)      (no biases)
    v2 MHA   = rotary (rotate-half, base 10000 or rescaled) on q and k

Shapes: B batch, L tokens, E embed_dim, H heads, D head_dim, V vocabulary.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ntengine.config import NTConfig


def rotary_inv_freq(config: NTConfig) -> torch.Tensor:
    """Rotary inverse frequencies [D/2], float32, as the official code computes them."""
    d = config.head_dim
    exponent = torch.arange(0, d, 2, dtype=torch.float32) / d
    return 1.0 / (config.rotary_base**exponent)


def rotary_tables(config: NTConfig, length: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [L, D] for positions 0..L-1 (the `<cls>` is position 0)."""
    inv_freq = rotary_inv_freq(config).to(device)
    freqs = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat([freqs, freqs], dim=-1)  # rotate-half pairs j with j + D/2
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, L, D] by the tables [L, D] (rotate-half convention)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Attention(nn.Module):
    """Multi-head self-attention with q/k/v/out biases and a key-padding mask."""

    def __init__(self, config: NTConfig):
        super().__init__()
        e = config.embed_dim
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(e, e), nn.Linear(e, e), nn.Linear(e, e)
        self.out_proj = nn.Linear(e, e)

    def forward(self, x, key_mask, rope=None, need_probs=False):
        """x [B, L, E], key_mask [B, L] bool (True = real token), rope (cos, sin) or None.

        Returns (out [B, L, E], probs [B, H, L, L] or None).
        """
        b, length, _ = x.shape

        def heads(t):  # [B, L, E] -> [B, H, L, D]
            return t.view(b, length, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        mask = key_mask[:, None, None, :]  # [B, 1, 1, L]: padded keys get no weight
        probs = None
        if need_probs:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            probs = scores.softmax(dim=-1)
            out = probs @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(b, length, -1)  # [B, L, E]
        return self.out_proj(out), probs


class FeedForward(nn.Module):
    """v1: fc2(gelu(fc1 x)) with biases; v2: fc2(silu(a) * b), [a, b] = fc1 x, no biases."""

    def __init__(self, config: NTConfig):
        super().__init__()
        e, f = config.embed_dim, config.ffn_dim
        self.glu = config.rotary
        self.fc1 = nn.Linear(e, 2 * f if self.glu else f, bias=not self.glu)
        self.fc2 = nn.Linear(f, e, bias=not self.glu)

    def forward(self, x):
        h = self.fc1(x)
        if self.glu:
            a, b = h.chunk(2, dim=-1)  # rows [0, F) go through SiLU, [F, 2F) are linear
            h = F.silu(a) * b
        else:
            h = F.gelu(h)  # exact (erf) GELU, as the official "gelu-no-approx"
        return self.fc2(h)


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, config: NTConfig):
        super().__init__()
        eps = config.layer_norm_eps
        self.attn_norm = nn.LayerNorm(config.embed_dim, eps=eps)
        self.attn = Attention(config)
        self.ffn_norm = nn.LayerNorm(config.embed_dim, eps=eps)
        self.ffn = FeedForward(config)

    def forward(self, x, key_mask, rope=None, need_probs=False):
        attn_out, probs = self.attn(self.attn_norm(x), key_mask, rope, need_probs)
        x = x + attn_out
        x = x + self.ffn(self.ffn_norm(x))
        return x, probs


class LMHead(nn.Module):
    """RoBERTa/ESM head: dense -> exact GELU -> LayerNorm -> decoder (with bias)."""

    def __init__(self, config: NTConfig):
        super().__init__()
        e = config.embed_dim
        self.dense = nn.Linear(e, e)
        self.norm = nn.LayerNorm(e, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(e, config.vocab_size)

    def forward(self, x):
        return self.decoder(self.norm(F.gelu(self.dense(x))))


class NTModel(nn.Module):
    """Nucleotide Transformer v1/v2 encoder with its masked-LM head."""

    def __init__(self, config: NTConfig):
        super().__init__()
        self.config = config
        e = config.embed_dim
        self.embed_tokens = nn.Embedding(config.vocab_size, e)
        if not config.rotary:
            # ESM learned positions: row pad_id + 1 + t for the t-th real token.
            self.embed_positions = nn.Embedding(config.max_positions + 2, e)
        if config.emb_layer_norm_before:
            self.emb_layer_norm_before = nn.LayerNorm(e, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(e, eps=config.layer_norm_eps)
        self.lm_head = LMHead(config)

    def embed(self, input_ids: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """Token (+ position) embeddings [B, L, E] before the first block."""
        cfg = self.config
        x = self.embed_tokens(input_ids) * cfg.embed_scale
        if cfg.token_dropout:
            # The official code applies ESM token dropout at inference too: <mask> rows are
            # zeroed and every row is rescaled by (1 - train ratio) / (1 - observed ratio).
            is_mask = input_ids == cfg.mask_id
            x = x.masked_fill(is_mask[..., None], 0.0)
            observed = (is_mask & key_mask).sum(-1) / key_mask.sum(-1)
            train_ratio = cfg.masking_ratio * cfg.masking_prob
            x = x * ((1 - train_ratio) / (1 - observed)).to(x.dtype)[:, None, None]
        if not cfg.rotary:
            positions = torch.cumsum(key_mask, dim=1) * key_mask + cfg.pad_id
            x = x + self.embed_positions(positions)
        if cfg.emb_layer_norm_before:
            x = self.emb_layer_norm_before(x)
        return x

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        layers: Iterable[int] = (),
        attention_maps: Sequence[tuple[int, int]] = (),
        logits: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Run the model.

        Args:
            input_ids: [B, L] integer token ids, `<cls>` first, right-padded with pad_id.
            attention_mask: [B, L], nonzero for real tokens; default ``input_ids != pad_id``.
            layers: 1-based block indices whose outputs to return as ``embeddings_{i}``.
                Blocks before the last give the raw residual stream; the last block's
                output is returned after the final LayerNorm, as the official code does.
            attention_maps: (layer, head) pairs, layer 1-based and head 0-based; each adds
                ``attention_map_layer_{layer}_number_{head}``: softmax probabilities
                [B, L(query), L(key)] of exactly that head. (The official code returns
                head + 1 under this name, an off-by-one we do not reproduce.)
            logits: compute the LM head.

        Returns:
            dict with ``embeddings`` [B, L, E] (after the final LayerNorm), ``logits``
            [B, L, V] if asked, and the requested ``embeddings_{i}`` and attention maps.
            Values at padding positions are not meaningful.
        """
        cfg = self.config
        _, length = input_ids.shape
        if length > cfg.max_positions:
            raise ValueError(
                f"input has {length} tokens but this model takes at most {cfg.max_positions}"
            )
        key_mask = input_ids != cfg.pad_id if attention_mask is None else attention_mask.bool()
        layers = set(layers)
        for i in layers:
            if not 1 <= i <= cfg.num_layers:
                raise ValueError(f"layer {i} out of range 1..{cfg.num_layers}")
        for layer, head in attention_maps:
            if not (1 <= layer <= cfg.num_layers and 0 <= head < cfg.num_heads):
                raise ValueError(
                    f"attention map ({layer}, {head}) out of range: layers 1..{cfg.num_layers}, "
                    f"heads 0..{cfg.num_heads - 1}"
                )

        x = self.embed(input_ids, key_mask)
        rope = rotary_tables(cfg, length, x.device, x.dtype) if cfg.rotary else None
        out: dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.layers, start=1):
            heads = [h for layer, h in attention_maps if layer == i]
            x, probs = block(x, key_mask, rope, need_probs=bool(heads))
            for h in heads:
                out[f"attention_map_layer_{i}_number_{h}"] = probs[:, h]
            if i in layers and i < cfg.num_layers:
                out[f"embeddings_{i}"] = x
        x = self.final_norm(x)
        out["embeddings"] = x
        if cfg.num_layers in layers:
            out[f"embeddings_{cfg.num_layers}"] = x
        if logits:
            out["logits"] = self.lm_head(x)
        return out


@torch.no_grad()
def init_random_weights(model: NTModel, seed: int = 0) -> NTModel:
    """Fill `model` with random weights, deterministically from `seed`.

    Same scheme as the reference fixtures, so activations stay well scaled at any
    depth: linear weights N(0, 1/fan_in), biases N(0, 0.1^2), LayerNorm scales
    1 + N(0, 0.1^2) and offsets N(0, 0.1^2), token embeddings N(0, 1), learned
    positions N(0, 0.5^2).
    """
    gen = torch.Generator().manual_seed(seed)

    def normal(t, std, mean=0.0):
        t.copy_(torch.randn(t.shape, generator=gen) * std + mean)

    for module in model.modules():
        if isinstance(module, nn.Linear):
            normal(module.weight, module.in_features**-0.5)
            if module.bias is not None:
                normal(module.bias, 0.1)
        elif isinstance(module, nn.LayerNorm):
            normal(module.weight, 0.1, mean=1.0)
            normal(module.bias, 0.1)
    normal(model.embed_tokens.weight, 1.0)
    if hasattr(model, "embed_positions"):
        normal(model.embed_positions.weight, 0.5)
    return model

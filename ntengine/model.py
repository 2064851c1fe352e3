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

The fusable steps (QKV split + rotary, attention, SwiGLU, residual add + LayerNorm)
go through `ntengine.ops`, which runs plain-torch references unless this instance was
switched to the fused kernels (`NTModel.use_fused_kernels`, what the fused engine does):
one definition, two execution paths.

Shapes: B batch, L tokens, E embed_dim, H heads, D head_dim, V vocabulary.
"""

from __future__ import annotations

import functools

from typing import Iterable, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from ntengine import ops
from ntengine.config import NTConfig


def rotary_inv_freq(config: NTConfig) -> torch.Tensor:
    """Rotary inverse frequencies [D/2], float32, as the official code computes them."""
    d = config.head_dim
    exponent = torch.arange(0, d, 2, dtype=torch.float32) / d
    return 1.0 / (config.rotary_base**exponent)


@functools.cache
def _inv_freq_on(config: NTConfig, device: torch.device) -> torch.Tensor:
    # Kept per device: a copy from host memory cannot run while a CUDA graph is captured.
    return rotary_inv_freq(config).to(device)


def rotary_tables(config: NTConfig, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [L, D/2] (fp32) of positions 0..L-1 (the `<cls>` is position 0)."""
    device = torch.device(device)
    # Not cached while tracing: the cache would keep the tracer's fake tensor.
    inv_freq = rotary_inv_freq(config).to(device) if torch.compiler.is_compiling() else _inv_freq_on(config, device)
    freqs = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    return freqs.cos(), freqs.sin()


def checking_data(t: torch.Tensor) -> bool:
    """Whether checks that read `t`'s values may run: not while torch.compile/export traces
    (a branch on data breaks them), nor while a CUDA graph is captured (no host syncs)."""
    return not torch.compiler.is_compiling() and not (t.is_cuda and torch.cuda.is_current_stream_capturing())


def key_mask_of(input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor], pad_id: int) -> torch.Tensor:
    """The bool key mask [B, L]: attention_mask where given, else every non-padding token."""
    return input_ids != pad_id if attention_mask is None else attention_mask.bool()


def right_padding_lengths(key_mask: torch.Tensor) -> torch.Tensor:
    """Real tokens per row [B] of a bool key mask [B, L]; ValueError unless every row marks
    a prefix (right padding). The check is a host sync, skipped where `checking_data` says."""
    lengths = key_mask.sum(dim=1)
    t = torch.arange(key_mask.shape[1], device=key_mask.device)
    if checking_data(key_mask) and not torch.equal(key_mask, t[None, :] < lengths[:, None]):
        raise ValueError("attention_mask must mark a prefix of each row (right padding)")
    return lengths


class Attention(nn.Module):
    """Multi-head self-attention with q/k/v/out biases over right-padded or packed rows."""
    fused = False  # this instance's ops run our kernels: see NTModel.use_fused_kernels

    def __init__(self, config: NTConfig):
        super().__init__()
        e = config.embed_dim
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(e, e), nn.Linear(e, e), nn.Linear(e, e)
        self.out_proj = nn.Linear(e, e)
        self.qkv_proj: nn.Linear | None = None

    @torch.no_grad()
    def merge_qkv(self) -> None:
        """Replace q/k/v_proj by one [3E, E] projection: one GEMM instead of three.

        The fused backend does this at load time; the parameters then live in `qkv_proj`.
        """
        if self.qkv_proj is not None:
            return
        projs = (self.q_proj, self.k_proj, self.v_proj)
        e = self.out_proj.in_features
        merged = nn.Linear(e, 3 * e, device=self.out_proj.weight.device, dtype=self.out_proj.weight.dtype)
        merged.weight.copy_(torch.cat([p.weight for p in projs]))
        merged.bias.copy_(torch.cat([p.bias for p in projs]))
        self.qkv_proj = merged
        del self.q_proj, self.k_proj, self.v_proj

    def forward(self, x, packing: "Packing", rope=None, need_probs=False):
        """x [B, L, E], packing (see `Packing`), rope (cos, sin) [L, D/2] tables or None.

        Returns (out [B, L, E], probs [B, H, L, L] or None).
        """
        if self.qkv_proj is not None:
            qkv = ops.linear(x, self.qkv_proj, self.fused)
        else:
            qkv = torch.cat([ops.linear(x, p, self.fused) for p in (self.q_proj, self.k_proj, self.v_proj)], dim=-1)
        cos, sin = rope if rope is not None else (None, None)
        # 1/sqrt(D) is folded into q (the official code divides the logits: same result).
        positions = packing.positions if packing.cu_seqlens is not None else None  # padded: 0..L-1
        q, k, v = ops.qkv_rope(qkv, self.num_heads, self.head_dim**-0.5, cos, sin, positions,
                               fused=self.fused)  # [B, H, L, D]
        if not need_probs:
            out = ops.attention(q, k, v, packing.lengths, packing.cu_seqlens, fused=self.fused,
                                max_seqlen=packing.max_seqlen)
            return ops.linear(out, self.out_proj, self.fused), None
        b, _, length, _ = q.shape
        key_mask = packing.key_mask  # [B, L]; padded batches only (the model checks)
        scores = (q @ k.transpose(-1, -2)).masked_fill(~key_mask[:, None, None, :], torch.finfo(q.dtype).min)
        probs = scores.softmax(dim=-1)
        out = (probs @ v).transpose(1, 2).reshape(b, length, -1)  # [B, L, E]
        return ops.linear(out, self.out_proj, self.fused), probs


class FeedForward(nn.Module):
    """v1: fc2(gelu(fc1 x)) with biases; v2: fc2(silu(a) * b), [a, b] = fc1 x, no biases."""
    fused = False

    def __init__(self, config: NTConfig):
        super().__init__()
        e, f = config.embed_dim, config.ffn_dim
        self.glu = config.rotary
        self.fc1 = nn.Linear(e, 2 * f if self.glu else f, bias=not self.glu)
        self.fc2 = nn.Linear(f, e, bias=not self.glu)

    def forward(self, x):
        return ops.row_tiled(self._rows, x, self.fc1.out_features, self.fused)

    def _rows(self, x):
        h = ops.linear(x, self.fc1, self.fused)
        # GLU: rows [0, F) of fc1 go through SiLU, [F, 2F) are linear. v1: exact (erf) GELU.
        return ops.linear(ops.swiglu(h, self.fused) if self.glu else F.gelu(h), self.fc2, self.fused)


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""
    fused = False

    def __init__(self, config: NTConfig):
        super().__init__()
        eps = config.layer_norm_eps
        self.attn_norm = nn.LayerNorm(config.embed_dim, eps=eps)
        self.attn = Attention(config)
        self.ffn_norm = nn.LayerNorm(config.embed_dim, eps=eps)
        self.ffn = FeedForward(config)

    def forward(self, x, h, next_norm: nn.LayerNorm, packing: Packing, rope=None, need_probs=False):
        """One block: x + attn(h); then + ffn(ffn_norm(.)).

        Each residual add is fused with the LayerNorm that follows it, so the block takes
        h = attn_norm(x) and returns (x, next_norm(x), probs), where next_norm is the next
        block's attn_norm or the final LayerNorm.
        """
        attn_out, probs = self.attn(h, packing, rope, need_probs)
        x, h = ops.add_layernorm(x, attn_out, self.ffn_norm, self.fused)
        x, h = ops.add_layernorm(x, self.ffn(h), next_norm, self.fused)
        return x, h, probs


class LMHead(nn.Module):
    """RoBERTa/ESM head: dense -> exact GELU -> LayerNorm -> decoder (with bias)."""
    fused = False

    def __init__(self, config: NTConfig):
        super().__init__()
        e = config.embed_dim
        self.dense = nn.Linear(e, e)
        self.norm = nn.LayerNorm(e, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(e, config.vocab_size)

    def forward(self, x):
        return ops.linear(self.norm(F.gelu(ops.linear(x, self.dense, self.fused))), self.decoder, self.fused)


class Packing(NamedTuple):
    """How the tokens of a [B, L] input form sequences.

    Padded: B rows, each one sequence, right-padded (`lengths`). Packed: one row (B == 1)
    of sequences laid end to end, sequence s at [cu_seqlens[s], cu_seqlens[s + 1]).
    """

    key_mask: torch.Tensor  # [B, L] bool, real tokens
    positions: torch.Tensor  # [B, L] long, position of each token in its sequence
    segments: torch.Tensor  # [B, L] long, which sequence each token belongs to
    lengths: Optional[torch.Tensor]  # [B] (padded) or None
    cu_seqlens: Optional[torch.Tensor]  # [S + 1] (packed) or None
    max_seqlen: int  # the longest sequence's tokens (padded: L)

    @staticmethod
    def padded(key_mask: torch.Tensor) -> "Packing":
        b, length = key_mask.shape
        t = torch.arange(length, device=key_mask.device)
        lengths = right_padding_lengths(key_mask)
        rows = torch.arange(b, device=key_mask.device)[:, None].expand(b, length)
        return Packing(key_mask, t.expand(b, length), rows, lengths, None, length)

    @staticmethod
    def packed(cu_seqlens: torch.Tensor, length: int) -> "Packing":
        cu = cu_seqlens.to(torch.long)
        sizes = cu[1:] - cu[:-1]
        ok = cu.dim() == 1 and len(cu) >= 2
        if ok:  # one host sync for the checks and the longest segment, a host int for the varlen kernels
            valid = (cu[0] == 0) & (sizes > 0).all() & (cu[-1] <= length)
            ok, longest = torch.stack([valid.long(), sizes.max()]).tolist()
        if not ok:
            raise ValueError(f"cu_seqlens must rise strictly from 0 to at most {length}, got {cu.tolist()}")
        t = torch.arange(length, device=cu.device)
        segments = torch.bucketize(t, cu[1:], right=True).clamp(max=len(cu) - 2)
        return Packing((t < cu[-1])[None], (t - cu[segments])[None], segments[None], None, cu, longest)


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
        self.lm_head = LMHead(config) if config.lm_head else None
        # Training: recompute each block's activations in the backward pass (memory for time).
        self.gradient_checkpointing = False

    @torch.no_grad()
    def use_fused_kernels(self) -> "NTModel":
        """Run this instance through the fused kernels from now on, QKV merged into one GEMM.

        Per instance: another NTModel (a reference engine in another thread) is unaffected.
        """
        for block in self.layers:
            block.attn.merge_qkv()
        for module in self.modules():
            if isinstance(module, (Attention, FeedForward, Block, LMHead)):
                module.fused = True
        return self

    def embed(self, input_ids: torch.Tensor, packing: Packing) -> torch.Tensor:
        """Token (+ position) embeddings [B, L, E] before the first block."""
        cfg = self.config
        x = self.embed_tokens(input_ids) * cfg.embed_scale
        if cfg.token_dropout:
            # The official code applies ESM token dropout at inference too: <mask> rows are
            # zeroed and each sequence is rescaled by (1 - train ratio) / (1 - observed ratio).
            is_mask = input_ids == cfg.mask_id
            x = x.masked_fill(is_mask[..., None], 0.0)
            seg, real = packing.segments.flatten(), packing.key_mask.flatten().float()
            # Sequence count from shapes, not data (int(seg.max()) would stop torch.export).
            n_seq = input_ids.shape[0] if packing.cu_seqlens is None else packing.cu_seqlens.numel() - 1
            n_real = torch.zeros(n_seq, device=x.device).index_add_(0, seg, real)
            n_mask = torch.zeros_like(n_real).index_add_(0, seg, is_mask.flatten() * real)
            observed = (n_mask / n_real)[packing.segments]  # [B, L]
            train_ratio = cfg.masking_ratio * cfg.masking_prob
            x = x * ((1 - train_ratio) / (1 - observed)).to(x.dtype)[..., None]
        if not cfg.rotary:  # ESM rows: pad_id + 1 + position; padding reads row pad_id
            rows = torch.where(packing.key_mask, packing.positions + cfg.pad_id + 1, cfg.pad_id)
            x = x + self.embed_positions(rows)
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
        cu_seqlens: torch.Tensor | None = None,
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
            cu_seqlens: int [S + 1]: run a packed batch instead: input_ids is one row [1, L]
                holding S sequences (each `<cls>` first) end to end, no padding between
                them; positions restart and attention stays within each sequence.

        Returns:
            dict with ``embeddings`` [B, L, E] (after the final LayerNorm), ``logits``
            [B, L, V] if asked, and the requested ``embeddings_{i}`` and attention maps.
            Values at padding positions are not meaningful.
        """
        cfg = self.config
        _, length = input_ids.shape
        if logits and self.lm_head is None:
            raise ValueError("this model has no LM head (saved without one, e.g. a fine-tuned classifier): "
                             "ask for embeddings only (logits=False)")
        if cu_seqlens is not None:
            if input_ids.shape[0] != 1 or attention_maps:
                raise ValueError("packed batches take one row of ids and return no attention maps")
            packing = Packing.packed(cu_seqlens.to(input_ids.device), length)
        else:
            packing = Packing.padded(key_mask_of(input_ids, attention_mask, cfg.pad_id))
        if packing.max_seqlen > cfg.max_positions:
            raise ValueError(f"input has {packing.max_seqlen} tokens but this model takes at most {cfg.max_positions}")
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

        x = self.embed(input_ids, packing)
        rope = rotary_tables(cfg, length, x.device) if cfg.rotary else None
        out: dict[str, torch.Tensor] = {}
        h = self.layers[0].attn_norm(x)
        for i, block in enumerate(self.layers, start=1):
            next_norm = self.layers[i].attn_norm if i < cfg.num_layers else self.final_norm
            heads = [hd for layer, hd in attention_maps if layer == i]
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x, h, probs = torch.utils.checkpoint.checkpoint(block, x, h, next_norm, packing, rope, bool(heads),
                                                                use_reentrant=False)
            else:
                x, h, probs = block(x, h, next_norm, packing, rope, need_probs=bool(heads))
            for hd in heads:
                out[f"attention_map_layer_{i}_number_{hd}"] = probs[:, hd]
            if i in layers and i < cfg.num_layers:
                out[f"embeddings_{i}"] = x
        x = h  # after the final LayerNorm
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

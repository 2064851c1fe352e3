"""Packed attention without a [T, T] mask: the variable-length kernels on CUDA.

A packed row holds S sequences end to end (`cu_seqlens`). The reference, `ops.attention_ref`,
runs it through SDPA with a dense block-diagonal mask: quadratic in the whole row's T tokens
(16 sequences of 1,000 tokens: a 16,000² mask, 16× the work of the sequences alone). Here:

- `kernel()`: torch's `torch.nn.attention.varlen.varlen_attn` (torch >= 2.10), else
  flash-attention's `flash_attn_varlen_func` when installed. Both take q, k, v [T, H, D] and
  int32 cu_seqlens, fp16/bf16 and head sizes that are multiples of 8 up to 256 (`takes`).
- `segments_attention`: everything else (fp32, odd head sizes, no kernel, any device): each
  segment is laid into its own right-padded row and run through SDPA with a key mask, S·Lmax²
  work instead of T².

Both return what the reference returns: [1, L, H·D] with rows past cu_seqlens[-1] zero.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F

HALF = (torch.float16, torch.bfloat16)


class VarlenKernel(NamedTuple):
    name: str
    # (q, k, v [T, H, D] with q pre-scaled, cu_seqlens int32 [S + 1], longest segment) -> [T, H, D].
    # Rows past cu_seqlens[-1] come back unspecified (the kernels leave them unwritten).
    run: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]


def _torch_kernel(varlen_attn) -> VarlenKernel:
    if "scale" in inspect.signature(varlen_attn).parameters:  # torch >= 2.11
        def run(q, k, v, cu, longest):
            return varlen_attn(q, k, v, cu, cu, longest, longest, scale=1.0)
    else:  # torch 2.10 always divides by sqrt(D): undo the model's pre-scaling of q
        def run(q, k, v, cu, longest):
            return varlen_attn(q * q.shape[-1] ** 0.5, k, v, cu, cu, longest, longest)
    return VarlenKernel("torch.nn.attention.varlen.varlen_attn", run)


def _flash_attn_kernel(flash_attn_varlen_func) -> VarlenKernel:
    def run(q, k, v, cu, longest):
        return flash_attn_varlen_func(q, k, v, cu, cu, longest, longest, softmax_scale=1.0)
    return VarlenKernel("flash_attn.flash_attn_varlen_func", run)


@functools.cache
def kernel() -> Optional[VarlenKernel]:
    """The variable-length kernel this install has (torch's first), or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
        return _torch_kernel(varlen_attn)
    except ImportError:
        pass
    try:
        from flash_attn import flash_attn_varlen_func
        return _flash_attn_kernel(flash_attn_varlen_func)
    except ImportError:
        return None


def takes(q: torch.Tensor) -> bool:
    """Whether the flash varlen kernels take q: CUDA, fp16/bf16, D a multiple of 8, D <= 256."""
    d = q.shape[-1]
    return q.is_cuda and q.dtype in HALF and d % 8 == 0 and d <= 256


def packed_attention(q, k, v, cu_seqlens: torch.Tensor, max_seqlen: Optional[int] = None,
                     impl: Optional[VarlenKernel] = None) -> torch.Tensor:
    """Attention of one packed row, q, k, v [1, H, L, D] (q pre-scaled) -> [1, L, H·D].

    max_seqlen: the longest segment (computed, with a device sync, when not given).
    `impl` runs when given (tests pass a stand-in on the CPU); else `kernel()` where it
    `takes` q, else `segments_attention`.
    """
    if max_seqlen is None:
        max_seqlen = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    if impl is None:
        impl = kernel() if takes(q) else None
        if impl is None:
            return segments_attention(q, k, v, cu_seqlens, max_seqlen)
    _, h, length, d = q.shape
    rows = [t[0].transpose(0, 1) for t in (q, k, v)]  # [L, H, D]
    out = impl.run(*rows, cu_seqlens.to(torch.int32), max_seqlen).reshape(length, h * d)
    real = torch.arange(length, device=q.device) < cu_seqlens[-1]
    return torch.where(real[:, None], out, 0)[None]  # where, not *: unwritten rows may hold NaN


def segments_attention(q, k, v, cu_seqlens: torch.Tensor, max_seqlen: int) -> torch.Tensor:
    """`packed_attention` through SDPA, one right-padded row per segment: [S, H, Lmax, D]."""
    _, h, length, d = q.shape
    cu = cu_seqlens.to(device=q.device, dtype=torch.long)
    offsets = torch.arange(max_seqlen, device=q.device)
    valid = offsets[None, :] < (cu[1:] - cu[:-1])[:, None]  # [S, Lmax]
    index = (cu[:-1, None] + offsets[None, :]).clamp(max=length - 1)  # padding reads any real row
    q, k, v = (t[0][:, index].transpose(0, 1) for t in (q, k, v))  # [S, H, Lmax, D]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :], scale=1.0)
    full = out.new_zeros(length, h * d)
    full[index[valid]] = out.transpose(1, 2)[valid].reshape(-1, h * d)
    return full[None]

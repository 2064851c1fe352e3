"""The seam between the model and the compiled kernels.

Each fusable op has three pieces sharing one name:

* ``<op>_ref``: plain PyTorch, fp32 arithmetic inside; the reference the fixture tests
  pin down, and what training and ONNX export run.
* ``ntengine::<op>``: a ``torch.library`` custom op whose CPU kernel is in ``ntengine._C``
  and CUDA kernel in ``ntengine._C_cuda``, with a fake (meta) implementation so eager,
  ``torch.compile`` and ``torch.export`` all see one op.
* ``<op>``: what ``model.py`` calls; runs the kernel when the call says ``fused=True``
  (the model instance's route) or inside ``use("fused")``, the reference otherwise or
  inside ``use("torch")``. Fused on a device without a built kernel raises and names the
  missing build: it never falls back silently. (Attention on CUDA is torch's: SDPA for
  padded rows on both routes, and on the fused route the variable-length flash kernels for
  packed rows, `ntengine.varlen`.)

Shapes: B batch, L tokens, H heads, D head size, E = H * D, N rows, F FFN width.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
import torch.nn.functional as F

from ntengine import varlen

try:
    from ntengine import _C
except ImportError:  # the pure-torch path still works; "fused" says what is missing
    _C = None

MODES = ("torch", "fused")
# Which implementation runs is a property of the model instance: every op takes `fused`
# (NTModel.use_fused_kernels sets it on the instance), so a reference and a fused engine
# can run in two threads at once. `use(mode)` overrides every instance while it is active
# (export traces "torch"; tests); it is process-wide. A plain global, not a ContextVar:
# torch.compile can trace (and guard on) a global.
_OVERRIDE: Optional[str] = None
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


@contextlib.contextmanager
def use(mode: str):
    """Route every op through "torch" (the references) or "fused" (our kernels) in this
    context, whatever each call's `fused` says."""
    global _OVERRIDE
    if mode not in MODES:
        raise ValueError(f"ops mode must be one of {MODES}, got {mode!r}")
    previous, _OVERRIDE = _OVERRIDE, mode
    try:
        yield
    finally:
        _OVERRIDE = previous


def _fused(fused: bool) -> bool:
    return fused if _OVERRIDE is None else _OVERRIDE == "fused"


def cuda_status() -> tuple[bool, str]:
    """(usable, reason): whether fused CUDA kernels can run here, and why not."""
    if not torch.cuda.is_available():
        return False, "torch sees no CUDA GPU"
    try:
        from ntengine import _C_cuda  # noqa: F401
    except ImportError as err:
        return False, f"ntengine._C_cuda is not built ({err}); reinstall where nvcc is on PATH"
    return True, "ok"


def _kernels(t: torch.Tensor):
    """The compiled module for t's device, or a clear error."""
    if t.device.type == "cpu":
        if _C is None:
            raise RuntimeError("fused CPU kernels need ntengine._C: run `pip install -e .`")
        return _C
    if t.device.type == "cuda":
        ok, why = cuda_status()
        if not ok:
            raise RuntimeError(f"fused CUDA kernels unavailable: {why}")
        from ntengine import _C_cuda

        return _C_cuda
    raise RuntimeError(f"no fused kernels for device {t.device}")


def _launch(lib, name: str, t: torch.Tensor, *args):
    """Call kernel `name`; CUDA kernels also get the current stream."""
    if t.device.type == "cuda":  # kernels launch on the current device: make it t's
        with torch.cuda.device(t.device):
            getattr(lib, name)(*args, torch.cuda.current_stream(t.device).cuda_stream)
    else:
        getattr(lib, name)(*args)


def _rows(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """t viewed as rows [N, last] with a uniform row stride and a contiguous last dim.

    Inputs that cannot be viewed so are copied (correct, just slower).
    """
    flat = t.reshape(-1, t.shape[-1]) if t.dim() != 2 else t
    if flat.stride(-1) != 1 or (flat.shape[0] > 1 and flat.stride(0) < flat.shape[1]):
        flat = flat.contiguous()
    return flat, flat.stride(0)


def _check_dtype(*tensors: torch.Tensor) -> int:
    dtype = tensors[0].dtype
    if dtype not in DTYPE_CODES:
        raise TypeError(f"fused ops take float32, float16 or bfloat16, got {dtype}")
    for t in tensors[1:]:
        if t.dtype != dtype or t.device != tensors[0].device:
            raise TypeError(f"all inputs must share dtype and device: {t.dtype}@{t.device} vs "
                            f"{dtype}@{tensors[0].device}")
    if dtype == torch.float16 and tensors[0].device.type == "cpu":
        raise TypeError("float16 fused kernels exist on CUDA only; use bfloat16 on the CPU")
    return DTYPE_CODES[dtype]


# --------------------------------------------------------------------------- linear


def linear(x: torch.Tensor, layer: torch.nn.Linear, fused: bool = False) -> torch.Tensor:
    """x @ W^T + b. When fused, on the CPU through oneDNN (torch's mkldnn linear):
    torch's default fp32 path (MKL sgemm) runs AVX2 code on AMD CPUs, oneDNN AVX-512 -
    about 2x the fp32 GEMM throughput measured on this project's Zen CPU (bench/forward.py).
    """
    if not _fused(fused) or x.device.type != "cpu":
        return F.linear(x, layer.weight, layer.bias)
    return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "none", [], "")


# The CPU fused path runs row-local work (the FFN) over tiles of rows so that its widest
# intermediate stays about this size: it then lives in L2/L3 instead of streaming through
# DRAM and through fresh allocations that glibc maps (and page-faults) anew on every call.
# 8 MiB (512 rows at NT-v2-50M, fp32) measured best of 4, 8, 16 MiB and untiled on Zen 3:
# 1.03x, 1.11x, 1.09x the untiled engine at 1x1000, 1x2048, 8x1000 tokens.
CPU_TILE_BYTES = 8 << 20


def row_tiled(fn, x: torch.Tensor, widest: int, fused: bool = False) -> torch.Tensor:
    """fn(x) for a row-local fn over x [..., E], in tiles of rows when fused on the CPU
    (whole elsewhere: a GPU wants the big GEMM). widest: the widest intermediate's columns."""
    flat = x.reshape(-1, x.shape[-1])
    tile = max(64, CPU_TILE_BYTES // (widest * x.element_size()))
    if not _fused(fused) or x.device.type != "cpu" or flat.shape[0] <= tile:
        return fn(x)
    parts = [fn(flat[start:start + tile]) for start in range(0, flat.shape[0], tile)]
    return torch.cat(parts).reshape(*x.shape[:-1], parts[0].shape[-1])


def onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


# --------------------------------------------------------------------------- qkv_rope


def _check_rotary_head(d: int, cos) -> None:
    """Rotate-half pairs feature j with j + D/2, so rotary needs an even head size. Without
    tables (v1 models) any D works: AgroNT-1B has D = 75."""
    if cos is not None and d % 2:
        raise ValueError(f"rotary embeddings need an even head size, got head size {d} (odd); "
                         "only models without rotary (v1, learned positions) may have odd heads")


def qkv_rope_ref(qkv: torch.Tensor, num_heads: int, q_scale: float, cos: Optional[torch.Tensor] = None,
                 sin: Optional[torch.Tensor] = None, positions: Optional[torch.Tensor] = None):
    """Split a merged QKV projection into heads, scale q and rotate q and k.

    Args:
        qkv: [B, L, 3E], columns (q | k | v), each [H, D].
        num_heads: H.
        q_scale: multiplies q (1/sqrt(D): the attention scale, folded in).
        cos, sin: fp32 [P, D/2] rotary tables (`model.rotary_tables`), or None (no rotary).
        positions: int [B, L] rows of the tables per token, or None for 0..L-1. The kernels
            check them against P on the CPU; on CUDA, where that is a host sync per layer,
            they must be < L (as a packed row's offsets within its sequences are).
    Returns:
        q, k, v: [B, H, L, D] contiguous, dtype of qkv (fp32 arithmetic inside).
    """
    b, length, e3 = qkv.shape
    d = e3 // 3 // num_heads
    _check_rotary_head(d, cos)
    x = qkv.float().view(b, length, 3, num_heads, d).permute(2, 0, 3, 1, 4)  # [3, B, H, L, D]
    q, k, v = x[0], x[1], x[2]
    if cos is not None:
        rows = torch.arange(length, device=qkv.device) if positions is None else positions.long()
        c, s = cos[rows], sin[rows]  # [L, D/2] or [B, L, D/2]
        if positions is not None:
            c, s = c[:, None], s[:, None]  # broadcast over heads

        def rotate(t):  # rotate-half: pairs j with j + D/2
            t1, t2 = t.chunk(2, dim=-1)
            return torch.cat([t1 * c - t2 * s, t2 * c + t1 * s], dim=-1)

        q, k = rotate(q), rotate(k)
    q = q * q_scale
    return tuple(t.to(qkv.dtype).contiguous() for t in (q, k, v))


@torch.library.custom_op("ntengine::qkv_rope", mutates_args=(), device_types=("cpu", "cuda"))
def _qkv_rope_op(qkv: torch.Tensor, num_heads: int, q_scale: float, cos: Optional[torch.Tensor],
                 sin: Optional[torch.Tensor], positions: Optional[torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, length, e3 = qkv.shape
    d = e3 // 3 // num_heads
    code = _check_dtype(qkv)
    _check_rotary_head(d, cos)
    if qkv.stride(-1) != 1 or qkv.stride(0) != length * qkv.stride(1):
        qkv = qkv.contiguous()
    if cos is not None:
        if cos.dtype != torch.float32 or sin.dtype != torch.float32 or cos.shape[-1] != d // 2:
            raise TypeError(f"cos/sin must be float32 [P, {d // 2}], got {cos.dtype} {tuple(cos.shape)}")
        cos, sin = cos.contiguous(), sin.contiguous()
        top = length if positions is None or qkv.is_cuda else int(positions.max()) + 1
        if top > cos.shape[0]:
            raise ValueError(f"rotary tables have {cos.shape[0]} rows, positions need {top}")
    if positions is not None:
        positions = positions.to(torch.int32).contiguous()
    q, k, v = (qkv.new_empty(b, num_heads, length, d) for _ in range(3))
    _launch(_kernels(qkv), "qkv_rope", qkv, qkv.data_ptr(), qkv.stride(1), q.data_ptr(), k.data_ptr(),
            v.data_ptr(), 0 if positions is None else positions.data_ptr(),
            0 if cos is None else cos.data_ptr(), 0 if sin is None else sin.data_ptr(),
            b, length, num_heads, d, q_scale, code)
    return q, k, v


@_qkv_rope_op.register_fake
def _(qkv, num_heads, q_scale, cos, sin, positions):
    b, length, e3 = qkv.shape
    shape = (b, num_heads, length, e3 // 3 // num_heads)
    return qkv.new_empty(shape), qkv.new_empty(shape), qkv.new_empty(shape)


def qkv_rope(qkv, num_heads, q_scale, cos=None, sin=None, positions=None, fused: bool = False):
    """See `qkv_rope_ref`; our kernel when fused."""
    if not _fused(fused):
        return qkv_rope_ref(qkv, num_heads, q_scale, cos, sin, positions)
    return torch.ops.ntengine.qkv_rope(qkv, num_heads, q_scale, cos, sin, positions)


# --------------------------------------------------------------------------- swiglu


def swiglu_ref(x: torch.Tensor) -> torch.Tensor:
    """[..., 2F] -> [..., F] = silu(x[..., :F]) * x[..., F:] (fp32 inside)."""
    a, b = x.float().chunk(2, dim=-1)
    return (F.silu(a) * b).to(x.dtype)


@torch.library.custom_op("ntengine::swiglu", mutates_args=(), device_types=("cpu", "cuda"))
def _swiglu_op(x: torch.Tensor) -> torch.Tensor:
    code = _check_dtype(x)
    rows, stride = _rows(x)
    f = x.shape[-1] // 2
    out = x.new_empty(*x.shape[:-1], f)
    _launch(_kernels(x), "swiglu", x, rows.data_ptr(), stride, out.data_ptr(), rows.shape[0], f, code)
    return out


@_swiglu_op.register_fake
def _(x):
    return x.new_empty(*x.shape[:-1], x.shape[-1] // 2)


def swiglu(x, fused: bool = False):
    """See `swiglu_ref`; our kernel when fused."""
    return torch.ops.ntengine.swiglu(x) if _fused(fused) else swiglu_ref(x)


# --------------------------------------------------------------------------- add_layernorm


def add_layernorm_ref(x, delta, weight, bias, eps: float):
    """Residual add + LayerNorm over the last dim E.

    Returns (sum, normed): sum = x + delta in x's dtype; normed = LayerNorm(sum) with
    fp32 statistics, in x's dtype.
    """
    s = x + delta
    normed = F.layer_norm(s.float(), s.shape[-1:], weight.float(), bias.float(), eps)
    return s, normed.to(x.dtype)


@torch.library.custom_op("ntengine::add_layernorm", mutates_args=(), device_types=("cpu", "cuda"))
def _add_layernorm_op(x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    code = _check_dtype(x, delta, weight, bias)
    if x.shape != delta.shape:
        raise ValueError(f"x {tuple(x.shape)} and delta {tuple(delta.shape)} must have one shape")
    xr, xs = _rows(x)
    dr, ds = _rows(delta)
    weight, bias = weight.contiguous(), bias.contiguous()
    s, normed = torch.empty_like(x, memory_format=torch.contiguous_format), torch.empty_like(
        x, memory_format=torch.contiguous_format)
    _launch(_kernels(x), "add_layernorm", x, xr.data_ptr(), xs, dr.data_ptr(), ds, weight.data_ptr(),
            bias.data_ptr(), s.data_ptr(), normed.data_ptr(), xr.shape[0], x.shape[-1], eps, code)
    return s, normed


@_add_layernorm_op.register_fake
def _(x, delta, weight, bias, eps):
    return torch.empty_like(x), torch.empty_like(x)


def add_layernorm(x, delta, norm: torch.nn.LayerNorm, fused: bool = False):
    """(x + delta, norm(x + delta)) with `norm`'s weight, bias and eps; our kernel when fused."""
    if not _fused(fused):
        return add_layernorm_ref(x, delta, norm.weight, norm.bias, norm.eps)
    return torch.ops.ntengine.add_layernorm(x, delta, norm.weight, norm.bias, norm.eps)


# --------------------------------------------------------------------------- attention


def attention_ref(q, k, v, lengths: Optional[torch.Tensor] = None, cu_seqlens: Optional[torch.Tensor] = None):
    """softmax(q k^T) v per head, q pre-scaled; padded keys / other segments get no weight.

    Args:
        q, k, v: [B, H, L, D].
        lengths: int [B]: real tokens per row (right padding); None = all L.
        cu_seqlens: int [n + 1] segment starts of a packed row (B == 1); tokens attend
            within their own segment only.
    Returns:
        [B, L, E]; rows of padding (t >= lengths[b], or past cu_seqlens[-1]) are 0.
    """
    b, h, length, d = q.shape
    t = torch.arange(length, device=q.device)
    if cu_seqlens is not None:
        seg = torch.bucketize(t, cu_seqlens[1:].to(t.dtype), right=True)  # segment of each token
        real = t < cu_seqlens[-1]
        mask = (seg[:, None] == seg[None, :])[None, None]  # [1, 1, L, L]
    else:
        lengths = torch.full((b,), length, device=q.device) if lengths is None else lengths
        real = t[None, :] < lengths[:, None]  # [B, L]
        mask = real[:, None, None, :]  # keys only
        if torch.compiler.is_exporting():  # ONNX Runtime's Attention (opset 23) takes [B, 1, L, L] only
            mask = mask.expand(b, 1, length, length)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
    out = out.transpose(1, 2).reshape(b, length, h * d)
    return out * real.reshape(-1 if cu_seqlens is None else 1, length, 1).to(out.dtype)


@torch.library.custom_op("ntengine::attention", mutates_args=(), device_types="cpu")
def _attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: Optional[torch.Tensor],
                  cu_seqlens: Optional[torch.Tensor]) -> torch.Tensor:
    code = _check_dtype(q, k, v)
    b, h, length, d = q.shape
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    if cu_seqlens is not None and b != 1:
        raise ValueError(f"packed attention (cu_seqlens) takes B == 1, got B = {b}")
    lengths = None if lengths is None else lengths.to(torch.int32).contiguous()
    cu = None if cu_seqlens is None else cu_seqlens.to(torch.int32).contiguous()
    out = q.new_empty(b, length, h * d)
    _launch(_kernels(q), "attention", q, q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
            0 if lengths is None else lengths.data_ptr(), 0 if cu is None else cu.data_ptr(),
            0 if cu is None else cu.numel() - 1, b, h, length, d, code)
    return out


@_attention_op.register_fake
def _(q, k, v, lengths, cu_seqlens):
    b, h, length, d = q.shape
    return q.new_empty(b, length, h * d)


def attention(q, k, v, lengths=None, cu_seqlens=None, fused: bool = False, max_seqlen: Optional[int] = None):
    """See `attention_ref`. Fused: our flash-style kernel on the CPU; on CUDA, packed rows go
    through the variable-length kernels (`ntengine.varlen`; max_seqlen: the longest segment),
    padded rows through SDPA, whose flash/memory-efficient kernels take a key mask."""
    if not _fused(fused) or (q.device.type == "cuda" and cu_seqlens is None):
        return attention_ref(q, k, v, lengths, cu_seqlens)
    if q.device.type == "cuda":
        return varlen.packed_attention(q, k, v, cu_seqlens, max_seqlen)
    return torch.ops.ntengine.attention(q, k, v, lengths, cu_seqlens)

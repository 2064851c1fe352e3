"""Packed attention without the [T, T] mask (ntengine.varlen) against attention_ref.

On the CPU: the per-segment SDPA path itself, and the layout work around the varlen
kernels ([1, H, L, D] -> [T, H, D] and back, int32 cu_seqlens, the scale, zeroed rows past
the last segment) with a stand-in for the kernel that follows the documented contract of
torch's varlen_attn and flash-attn's flash_attn_varlen_func, as each version spells it.
On CUDA (skipped without one): the real kernels through ops.attention, fused route.
"""

import inspect
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from ntengine import ops, varlen
from tolerances import assert_matches_ref

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
# Segment lengths of one packed row, and the row's padding past the last segment.
LAYOUTS = [([1], 0), ([7], 3), ([5, 1, 9], 0), ([1, 1, 1, 1], 2), ([64, 17, 130, 3], 11), ([300, 2], 0)]


def _packed(lens, tail, h, d, dtype, device="cpu"):
    total = sum(lens) + tail
    q = torch.randn(1, h, total, d, device=device) * d**-0.5  # pre-scaled, as the model passes it
    k, v = torch.randn(1, h, total, d, device=device), torch.randn(1, h, total, d, device=device)
    cu = F.pad(torch.tensor(lens, device=device).cumsum(0), (1, 0))
    return q.to(dtype), k.to(dtype), v.to(dtype), cu


def _check(got, q, k, v, cu):
    ref32 = None if q.dtype == torch.float32 else ops.attention_ref(q.float(), k.float(), v.float(), cu_seqlens=cu)
    assert_matches_ref("packed attention", got, ops.attention_ref(q, k, v, cu_seqlens=cu), ref32)
    assert torch.count_nonzero(got[0, int(cu[-1]):]) == 0


def _contract(q, k, v, cu_q, max_q, scale=None):
    """What the varlen kernels compute, one segment at a time, [T, H, D] in and out; rows
    past cu[-1] are left as the kernels leave them: unwritten (NaN here)."""
    assert q.dim() == 3 and cu_q.dtype == torch.int32 and max_q == int((cu_q[1:] - cu_q[:-1]).max())
    assert cu_q.device == q.device and all(t.stride(-1) == 1 for t in (q, k, v))  # flash's layout needs
    out = torch.full_like(q, float("nan"))
    bounds = cu_q.tolist()
    for a, b in zip(bounds, bounds[1:]):
        seg = [t[a:b].transpose(0, 1) for t in (q, k, v)]
        out[a:b] = F.scaled_dot_product_attention(*seg, scale=scale).transpose(0, 1)
    return out


def _varlen_attn_2_11(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                      window_size=(-1, -1)):
    assert torch.equal(cu_seq_q, cu_seq_k) and max_q == max_k
    return _contract(query, key, value, cu_seq_q, max_q, scale)


def _varlen_attn_2_10(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, is_causal=False, return_aux=None):
    assert not is_causal
    return _contract(query, key, value, cu_seq_q, max_q)  # always 1/sqrt(D)


def _flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                            softmax_scale=None, causal=False):
    return _contract(q, k, v, cu_seqlens_q, max_seqlen_q, softmax_scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("d", [8, 32, 75])
@pytest.mark.parametrize("lens,tail", LAYOUTS)
def test_segments_attention_matches_ref(lens, tail, d, dtype):
    q, k, v, cu = _packed(lens, tail, 3, d, dtype)
    _check(varlen.segments_attention(q, k, v, cu, max(lens)), q, k, v, cu)


@pytest.mark.parametrize("make", [lambda: varlen._torch_kernel(_varlen_attn_2_11),
                                  lambda: varlen._torch_kernel(_varlen_attn_2_10),
                                  lambda: varlen._flash_attn_kernel(_flash_attn_varlen_func)],
                         ids=["torch-2.11", "torch-2.10", "flash-attn"])
@pytest.mark.parametrize("lens,tail", LAYOUTS)
def test_kernel_layout_matches_ref(make, lens, tail):
    """Our side of each kernel's call: transposes, int32 offsets, the scale each API wants
    (2.10 has no `scale`: q is scaled back up), and NaN rows past the last segment zeroed."""
    q, k, v, cu = _packed(lens, tail, 4, 16, torch.float32)
    _check(varlen.packed_attention(q, k, v, cu, impl=make()), q, k, v, cu)


def test_this_torchs_varlen_attn_is_the_signature_we_call():
    """The installed torch's varlen_attn takes what `_torch_kernel` passes it."""
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    assert list(params)[:7] == ["query", "key", "value", "cu_seq_q", "cu_seq_k", "max_q", "max_k"]
    # With or without `scale` (torch 2.10 has none): `_torch_kernel` handles both, tested above.
    assert varlen.kernel().name == "torch.nn.attention.varlen.varlen_attn"


def test_kernel_falls_back_to_flash_attn_then_to_none(monkeypatch):
    import torch.nn.attention

    monkeypatch.setitem(sys.modules, "torch.nn.attention.varlen", None)  # torch < 2.10
    monkeypatch.delattr(torch.nn.attention, "varlen", raising=False)
    monkeypatch.setitem(sys.modules, "flash_attn", None)
    varlen.kernel.cache_clear()
    try:
        assert varlen.kernel() is None
        flash = types.ModuleType("flash_attn")
        flash.flash_attn_varlen_func = _flash_attn_varlen_func
        monkeypatch.setitem(sys.modules, "flash_attn", flash)
        varlen.kernel.cache_clear()
        assert varlen.kernel().name == "flash_attn.flash_attn_varlen_func"
    finally:
        varlen.kernel.cache_clear()


@pytest.mark.parametrize("q_dtype,d,ok", [(torch.bfloat16, 32, True), (torch.float16, 256, True),
                                          (torch.float32, 64, False), (torch.bfloat16, 75, False),
                                          (torch.bfloat16, 264, False)])
def test_what_the_kernels_take(q_dtype, d, ok):
    q = types.SimpleNamespace(is_cuda=True, dtype=q_dtype, shape=(1, 2, 10, d))
    assert varlen.takes(q) is ok
    assert not varlen.takes(torch.empty(1, 2, 10, 32, dtype=torch.bfloat16))  # the CPU has its own kernel


def test_cpu_fused_route_is_our_kernel_not_varlen(monkeypatch):
    monkeypatch.setattr(varlen, "packed_attention", lambda *a, **k: pytest.fail("varlen on the CPU"))
    q, k, v, cu = _packed([5, 9], 2, 2, 16, torch.float32)
    with ops.use("fused"):
        _check(ops.attention(q, k, v, cu_seqlens=cu), q, k, v, cu)


@CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("d", [32, 64, 80, 75])  # v2-50M, v2-500M / v1-500M, v1-2.5B, AgroNT-1B
@pytest.mark.parametrize("lens,tail", LAYOUTS)
def test_cuda_packed_attention_matches_ref(lens, tail, d, dtype):
    """fp16/bf16 with D % 8 == 0 run the varlen kernel; fp32 and D = 75 the segments path."""
    q, k, v, cu = _packed(lens, tail, 4, d, dtype, device="cuda")
    with ops.use("fused"):
        got = ops.attention(q, k, v, cu_seqlens=cu, max_seqlen=max(lens))
    _check(got, q, k, v, cu)


@CUDA
def test_cuda_has_a_varlen_kernel():
    """The GPU image's torch (2.11) ships varlen_attn: the fast path is not silently absent."""
    assert varlen.kernel() is not None
    assert varlen.takes(torch.empty(1, 1, 1, 64, device="cuda", dtype=torch.bfloat16))

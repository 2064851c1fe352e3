"""ntengine::qkv_rope against qkv_rope_ref: dtypes, head counts and sizes, lengths 1 to
1000, explicit positions, no rotary, odd head sizes (AgroNT-1B's D = 75) without rotary,
strided and permuted inputs, errors, opcheck."""

import math

import pytest
import torch

from ntengine import ops
from tolerances import FUSED_DTYPES, assert_matches_ref

DTYPES = [getattr(torch, name) for name in FUSED_DTYPES]

# (B, L, H, D): single token, odd L with 3 heads, v2-50M heads (16 x 32) at L = 1000,
# the smallest head (D = 8: half a vector) and the largest (D = 128).
SHAPES = [(1, 1, 1, 8), (2, 7, 3, 32), (1, 1000, 16, 32), (3, 5, 2, 8), (2, 9, 3, 64), (1, 4, 1, 128)]
ROTARY = ["default", "positions", "none"]
# Odd head sizes, no rotary (v1 models: rotate-half needs an even D). AgroNT-1B
# (InstaDeepAI/agro-nucleotide-transformer-1b) has 20 heads of D = 75: its full shape at
# 1024 tokens, a small D = 75 case, and D = 1 / 7 (less than one vector).
ODD_SHAPES = [(2, 9, 2, 75), (1, 1024, 20, 75), (3, 5, 3, 7), (1, 3, 1, 1)]


def _tables(rows: int, d: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 rotary tables [rows, D/2], as model.rotary_tables builds them."""
    inv = 10000.0 ** (-torch.arange(0, d, 2, device=device).float() / d)
    angle = torch.outer(torch.arange(rows, device=device).float(), inv)
    return angle.cos(), angle.sin()


def _check(qkv: torch.Tensor, heads: int, rotary: str) -> None:
    """Fused vs reference for q, k, v; bf16 judged against the reference run in fp32."""
    b, length, e3 = qkv.shape
    d = e3 // 3 // heads
    cos = sin = positions = None
    if rotary != "none":
        cos, sin = _tables(length + 5, d, qkv.device)
    if rotary == "positions":  # e.g. packed rows restart at 0; any row of the table is legal
        positions = torch.randint(0, length + 5, (b, length), device=qkv.device)
    args = (heads, 1 / math.sqrt(d), cos, sin, positions)
    with ops.use("fused"):
        got = ops.qkv_rope(qkv, *args)
    ref = ops.qkv_rope_ref(qkv, *args)
    ref32 = ops.qkv_rope_ref(qkv.float(), *args) if qkv.dtype != torch.float32 else (None,) * 3
    for name, g, r, r32 in zip("qkv", got, ref, ref32):
        assert g.is_contiguous()
        assert_matches_ref(f"qkv_rope.{name}", g, r, r32)
    assert torch.equal(got[2], ref[2]), "v is a copy"


@pytest.mark.parametrize("rotary", ROTARY)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,length,heads,d", SHAPES)
def test_matches_ref(device, dtype, b, length, heads, d, rotary):
    _check(torch.randn(b, length, 3 * heads * d, device=device).to(dtype), heads, rotary)


@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,length,heads,d", ODD_SHAPES)
def test_odd_head_sizes_without_rotary(device, dtype, b, length, heads, d, strided):
    """Any D without tables, e.g. AgroNT-1B's D = 75; strided: token stride 3E + 3 (odd)."""
    e3 = 3 * heads * d
    wide = torch.randn(b, length, e3 + (3 if strided else 0), device=device).to(dtype)
    _check(wide[..., :e3], heads, "none")


def test_rotary_refuses_odd_head_size(device):
    """Rotate-half pairs j with j + D/2: an odd D with tables is refused, not half-rotated."""
    qkv = torch.randn(1, 4, 3 * 2 * 75, device=device)
    cos, sin = torch.ones(4, 37, device=device), torch.zeros(4, 37, device=device)
    with pytest.raises(ValueError, match="even head size, got head size 75"):
        ops.qkv_rope_ref(qkv, 2, 1.0, cos, sin)
    with ops.use("fused"), pytest.raises(ValueError, match="even head size, got head size 75"):
        ops.qkv_rope(qkv, 2, 1.0, cos, sin)
    if device == "cpu":  # the binding checks too, for callers that bypass ops.py
        out = [torch.empty(1, 2, 4, 75) for _ in range(3)]
        with pytest.raises(RuntimeError, match="even head size D, got 75"):
            ops._C.qkv_rope(qkv.data_ptr(), qkv.stride(1), *(t.data_ptr() for t in out), 0, cos.data_ptr(),
                            sin.data_ptr(), 1, 4, 2, 75, 1.0, ops.DTYPE_CODES[torch.float32])


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_strided_view(device, dtype):
    """Tokens sliced from a wider buffer go in without a copy (token stride > 3E)."""
    heads, d = 3, 8
    wide = torch.randn(2, 7, 3 * heads * d + 5, device=device).to(dtype)
    qkv = wide[..., 2 : 2 + 3 * heads * d]
    assert qkv.stride() == (7 * (3 * heads * d + 5), 3 * heads * d + 5, 1)
    _check(qkv, heads, "positions")


@pytest.mark.parametrize("dtype", DTYPES)
def test_permuted_input(device, dtype):
    """[L, B, 3E] transposed to [B, L, 3E] (batch stride < token stride) is copied first."""
    qkv = torch.randn(7, 3, 3 * 2 * 32, device=device).to(dtype).transpose(0, 1)
    _check(qkv, 2, "default")


def test_float16_kernel():
    """The fp16 kernel path (CUDA's dtype; ops.py refuses it on the CPU) called directly."""
    b, length, heads, d = 2, 5, 3, 32
    qkv = torch.randn(b, length, 3 * heads * d).half()
    cos, sin = _tables(length, d, "cpu")
    q, k, v = (torch.empty(b, heads, length, d, dtype=torch.float16) for _ in range(3))
    ops._C.qkv_rope(qkv.data_ptr(), qkv.stride(1), q.data_ptr(), k.data_ptr(), v.data_ptr(), 0, cos.data_ptr(),
                    sin.data_ptr(), b, length, heads, d, 0.5, ops.DTYPE_CODES[torch.float16])
    refs = ops.qkv_rope_ref(qkv, heads, 0.5, cos, sin)
    for name, g, r, r32 in zip("qkv", (q, k, v), refs, ops.qkv_rope_ref(qkv.float(), heads, 0.5, cos, sin)):
        assert_matches_ref(f"qkv_rope.{name}", g, r, r32)


def test_errors():
    qkv = torch.randn(1, 4, 3 * 2 * 8)
    cos, sin = _tables(4, 8, "cpu")
    with ops.use("fused"):
        with pytest.raises(TypeError, match="float16 fused kernels exist on CUDA only"):
            ops.qkv_rope(qkv.half(), 2, 1.0, cos, sin)
        with pytest.raises(TypeError, match="cos/sin must be float32"):
            ops.qkv_rope(qkv, 2, 1.0, cos.double(), sin.double())
        with pytest.raises(TypeError, match="cos/sin must be float32"):
            ops.qkv_rope(qkv, 1, 1.0, cos, sin)  # tables for D = 8, heads of D = 16
        with pytest.raises(ValueError, match="rotary tables have 4 rows"):
            ops.qkv_rope(qkv, 2, 1.0, cos, sin, torch.tensor([[0, 1, 2, 4]]))


def test_opcheck():
    cos, sin = _tables(6, 8, "cpu")
    qkv = torch.randn(2, 5, 3 * 3 * 8)
    for args in [(qkv, 3, 0.5, cos, sin, None), (qkv, 3, 0.5, cos, sin, torch.randint(0, 6, (2, 5))),
                 (qkv, 3, 0.5, None, None, None),
                 (torch.randn(2, 5, 3 * 2 * 75), 2, 75**-0.5, None, None, None)]:  # AgroNT-1B's D = 75
        torch.library.opcheck(torch.ops.ntengine.qkv_rope.default, args)

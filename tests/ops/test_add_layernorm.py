"""ntengine::add_layernorm against add_layernorm_ref: dtypes, odd widths, strided and
transposed inputs, the rounded sum bit for bit, large-mean rows, errors, opcheck."""

import pytest
import torch
import torch.nn.functional as F

from ntengine import ops
from tolerances import FUSED_DTYPES, FP32, assert_matches_ref, rel_err

DTYPES = [getattr(torch, name) for name in FUSED_DTYPES]

# (leading dims, E): N = 1, odd N, E = 1, E not a multiple of 16, v2 widths, 1000+ rows.
SHAPES = [((1,), 40), ((7,), 512), ((2, 3), 1), ((1001,), 40), ((5,), 2560), ((3, 11), 1000)]


def _norm(e: int, device, dtype, eps: float = 1e-5) -> torch.nn.LayerNorm:
    """A LayerNorm with random affine parameters (what the model passes to ops.add_layernorm)."""
    norm = torch.nn.LayerNorm(e, eps=eps, device=device, dtype=dtype)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(e))
        norm.bias.copy_(0.3 * torch.randn(e))
    return norm


@torch.no_grad()
def _check(x: torch.Tensor, delta: torch.Tensor, norm: torch.nn.LayerNorm) -> None:
    """Both outputs vs the reference; bf16 judged against the reference run in fp32."""
    with ops.use("fused"):
        got = ops.add_layernorm(x, delta, norm)
    ref = ops.add_layernorm_ref(x, delta, norm.weight, norm.bias, norm.eps)
    ref32 = (None, None)
    if x.dtype != torch.float32:
        ref32 = ops.add_layernorm_ref(*(t.float() for t in (x, delta, norm.weight, norm.bias)), norm.eps)
    for name, g, r, r32 in zip(("sum", "normed"), got, ref, ref32):
        assert_matches_ref(f"add_layernorm.{name}", g, r, r32)
    assert torch.equal(got[0], ref[0]), "sum must be x + delta rounded exactly as torch rounds it"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,e", SHAPES)
def test_matches_ref(device, dtype, lead, e):
    x = torch.randn(*lead, e, device=device).to(dtype)
    delta = (0.5 * torch.randn(*lead, e, device=device)).to(dtype)
    _check(x, delta, _norm(e, device, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_and_transposed(device, dtype):
    """x: rows of a wider buffer (no copy, row stride > E); delta: transposed (copied)."""
    e = 40
    x = torch.randn(17, e + 9, device=device).to(dtype)[:, 5 : 5 + e]
    delta = torch.randn(e, 17, device=device).to(dtype).t()
    assert x.stride(0) == e + 9 and delta.stride(-1) != 1
    _check(x, delta, _norm(e, device, dtype))
    # 3-D residual stream sliced along the batch: [B, L, E] with a gap between batch rows
    x3 = torch.randn(4, 6, e, device=device).to(dtype)[::2]
    _check(x3, torch.randn_like(x3), _norm(e, device, dtype))


@pytest.mark.usefixtures("cpu_level")
def test_large_mean_rows():
    """Rows far from zero mean, judged against float64 (the fp32 reference itself is off
    here: at mean 1e3 torch's fp32 layer_norm errs by 1.5e-4, we by 6e-7; at mean 1e5,
    1.6e-2 vs 7e-7). The shifted two-pass statistics keep fp32 accuracy."""
    for mean in (1e3, 1e5):
        x, delta = mean + torch.randn(64, 512), torch.randn(64, 512)
        norm = _norm(512, "cpu", torch.float32)
        with torch.no_grad():
            s, y = torch.ops.ntengine.add_layernorm(x, delta, norm.weight, norm.bias, norm.eps)
            want = F.layer_norm(s.double(), (512,), norm.weight.double(), norm.bias.double(), norm.eps)
        assert rel_err(y, want) <= FP32, (mean, rel_err(y, want))


@pytest.mark.usefixtures("cpu_level")
def test_constant_rows():
    """Zero variance: normed is exactly the bias (no nan from a negative rounded variance)."""
    x = torch.full((3, 40), 7.25)
    norm = _norm(40, "cpu", torch.float32)
    with torch.no_grad():
        _, y = torch.ops.ntengine.add_layernorm(x, x, norm.weight, norm.bias, norm.eps)
    assert torch.equal(y, norm.bias.detach().expand(3, 40))


@pytest.mark.usefixtures("cpu_level")
def test_bf16_sum_rounding_matches_torch():
    """The rounded bf16 sum equals torch's x + delta bit for bit: ties, overflow to inf,
    signed zeros, and subnormal results (the AVX512_BF16 conversion instruction alone
    would flush those to zero; the kernel must not)."""
    n, e = 64, 48
    scale = 2.0 ** torch.randint(-126, 127, (n, e)).float()
    x = (torch.randn(n, e) * scale).to(torch.bfloat16)
    delta = (torch.randn(n, e) * scale).to(torch.bfloat16)
    # rows 0-7: near-cancellation just above FLT_MIN, so the sums are subnormal
    tiny = (torch.randint(1, 256, (8, e)).float() * 2.0**-133).to(torch.bfloat16)
    x[:8] = (torch.randint(64, 128, (8, e)).float() * 2.0**-132).to(torch.bfloat16)
    delta[:8] = tiny - x[:8]
    x[8, :4], delta[8, :4] = torch.tensor([0.0, -0.0, 3e38, -3e38]), torch.tensor([-0.0, -0.0, 3e38, -3e38])
    want = x + delta
    assert ((want != 0) & (want.float().abs() < 2.0**-126)).sum() > 100 and want.isinf().any()
    norm = _norm(e, "cpu", torch.bfloat16)
    with torch.no_grad():
        got, _ = torch.ops.ntengine.add_layernorm(x, delta, norm.weight, norm.bias, norm.eps)
    assert torch.equal(got.view(torch.int16), want.view(torch.int16))


@pytest.mark.usefixtures("cpu_level")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nan_propagates(dtype):
    x = torch.randn(3, 40).to(dtype)
    x[1, 7] = float("nan")
    norm = _norm(40, "cpu", dtype)
    with torch.no_grad():
        s, y = torch.ops.ntengine.add_layernorm(x, torch.randn_like(x), norm.weight, norm.bias, norm.eps)
    assert s.isnan().sum() == 1 and y[1].isnan().all() and not y[[0, 2]].isnan().any()


def test_float16_kernel():
    """The fp16 kernel path (CUDA's dtype; ops.py refuses it on the CPU) called directly:
    the rounded sum bit for bit (subnormals, overflow to inf), normed by the half rule."""
    n, e = 16, 40
    exponent = torch.randint(-24, 16, (n, e)).float()
    x, delta = ((torch.rand(2, n, e) * 2 - 1) * 2.0**exponent).half()
    x[0, :2] = delta[0, :2] = 65504.0
    norm = _norm(e, "cpu", torch.float16)
    s, y = torch.empty_like(x), torch.empty_like(x)
    ops._C.add_layernorm(x.data_ptr(), e, delta.data_ptr(), e, norm.weight.data_ptr(), norm.bias.data_ptr(),
                         s.data_ptr(), y.data_ptr(), n, e, norm.eps, ops.DTYPE_CODES[torch.float16])
    want = x + delta
    assert ((want != 0) & (want.abs() < 2.0**-14)).any() and want.isinf().any()
    assert torch.equal(s.view(torch.int16), want.view(torch.int16))
    rows = slice(1, None)  # row 0 holds inf
    ref = ops.add_layernorm_ref(x[rows], delta[rows], norm.weight, norm.bias, norm.eps)[1]
    ref32 = ops.add_layernorm_ref(*(t.float() for t in (x[rows], delta[rows], norm.weight, norm.bias)), norm.eps)[1]
    assert_matches_ref("add_layernorm.normed", y[rows], ref.detach(), ref32.detach())


def test_errors():
    norm = _norm(8, "cpu", torch.float32)
    x = torch.randn(3, 8)
    with ops.use("fused"), torch.no_grad():
        with pytest.raises(TypeError, match="share dtype"):
            ops.add_layernorm(x, x.to(torch.bfloat16), norm)
        with pytest.raises(ValueError, match="must have one shape"):
            ops.add_layernorm(x, torch.randn(4, 8), norm)
        with pytest.raises(TypeError, match="float16 fused kernels exist on CUDA only"):
            ops.add_layernorm(x.half(), x.half(), norm.half())


def test_opcheck():
    x, d = torch.randn(5, 24), torch.randn(5, 24)
    torch.library.opcheck(torch.ops.ntengine.add_layernorm.default,
                          (x, d, 1 + torch.randn(24), torch.randn(24), 1e-5))

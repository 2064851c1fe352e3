"""ntengine::swiglu against swiglu_ref: dtypes, odd widths, strided and transposed
inputs, silu accuracy across the exp range, argument errors, opcheck."""

import pytest
import torch

from ntengine import ops
from tolerances import FUSED_DTYPES, assert_matches_ref

DTYPES = [getattr(torch, name) for name in FUSED_DTYPES]

# (leading dims, F): N = 1, odd N, F below / not a multiple of / far above 16 lanes, 1000+ rows.
SHAPES = [((1,), 8), ((7,), 40), ((3, 5), 17), ((1001,), 24), ((2,), 2048), ((5,), 1)]


def _check(x: torch.Tensor) -> None:
    """Fused vs reference on x (any layout); bf16 judged against the fp32 reference."""
    with ops.use("fused"):
        got = ops.swiglu(x)
    ref32 = ops.swiglu_ref(x.float()) if x.dtype != torch.float32 else None
    assert_matches_ref("swiglu", got, ops.swiglu_ref(x), ref32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,f", SHAPES)
def test_matches_ref(device, dtype, lead, f):
    _check(3 * torch.randn(*lead, 2 * f, device=device).to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_strided_view(device, dtype):
    """Rows sliced from a wider buffer go in without a copy (row stride > 2F)."""
    wide = torch.randn(33, 2 * 40 + 7, device=device).to(dtype)
    x = wide[:, 3 : 3 + 2 * 40]
    assert x.stride() == (2 * 40 + 7, 1)
    _check(x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_transposed_and_permuted(device, dtype):
    """Layouts with no uniform row stride are copied first: results must not change."""
    _check(torch.randn(2 * 24, 19, device=device).to(dtype).t())  # last dim strided
    _check(torch.randn(6, 4, 2 * 16, device=device).to(dtype).permute(1, 0, 2))  # rows not uniform


@pytest.mark.usefixtures("cpu_level")
def test_silu_accuracy_over_exp_range():
    """silu (our exp) vs float64, elementwise, over the whole fp32 exp range.

    Measured max relative error 1.7e-7 (~3 ulp near silu's root; torch's own fp32 silu:
    the same 1.7e-7); 5e-7 leaves room for the scalar path.
    """
    x = torch.linspace(-87.0, 88.0, 200_003)
    a_b = torch.cat([x[:, None], torch.ones_like(x)[:, None]], dim=1)  # [N, 2]: silu(a) * 1
    with ops.use("fused"):
        got = ops.swiglu(a_b)[:, 0].double()
    want = torch.nn.functional.silu(x.double())
    rel = ((got - want).abs() / want.abs().clamp_min(1e-30)).max().item()
    assert rel <= 5e-7, f"silu max elementwise rel err {rel:.3g}"


@pytest.mark.usefixtures("cpu_level")
def test_silu_saturates_cleanly():
    """Far outside the exp range silu is x (large x) or ~0 (very negative x), never nan/inf."""
    x = torch.tensor([-1e30, -1e4, -100.0, -0.0, 0.0, 100.0, 1e4, 1e30])
    with ops.use("fused"):
        got = ops.swiglu(torch.stack([x, torch.ones_like(x)], dim=1))[:, 0]
    assert torch.isfinite(got).all()
    assert torch.equal(got[5:], x[5:])
    assert got[:3].abs().max() < 1e-30 and (got[:3] <= 0).all()


@pytest.mark.usefixtures("cpu_level")
def test_bf16_rounding_is_torchs():
    """fp32 -> bf16 output rounding equals torch's, bit for bit.

    silu(100) is exactly 100 in fp32, so out = (100 * b) rounded: random b over the whole
    exponent range gives inexact products, ties and overflow to inf. (Subnormal outputs
    are checked through add_layernorm's sum, which can produce them exactly.)"""
    b = (torch.randn(4096) * 2.0 ** torch.randint(-126, 127, (4096,)).float()).to(torch.bfloat16)
    x = torch.stack([torch.full_like(b, 100.0), b], dim=1)  # [N, 2]: F = 1
    with ops.use("fused"):
        got = ops.swiglu(x)
    want = ops.swiglu_ref(x)
    assert want.isinf().any()
    assert torch.equal(got.view(torch.int16), want.view(torch.int16))


@pytest.mark.usefixtures("cpu_level")
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates(dtype):
    x = torch.randn(3, 2 * 20).to(dtype)
    x[0, 5], x[1, 20 + 7] = float("nan"), float("nan")
    with ops.use("fused"):
        got = ops.swiglu(x)
    assert torch.equal(got.isnan(), ops.swiglu_ref(x).isnan())


def test_float16_kernel():
    """The fp16 kernel path (CUDA's dtype; ops.py refuses it on the CPU) called directly."""
    x = (3 * torch.randn(9, 2 * 40)).half()
    out = torch.empty(9, 40, dtype=torch.float16)
    ops._C.swiglu(x.data_ptr(), x.stride(0), out.data_ptr(), 9, 40, ops.DTYPE_CODES[torch.float16])
    assert_matches_ref("swiglu", out, ops.swiglu_ref(x), ops.swiglu_ref(x.float()))


def test_errors():
    with ops.use("fused"):
        with pytest.raises(TypeError, match="float16 fused kernels exist on CUDA only"):
            ops.swiglu(torch.randn(3, 8, dtype=torch.float16))
        with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
            ops.swiglu(torch.ones(3, 8, dtype=torch.float64))


def test_opcheck():
    torch.library.opcheck(torch.ops.ntengine.swiglu.default, (torch.randn(5, 2 * 24),))

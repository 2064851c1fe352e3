"""One table of tolerances for the whole suite.

Errors are measured as max|ours - ref| / max|ref| over the compared elements (the
fixture README's rule: elementwise relative error is meaningless near 0).
"""

# Reference model vs the official implementation's goldens, fp32. The independent
# re-implementations in the fixture README reached 7.7e-7; we measure <= 5e-7.
FIXTURE = 1e-5
# The same model computed two ways in fp32 (batched vs alone, layouts, round trips).
FP32 = 1e-5
# bf16 / fp16 compute against the fp32 reference.
HALF = 2e-2
# The dtypes each fused op is tested in (float16, the GPU default, on CUDA only: see
# tests/ops/conftest.py).
FUSED_DTYPES = ["float32", "bfloat16", "float16"]


def rel_err(ours, ref) -> float:
    """max|ours - ref| / max|ref| (numpy or torch)."""
    import numpy as np

    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-30))

# Slack of the low-precision rule, relative to max|ref|, for outputs PyTorch computes
# exactly in that dtype too (copies, exact sums): both errors are then 0.
HALF_SLACK = 1e-6


def half_errors(fused, ref_half, ref_fp32) -> tuple[float, float, float]:
    """(our error, PyTorch's error, allowed) for the low-precision rule of `half_ok`."""
    import torch

    fused, ref_half, ref_fp32 = (torch.as_tensor(t).double() for t in (fused, ref_half, ref_fp32))
    ours = (fused - ref_fp32).abs().max().item()
    theirs = (ref_half - ref_fp32).abs().max().item()
    return ours, theirs, 2 * theirs + HALF_SLACK * ref_fp32.abs().max().item()


def half_ok(fused, ref_half, ref_fp32) -> bool:
    """flash-attention's rule for bf16 / fp16 kernels: max|fused - ref_fp32| is at most twice
    max|ref_half - ref_fp32|, where ref_half is the reference op run in the low dtype and
    ref_fp32 the same op on the same (rounded) inputs in fp32; plus HALF_SLACK."""
    ours, _, allowed = half_errors(fused, ref_half, ref_fp32)
    return ours <= allowed


def assert_matches_ref(name: str, fused, ref, ref_fp32=None) -> None:
    """The suite's comparison of a fused op output with its reference.

    fp32 outputs: rel_err(fused, ref) <= FP32. bf16 / fp16 outputs: `half_ok`, where `ref`
    is the reference run in that dtype and `ref_fp32` the reference on the same inputs in fp32.
    """
    import torch

    assert fused.shape == ref.shape and fused.dtype == ref.dtype, (name, fused.shape, ref.shape)
    if fused.dtype == torch.float32:
        err = rel_err(fused.cpu(), ref.cpu())
        assert err <= FP32, f"{name}: fp32 rel err {err:.3g} > {FP32}"
    else:
        ours, theirs, allowed = half_errors(fused.cpu(), ref.cpu(), ref_fp32.cpu())
        assert ours <= allowed, f"{name}: {fused.dtype} max err {ours:.3g} > 2 x torch's {theirs:.3g}"

"""The fused backend on CUDA computes what the reference computes, in fp32, fp16 and bf16:
our CUDA kernels, merged QKV, packed attention through the varlen kernels, and padded
batches unpadded by default (ntengine.backends.unpad). Skipped without a CUDA GPU and
ntengine._C_cuda; bench/gpu_acceptance.py runs it on one.

fp32 is held to FP32 against the reference (TF32 off, torch's default); fp16/bf16 to HALF
against the fp32 reference, as the CPU's half tests are.
"""

import numpy as np
import pytest

import ntengine
from ntengine import ops
from ntengine.backends import unpad
from tolerances import FIXTURE, FP32, HALF, rel_err
from windows import consecutive_windows

CUDA_OK, CUDA_WHY = ops.cuda_status()
pytestmark = pytest.mark.skipif(not CUDA_OK, reason=f"CUDA: {CUDA_WHY}")
DTYPES = ["float32", "float16", "bfloat16"]


def _tolerance(dtype):
    return FP32 if dtype == "float32" else HALF


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", ["v1_tiny", "v2_tiny"])
def test_fixtures(fixtures_dir, model, dtype):
    """Every layer, attention maps and logits of the official goldens' batch."""
    golden = np.load(fixtures_dir / model / "golden.npz")
    ref = ntengine.compile(fixtures_dir / model, backend="torch")  # CPU fp32
    fused = ntengine.compile(fixtures_dir / model, device="cuda", dtype=dtype, backend="fused")
    assert fused.backend == "fused"
    n = ref.config.num_layers
    args = dict(layers=range(1, n + 1), attention_maps=[(1, 0), (n, 1)])
    a = ref.forward(golden["tokens"], golden["sequence_mask"], **args)
    b = fused.forward(golden["tokens"], golden["sequence_mask"], **args)
    real = golden["sequence_mask"].astype(bool)
    for key in a:
        assert rel_err(b[key][real], a[key][real]) <= _tolerance(dtype), key
    if dtype == "float32":
        assert rel_err(b["logits"][real], golden["logits"][real]) <= FIXTURE


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", ["v1_tiny", "v2_tiny"])
def test_padded_unpadded_and_packed_batches(fixtures_dir, ecoli, model, dtype, monkeypatch):
    """The default (unpadded), padded and packed layouts of one mixed-length batch."""
    seqs = consecutive_windows(ecoli, [600, 7, 1, 155, 61, 300])
    ref = ntengine.compile(fixtures_dir / model, backend="torch").embed(seqs, pooling="none")
    engine = ntengine.compile(fixtures_dir / model, device="cuda", dtype=dtype, backend="fused", batch_size=6)
    calls, real_forward = [], unpad.forward
    monkeypatch.setattr(unpad, "forward", lambda *a, **k: calls.append(1) or real_forward(*a, **k))
    default = engine.embed(seqs, pooling="none")
    assert calls, "fused CUDA did not unpad a padded batch"
    engine.runtime.unpad_padded = False
    padded = engine.embed(seqs, pooling="none")
    engine.packed = True
    packed = engine.embed(seqs, pooling="none")
    for layout in (default, padded, packed):
        for got, want in zip(layout, ref):
            assert rel_err(got, want) <= _tolerance(dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_v2_50m_shape_real_genome(v2_50m, ecoli, dtype):
    """The published v2-50M shape (D = 32: the varlen kernels' path) on 6 kb, 2.5 kb and
    1 kb E. coli windows in one batch, against the fp32 reference on the same GPU."""
    seqs = consecutive_windows(ecoli, [6000, 2500, 999])
    ref = ntengine.compile(v2_50m, device="cuda", backend="torch").embed(seqs)
    fused = ntengine.compile(v2_50m, device="cuda", dtype=dtype, backend="fused")
    assert 0 < rel_err(fused.embed(seqs), ref) <= HALF
    fused.packed = True
    assert 0 < rel_err(fused.embed(seqs), ref) <= HALF


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_graph_replays_equal_the_unpadded_engine(fixtures_dir, ecoli, dtype):
    """A captured graph (padded shape, no unpadding) replayed for two batches of one shape
    equals the plain fused engine, which unpads them."""
    plain = ntengine.compile(fixtures_dir / "v2_tiny", device="cuda", dtype=dtype, backend="fused")
    graphed = ntengine.compile(fixtures_dir / "v2_tiny", device="cuda", dtype=dtype, backend="fused",
                               cuda_graphs=True)
    for start in (0, 5000):  # same lengths, other bases: the second call replays
        seqs = consecutive_windows(ecoli[start:], [600, 300, 61])
        for got, want in zip(graphed.embed(seqs, pooling="none"), plain.embed(seqs, pooling="none")):
            assert rel_err(got, want) <= _tolerance(dtype)
    assert len(graphed.runtime.graphs) == 1

"""Engine behaviour: pooling, batching invariance, dtypes and clear errors."""


import numpy as np
import pytest
import torch

import ntengine
from ntengine.tokenizer import InvalidSequenceError
from tolerances import FP32, HALF, rel_err
from windows import consecutive_windows


@pytest.fixture(scope="module")
def tiny(fixtures_dir):
    return {m: ntengine.compile(fixtures_dir / m) for m in ("v1_tiny", "v2_tiny")}


@pytest.mark.parametrize("model", ["v1_tiny", "v2_tiny"])
def test_batched_equals_alone(tiny, ecoli, model):
    """A sequence embedded alone equals the same sequence inside a padded batch."""
    engine = tiny[model]
    seqs = consecutive_windows(ecoli, [7, 300, 61, 1, 155, 0 + 6])
    batched = engine.embed(seqs, pooling="none", batch_size=4)
    for seq, rows in zip(seqs, batched):
        alone = engine.embed([seq], pooling="none")[0]
        assert rows.shape == alone.shape == (len(engine.tokenizer.encode(seq)), engine.config.embed_dim)
        assert rel_err(rows, alone) <= FP32


@pytest.mark.parametrize("model", ["v1_tiny", "v2_tiny"])
def test_mean_and_cls_pooling(tiny, ecoli, model):
    engine = tiny[model]
    seqs = consecutive_windows(ecoli, [64, 13, 200], start=1000) + ["ACGTNNACGTAC"]
    per_token = engine.embed(seqs, pooling="none")
    mean, cls = engine.embed(seqs, pooling="mean"), engine.embed(seqs, pooling="cls")
    assert mean.shape == cls.shape == (len(seqs), engine.config.embed_dim) and mean.dtype == np.float32
    for i, rows in enumerate(per_token):
        np.testing.assert_allclose(cls[i], rows[0], rtol=1e-6)
        np.testing.assert_allclose(mean[i], rows[1:].mean(0), rtol=1e-5, atol=1e-6)  # no <cls>


def test_layer_selection_matches_forward(tiny, ecoli):
    engine = tiny["v2_tiny"]
    seq = ecoli[:120]
    ids = engine.tokenizer.encode(seq)[None]
    out = engine.forward(ids, layers=(1,))
    np.testing.assert_allclose(engine.embed([seq], layer=1, pooling="none")[0], out["embeddings_1"][0], rtol=1e-6)
    np.testing.assert_allclose(engine.embed([seq], layer=2, pooling="none")[0], out["embeddings"][0], rtol=1e-6)


def test_logits_per_sequence(tiny, ecoli):
    engine = tiny["v1_tiny"]
    seqs = consecutive_windows(ecoli, [30, 90])
    logits = engine.logits(seqs)
    for seq, lg in zip(seqs, logits):
        ids = engine.tokenizer.encode(seq)[None]
        assert lg.shape == (ids.shape[1], engine.config.vocab_size)
        assert rel_err(lg, engine.forward(ids)["logits"][0]) <= FP32


def test_torch_in_torch_out(tiny):
    engine = tiny["v2_tiny"]
    ids = torch.from_numpy(engine.tokenizer.encode("ACGTACGGGTTTAAN").astype(np.int64))[None]
    out = engine.forward(ids)
    assert isinstance(out["logits"], torch.Tensor) and out["logits"].dtype == torch.float32


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_v2_50m_shape_real_genome_half_close_to_fp32(v2_50m, ecoli, dtype):
    seqs = consecutive_windows(ecoli, [6000, 2500, 999])
    fp32 = ntengine.compile(v2_50m)
    half = ntengine.compile(v2_50m, dtype=dtype, backend="torch")  # the reference, on any CPU
    assert fp32.config.num_parameters > 50e6
    a, b = fp32.embed(seqs), half.embed(seqs)
    assert b.dtype == np.float32
    assert 0 < rel_err(b, a) <= HALF  # close, and not secretly computed in fp32


def test_bad_characters_name_sequence_and_position(tiny):
    engine = tiny["v2_tiny"]
    with pytest.raises(InvalidSequenceError, match=r"sequence 1, position 4: invalid character 'R'"):
        engine.embed(["ACGTAC", "ACGTRACGT"])


def test_over_long_input_is_refused(tiny, ecoli):
    engine = tiny["v1_tiny"]  # max_positions 128 -> 127 six-mers after <cls>
    with pytest.raises(ValueError, match="128"):
        engine.embed([ecoli[: 6 * 128]])
    engine.embed([ecoli[: 6 * 127]])  # the longest that fits


def test_argument_errors(tiny, fixtures_dir):
    engine = tiny["v2_tiny"]
    ids = engine.tokenizer.encode("ACGTAC")[None]
    with pytest.raises(ValueError, match="layer 3 out of range 1..2"):
        engine.forward(ids, layers=(3,))
    with pytest.raises(ValueError, match=r"attention map \(1, 4\) out of range"):
        engine.forward(ids, attention_maps=[(1, 4)])
    with pytest.raises(ValueError, match="pooling must be"):
        engine.embed(["ACGT"], pooling="max")
    with pytest.raises(TypeError, match="list of sequences"):
        engine.embed("ACGT")
    with pytest.raises(ValueError, match="backend must be"):
        ntengine.compile(fixtures_dir / "v2_tiny", backend="openvino")
    with pytest.raises(ValueError, match="dtype must be"):
        ntengine.compile(fixtures_dir / "v2_tiny", dtype="int8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_a_clear_error(fixtures_dir):
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        ntengine.compile(fixtures_dir / "v2_tiny", device="cuda")

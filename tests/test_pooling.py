"""The shared helpers behind embed, genome jobs, variant scoring and fine-tuning heads."""

import numpy as np
import torch

from ntengine.pooling import log_softmax, pool_mean, sorted_batches


def test_sorted_batches_longest_first_and_stable():
    lengths = np.array([3, 9, 9, 1, 5, 9, 2])
    groups = list(sorted_batches(lengths, 3))
    assert [rows.tolist() for rows, _ in groups] == [[1, 2, 5], [4, 0, 6], [3]]
    assert [width for _, width in groups] == [9, 5, 1]


def test_pool_mean_numpy_and_torch_agree_and_skip_masked_tokens():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(2, 5, 4)).astype(np.float32)
    weight = np.array([[0, 1, 1, 1, 0], [0, 1, 0, 0, 0]], dtype=bool)
    want = np.stack([emb[0, 1:4].mean(0), emb[1, 1]])
    np.testing.assert_allclose(pool_mean(emb, weight), want, rtol=1e-6)
    got = pool_mean(torch.from_numpy(emb).requires_grad_(), torch.from_numpy(weight))
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-6)
    assert got.requires_grad


def test_log_softmax_is_stable_and_normalised():
    x = np.array([[1000.0, 1001.0, 999.0], [-5.0, 0.0, 5.0]], dtype=np.float32)
    out = log_softmax(x)
    assert out.dtype == np.float64 and np.isfinite(out).all()
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(out[0] - out[0, 0], [0.0, 1.0, -1.0], atol=1e-12)

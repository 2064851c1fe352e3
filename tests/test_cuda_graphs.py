"""CudaGraphBackend's bookkeeping, on the CPU: a stand-in capture replays the wrapped
backend on the static buffers, so the shape keys, input copies, output clones and
eviction are checked here; the real capture needs a GPU (tests/ops and the GPU script)."""

import pytest
import torch

import ntengine
from ntengine.backends.cuda_graphs import CudaGraphBackend


class CpuStandIn(CudaGraphBackend):
    """Captures nothing: its replay reruns the backend on the static buffers into the
    static outputs, as a CUDA graph replay would."""

    captures = 0

    def _capture(self, ids, mask, layers, logits):
        CpuStandIn.captures += 1
        static_ids, static_mask = ids.clone(), mask.clone()
        static_out = self.inner(static_ids, static_mask, layers=layers, logits=logits)

        def replay():
            for name, t in self.inner(static_ids, static_mask, layers=layers, logits=logits).items():
                static_out[name].copy_(t)
        return static_ids, static_mask, static_out, replay


def test_replays_per_shape_and_hands_out_copies(fixtures_dir, monkeypatch):
    reference = ntengine.compile(fixtures_dir / "v2_tiny", backend="torch")
    inner = reference.runtime
    monkeypatch.setattr(inner, "device", torch.device("cuda"))  # what the wrapper insists on; nothing runs there
    graphed = CpuStandIn(inner, max_graphs=2)
    tok = reference.tokenizer
    batches = [tok.batch_encode(seqs) for seqs in (["ACGTAGGCTAGCATCGATCG" * 5, "TTGACA" * 4],
                                                   ["GATTACA" * 9], ["ACGTAGGCTAGCATCGATCG" * 5, "CCGTA" * 3])]
    outs = []
    for enc in batches:
        ids, mask = torch.from_numpy(enc.ids).long(), torch.from_numpy(enc.attention_mask)
        got = graphed(ids, mask, layers=(1,), logits=False)
        want = inner(ids, mask, layers=(1,), logits=False)
        assert got.keys() == want.keys()
        for k in got:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
        outs.append(got)
    assert CpuStandIn.captures == 2  # batches 1 and 3 share a shape: one graph for both
    assert not torch.equal(outs[0]["embeddings"], outs[2]["embeddings"])  # a copy, not the static buffer
    graphed(torch.from_numpy(batches[1].ids).long(), torch.from_numpy(batches[1].attention_mask), logits=False)
    assert len(graphed.graphs) == 2 and CpuStandIn.captures == 3  # no layers asked: a new key, the oldest evicted


def test_refused_off_cuda(fixtures_dir):
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device, not cpu"):
        ntengine.compile(fixtures_dir / "v2_tiny", cuda_graphs=True)

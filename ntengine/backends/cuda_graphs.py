"""CUDA graphs for the PyTorch backends: one forward captured per input shape, replayed
on later calls of that shape. Small batches are launch-bound on GPUs (a 12-layer encoder
launches hundreds of kernels per call): a replay launches them all at once.

The inputs are copied into the graph's static buffers and the outputs cloned out of its
static ones, so callers see ordinary tensors. Packed rows (cu_seqlens) and attention maps
run uncaptured. Shapes are the exact (batch, tokens): callers with many lengths should
bucket them (Engine.embed sorts by length already). Not yet run on a GPU in this project.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from ntengine.backends.base import Backend
from ntengine.model import right_padding_lengths


class CudaGraphBackend(Backend):
    """Wraps a TorchBackend on a CUDA device; keeps the `max_graphs` most recent shapes."""

    def __init__(self, inner: Backend, max_graphs: int = 32):
        if inner.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {inner.device}")
        self.inner, self.max_graphs = inner, max_graphs
        self.name, self.device, self.dtype, self.config = inner.name, inner.device, inner.dtype, inner.config
        self.packed, self.model = inner.packed, inner.model
        self.graphs: OrderedDict = OrderedDict()

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def __call__(self, input_ids, attention_mask=None, layers=(), attention_maps=(), logits=True, cu_seqlens=None):
        if attention_maps or cu_seqlens is not None:
            return self.inner(input_ids, attention_mask, layers=layers, attention_maps=attention_maps,
                              logits=logits, cu_seqlens=cu_seqlens)
        mask = (input_ids != self.config.pad_id) if attention_mask is None else attention_mask
        right_padding_lengths(mask.bool())  # the model's check, which cannot run inside a replay
        key = (tuple(input_ids.shape), input_ids.dtype, mask.dtype, tuple(layers), bool(logits))
        if key not in self.graphs:
            if len(self.graphs) >= self.max_graphs:
                self.graphs.popitem(last=False)
            self.graphs[key] = self._capture(input_ids, mask, tuple(layers), bool(logits))
        self.graphs.move_to_end(key)
        static_ids, static_mask, static_out, replay = self.graphs[key]
        static_ids.copy_(input_ids)
        static_mask.copy_(mask)
        replay()
        return {name: t.clone() for name, t in static_out.items()}

    def _capture(self, ids, mask, layers, logits):
        """(static ids, static mask, static outputs, replay) for one shape: warmed up on a side
        stream (allocator and autotuning settle before capture), then captured."""
        static_ids, static_mask = ids.clone(), mask.clone()
        # The model itself, not inner(): a replay has one shape, and inner's unpadding
        # (fused CUDA) would make the token count depend on the data.
        model = self.inner.model
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                model(static_ids, static_mask, layers=layers, logits=logits)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = model(static_ids, static_mask, layers=layers, logits=logits)
        return static_ids, static_mask, static_out, graph.replay

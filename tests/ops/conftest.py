"""Devices and seeding for the fused-op tests.

Every op test takes the `device` fixture: "cpu" always, and "cuda", which skips with
the reason when `ntengine.ops.cuda_status()` says the CUDA kernels cannot run here (it
is the one place that asks torch about CUDA, and it does not initialise a context).
"""

import zlib

import pytest
import torch

from ntengine import ops

CUDA_OK, CUDA_WHY = ops.cuda_status()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA_OK, reason=f"CUDA: {CUDA_WHY}"))]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _seed(request):
    """Fresh inputs per test case, reproducible from its id."""
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))

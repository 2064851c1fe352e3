"""Devices and seeding for the fused-op tests.

Every op test takes the `device` fixture (and a `dtype` from tolerances.FUSED_DTYPES;
float16 runs on CUDA only): "cpu" once per CPU ISA level (the kernels
forced to that build; levels this CPU cannot run skip with the reason), and "cuda",
which skips with the reason when `ntengine.ops.cuda_status()` says the CUDA kernels
cannot run here (it is the one place that asks torch about CUDA, and it does not
initialise a context).
"""

import zlib

import pytest
import torch

from isa import isa_params
from ntengine import cpu, ops

CUDA_OK, CUDA_WHY = ops.cuda_status()
DEVICES = [*isa_params("cpu-"),
           pytest.param("cuda", marks=pytest.mark.skipif(not CUDA_OK, reason=f"CUDA: {CUDA_WHY}"))]


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "cuda":
        yield "cuda"
        return
    with cpu.forced(request.param):
        yield "cpu"


@pytest.fixture(autouse=True)
def _float16_on_cuda_only(request):
    """float16 (the GPU default dtype) is a parameter of every device test, but fused
    float16 kernels exist on CUDA only: each op's test_float16_kernel checks that the CPU
    refuses them."""
    params = getattr(request.node, "callspec", None)
    params = params.params if params else {}
    if params.get("dtype") is torch.float16 and params.get("device") != "cuda":
        pytest.skip("fused float16 kernels run on CUDA only")


@pytest.fixture(autouse=True)
def _seed(request):
    """Fresh inputs per test case, reproducible from its id."""
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))

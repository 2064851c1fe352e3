"""ntengine._C_cuda builds and imports on any machine, GPU or not: the three ops exist with
their CPU twins' arguments plus a trailing stream, device queries never raise, and the
host-side checks (the CPU launchers' too) reject bad arguments before anything reaches a device.

The numerical CUDA tests live in tests/ops/test_<op>.py (parametrised over devices).
"""

import importlib
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

OPS = ("qkv_rope", "swiglu", "add_layernorm")


@pytest.fixture(scope="module")
def cuda_mod():
    """The built module; skip where CUDA could not have been built, fail where it should."""
    if importlib.util.find_spec("ntengine._C_cuda") is None:
        if shutil.which("nvcc") is None:
            pytest.skip("ntengine._C_cuda not built: no nvcc on PATH (CUDA is optional)")
        request = os.environ.get("NTENGINE_CUDA", "").strip().lower()
        if request in ("0", "off", "false", "no"):
            pytest.skip("ntengine._C_cuda not built: NTENGINE_CUDA=0 turned it off")
        if request not in ("1", "on", "true", "yes") and not _nvidia_gpu_seen():
            pytest.skip("ntengine._C_cuda not built: no NVIDIA GPU here, and the default build "
                        "(NTENGINE_CUDA=auto) needs one; CI sets NTENGINE_CUDA=1")
        pytest.fail("nvcc is on PATH but ntengine._C_cuda was not built: reinstall with "
                    "`pip install -e .` and read CMake's 'ntengine:' status lines")
    # Present, so it must import: the static CUDA runtime needs no driver or GPU to load.
    return importlib.import_module("ntengine._C_cuda")


def _nvidia_gpu_seen() -> bool:
    """CMakeLists.txt's test for NTENGINE_CUDA=auto: a GPU in the driver's list, or in nvidia-smi's."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True)
    return listed.returncode == 0 and "GPU" in listed.stdout


def _param_types(fn) -> list[str]:
    """Parameter types from pybind11's signature line: 'name(arg0: T0, arg1: T1) -> R'."""
    inside = fn.__doc__.splitlines()[0].split("(", 1)[1].rsplit(") ->", 1)[0]
    return [p.split(":", 1)[1].strip() for p in re.split(r",\s*(?=arg\d+:)", inside)]


@pytest.mark.parametrize("name", OPS)
def test_exposes_op(cuda_mod, name):
    fn = getattr(cuda_mod, name)
    assert callable(fn)
    assert "kernels.h" in fn.__doc__  # one-line docstring pointing at the contract


@pytest.mark.parametrize("name", OPS)
def test_arguments_mirror_cpu_twin(cuda_mod, name):
    """Same arguments as ntengine._C's op, in the same order, plus one integer stream."""
    cpu = importlib.import_module("ntengine._C")
    if not hasattr(cpu, name):
        pytest.skip(f"ntengine._C has no {name} to compare with (CPU kernels not built)")
    cpu_types, cuda_types = _param_types(getattr(cpu, name)), _param_types(getattr(cuda_mod, name))
    assert cuda_types[:-1] == cpu_types
    assert cuda_types[-1] == cpu_types[0]  # stream: an integer handle, like the pointers


def test_device_queries_never_raise(cuda_mod):
    n = cuda_mod.device_count()
    assert isinstance(n, int) and n >= 0
    status = cuda_mod.device_status()
    assert isinstance(status, str) and status
    if n > 0:
        assert status == f"{n} CUDA device(s)"
    else:  # no GPU: the reason is the CUDA error name, e.g. cudaErrorNoDevice
        assert status.startswith("cudaError") or status.startswith("0 ")


def test_build_metadata(cuda_mod):
    assert re.fullmatch(r"\d+\.\d+", cuda_mod.cuda_version)
    archs = cuda_mod.cuda_archs.split(",")
    assert archs and all(re.fullmatch(r"\d+[a-z]?(-real|-virtual)?|native|all(-major)?", a)
                         for a in archs), cuda_mod.cuda_archs


def test_empty_sizes_are_noops(cuda_mod):
    """Zero-sized work returns before any CUDA call: null pointers, no device needed."""
    cuda_mod.qkv_rope(0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 2, 8, 1.0, 0, 0)  # B = 0
    cuda_mod.swiglu(0, 0, 0, 0, 8, 1, 0)  # N = 0
    cuda_mod.add_layernorm(0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 1e-5, 2, 0)  # N = 0


@pytest.mark.parametrize("module", ["cpu", "cuda"])
@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, *stream: m.swiglu(0, 16, 0, 0, 8, 7, *stream), "unknown dtype code 7"),
        (lambda m, *stream: m.swiglu(0, 8, 0, 2, 8, 0, *stream), "x_row_stride 8 < 2F = 16"),
        (lambda m, *stream: m.add_layernorm(0, 4, 0, 8, 0, 0, 0, 0, 2, 8, 1e-5, 0, *stream), "must be >= E = 8"),
        # Odd D is refused with rotary tables only (v1 models such as AgroNT-1B have D = 75).
        (lambda m, *stream: m.qkv_rope(0, 9, 0, 0, 0, 0, 16, 16, 1, 1, 1, 3, 1.0, 0, *stream),
         "need an even head size D, got 3"),
        (lambda m, *stream: m.qkv_rope(0, 24, 0, 0, 0, 0, 16, 0, 1, 1, 1, 8, 1.0, 0, *stream), "both be given"),
    ],
    ids=["dtype", "swiglu-stride", "layernorm-stride", "odd-head-rotary", "cos-without-sin"],
)
def test_bad_arguments_raise_before_launch(request, module, call, message):
    """The CPU and the CUDA launchers run the same host-side checks (kernels/launch_checks.h)."""
    if module == "cuda":
        mod, stream = request.getfixturevalue("cuda_mod"), (0,)
    else:
        mod, stream = importlib.import_module("ntengine._C"), ()
    with pytest.raises(RuntimeError, match=re.escape(message)):
        call(mod, *stream)


def test_launch_without_gpu_raises(cuda_mod):
    """Where no GPU is usable, a real launch reports the CUDA error instead of crashing."""
    if cuda_mod.device_count() > 0:
        pytest.skip("a GPU is present: this test would launch on made-up pointers")
    with pytest.raises(RuntimeError, match="swiglu_kernel launch failed: cudaError"):
        cuda_mod.swiglu(256, 16, 512, 1, 8, 0, 0)
    # An odd head size without tables (AgroNT-1B: H = 20, D = 75) passes the host checks
    # and reaches the launch of the whole-head (non-rotary) kernel.
    with pytest.raises(RuntimeError, match="qkv_split_kernel launch failed: cudaError"):
        cuda_mod.qkv_rope(256, 3 * 20 * 75, 512, 768, 1024, 0, 0, 0, 1, 4, 20, 75, 75**-0.5, 0, 0)

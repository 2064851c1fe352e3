"""`ntengine info` / `ntengine.info()`: the machine and software facts a bug report needs."""

from __future__ import annotations

import importlib.metadata
import platform


def package_version(package: str) -> str | None:
    """Installed version from package metadata (no import: torch stays unloaded)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def info() -> dict:
    """CPU model and flags, the ISA level the CPU kernels run at, oneDNN bf16 support,
    threads, package versions, CUDA devices and whether ntengine._C_cuda is built."""
    import torch

    from ntengine import __version__, cpu, ops

    cuda_ok, cuda_why = ops.cuda_status()
    try:
        from ntengine import _C_cuda  # noqa: F401

        cuda_module = "built"
    except ImportError as err:
        cuda_module = f"not built ({err})"
    return {
        "ntengine": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **cpu.info(),
        "torch": torch.__version__,
        "onnxruntime": package_version("onnxruntime"),
        "tensorrt": package_version("tensorrt"),
        "transformers": package_version("transformers"),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cuda_kernels": "ok" if cuda_ok else cuda_why,
        "_C_cuda": cuda_module,
    }

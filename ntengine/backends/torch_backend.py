"""The PyTorch backends: an NTModel run through the references ("torch") or through our
C++/CUDA kernels with QKV merged into one GEMM ("fused"), and how "auto" picks between them."""

from __future__ import annotations

import hashlib
import json

import torch

from ntengine import cpu, ops
from ntengine.backends import unpad
from ntengine.backends.base import Backend
from ntengine.model import NTModel, key_mask_of

NAMES = ("torch", "fused")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")


def resolve_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} asked for, but this torch sees no CUDA GPU")
    return device


def fused_status(device: torch.device, dtype: torch.dtype) -> tuple[bool, str]:
    """(available, reason): can the fused kernels run this device and dtype here?"""
    if device.type == "cuda":
        return ops.cuda_status()
    if device.type != "cpu":
        return False, f"no fused kernels for {device.type}"
    if ops._C is None or not hasattr(ops._C, "attention"):
        return False, "ntengine._C was built without the CPU kernels: reinstall with `pip install -e .`"
    if dtype == torch.float16:
        return False, "the fused CPU kernels take float32 or bfloat16, not float16"
    if not ops.onednn_available():
        return False, "this torch build lacks oneDNN (mkldnn), which the fused CPU GEMMs use"
    level = cpu.isa()  # raises on a bad NTENGINE_CPU_ISA
    if dtype == torch.bfloat16 and not cpu.onednn_bf16():
        # oneDNN has no bf16 GEMMs below AVX-512 (issue 9): it would crash at the first forward.
        return False, (f"bfloat16 needs AVX-512 (AVX512F/BW/VL/DQ) for oneDNN's bf16 GEMMs; the CPU kernels "
                       f"run at '{level}' here: use dtype='float32'")
    return True, "ok"


def _refuse_slow_half(device: torch.device, dtype: torch.dtype, backend: str) -> None:
    """`auto` never picks a half dtype that only emulated arithmetic can run on this CPU.

    Without AVX-512 (bf16) or AVX512_FP16 (fp16), torch's CPU half kernels convert every
    element and run no faster than float32 (bench/forward.py): the user asked for speed,
    so say so rather than run slowly. backend="torch" still runs them (the reference).
    """
    if device.type != "cpu" or backend != "auto" or dtype == torch.float32:
        return
    if dtype == torch.bfloat16 and cpu.onednn_bf16():
        return
    name = "bfloat16" if dtype == torch.bfloat16 else "float16"
    need = "AVX-512 (AVX512F/BW/VL/DQ)" if dtype == torch.bfloat16 else "AVX512_FP16"
    raise RuntimeError(f"dtype={name!r} on this CPU (kernels at '{cpu.isa()}', no {need}) is emulated and no "
                       f"faster than float32: use dtype='float32' (or backend='torch' to run {name} anyway)")


class TorchBackend(Backend):
    """An NTModel on `device` in `dtype`; with fused=True its instance runs our kernels
    (`NTModel.use_fused_kernels`: QKV merged), so ``backend.model(ids)`` runs them too.

    `unpad_padded`: padded batches with enough padding run as packed rows (`unpad`); on by
    default for fused CUDA, where packed attention has the variable-length kernels.
    """

    packed = True

    def __init__(self, model: NTModel, device: torch.device, dtype: torch.dtype, fused: bool):
        self.name = "fused" if fused else "torch"
        self.device, self.dtype, self.config = device, dtype, model.config
        self.model = model.to(device=device, dtype=dtype).eval()
        if fused:
            self.model.use_fused_kernels()
        self.unpad_padded = fused and device.type == "cuda"

    def __call__(self, input_ids, attention_mask=None, layers=(), attention_maps=(), logits=True, cu_seqlens=None):
        if self.unpad_padded and cu_seqlens is None and not attention_maps:
            unpadding = unpad.plan(key_mask_of(input_ids, attention_mask, self.config.pad_id))
            if unpadding is not None:
                return unpad.forward(self.model, input_ids, unpadding, layers=layers, logits=logits)
        return self.model(input_ids, attention_mask, layers=layers, attention_maps=attention_maps, logits=logits,
                          cu_seqlens=cu_seqlens)

    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        for name, tensor in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy())
        return h.hexdigest()


def open_torch(model: NTModel, device="cpu", dtype="float32", backend: str = "auto") -> TorchBackend:
    """The PyTorch backend `backend` asks for: "auto" picks the fused kernels where they can
    run, else plain torch; an explicit "fused" that cannot run raises with the reason."""
    if backend not in ("auto",) + NAMES:
        raise ValueError(f"backend must be 'auto' or one of {list(NAMES)} here, got {backend!r}")
    device, dtype = resolve_device(device), resolve_dtype(dtype)
    _refuse_slow_half(device, dtype, backend)
    ok, why = fused_status(device, dtype)
    if backend == "fused" and not ok:
        raise RuntimeError(f"backend 'fused' is not available: {why}")
    return TorchBackend(model, device, dtype, fused=ok if backend == "auto" else backend == "fused")

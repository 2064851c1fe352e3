"""TensorRT backend: runs a plan written by `ntengine.export.to_tensorrt` on a CUDA GPU.

Inputs and outputs are torch tensors on the GPU whose pointers TensorRT reads and writes
directly (no host copies in the loop); it runs on torch's current CUDA stream, so it
orders with the torch work around it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ntengine.backends.artefact import META_GPU, META_PROFILE, META_TRT, ArtefactBackend, require_tensorrt, sidecar



class TrtBackend(ArtefactBackend):
    """A deserialised TensorRT engine with one execution context."""

    name = "tensorrt"

    def __init__(self, path, device="cuda"):
        trt = require_tensorrt()
        self.path = Path(path)
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"the tensorrt backend runs on a CUDA device, not {self.device}")
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such TensorRT plan")
        if not sidecar(self.path).is_file():
            raise ValueError(f"{self.path}: no {sidecar(self.path).name} beside it; plans need the metadata file "
                             "`ntengine export --format tensorrt` writes with them")
        meta = json.loads(sidecar(self.path).read_text())
        self._read_metadata(meta)
        built = f"TensorRT {meta.get(META_TRT)} on {meta.get(META_GPU)}"
        here = f"TensorRT {trt.__version__} on {torch.cuda.get_device_name(self.device)}"
        with torch.cuda.device(self.device):
            self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise ValueError(f"{self.path}: TensorRT could not load this plan (built with {built}; this is "
                                 f"{here}): rebuild it here with `ntengine export --format tensorrt`")
            self.context = self.engine.create_execution_context()
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        if names != {"input_ids", "attention_mask", *self.outputs}:
            raise ValueError(f"{self.path}: engine tensors {sorted(names)} do not match its metadata")
        self.profile = {k: tuple(v) for k, v in meta[META_PROFILE].items()}
        # int32 ids + bool mask since 0.1.0 (the tokenizer's types), int64 both in older plans.
        types = {trt.int32: torch.int32, trt.int64: torch.int64, trt.bool: torch.bool}
        self._input_types = {n: types[self.engine.get_tensor_dtype(n)] for n in ("input_ids", "attention_mask")}

    def _run(self, ids, mask, names):
        (b, n), lo, hi = ids.shape, self.profile["min"], self.profile["max"]
        if not (lo[0] <= b <= hi[0] and lo[1] <= n <= hi[1]):
            raise ValueError(f"batch {b} x {n} tokens is outside this plan's profile ({lo[0]}..{hi[0]} x "
                             f"{lo[1]}..{hi[1]}): rebuild it with --min/--max covering it")
        ctx = self.context
        inputs = {"input_ids": ids, "attention_mask": mask}
        for name, t in inputs.items():
            inputs[name] = t.to(self.device, self._input_types[name]).contiguous()
            ctx.set_input_shape(name, (b, n))
            ctx.set_tensor_address(name, inputs[name].data_ptr())
        out = {}
        for name in self.outputs:  # every output needs a buffer, wanted or not
            out[name] = torch.empty(tuple(ctx.get_tensor_shape(name)), dtype=torch.float32, device=self.device)
            ctx.set_tensor_address(name, out[name].data_ptr())
        if not ctx.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError(f"{self.path.name}: TensorRT execution failed (see its log above)")
        return {k: out[k] for k in names}

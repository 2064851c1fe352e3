"""What an Engine runs on: one `Backend` contract and its implementations.

* `torch_backend.TorchBackend`: an NTModel in PyTorch, through the references or our fused
  kernels (a property of the model instance, so two engines never share a switch);
* `ort_backend.OrtBackend`: an exported ONNX file in ONNX Runtime (CPU);
* `trt_backend.TrtBackend`: a TensorRT plan on a CUDA GPU.

The artefact backends import their runtimes lazily.
"""

from ntengine.backends.base import Backend

__all__ = ["Backend"]

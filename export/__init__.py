"""Export the one NT model (ntengine/model.py) to deployment formats.

Installed as ``ntengine.export``. It imports ``model``, ``ops``, ``config`` and
``checkpoint``, never ``engine``. onnx, onnxruntime and onnxscript are optional:
``pip install 'ntengine[onnx]'``.
"""

from ntengine.export.onnx import to_onnx

__all__ = ["to_onnx"]

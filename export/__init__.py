"""Export the one NT model (ntengine/model.py) to deployment formats.

Installed as ``ntengine.export``. It imports ``model``, ``ops``, ``config`` and
``checkpoint``, never ``engine``. onnx, onnxruntime and onnxscript are optional
(``pip install 'ntengine[onnx]'``), and so is tensorrt (``'ntengine[tensorrt]'``, with a GPU).
"""

from ntengine.export.onnx import to_onnx
from ntengine.export.tensorrt import to_tensorrt

__all__ = ["to_onnx", "to_tensorrt"]

"""ONNX Runtime backend: runs an artefact written by `ntengine.export.to_onnx`.

onnxruntime is imported lazily (``pip install 'ntengine[onnx]'``). The artefact carries
the NTConfig, its output list and its dtype in metadata_props; files without them are
refused with a clear error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ntengine.backends.artefact import ONNX_INSTALL_HINT, ArtefactBackend


def _ort():
    try:
        import onnxruntime
    except ImportError as err:
        raise RuntimeError(f"the onnxruntime backend needs onnxruntime ({err}): {ONNX_INSTALL_HINT}") from None
    return onnxruntime


class OrtBackend(ArtefactBackend):
    """An ONNX Runtime session (CPU EP) over an ntengine ONNX artefact."""

    name = "onnxruntime"
    device = torch.device("cpu")

    def __init__(self, path, threads: int | None = None):
        ort = _ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: not a loadable ONNX model ({type(err).__name__}: {err})") from None
        self._read_metadata(self.session.get_modelmeta().custom_metadata_map)
        graph_outputs = {o.name for o in self.session.get_outputs()}
        types = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}
        self._input_types = {i.name: types.get(i.type) for i in self.session.get_inputs()}
        inputs = set(self._input_types)
        if (not set(self.outputs) <= graph_outputs or inputs != {"input_ids", "attention_mask"}
                or None in self._input_types.values()):
            raise ValueError(f"{self.path}: graph inputs {sorted(inputs)} / outputs {sorted(graph_outputs)} do not "
                             f"match its ntengine metadata (outputs {list(self.outputs)}, integer or bool inputs)")

    def run(self, ids: np.ndarray, mask: np.ndarray, names) -> dict[str, np.ndarray]:
        """Run the session: ids, mask [B, L] -> {name: float32 array} for `names`. Inputs are
        cast to the graph's types: int32 ids and a bool mask (the tokenizer's own output)
        since 0.1.0, int64 both in files exported before."""
        names = list(names)
        feed = {"input_ids": ids, "attention_mask": mask}
        res = self.session.run(names, {k: np.ascontiguousarray(v, self._input_types[k]) for k, v in feed.items()})
        return dict(zip(names, res))

    def _run(self, ids, mask, names):
        res = self.run(ids.cpu().numpy(), mask.cpu().numpy(), names)
        return {k: torch.from_numpy(v) for k, v in res.items()}

"""Task heads stored beside a checkpoint: ours (written by `ntengine train finetune`) and
transformers' ESM fine-tunes.

Ours: a plain checkpoint folder plus ``head.json`` (task, pooling, layer, labels) and
``head.safetensors`` (one linear layer). `ntengine.compile` loads either kind when it is
there and `Engine.predict(seqs)` applies it. The module that trains one is
`ntengine.train.heads.SequenceModel`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ntengine.checkpoint.common import CheckpointError, write_safetensors

HEAD_CONFIG, HEAD_WEIGHTS = "head.json", "head.safetensors"
TASKS, POOLINGS = ("classification", "regression"), ("mean", "cls")
# transformers' ESM task heads, by the tensors they store.
_ESM_SEQUENCE = {"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                 "classifier.out_proj.bias"}
_ESM_TOKEN = {"classifier.weight", "classifier.bias"}
_PROBLEM_TYPES = {"regression": "regression", "single_label_classification": "classification",
                  "multi_label_classification": "multi_label"}


def save_head(folder, config: dict, head: nn.Linear) -> None:
    folder = Path(folder)
    write_safetensors({k: v.detach().float().cpu().contiguous() for k, v in head.state_dict().items()},
                      folder / HEAD_WEIGHTS)
    (folder / HEAD_CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def load_head(folder) -> tuple[dict, nn.Linear] | None:
    """(head config, float32 linear head) stored in a checkpoint folder, or None."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder.is_dir() and (folder / HEAD_CONFIG).is_file()):
        return None
    config = json.loads((folder / HEAD_CONFIG).read_text())
    state = load_file(str(folder / HEAD_WEIGHTS))
    out, width = state["weight"].shape
    head = nn.Linear(width, out)
    head.load_state_dict(state)
    if out != config["num_outputs"] or config["task"] not in TASKS or config["pooling"] not in POOLINGS:
        raise ValueError(f"{folder}: {HEAD_CONFIG} does not match {HEAD_WEIGHTS}")
    return config, head.eval()


def esm_head(tensors: dict[str, torch.Tensor], hf_config: dict, embed_dim: int) -> tuple[dict, nn.Module] | None:
    """The task head of a transformers ESM fine-tune, as transformers computes it, or None.

    EsmForSequenceClassification: the `<cls>` row of the final embeddings -> dense -> tanh ->
    out_proj. EsmForTokenClassification: one linear layer on every token's final embedding.
    Dropout is inactive at inference. `tensors` holds the file's ``classifier.*`` entries.
    """
    if not tensors:
        return None
    keys = set(tensors)
    if keys == _ESM_SEQUENCE:
        outputs = tensors["classifier.out_proj.weight"].shape[0]
        module = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Tanh(), nn.Linear(embed_dim, outputs))
        names = {"0.weight": "classifier.dense.weight", "0.bias": "classifier.dense.bias",
                 "2.weight": "classifier.out_proj.weight", "2.bias": "classifier.out_proj.bias"}
        source, pooling = "EsmForSequenceClassification", "cls"
    elif keys == _ESM_TOKEN:
        outputs = tensors["classifier.weight"].shape[0]
        module = nn.Linear(embed_dim, outputs)
        names = {"weight": "classifier.weight", "bias": "classifier.bias"}
        source, pooling = "EsmForTokenClassification", "none"
    else:
        raise CheckpointError(f"unrecognised classifier tensors {sorted(keys)}: expected those of "
                              f"EsmForSequenceClassification {sorted(_ESM_SEQUENCE)} or "
                              f"EsmForTokenClassification {sorted(_ESM_TOKEN)}")
    wrong = [f"{key} {list(tensors[key].shape)}, expected {list(p.shape)}"
             for name, p in module.state_dict().items() if tuple(tensors[key := names[name]].shape) != p.shape]
    if wrong:
        raise CheckpointError("wrong shape for " + "; ".join(wrong))
    module.load_state_dict({name: tensors[key].float() for name, key in names.items()})
    problem = hf_config.get("problem_type")
    if problem is not None and problem not in _PROBLEM_TYPES:
        raise CheckpointError(f"unknown problem_type {problem!r} in config.json: "
                              f"expected one of {list(_PROBLEM_TYPES)}")
    # transformers infers regression for one output and single-label classification otherwise.
    task = _PROBLEM_TYPES[problem] if problem else ("regression" if outputs == 1 else "classification")
    id2label = hf_config.get("id2label") or {}
    labels = [id2label.get(str(i), id2label.get(i)) for i in range(outputs)] if len(id2label) == outputs else None
    config = {"task": task, "pooling": pooling, "layer": None, "num_outputs": outputs, "labels": labels,
              "source": source}
    return config, module.eval()

"""Fine-tuning a head on labelled sequences: full, or IA3 (about 0.1% of the weights).

    ntengine train finetune CKPT --train train.csv [--valid dev.csv] [--test test.csv] -o OUT --method ia3

The model is trained on `train`, evaluated after each epoch on `valid` (default: a
stratified 10% of train held out, seeded) and the best epoch is kept (by MCC for
classification, MSE for regression); `test`, when given, is scored once, at the end,
through the written checkpoint (`ntengine.compile(OUT).predict`), so the number
reported is what the engine computes. IA3 vectors are merged into the weights before
writing: OUT is a plain checkpoint plus its head.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from ntengine import ops
from ntengine.checkpoint import save_checkpoint
from ntengine.progress import progress as reporter
from ntengine.tokenizer import Tokenizer
from ntengine.train.data import read_labelled
from ntengine.checkpoint.heads import save_head
from ntengine.train.heads import SequenceModel
from ntengine.train.ia3 import add_ia3, merge_ia3
from ntengine.train.metrics import classification_metrics, regression_metrics, require_sklearn
from ntengine.train.mlm import initial_model

METHODS = ("ia3", "full")
DEFAULT_LR = {"ia3": 3e-3, "full": 3e-5}


def _split(seqs, labels, valid_fraction: float, seed: int, classification: bool):
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(seqs))
    a, b = train_test_split(idx, test_size=valid_fraction, random_state=seed,
                            stratify=labels if classification else None)
    return ([seqs[i] for i in a], labels[a]), ([seqs[i] for i in b], labels[b])


def _batches(tokenizer: Tokenizer, seqs, order, batch_size: int):
    for lo in range(0, len(order), batch_size):
        rows = order[lo:lo + batch_size]
        enc = tokenizer.batch_encode([seqs[i] for i in rows], truncation=True)
        yield rows, torch.from_numpy(enc.ids).long(), torch.from_numpy(enc.attention_mask)


@torch.no_grad()
def _predict(model: SequenceModel, tokenizer: Tokenizer, seqs, batch_size: int, device, bar) -> np.ndarray:
    model.eval()
    out = []
    with ops.use("torch"), bar:
        for rows, ids, mask in _batches(tokenizer, seqs, np.arange(len(seqs)), batch_size):
            y = model(ids.to(device), mask.to(device)).float()
            out.append((y.softmax(-1) if model.task == "classification" else y).cpu().numpy())
            bar.update(len(rows))
    return np.concatenate(out)


def _score(task: str, labels: np.ndarray, outputs: np.ndarray) -> dict:
    return classification_metrics(labels, outputs) if task == "classification" else regression_metrics(labels,
                                                                                                       outputs)


def finetune(checkpoint, train, out, *, method: str = "ia3", valid=None, test=None, epochs: int = 3,
             lr: float | None = None, batch_size: int = 16, pooling: str = "mean", layer: int | None = None,
             valid_fraction: float = 0.1, seed: int = 0, device="cpu", trust_pickle: bool = False,
             progress: bool = True, max_steps: int | None = None, limit: int | None = None) -> dict:
    """Fine-tune `checkpoint` on labelled data and write the best model to `out`.

    Args:
        train, valid, test: CSV/TSV (sequence,label) or FASTA with label= in headers;
            integer labels = classification, otherwise regression.
        method: "ia3" (train IA3 vectors + head; backbone frozen) or "full" (everything).
        lr: default 3e-3 for IA3, 3e-5 for full fine-tuning.
        max_steps: stop after this many optimiser steps (a quick trial; the epoch it ends
            in is still validated); limit: use a seeded random `limit` of each set.
    Returns:
        {"method", "task", "trainable_parameters", "total_parameters", "trainable_fraction",
        "epochs": [per-epoch train loss and validation metrics], "best_epoch", "valid",
        "test" (if given), "path"}.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    require_sklearn()
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    seqs, labels = read_labelled(train, limit, seed)
    task = "classification" if labels.dtype.kind == "i" else "regression"
    classes = sorted(set(labels.tolist())) if task == "classification" else None
    if classes is not None and classes != list(range(len(classes))):
        raise ValueError(f"{train}: class labels must be 0..C-1, got {classes[:10]}")
    (tr_seqs, tr_y), (va_seqs, va_y) = (_split(seqs, labels, valid_fraction, seed, task == "classification")
                                        if valid is None else ((seqs, labels), read_labelled(valid, limit, seed)))
    torch.manual_seed(seed)
    backbone = initial_model(checkpoint, seed, trust_pickle)
    tokenizer = Tokenizer(version=backbone.config.version, max_length=backbone.config.max_positions)
    model = SequenceModel(backbone, len(classes) if classes else (1 if tr_y.ndim == 1 else tr_y.shape[1]),
                          tokenizer.special_ids, task, pooling, layer).to(device)
    ia3 = add_ia3(backbone) if method == "ia3" else []
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable, n_total = sum(p.numel() for p in trainable), sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=lr or DEFAULT_LR[method], weight_decay=0.0 if ia3 else 0.01)
    steps = min(epochs * -(-len(tr_seqs) // batch_size), max_steps or float("inf"))
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    rng = np.random.default_rng(seed)
    history, best, best_state = [], None, None
    targets = torch.as_tensor(tr_y)
    step = 0
    for epoch in range(1, epochs + 1):
        if step >= steps:
            break
        model.train()
        total, n = 0.0, 0
        order = rng.permutation(len(tr_seqs))
        bar = reporter(len(order), f"{method} epoch {epoch}/{epochs}", "sequences", enabled=progress)
        for rows, ids, mask in _batches(tokenizer, tr_seqs, order, batch_size):
            with ops.use("torch"):
                y = model(ids.to(device), mask.to(device)).float()
            t = targets[rows].to(device)
            loss = F.cross_entropy(y, t) if task == "classification" else F.mse_loss(y.squeeze(-1), t.float())
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            total, n, step = total + loss.item() * len(rows), n + len(rows), step + 1
            bar.update(len(rows))
            if step >= steps:
                break
        bar.close()
        metrics = _score(task, va_y, _predict(model, tokenizer, va_seqs, batch_size, device,
                                              reporter(len(va_seqs), f"validation {epoch}/{epochs}", "sequences",
                                                       enabled=progress)))
        history.append({"epoch": epoch, "train_loss": total / n, **{f"valid_{k}": v for k, v in metrics.items()}})
        key = metrics["mcc"] if task == "classification" else -metrics["mse"]
        if best is None or key > best[0]:
            best = (key, epoch, metrics)
            best_state = copy.deepcopy({k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best_state)
    if ia3:
        merge_ia3(backbone)
    save_checkpoint(out, backbone.config, backbone.state_dict(), layout="ntengine")
    save_head(out, model.head_config(classes), model.head)
    result = {"method": method, "task": task, "trainable_parameters": n_trainable, "total_parameters": n_total,
              "trainable_fraction": n_trainable / n_total, "epochs": history, "best_epoch": best[1],
              "valid": best[2], "path": str(out)}
    if test is not None:
        import ntengine

        te_seqs, te_y = read_labelled(test, limit, seed)
        engine = ntengine.compile(out, device=device, batch_size=batch_size)
        result["test"] = _score(task, te_y, engine.predict(te_seqs, progress=progress and "test"))
    return result

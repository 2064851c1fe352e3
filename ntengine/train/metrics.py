"""The scores the NT paper reports: MCC (and AUC, accuracy) for classification."""

from __future__ import annotations

import numpy as np


def require_sklearn() -> None:
    """RuntimeError with the install hint when scikit-learn is missing."""
    try:
        import sklearn  # noqa: F401
    except ImportError as err:
        raise RuntimeError(f"fine-tuning and probing need scikit-learn ({err}): "
                           "pip install 'ntengine[train]'") from None


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """MCC, accuracy and ROC AUC (binary: of class 1; multi-class: one-vs-rest macro)."""
    from sklearn.metrics import accuracy_score, matthews_corrcoef, roc_auc_score

    pred = probs.argmax(1)
    out = {"mcc": float(matthews_corrcoef(labels, pred)), "accuracy": float(accuracy_score(labels, pred))}
    try:
        out["auc"] = float(roc_auc_score(labels, probs[:, 1]) if probs.shape[1] == 2 else
                           roc_auc_score(labels, probs, multi_class="ovr"))
    except ValueError:  # one class only in `labels`
        out["auc"] = float("nan")
    return out


def regression_metrics(targets: np.ndarray, values: np.ndarray) -> dict:
    """MSE, R^2 and Pearson r."""
    from sklearn.metrics import mean_squared_error, r2_score

    v = values.reshape(targets.shape)
    return {"mse": float(mean_squared_error(targets, v)), "r2": float(r2_score(targets, v)),
            "pearson": float(np.corrcoef(targets.ravel(), v.ravel())[0, 1])}

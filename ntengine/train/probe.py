"""Probing: frozen embeddings -> a simple scikit-learn classifier, scored as in the paper.

    ntengine train probe CKPT --train train.csv [--test test.csv] [--layers 6,12] [--classifier logreg|mlp]

For each layer, mean-pooled embeddings of every sequence (the engine's fastest
backend) feed a standardised logistic regression (or a small MLP); 10-fold stratified
cross-validation on the training set gives MCC, AUC and accuracy (mean and std), and
with a test set the model refitted on all training data is scored on it once. The
baseline the paper's numbers should beat is `kmer_baseline`: the same classifier on
6-mer counts (scikit-learn's CountVectorizer over characters), in the same run.
"""

from __future__ import annotations

import logging

import numpy as np

from ntengine.train.data import read_labelled
from ntengine.train.metrics import classification_metrics, require_sklearn

CLASSIFIERS = ("logreg", "mlp")
log = logging.getLogger(__name__)


def make_classifier(name: str, seed: int):
    """The unfitted scikit-learn pipeline of a probe: standardise, then logreg or a small MLP."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    if name == "mlp":
        return make_pipeline(StandardScaler(), MLPClassifier((256,), max_iter=300, early_stopping=True,
                                                             random_state=seed))
    raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {name!r}")


def evaluate_features(x_train, y_train, x_test=None, y_test=None, classifier: str = "logreg", folds: int = 10,
                      seed: int = 0) -> dict:
    """Cross-validated metrics on the training set (+ test metrics when given)."""
    require_sklearn()
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    model = make_classifier(classifier, seed)
    per_fold = []
    for tr, va in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x_train, y_train):
        fitted = clone(model).fit(x_train[tr], y_train[tr])
        per_fold.append(classification_metrics(y_train[va], fitted.predict_proba(x_train[va])))
    out = {f"cv_{k}": float(np.mean([f[k] for f in per_fold])) for k in per_fold[0]}
    out.update({f"cv_{k}_std": float(np.std([f[k] for f in per_fold])) for k in per_fold[0]})
    if x_test is not None:
        fitted = clone(model).fit(x_train, y_train)
        out.update({f"test_{k}": v for k, v in classification_metrics(y_test, fitted.predict_proba(x_test)).items()})
    return out


def kmer_baseline(train, test=None, k: int = 6, classifier: str = "logreg", folds: int = 10, seed: int = 0,
                  limit: int | None = None) -> dict:
    """`evaluate_features` on k-mer counts of the sequences (overlapping, case-folded);
    `limit` as in `probe`."""
    seqs, y = read_labelled(train, limit, seed)
    test_seqs, yt = read_labelled(test, limit, seed) if test is not None else (None, None)
    x, xt = kmer_features(seqs, test_seqs, k)
    return evaluate_features(x, y, xt, yt, classifier, folds, seed)


def kmer_features(seqs, test_seqs=None, k: int = 6):
    """(train, test or None) float32 counts of the overlapping, case-folded k-mers seen in `seqs`."""
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(analyzer="char", ngram_range=(k, k), lowercase=True)
    x = vec.fit_transform(seqs).toarray().astype(np.float32)
    return x, None if test_seqs is None else vec.transform(test_seqs).toarray().astype(np.float32)


def probe(engine, train, test=None, layers=None, classifier: str = "logreg", folds: int = 10, seed: int = 0,
          batch_size: int | None = None, progress: bool = False, limit: int | None = None) -> dict:
    """{layer: metrics} of probes on mean-pooled embeddings of `engine` (an Engine);
    `progress` shows the embedding of each set and logs each cross-validation; `limit`
    probes a seeded random `limit` of the train (and test) sequences: a quick trial."""
    seqs, y = read_labelled(train, limit, seed)
    if y.dtype.kind != "i":
        raise ValueError(f"{train}: probing scores classification (integer labels); these labels are not integers")
    test_seqs, yt = read_labelled(test, limit, seed) if test is not None else (None, None)
    results = {}
    for layer in layers or [engine.config.num_layers]:
        x = engine.embed(seqs, layer=layer, batch_size=batch_size, progress=progress and f"train, layer {layer}")
        xt = None if test_seqs is None else engine.embed(test_seqs, layer=layer, batch_size=batch_size,
                                                         progress=progress and f"test, layer {layer}")
        if progress:
            log.info(f"layer {layer}: {folds}-fold cross-validation of {classifier} on {len(seqs):,} sequences")
        results[layer] = evaluate_features(x, y, xt, yt, classifier, folds, seed)
    return results

"""ROC of a frozen-embedding probe against a 6-mer count baseline.

    python examples/probing_roc.py -o out/probe          # iEnhancer strong vs weak enhancers

Draws a random subsample of a task's train and test sets, embeds the sequences
(mean over tokens, frozen model), and fits the standardised logistic regression of
`ntengine train probe`; the baseline is the same classifier on 6-mer counts. Plots both
test-set ROC curves with their AUC. Writes OUT/{train,test}_subset.csv, OUT/metrics.json
(the library's 10-fold CV and test metrics, and the AUC of the curves drawn) and OUT/roc.png.

Note: in this iEnhancer task all 100 strong test enhancers also appear in train.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.pyplot as plt

import common

TASK = "tasks/ienhancer_layer2_strong_vs_weak"


def subsample(path: Path, n: int, out: Path) -> Path:
    """Write a seeded random n rows of the task CSV `path` (all if n >= its size) to `out`."""
    from ntengine.train.data import read_labelled

    seqs, labels = read_labelled(path, limit=n, seed=0)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["sequence", "label"])
        writer.writerows(zip(seqs, labels))
    return out


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--task", type=Path, help=f"folder with train.csv and test.csv (default: DATA/{TASK})")
    p.add_argument("--train-limit", type=int, default=200, help="training sequences drawn (default %(default)s)")
    p.add_argument("--test-limit", type=int, default=100, help="test sequences drawn (default %(default)s)")
    p.add_argument("--layer", type=int, help="1-based layer to probe (default: the final embeddings)")
    args = p.parse_args()

    from sklearn.metrics import roc_auc_score, roc_curve

    from ntengine.train.data import read_labelled
    from ntengine.train.probe import evaluate_features, kmer_baseline, kmer_features, make_classifier

    task = args.task or args.data / TASK
    engine, label = common.load_engine(args)
    train = subsample(task / "train.csv", args.train_limit, args.output / "train_subset.csv")
    test = subsample(task / "test.csv", args.test_limit, args.output / "test_subset.csv")
    (seqs, y), (test_seqs, yt) = read_labelled(train), read_labelled(test)
    x = engine.embed(seqs, layer=args.layer, progress="train")
    xt = engine.embed(test_seqs, layer=args.layer, progress="test")

    # The library's numbers: 10-fold CV on train, then refit on all of train and scored on test.
    metrics = {"probe": evaluate_features(x, y, xt, yt), "kmer_baseline": kmer_baseline(train, test)}
    # The curves need the test-set probabilities, which those functions do not return: refit the
    # same classifier on the same features.
    features = {"probe": (x, xt), "kmer_baseline": kmer_features(seqs, test_seqs)}
    fig, ax = plt.subplots(figsize=(5.5, 5.5), constrained_layout=True)
    metrics["curve_auc"] = {}
    for name, (train_x, test_x) in features.items():
        prob = make_classifier("logreg", seed=0).fit(train_x, y).predict_proba(test_x)[:, 1]
        auc = metrics["curve_auc"][name] = roc_auc_score(yt, prob)
        fpr, tpr, _ = roc_curve(yt, prob)
        what = f"NT probe, layer {args.layer or engine.config.num_layers}" if name == "probe" else "6-mer counts"
        cv = metrics[name]
        ax.plot(fpr, tpr, lw=2, label=f"{what}: AUC {auc:.3f} (CV {cv['cv_auc']:.3f} ± {cv['cv_auc_std']:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", aspect="equal",
           title=f"{task.name}: {len(y)} train / {len(yt)} test\n{label}")
    ax.legend(loc="lower right", fontsize=8)
    (args.output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"test AUC: probe {metrics['curve_auc']['probe']:.3f}, 6-mer baseline "
          f"{metrics['curve_auc']['kmer_baseline']:.3f} -> {args.output / 'metrics.json'}")
    common.save(fig, args.output / "roc.png")


if __name__ == "__main__":
    main()

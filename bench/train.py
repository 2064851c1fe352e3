"""The training path end to end on real data, with honest numbers.

    python bench/train.py                      # ~17 min on 2 CPU cores
    python bench/train.py --minutes 3 --task ienhancer_layer1_enhancer_vs_non

1. Pretrain a small NT-v2-shaped model (default 4 layers x 256, 8 heads, FFN 1024,
   bf16 autocast) with MLM for a bounded time, in 25-step calls that each resume the run
   (so the resume path is exercised too), on either genome:
   - human: hg38 chr2:10,001-2,000,000 (soft-masked; 35% repeats), held out:
     chr2:2,000,001-2,333,275 (a region training never sees);
   - ecoli: E. coli K-12, held out: other random windows of the same genome;
   - phix: phiX174 (5.4 kb): small enough to memorise, so its "held-out" windows share
     sequence with training: a check that training fits, not that it generalises.
   Report the loss at <mask> positions of held-out windows against the unigram
   baselines: the cross-entropy of those targets under the training token frequencies
   (what a model that ignores the context reaches) and the unigram entropy.
2. On a labelled task from shared/data/tasks, starting from that checkpoint: IA3 and
   full fine-tuning (best epoch on a 10% validation split of train; test scored once),
   a logistic-regression probe on its final-layer embeddings (10-fold CV + test), and
   the 6-mer-count logistic-regression baseline, all in this run. Test MCC of each.

Results: a table on stdout and JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import RESULTS, machine_info, print_table, write_json
import ntengine
from ntengine import cpu, ops
from ntengine.config import NTConfig
from ntengine.tokenizer import Tokenizer
from ntengine.train.data import GenomeSampler
from ntengine.train.finetune import finetune
from ntengine.train.masking import IGNORE, mask_tokens
from ntengine.train.mlm import MLMSettings, initial_model, pretrain
from ntengine.train.probe import kmer_baseline, probe

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HELD_OUT = 10**9  # sample indices from here on are never drawn in training


def genomes(name: str, folder: Path) -> tuple[Path, Path]:
    """(training FASTA, held-out FASTA) for `name`."""
    from ntengine.genome.fasta import read_records

    if name in ("ecoli", "phix"):
        path = DATA / "genomes" / ("ecoli_K12_MG1655_NC_000913.3.fna.gz" if name == "ecoli" else
                                   "phiX174_NC_001422.1.fasta.gz")
        return path, path
    chr2 = next(read_records(DATA / "genomes" / "human_hg38_chr2_1-2333275.fa.gz")).sequence
    train, held = folder / "chr2_10001-2000000.fa", folder / "chr2_2000001-2333275.fa"
    train.write_text(f">chr2_train\n{chr2[10000:2000000]}\n")
    held.write_text(f">chr2_heldout\n{chr2[2000000:]}\n")
    return train, held


def held_out_loss(checkpoint, train_fasta, held_fasta, settings: MLMSettings, windows: int = 128) -> dict:
    """Loss at <mask> positions on held-out windows, and the unigram baselines: the
    entropy of the training token distribution, and the cross-entropy of the same
    held-out <mask> targets under it (what ignoring the context achieves)."""
    model = initial_model(checkpoint).eval()
    tok = Tokenizer(model.config.version, max_length=settings.tokens)
    sampler = GenomeSampler(held_fasta, 6 * (settings.tokens - 1), settings.seed)
    index = range(HELD_OUT, HELD_OUT + windows)
    ids = torch.from_numpy(tok.batch_encode([sampler.sample(i) for i in index], truncation=True).ids).long()
    m = mask_tokens(ids, index, tok.special_ids, tok.mask_id, tok.vocab_size)
    losses = []
    with ops.use("torch"), torch.no_grad():
        for lo in range(0, windows, 8):
            logits = model(m.inputs[lo:lo + 8], logits=True)["logits"].float()
            ce = F.cross_entropy(logits.transpose(1, 2), m.labels[lo:lo + 8], ignore_index=IGNORE, reduction="none")
            losses.append(ce[m.masked[lo:lo + 8]])
    # The unigram model: token frequencies from 2,000 training windows (~1M tokens).
    train = GenomeSampler(train_fasta, 6 * (settings.tokens - 1), settings.seed)
    big = torch.from_numpy(tok.batch_encode([train.sample(i) for i in range(2000)], truncation=True).ids).long()
    big = big[~torch.isin(big, torch.as_tensor(tok.special_ids))]
    q = torch.bincount(big, minlength=tok.vocab_size).double() / len(big)
    targets = ids[m.masked]
    entropy = float(-(q[q > 0] * q[q > 0].log()).sum())
    cross = float(-q[targets].clamp_min(1e-12).log().mean())
    return {"mask_loss": float(torch.cat(losses).mean()), "unigram_entropy": entropy,
            "unigram_cross_entropy": cross, "uniform": math.log(tok.vocab_size - len(tok.special_ids)),
            "masked_tokens": int(torch.cat(losses).numel())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=12, help="pretraining time budget (default 12)")
    parser.add_argument("--genome", choices=("human", "ecoli", "phix"), default="human", help="pretraining genome")
    parser.add_argument("--task", default="ienhancer_layer1_enhancer_vs_non", help="folder in shared/data/tasks")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default 3)")
    parser.add_argument("--tokens", type=int, default=512, help="tokens per pretraining window (default 512)")
    parser.add_argument("--out", default=str(RESULTS / "train.json"), help="JSON path")
    args = parser.parse_args()

    config = dataclasses.replace(NTConfig.from_preset("v2-50m"), num_layers=4, embed_dim=256, num_heads=8,
                                 ffn_dim=1024)
    settings = MLMSettings(steps=0, batch_size=16, tokens=args.tokens, lr=1e-3, warmup=50, bf16=True, save_every=25,
                           log_every=25, seed=0)
    task = DATA / "tasks" / args.task
    report = {"machine": machine_info(), "threads": torch.get_num_threads(), "model": config.to_dict(),
              "parameters": config.num_parameters, "settings": dataclasses.asdict(settings)}
    with tempfile.TemporaryDirectory(prefix="ntengine-bench-train-") as tmp:
        run = Path(tmp) / "mlm"
        train_fasta, held_fasta = genomes(args.genome, Path(tmp))
        report["genome"] = args.genome
        t0, history = time.perf_counter(), []
        while time.perf_counter() - t0 < args.minutes * 60:
            settings = dataclasses.replace(settings, steps=settings.steps + 25)
            history += pretrain(config, train_fasta, run, settings, progress=False)
            print(f"step {history[-1]['step']}: loss {history[-1]['loss']:.3f}, <mask> {history[-1]['mask_loss']:.3f}",
                  flush=True)
        report["pretrain"] = {"seconds": time.perf_counter() - t0, "history": history,
                              **held_out_loss(run / f"step-{settings.steps}", train_fasta, held_fasta, settings)}
        ckpt = run / f"step-{settings.steps}"
        rows = []
        base = kmer_baseline(task / "train.csv", task / "test.csv")
        rows.append({"method": "6-mer counts + logistic regression", "test_mcc": base["test_mcc"],
                     "test_auc": base["test_auc"], "cv_mcc": base["cv_mcc"], "seconds": float("nan")})
        t = time.perf_counter()
        dtype = "bfloat16" if cpu.onednn_bf16() else "float32"  # bf16 only where it is native
        pr = probe(ntengine.compile(ckpt, dtype=dtype), task / "train.csv", task / "test.csv")
        pr = next(iter(pr.values()))
        rows.append({"method": "probe: final-layer embeddings + logistic regression", "test_mcc": pr["test_mcc"],
                     "test_auc": pr["test_auc"], "cv_mcc": pr["cv_mcc"], "seconds": time.perf_counter() - t})
        for method in ("ia3", "full"):
            t = time.perf_counter()
            ft = finetune(ckpt, task / "train.csv", Path(tmp) / method, method=method, test=task / "test.csv",
                          epochs=args.epochs, batch_size=32, progress=False)
            rows.append({"method": f"fine-tune {method} ({100 * ft['trainable_fraction']:.2f}% trained)",
                         "test_mcc": ft["test"]["mcc"], "test_auc": ft["test"]["auc"],
                         "cv_mcc": float("nan"), "seconds": time.perf_counter() - t})
            report[f"finetune_{method}"] = ft
        report["task"], report["rows"] = args.task, rows
    p = report["pretrain"]
    print(f"\npretraining on {args.genome}: {len(history) and history[-1]['step']} steps in {p['seconds']:.0f} s "
          f"({config.num_parameters / 1e6:.1f}M parameters); held-out loss at <mask>: {p['mask_loss']:.3f} nats vs "
          f"unigram cross-entropy {p['unigram_cross_entropy']:.3f} (unigram entropy {p['unigram_entropy']:.3f}, "
          f"uniform {p['uniform']:.3f}; {p['masked_tokens']:,} masked tokens)")
    print(f"\n{args.task}:")
    print_table(rows, ["method", "test_mcc", "test_auc", "cv_mcc", "seconds"])
    out = write_json(Path(args.out), report)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

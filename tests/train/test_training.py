"""Training path: masking statistics, exact resume, DDP equivalence, IA3, fine-tuning,
probing, and that every checkpoint written compiles and matches the training model.

Real data: E. coli windows for MLM, the iEnhancer task (a slice) for fine-tuning.
Models are small (2 layers x 64, or the v2 fixture) so the suite stays fast.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

import ntengine
from ntengine import ops
from ntengine.config import NTConfig
from ntengine.model import NTModel
from ntengine.tokenizer import Tokenizer
from ntengine.train.data import GenomeSampler, read_labelled
from ntengine.train.heads import SequenceModel
from ntengine.train.ia3 import add_ia3, merge_ia3
from ntengine.train.masking import IGNORE, mask_tokens
from ntengine.train.mlm import MLMSettings, initial_model, pretrain
from tolerances import FP32, rel_err

SMALL = dict(num_layers=2, embed_dim=64, num_heads=4, ffn_dim=128)
SETTINGS = MLMSettings(steps=4, batch_size=4, tokens=64, warmup=2, log_every=1, save_every=2, seed=3)


@pytest.fixture(scope="module")
def genome(shared_data):
    return shared_data / "genomes" / "ecoli_K12_MG1655_NC_000913.3.fna.gz"


@pytest.fixture(scope="module")
def small_config():
    import dataclasses

    return dataclasses.replace(NTConfig.from_preset("v2-50m"), **SMALL)


def test_masking_statistics(genome):
    tok = Tokenizer("v2")
    sampler = GenomeSampler(genome, 6 * 511, seed=1)
    ids = torch.from_numpy(tok.batch_encode([sampler.sample(i) for i in range(64)]).ids).long()
    ids[:, -40:] = tok.pad_id  # padding must never be selected
    m = mask_tokens(ids, range(64), tok.special_ids, tok.mask_id, tok.vocab_size)
    selected = m.labels != IGNORE
    eligible = ~torch.isin(ids, torch.as_tensor(tok.special_ids))
    assert not (selected & ~eligible).any()
    assert abs(selected.sum() / eligible.sum() - 0.15) < 0.01  # ~4,700 selected of ~30,000
    n = selected.sum().item()
    masked = (m.inputs == tok.mask_id) & selected
    unchanged = (m.inputs == ids) & selected
    randomised = selected & ~masked & ~unchanged
    assert masked.equal(m.masked)
    assert abs(masked.sum().item() / n - 0.8) < 0.02
    assert abs(unchanged.sum().item() / n - 0.1) < 0.015  # (+ random draws of the same token: 1/4101)
    assert abs(randomised.sum().item() / n - 0.1) < 0.015
    assert not torch.isin(m.inputs[randomised], torch.as_tensor(tok.special_ids)).any()
    assert m.inputs[~selected].equal(ids[~selected]) and m.labels[selected].equal(ids[selected])
    # a row's corruption depends on its seed only, not on the batch around it
    alone = mask_tokens(ids[5:6], [5], tok.special_ids, tok.mask_id, tok.vocab_size)
    assert alone.inputs[0].equal(m.inputs[5]) and alone.labels[0].equal(m.labels[5])


def test_resume_reproduces_the_uninterrupted_run(genome, small_config, tmp_path):
    straight = pretrain(small_config, genome, tmp_path / "a", SETTINGS, progress=False)
    import dataclasses

    pretrain(small_config, genome, tmp_path / "b", dataclasses.replace(SETTINGS, steps=2), progress=False)
    assert (tmp_path / "b" / "latest").read_text().strip() == "step-2"
    resumed = pretrain(small_config, genome, tmp_path / "b", SETTINGS, progress=False)  # steps 3 and 4
    assert [r["step"] for r in resumed] == [3, 4]
    assert resumed == straight[2:]  # same losses, bit for bit
    a, b = initial_model(tmp_path / "a" / "step-4"), initial_model(tmp_path / "b" / "step-4")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    with pytest.raises(ValueError, match=r"other settings \{'lr'"):
        pretrain(small_config, genome, tmp_path / "b", dataclasses.replace(SETTINGS, steps=6, lr=1e-3),
                 progress=False)


def test_mlm_checkpoints_compile_and_match_the_training_model(genome, small_config, tmp_path):
    history = pretrain(small_config, genome, tmp_path / "r", SETTINGS, progress=False)
    assert len(history) == 4 and all(np.isfinite(r["loss"]) for r in history)
    assert [json.loads(x)["step"] for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    trained = initial_model(tmp_path / "r" / "step-4").eval()
    seqs = [GenomeSampler(genome, 600, seed=9).sample(i) for i in range(3)]
    enc = Tokenizer("v2").batch_encode(seqs)
    with ops.use("torch"), torch.no_grad():
        want = trained(torch.from_numpy(enc.ids).long(), torch.from_numpy(enc.attention_mask))["embeddings"]
    for backend in ("torch", "fused"):
        engine = ntengine.compile(tmp_path / "r" / "step-4", backend=backend)
        got = engine.forward(enc.ids, enc.attention_mask)["embeddings"]
        assert rel_err(got[enc.attention_mask], want.numpy()[enc.attention_mask]) <= FP32, backend


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_equal_one(genome, tmp_path):
    common = [str(genome), "--preset", "v2-50m", "--layers", "2", "--embed-dim", "64", "--heads", "4", "--ffn-dim",
              "128", "--steps", "1", "--batch-size", "4", "--tokens", "64", "--warmup", "1", "-q"]
    one = subprocess.run([sys.executable, "-m", "ntengine.cli", "train", "mlm", "-o", str(tmp_path / "one"), *common],
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(_free_port()), "-m", "ntengine.cli", "train", "mlm",
                          "-o", str(tmp_path / "two"), *common], capture_output=True, text=True, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = initial_model(tmp_path / "one" / "step-1"), initial_model(tmp_path / "two" / "step-1")
    start = initial_model(NTConfig.from_dict(a.config.to_dict()))  # the common random init
    moved = 0
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-7, msg=name)
        moved += not torch.equal(x, start.state_dict()[name])
    assert moved > 0  # the step changed the weights
    loss_one = json.loads((tmp_path / "one" / "log.jsonl").read_text())["loss"]
    loss_two = json.loads((tmp_path / "two" / "log.jsonl").read_text())["loss"]
    assert loss_two == pytest.approx(loss_one, rel=1e-6)


def test_ia3_trainable_fraction_at_published_size():
    model = NTModel(NTConfig.from_preset("v2-50m"))
    params = add_ia3(model)
    n = sum(p.numel() for p in params)
    assert n == 12 * (512 + 512 + 2048)  # l_k, l_v and l_ff in every block
    assert [p for p in model.parameters() if p.requires_grad] == params
    assert 0.0005 < n / model.config.num_parameters < 0.001  # 0.066%: the paper's "about 0.1%"


def test_ia3_merge_is_exact_and_the_engine_runs_it(fixtures_dir, tmp_path):
    from ntengine.checkpoint import save_checkpoint
    from ntengine.checkpoint.heads import load_head, save_head

    backbone = initial_model(fixtures_dir / "v2_tiny")
    tok = Tokenizer("v2")
    model = SequenceModel(backbone, 2, tok.special_ids)
    for p in add_ia3(backbone):  # non-trivial vectors, as after training
        p.data.uniform_(0.5, 1.5)
    seqs = ["ACGTAGGCTAGCATCGATCGNNACGT" * 9, "TTAGGCAT" * 20]
    enc = tok.batch_encode(seqs)
    ids, mask = torch.from_numpy(enc.ids).long(), torch.from_numpy(enc.attention_mask)
    with ops.use("torch"), torch.no_grad():
        adapted = model(ids, mask).softmax(-1).numpy()
        before = backbone(ids, mask)["embeddings"].numpy()
        merge_ia3(backbone)
        after = backbone(ids, mask)["embeddings"].numpy()
    assert not any("parametrizations" in k for k in backbone.state_dict())
    assert rel_err(after[enc.attention_mask], before[enc.attention_mask]) <= FP32
    save_checkpoint(tmp_path / "ft", backbone.config, backbone.state_dict())
    save_head(tmp_path / "ft", model.head_config([0, 1]), model.head)
    assert load_head(tmp_path / "ft")[0]["labels"] == [0, 1]
    for backend in ("torch", "fused"):
        engine = ntengine.compile(tmp_path / "ft", backend=backend)
        assert rel_err(engine.predict(seqs), adapted) <= FP32, backend
    with pytest.raises(ValueError, match="no fine-tuned head"):
        ntengine.compile(fixtures_dir / "v2_tiny").predict(seqs)


@pytest.fixture(scope="module")
def enhancer_slice(shared_data, tmp_path_factory):
    """200 training and 100 test rows of iEnhancer layer 1 (balanced, seeded)."""
    out = tmp_path_factory.mktemp("task")
    for split, n in (("train", 200), ("test", 100)):
        lines = (shared_data / "tasks" / "ienhancer_layer1_enhancer_vs_non" / f"{split}.csv").read_text().splitlines()
        rows = np.random.default_rng(0).permutation(len(lines) - 1)[:n] + 1
        (out / f"{split}.csv").write_text("\n".join([lines[0]] + [lines[i] for i in rows]) + "\n")
    return out / "train.csv", out / "test.csv"


@pytest.mark.parametrize("method", ["ia3", "full"])
def test_finetune_writes_a_checkpoint_the_engine_predicts_with(fixtures_dir, enhancer_slice, tmp_path, method):
    from ntengine.train.finetune import finetune

    train, test = enhancer_slice
    result = finetune(fixtures_dir / "v2_tiny", train, tmp_path / method, method=method, test=test, epochs=1,
                      batch_size=32, progress=False)
    assert result["task"] == "classification" and result["best_epoch"] == 1
    assert (result["trainable_fraction"] < 0.1) == (method == "ia3")
    assert set(result["test"]) == {"mcc", "accuracy", "auc"}
    engine = ntengine.compile(tmp_path / method)
    seqs, _ = read_labelled(test)
    probs = engine.predict(seqs[:5])
    assert probs.shape == (5, 2) and np.allclose(probs.sum(1), 1)


def test_probe_and_kmer_baseline(fixtures_dir, enhancer_slice):
    from ntengine.train.probe import kmer_baseline, probe

    train, test = enhancer_slice
    engine = ntengine.compile(fixtures_dir / "v2_tiny")
    res = probe(engine, train, test, layers=[1, 2], folds=3)
    assert set(res) == {1, 2} and -1 <= res[1]["cv_mcc"] <= 1 and "test_auc" in res[2]
    base = kmer_baseline(train, test, folds=3)
    assert {"cv_mcc", "cv_mcc_std", "test_mcc"} <= set(base)


def test_read_labelled_formats_and_errors(tmp_path):
    (tmp_path / "a.tsv").write_text("sequence\tlabel\nACGT\t1\nGGCC\t0\n")
    (tmp_path / "b.fa").write_text(">s1 label=0.5\nACGT\n>s2 label=1.25\nGG\n")
    (tmp_path / "c.csv").write_text("seq,y\nACGT,1\n")
    seqs, y = read_labelled(tmp_path / "a.tsv")
    assert seqs == ["ACGT", "GGCC"] and y.dtype == np.int64
    seqs, y = read_labelled(tmp_path / "b.fa")
    assert y.tolist() == [0.5, 1.25] and y.dtype == np.float64
    with pytest.raises(ValueError, match="'sequence' and 'label' columns"):
        read_labelled(tmp_path / "c.csv")


def test_regression_head_with_cls_pooling(fixtures_dir, enhancer_slice, tmp_path):
    from ntengine.train.finetune import finetune

    train, test = enhancer_slice
    for split, src in (("train", train), ("test", test)):  # real sequences, target = their GC fraction
        seqs, _ = read_labelled(src)
        gc = [(s.upper().count("G") + s.upper().count("C")) / len(s) for s in seqs]
        rows = "".join(f"{s}\t{g:.4f}\n" for s, g in zip(seqs, gc))
        (tmp_path / f"{split}.tsv").write_text("sequence\tlabel\n" + rows)
    result = finetune(fixtures_dir / "v2_tiny", tmp_path / "train.tsv", tmp_path / "gc", method="full", pooling="cls",
                      test=tmp_path / "test.tsv", epochs=1, batch_size=32, progress=False)
    assert result["task"] == "regression" and set(result["test"]) == {"mse", "r2", "pearson"}
    engine = ntengine.compile(tmp_path / "gc")
    assert engine.head[0]["pooling"] == "cls" and engine.predict(["ACGTACGTAC" * 20]).shape == (1, 1)


def test_cli_finetune_and_probe(fixtures_dir, enhancer_slice, tmp_path, capsys):
    from ntengine.cli import main

    train, test = enhancer_slice
    assert main(["train", "finetune", str(fixtures_dir / "v2_tiny"), "--train", str(train), "--test", str(test),
                 "-o", str(tmp_path / "ft"), "--epochs", "1", "--batch-size", "32", "--progress", "off"]) == 0
    out = capsys.readouterr()
    # IA3 on the fixture (2 blocks, E 32, F 64) + head (32 x 2 + 2)
    assert json.loads(out.out)["method"] == "ia3" and f"trained {2 * (32 + 32 + 64) + 66} of 289,453" in out.err
    assert main(["train", "probe", str(tmp_path / "ft"), "--train", str(train), "--folds", "3", "-q"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"probe", "kmer_baseline"} and "cv_mcc" in result["probe"]["2"]
    assert main(["train", "finetune", str(fixtures_dir / "v2_tiny"), "--train", str(tmp_path / "absent.csv"),
                 "-o", str(tmp_path / "x"), "-q"]) == 2
    assert "ntengine train finetune: error:" in capsys.readouterr().err

"""`ntengine bench`: the statistics, the report and its schema, the plot and --compare,
on the tiny v2 fixture (seconds on a CPU). Speed itself is never asserted here."""

import json

import numpy as np
import pytest

from ntengine import bench
from ntengine.bench.timing import ratio_to, summarise, time_round_robin
from ntengine.bench.workload import flops_per_token, genome
from ntengine.genome.windows import sample_windows as windows
from ntengine.cli import main
from ntengine.config import NTConfig


def test_percentiles_are_numpys():
    samples = np.random.default_rng(0).lognormal(-4, 0.5, size=101)
    s = summarise(samples)
    ms = samples * 1e3
    for q in (50, 90, 99):
        assert s[f"p{q}_ms"] == pytest.approx(np.percentile(ms, q), rel=1e-12)
    assert (s["min_ms"], s["max_ms"], s["n"]) == (ms.min(), ms.max(), 101)
    assert s["mean_ms"] == pytest.approx(ms.mean()) and s["sd_ms"] == pytest.approx(ms.std())
    with pytest.raises(ValueError, match="no samples"):
        summarise([])


def test_round_robin_rotates_and_counts():
    calls = []
    samples = time_round_robin({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4,
                               warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]  # warm-ups, then the order rotates
    assert [len(v) for v in samples.values()] == [4, 4]
    assert len(time_round_robin({"a": lambda: None}, duration=0.0, warmup=0)["a"]) == 3  # at least 3 rounds
    assert ratio_to([2.0, 4.0, 6.0], [1.0, 1.0, 2.0]) == {"median": 3.0, "min": 2.0, "max": 4.0}


def test_windows_are_real_dna_of_exact_token_counts(shared_data):
    from ntengine.tokenizer import Tokenizer

    phix = genome()
    assert len(phix) == 5386
    seqs = windows(phix, 3, 2048)  # 12,282 bp from a 5,386 bp circle: wraps around it
    assert (Tokenizer().count_tokens(seqs) == 2048).all() and all(s in phix * 4 for s in seqs)
    chrM = genome(shared_data / "genomes" / "human_chrM_rCRS_NC_012920.fasta")  # one N, at 3107
    assert all("N" not in s for s in windows(chrM, 20, 1000, seed=3))
    cfg = NTConfig.from_preset("v2-50m")
    e, f = 512, 2048
    assert flops_per_token(cfg, 1000) == 12 * (2 * (4 * e * e + 3 * e * f) + 4 * 1000 * e)


def test_cli_report_schema_plot_and_compare(fixtures_dir, tmp_path, capsys):
    ckpt = str(fixtures_dir / "v2_tiny")
    common = ["--batch", "1,2", "--tokens", "16,64,4096", "--repeats", "3", "--mixed", "3",
              "--backends", "eager,fused,tensorrt", "--dtypes", "float32,float16", "-q"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["bench", ckpt, *common, "--json", str(a), "--plot", str(tmp_path / "a.png")]) == 0
    out = capsys.readouterr().out
    report = json.loads(a.read_text())
    bench.validate(report)
    assert "eager-float32" in out and "fused-float32" in out and "skipped tensorrt-float32: TensorRT needs" in out
    assert {(c["engine"], c["batch"], c["tokens"]) for c in report["cells"]} == {
        (e, bt, n) for e in ("eager-float32", "fused-float32") for bt in (1, 2) for n in (16, 64)}
    assert {"cell": "1x4096", "reason": "above the model's context of 2048"} in report["skipped"]
    assert any(s["engine"] == "fused-float16" and "emulated" in s["reason"] for s in report["skipped"])
    for c in report["cells"]:
        assert len(c["latency"]["samples_ms"]) == 3
        assert c["latency"]["p50_ms"] == pytest.approx(np.percentile(c["latency"]["samples_ms"], 50))
        assert c["tokens_per_s"] == pytest.approx(c["batch"] * c["tokens"] / c["latency"]["p50_ms"] * 1e3)
        if c["engine"] == "eager-float32":
            assert c["vs_baseline"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    assert [r["threads"] for r in report["thread_scaling"] if r["engine"] == "eager-float32"][0] == 1
    assert {m["tokens"] for m in report["mixed"]["speedup_geomean_by_bucket"]} == {"64-256", "256-1024",
                                                                                  "1024-2048"}
    packed = [w for w in report["mixed"]["whole_set"] if w["layout"] == "packed"]
    assert packed and packed[0]["padding_fraction"] == 0.0
    assert (tmp_path / "a.png").stat().st_size > 10_000
    assert main(["bench", ckpt, "--batch", "1", "--tokens", "16", "--repeats", "3", "--mixed", "0",
                 "--no-threads", "--markdown", "--json", str(b), "-q"]) == 0
    assert "| engine | batch x tokens | p50 ms |" in capsys.readouterr().out
    assert main(["bench", "--compare", str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [ln for ln in lines if ln.strip().startswith(("eager-float32", "fused-float32"))]
    assert len(rows) == 2  # the cells both have: 1 x 16 for each engine
    want = {c["engine"]: c["tokens_per_s"] for c in json.loads(b.read_text())["cells"]}
    have = {c["engine"]: c["tokens_per_s"] for c in report["cells"] if (c["batch"], c["tokens"]) == (1, 16)}
    for row in rows:
        engine, ratio = row.split()[0], float(row.split()[6].rstrip("x"))
        assert ratio == pytest.approx(want[engine] / have[engine], abs=0.006)


def test_bad_schema_is_caught(fixtures_dir):
    report = bench.run(fixtures_dir / "v2_tiny", batches=(1,), tokens=(16,), repeats=1, mixed=0, threads=False)
    bench.validate(report)
    del report["cells"][0]["latency"]["p99_ms"]
    with pytest.raises(Exception, match="p99_ms"):
        bench.validate(report)

"""bench/gpu_acceptance.py's machinery, on the CPU: stages are time-boxed (a hang is killed
and the next stage still runs), the budget is shared, and the summary reads the figures
out of a real `ntengine bench` report, a JUnit file and a genome-job JSON."""

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

from ntengine.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def acceptance():
    spec = importlib.util.spec_from_file_location("gpu_acceptance", ROOT / "bench" / "gpu_acceptance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_hung_stage_is_killed_and_the_next_runs(acceptance, tmp_path):
    run = acceptance.Run(tmp_path, budget=30)
    pid_file = tmp_path / "grandchild.pid"
    sleeper = [sys.executable, "-c", "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
               "'import time; time.sleep(60)']); open(sys.argv[1], 'w').write(str(p.pid)); p.wait(); "
               "print('MARK-' + 'REACHED')", str(pid_file)]
    assert not run.stage("hangs", [sleeper, [sys.executable, "-c", "print('MARK-' + 'AFTER')"]], box=2)
    assert run.stage("next", [[sys.executable, "-c", "print('MARK-' + 'NEXT')"]], box=10)
    hung, ok = run.stages
    assert hung["timed_out"] and hung["rc"] == -9 and hung["seconds"] < 10
    assert ok["rc"] == 0 and not ok["timed_out"]
    log = (tmp_path / "acceptance.log").read_text()
    assert "MARK-NEXT" in log and "MARK-AFTER" not in log and "MARK-REACHED" not in log
    stat = Path(f"/proc/{pid_file.read_text()}/stat")  # the stage's whole process group went:
    time.sleep(0.2)
    assert not stat.exists() or stat.read_text().split(")")[-1].split()[0] == "Z"  # gone, or a zombie
    run.deadline = 0  # the budget spent: later stages are recorded as skipped, not run
    assert not run.stage("late", [[sys.executable, "-c", "raise SystemExit(3)"]], box=10)
    assert run.stages[-1]["skipped"] == "no time left in the budget" and run.stages[-1]["rc"] is None


def test_summary_reads_the_figures(acceptance, fixtures_dir, tmp_path):
    report = tmp_path / "bench_v2_50m.json"
    assert main(["bench", str(fixtures_dir / "v2_tiny"), "--batch", "1", "--tokens", "1000", "--repeats", "2",
                 "--mixed", "3", "--no-threads", "--dtypes", "float32,bfloat16", "--json", str(report), "-q"]) == 0
    (tmp_path / "cuda_tests.xml").write_text('<testsuites><testsuite tests="7" failures="1" errors="0" skipped="2">'
                                             '</testsuite></testsuites>')
    genome = {"preset": "v2-50m", "dtype": "bfloat16", "backend": "fused",
              "rows": [{"bp": 4641652, "job_s": 40.0, "job_bp_per_s": 116041.3, "job_vs_forward": 0.93}]}
    (tmp_path / "genome.json").write_text(json.dumps(genome))
    result = acceptance.summary(tmp_path, [], {"gpu": "none"})
    assert result["tests"] == {"tests": 7, "failures": 1, "errors": 0, "skipped": 2}
    assert result["bench_v2_500m"] is None  # its stage left no report
    figures = result["bench_v2_50m"]
    cells = json.loads(report.read_text())["cells"]
    ratios = {c["engine"]: round(c["vs_baseline"]["median"], 2) for c in cells}
    # fused bf16 runs where the CPU has AVX-512 (else the bench skips it); fused fp32 everywhere
    expected = {f"{e} 1x1000": ratios[e] for e in ("fused-float32", "fused-bfloat16") if e in ratios}
    assert "fused-float32 1x1000" in expected and figures["fused_vs_eager_fp32"] == expected
    assert figures["batch1_1000_tokens_p50_ms"]["eager-float32"] > 0
    assert {w["layout"] for w in figures["mixed_lengths"]} == {"padded (sorted by length)", "packed"}
    assert result["genome_ecoli"]["human_genome_hours"] == pytest.approx(3.1e9 / 116041.3 / 3600, abs=0.01)

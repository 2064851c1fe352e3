"""GPU acceptance in one command, on a bare GPU machine: install, build, test, benchmark, genome job.

    bash bench/gpu_carry.sh                          # here: wheels + test data into .carry/
    python3 bench/gpu_acceptance.py OUT              # there, from the repository root

Stages, in order, each time-boxed (a stage that fails or hangs is killed and recorded, and
the next one runs; the whole run stays under --budget seconds, default 470):

  install      the carried wheels into a private folder on PYTHONPATH, then this working tree
               (editable, no network), `_C` and `_C_cuda` built for the GPU present only
               (NTENGINE_CUDA_ARCHS = its compute capability); fails unless the CUDA kernels load
  cuda-tests   every CUDA op test, the varlen and unpadding tests, the fused-vs-reference engine
               tests in fp32/fp16/bf16 and the CUDA-graph tests (JUnit XML)
  bench-v2-500m, bench-v2-50m
               `ntengine bench` on CUDA: eager and fused x fp32/fp16/bf16 (+ CUDA-graph rows),
               batch 1 and 8 (50M: also 32) x 1,000 and 2,048 tokens, mixed-length layouts
  genome       bench/genome.py: `ntengine embed` of all of E. coli K-12 (4.6 Mbp), v2-50M
               shape, fused bf16, against the bare forward over the same windows

Writes OUT/acceptance.json (the machine, each stage's exit code and seconds, and the figures
issue 18 asks for, each next to its goal) and OUT/acceptance.log (every stage's output).
Needs nothing but Python's standard library until the install stage has run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / ".carry"
SITE = Path("/tmp/ntengine-site")
ECOLI = CARRY / "shared" / "data" / "genomes" / "ecoli_K12_MG1655_NC_000913.3.fna.gz"
HUMAN_BP = 3.1e9
# Seconds per stage; together under the default budget, so no stage starves a later one.
BOXES = {"install": 100, "cuda-tests": 90, "bench-v2-500m": 120, "bench-v2-50m": 70, "genome": 70}
TESTS = ["tests/ops", "tests/test_fused_cuda.py", "tests/test_cuda_graphs.py", "tests/test_unpad.py",
         "-k", "cuda or varlen or unpad"]


class Run:
    """The stages' shared log, environment and deadline."""

    def __init__(self, out: Path, budget: float):
        self.out, self.deadline = out, time.monotonic() + budget
        self.log = out / "acceptance.log"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "NTENGINE_SHARED": str(CARRY / "shared"),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), os.environ.get("PYTHONPATH")]))}
        self.stages: list[dict] = []

    def stage(self, name: str, cmds: list[list[str]], box: float, env: dict | None = None) -> bool:
        """Run `cmds` one after another, within `box` seconds and the overall deadline."""
        limit = min(box, self.deadline - time.monotonic())
        record = {"stage": name, "rc": None, "seconds": 0.0, "timed_out": False, "limit_s": round(limit, 1)}
        self.stages.append(record)
        if limit < 1:
            record["skipped"] = "no time left in the budget"
            return False
        t0 = time.monotonic()
        for cmd in cmds:
            self._say(f"\n=== {name}: {' '.join(cmd)}")
            with self.log.open("a") as log:
                proc = subprocess.Popen(cmd, cwd=ROOT, env={**self.env, **(env or {})}, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
                try:
                    record["rc"] = proc.wait(timeout=max(1.0, limit - (time.monotonic() - t0)))
                except subprocess.TimeoutExpired:  # the whole process group: pytest's children too
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    record.update(rc=-9, timed_out=True)
            if record["rc"] != 0:
                break
        record["seconds"] = round(time.monotonic() - t0, 1)
        self._say(f"=== {name}: rc {record['rc']} in {record['seconds']} s")
        return record["rc"] == 0

    def _say(self, line: str) -> None:
        print(line, flush=True)
        with self.log.open("a") as log:
            log.write(line + "\n")


def cuda_arch() -> str:
    """The present GPU's compute capability as CMake spells it ("90" on an H100/H200)."""
    code = "import torch; print('%d%d' % torch.cuda.get_device_capability())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def stages(run: Run, out: Path, archs: str | None, python: str = sys.executable) -> None:
    if archs is None:
        try:
            archs = cuda_arch()
        except subprocess.CalledProcessError as err:
            run.stages.append({"stage": "install", "rc": None, "error": f"torch sees no GPU: {err.stderr[-300:]}"})
            return
    wheels = sorted(str(p) for p in (CARRY / "wheels").glob("*.whl"))
    pip = [python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-cache-dir"]
    check = [python, "-c", "from ntengine import ops, varlen; ok, why = ops.cuda_status(); "
             "print('cuda kernels:', why, '| varlen:', varlen.kernel()); raise SystemExit(0 if ok else why)"]
    build = {"NTENGINE_CUDA": "1", "NTENGINE_CUDA_ARCHS": archs, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count())}
    installed = run.stage("install", [
        [*pip, "--no-compile", "--upgrade", "--target", str(SITE), *wheels],
        [*pip, "--no-build-isolation", "-e", "."],
        check, [python, "-m", "ntengine.cli", "info"]], box=BOXES["install"], env=build)
    if not installed:
        return  # nothing else can run
    run.stage("cuda-tests", [[python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                              f"--junitxml={out / 'cuda_tests.xml'}", *TESTS]], box=BOXES["cuda-tests"])
    bench = [python, "-m", "ntengine.cli", "bench", "--device", "cuda", "--backends", "eager,fused",
             "--dtypes", "float32,float16,bfloat16", "--tokens", "1000,2048", "--duration", "0.5", "--mixed", "12"]
    run.stage("bench-v2-500m", [[*bench, "--preset", "v2-500m", "--batch", "1,8",
                                 "--json", str(out / "bench_v2_500m.json")]], box=BOXES["bench-v2-500m"])
    run.stage("bench-v2-50m", [[*bench, "--preset", "v2-50m", "--batch", "1,8,32",
                                "--json", str(out / "bench_v2_50m.json")]], box=BOXES["bench-v2-50m"])
    run.stage("genome", [[python, "bench/genome.py", "--device", "cuda", "--dtype", "bfloat16", "--batch-size", "32",
                          "--sizes", "4641652", "--genome", str(ECOLI), "--out", str(out / "genome.json")]],
              box=BOXES["genome"])


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def bench_figures(report: dict) -> dict:
    """From an `ntengine bench` report: each fused engine's speed-up over eager fp32 (median
    of per-round ratios, per cell), tokens/s and MFU, and batch-1 p50 at 1,000 tokens."""
    cells = report["cells"]
    speedups = {f"{c['engine']} {c['batch']}x{c['tokens']}": round(c["vs_baseline"]["median"], 2)
                for c in cells if c["engine"].startswith("fused-")}
    best = {}
    for c in cells:
        if c["engine"] not in best or c["tokens_per_s"] > best[c["engine"]]["tokens_per_s"]:
            best[c["engine"]] = {"cell": f"{c['batch']}x{c['tokens']}", "tokens_per_s": round(c["tokens_per_s"]),
                                 "mfu": None if c.get("mfu") is None else round(c["mfu"], 3)}
    latency = {c["engine"]: round(c["latency"]["p50_ms"], 2) for c in cells if c["batch"] == 1 and c["tokens"] == 1000}
    mixed = [{k: w[k] for k in ("engine", "layout", "tokens_per_s", "padding_fraction")}
             for w in (report.get("mixed") or {}).get("whole_set", [])]
    return {"fused_vs_eager_fp32": speedups, "best_cell_per_engine": best,
            "batch1_1000_tokens_p50_ms": latency, "mixed_lengths": mixed}


def junit_counts(path: Path) -> dict | None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def summary(out: Path, run_stages: list[dict], machine: dict) -> dict:
    result = {"machine": machine, "stages": run_stages, "tests": junit_counts(out / "cuda_tests.xml"),
              "goals": {"fused fp16/bf16 vs eager fp32": ">= 3x", "v2-500m bf16 MFU": ">= 40% of dense peak"}}
    for name in ("v2_500m", "v2_50m"):
        report = _load(out / f"bench_{name}.json")
        result[f"bench_{name}"] = bench_figures(report) if report else None
    genome = _load(out / "genome.json")
    if genome:
        row = genome["rows"][-1]
        result["genome_ecoli"] = {"bp": row["bp"], "job_s": round(row["job_s"], 1), "bp_per_s": round(row["job_bp_per_s"]),
                                  "job_vs_forward": round(row["job_vs_forward"], 3),
                                  "human_genome_hours": round(HUMAN_BP / row["job_bp_per_s"] / 3600, 2),
                                  "preset": genome["preset"], "dtype": genome["dtype"], "backend": genome["backend"]}
    return result


def machine_facts() -> dict:
    facts = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    try:
        facts["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                       "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as err:
        facts["gpu"] = f"nvidia-smi failed: {err}"
    return facts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for acceptance.json, acceptance.log and the stages' files")
    parser.add_argument("--budget", type=float, default=470, help="seconds for all stages together (default 470)")
    parser.add_argument("--archs", help="CUDA architectures to build for (default: the present GPU's, e.g. 90)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    run = Run(args.out, args.budget)
    try:
        stages(run, args.out, args.archs)
    finally:
        result = summary(args.out, run.stages, machine_facts())
        (args.out / "acceptance.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
    return 0 if all(s["rc"] == 0 for s in run.stages) and len(run.stages) == len(BOXES) else 1


if __name__ == "__main__":
    sys.exit(main())

"""score-variants resumes: a run killed with SIGKILL mid-way, rerun with the same command,
writes the same bytes as one uninterrupted run, redoing only the unfinished block."""

import os
import shutil
import signal
import subprocess
import sys
import time


def command(fixtures_dir, shared_data):
    vcf = shared_data / "variants" / "sars_cov_2_usher_global_samples.vcf"
    fasta = shared_data / "genomes" / "sars_cov_2_NC_045512v2.fa"
    return [sys.executable, "-m", "ntengine.cli", "score-variants", str(fixtures_dir / "v2_tiny"), "--vcf", str(vcf),
            "--fasta", str(fasta), "-o", "out.vcf.gz", "--tsv", "out.tsv", "--window", "600",
            "--block-records", "16", "--quiet"]


def test_a_killed_run_resumes_to_the_same_bytes(fixtures_dir, shared_data, tmp_path):
    cmd = command(fixtures_dir, shared_data)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    subprocess.run(cmd, cwd=whole, check=True)
    run = subprocess.Popen(cmd, cwd=killed)
    parts = killed / "out.vcf.gz.parts"
    deadline = time.time() + 120
    while len(list(parts.glob("0*.json"))) < 5 and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, "the run finished before it could be killed: use smaller blocks"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    committed = len(list(parts.glob("0*.json")))
    assert committed >= 5 and not (killed / "out.vcf.gz").exists()
    subprocess.run(cmd, cwd=killed, check=True)
    for name in ("out.vcf.gz", "out.tsv"):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    assert sorted(p.name for p in killed.iterdir()) == ["out.tsv", "out.vcf.gz"]  # no lock, parts or .partial
    shutil.rmtree(tmp_path)

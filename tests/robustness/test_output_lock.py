"""One writer per output: a second run is refused at once, naming the holder; a lock left
by a killed run does not block the resume."""

import json
import os
import socket
import subprocess
import sys

import pytest

import ntengine
from ntengine.genome.job import embed_genome
from ntengine.genome.settings import EmbedSettings
from ntengine.locking import OutputLocked, output_lock


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "x.zarr"
    with output_lock(out):
        with pytest.raises(OutputLocked, match=rf"x.zarr is being written by pid {os.getpid()} on "
                                               rf"{socket.gethostname()}.*delete .*x.zarr.lock"):
            with output_lock(out):
                pass
    assert not (tmp_path / "x.zarr.lock").exists()  # released


def test_a_killed_runs_lock_is_taken_over_and_the_job_resumes(fixtures_dir, shared_data, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "phix.zarr"
    (tmp_path / "phix.zarr.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                                          "since": "then"}))
    engine = ntengine.compile(fixtures_dir / "v2_tiny")
    fasta = shared_data / "genomes" / "phiX174_NC_001422.1.fasta.gz"
    s = embed_genome(engine, fasta, out, EmbedSettings(window=1200), progress=False)
    assert s["embedded"] == s["windows"] > 0 and not (tmp_path / "phix.zarr.lock").exists()
    # A live holder (this process) refuses the job before it touches the store.
    with output_lock(out), pytest.raises(OutputLocked, match="phix.zarr is being written by pid"):
        embed_genome(engine, fasta, out, EmbedSettings(window=1200), progress=False)

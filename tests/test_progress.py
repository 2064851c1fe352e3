"""Progress and messages: log lines off a terminal (an estimate after the first update, a
summary at the end), per-batch granularity in score-variants, and the CLI's -q, --log-file
and --progress."""

import logging

import pytest

from ntengine import progress as progress_mod
from ntengine.cli import main
from ntengine.genome.fasta import read_records
from ntengine.variants.scoring import ScoreSettings
from ntengine.variants.vcf import score_variants


@pytest.fixture
def messages():
    """The ntengine logger's messages at INFO and above, whatever level an earlier CLI run left it at."""
    logger, seen = logging.getLogger("ntengine"), []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: seen.append(record.getMessage())
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def log_mode():
    progress_mod.set_mode("log")
    yield
    progress_mod.set_mode("auto")


def test_log_lines_estimate_then_report_then_summarise(log_mode, messages, monkeypatch):
    monkeypatch.setattr(progress_mod, "LOG_EVERY_S", 0.0)
    with progress_mod.progress(10_000, "embedding", "bp") as bar:
        bar.update(1_000)
        bar.update(4_000)
        bar.update(5_000)
    lines = messages
    assert lines[0].startswith("embedding: 1.0 kbp of 10.0 kbp took ") and "to go" in lines[0]
    assert lines[1].startswith("embedding: 5.0 kbp of 10.0 kbp (50%), ") and "left" in lines[1]
    assert lines[-1].startswith("embedding: 10.0 kbp in ") and len(lines) == 4


def test_disabled_and_off_say_nothing(messages):
    progress_mod.set_mode("off")
    try:
        with progress_mod.progress(3, "scoring", "records") as bar:
            bar.update(3)
    finally:
        progress_mod.set_mode("auto")
    with progress_mod.progress(3, "scoring", "records", enabled=False) as bar:
        bar.update(3)
    assert messages == []
    with pytest.raises(ValueError, match="progress mode must be one of"):
        progress_mod.set_mode("loud")


def test_score_variants_progress_moves_per_batch(fixtures_dir, shared_data, tmp_path, monkeypatch):
    """One block of 40 records used to be one update at its end: now every forward batch
    moves the count, and the updates add up to the records exactly."""
    import ntengine
    from ntengine.variants import vcf as vcf_mod

    updates = []

    class Recorder:
        def __init__(self, total, *args, **kwargs):
            self.total = total

        def update(self, n):
            updates.append(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(vcf_mod, "reporter", Recorder)
    fasta = shared_data / "genomes" / "sars_cov_2_NC_045512v2.fa"
    lines = (shared_data / "variants" / "sars_cov_2_usher_global_samples.vcf").read_text().splitlines(True)
    header = [ln for ln in lines if ln.startswith("#")]
    vcf = tmp_path / "first40.vcf"
    vcf.write_text("".join(header + [ln for ln in lines if not ln.startswith("#")][:40]))
    engine = ntengine.compile(fixtures_dir / "v2_tiny")
    s = score_variants(engine, vcf, fasta, tmp_path / "o.vcf", ScoreSettings(window=600, batch_size=4))
    assert s["records"] == 40 and sum(updates) == 40
    assert len([n for n in updates if n > 0]) >= 10  # ~ (unmasked + masked windows) / 4 batches


def test_cli_quiet_log_file_and_log_progress(fixtures_dir, tmp_path, capsys):
    genome = tmp_path / "phix.fa"
    from ntengine.cli import EXAMPLE_GENOME

    genome.write_text(f">NC_001422.1\n{next(read_records(EXAMPLE_GENOME)).sequence}\n")
    ckpt = str(fixtures_dir / "v2_tiny")
    assert main(["embed", ckpt, str(genome), "-o", str(tmp_path / "a.zarr"), "--window", "600", "-q"]) == 0
    assert capsys.readouterr().err == ""
    log_file = tmp_path / "job.log"
    assert main(["embed", ckpt, str(genome), "-o", str(tmp_path / "b.zarr"), "--window", "600", "--batch-size", "2",
                 "--progress", "log", "--log-file", str(log_file)]) == 0
    err = capsys.readouterr().err
    assert "embedding: 1.2 kbp of 5.4 kbp took " in err and "to go" in err and "9 windows (9 embedded" in err
    written = log_file.read_text().splitlines()
    assert any("INFO ntengine: embedding: 1.2 kbp of 5.4 kbp took" in line for line in written)
    assert all(line[:4].isdigit() for line in written)  # each starts with its time
    assert main(["embed", ckpt, str(tmp_path / "missing.fa"), "-o", str(tmp_path / "c.zarr"), "-q"]) == 2
    assert "no such FASTA file" in capsys.readouterr().err  # errors get through -q

"""Paths to the shared data next to the repository (../shared), as session fixtures
that skip with the reason when a checkout lacks them."""

import gzip
import os
from pathlib import Path

import pytest

from isa import isa_params

# Beside the repository; NTENGINE_SHARED points elsewhere (bench/gpu_acceptance.py's carried copy).
SHARED = Path(os.environ.get("NTENGINE_SHARED") or Path(__file__).resolve().parents[2] / "shared")
FIXTURES = SHARED / "fixtures" / "nt-reference"


def _existing(path: Path) -> Path:
    if not path.is_dir():
        why = f"shared data not found at {path} (expected beside the repository as ../shared)"
        if os.environ.get("CI"):  # CI always has it: a missing copy must not pass as skips
            pytest.fail(why)
        pytest.skip(why)
    return path


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """What ntengine caches (FASTA indexes, exported artefacts) goes to a folder of this
    session, not the user's ~/.cache/ntengine; tests that need their own set it again."""
    previous = os.environ.get("NTENGINE_CACHE")
    os.environ["NTENGINE_CACHE"] = str(tmp_path_factory.mktemp("ntengine-cache"))
    yield
    if previous is None:
        os.environ.pop("NTENGINE_CACHE")
    else:
        os.environ["NTENGINE_CACHE"] = previous


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """shared/fixtures/nt-reference: official checkpoints, outputs and tokenizer goldens."""
    return _existing(FIXTURES)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """shared/data: real genomes, variants and task data sets (see its README)."""
    return _existing(SHARED / "data")


@pytest.fixture(scope="session")
def ecoli(shared_data) -> str:
    """Real sequence: the first 64 kb of E. coli K-12 MG1655 (uppercase, no N)."""
    with gzip.open(shared_data / "genomes" / "ecoli_K12_MG1655_NC_000913.3.fna.gz", "rt") as f:
        next(f)
        return "".join(line.strip() for _, line in zip(range(800), f))


@pytest.fixture(scope="session")
def v2_50m(tmp_path_factory) -> Path:
    """One random-weight checkpoint of the published NT-v2-50M shape (seed 0, HF layout),
    written once per session for every test that needs a real-sized model."""
    from ntengine.checkpoint import init_checkpoint

    return init_checkpoint("v2-50m", tmp_path_factory.mktemp("ckpt") / "v2-50m", seed=0)


@pytest.fixture(params=isa_params())
def cpu_level(request) -> str:
    """For CPU-only tests: the CPU kernels and tokenizer forced to each ISA level this
    machine runs (the others skip with the reason)."""
    from ntengine import cpu

    with cpu.forced(request.param):
        yield request.param

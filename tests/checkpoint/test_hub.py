"""Hub ids and hub cache folders resolved to local snapshots, offline, through huggingface_hub.

Each test builds a hub cache exactly as huggingface_hub lays it out (blobs/, refs/,
snapshots/ of relative symlinks) from the real v2_tiny fixture, and runs with
HF_HUB_OFFLINE=1: no test reaches the network.
"""

import hashlib
import json
import os
from pathlib import Path

import pytest

from ntengine.checkpoint.common import CheckpointError
from ntengine.checkpoint.hub import hub_cache_dir, hub_patterns, resolve_checkpoint

huggingface_hub = pytest.importorskip("huggingface_hub")
hf_constants = pytest.importorskip("huggingface_hub.constants")  # a lazy submodule: import it by name

REPO = "test-org/nt-tiny"
COMMIT = hashlib.sha1(b"main").hexdigest()
COMMIT_V1 = hashlib.sha1(b"v1").hexdigest()


def _blob_id(data: bytes, lfs: bool) -> str:
    # The Hub names LFS blobs by sha256, regular ones by their git sha1.
    return hashlib.sha256(data).hexdigest() if lfs else hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def make_cache(hub: Path, files: dict[str, Path], refs: dict[str, str], repo: str = REPO) -> Path:
    """models--ORG--NAME with `files` (repo path -> source) in every commit of `refs`."""
    folder = hub / ("models--" + repo.replace("/", "--"))
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    for ref, commit in refs.items():
        (folder / "refs" / ref).write_text(commit)  # 40 hex, no newline, as huggingface_hub writes it
        for name, source in files.items():
            data = source.read_bytes()
            sha = _blob_id(data, lfs=not name.endswith(".json"))
            (folder / "blobs" / sha).write_bytes(data)
            link = folder / "snapshots" / commit / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(folder / "blobs" / sha, link.parent))
    return folder


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty hub cache under HF_HOME, with huggingface_hub offline."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    # huggingface_hub reads HF_HUB_OFFLINE at import: make any HTTP request it tries fail too.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    (tmp_path / "hf_home" / "hub").mkdir(parents=True)
    return tmp_path / "hf_home" / "hub"


@pytest.fixture
def calls(monkeypatch) -> list[dict]:
    """The arguments of every huggingface_hub.snapshot_download call (which still runs)."""
    seen, real = [], huggingface_hub.snapshot_download

    def spy(repo_id, **kwargs):
        seen.append({"repo_id": repo_id, **kwargs})
        return real(repo_id, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", spy)
    return seen


@pytest.fixture
def tiny(fixtures_dir, hub) -> Path:
    files = {name: fixtures_dir / "v2_tiny" / name for name in ("config.json", "model.safetensors")}
    return make_cache(hub, files, {"main": COMMIT, "v1": COMMIT_V1})


def test_hub_id_resolves_offline_to_the_snapshot(tiny, hub, calls, fixtures_dir):
    snapshot = resolve_checkpoint(REPO)
    assert snapshot == tiny / "snapshots" / COMMIT
    weights = snapshot / "model.safetensors"
    assert weights.is_symlink() and weights.resolve().parent == (tiny / "blobs").resolve()
    # Found by huggingface_hub itself, in the cache read from HF_HOME now, without asking the network.
    [call] = calls
    assert call["repo_id"] == REPO and Path(call["cache_dir"]) == hub and call["local_files_only"]
    assert call["allow_patterns"] == hub_patterns(trust_pickle=False)
    assert weights.read_bytes() == (fixtures_dir / "v2_tiny" / "model.safetensors").read_bytes()
    assert json.loads((snapshot / "config.json").read_text())["model_type"] == "esm"


@pytest.mark.parametrize("spec, revision, commit", [
    (f"{REPO}@main", None, COMMIT),
    (REPO, "main", COMMIT),
    (f"{REPO}@v1", None, COMMIT_V1),
    (REPO, "v1", COMMIT_V1),
    (REPO, COMMIT_V1, COMMIT_V1),
    (f"{REPO}@v1", "v1", COMMIT_V1),
])
def test_revisions_of_a_hub_id(tiny, spec, revision, commit):
    assert resolve_checkpoint(spec, revision=revision) == tiny / "snapshots" / commit


@pytest.mark.parametrize("revision, commit", [(None, COMMIT), ("v1", COMMIT_V1), (COMMIT_V1, COMMIT_V1)])
def test_the_cache_folder_itself_resolves_to_a_snapshot(tiny, revision, commit):
    assert resolve_checkpoint(tiny, revision=revision) == tiny / "snapshots" / commit
    assert resolve_checkpoint(str(tiny), revision=revision) == tiny / "snapshots" / commit


def test_a_missing_ref_of_the_cache_folder_lists_the_snapshots(tiny):
    with pytest.raises(CheckpointError, match="no ref 'v2'") as e:
        resolve_checkpoint(tiny, revision="v2")
    assert COMMIT in str(e.value) and COMMIT_V1 in str(e.value)
    (tiny / "refs" / "v1").write_text("f" * 40)
    with pytest.raises(CheckpointError, match=f"ref 'v1' points to {'f' * 40}, which is not there"):
        resolve_checkpoint(tiny, revision="v1")


def test_a_snapshot_folder_is_an_ordinary_folder(tiny):
    snapshot = tiny / "snapshots" / COMMIT
    assert resolve_checkpoint(snapshot) == snapshot
    assert resolve_checkpoint(snapshot / "model.safetensors") == snapshot / "model.safetensors"
    with pytest.raises(ValueError, match="not a hub cache folder"):
        resolve_checkpoint(snapshot, revision="v1")


@pytest.mark.parametrize("spec, revision, command", [
    ("test-org/absent", None, "`hf download test-org/absent`"),
    ("test-org/absent@v2", None, "`hf download test-org/absent --revision v2`"),
    (REPO, "v2", f"`hf download {REPO} --revision v2`"),  # cached, but not that revision
])
def test_not_cached_offline_says_where_it_looked_and_how_to_fetch(tiny, hub, spec, revision, command):
    with pytest.raises(CheckpointError) as e:
        resolve_checkpoint(spec, revision=revision)
    message = str(e.value)
    assert spec.split("@")[0] in message and str(hub) in message and command in message
    assert "HF_HUB_OFFLINE=1" in message
    if revision or "@" in spec:
        assert "(revision v2)" in message


def test_not_a_path_and_not_an_id(hub):
    for spec in ("no/such/folder", "./missing", "missing.safetensors"):
        with pytest.raises(CheckpointError, match="no such file or folder, and not a Hugging Face hub id"):
            resolve_checkpoint(spec)
    with pytest.raises(CheckpointError, match="not a valid Hugging Face hub id"):
        resolve_checkpoint("org/na--me")
    with pytest.raises(ValueError, match="names revision 'v1' but revision='v2'"):
        resolve_checkpoint(f"{REPO}@v1", revision="v2")


def test_revision_with_a_plain_folder_is_refused(fixtures_dir):
    assert resolve_checkpoint(fixtures_dir / "v2_tiny") == fixtures_dir / "v2_tiny"
    with pytest.raises(ValueError, match="revision='main' was given with .*v2_tiny, a local path"):
        resolve_checkpoint(fixtures_dir / "v2_tiny", revision="main")


def test_patterns_fetch_pickles_only_when_trusted_and_never_code():
    safe, trusted = hub_patterns(trust_pickle=False), hub_patterns(trust_pickle=True)
    assert {"config.json", "*.safetensors", "*.safetensors.index.json", "adapter_config.json", "head.json"} <= set(safe)
    assert not any(p.endswith((".bin", ".bin.index.json")) for p in safe)
    assert {"*.bin", "*.bin.index.json"} <= set(trusted)
    assert not any(".py" in p for p in trusted)


def test_pickles_in_the_repo_are_not_required_without_trust_pickle(tiny, calls):
    # huggingface_hub's cached tree listing (trees/<commit>.json), against which it checks a snapshot
    # offline, says the repo also has a .bin and code that were never fetched.
    (tiny / "trees").mkdir()
    listing = {n: {"size": 1, "blob_id": "0" * 40} for n in ("config.json", "model.safetensors", "pytorch_model.bin",
                                                              "modeling_esm.py")}
    (tiny / "trees" / f"{COMMIT}.json").write_text(json.dumps({"format_version": 1, "files": listing}))
    assert resolve_checkpoint(REPO) == tiny / "snapshots" / COMMIT
    # Trusted, the .bin is still not fetched: the repo has safetensors weights.
    assert resolve_checkpoint(REPO, trust_pickle=True) == tiny / "snapshots" / COMMIT
    assert [c["allow_patterns"] for c in calls] == [hub_patterns(False), hub_patterns(False)]


def test_pickle_weights_are_fetched_when_trusted_and_the_only_weights(fixtures_dir, hub, calls, tmp_path):
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(str(fixtures_dir / "v2_tiny" / "model.safetensors")), tmp_path / "pytorch_model.bin")
    files = {"config.json": fixtures_dir / "v2_tiny" / "config.json",
             "pytorch_model.bin": tmp_path / "pytorch_model.bin"}
    folder = make_cache(hub, files, {"main": COMMIT}, repo="test-org/nt-bin")
    (folder / "trees").mkdir()  # the repo listing, which huggingface_hub checks a snapshot against offline
    listing = {n: {"size": 1, "blob_id": "0" * 40} for n in (*files, "modeling_esm.py")}
    (folder / "trees" / f"{COMMIT}.json").write_text(json.dumps({"format_version": 1, "files": listing}))
    snapshot = resolve_checkpoint("test-org/nt-bin", trust_pickle=True)
    assert (snapshot / "pytorch_model.bin").is_symlink() and not (snapshot / "modeling_esm.py").exists()
    assert [(c["revision"], c["allow_patterns"]) for c in calls] == [(None, hub_patterns(False)),
                                                                      (COMMIT, hub_patterns(True))]


def test_jax_layout_is_fetched_when_trusted_and_nothing_else_is_there(fixtures_dir, hub, calls):
    jax = fixtures_dir / "v2_tiny" / "jax_model"
    make_cache(hub, {f"jax_model/{p.name}": p for p in jax.iterdir()}, {"main": COMMIT}, repo="test-org/nt-jax")
    snapshot = resolve_checkpoint("test-org/nt-jax", trust_pickle=True)
    assert (snapshot / "jax_model" / "pytree_ckpt.joblib").is_symlink()
    assert [(c["revision"], c["allow_patterns"]) for c in calls] == [(None, hub_patterns(False)),
                                                                      (COMMIT, hub_patterns(True)),
                                                                      (COMMIT, ["jax_model/*"])]
    assert sorted(p.name for p in (snapshot / "jax_model").iterdir()) == sorted(p.name for p in jax.iterdir())


def test_cache_folder_follows_the_environment_at_call_time(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hub_cache_dir() == tmp_path / "elsewhere"


def test_offline_env_set_after_import_is_honoured(tiny, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # as if imported while online
    seen = []

    def fake(repo_id, **kwargs):  # not the real one: it would try the network if we got this wrong
        seen.append(kwargs["local_files_only"])
        return str(tiny / "snapshots" / COMMIT)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    assert resolve_checkpoint(REPO) == tiny / "snapshots" / COMMIT
    assert seen == [True]


@pytest.mark.parametrize("error, expect", [
    ("RepositoryNotFoundError", "cannot be fetched from the Hugging Face hub: 404 Repository Not Found"),
    ("GatedRepoError", "cannot be fetched from the Hugging Face hub: 404 Repository Not Found"),
    ("RevisionNotFoundError", "cannot be fetched from the Hugging Face hub: 404 Repository Not Found"),
    ("LocalEntryNotFoundError", "and the Hugging Face hub cannot be reached"),
])
def test_hub_errors_when_online(hub, monkeypatch, error, expect):
    # Online as far as ntengine can tell; huggingface_hub answers with the error the Hub would cause.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    httpx = pytest.importorskip("httpx2")
    import huggingface_hub.errors as errors

    def fake(repo_id, **kwargs):
        assert not kwargs["local_files_only"]
        cls = getattr(errors, error)
        if error == "LocalEntryNotFoundError":
            raise cls("connection refused")
        response = httpx.Response(404, request=httpx.Request("GET", f"https://huggingface.co/api/models/{repo_id}"))
        raise cls("404 Repository Not Found", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    with pytest.raises(CheckpointError, match=expect) as e:
        resolve_checkpoint("test-org/private@v3")
    assert "test-org/private (revision v3)" in str(e.value)


def test_compile_and_cli_by_hub_id_offline(tiny, fixtures_dir, tmp_path):
    """The end to end path users take: a model in the hub cache, no network, loaded by id."""
    import numpy as np

    import ntengine
    from ntengine.cli import main

    golden = np.load(fixtures_dir / "v2_tiny" / "golden.npz")
    by_id, by_path = ntengine.compile(REPO), ntengine.compile(fixtures_dir / "v2_tiny")
    by_cache_folder = ntengine.compile(tiny, revision="v1")
    real = golden["sequence_mask"].astype(bool)
    for engine in (by_id, by_cache_folder):
        out = engine.forward(golden["tokens"], golden["sequence_mask"])["logits"][real]
        np.testing.assert_array_equal(out, by_path.forward(golden["tokens"], golden["sequence_mask"])["logits"][real])
    assert by_id.load_report.source == REPO and COMMIT in by_id.load_report.folder
    fasta = tmp_path / "x.fa"
    fasta.write_text(">x\n" + "ACGT" * 300 + "\n")
    assert main(["embed", REPO, str(fasta), "-o", str(tmp_path / "x.zarr"), "--revision", "v1", "-q"]) == 0
    assert main(["embed", "test-org/not-cached", str(fasta), "-o", str(tmp_path / "y.zarr"), "-q"]) == 2

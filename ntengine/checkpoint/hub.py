"""Checkpoints named by a Hugging Face hub id or a hub cache folder, resolved to a local folder.

The loaders only ever read local files; this module turns `ORG/NAME[@REVISION]` or a
`models--ORG--NAME` cache folder into the snapshot folder they read. Downloads go through
huggingface_hub (imported lazily: local paths work without it), which keeps its own cache.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ntengine.checkpoint.common import CheckpointError

# The Hub's rule: [A-Za-z0-9._-], not starting or ending with . or - (so ./x and ../x stay paths).
_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"({_PART}/{_PART})(?:@(\S+))?")
_COMMIT = re.compile(r"[0-9a-f]{40}")
# What the loaders read; never *.py: we do not run code shipped with a hub repo.
_SAFE_PATTERNS = ["config.json", "*.safetensors", "*.safetensors.index.json", "adapter_config.json", "head.json"]
_PICKLE_PATTERNS = ["*.bin", "*.bin.index.json"]
_JAX_PATTERNS = ["jax_model/*"]  # InstaDeep's official JAX layout: a joblib pickle


def hub_patterns(trust_pickle: bool) -> list[str]:
    """The files that may be fetched from a hub repo: safetensors layouts, plus torch pickles
    when trusted (fetched only when the repo has no safetensors weights)."""
    return _SAFE_PATTERNS + (_PICKLE_PATTERNS if trust_pickle else [])


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder, from the environment as it is now.

    huggingface_hub computes its constants once, at import; reading the variables here
    lets a later HF_HOME / HF_HUB_CACHE (a test's, a notebook's) take effect.
    """
    env = os.environ
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                              "huggingface")
    hub = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def _offline() -> bool:
    # Also read at call time, for the same reason as hub_cache_dir.
    import huggingface_hub.constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return huggingface_hub.constants.HF_HUB_OFFLINE or any((v or "").upper() in ("1", "ON", "YES", "TRUE")
                                                           for v in flags)


def _cache_snapshot(folder: Path, revision: str | None) -> Path:
    """The snapshot of a `models--ORG--NAME` cache folder that `revision` (default main) names."""
    snapshots = folder / "snapshots"
    if revision is not None and _COMMIT.fullmatch(revision) and (snapshots / revision).is_dir():
        return snapshots / revision
    ref = revision or "main"
    ref_file = folder / "refs" / ref
    commit = ref_file.read_text().strip() if ref_file.is_file() else None
    if commit and (snapshots / commit).is_dir():
        return snapshots / commit
    have = ", ".join(sorted(p.name for p in snapshots.iterdir() if p.is_dir())) or "none"
    why = f"ref {ref!r} points to {commit}, which is not there" if commit else f"no ref {ref!r}"
    raise CheckpointError(f"{folder}: {why}; snapshots in this cache folder: {have} "
                          "(pass a revision: a ref name under refs/ or one of these commits)")


def _download(repo_id: str, revision: str | None, trust_pickle: bool) -> Path:
    try:
        import huggingface_hub
        from huggingface_hub import errors as hf_errors
        from huggingface_hub.errors import (HfHubHTTPError, HFValidationError, LocalEntryNotFoundError,
                                            OfflineModeIsEnabled)
    except ImportError as e:
        raise CheckpointError(f"{repo_id} looks like a Hugging Face hub id: install huggingface_hub "
                              f"(pip install 'huggingface_hub>=0.34') to fetch it") from e

    cache = hub_cache_dir()
    offline = _offline()
    # A mistyped local path looks like an id too: say both readings.
    named = f"no local folder {repo_id}, and as a hub id: {repo_id}" + (f" (revision {revision})" if revision else "")

    def fetch(rev: str | None, patterns: list[str]) -> Path:
        try:
            return Path(huggingface_hub.snapshot_download(repo_id, revision=rev, allow_patterns=patterns,
                                                          cache_dir=cache, local_files_only=offline))
        except HFValidationError as e:
            raise CheckpointError(f"{repo_id}: not a valid Hugging Face hub id ({e})") from e
        except (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError) as e:
            command = f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")
            state = "HF_HUB_OFFLINE=1 forbids downloads" if offline else "the Hugging Face hub cannot be reached"
            # Offline, huggingface_hub's own words only help when they list missing files: otherwise
            # they tell the user to change local_files_only, which is ours to set.
            incomplete = isinstance(e, getattr(hf_errors, "IncompleteSnapshotError", ()))
            detail = f" huggingface_hub says: {e}" if incomplete or not offline else ""
            raise CheckpointError(f"{named} is not (fully) in the hub cache {cache}, and {state}; "
                                  f"fetch it with `{command}` where the hub is reachable "
                                  f"(same HF_HOME / HF_HUB_CACHE).{detail}") from e
        except HfHubHTTPError as e:
            # Repository not found, gated, revision not found, or the Hub refusing us.
            raise CheckpointError(f"{named} cannot be fetched from the Hugging Face hub: {e}") from e

    # Safetensors first; pickles only when trusted and the repo has no safetensors weights
    # (InstaDeep's repos hold both: fetching both would double a 10 GB download). Later
    # fetches pin the commit just resolved, so every file comes from the same snapshot.
    snapshot = fetch(revision, _SAFE_PATTERNS)
    if trust_pickle and not any(snapshot.glob("*.safetensors")):
        snapshot = fetch(snapshot.name, _SAFE_PATTERNS + _PICKLE_PATTERNS)
    if trust_pickle and not (snapshot / "config.json").exists() and not (snapshot / "adapter_config.json").exists():
        snapshot = fetch(snapshot.name, _JAX_PATTERNS)
    if not snapshot.is_dir():  # huggingface_hub returns the path even when no file matched
        hint = "" if trust_pickle else "; pickle-based weights (*.bin, jax_model/) need trust_pickle=True"
        raise CheckpointError(f"{named}: the hub repo has none of the files ntengine reads "
                              f"({', '.join(hub_patterns(trust_pickle))}){hint}")
    return snapshot


def resolve_checkpoint(spec: str | os.PathLike, revision: str | None = None, trust_pickle: bool = False) -> Path:
    """Local folder (or file) for a checkpoint given as a path, a hub cache folder, or a hub id.

    - an existing `models--ORG--NAME` cache folder: its snapshot for `revision` (default main);
    - any other existing path: unchanged (`revision` is refused: it would be ignored);
    - `ORG/NAME` or `ORG/NAME@REVISION`: fetched through huggingface_hub (only the files
      ntengine reads), or found in its cache when offline.
    Raises CheckpointError saying what was looked for, and where.
    """
    path = Path(spec)
    if path.exists():
        if path.is_dir() and path.name.startswith("models--") and (path / "snapshots").is_dir():
            return _cache_snapshot(path, revision)
        if revision is not None:
            raise ValueError(f"revision={revision!r} was given with {path}, a local path that is not a hub cache "
                             "folder (models--ORG--NAME): a revision only selects a snapshot of a hub model")
        return path
    match = _HUB_ID.fullmatch(str(spec))
    if match is None:
        raise CheckpointError(f"{spec}: no such file or folder, and not a Hugging Face hub id (ORG/NAME)")
    repo_id, at = match.groups()
    if at is not None and revision is not None and at != revision:
        raise ValueError(f"{spec} names revision {at!r} but revision={revision!r} was also given")
    return _download(repo_id, at or revision, trust_pickle)

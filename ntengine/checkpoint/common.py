"""What every layout shares: the error type, the pickle guard, the load report and the strict match."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Callable, Optional

import torch

from ntengine.checkpoint.names import expected_shapes
from ntengine.config import NTConfig


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked; the message says why."""


def read_json(path: Path) -> dict:
    """A JSON file of a checkpoint; a broken one is a CheckpointError naming it."""
    import json

    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors file; a truncated or corrupt one names the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err}): truncated or corrupt, "
                              "download or write it again") from None


def write_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors' save_file creates files readable by their owner only (0600); a
    checkpoint is shared like any file, so it gets the permissions the umask gives."""
    import os

    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": "pt"})
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def refuse_pickle(path: Path, trust_pickle: bool) -> None:
    if not trust_pickle:
        raise CheckpointError(
            f"{path} is a pickle-based file, and loading a pickle can run arbitrary code. "
            "Pass trust_pickle=True (CLI: --trust-pickle) only if you trust its source, "
            "or convert it to safetensors."
        )


@dataclasses.dataclass
class LoadReport:
    """What a load read, and everything it accepted without using it.

    Attributes:
        source: what the caller passed (a folder, a hub id).
        folder: the local folder read.
        layout: "ntengine" | "hf" | "jax".
        files: the weight files read.
        stored_dtypes: dtype name -> number of tensors stored in it.
        used_parameters: elements of the tensors the model runs.
        unused: "name [shape]: why" for each tensor read and accepted but never used.
        unused_parameters: their elements.
        notes: renamings, tying, adapters merged, heads found.
    """

    source: str
    folder: str
    layout: str
    files: list[str] = dataclasses.field(default_factory=list)
    stored_dtypes: dict[str, int] = dataclasses.field(default_factory=dict)
    used_parameters: int = 0
    unused: list[str] = dataclasses.field(default_factory=list)
    unused_parameters: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)
    _sizes: dict[str, int] = dataclasses.field(default_factory=dict, repr=False)

    def count(self, state: dict[str, torch.Tensor], stored: dict[str, torch.Tensor]) -> None:
        """Record the parameter count and the stored dtypes of what was loaded."""
        self.used_parameters = sum(t.numel() for t in state.values())
        self.stored_dtypes = dict(Counter(str(t.dtype).removeprefix("torch.") for t in stored.values()))

    def ignore(self, key: str, tensor: torch.Tensor, why: str) -> None:
        self.unused.append(f"{key} {list(tensor.shape)}: {why}")
        self.unused_parameters += tensor.numel()
        self._sizes[self.unused[-1]] = tensor.numel()

    def summary(self) -> str:
        """One line: "54.9M parameters used (float32); the file also holds 1.05M unused (...)"."""
        dtypes = ", ".join(sorted(self.stored_dtypes)) or "no tensors"
        line = f"{self.used_parameters / 1e6:.1f}M parameters used (stored as {dtypes})"
        if self.unused:
            largest_first = sorted(self.unused, key=lambda u: -self._sizes.get(u, 0))
            what = "; ".join(u.split(":")[0] for u in largest_first)
            line += f"; the file also holds {self.unused_parameters / 1e6:.2f}M never read ({what})"
        return line


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint: config, state dict under our names, report, optional task head.

    `head` is (head config, float32 nn.Module) for a fine-tuned model (see
    `ntengine.checkpoint.heads`), else None.
    """

    config: NTConfig
    state: dict[str, torch.Tensor]
    report: LoadReport
    head: Optional[tuple[dict, torch.nn.Module]] = None


def match_strict(config: NTConfig, found: dict[str, torch.Tensor], unplaced: dict, where: Callable[[str], str],
                 problems: list[str]) -> dict[str, torch.Tensor]:
    """Strictly match tensors found under our names against the model's expectations.

    `found` maps our names to tensors; `unplaced` holds the external keys we could not
    place (reported as unexpected); `where` names one of ours in the source layout.
    Raises one CheckpointError listing every offender; returns the state dict.
    """
    shapes = expected_shapes(config)
    for name, shape in shapes.items():
        if name not in found:
            problems.append(f"missing {where(name)} (shape {list(shape)})")
        elif tuple(found[name].shape) != shape:
            problems.append(
                f"wrong shape for {where(name)}: {list(found[name].shape)}, expected {list(shape)}"
            )
        elif not found[name].is_floating_point():
            problems.append(f"{where(name)} is stored as {str(found[name].dtype).removeprefix('torch.')}, "
                            "expected floating-point weights")
        elif not torch.isfinite(found[name]).all():  # would give all-NaN outputs without a word
            problems.append(f"{where(name)} holds NaN or Inf values")
    problems.extend(f"unexpected {key}" for key in sorted(unplaced))
    problems.extend(f"unexpected {where(name)}" for name in sorted(set(found) - set(shapes)))
    if problems:
        raise CheckpointError(f"{len(problems)} problem(s) in the checkpoint:\n  " + "\n  ".join(problems))
    return {name: found[name].contiguous() for name in shapes}

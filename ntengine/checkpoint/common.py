"""What every layout shares: the error type, the pickle guard and the strict match."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ntengine.checkpoint.names import expected_shapes
from ntengine.config import NTConfig


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded as asked; the message says why."""


def refuse_pickle(path: Path, trust_pickle: bool) -> None:
    if not trust_pickle:
        raise CheckpointError(
            f"{path} is a pickle-based file, and loading a pickle can run arbitrary code. "
            "Pass trust_pickle=True (CLI: --trust-pickle) only if you trust its source, "
            "or convert it to safetensors."
        )


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
    problems.extend(f"unexpected {key}" for key in sorted(unplaced))
    problems.extend(f"unexpected {where(name)}" for name in sorted(set(found) - set(shapes)))
    if problems:
        raise CheckpointError(f"{len(problems)} problem(s) in the checkpoint:\n  " + "\n  ".join(problems))
    return {name: found[name].contiguous() for name in shapes}

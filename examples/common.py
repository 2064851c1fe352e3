"""What the example scripts share: the data folder default, the model, saving the figure."""

from __future__ import annotations

import argparse
from pathlib import Path

# The shared data sits beside the repository (../shared/data), where tests/conftest.py finds it too.
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RANDOM_WEIGHTS = "RANDOM WEIGHTS: the pipeline, not biology"


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the options every example takes: --data, --checkpoint, -o."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default: %(default)s)")
    p.add_argument("--checkpoint", help="any checkpoint ntengine.compile takes (folder, hub id, .onnx, ...); "
                                        "default: a random-weight NT-v2-50M written into the output folder")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for the figure and what it is drawn from")
    return p


def load_engine(args):
    """(engine, label for the figure) for --checkpoint; without one, a random-weight checkpoint of
    the NT-v2-50M shape in the output folder (reused by later runs), announced loudly."""
    import ntengine
    from ntengine.checkpoint import init_checkpoint

    args.output.mkdir(parents=True, exist_ok=True)
    if args.checkpoint:
        return ntengine.compile(args.checkpoint), Path(args.checkpoint).name
    folder = args.output / "nt-v2-50m-random"
    if not (folder / "config.json").is_file():  # config.json is written last: its presence means complete
        init_checkpoint("v2-50m", folder, seed=0)
    print(f"WARNING: no --checkpoint given: using RANDOM weights (NT-v2-50M shape, seed 0) from {folder}; "
          "the figure shows the pipeline, not biology", flush=True)
    return ntengine.compile(folder), RANDOM_WEIGHTS


def save(fig, path: Path) -> None:
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print(f"wrote {path}")

"""Compare an exported artefact with the PyTorch reference on real-genome windows."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ntengine import ops
from ntengine.model import NTModel

log = logging.getLogger("ntengine.export")
# max|artefact - reference| / max|reference| at real tokens, per artefact dtype.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def genome_batch(config, lengths=(48, 31, 7), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random phiX174 windows of the given token counts (capped by the model's context),
    tokenised and right-padded as `batch_encode` returns them: ids int32 [B, L],
    attention_mask bool [B, L]."""
    from ntengine.genome.fasta import EXAMPLE_GENOME, read_records
    from ntengine.genome.windows import sample_windows
    from ntengine.tokenizer import Tokenizer

    genome = next(iter(read_records(EXAMPLE_GENOME))).sequence
    seqs = [sample_windows(genome, 1, min(n, config.max_positions), seed=seed * 1009 + i)[0]
            for i, n in enumerate(lengths)]
    enc = Tokenizer(version=config.version, max_length=config.max_positions).batch_encode(seqs)
    return enc.ids, enc.attention_mask


def compare(got: dict, want: dict, mask: np.ndarray) -> dict[str, tuple[float, float]]:
    """(max abs, max rel) error per output of `got` at real positions; rel = max|a-b|/max|b|."""
    real = mask.astype(bool)
    errors = {}
    for name, a in got.items():
        a, b = np.asarray(a, np.float64)[real], np.asarray(want[name], np.float64)[real]
        diff = float(np.abs(a - b).max())
        errors[name] = (diff, diff / max(float(np.abs(b).max()), 1e-30))
    return errors


def validate_artefact(artefact, reference: NTModel, tolerance: float | None = None, lengths=(48, 31, 7),
                      seed: int = 0, verbose: bool = True) -> dict[str, tuple[float, float]]:
    """Run an exported artefact (an `ArtefactBackend`) and the fp32 `reference` on one
    padded batch of genome windows; print the errors per output and raise ValueError
    beyond tolerance (default: TOLERANCE of the artefact's dtype).

    Returns {output: (max abs error, max relative error)}.
    """
    tolerance = TOLERANCE[artefact.dtype] if tolerance is None else tolerance
    ids, mask = genome_batch(reference.config, lengths, seed)
    got = artefact._run(torch.from_numpy(ids), torch.from_numpy(mask), list(artefact.outputs))
    _, layers, logits = artefact.layers_logits
    with ops.use("torch"), torch.inference_mode():
        ref = reference.float()(torch.from_numpy(ids).long(), torch.from_numpy(mask), layers=layers, logits=logits)
    errors = compare({k: v.float().cpu().numpy() for k, v in got.items()}, {k: v.numpy() for k, v in ref.items()},
                     mask)
    report = ", ".join(f"{k}: max abs {a:.3g}, max rel {r:.3g}" for k, (a, r) in errors.items())
    if verbose:
        log.info(f"validate {artefact.path.name} ({artefact.name}, {artefact.dtype}, batch {ids.shape}): {report}")
    bad = {k: r for k, (_, r) in errors.items() if not r <= tolerance}
    if bad:
        raise ValueError(f"{artefact.path}: {artefact.name} outputs differ from PyTorch beyond {tolerance:g} "
                         f"(relative): {report}")
    return errors


def validate_onnx(path, reference: NTModel, **kwargs) -> dict[str, tuple[float, float]]:
    """`validate_artefact` for an ONNX file, run in onnxruntime on the CPU."""
    from ntengine.backends.ort_backend import OrtBackend

    return validate_artefact(OrtBackend(path), reference, **kwargs)

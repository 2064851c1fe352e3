"""What a benchmark feeds the model and what it counts: real DNA windows, the FLOPs of a
forward pass, a GEMM ceiling measured in the same run, and published device peaks.

FLOPs (a multiply-add = 2), per token and layer, for width E, FFN width F and context L
(tokens per row, `<cls>` included): projections 2·(4E² + 3EF) for v2 (q, k, v, out;
SwiGLU fc1 E→2F and fc2) or 2·(4E² + 2EF) for v1's GELU FFN, plus attention 4·L·E
(q·kᵀ and p·v over all heads). GFLOP/s = that × layers × tokens / s. The LM head is not
counted: benchmarks time the embeddings.
"""

from __future__ import annotations

from ntengine.config import NTConfig


# Published dense peaks (TFLOP/s, no sparsity) by GPU name fragment and compute dtype: the
# MFU denominator. SXM parts; PCIe cards run lower clocks.
GPU_PEAK_TFLOPS = {
    "H200": {"float16": 989.0, "bfloat16": 989.0, "float32": 67.0},
    "H100": {"float16": 989.0, "bfloat16": 989.0, "float32": 67.0},
    "A100": {"float16": 312.0, "bfloat16": 312.0, "float32": 19.5},
    "L4": {"float16": 121.0, "bfloat16": 121.0, "float32": 30.3},
    "A10": {"float16": 125.0, "bfloat16": 125.0, "float32": 31.2},
    "T4": {"float16": 65.0, "float32": 8.1},
}


def peak_tflops(device_name: str, dtype: str) -> float | None:
    for fragment, peaks in GPU_PEAK_TFLOPS.items():
        if fragment in device_name:
            return peaks.get(dtype)
    return None


def flops_per_token(cfg: NTConfig, context: int) -> float:
    e, f = cfg.embed_dim, cfg.ffn_dim
    ffn = 3 * e * f if cfg.rotary else 2 * e * f
    return cfg.num_layers * (2 * (4 * e * e + ffn) + 4 * context * e)


def genome(fasta=None) -> str:
    """The bases windows are cut from: the first record of `fasta`, else the bundled
    phiX174 genome (5,386 bp, circular), uppercase."""
    from ntengine.genome.fasta import EXAMPLE_GENOME, read_records

    return next(iter(read_records(fasta or EXAMPLE_GENOME))).sequence.upper()

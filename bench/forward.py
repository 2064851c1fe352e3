"""Forward throughput: reference eager vs fused, fp32 and bf16, at a published NT shape.

    python bench/forward.py                         # NT-v2-50M shape, the issue's shapes
    python bench/forward.py --preset v2-100m --shapes 8x1000 -r 5

Every engine runs the same random-weight model (`init_random_weights`, seed 0) on the
same real E. coli windows, in one process, timed round-robin (one forward of each engine per
round), so ratios between rows are meaningful even on a noisy shared machine.
"tokens/s" counts real tokens through the encoder (the embeddings; no LM head).

FLOP formula (multiply-add = 2 FLOPs), per token and layer, for width E, FFN width F
and context L (tokens per row, `<cls>` included):
    projections  2 * (4 E^2 + 3 E F)     q, k, v, out; SwiGLU fc1 (E -> 2F) and fc2
    attention    4 * L * E               q k^T and p v over all heads
(v1 models: 2 * (4 E^2 + 2 E F) for the GELU FFN.) GFLOP/s = that * layers * tokens / s.
The ceiling is the FFN's first GEMM ([B*L, E] @ [E, 2F]) in the same dtype, timed here
through torch's default path (MKL sgemm for fp32, which runs AVX2 code on AMD CPUs) and
through oneDNN (AVX-512; what the fused backend calls).

Results: a table on stdout, JSON and a PNG under bench/results/.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from functools import partial

import torch

from common import RESULTS, machine_info, print_table, timeit, timeit_interleaved, write_json
from ntengine import cpu
from ntengine.config import NTConfig
from ntengine.backends.torch_backend import fused_status, open_torch
from ntengine.engine import Engine
from ntengine.genome.fasta import read_records
from ntengine.model import NTModel, init_random_weights

GENOME = Path(__file__).resolve().parents[2] / "shared" / "data" / "genomes" / "ecoli_K12_MG1655_NC_000913.3.fna.gz"
SHAPES = "1x128,1x1000,8x1000,1x2048,4x2048"
ENGINES = [("eager", "torch", "float32"), ("eager", "torch", "bfloat16"), ("eager", "torch", "float16"),
           ("fused", "fused", "float32"), ("fused", "fused", "bfloat16"), ("fused", "fused", "float16"),
           ("onnxruntime", "onnxruntime", "float32"), ("tensorrt", "tensorrt", "float16")]
# Which engines each device runs: ONNX Runtime runs here on the CPU only, TensorRT on GPUs
# only, float16 is a GPU dtype (CPUs without AVX512_FP16 emulate it).
DEVICE_SKIPS = {"cpu": {"tensorrt", "float16"}, "cuda": {"onnxruntime"}}


def flops_per_token(cfg: NTConfig, context: int) -> float:
    e, f = cfg.embed_dim, cfg.ffn_dim
    ffn = 3 * e * f if cfg.rotary else 2 * e * f
    return cfg.num_layers * (2 * (4 * e * e + ffn) + 4 * context * e)


def genome_windows(batch: int, tokens: int) -> list[str]:
    """`batch` E. coli windows of exactly `tokens` tokens each (6-mers, no N)."""
    genome = next(read_records(GENOME)).sequence
    width = 6 * (tokens - 1)
    return [genome[i * width:(i + 1) * width] for i in range(batch)]


def gemm_ceiling(cfg: NTConfig, rows: int, dtype: torch.dtype, repeats: int, device: torch.device) -> dict:
    """GFLOP/s of the FFN's first GEMM through torch's default path (F.linear: MKL for
    fp32 on CPUs, which the eager engine uses; cuBLAS on GPUs) and, on CPUs, through oneDNN
    (AVX-512; what the fused engine uses)."""
    x = torch.randn(rows, cfg.embed_dim, dtype=dtype, device=device)
    w = torch.randn(2 * cfg.ffn_dim, cfg.embed_dim, dtype=dtype, device=device)
    flops = 2 * rows * cfg.embed_dim * 2 * cfg.ffn_dim
    if device.type == "cuda":
        default = timeit(lambda: (torch.nn.functional.linear(x, w), torch.cuda.synchronize()), repeats=repeats)
        return {"gemm_default_gflops": flops / default["median"] / 1e9, "gemm_onednn_gflops": float("nan")}
    default = timeit(lambda: torch.nn.functional.linear(x, w), repeats=repeats)["median"]
    if dtype == torch.bfloat16 and not cpu.onednn_bf16():  # oneDNN has no bf16 GEMM below AVX-512
        return {"gemm_default_gflops": flops / default / 1e9, "gemm_onednn_gflops": float("nan")}
    onednn = timeit(lambda: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], ""), repeats=repeats)
    return {"gemm_default_gflops": flops / default / 1e9, "gemm_onednn_gflops": flops / onednn["median"] / 1e9}


def mixed_lengths(cfg: NTConfig, engines: dict, args) -> list[dict]:
    """Length bucketing vs packing: embed() on sequences of very different lengths."""
    import numpy as np

    rng = np.random.default_rng(0)
    genome = genome_windows(1, 2048 * 4)[0]
    lengths = rng.integers(64, 2049, size=args.mixed)
    starts = rng.integers(0, len(genome) - 6 * 2048, size=args.mixed)
    seqs = [genome[s:s + 6 * (n - 1)] for s, n in zip(starts, lengths)]
    out = []
    for name, engine in engines.items():
        # Packing only pays with a varlen attention kernel: the reference attends over a
        # [T, T] block-diagonal mask of the whole packed row, so eager engines stay padded.
        for packed in (False, True) if engine.backend == "fused" else (False,):
            engine.packed = packed
            engine.stats = {"real_tokens": 0, "padded_tokens": 0}
            t = timeit(lambda: engine.embed(seqs), repeats=max(1, args.repeats // 2))
            out.append({"engine": name, "layout": "packed" if packed else "sorted+padded",
                        "median_s": t["median"], "iqr_s": t["iqr"], "tokens_per_s": int(lengths.sum()) / t["median"],
                        "padding_fraction": engine.padding_fraction})
        engine.packed = False
    return out


def artefact_engine(model: NTModel, backend: str, dtype: str) -> Engine | None:
    """The same weights exported and run in ONNX Runtime (CPU, graph optimisations on) or
    TensorRT (GPU, default profile up to 8 x context); None for the PyTorch backends."""
    from ntengine.backends.ort_backend import OrtBackend
    from ntengine.backends.trt_backend import TrtBackend
    from ntengine.export import to_onnx, to_tensorrt

    folder = Path(tempfile.mkdtemp(prefix="ntengine-bench-"))
    if backend == "onnxruntime":
        return Engine(OrtBackend(to_onnx(model, folder / "model.onnx", dtype=dtype)))
    if backend == "tensorrt":
        return Engine(TrtBackend(to_tensorrt(model, folder / "model.plan", dtype=dtype)))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="v2-50m", help="published shape (default v2-50m)")
    parser.add_argument("--shapes", default=SHAPES, help=f"BATCHxTOKENS list (default {SHAPES})")
    parser.add_argument("-r", "--repeats", type=int, default=5, help="timed runs per case (default 5)")
    parser.add_argument("--engines", default="all", help="comma list of eager-float32, fused-bfloat16, ... (eager-float32, the baseline, always runs)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: eager/fused run there; "
                        "onnxruntime runs with cpu, tensorrt (float16) with cuda")
    parser.add_argument("--mixed", type=int, default=32,
                        help="also embed this many sequences of mixed lengths, padded vs packed (0: skip)")
    parser.add_argument("--out", default=str(RESULTS / "forward.json"), help="JSON path (PNG beside it)")
    args = parser.parse_args()

    cfg = NTConfig.from_preset(args.preset)
    device = torch.device(args.device)
    torch.manual_seed(0)
    engines = {}
    for label, backend, dtype in ENGINES:
        name = f"{label}-{dtype}"
        if args.engines != "all" and name not in args.engines.split(",") and name != "eager-float32":
            continue
        if DEVICE_SKIPS[device.type] & {backend, dtype}:
            continue
        ok, why = fused_status(device, getattr(torch, dtype))
        if backend == "fused" and not ok:
            print(f"skipping {name}: {why}")
            continue
        model = init_random_weights(NTModel(cfg), seed=0)
        try:
            engines[name] = artefact_engine(model, backend, dtype) or Engine(open_torch(model, device, dtype, backend))
        except (ImportError, RuntimeError) as err:
            print(f"skipping {name}: {err}")

    rows = []
    for shape in args.shapes.split(","):
        batch, tokens = (int(x) for x in shape.split("x"))
        enc = next(iter(engines.values())).tokenizer.batch_encode(genome_windows(batch, tokens))
        assert enc.ids.shape == (batch, tokens)
        ceilings = {}
        for engine in engines.values():
            if engine.dtype not in ceilings:
                ceilings[engine.dtype] = gemm_ceiling(cfg, batch * tokens, engine.dtype, args.repeats, device)
        timings = timeit_interleaved(
            {name: partial(engine.forward, enc.ids, enc.attention_mask, logits=False)
             for name, engine in engines.items()}, repeats=args.repeats)
        for name, engine in engines.items():
            dtype, t = engine.dtype, timings[name]
            tok_s = batch * tokens / t["median"]
            isa = cpu.isa() if engine.backend == "fused" and device.type == "cpu" else "-"
            rows.append({"shape": shape, "engine": name, "isa": isa,
                         "median_ms": t["median"] * 1e3, "iqr_ms": t["iqr"] * 1e3,
                         "tokens_per_s": tok_s, "gflops": tok_s * flops_per_token(cfg, tokens) / 1e9,
                         **ceilings[dtype]})
        # Each round timed every engine back to back: the ratio is the median of the
        # per-round ratios, which a slow spell of the machine shifts least.
        base = timings["eager-float32"]["times"]
        for r in rows:
            if r["shape"] == shape:
                ratios = sorted(b / t for b, t in zip(base, timings[r["engine"]]["times"]))
                r["vs_eager_fp32"] = statistics.median(ratios)
                r["vs_eager_range"] = f"{ratios[0]:.2f}-{ratios[-1]:.2f}"
        print(f"done {shape}", flush=True)

    mixed = mixed_lengths(cfg, engines, args) if args.mixed else []

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else machine_info()["cpu"]
    print(f"\n{args.preset}, {where}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print_table(rows, ["shape", "engine", "isa", "median_ms", "iqr_ms", "tokens_per_s", "gflops", "gemm_default_gflops",
                       "gemm_onednn_gflops", "vs_eager_fp32", "vs_eager_range"])
    if mixed:
        print(f"\nembed() of {args.mixed} sequences of 64..2048 tokens (seeded), batch size 8:")
        print_table(mixed, ["engine", "layout", "median_s", "iqr_s", "tokens_per_s", "padding_fraction"])
    out = write_json(Path(args.out), {"preset": args.preset, "device": where, "machine": machine_info(),
                                      "threads": torch.get_num_threads(), "repeats": args.repeats, "rows": rows,
                                      "mixed_lengths": mixed})
    try:
        plot(rows, out.with_suffix(".png"), args.preset)
        print(f"wrote {out} and {out.with_suffix('.png')}")
    except ImportError:  # the table and the JSON are the results; the PNG is a convenience
        print(f"wrote {out} (no PNG: pip install matplotlib)")


def plot(rows: list[dict], path: Path, preset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    names = list(dict.fromkeys(r["engine"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = [next((r["tokens_per_s"] for r in rows if r["shape"] == s and r["engine"] == name), 0)
                  for s in shapes]
        ax.bar([x + i * width for x in range(len(shapes))], values, width, label=name)
    ax.set_xticks([x + width * (len(names) - 1) / 2 for x in range(len(shapes))], shapes)
    ax.set_xlabel("batch x tokens")
    ax.set_ylabel("tokens / s")
    ax.set_title(f"NT {preset} forward (embeddings), CPU")
    ax.set_ylim(0, 1.2 * max(r["tokens_per_s"] for r in rows))
    ax.legend(ncol=len(names), loc="upper center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()

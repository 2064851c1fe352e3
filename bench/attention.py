"""Attention on the CPU: `ntengine::attention` (our flash-style kernel) against torch's
`scaled_dot_product_attention` with a boolean key-padding mask, fp32 and bf16, one process.

    python bench/attention.py                          # NT-v2-50M shapes, fp32 + bf16
    python bench/attention.py -r 20 --dtype bf16 --shapes 8x16x1000x32 4x20x1000x128
    python bench/attention.py --ragged                 # random row lengths in [L/2, L]

A shape is BxHxLxD. Napkin math: attention is compute-bound; the physical metric is
GFLOP/s = 4 * H * D * sum_b(len_b^2) / median time (the two matmuls, real tokens only:
softmax, masking and padded tokens are not counted, so SDPA's work on padded keys is its
loss). E.g. 8x16x1000x32 is 16.4 GFLOP: ~130 ms at SDPA's ~125 GFLOP/s. Peaks of the
2-vCPU AMD EPYC here (two 512-bit FMA pipes per core), from a register-only
microbenchmark: ~1000 GFLOP/s for vdpbf16ps, ~536 for fp32 FMA.
`sdpa` is the bare SDPA call ([B, H, L, D] out); `ref` is `ops.attention_ref` (SDPA plus
the [B, L, E] layout and zeroed padding rows, i.e. what the model runs in "torch" mode);
`fused` is `torch.ops.ntengine.attention` (same output as `ref`). Fused is validated
against ref before timing. Results: a table on stdout, JSON in bench/results/attention.json.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from common import RESULTS, machine_info, print_table, timeit, write_json
from ntengine import ops

SHAPES = ["8x16x1000x32", "4x16x2048x32"]  # NT-v2-50M: B x H x L x D
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def make_inputs(shape: str, dtype: torch.dtype, ragged: bool, seed: int = 0) -> tuple:
    """q (pre-scaled), k, v [B, H, L, D] in dtype, lengths [B] and the SDPA mask [B, 1, 1, L]."""
    b, h, length, d = (int(x) for x in shape.split("x"))
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, length, d, generator=g) for _ in range(3))
    lengths = torch.full((b,), length)
    if ragged:
        lengths = torch.randint(length // 2, length + 1, (b,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None])[:, None, None, :]
    return (q / d**0.5).to(dtype), k.to(dtype), v.to(dtype), lengths, mask


def flops(q: torch.Tensor, lengths: torch.Tensor) -> int:
    """4 * H * D * sum(len^2): QK^T and PV over real tokens only."""
    _, h, _, d = q.shape
    return 4 * h * d * int((lengths.double() ** 2).sum().item())


def _validate(q, k, v, lengths) -> None:
    got = torch.ops.ntengine.attention(q, k, v, lengths, None).float()
    want = ops.attention_ref(q.float(), k.float(), v.float(), lengths)
    err = ((got - want).abs().max() / want.abs().max()).item()
    tol = 1e-5 if q.dtype == torch.float32 else 1e-2
    if err > tol:
        raise SystemExit(f"fused attention disagrees with the fp32 reference: rel err {err:.2e} > {tol}")


def bench_shape(shape: str, dtypes: list[str], repeats: int, ragged: bool) -> list[dict]:
    rows = []
    for name in dtypes:
        q, k, v, lengths, mask = make_inputs(shape, DTYPES[name], ragged)
        _validate(q, k, v, lengths)
        impls = {
            "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0),
            "ref": lambda: ops.attention_ref(q, k, v, lengths),
            "fused": lambda: torch.ops.ntengine.attention(q, k, v, lengths, None),
        }
        work = flops(q, lengths)
        with torch.inference_mode():
            for impl, fn in impls.items():
                t = timeit(fn, repeats=repeats, warmup=2)
                rows.append({"shape": shape, "dtype": name, "impl": impl, "median_ms": 1e3 * t["median"],
                             "iqr_ms": 1e3 * t["iqr"], "GFLOP/s": work / t["median"] / 1e9, "flops": work,
                             "times_s": t["times"]})
    base = {r["shape"]: r["median_ms"] for r in rows if r["impl"] == "sdpa" and r["dtype"] == "fp32"}
    for r in rows:
        r["vs_sdpa_fp32"] = base[shape] / r["median_ms"] if shape in base else float("nan")
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=SHAPES, help="BxHxLxD (default: %(default)s)")
    parser.add_argument("--dtype", default="all", choices=["all", *DTYPES], help="storage dtype")
    parser.add_argument("-r", "--repeats", type=int, default=10, help="timed runs per case (median, IQR)")
    parser.add_argument("--ragged", action="store_true", help="random row lengths in [L/2, L] (seeded)")
    parser.add_argument("--out", default=str(RESULTS / "attention.json"), help="JSON output path")
    args = parser.parse_args(argv)

    dtypes = list(DTYPES) if args.dtype == "all" else [args.dtype]
    print(f"torch threads {torch.get_num_threads()}; shapes BxHxLxD {args.shapes}; "
          f"{'ragged' if args.ragged else 'full'} lengths")
    rows = []
    for shape in args.shapes:
        rows += bench_shape(shape, dtypes, args.repeats, args.ragged)
    print_table(rows, ["shape", "dtype", "impl", "median_ms", "iqr_ms", "GFLOP/s", "vs_sdpa_fp32"])
    path = write_json(args.out, {"machine": machine_info(), "torch_threads": torch.get_num_threads(),
                                 "repeats": args.repeats, "ragged": args.ragged, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

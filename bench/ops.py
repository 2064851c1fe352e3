"""Fused ops against their references: `ntengine::<op>` vs `<op>_ref` vs
`torch.compile(<op>_ref)`, all in one process, at NT-v2-50M shapes.

    python bench/ops.py                       # all ops, fp32 and bf16, 15 repeats
    python bench/ops.py --op swiglu --dtype bf16 -r 30 --no-compile

Shapes (v2-50M): E = 512, H = 16, D = 32, F = 2048, B * L = 8 * 1000 = 8000 tokens.
Rows: `ref` (eager reference), `fused` (the custom op, as the model calls it), `kernel`
(the same kernel into preallocated outputs) and `compile(ref)` (inductor).
Napkin math: the ops are memory-bound (swiglu bf16 about as much by its exp), so the metric is bytes that must
cross DRAM (inputs read once + outputs written once) / median time, next to the copy
bandwidth `dst.copy_(src)` of a 256 MB buffer measured in the same run (STREAM "copy":
read + write counted, write-allocate traffic not). E.g. swiglu fp32 moves
8000 * (2 * 2048 + 2048) * 4 B = 197 MB; at 40 GB/s that is ~5 ms. Working sets not much
larger than the last-level cache (add_layernorm: 33 MB bf16, 66 MB fp32) stay partly
cached between repeats and can beat the copy figure.
Fused results are validated against `_ref` before anything is timed.
Results: a table on stdout and JSON in bench/results/ops.json.

To add an op, write make_inputs / fused / ref / bytes_moved and one `OPS` entry.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from common import RESULTS, machine_info, print_table, timeit, write_json
from ntengine import ops

SHAPE = {"batch": 8, "length": 1000, "d_model": 512, "heads": 16, "ffn": 2048}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Op:
    """How to benchmark one op: inputs from (shape, dtype), two callables, bytes moved.

    `kernel`, optional, builds a zero-argument call of the raw `ntengine._C` kernel into
    outputs allocated once: the fused row minus torch's allocation of fresh outputs (which
    for outputs over glibc's 32 MB mmap limit means page faults on every call).
    """

    make_inputs: Callable[[dict, torch.dtype], tuple]
    fused: Callable
    ref: Callable
    bytes_moved: Callable[..., int]  # bytes_moved(*inputs)
    kernel: Optional[Callable[..., Callable[[], None]]] = None  # kernel(*inputs) -> run()


def _nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


# --------------------------------------------------------------------------- qkv_rope


def _qkv_rope_inputs(s: dict, dtype: torch.dtype) -> tuple:
    d = s["d_model"] // s["heads"]
    qkv = torch.randn(s["batch"], s["length"], 3 * s["d_model"], dtype=dtype)
    angle = torch.outer(torch.arange(s["length"]).float(), 10000.0 ** (-torch.arange(0, d, 2).float() / d))
    return qkv, s["heads"], 1.0 / math.sqrt(d), angle.cos(), angle.sin()  # tables [L, D/2]


def _qkv_rope_bytes(qkv, heads, scale, cos, sin) -> int:
    return 2 * _nbytes(qkv) + _nbytes(cos, sin)  # read [B, L, 3E], write 3 x [B, H, L, D]


def _qkv_rope_kernel(qkv, heads, scale, cos, sin):
    b, length, e3 = qkv.shape
    d = e3 // 3 // heads
    q, k, v = (qkv.new_empty(b, heads, length, d) for _ in range(3))
    return lambda: ops._C.qkv_rope(qkv.data_ptr(), e3, q.data_ptr(), k.data_ptr(), v.data_ptr(), 0,
                                   cos.data_ptr(), sin.data_ptr(), b, length, heads, d, scale,
                                   ops.DTYPE_CODES[qkv.dtype])


# --------------------------------------------------------------------------- swiglu


def _swiglu_inputs(s: dict, dtype: torch.dtype) -> tuple:
    return (torch.randn(s["batch"] * s["length"], 2 * s["ffn"], dtype=dtype),)


def _swiglu_bytes(x) -> int:
    return _nbytes(x) * 3 // 2  # read [N, 2F], write [N, F]


def _swiglu_kernel(x):
    n, f2 = x.shape
    out = x.new_empty(n, f2 // 2)
    return lambda: ops._C.swiglu(x.data_ptr(), f2, out.data_ptr(), n, f2 // 2, ops.DTYPE_CODES[x.dtype])


# --------------------------------------------------------------------------- add_layernorm


def _add_layernorm_inputs(s: dict, dtype: torch.dtype) -> tuple:
    n, e = s["batch"] * s["length"], s["d_model"]
    x, delta = torch.randn(n, e, dtype=dtype), torch.randn(n, e, dtype=dtype)
    return x, delta, 1 + 0.1 * torch.randn(e, dtype=dtype), 0.1 * torch.randn(e, dtype=dtype), 1e-5


def _add_layernorm_bytes(x, delta, weight, bias, eps) -> int:
    return 4 * _nbytes(x) + _nbytes(weight, bias)  # read x, delta; write sum, normed


def _add_layernorm_kernel(x, delta, weight, bias, eps):
    n, e = x.shape
    s, y = torch.empty_like(x), torch.empty_like(x)
    return lambda: ops._C.add_layernorm(x.data_ptr(), e, delta.data_ptr(), e, weight.data_ptr(), bias.data_ptr(),
                                        s.data_ptr(), y.data_ptr(), n, e, eps, ops.DTYPE_CODES[x.dtype])


OPS = {
    "qkv_rope": Op(_qkv_rope_inputs, lambda *a: torch.ops.ntengine.qkv_rope(*a, None), ops.qkv_rope_ref,
                   _qkv_rope_bytes, _qkv_rope_kernel),
    "swiglu": Op(_swiglu_inputs, torch.ops.ntengine.swiglu, ops.swiglu_ref, _swiglu_bytes, _swiglu_kernel),
    "add_layernorm": Op(_add_layernorm_inputs, torch.ops.ntengine.add_layernorm, ops.add_layernorm_ref,
                        _add_layernorm_bytes, _add_layernorm_kernel),
}


def copy_bandwidth(repeats: int, megabytes: int = 256) -> dict:
    """STREAM-like copy with torch: GB/s = 2 * bytes / median time (read + write)."""
    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    t = timeit(lambda: dst.copy_(src), repeats=repeats, warmup=2)
    return {"bytes": 2 * _nbytes(src), "median_s": t["median"], "gbps": 2 * _nbytes(src) / t["median"] / 1e9}


def _check(op: Op, args: tuple, dtype: torch.dtype) -> None:
    """Fused must agree with the reference before it is timed."""
    want, got = op.ref(*args), op.fused(*args)
    want, got = (want,) if torch.is_tensor(want) else want, (got,) if torch.is_tensor(got) else got
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for w, g in zip(want, got):
        err = (w.float() - g.float()).abs().max().item() / max(w.float().abs().max().item(), 1e-30)
        if err > tol:
            raise SystemExit(f"fused result disagrees with the reference: rel err {err:.2e} > {tol}")


def bench_op(name: str, dtype_name: str, repeats: int, compile_ref: bool, copy_gbps: float) -> list[dict]:
    """Rows of the table for one op and dtype: fused, ref and (optionally) compiled ref."""
    op, dtype = OPS[name], DTYPES[dtype_name]
    args = op.make_inputs(SHAPE, dtype)
    _check(op, args, dtype)
    impls = {"ref": lambda: op.ref(*args), "fused": lambda: op.fused(*args)}
    if op.kernel is not None:
        impls["kernel"] = op.kernel(*args)
    if compile_ref:
        compiled = torch.compile(op.ref, dynamic=False)
        impls["compile(ref)"] = lambda: compiled(*args)
    moved = op.bytes_moved(*args)
    rows = []
    with torch.inference_mode():
        for impl, fn in impls.items():
            t = timeit(fn, repeats=repeats, warmup=3)
            gbps = moved / t["median"] / 1e9
            rows.append({"op": name, "dtype": dtype_name, "impl": impl, "median_ms": 1e3 * t["median"],
                         "iqr_ms": 1e3 * t["iqr"], "GB/s": gbps, "%copy": 100 * gbps / copy_gbps,
                         "bytes": moved, "times_s": t["times"]})
    ref_ms = rows[0]["median_ms"]
    for r in rows:
        r["vs_ref"] = ref_ms / r["median_ms"]
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--op", default="all", choices=["all", *OPS], help="op to time (default: all)")
    parser.add_argument("--dtype", default="all", choices=["all", *DTYPES], help="storage dtype")
    parser.add_argument("-r", "--repeats", type=int, default=15, help="timed runs per case (median, IQR)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile(ref) (slow to build)")
    parser.add_argument("--out", default=str(RESULTS / "ops.json"), help="JSON output path")
    args = parser.parse_args(argv)

    # Copy bandwidth before and after the ops (on a shared or virtual machine it drifts);
    # %copy uses the higher of the two, so it never flatters the kernels.
    copy = [copy_bandwidth(max(args.repeats, 10))]
    copy_gbps = copy[0]["gbps"]
    rows = []
    for name in OPS if args.op == "all" else [args.op]:
        for dtype_name in DTYPES if args.dtype == "all" else [args.dtype]:
            rows += bench_op(name, dtype_name, args.repeats, not args.no_compile, copy_gbps)
    copy.append(copy_bandwidth(max(args.repeats, 10)))
    copy_gbps = max(c["gbps"] for c in copy)
    for r in rows:
        r["%copy"] = 100 * r["GB/s"] / copy_gbps
    print(f"copy bandwidth (256 MB dst.copy_(src), read + write): {copy[0]['gbps']:.1f} GB/s before, "
          f"{copy[1]['gbps']:.1f} after; torch threads {torch.get_num_threads()}; shape {SHAPE}")
    print_table(rows, ["op", "dtype", "impl", "median_ms", "iqr_ms", "GB/s", "%copy", "vs_ref"])
    path = write_json(args.out, {"machine": machine_info(), "shape": SHAPE, "copy": copy,
                                 "torch_threads": torch.get_num_threads(), "repeats": args.repeats,
                                 "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""`ntengine.bench.run`: the latency / throughput grid of one model, every engine in one
process on the same weights and the same real DNA, eager fp32 always among them and every
ratio against it.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from ntengine.bench.machine import machine
from ntengine.bench.memory import PeakMemory
from ntengine.bench.timing import ratio_to, summarise, time_round_robin
from ntengine.bench.workload import flops_per_token, genome, peak_tflops
from ntengine.genome.windows import sample_windows as windows

log = logging.getLogger(__name__)
BACKENDS = {"eager": "torch", "fused": "fused", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}
BASELINE = ("eager", "float32")
SCHEMA_VERSION = 1
MIXED_BUCKETS = ((64, 256), (256, 1024), (1024, 2048))  # tokens, <cls> included; capped at the context


class _Engine:
    """One (backend, dtype) under test: the Engine, its name and how long it took to start."""

    def __init__(self, backend: str, dtype: str, engine, cold: dict):
        self.backend, self.dtype, self.engine, self.cold = backend, dtype, engine, cold
        self.name = f"{backend}-{dtype}"


def _source(checkpoint, preset, seed):
    """What each engine loads: a checkpoint, or random weights of a published shape."""
    from ntengine.checkpoint import load_model
    from ntengine.config import NTConfig
    from ntengine.model import NTModel, init_random_weights

    if checkpoint is not None:
        return lambda: load_model(checkpoint)[0], str(checkpoint)
    cfg = NTConfig.from_preset(preset)
    return lambda: init_random_weights(NTModel(cfg), seed=seed), f"random weights, {preset} shape (seed {seed})"


def _open(backend: str, dtype: str, load, device, tmp: Path) -> _Engine:
    """Load, build and time it: load (weights), build (kernels, export, TensorRT), first call later."""
    from ntengine.backends.torch_backend import open_torch
    from ntengine.engine import Engine

    t0 = time.perf_counter()
    model = load()
    t1 = time.perf_counter()
    if backend == "onnxruntime":
        from ntengine.backends.ort_backend import OrtBackend
        from ntengine.export import to_onnx

        runtime = OrtBackend(to_onnx(model, tmp / f"{dtype}.onnx", dtype=dtype, validate=False))
    elif backend == "tensorrt":
        from ntengine.backends.trt_backend import TrtBackend
        from ntengine.export import to_tensorrt

        runtime = TrtBackend(to_tensorrt(model, tmp / f"{dtype}.plan", dtype=dtype, validate=False), device)
    else:
        runtime = open_torch(model, device, dtype, BACKENDS[backend])
    t2 = time.perf_counter()
    return _Engine(backend, dtype, Engine(runtime), {"load_s": t1 - t0, "build_s": t2 - t1})


GEMM_ROWS = 2048  # enough rows for a GEMM's plateau, without timing page faults of huge outputs


def _gemm_ceiling(cfg, rows: int, dtype: torch.dtype, device: torch.device, repeats: int) -> dict:
    """GFLOP/s of the FFN's first GEMM ([rows, E] @ [E, 2F], rows capped at GEMM_ROWS) in
    `dtype`, through torch's default path (what eager runs: MKL or cuBLAS; into a reused
    output) and, on CPUs with oneDNN, through oneDNN (what the fused backend runs)."""
    from ntengine import cpu

    rows = min(rows, GEMM_ROWS)
    x = torch.randn(rows, cfg.embed_dim, dtype=dtype, device=device)
    w = torch.randn(2 * cfg.ffn_dim, cfg.embed_dim, dtype=dtype, device=device)
    out = torch.empty(rows, 2 * cfg.ffn_dim, dtype=dtype, device=device)
    fns = {"default": lambda: torch.mm(x, w.t(), out=out)}
    if device.type == "cpu" and cpu.info()["onednn"] and (dtype != torch.bfloat16 or cpu.onednn_bf16()):
        fns["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
    flops = 2 * rows * cfg.embed_dim * 2 * cfg.ffn_dim
    samples = time_round_robin(fns, repeats=repeats, warmup=2, device=device)
    return {f"gemm_{k}_gflops": flops / float(np.median(v)) / 1e9 for k, v in samples.items()}


def run(checkpoint=None, *, preset: str = "v2-50m", device="cpu", backends=("eager", "fused"),
        dtypes=("float32",), batches=(1, 8), tokens=(128, 1000), fasta=None, repeats: int | None = None,
        duration: float | None = 2.0, warmup: int = 1, mixed: int = 24, threads: bool = True,
        cuda_graphs: bool = True, seed: int = 0) -> dict:
    """Benchmark one model: every (backend, dtype) at every batch × tokens cell.

    Args:
        checkpoint: anything `load_model` reads; None: random weights of `preset`.
        device: "cpu" or "cuda[:i]" (eager and fused run there; onnxruntime on the CPU,
            tensorrt on the GPU).
        backends, dtypes: the engines, crossed; eager float32 always runs (the baseline);
            combinations that cannot run here are listed under "skipped" with the reason.
        batches, tokens: the grid (tokens include `<cls>`; above the model's context: skipped).
        fasta: where windows come from (default: the bundled phiX174 genome).
        repeats / duration: timed rounds per cell, or seconds per cell (default 2 s, at
            least 3 rounds); warmup: untimed calls per engine and cell.
        mixed: sequences of mixed length for the padded-vs-packed and per-bucket runs (0: none).
        threads: on the CPU, also time one cell at 1, 2, 4, ... threads up to all cores.
        cuda_graphs: on CUDA, also time the fused engines replaying captured CUDA graphs.
    Returns:
        the report (see ntengine/bench/schema.json).
    """
    import tempfile

    device = torch.device(device)
    load, source = _source(checkpoint, preset, seed)
    bases = genome(fasta)
    wanted = list(dict.fromkeys([BASELINE, *((b, d) for b in backends for d in dtypes)]))
    engines, skipped = [], []
    tmp = Path(tempfile.mkdtemp(prefix="ntengine-bench-"))
    for backend, dtype in wanted:
        why = _cannot_run(backend, dtype, device)
        if why:
            skipped.append({"engine": f"{backend}-{dtype}", "reason": why})
            continue
        try:
            engines.append(_open(backend, dtype, load, device, tmp))
        except (ImportError, RuntimeError, ValueError) as err:
            skipped.append({"engine": f"{backend}-{dtype}", "reason": str(err)})
    cfg = engines[0].engine.config
    timing = {"repeats": repeats, "duration": None if repeats else duration, "warmup": warmup}
    cells = []
    for batch in batches:
        for n in tokens:
            if n > cfg.max_positions:
                skipped.append({"cell": f"{batch}x{n}", "reason": f"above the model's context of {cfg.max_positions}"})
                continue
            log.info(f"bench: {batch} x {n} tokens, {len(engines)} engines")
            cells += _cell(engines, cfg, bases, batch, n, device, timing, cuda_graphs, seed, skipped)
    report = {
        "schema": SCHEMA_VERSION, "model": {"source": source, "config": cfg.to_dict()},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else machine()["cpu"],
        "machine": machine(), "threads": torch.get_num_threads(),
        "workload": {"genome": str(fasta or "bundled phiX174 (NC_001422.1)"), "window_bp": "6 x (tokens - 1)"},
        "timing": timing, "flops": "per token and layer: 2(4E^2 + 3EF) (v1: 2(4E^2 + 2EF)) + 4LE; no LM head",
        "baseline": "-".join(BASELINE),
        "engines": [{"engine": e.name, "backend": e.backend, "dtype": e.dtype,
                     "isa": _isa(e, device), **e.cold} for e in engines],
        "cells": cells, "skipped": skipped,
    }
    if mixed:
        log.info(f"bench: {mixed} sequences of mixed lengths, whole and one by one")
        report["mixed"] = _mixed(engines, cfg, bases, mixed, timing, device, seed)
    if threads and device.type == "cpu":
        log.info("bench: thread scaling")
        report["thread_scaling"] = _thread_scaling(engines, bases, batches[0], min(tokens[-1], cfg.max_positions),
                                                   timing)
    return report


def _cannot_run(backend: str, dtype: str, device: torch.device) -> str | None:
    from ntengine.backends.torch_backend import fused_status

    if backend not in BACKENDS:
        return f"unknown backend; choose from {list(BACKENDS)}"
    if backend == "onnxruntime" and device.type != "cpu":
        return "ONNX Runtime runs on the CPU here (pass --device cpu)"
    if backend == "onnxruntime" and dtype == "bfloat16":
        return "onnxruntime's CPU kernels have no bfloat16 MatMul"
    if backend == "tensorrt" and device.type != "cuda":
        return "TensorRT needs a CUDA device"
    if device.type == "cpu" and dtype == "float16" and backend != "onnxruntime":
        return "float16 on the CPU is emulated (no AVX512_FP16 GEMMs): a GPU dtype"
    if backend == "fused":
        ok, why = fused_status(device, getattr(torch, dtype))
        return None if ok else why
    return None


def _isa(e: _Engine, device) -> str | None:
    from ntengine import cpu

    return cpu.isa() if e.backend == "fused" and device.type == "cpu" else None


def _cell(engines, cfg, bases, batch, n, device, timing, cuda_graphs, seed, skipped: list) -> list[dict]:
    tok = engines[0].engine.tokenizer
    enc = tok.batch_encode(windows(bases, batch, n, seed=seed + batch * 7919 + n))
    assert enc.ids.shape == (batch, n)
    rows: list[dict] = []
    copies = {}
    t0 = time.perf_counter()
    ids, mask = torch.from_numpy(enc.ids).to(device), torch.from_numpy(enc.attention_mask).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        copies["h2d_ms"] = (time.perf_counter() - t0) * 1e3
    fns = {e.name: (lambda e=e: e.engine.forward(ids, mask, logits=False)) for e in engines}
    for e in engines:
        if "first_call_s" not in e.cold:
            t = time.perf_counter()
            out = fns[e.name]()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            e.cold["first_call_s"] = time.perf_counter() - t
            if device.type == "cuda":
                t = time.perf_counter()
                out["embeddings"].cpu()
                copies["d2h_ms"] = (time.perf_counter() - t) * 1e3
    if device.type == "cuda" and cuda_graphs:
        from ntengine.backends.cuda_graphs import CudaGraphBackend
        from ntengine.engine import Engine

        for e in engines:
            if e.backend == "fused":
                graphed = Engine(CudaGraphBackend(e.engine.runtime))
                replay = lambda g=graphed: g.forward(ids, mask, logits=False)  # noqa: E731
                try:  # the first call captures: if capture fails, the rows say so and the run goes on
                    replay()
                except RuntimeError as err:
                    skipped.append({"engine": f"{e.name}+cudagraph", "cell": f"{batch}x{n}", "reason": str(err)})
                    continue
                fns[f"{e.name}+cudagraph"] = replay
    memory = {name: PeakMemory(device).measure(fn) for name, fn in fns.items()}
    samples = time_round_robin(fns, repeats=timing["repeats"], duration=timing["duration"],
                               warmup=timing["warmup"], device=device)
    base = samples["-".join(BASELINE)]
    context_flops = flops_per_token(cfg, n)
    ceilings: dict = {}
    for name, times in samples.items():
        engine = next(e for e in engines if name.split("+")[0] == e.name)
        dt = getattr(torch, engine.dtype)
        if engine.dtype not in ceilings:
            ceilings[engine.dtype] = _gemm_ceiling(cfg, batch * n, dt, device, 7)
        stats = summarise(times)
        p50 = stats["p50_ms"] / 1e3
        gflops = batch * n / p50 * context_flops / 1e9
        peak = peak_tflops(torch.cuda.get_device_name(device), engine.dtype) if device.type == "cuda" else None
        best_gemm = max(ceilings[engine.dtype].values())
        rows.append({"engine": name, "backend": engine.backend, "dtype": engine.dtype, "batch": batch, "tokens": n,
                     "latency": stats, "tokens_per_s": batch * n / p50, "bp_per_s": batch * 6 * (n - 1) / p50,
                     "sequences_per_s": batch / p50, "gflops": gflops, **ceilings[engine.dtype],
                     "fraction_of_gemm_ceiling": gflops / best_gemm,
                     "mfu": gflops / (peak * 1e3) if peak else None,
                     "vs_baseline": ratio_to(base, times), "peak_memory": memory[name], **copies})
    return rows


def _mixed(engines, cfg, bases, count, timing, device, seed) -> dict:
    """embed() of `count` sequences of mixed lengths: the whole set padded (sorted by length)
    and packed, with the padding fraction; and, per length bucket, the geometric mean over
    sequences of each one's speed-up on its own against the baseline (BioNeMo's method)."""
    rng = np.random.default_rng(seed)
    buckets = [(lo, min(hi, cfg.max_positions)) for lo, hi in MIXED_BUCKETS if lo < cfg.max_positions]
    seqs, bucket_of = [], []
    for b, (lo, hi) in enumerate(buckets):
        for n in rng.integers(lo, hi + 1, size=max(1, count // len(buckets))):
            seqs += windows(bases, 1, int(n), seed=int(rng.integers(1 << 30)))
            bucket_of.append(b)
    rounds = {"repeats": timing["repeats"] or 3}
    whole = []
    for e in engines:
        runtime = e.engine.runtime
        unpads = getattr(runtime, "unpad_padded", False)  # fused CUDA's default
        layouts = {"padded (sorted by length)": (False, False)}
        if e.backend == "fused":
            layouts["packed"] = (True, False)
        if unpads:
            layouts["unpadded (padded batches run packed)"] = (False, True)
        for layout, (packed, unpadded) in layouts.items():
            e.engine.packed = packed
            if unpads:
                runtime.unpad_padded = unpadded
            if device.type == "cuda":  # a layout's first call on a GPU picks its kernels
                e.engine.embed(seqs)
            e.engine.stats = {"real_tokens": 0, "padded_tokens": 0}
            t = summarise(time_round_robin({"x": lambda e=e: e.engine.embed(seqs)}, warmup=0, **rounds)["x"])
            whole.append({"engine": e.name, "layout": layout, "latency": t,
                          "tokens_per_s": e.engine.stats["real_tokens"] / rounds["repeats"]
                          / (t["mean_ms"] / 1e3), "padding_fraction": e.engine.padding_fraction})
        e.engine.packed = False
        if unpads:
            runtime.unpad_padded = True
    per_seq = {e.name: [] for e in engines}
    for s in seqs:
        samples = time_round_robin({e.name: (lambda e=e: e.engine.embed([s])) for e in engines}, warmup=1, **rounds)
        for e in engines:
            per_seq[e.name].append(float(np.median(samples["-".join(BASELINE)])) / float(np.median(samples[e.name])))
    by_bucket = []
    for b, (lo, hi) in enumerate(buckets):
        idx = [i for i, x in enumerate(bucket_of) if x == b]
        by_bucket.append({"tokens": f"{lo}-{hi}", "sequences": len(idx),
                          **{name: math.exp(float(np.mean(np.log([v[i] for i in idx])))) for name, v in per_seq.items()}})
    return {"sequences": len(seqs), "tokens": int(sum(len(s) // 6 + 1 for s in seqs)), "whole_set": whole,
            "speedup_geomean_by_bucket": by_bucket}


def _thread_scaling(engines, bases, batch, n, timing) -> list[dict]:
    """Tokens/s of every engine at one cell with 1, 2, 4, ... threads up to all cores."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    counts = sorted({*(2 ** i for i in range(int(math.log2(cores)) + 1)), cores})
    enc = engines[0].engine.tokenizer.batch_encode(windows(bases, batch, n, seed=1))
    ids, mask = torch.from_numpy(enc.ids), torch.from_numpy(enc.attention_mask)
    before, rows = torch.get_num_threads(), []
    try:
        for k in counts:
            torch.set_num_threads(k)
            samples = time_round_robin({e.name: (lambda e=e: e.engine.forward(ids, mask, logits=False))
                                        for e in engines}, repeats=timing["repeats"] or 3)
            rows += [{"engine": name, "threads": k, "batch": batch, "tokens": n,
                      "tokens_per_s": batch * n / float(np.median(t))} for name, t in samples.items()]
    finally:
        torch.set_num_threads(before)
    for r in rows:
        one = next(x for x in rows if x["engine"] == r["engine"] and x["threads"] == 1)
        r["speedup_vs_1_thread"] = r["tokens_per_s"] / one["tokens_per_s"]
    return rows

"""The `ntengine` command: thin argparse front ends over the library's functions."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ntengine.genome.fasta import EXAMPLE_GENOME  # noqa: F401 (tests and users import it from here)



log = logging.getLogger("ntengine")


def _log(msg: str) -> None:
    log.info(msg)


class _StderrHandler(logging.Handler):
    """Log records on stderr, through tqdm so that a progress bar on screen is redrawn below them."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never take the job down
            self.handleError(record)


def _configure_output(args) -> None:
    """-q / -v / --log-level / --log-file / --progress: what the job tells, and where."""
    from ntengine.progress import set_mode

    level = args.log_level or ("DEBUG" if args.verbose else "WARNING" if args.quiet else "INFO")
    log.setLevel(level)
    for handler in list(log.handlers):  # main() may run more than once in a process (tests)
        log.removeHandler(handler)
        handler.close()
    screen = _StderrHandler()
    screen.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(screen)
    if args.log_file:
        to_file = logging.FileHandler(args.log_file)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(to_file)
    set_mode("off" if args.quiet else args.progress)


# --------------------------------------------------------------------------- commands


def _cmd_init(args) -> None:
    from ntengine.checkpoint import init_checkpoint

    path = init_checkpoint(args.preset, args.output, seed=args.seed, layout=args.layout)
    _log(f"wrote a random-weight {args.preset} checkpoint ({args.layout} layout) to {path}")


def _cmd_embed(args) -> None:
    from ntengine.genome.job import embed_genome
    from ntengine.genome.settings import EmbedSettings

    t0 = time.perf_counter()
    settings = EmbedSettings(window=args.window, stride=args.stride, layer=args.layer,
                             reverse_complement=args.reverse_complement, token_embeddings=args.token_embeddings,
                             invalid=args.invalid, batch_size=args.batch_size, chunk_windows=args.chunk_windows,
                             max_windows=args.max_windows)
    summary = embed_genome(
        args.checkpoint, args.fasta, args.output, settings, regions=args.regions, bed=args.bed,
        records=args.records.split(",") if args.records else None, bigwig=args.bigwig, device=args.device,
        dtype=args.dtype, backend=args.backend, trust_pickle=args.trust_pickle,
        ray=args.ray, workers=args.workers, adapter=args.adapter, rename=_renames(args.rename))
    dt = time.perf_counter() - t0
    _log(f"{summary['windows']:,} windows ({summary['embedded']:,} embedded, {summary['skipped_all_n']:,} all-N "
         f"skipped, {summary['shortened']:,} shortened to fit), {summary['bp']:,} bp; "
         f"{summary['chunks_run']} chunks run in {dt:.1f} s -> {summary['path']}"
         + "".join(f", {p}" for p in summary.get("bigwig", [])))


def _cmd_scan(args) -> None:
    from ntengine.genome.scan import scan_genome
    from ntengine.genome.settings import EmbedSettings

    t0 = time.perf_counter()
    settings = EmbedSettings(window=args.window, stride=args.stride, reverse_complement=args.both_strands,
                             invalid=args.invalid, batch_size=args.batch_size, chunk_windows=args.chunk_windows,
                             max_windows=args.max_windows, snv_every=args.mask_every)
    s = scan_genome(
        args.checkpoint, args.fasta, args.output, settings, formats=args.format, regions=args.regions, bed=args.bed,
        records=args.records.split(",") if args.records else None, device=args.device, dtype=args.dtype,
        backend=args.backend, trust_pickle=args.trust_pickle, ray=args.ray, workers=args.workers,
        adapter=args.adapter, rename=_renames(args.rename))
    dt = time.perf_counter() - t0
    _log(f"{s['windows']:,} windows ({s['embedded']:,} scanned, {s['skipped_all_n']:,} all-N skipped, "
         f"{s['shortened']:,} scanned in pieces around N runs), {s['bp']:,} bp, {args.mask_every} passes per window; "
         f"{s['chunks_run']} chunks run in {dt:.1f} s -> " + ", ".join([s["path"], *s["outputs"]]))


def _formats(value: str) -> tuple[str, ...]:
    from ntengine.genome.snv_outputs import FORMATS

    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    if not chosen or set(chosen) - set(FORMATS):
        raise argparse.ArgumentTypeError(f"{value!r}: a comma-separated list of {', '.join(FORMATS)}")
    return chosen


def _renames(values):
    """--rename FROM=TO ... and/or alias files -> {FROM: TO} (None when not given)."""
    if not values:
        return None
    from ntengine.genome.windows import read_aliases

    pairs: dict[str, str] = {}
    for value in values:
        pairs.update(dict([value.split("=", 1)]) if "=" in value else read_aliases(value))
    return pairs


def _cmd_score_variants(args) -> None:
    from ntengine.variants.scoring import ScoreSettings
    from ntengine.variants.vcf import score_variants

    t0 = time.perf_counter()
    settings = ScoreSettings(window=args.window, layer=args.layer, both_strands=args.both_strands,
                             batch_size=args.batch_size, block_records=args.block_records, invalid=args.invalid)
    if (args.checkpoint is None) == (args.scan is None):
        raise SystemExit("ntengine score-variants: error: give a checkpoint, or --scan OUT to read LLRs from a scan")
    s = score_variants(args.checkpoint, args.vcf, args.fasta, args.output, settings, tsv=args.tsv, device=args.device,
                       dtype=args.dtype, backend=args.backend, trust_pickle=args.trust_pickle, adapter=args.adapter,
                       regions=args.regions, max_records=args.max_records, scan=args.scan)
    dt = time.perf_counter() - t0
    computed, requested = s["windows_computed"] + s["masked_computed"], s["windows_requested"] + s["masked_requested"]
    skipped = ", ".join(f"{n:,} {why}" for why, n in sorted(s["skipped"].items())) or "none"
    _log(f"{s['records']:,} records, {s['alleles']:,} alleles: {s['scored']:,} scored; skipped: {skipped}; "
         f"{s['ref_mismatch_records']:,} records with REF not matching the FASTA (FILTER NT_REF_MISMATCH); "
         + (f"LLRs read from {args.scan}" if args.scan else f"{computed:,} windows run for {requested:,} requested")
         + f"; {dt:.1f} s -> {s['path']}"
         + (f", {args.tsv}" if args.tsv else ""))


def _cmd_train_mlm(args) -> None:
    import dataclasses

    from ntengine.config import NTConfig
    from ntengine.train.mlm import MLMSettings, pretrain

    source = args.init or NTConfig.from_preset(args.preset)
    overrides = {k: v for k, v in (("num_layers", args.layers), ("embed_dim", args.embed_dim),
                                   ("num_heads", args.heads), ("ffn_dim", args.ffn_dim)) if v}
    if overrides:
        if args.init:
            raise ValueError("--layers/--embed-dim/--heads/--ffn-dim shape a new model: not with --init")
        source = dataclasses.replace(source, **overrides)
    settings = MLMSettings(steps=args.steps, batch_size=args.batch_size, tokens=args.tokens, lr=args.lr,
                           warmup=args.warmup, weight_decay=args.weight_decay, accumulation=args.accumulation,
                           bf16=args.bf16, gradient_checkpointing=args.gradient_checkpointing,
                           save_every=args.save_every, log_every=args.log_every, seed=args.seed,
                           reverse_complement=args.reverse_complement)
    history = pretrain(source, args.fasta, args.output, settings, device=args.device, trust_pickle=args.trust_pickle)
    if history:
        last = history[-1]
        _log(f"step {last['step']}: loss {last['loss']:.4f} (perplexity {last['perplexity']:.1f}), loss at <mask> "
             f"{last['mask_loss']:.4f} -> {args.output}/latest")


def _cmd_train_finetune(args) -> None:
    import json

    from ntengine.train.finetune import finetune

    result = finetune(args.checkpoint, args.train, args.output, method=args.method, valid=args.valid, test=args.test,
                      epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, pooling=args.pooling,
                      layer=args.layer, seed=args.seed, device=args.device, trust_pickle=args.trust_pickle,
                      max_steps=args.max_steps, limit=args.limit)
    print(json.dumps(result, indent=2))
    _log(f"trained {result['trainable_parameters']:,} of {result['total_parameters']:,} parameters "
         f"({100 * result['trainable_fraction']:.3f}%); best epoch {result['best_epoch']}; -> {result['path']}")


def _cmd_train_probe(args) -> None:
    import json

    import ntengine
    from ntengine.train.probe import kmer_baseline, probe

    engine = ntengine.compile(args.checkpoint, device=args.device, dtype=args.dtype, backend=args.backend,
                              trust_pickle=args.trust_pickle, batch_size=args.batch_size, adapter=args.adapter)
    layers = [int(x) for x in args.layers.split(",")] if args.layers else None
    result = {"probe": probe(engine, args.train, args.test, layers, args.classifier, args.folds, args.seed,
                             progress=True, limit=args.limit)}
    if not args.no_baseline:
        result["kmer_baseline"] = kmer_baseline(args.train, args.test, 6, args.classifier, args.folds, args.seed,
                                                limit=args.limit)
    print(json.dumps(result, indent=2))


def _cmd_quickstart(args) -> None:
    import ntengine
    from ntengine.checkpoint import init_checkpoint
    from ntengine.genome.job import embed_genome
    from ntengine.genome.settings import EmbedSettings

    out = Path(args.output)
    ckpt = out / "nt-v2-50m-random"
    if not (ckpt / "config.json").is_file():
        _log(f"$ ntengine init --preset v2-50m --seed 0 -o {ckpt}")
        init_checkpoint("v2-50m", ckpt, seed=0)
    engine = ntengine.compile(ckpt)
    _log(f"compiled {engine}")
    ids = engine.tokenizer.encode(_first_record_head(EXAMPLE_GENOME, 60))
    _log(f"first 60 bp of phiX174 -> {len(ids)} tokens: {ids.tolist()}")
    result, tracks = out / "phiX174.zarr", out / "phiX174_tracks"
    _log(f"$ ntengine embed {ckpt} {EXAMPLE_GENOME} -o {result} --window 1200 --bigwig {tracks}")
    t0 = time.perf_counter()
    summary = embed_genome(engine, EXAMPLE_GENOME, result, EmbedSettings(window=1200), bigwig=tracks)
    dt = time.perf_counter() - t0
    import zarr

    emb = zarr.open_group(str(result), mode="r")["embeddings"][:]
    _log(f"embedded {summary['bp']:,} bp of phiX174 in {summary['windows']} windows in {dt:.1f} s: "
         f"embeddings {emb.shape}, mean {emb.mean():+.4f}, std {emb.std():.4f} -> {result}; "
         f"tracks {', '.join(summary['bigwig'])}")
    _log("(rerunning the command resumes / reuses the store; open it with xarray.open_zarr)")


def _cmd_export(args) -> None:
    from ntengine.export.onnx import export_model

    t0 = time.perf_counter()
    source = export_model(args.checkpoint, args.trust_pickle, adapter=args.adapter) if args.adapter else args.checkpoint
    if args.format == "tensorrt":
        from ntengine.export import to_tensorrt

        dtype = args.dtype or "float16"
        path = to_tensorrt(source, args.output, dtype=dtype, outputs=args.outputs, min_shape=args.min,
                           opt_shape=args.opt, max_shape=args.max, timing_cache=args.timing_cache,
                           workspace_gib=args.workspace_gib, opset=args.opset, validate=not args.no_validate,
                           trust_pickle=args.trust_pickle, verbose=args.verbose)  # -v: TensorRT's INFO log
    else:
        from ntengine.export import to_onnx

        dtype = args.dtype or "float32"
        path = to_onnx(source, args.output, dtype=dtype, outputs=args.outputs, opset=args.opset,
                       validate=not args.no_validate, trust_pickle=args.trust_pickle)
    _log(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {dtype}, outputs {args.outputs}) "
         f"in {time.perf_counter() - t0:.1f} s")


def _cmd_bench(args) -> None:
    import json

    from ntengine import bench

    if args.compare:
        a, b = (json.loads(Path(p).read_text()) for p in args.compare)
        print(bench.compare(a, b))
        return
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    report = bench.run(args.checkpoint, preset=args.preset, device=args.device, backends=args.backends.split(","),
                       dtypes=args.dtypes.split(","), batches=ints(args.batch), tokens=ints(args.tokens),
                       fasta=args.fasta, repeats=args.repeats, duration=None if args.repeats else args.duration,
                       mixed=args.mixed, threads=not args.no_threads, cuda_graphs=not args.no_cuda_graphs)
    print(bench.table(report, markdown=args.markdown))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        _log(f"wrote {args.json}")
    if args.plot:
        try:
            _log(f"wrote {bench.plot(report, args.plot)}")
        except ImportError:
            log.warning("no plot: pip install matplotlib")


def _first_record_head(path, n: int) -> str:
    from ntengine.genome.fasta import read_records

    return next(iter(read_records(path))).sequence[:n]


CHECKPOINT_HELP = ("checkpoint: a folder (ntengine, HF or JAX layout), a Hugging Face hub id ORG/NAME[@REVISION] "
                   "or its models--ORG--NAME cache folder")


def _add_checkpoint_args(p: argparse.ArgumentParser, adapter: bool = True) -> None:
    """Which version of a hub checkpoint, and a PEFT adapter to merge into it."""
    p.add_argument("--revision", help="hub branch, tag or commit of a hub id (default main)")
    if adapter:
        p.add_argument("--adapter", help="PEFT adapter (LoRA or IA3) folder or hub id, merged into the weights")


def _resolve_checkpoints(args) -> None:
    """Hub ids and cache folders -> local snapshot folders, once, before any command runs
    (HF_HUB_OFFLINE and the cache apply; nothing from the hub is ever executed)."""
    from ntengine.checkpoint import resolve_checkpoint

    trust = getattr(args, "trust_pickle", False)
    for name in ("checkpoint", "init"):
        value = getattr(args, name, None)
        if value and Path(value).suffix not in (".onnx", ".plan"):
            setattr(args, name, str(resolve_checkpoint(value, revision=getattr(args, "revision", None),
                                                       trust_pickle=trust)))
    if getattr(args, "adapter", None):
        args.adapter = str(resolve_checkpoint(args.adapter, trust_pickle=trust))


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    """How a command compiles and runs its engine."""
    _add_checkpoint_args(p)
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="compute dtype (default float32; bfloat16 is ~2x faster on CPUs with AVX512_BF16)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "fused", "onnxruntime", "tensorrt"),
                   help="auto (default): our fused kernels where they can run, else plain torch")
    p.add_argument("--trust-pickle", action="store_true", help="allow pickle-based weights (.bin, .joblib)")


def _add_genome_job_args(p: argparse.ArgumentParser, chunk_windows: int) -> None:
    """What every genome job (embed, scan) takes: regions, names, IUPAC policy, chunks, Ray,
    the engine and the output options."""
    p.add_argument("--regions", nargs="+", metavar="REGION", help="NAME or NAME:START-END (1-based, inclusive)")
    p.add_argument("--bed", help="BED file of regions (0-based, half-open)")
    p.add_argument("--records", help="comma-separated record names (default: all)")
    p.add_argument("--rename", nargs="+", metavar="FROM=TO|FILE",
                   help="name records in the outputs (store, bigWig) as a genome browser does: FROM=TO pairs, or "
                        "alias files of FROM TO lines, e.g. 'gi|9626243|ref|NC_001416.1|=NC_001416.1'")
    p.add_argument("--invalid", choices=("raise", "N"), default="raise",
                   help="IUPAC codes other than N: raise (default) or read as N")
    p.add_argument("--chunk-windows", type=int, default=chunk_windows,
                   help=f"windows per committed chunk (default {chunk_windows})")
    p.add_argument("--max-windows", type=int, metavar="N",
                   help="a quick trial: only the first N windows (the full job then needs a new -o)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run on Ray: an address (auto, ray://host:10001) or nothing for a local cluster")
    p.add_argument("--workers", type=int, help="Ray workers (default: one per GPU, else 2)")
    _add_engine_args(p)
    _add_output_args(p)


def _add_training_args(p: argparse.ArgumentParser) -> None:
    _add_checkpoint_args(p, adapter=False)
    p.add_argument("--seed", type=int, default=0, help="seed of the model init, data order and masks (default 0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--trust-pickle", action="store_true", help="allow pickle-based weights (.bin, .joblib)")


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """What every command shares: how much it says and where."""
    from ntengine.progress import MODES

    g = p.add_argument_group("output")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress and no messages but warnings and errors")
    g.add_argument("-v", "--verbose", action="store_true", help="debug messages (and TensorRT's INFO log)")
    g.add_argument("--log-level", type=str.upper, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                   help="message level (default INFO; -q: WARNING, -v: DEBUG)")
    g.add_argument("--log-file", help="also append the messages, with times, to this file")
    g.add_argument("--progress", choices=MODES, default="auto",
                   help="auto (default): a bar on a terminal, a log line every 30 s otherwise; bar, log or off")


def _cmd_info(args) -> None:
    import json

    from ntengine.info import info

    facts = info()
    if args.json:
        print(json.dumps(facts, indent=2))
        return
    width = max(map(len, facts))
    for key, value in facts.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        print(f"{key:<{width}}  {shown if shown not in (None, '') else '-'}")


def _embed_outputs() -> str:
    from ntengine.genome.store import COORDINATES

    return (f"output (all of it in OUTPUTS.md):\n  a zarr store: xarray.open_zarr(OUT) gives coordinates "
            f"{', '.join(COORDINATES.split())} over dimension\n  window, and embeddings [window, embed], window_status, "
            "n_tokens; with --token-embeddings\n  token_embeddings, token_start, token_end; with --bigwig "
            "token_logprob, token_entropy\n  and DIR/logprob.bw, DIR/entropy.bw")


def _scan_outputs() -> str:
    from ntengine.genome import snv_outputs

    files = snv_outputs.__doc__.split("FORMATS):", 1)[1].split("Each is written")[0]
    return f"output (all of it in OUTPUTS.md): OUT/windows.zarr, the per-window scan store, and\n{files.rstrip()}"


def _score_outputs() -> str:
    from ntengine.variants.vcf import COLUMNS, INFO, MISMATCH_FILTER, SKIP_INFO

    fields = "\n".join(f"  INFO/{key:<14} {text}" for key, (_, text) in INFO.items())
    return (f"output (all of it in OUTPUTS.md):\n{fields}\n  INFO/{SKIP_INFO:<14} why an allele was not scored "
            f"('.': scored)\n  FILTER/{MISMATCH_FILTER} REF does not match the FASTA\n"
            f"  --tsv columns: {', '.join(COLUMNS)}")


def build_parser() -> argparse.ArgumentParser:
    from ntengine import __version__

    parser = argparse.ArgumentParser(prog="ntengine", description="Fast, faithful Nucleotide Transformer inference.")
    parser.add_argument("--version", action="version", version=f"ntengine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="CPU, ISA level, oneDNN, threads, versions, GPUs: what a bug report needs")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_output_args(p)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("init", help="write a random-weight checkpoint of a published NT shape")
    p.add_argument("--preset", required=True, help="e.g. v2-50m, v2-500m, v1-500m-human-ref")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("-o", "--output", required=True, help="checkpoint folder to write")
    p.add_argument("--layout", choices=("hf", "ntengine"), default="hf",
                   help="checkpoint layout (default: InstaDeep's HF layout)")
    _add_output_args(p)
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("embed", help="embed a genome (or regions) into a zarr store; optional bigWig tracks",
                       description="Windows over a FASTA file -> the model -> a resumable zarr store (mean-pooled "
                                   "window embeddings, optional per-token embeddings) and optional bigWig tracks. "
                                   "Rerun the same command to resume an interrupted job.",
                       epilog=_embed_outputs(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help=CHECKPOINT_HELP + ", .onnx or .plan")
    p.add_argument("fasta", help="FASTA file (plain, gzip or bgzip; multi-record)")
    p.add_argument("-o", "--output", required=True, help="output .zarr store (resumed if it exists)")
    p.add_argument("--bigwig", metavar="DIR", help="also write logprob.bw and entropy.bw tracks into DIR")
    p.add_argument("--window", type=int, help="window length in bp (default: the model's context, 6 x (tokens-1))")
    p.add_argument("--stride", type=int, help="window step in bp (default: the window length, no overlap)")
    p.add_argument("--layer", type=int, help="1-based layer for pooled embeddings (default: final embeddings)")
    p.add_argument("--token-embeddings", type=int, metavar="LAYER",
                   help="also store per-token embeddings (float16) from this 1-based layer")
    p.add_argument("--reverse-complement", action="store_true",
                   help="average each window's pooled embedding over both strands")
    _add_genome_job_args(p, chunk_windows=32)
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("scan", help="masked LLR of every possible SNV of a genome: bigWig, parquet, zarr",
                       description="Windows over a FASTA file -> k masked passes per window (every k-th token masked "
                                   "per pass) -> the log-likelihood ratio log P(alt 6-mer) - log P(ref 6-mer) of all "
                                   "three substitutions of every base. Resumable (rerun the same command), on Ray "
                                   "with --ray; k x the time of an embedding job.",
                       epilog=_scan_outputs(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help=CHECKPOINT_HELP + ", .onnx or .plan")
    p.add_argument("fasta", help="FASTA file (plain, gzip or bgzip; multi-record)")
    p.add_argument("-o", "--output", required=True, help="output folder (resumed if it holds an unfinished scan)")
    p.add_argument("--mask-every", type=int, default=7, metavar="K",
                   help="mask every K-th token per pass, K passes per window (default 7: <= 15%% masked, as in "
                        "pretraining; K = the window's tokens is one mask per pass, exact and K x slower)")
    p.add_argument("--both-strands", action="store_true", help="average the LLRs of both strands (2x the time)")
    p.add_argument("--format", type=_formats, default=("bigwig", "parquet"), metavar="LIST",
                   help="comma-separated: bigwig, parquet, zarr (default bigwig,parquet)")
    p.add_argument("--window", type=int, help="window length in bp (default: the model's context, 6 x (tokens-1))")
    p.add_argument("--stride", type=int, help="window step in bp (default: the window, no overlap; overlapping "
                                              "windows are averaged)")
    _add_genome_job_args(p, chunk_windows=8)
    p.set_defaults(func=_cmd_scan)

    p = sub.add_parser("score-variants", help="zero-shot variant scores (LLR, logit diff, embedding distances)",
                       description="Score every allele of a VCF/BCF against a reference FASTA without training: "
                                   "masked-token log-likelihood ratio, the public recipes' logit difference and "
                                   "embedding distances between reference and alternative windows. Writes the VCF "
                                   "back with INFO fields, and a per-allele table. With --scan, SNV LLRs are read "
                                   "from an `ntengine scan` of the same FASTA instead (no model is run).",
                       epilog=_score_outputs(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help=CHECKPOINT_HELP + ", .onnx or .plan (not with --scan)")
    p.add_argument("--scan", metavar="OUT", help="read SNV LLRs from this `ntengine scan` output folder instead of "
                                                 "running a model (other alleles: NT_SKIP not_snv)")
    p.add_argument("--vcf", required=True, help="VCF, VCF.gz or BCF")
    p.add_argument("--fasta", required=True, help="reference FASTA the VCF was called against")
    p.add_argument("-o", "--output", required=True, help="output VCF (.vcf, .vcf.gz or .bcf)")
    p.add_argument("--tsv", help="also write one row per allele here (.tsv, or .parquet with pandas+pyarrow)")
    p.add_argument("--window", type=int, default=5994, help="window in bp centred on the variant (default 5994: "
                   "999 six-mers + <cls> = 1000 tokens, as public NT recipes)")
    p.add_argument("--layer", type=int, help="1-based layer for embedding distances (default: final embeddings)")
    p.add_argument("--both-strands", action="store_true", help="average LLR and distances over both strands")
    p.add_argument("--invalid", choices=("raise", "N"), default="raise",
                   help="IUPAC codes other than N in the reference: raise (default, naming the position) or read as N")
    p.add_argument("--block-records", type=int, default=256, help="records scored together (default 256)")
    p.add_argument("--regions", nargs="+", metavar="REGION",
                   help="only records starting in these: NAME or NAME:START-END (1-based, inclusive)")
    p.add_argument("--max-records", type=int, metavar="N", help="a quick trial: only the first N (selected) records")
    _add_engine_args(p)
    _add_output_args(p)
    p.set_defaults(func=_cmd_score_variants)

    train = sub.add_parser("train", help="MLM pretraining, fine-tuning (full or IA3) and probing").add_subparsers(
        dest="mode", required=True)
    p = train.add_parser("mlm", help="masked-LM pretraining from a genome (resumes from -o; torchrun for DDP)",
                         description="Masked-language-model pretraining on windows of a genome, as NT was trained. "
                                     "Rerun with the same -o to resume exactly; launch under torchrun for DDP.")
    p.add_argument("fasta", help="training genome (FASTA, plain/gzip/bgzip)")
    p.add_argument("-o", "--output", required=True, help="run folder: step-N checkpoints, latest, log.jsonl")
    p.add_argument("--preset", default="v2-50m", help="shape of a new random model (default v2-50m)")
    p.add_argument("--init", help="start from this checkpoint (folder or hub id) instead of a random model")
    p.add_argument("--layers", type=int, help="override the preset's number of layers")
    p.add_argument("--embed-dim", type=int, help="override the preset's width")
    p.add_argument("--heads", type=int, help="override the preset's attention heads")
    p.add_argument("--ffn-dim", type=int, help="override the preset's FFN width")
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps in total (default 1000)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per step over all processes (default 16)")
    p.add_argument("--tokens", type=int, default=512, help="tokens per window, <cls> included (default 512)")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps, then 1/sqrt decay (default 100)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    p.add_argument("--accumulation", type=int, default=1, help="micro-batches per step (default 1)")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute block activations in backward")
    p.add_argument("--reverse-complement", action="store_true", help="reverse-complement half of the windows")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps (default 500)")
    p.add_argument("--log-every", type=int, default=10, help="log every N steps (default 10)")
    _add_training_args(p)
    _add_output_args(p)
    p.set_defaults(func=_cmd_train_mlm)

    p = train.add_parser("finetune", help="fine-tune a classification/regression head, full or IA3")
    p.add_argument("checkpoint", help=CHECKPOINT_HELP + " to start from")
    p.add_argument("--train", required=True, help="CSV/TSV (sequence,label) or FASTA with label= in headers")
    p.add_argument("--valid", help="validation set (default: a stratified 10%% of --train)")
    p.add_argument("--test", help="test set, scored once at the end through the written checkpoint")
    p.add_argument("-o", "--output", required=True, help="checkpoint folder to write (with head.json)")
    p.add_argument("--method", choices=("ia3", "full"), default="ia3", help="ia3 (default) or full fine-tuning")
    p.add_argument("--epochs", type=int, default=3, help="epochs (default 3); the best on validation is kept")
    p.add_argument("--lr", type=float, help="learning rate (default 3e-3 IA3, 3e-5 full)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per step (default 16)")
    p.add_argument("--pooling", choices=("mean", "cls"), default="mean", help="head input (default mean)")
    p.add_argument("--layer", type=int, help="1-based layer feeding the head (default final embeddings)")
    p.add_argument("--max-steps", type=int, metavar="N", help="a quick trial: stop after N optimiser steps")
    p.add_argument("--limit", type=int, metavar="N", help="a quick trial: a seeded random N of each set")
    _add_training_args(p)
    _add_output_args(p)
    p.set_defaults(func=_cmd_train_finetune)

    p = train.add_parser("probe", help="logistic regression / MLP on frozen embeddings, 10-fold CV, MCC")
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    p.add_argument("--train", required=True, help="CSV/TSV (sequence,label) or FASTA with label= in headers")
    p.add_argument("--test", help="test set, scored once by the classifier refitted on all of --train")
    p.add_argument("--layers", help="comma-separated 1-based layers (default: the last)")
    p.add_argument("--classifier", choices=("logreg", "mlp"), default="logreg", help="default logreg")
    p.add_argument("--folds", type=int, default=10, help="cross-validation folds (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--no-baseline", action="store_true", help="skip the 6-mer count baseline")
    p.add_argument("--limit", type=int, metavar="N", help="a quick trial: a seeded random N of train and of test")
    _add_engine_args(p)
    _add_output_args(p)
    p.set_defaults(func=_cmd_train_probe)

    p = sub.add_parser("export", help="export a checkpoint to ONNX or a TensorRT plan, validated against PyTorch",
                       description="Export to ONNX (dynamic batch and length; checked in onnxruntime) or to a "
                                   "TensorRT plan (built from that ONNX on this machine's GPU; checked on it).")
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    p.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx", help="artefact format (default onnx)")
    p.add_argument("-o", "--output", required=True, help="file to write, e.g. model.onnx or model.plan")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--dtype", choices=("float32", "float16", "bfloat16"),
                           help="weights and compute dtype (default: float32 for onnx, float16 for tensorrt; "
                                "outputs are float32; bfloat16 ONNX files cannot be checked in onnxruntime)")
    precision.add_argument("--fp16", dest="dtype", action="store_const", const="float16", help="= --dtype float16")
    precision.add_argument("--bf16", dest="dtype", action="store_const", const="bfloat16", help="= --dtype bfloat16")
    p.add_argument("--outputs", default="embeddings",
                   help="comma-separated outputs: embeddings, logits, embeddings_{i} (default embeddings)")
    p.add_argument("--opset", type=int,
                   help="ONNX opset (default: the exporter's; 23: ONNX's Attention op, faster in recent onnxruntime)")
    p.add_argument("--no-validate", action="store_true",
                   help="skip the check against PyTorch on phiX174 windows")
    p.add_argument("--trust-pickle", action="store_true", help="allow pickle-based weights (.bin, .joblib)")
    _add_checkpoint_args(p)
    trt = p.add_argument_group("tensorrt")
    trt.add_argument("--min", help="smallest BATCHxTOKENS the plan takes (default 1x1)")
    trt.add_argument("--opt", help="BATCHxTOKENS TensorRT tunes kernels for (default 8x1000)")
    trt.add_argument("--max", help="largest BATCHxTOKENS the plan takes (default 8 x the model's context)")
    trt.add_argument("--timing-cache", help="TensorRT timing cache file, read and updated (speeds up rebuilds)")
    trt.add_argument("--workspace-gib", type=float, help="cap on TensorRT's scratch memory in GiB")
    _add_output_args(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("bench", help="latency and throughput of every backend on this machine, against eager fp32",
                       description="Time a model (a checkpoint, or random weights of a published shape) on real DNA "
                                   "windows: every backend x dtype in one process on the same weights and inputs, "
                                   "eager fp32 always a row and every ratio against it. Prints a table; --json, "
                                   "--plot and --markdown for reports, --compare A.json B.json for two runs.")
    p.add_argument("checkpoint", nargs="?", help=CHECKPOINT_HELP + " (default: random weights of --preset)")
    p.add_argument("--preset", default="v2-50m", help="published shape when no checkpoint is given (default v2-50m)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1")
    p.add_argument("--backends", default="eager,fused", help="comma list of eager, fused, onnxruntime, tensorrt "
                   "(default eager,fused)")
    p.add_argument("--dtypes", default="float32", help="comma list of float32, bfloat16, float16 (default float32)")
    p.add_argument("--batch", default="1,8", help="batch sizes (default 1,8)")
    p.add_argument("--tokens", default="128,1000", help="tokens per sequence, <cls> included (default 128,1000)")
    p.add_argument("--fasta", help="cut windows from this genome (default: the bundled phiX174)")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--duration", type=float, default=2.0, help="seconds per cell (default 2, at least 3 rounds)")
    timing.add_argument("--repeats", type=int, help="timed rounds per cell instead of --duration")
    p.add_argument("--mixed", type=int, default=24, help="sequences of mixed length for the padded/packed and "
                   "per-bucket runs (default 24; 0: skip)")
    p.add_argument("--no-threads", action="store_true", help="skip the 1..all-cores thread scaling (CPU)")
    p.add_argument("--no-cuda-graphs", action="store_true", help="skip the CUDA-graph replay rows (CUDA)")
    p.add_argument("--json", metavar="OUT", help="write the report (schema: ntengine/bench/schema.json)")
    p.add_argument("--plot", metavar="OUT.png", help="latency vs batch and throughput vs tokens per engine")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), help="two reports side by side, then exit")
    _add_checkpoint_args(p, adapter=False)
    _add_output_args(p)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("quickstart", help="create a random v2-50m-shaped model and embed the bundled phiX174 genome")
    p.add_argument("-o", "--output", default="ntengine-quickstart",
                   help="working folder (default ./ntengine-quickstart)")
    _add_output_args(p)
    p.set_defaults(func=_cmd_quickstart)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _configure_output(args)
    try:
        _resolve_checkpoints(args)
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        log.error(f"ntengine {args.command}{' ' + args.mode if getattr(args, 'mode', None) else ''}: error: {err}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

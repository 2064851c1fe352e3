"""Masked-language-model pretraining from a genome, resumable, single process or DDP.

    ntengine train mlm GENOME.fa -o RUN --preset v2-50m [--layers 4 --embed-dim 256 ...]
    torchrun --nproc_per_node 2 -m ntengine.cli train mlm GENOME.fa -o RUN ...   # DDP

One optimiser step uses `batch_size` windows (the global batch), split over processes
and `accumulation` micro-steps. Sample j of step s is window s * batch_size + j of the
seeded `GenomeSampler`, masked from its own seed (`masking`), so the data is a pure
function of the step: resuming reproduces the uninterrupted run, and any number of
processes computes the same step. The loss is the sum of token cross-entropies over the
whole global batch divided by its number of selected tokens, exactly, whatever the
split. AdamW with linear warm-up then inverse-square-root decay (as NT was trained),
gradient clipping, optional bf16 autocast and gradient checkpointing.

Checkpoints: RUN/step-N/ is an ntengine checkpoint (it compiles) plus trainer.pt
(optimiser, scheduler, step, RNG), loaded with weights_only=True; RUN/latest names
the newest; RUN/log.jsonl has loss and perplexity per logged step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ntengine import ops
from ntengine.checkpoint import load_model, save_checkpoint
from ntengine.config import PRESETS, NTConfig
from ntengine.model import NTModel, init_random_weights
from ntengine.progress import progress as reporter
from ntengine.tokenizer import Tokenizer
from ntengine.train.data import GenomeSampler
from ntengine.train.masking import IGNORE, mask_tokens


@dataclass(frozen=True)
class MLMSettings:
    steps: int = 1000
    batch_size: int = 16  # windows per optimiser step, over all processes
    tokens: int = 512  # tokens per window, <cls> included
    lr: float = 1e-4
    warmup: int = 100
    weight_decay: float = 0.01
    accumulation: int = 1
    max_grad_norm: float = 1.0
    bf16: bool = False
    gradient_checkpointing: bool = False
    save_every: int = 500
    log_every: int = 10
    seed: int = 0
    reverse_complement: bool = False


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def _schedule(settings: MLMSettings):
    def factor(step: int) -> float:  # step counts from 0
        s = step + 1
        return s / settings.warmup if s <= settings.warmup else math.sqrt(settings.warmup / s)
    return factor


def _optimizer(model: NTModel, settings: MLMSettings) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.999), eps=1e-8)


def initial_model(source, seed: int = 0, trust_pickle: bool = False) -> NTModel:
    """An fp32 NTModel from a checkpoint folder, an NTConfig or a preset name (random init)."""
    if isinstance(source, NTConfig) or (isinstance(source, str) and source in PRESETS):
        config = source if isinstance(source, NTConfig) else NTConfig.from_preset(source)
        torch.manual_seed(seed)
        return init_random_weights(NTModel(config), seed)
    return load_model(source, trust_pickle=trust_pickle)[0].float()


def _resume_key(settings: dict) -> dict:
    """The settings that define the training trajectory (steps and logging may change)."""
    return {k: v for k, v in settings.items() if k not in ("steps", "save_every", "log_every")}


def latest_checkpoint(run) -> Path | None:
    latest = Path(run) / "latest"
    return Path(run) / latest.read_text().strip() if latest.is_file() else None


class Batches:
    """The masked micro-batches of a step for one process (a pure function of the step)."""

    def __init__(self, sampler: GenomeSampler, tokenizer: Tokenizer, settings: MLMSettings, rank: int, world: int):
        self.sampler, self.tok, self.s, self.rank, self.world = sampler, tokenizer, settings, rank, world
        per = settings.batch_size // (world * settings.accumulation)
        if per * world * settings.accumulation != settings.batch_size:
            raise ValueError(f"batch_size {settings.batch_size} must be a multiple of processes ({world}) x "
                             f"accumulation ({settings.accumulation})")
        self.per = per

    def step(self, step: int):
        """[(inputs, labels, masked)] micro-batches of this process at `step`."""
        out = []
        for micro in range(self.s.accumulation):
            first = step * self.s.batch_size + (micro * self.world + self.rank) * self.per
            index = range(first, first + self.per)
            enc = self.tok.batch_encode([self.sampler.sample(i) for i in index], truncation=True)
            ids = torch.from_numpy(enc.ids).long()
            seeds = [self.s.seed * 1_000_003 + i for i in index]
            out.append(mask_tokens(ids, seeds, self.tok.special_ids, self.tok.mask_id, self.tok.vocab_size))
        return out


def pretrain(source, fasta, run, settings: MLMSettings = MLMSettings(), device="cpu", trust_pickle: bool = False,
             progress: bool = True) -> list[dict]:
    """Pretrain (or continue) a model with MLM on `fasta`; checkpoints in `run`.

    Args:
        source: checkpoint folder, NTConfig or preset name (random init, seeded). Ignored
            when `run` already holds a checkpoint: training then resumes from its latest.
    Returns:
        the log records of this call (step, loss, mask_loss, perplexity, lr, tokens).
    """
    rank, world = _distributed()
    run = Path(run)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if device == "cuda" and world > 1 else device)
    resume = latest_checkpoint(run)
    model = initial_model(resume or source, settings.seed, trust_pickle).to(device)
    model.gradient_checkpointing = settings.gradient_checkpointing
    config = model.config
    tokenizer = Tokenizer(version=config.version, max_length=settings.tokens)
    if not 1 < settings.tokens <= config.max_positions:
        raise ValueError(f"tokens must be 2..{config.max_positions} for this model, got {settings.tokens}")
    sampler = GenomeSampler(fasta, 6 * (settings.tokens - 1), settings.seed, settings.reverse_complement)
    batches = Batches(sampler, tokenizer, settings, rank, world)
    optimizer = _optimizer(model, settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(settings))
    start = 0
    if resume:
        state = torch.load(resume / "trainer.pt", map_location="cpu", weights_only=True)
        before, now = _resume_key(state["settings"]), _resume_key(dataclasses.asdict(settings))
        if before != now:
            diff = {k: (before[k], now[k]) for k in before if before[k] != now[k]}
            raise ValueError(f"{run} was trained with other settings {diff} (before, now): use a new run folder")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start = state["step"]
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    model.train()
    history = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bf16)
    bar = reporter(settings.steps, "mlm", "steps", enabled=progress and rank == 0, initial=start)
    for step in range(start, settings.steps):
        micro = batches.step(step)
        counts = torch.tensor([sum(int((m.labels != IGNORE).sum()) for m in micro),
                               sum(int(m.masked.sum()) for m in micro)], dtype=torch.float64)
        if world > 1:
            torch.distributed.all_reduce(counts)
        sums = torch.zeros(2, dtype=torch.float64)
        for i, m in enumerate(micro):
            sync = i == len(micro) - 1 or world == 1
            with ops.use("torch"), autocast, (ddp.no_sync() if not sync else contextlib.nullcontext()):
                logits = ddp(m.inputs.to(device), None, logits=True)["logits"].float()
                token_loss = F.cross_entropy(logits.transpose(1, 2), m.labels.to(device), ignore_index=IGNORE,
                                             reduction="none")
                # x world: DDP averages gradients over processes; the loss divides by the global count.
                (token_loss.sum() * world / counts[0].item()).backward()
            sums += torch.tensor([token_loss.sum().item(), token_loss[m.masked.to(device)].sum().item()],
                                 dtype=torch.float64)
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if done % settings.log_every == 0 or done == settings.steps:
            if world > 1:
                torch.distributed.all_reduce(sums)
            loss, mask_loss = (sums / counts).tolist()
            record = {"step": done, "loss": loss, "mask_loss": mask_loss, "perplexity": math.exp(loss),
                      "lr": scheduler.get_last_lr()[0], "tokens": done * settings.batch_size * settings.tokens}
            history.append(record)
            if rank == 0:
                run.mkdir(parents=True, exist_ok=True)
                with open(run / "log.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{loss:.3f}", ppl=f"{record['perplexity']:.1f}")
        if rank == 0 and (done % settings.save_every == 0 or done == settings.steps):
            _save(run, done, model, optimizer, scheduler, settings)
        bar.update(1)
    bar.close()
    if world > 1:
        torch.distributed.barrier()
    return history


def _save(run: Path, step: int, model: NTModel, optimizer, scheduler, settings: MLMSettings) -> Path:
    """Write run/step-N (checkpoint + trainer.pt) completely, then point run/latest at it."""
    folder = run / f"step-{step}"
    tmp = run / f".step-{step}.partial"
    save_checkpoint(tmp, model.config, model.state_dict(), layout="ntengine")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                "rng": torch.get_rng_state(), "settings": dataclasses.asdict(settings)}, tmp / "trainer.pt")
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
    latest = run / ".latest.partial"
    latest.write_text(folder.name + "\n")
    latest.replace(run / "latest")
    return folder

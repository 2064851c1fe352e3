"""Shard a genome job's chunks over Ray actors: one per GPU, or CPU workers.

Each actor compiles the checkpoint itself, opens the FASTA and the store, and runs whole
chunks with the same code as a local job (`ChunkRunner`), writing them straight into the
store: chunks are disjoint zarr chunks, so actors never write the same file. The store
must therefore be on a filesystem every actor sees (local disk for a one-machine
cluster, a shared filesystem otherwise).
"""

from __future__ import annotations

from pathlib import Path

INSTALL_HINT = "pip install 'ntengine[ray]'"


class _Worker:
    def __init__(self, spec):
        import torch

        import ntengine
        from ntengine.genome.worker import ChunkRunner
        from ntengine.genome.store import open_group

        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        torch.set_num_threads(max(1, int(cpus)))
        e = spec.engine
        engine = ntengine.compile(e["checkpoint"], device=e["device"], dtype=e["dtype"], backend=e["backend"],
                                  trust_pickle=e["trust_pickle"], batch_size=spec.settings.batch_size,
                                  adapter=e.get("adapter"))
        self.spec, self.runner = spec, ChunkRunner(spec, engine)
        self.group = open_group(Path(spec.store), "r+")

    def run(self, chunk: int) -> tuple[int, int]:
        from ntengine.genome.store import write_chunk

        prepared = self.runner.prepare(chunk)
        write_chunk(self.group, chunk, self.spec.settings.chunk_windows, self.runner.run(prepared))
        return chunk, sum(e - s for _, s, e in prepared["windows"])


def run_on_ray(spec, chunks, address, workers: int | None, on_done, cpus_per_worker: int = 1) -> None:
    """Run `chunks` of `spec` on Ray; on_done(chunk, bp) as each one commits."""
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as err:
        raise RuntimeError(f"--ray needs Ray ({err}): {INSTALL_HINT}") from None
    gpu = str(spec.engine.get("device", "cpu")).startswith("cuda")
    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, logging_level="WARNING")
    n = workers or (int(ray.cluster_resources().get("GPU", 0)) if gpu else 2)
    if n < 1:
        raise RuntimeError("the Ray cluster has no GPU for a cuda job: pass --device cpu or add GPU nodes")
    actor = ray.remote(num_gpus=1 if gpu else 0, num_cpus=cpus_per_worker)(_Worker)
    actors = [actor.remote(spec) for _ in range(n)]
    try:
        for chunk, bp in ActorPool(actors).map_unordered(lambda a, c: a.run.remote(c), list(chunks)):
            on_done(chunk, bp)
    finally:
        for a in actors:
            ray.kill(a)

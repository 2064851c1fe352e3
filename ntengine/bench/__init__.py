"""Latency and throughput benchmarks users run on their own machines (`ntengine bench`).

    from ntengine import bench
    report = bench.run(preset="v2-50m", backends=("eager", "fused"), batches=(1, 8), tokens=(128, 1000))
    print(bench.table(report))

`run` times every engine in one process on the same weights and real DNA (the bundled
phiX174 genome, or a FASTA), eager fp32 always among them and every ratio against it;
`table`, `plot`, `compare` and `validate` read its report (schema.json documents it).
"""

from ntengine.bench.report import compare, plot, table, validate
from ntengine.bench.runner import run

__all__ = ["run", "table", "plot", "compare", "validate"]

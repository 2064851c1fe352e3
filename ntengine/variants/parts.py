"""Committed blocks of a variant-scoring run, so an interrupted run resumes.

``<out>.parts/`` holds ``job.json`` (what the run computes: model, settings, inputs) and,
per block of records, ``<b>.vcf`` (its records, as a small VCF) and ``<b>.json`` (its
table rows, counts and statistics), written last: a block counts as done only once its
JSON exists, so a run killed mid-block redoes just that block. The final VCF and table
are assembled from the parts in order, then the folder is removed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


class BlockParts:
    def __init__(self, out: Path, job: dict, header):
        self.dir, self.header = Path(str(out) + ".parts"), header
        self.dir.mkdir(exist_ok=True)
        recorded = self.dir / "job.json"
        committed = any(p.name != "job.json" for p in self.dir.glob("*.json"))
        if recorded.is_file() and committed:  # nothing committed: nothing to lose by starting afresh
            found = json.loads(recorded.read_text())
            if found != job:
                differ = sorted(k for k in set(found) | set(job) if found.get(k) != job.get(k))
                raise ValueError(f"{self.dir} holds an unfinished run with other {', '.join(differ)}: rerun that "
                                 f"command to finish it, or delete {self.dir} to start over")
        else:
            _write_atomic(recorded, json.dumps(job, sort_keys=True))

    def done(self, block: int) -> dict | None:
        """The committed result of `block` (rows, counts, skipped, stats), or None."""
        path = self.dir / f"{block:06d}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def run(self, block: int, score) -> dict:
        """Commit `block`: score(writer) writes its records to a part VCF and returns its
        result (JSON-able), stored last as the commit."""
        import pysam

        tmp = self.dir / f"{block:06d}.vcf.tmp"
        with pysam.VariantFile(str(tmp), "w", header=self.header) as part:
            result = score(part)
        tmp.replace(self.dir / f"{block:06d}.vcf")
        _write_atomic(self.dir / f"{block:06d}.json", json.dumps(result))
        return result

    def assemble(self, writer, n_blocks: int) -> None:
        """Write every block's records, in order, to `writer` (opened with the same header)."""
        import pysam

        for block in range(n_blocks):
            with pysam.VariantFile(str(self.dir / f"{block:06d}.vcf")) as part:
                for rec in part:
                    writer.write(rec)

    def remove(self) -> None:
        shutil.rmtree(self.dir)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)

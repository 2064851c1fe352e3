"""Per-base SNV scores from a scan store, and the files `ntengine scan` writes from them.

A base's LLR for alt b is the mean over the scan windows that cover it (stride < window
overlaps them, as the genome tracks do) of that window's `snv_llr`; bases no usable
window covers, and N, have none. The files (FORMATS):

    bigwig   llr_max_abs.bw     max |LLR| over the three alternatives, per base
             llr_A.bw ... llr_T.bw  the LLR of substituting the base by A (C, G, T); a
                                gap where the reference already is that base
    parquet  llr.parquet        chrom, pos (1-based), ref, alt, llr: one row per SNV,
                                sorted by chrom (FASTA order), pos, alt (the columns of
                                public score files such as GPN-Star's), a row group per
                                Mb (BLOCK bp), with statistics and a page index, so
                                readers fetch a region's row groups only
    zarr     llr.zarr           llr float32 [genome bp, 4] (alt A C G T) and ref uint8
                                [genome bp] (ASCII; 0: no score), records laid end to end
                                in FASTA order: attrs["records"] = [[name, offset, length]]

Each is written a `block` of the genome at a time (bounded memory) under a temporary
name, then renamed: a rerun rewrites them, byte for byte, from the same store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ntengine.genome.snv_llr import BASES
from ntengine.genome.store import STATUS

FORMATS = ("bigwig", "parquet", "zarr")
BLOCK = 1 << 20
_CODES = np.frombuffer(BASES.encode(), np.uint8)


class ScanScores:
    """Per-base LLRs of a scan store (an open zarr group written with snv_every)."""

    def __init__(self, group):
        meta = group.attrs["ntengine"]
        if "snv_every" not in meta["params"]:
            raise ValueError("not a scan: this genome store holds embeddings (written by `ntengine embed`), not LLRs")
        self.group, self.meta = group, meta
        self.lengths = {name: length for name, (_, length) in zip(meta["records"], meta["genome"]["lengths"])}
        status = group["window_status"][:]
        self.usable = (status == STATUS["embedded"]) | (status == STATUS["shortened"])
        self.record, self.start, self.end = group["record"][:], group["window_start"][:], group["window_end"][:]

    def spans(self, name: str) -> tuple[int, int] | None:
        """[first, last) base of `name` that some usable window covers, or None."""
        idx = np.flatnonzero(self.usable & (self.record == name))
        return (int(self.start[idx].min()), int(self.end[idx].max())) if idx.size else None

    def block(self, name: str, b0: int, b1: int) -> tuple[np.ndarray, np.ndarray]:
        """(llr float32 [b1-b0, 4], ref uint8 [b1-b0]) of bases [b0, b1) of record `name`:
        NaN and 0 where no window scores the base."""
        size = b1 - b0
        total, count = np.zeros((size, 4)), np.zeros(size, np.int64)
        ref = np.zeros(size, np.uint8)
        sel = np.flatnonzero(self.usable & (self.record == name) & (self.start < b1) & (self.end > b0))
        if sel.size:
            llr, bases = self.group["snv_llr"].oindex[sel], self.group["bases"].oindex[sel]
            for row, w in enumerate(sel):
                s, lo, hi = int(self.start[w]), max(b0, int(self.start[w])), min(b1, int(self.end[w]))
                values = llr[row, lo - s:hi - s]
                ok = np.isfinite(values).all(1)
                total[lo - b0:hi - b0][ok] += values[ok]
                count[lo - b0:hi - b0] += ok
                ref[lo - b0:hi - b0][ok] = bases[row, lo - s:hi - s][ok]
        with np.errstate(invalid="ignore"):
            return (total / count[:, None]).astype(np.float32), ref

    def blocks(self, block: int = BLOCK):
        """(name, b0, llr, ref) over every scored stretch of the genome, in FASTA order."""
        for name in self.meta["records"]:
            if (span := self.spans(name)) is not None:
                for b0 in range(span[0], span[1], block):
                    b1 = min(b0 + block, span[1])
                    yield name, b0, *self.block(name, b0, b1)


def _alt_values(llr: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """llr with NaN where the alternative is the reference base (not a substitution)."""
    return np.where(ref[:, None] == _CODES[None, :], np.nan, llr)


def _add_runs(bw, name: str, b0: int, values: np.ndarray) -> None:
    """Add the finite stretches of per-base `values` (from base b0) to an open bigWig."""
    ok = np.isfinite(values)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.view(np.int8), [0]))))
    for lo, hi in zip(edges[::2], edges[1::2]):
        bw.addEntries(name, int(b0 + lo), values=values[lo:hi].astype(np.float64), span=1, step=1)


def write_bigwigs(scores: ScanScores, folder: Path, block: int = BLOCK) -> list[Path]:
    import pyBigWig

    names = ["llr_max_abs"] + [f"llr_{b}" for b in BASES]
    tmps = [folder / f".{n}.bw.partial" for n in names]
    files = [pyBigWig.open(str(t), "w") for t in tmps]
    header = [(name, scores.lengths[name]) for name in scores.meta["records"]]
    for bw in files:
        bw.addHeader(header, maxZooms=10)
    for name, b0, llr, ref in scores.blocks(block):
        alt = _alt_values(llr, ref)
        scored = np.isfinite(alt).any(1)
        _add_runs(files[0], name, b0, np.where(scored, np.nanmax(np.abs(np.where(scored[:, None], alt, 0)), 1), np.nan))
        for b, bw in enumerate(files[1:]):
            _add_runs(bw, name, b0, alt[:, b])
    paths = []
    for bw, tmp, n in zip(files, tmps, names):
        bw.close()
        paths.append(tmp.replace(folder / f"{n}.bw"))
    return paths


def parquet_schema():
    import pyarrow as pa

    return pa.schema([("chrom", pa.string()), ("pos", pa.int64()), ("ref", pa.string()), ("alt", pa.string()),
                      ("llr", pa.float32())])


def write_parquet(scores: ScanScores, path: Path, block: int = BLOCK) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema, tmp = parquet_schema(), path.with_name(f".{path.name}.partial")
    sorting = [pq.SortingColumn(i) for i in (0, 1, 3)]  # in each row group (one record's block): chrom, pos, alt
    letters = pa.array(list(BASES))
    with pq.ParquetWriter(str(tmp), schema, compression="zstd", write_page_index=True,
                          sorting_columns=sorting) as writer:
        for name, b0, llr, ref in scores.blocks(block):
            base, alt = np.nonzero(np.isfinite(_alt_values(llr, ref)))  # by base, then alt: sorted
            if not base.size:
                continue
            ref_index = np.searchsorted(_CODES, ref[base])
            table = pa.table({
                "chrom": pa.DictionaryArray.from_arrays(np.zeros(base.size, np.int32), [name]).cast(pa.string()),
                "pos": b0 + base.astype(np.int64) + 1,
                "ref": pa.DictionaryArray.from_arrays(ref_index.astype(np.int32), letters).cast(pa.string()),
                "alt": pa.DictionaryArray.from_arrays(alt.astype(np.int32), letters).cast(pa.string()),
                "llr": llr[base, alt]}, schema=schema)
            writer.write_table(table, row_group_size=table.num_rows)
    return tmp.replace(path)


def write_zarr(scores: ScanScores, path: Path, block: int = BLOCK) -> Path:
    import shutil

    import zarr

    from ntengine.genome.store import consolidate

    offsets, total = {}, 0
    for name in scores.meta["records"]:
        offsets[name], total = total, total + scores.lengths[name]
    tmp = path.with_name(f".{path.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    group = zarr.open_group(str(tmp), mode="w")
    llr_array = group.create_array("llr", shape=(total, 4), chunks=(block, 4), dtype="float32", fill_value=np.nan,
                                   dimension_names=["base", "alt"])
    ref_array = group.create_array("ref", shape=(total,), chunks=(block,), dtype="uint8", fill_value=0,
                                   dimension_names=["base"])
    group.attrs["ntengine"] = {"alt": list(BASES), "records": [[n, offsets[n], scores.lengths[n]]
                                                               for n in scores.meta["records"]],
                               "model": scores.meta["model"], "params": scores.meta["params"]}
    for name, b0, llr, ref in scores.blocks(block):
        at = offsets[name] + b0
        llr_array[at:at + len(ref)] = llr
        ref_array[at:at + len(ref)] = ref
    consolidate(tmp)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def write_outputs(group, folder, formats=("bigwig", "parquet"), block: int = BLOCK) -> list[Path]:
    """Write the `formats` of the scan store `group` into `folder`; returns their paths."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown output format {sorted(unknown)[0]!r}: choose from {', '.join(FORMATS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scores, paths = ScanScores(group), []
    if "bigwig" in formats:
        paths += write_bigwigs(scores, folder, block)
    if "parquet" in formats:
        paths.append(write_parquet(scores, folder / "llr.parquet", block))
    if "zarr" in formats:
        paths.append(write_zarr(scores, folder / "llr.zarr", block))
    return paths

"""The zarr (v3) store a genome job writes: ``xarray.open_zarr(path)`` opens it as a
Dataset over dimension ``window`` whose coordinates say where each window is, e.g.

    ds = xarray.open_zarr("genome.zarr").set_index(window=["record", "window_start", "window_end"])
    ds.embeddings.sel(record="chrM")                                    # every window of chrM
    ds.embeddings.sel(record="chrM", window_start=0)                    # the first one

Coordinates (W windows):

    record           string [window]               record name (as in the FASTA, or its --rename)
    window_start     int64 [window]                0-based, inclusive    } the part embedded: planned,
    window_end       int64 [window]                exclusive             } or moved in if "shortened"

Data variables (E embedding width, T = model context):

    window_status    int8  [window]                see STATUS; -1 until its chunk is done
    embeddings       float32 [window, embed]       mean over the window's nucleotide tokens
                                                   (NaN for skipped windows)
    n_tokens         int32 [window]                tokens fed to the model, <cls> included
    token_embeddings float16 [window, token, embed]  optional; row 0 is <cls>
    token_start/end  int64 [window, token]         genomic coordinates of each token (-1: <cls>, padding)
    token_logprob    float32 [window, token]       optional (tracks): log P(observed token)
    token_entropy    float32 [window, token]       optional (tracks): entropy of the prediction, nats

A scan (`ntengine scan`, settings.snv_every; B = the window length in bp) stores instead
of the embeddings:

    bases            uint8 [window, base]          the window's bases as the model read them
                                                   (ASCII, upper case; 0 past window_end)
    snv_llr          float32 [window, base, alt]   LLR of substituting base i (window_start + i)
                                                   by alt A, C, G, T (see `snv_llr`); 0 for
                                                   the reference base, NaN at N and past the end

Bookkeeping, in the subgroup ``_ntengine`` (xarray does not open subgroups):

    _ntengine/chunk_done  uint8 [chunk]            1 once every array of that chunk is written

Work is committed a chunk of windows at a time: a chunk's arrays are written, then its
``chunk_done`` flag (each flag is its own zarr chunk, and each job chunk its own zarr
chunk in every array, so writers never share a file). The store is created under a
temporary name and renamed, and carries the model hash, genome hash, ntengine version
and every job parameter in attrs["ntengine"]; reopening with anything different is
refused rather than mixed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

FORMAT = "ntengine-genome-embeddings/2"  # 2: record names as a coordinate, bookkeeping in _ntengine/
STATUS = {"pending": -1, "embedded": 0, "skipped_all_n": 1, "shortened": 2}
COORDINATES = "record window_start window_end"  # what the CF "coordinates" attribute names
DONE = "_ntengine/chunk_done"
STATUS_DOC = ("-1 pending; 0 embedded; 1 skipped (no A/C/G/T: all N); 2 shortened: its tokens overflowed the "
              "model's context (an N is one token per base), so its leading/trailing N runs were trimmed and, if "
              "still too long, its tail cut; window_start/window_end give the part embedded")


class StoreError(ValueError):
    """A store that is not ours, is damaged, or was written with other settings."""


def open_group(path: Path, mode: str):
    import zarr

    try:
        return zarr.open_group(str(path), mode=mode)
    except Exception as err:  # zarr raises several types for unreadable metadata
        raise StoreError(f"{path}: not a readable zarr store ({type(err).__name__}: {err})") from None


def consolidate(path: Path) -> None:
    """Write consolidated metadata, so `xarray.open_zarr(path)` opens the store in one read
    and without its "failed to open with consolidated metadata" warning. The arrays'
    metadata never changes after creation, so one consolidation stays true."""
    import warnings

    import zarr

    with warnings.catch_warnings():  # zarr-python notes that Zarr v3 has no spec for it yet
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(str(path))


def _array_specs(meta: dict) -> dict[str, tuple]:
    """name -> (shape, chunks, dtype, fill, dimension names) of every array in a store."""
    lay = meta["layout"]
    w, k, e, t = lay["windows"], lay["chunk_windows"], lay["embed_dim"], lay["tokens"]
    n_chunks = max(1, -(-w // k))
    specs = {
        "record": ((w,), (k,), str, "", ["window"]),
        "window_start": ((w,), (k,), "int64", -1, ["window"]),
        "window_end": ((w,), (k,), "int64", -1, ["window"]),
        "window_status": ((w,), (k,), "int8", -1, ["window"]),
        "n_tokens": ((w,), (k,), "int32", 0, ["window"]),
        DONE: ((n_chunks,), (1,), "uint8", 0, ["chunk"]),
    }
    if b := lay.get("snv_window"):
        specs["bases"] = ((w, b), (1, b), "uint8", 0, ["window", "base"])
        specs["snv_llr"] = ((w, b, 4), (1, b, 4), "float32", np.nan, ["window", "base", "alt"])
    else:
        specs["embeddings"] = ((w, e), (k, e), "float32", np.nan, ["window", "embed"])
    if lay["token_embeddings"] or lay["tracks"]:
        specs["token_start"] = ((w, t), (1, t), "int64", -1, ["window", "token"])
        specs["token_end"] = ((w, t), (1, t), "int64", -1, ["window", "token"])
    if lay["token_embeddings"]:
        specs["token_embeddings"] = ((w, t, e), (1, t, e), "float16", 0, ["window", "token", "embed"])
    if lay["tracks"]:
        specs["token_logprob"] = ((w, t), (1, t), "float32", np.nan, ["window", "token"])
        specs["token_entropy"] = ((w, t), (1, t), "float32", np.nan, ["window", "token"])
    return specs


def _normalise(meta: dict) -> dict:
    """meta as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(meta))


def create_or_open(path, meta: dict, windows, names: dict[str, str]):
    """Open the store at `path` for this job, creating it if absent.

    Args:
        meta: attrs["ntengine"]: format, versions, hashes, params and "layout".
        windows: the job's planned windows (FASTA record, start, end), in store order.
        names: FASTA record name -> the name the store gives it (`record`).
    Raises StoreError if `path` holds something else: not zarr, not ours, or written with
    other settings (the message lists what differs).
    """
    path = Path(path)
    meta = _normalise(meta)
    if path.exists():
        group = open_group(path, "r+")
        found = group.attrs.asdict().get("ntengine")
        if not isinstance(found, dict) or found.get("format") != FORMAT:
            raise StoreError(f"{path}: a zarr store that ntengine did not write (no attrs['ntengine'] of format "
                             f"{FORMAT}): refusing to write into it")
        if found != meta:
            diff = sorted(k for k in set(found) | set(meta) if found.get(k) != meta.get(k))
            details = "; ".join(f"{k}: store {found.get(k)!r} vs now {meta.get(k)!r}" for k in diff)[:2000]
            raise StoreError(f"{path} was written by another job ({', '.join(diff)} differ): {details}. Use a new "
                             "output path, or delete it to start over")
        for name, (shape, *_rest) in _array_specs(meta).items():
            if name not in group or tuple(group[name].shape) != shape:
                raise StoreError(f"{path}: array {name} is missing or has the wrong shape: the store is damaged; "
                                 "delete it to start over")
        return group
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():  # a creation that was interrupted: nothing in it was committed
        shutil.rmtree(tmp)
    group = open_group(tmp, "w")
    group.create_group(DONE.split("/")[0])
    for name, (shape, chunks, dtype, fill, dims) in _array_specs(meta).items():
        array = group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
                                   dimension_names=dims)
        if dims[0] == "window" and name not in COORDINATES.split():
            array.attrs["coordinates"] = COORDINATES
    if len(windows):
        group["record"][:] = np.array([names[w[0]] for w in windows], dtype=object)
        group["window_start"][:] = np.array([w[1] for w in windows], np.int64)
        group["window_end"][:] = np.array([w[2] for w in windows], np.int64)
    group.attrs["ntengine"] = meta
    consolidate(tmp)
    tmp.rename(path)
    return open_group(path, "r+")


def done_chunks(group) -> np.ndarray:
    """Bool [n_chunks]: which chunks are committed."""
    return group[DONE][:].astype(bool)


def write_chunk(group, chunk: int, chunk_windows: int, arrays: dict[str, np.ndarray]) -> None:
    """Write one chunk's rows of every array in `arrays`, then commit it."""
    lo = chunk * chunk_windows
    for name, values in arrays.items():
        group[name][lo:lo + len(values)] = values
    group[DONE][chunk] = 1

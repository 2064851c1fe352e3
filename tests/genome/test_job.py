"""Whole-genome jobs on real genomes: coordinates, N handling, stores, resume, Ray, tracks.

The model is the v2 fixture (2 layers x 32, context 2,048 tokens): jobs of tens of kb run
in about a second, and every number is checked against `Engine.embed` / `Engine.logits`
on the same genome slices.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import zarr

import ntengine
from ntengine.genome.fasta import FastaError, read_records
from ntengine.genome.job import embed_genome
from ntengine.genome.settings import EmbedSettings
from ntengine.genome.store import STATUS, StoreError
from tolerances import FP32, rel_err


@pytest.fixture(scope="module")
def engine(fixtures_dir):
    return ntengine.compile(fixtures_dir / "v2_tiny")


@pytest.fixture(scope="module")
def chr2(shared_data, tmp_path_factory):
    """hg38 chr2:1-2,333,275 (BGZF, soft-masked, N run 1-10,000) copied beside its index."""
    folder = tmp_path_factory.mktemp("chr2")
    for suffix in ("", ".fai", ".gzi"):
        shutil.copy(shared_data / "genomes" / f"human_hg38_chr2_1-2333275.fa.gz{suffix}", folder)
    return folder / "human_hg38_chr2_1-2333275.fa.gz"


def genome_of(path) -> str:
    return next(read_records(path)).sequence


def store(path):
    return zarr.open_group(str(path), mode="r")


def tree_bytes(root) -> dict:
    """{relative path: bytes} of every file under root: 'the same store' means this is equal."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_windows_tokens_and_embeddings_match_the_genome(engine, shared_data, tmp_path):
    fasta = shared_data / "genomes" / "lambda_phage_NC_001416.1.fa"
    genome = genome_of(fasta)
    settings = EmbedSettings(window=3000, stride=2500, token_embeddings=1)
    summary = embed_genome(engine, fasta, tmp_path / "l.zarr", settings,
                           regions=["gi|9626243|ref|NC_001416.1|:101-20,000"], progress=False)
    g = store(tmp_path / "l.zarr")
    start, end = g["window_start"][:], g["window_end"][:]
    np.testing.assert_array_equal(start, np.arange(100, 20000, 2500)[:len(start)])
    assert end[-1] == 20000 and summary["windows"] == len(start) == 8
    assert (g["window_status"][:] == STATUS["embedded"]).all() and g["_ntengine/chunk_done"][:].all()
    xr = pytest.importorskip("xarray")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consolidated metadata: opens as users open it, with no warning
        ds = xr.open_zarr(tmp_path / "l.zarr")
    assert ds["embeddings"].dims == ("window", "embed") and ds["token_embeddings"].dims == ("window", "token", "embed")
    # Windows carry where they are, and bookkeeping stays out of the user's dataset.
    assert set(ds.coords) == {"record", "window_start", "window_end"} and "chunk_done" not in ds
    by_place = ds.set_index(window=["record", "window_start", "window_end"])
    one = by_place.embeddings.sel(record="gi|9626243|ref|NC_001416.1|", window_start=2600)
    np.testing.assert_array_equal(one.values[0], g["embeddings"][1])
    assert int(one.window_end[0]) == 5600
    slices = [genome[s:e] for s, e in zip(start, end)]
    assert rel_err(g["embeddings"][:], engine.embed(slices)) <= FP32
    per_token = engine.embed(slices, layer=1, pooling="none")
    ts, te, n = g["token_start"][:], g["token_end"][:], g["n_tokens"][:]
    for w, seq in enumerate(slices):
        ids = engine.tokenizer.encode(seq)
        assert n[w] == len(ids) and ts[w, 0] == -1 and (ts[w, n[w]:] == -1).all()
        # every token's coordinates point at the genome bases it was made from
        assert engine.tokenizer.decode(ids) == "".join(genome[a:b] for a, b in zip(ts[w, 1:n[w]], te[w, 1:n[w]]))
        assert ts[w, 1] == start[w] and te[w, n[w] - 1] == end[w]
        emb = g["token_embeddings"][w, :n[w]].astype(np.float32)
        assert rel_err(emb, per_token[w]) <= 2e-3  # float16 storage


def test_n_runs_soft_masking_and_reverse_complement(engine, chr2, tmp_path):
    genome = genome_of(chr2)
    assert set(genome[:10000]) == {"N"} and any(c.islower() for c in genome[10000:40000])
    embed_genome(engine, chr2, tmp_path / "a.zarr", EmbedSettings(window=3000), regions=["chr2:1-30000"],
                 progress=False)
    g = store(tmp_path / "a.zarr")
    status = g["window_status"][:]
    assert list(status[:3]) == [STATUS["skipped_all_n"]] * 3 and np.isnan(g["embeddings"][:3]).all()
    assert (status[3:] == STATUS["embedded"]).all()  # 9,000-12,000 is partly N: 1,000 N tokens + 6-mers
    slices = [genome[s:e] for s, e in zip(g["window_start"][3:], g["window_end"][3:])]
    assert rel_err(g["embeddings"][3:], engine.embed([s.upper() for s in slices])) <= FP32  # lowercase = upper

    # A context-sized window over the N-run edge overflows (one token per N): its leading N run is trimmed.
    s = embed_genome(engine, chr2, tmp_path / "b.zarr", EmbedSettings(reverse_complement=True),
                     regions=["chr2:1-24564"], progress=False)
    g = store(tmp_path / "b.zarr")
    assert s["shortened"] == 1 and list(g["window_status"][:]) == [STATUS["shortened"], STATUS["embedded"]]
    assert list(g["window_start"][:]) == [10000, 12282] and list(g["window_end"][:]) == [12282, 24564]
    seqs = [genome[10000:12282], genome[12282:24564]]
    rc = [x.upper().translate(str.maketrans("ACGTN", "TGCAN"))[::-1] for x in seqs]
    both = (engine.embed(seqs) + engine.embed(rc)) / 2
    assert rel_err(g["embeddings"][:], both) <= FP32


def test_plain_gzip_streams_like_an_indexed_file(engine, shared_data, tmp_path):
    gz = shared_data / "genomes" / "phiX174_NC_001422.1.fasta.gz"
    plain = tmp_path / "phix.fa"
    plain.write_text(f">NC_001422.1\n{genome_of(gz)}\n")
    for name, path in (("gz", gz), ("plain", plain)):
        embed_genome(engine, path, tmp_path / f"{name}.zarr", EmbedSettings(window=1000, chunk_windows=2),
                     progress=False)
    a, b = store(tmp_path / "gz.zarr"), store(tmp_path / "plain.zarr")
    for key in ("embeddings", "window_start", "window_end", "n_tokens"):
        np.testing.assert_array_equal(a[key][:], b[key][:])


def test_bed_and_records_selection(engine, shared_data, tmp_path):
    fasta = shared_data / "genomes" / "human_chrM_rCRS_NC_012920.fasta"
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\nchrM\t3000\t3300\tnear_the_N\nchrM\t100\t700\n")
    embed_genome(engine, fasta, tmp_path / "bed.zarr", EmbedSettings(window=600), bed=bed, progress=False)
    g = store(tmp_path / "bed.zarr")
    assert list(g["window_start"][:]) == [3000, 100] and list(g["window_end"][:]) == [3300, 700]
    genome = genome_of(fasta)
    assert genome[3106] == "N"  # rCRS placeholder: tokenised by the official rules, not skipped
    assert rel_err(g["embeddings"][:], engine.embed([genome[3000:3300], genome[100:700]])) <= FP32
    with pytest.raises(ValueError, match="no such record in the FASTA"):
        embed_genome(engine, fasta, tmp_path / "x.zarr", records=["chr1"], progress=False)
    with pytest.raises(ValueError, match="ends past the record's 16,569 bp"):
        embed_genome(engine, fasta, tmp_path / "x.zarr", regions=["chrM:1-20000"], progress=False)
    assert not (tmp_path / "x.zarr").exists()


def test_bad_fasta_fails_before_writing(engine, tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_text(">seq1\nACGTACGT\n>seq2\nACGTXACGT\n")
    with pytest.raises(FastaError, match=r"line 4, column 5: invalid character 'X' in record 'seq2', position 4"):
        embed_genome(engine, bad, tmp_path / "o.zarr", progress=False)
    assert not (tmp_path / "o.zarr").exists()


def test_foreign_corrupt_and_mismatched_stores_are_refused(engine, fixtures_dir, shared_data, tmp_path):
    fasta = shared_data / "genomes" / "sars_cov_2_NC_045512v2.fa"
    args = dict(settings=EmbedSettings(window=3000), progress=False)
    embed_genome(engine, fasta, tmp_path / "s.zarr", **args)
    before = tree_bytes(tmp_path / "s.zarr")
    summary = embed_genome(engine, fasta, tmp_path / "s.zarr", **args)  # finished: nothing to do
    assert summary["chunks_run"] == 0 and tree_bytes(tmp_path / "s.zarr") == before
    with pytest.raises(StoreError, match=r"written by another job \(params differ\).*'layer': None.*'layer': 1"):
        embed_genome(engine, fasta, tmp_path / "s.zarr", EmbedSettings(window=3000, layer=1), progress=False)
    assert tree_bytes(tmp_path / "s.zarr") == before  # nothing written
    other = ntengine.compile(fixtures_dir / "v2_tiny", backend="torch")  # other kernels: other bytes
    with pytest.raises(StoreError, match=r"\(model differ\)"):
        embed_genome(other, fasta, tmp_path / "s.zarr", **args)
    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w").create_array("x", shape=(3,), dtype="int8")
    with pytest.raises(StoreError, match="ntengine did not write"):
        embed_genome(engine, fasta, tmp_path / "foreign.zarr", **args)
    (tmp_path / "junk.zarr").mkdir()
    (tmp_path / "junk.zarr" / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError, match="not a readable zarr store"):
        embed_genome(engine, fasta, tmp_path / "junk.zarr", **args)


def test_kill_9_then_resume_gives_identical_bytes(fixtures_dir, shared_data, tmp_path):
    fasta = shared_data / "genomes" / "human_hg38_chr2_1-2333275.fa.gz"
    shutil.copy(fasta, tmp_path)
    for suffix in (".fai", ".gzi"):
        shutil.copy(str(fasta) + suffix, tmp_path)
    fasta = tmp_path / fasta.name
    cmd = [sys.executable, "-m", "ntengine.cli", "embed", str(fixtures_dir / "v2_tiny"), str(fasta), "--regions",
           "chr2:1-400000", "--window", "1800", "--chunk-windows", "2", "--token-embeddings", "2", "--bigwig"]
    subprocess.run(cmd + [str(tmp_path / "bw_ref"), "-o", str(tmp_path / "ref.zarr"), "-q"], check=True)
    out = tmp_path / "resumed.zarr"
    proc = subprocess.Popen(cmd + [str(tmp_path / "bw"), "-o", str(out), "-q"], stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once some, not all, chunks are committed
        done = zarr.open_group(str(out), mode="r")["_ntengine/chunk_done"][:] if (out / "zarr.json").exists() else []
        if 3 <= sum(done) < len(done) - 10:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = int(sum(zarr.open_group(str(out), mode="r")["_ntengine/chunk_done"][:]))
    assert 0 < committed < 112
    result = subprocess.run(cmd + [str(tmp_path / "bw"), "-o", str(out), "--progress", "off"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert f"{112 - committed} chunks run" in result.stderr
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref.zarr")
    assert tree_bytes(tmp_path / "bw") == tree_bytes(tmp_path / "bw_ref")


def test_ray_two_workers_equal_local(fixtures_dir, shared_data, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray jobs need `pip install 'ntengine[ray]'`")
    fasta = shared_data / "genomes" / "lambda_phage_NC_001416.1.fa"
    shutil.copy(fasta, tmp_path)
    fasta = tmp_path / fasta.name
    args = dict(settings=EmbedSettings(window=1200, chunk_windows=4, token_embeddings=2), bigwig=None, progress=False)
    embed_genome(fixtures_dir / "v2_tiny", fasta, tmp_path / "local.zarr", **args)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        summary = embed_genome(fixtures_dir / "v2_tiny", fasta, tmp_path / "ray.zarr", ray="", workers=2, **args)
    finally:
        ray.shutdown()
    assert summary["chunks_run"] == 11
    assert tree_bytes(tmp_path / "ray.zarr") == tree_bytes(tmp_path / "local.zarr")


def test_bigwig_tracks_are_token_scores_averaged_over_windows(engine, shared_data, tmp_path):
    import pyBigWig

    fasta = shared_data / "genomes" / "sars_cov_2_NC_045512v2.fa"
    genome = genome_of(fasta)
    s = embed_genome(engine, fasta, tmp_path / "t.zarr", EmbedSettings(window=1200, stride=900), bigwig=tmp_path / "bw",
                     regions=["NC_045512v2:1-5000"], progress=False)
    assert sorted(p.rsplit("/", 1)[1] for p in s["bigwig"]) == ["entropy.bw", "logprob.bw"]
    starts = list(range(0, 5000, 900))[:-1]  # 0, 900, ..., 3600 (the window at 3600 reaches 4800)
    starts += [4500] if starts[-1] + 1200 < 5000 else []
    sums, counts = np.zeros((2, 5000)), np.zeros(5000)
    for a in starts:
        b = min(a + 1200, 5000)
        ids, offsets = engine.tokenizer.encode_with_offsets(genome[a:b])
        logits = engine.logits([genome[a:b]])[0].astype(np.float64)
        logp = logits - logits.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        entropy = -(np.exp(logp) * logp).sum(1)
        for t in range(1, len(ids)):
            lo, hi = a + offsets[t, 0], a + offsets[t, 1]
            sums[0, lo:hi] += logp[t, ids[t]]
            sums[1, lo:hi] += entropy[t]
            counts[lo:hi] += 1
    assert (counts > 0).all() and counts.max() == 2
    for i, track in enumerate(("logprob", "entropy")):
        bw = pyBigWig.open(str(tmp_path / "bw" / f"{track}.bw"))
        assert bw.chroms() == {"NC_045512v2": 29903}
        got = np.array(bw.values("NC_045512v2", 0, 5000))
        np.testing.assert_allclose(got, sums[i] / counts, rtol=1e-5, atol=1e-5)
        assert np.isnan(bw.values("NC_045512v2", 5000, 5010)).all()  # outside the job: no value


def test_progress_moves_per_batch_not_per_chunk(engine, shared_data, tmp_path, monkeypatch):
    """The bar used to sit at 0% for a whole 32-window chunk: it now moves after every
    batch, and the updates of each chunk add up to its bases exactly."""
    from ntengine.genome import job
    from ntengine.genome.windows import plan_spans

    fasta = shared_data / "genomes" / "lambda_phage_NC_001416.1.fa"
    record = next(read_records(fasta))
    updates, real = [], job.run_chunks
    monkeypatch.setattr(job, "run_chunks", lambda spec, eng, todo, on_done: real(
        spec, eng, todo, lambda c, bp: (updates.append((c, bp)), on_done(c, bp))))
    s = embed_genome(engine, fasta, tmp_path / "p.zarr", EmbedSettings(window=1200, batch_size=4, chunk_windows=16),
                     progress=False)
    windows = plan_spans([(record.name, 0, len(record.sequence))], 1200)
    assert len(windows) == s["windows"] == 41
    assert len(updates) >= 41 // 4 + 3  # one per batch of 4 windows, plus each of the 3 chunks' commit
    per_chunk: dict = {}
    for c, bp in updates:
        assert bp >= 0
        per_chunk[c] = per_chunk.get(c, 0) + bp
    assert per_chunk == {c: sum(w.end - w.start for w in windows[c * 16:(c + 1) * 16]) for c in range(3)}


def test_rename_names_the_outputs_as_a_genome_browser_does(fixtures_dir, shared_data, tmp_path, capsys):
    """lambda's NCBI header `gi|9626243|ref|NC_001416.1|` becomes NC_001416.1 in the store
    and the bigWig tracks; regions may use either name."""
    import pyBigWig

    from ntengine.cli import main

    fasta, ckpt = shared_data / "genomes" / "lambda_phage_NC_001416.1.fa", str(fixtures_dir / "v2_tiny")
    gi = "gi|9626243|ref|NC_001416.1|"
    assert main(["embed", ckpt, str(fasta), "-o", str(tmp_path / "a.zarr"), "--window", "1200", "--regions",
                 "NC_001416.1:1-6000", "--rename", f"{gi}=NC_001416.1", "--bigwig", str(tmp_path / "bw"), "-q"]) == 0
    g = store(tmp_path / "a.zarr")
    assert set(g["record"][:]) == {"NC_001416.1"} and g.attrs["ntengine"]["records"] == ["NC_001416.1"]
    assert g.attrs["ntengine"]["renamed"] == {gi: "NC_001416.1"}
    with pyBigWig.open(str(tmp_path / "bw" / "logprob.bw")) as bw:
        assert bw.chroms() == {"NC_001416.1": 48502} and not np.isnan(bw.values("NC_001416.1", 0, 6000)).any()
    aliases = tmp_path / "aliases.txt"
    aliases.write_text(f"# FASTA name\tbrowser name\n{gi}\tlambda\n")
    assert main(["embed", ckpt, str(fasta), "-o", str(tmp_path / "b.zarr"), "--window", "1200", "--regions",
                 f"{gi}:1-2400", "--rename", str(aliases), "-q"]) == 0
    assert list(store(tmp_path / "b.zarr")["record"][:]) == ["lambda", "lambda"]
    assert main(["embed", ckpt, str(fasta), "-o", str(tmp_path / "c.zarr"), "--rename", "chr1=1", "-q"]) == 2
    assert "rename: no record named 'chr1' in the FASTA (it has gi|9626243|ref|NC_001416.1|)" in capsys.readouterr().err
    aliases.write_text(f"{gi}\n")
    assert main(["embed", ckpt, str(fasta), "-o", str(tmp_path / "d.zarr"), "--rename", str(aliases), "-q"]) == 2
    assert "aliases.txt: line 1: expected FROM TO" in capsys.readouterr().err

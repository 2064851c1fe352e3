"""`ntengine scan` on real genomes: its files against the per-window LLRs averaged by hand
and against the definition SNV by SNV, score-variants reading them, N gaps, resume after
kill -9, Ray, and the errors users meet.

The model is the v2 fixture (2 layers x 32, context 2,048 tokens); `window_llr` itself is
proven against the direct definition in test_snv_llr.py.
"""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

import ntengine
from ntengine.genome.fasta import read_records, reverse_complement
from ntengine.genome.job import embed_genome
from ntengine.genome.scan import STORE, scan_genome
from ntengine.genome.settings import EmbedSettings
from ntengine.genome.snv_llr import BASES, both_strands_llr, mask_passes, window_llr
from ntengine.genome.snv_outputs import write_outputs
from ntengine.genome.windows import plan_spans
from ntengine.variants.scoring import ScoreSettings
from ntengine.variants.vcf import score_variants
from test_snv_llr import direct_llr

CHRM = "human_chrM_rCRS_NC_012920.fasta"


@pytest.fixture(scope="module")
def engine(fixtures_dir):
    return ntengine.compile(fixtures_dir / "v2_tiny")


@pytest.fixture(scope="module")
def chrM(shared_data):
    return next(read_records(shared_data / "genomes" / CHRM)).sequence


def tree_bytes(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def averaged(engine, genome: str, lo: int, hi: int, window: int, stride: int, every: int) -> np.ndarray:
    """[hi - lo, 4]: the mean of window_llr over the planned windows covering each base."""
    total, count = np.zeros((hi - lo, 4)), np.zeros(hi - lo)
    for w in plan_spans([("chrM", lo, hi)], window, stride):
        llr = window_llr(engine, genome[w.start:w.end], every).astype(np.float64)
        ok = np.isfinite(llr).all(1)
        total[w.start - lo:w.end - lo][ok] += llr[ok]
        count[w.start - lo:w.end - lo] += ok
    with np.errstate(invalid="ignore"):
        return total / count[:, None]


def test_files_hold_the_window_llrs_averaged_over_overlaps(engine, shared_data, chrM, tmp_path):
    import pyBigWig

    lo, hi = 2500, 4000  # rCRS's N at 3,107 inside; windows of 1,200 every 900 bp overlap
    s = scan_genome(engine, shared_data / "genomes" / CHRM, tmp_path / "scan",
                    EmbedSettings(window=1200, stride=900, snv_every=7, chunk_windows=1),
                    formats=("bigwig", "parquet", "zarr"), regions=[f"chrM:{lo + 1}-{hi}"], progress=False)
    assert s["windows"] == 2 and s["chunks_run"] == 2
    want = averaged(engine, chrM, lo, hi, 1200, 900, 7)
    ref = np.array([BASES.find(c) for c in chrM[lo:hi]])
    scored = ref >= 0
    assert (~scored).sum() == 1 and np.isnan(want[~scored]).all() and np.isfinite(want[scored]).all()

    table = pq.read_table(tmp_path / "scan" / "llr.parquet")
    assert table.schema.names == ["chrom", "pos", "ref", "alt", "llr"]
    rows = table.to_pydict()
    assert len(rows["pos"]) == 3 * scored.sum()  # three alternatives of every A/C/G/T base, none at the N
    assert set(rows["chrom"]) == {"chrM"} and 3107 not in rows["pos"]
    keys = list(zip(rows["pos"], rows["alt"]))
    assert keys == sorted(keys, key=lambda k: (k[0], BASES.index(k[1])))  # sorted by pos, then alt
    pos = np.array(rows["pos"]) - 1 - lo
    alt = np.array([BASES.index(a) for a in rows["alt"]])
    assert all(chrM[lo + p] == r for p, r in zip(pos, rows["ref"])) and (alt != ref[pos]).all()
    np.testing.assert_allclose(rows["llr"], want[pos, alt], rtol=1e-6, atol=1e-6)

    scores = zarr.open_group(str(tmp_path / "scan" / "llr.zarr"), mode="r")
    assert scores.attrs["ntengine"]["records"] == [["chrM", 0, 16569]]
    np.testing.assert_allclose(scores["llr"][lo:hi], want, rtol=1e-6, atol=1e-6)  # NaN where want is NaN
    assert np.isnan(scores["llr"][:lo]).all() and (scores["ref"][lo:hi][scored] == np.frombuffer(
        chrM[lo:hi].encode(), np.uint8)[scored]).all()

    for b, base in enumerate(BASES):
        track = np.array(pyBigWig.open(str(tmp_path / "scan" / f"llr_{base}.bw")).values("chrM", lo, hi))
        np.testing.assert_allclose(track, np.where(ref == b, np.nan, want[:, b]), rtol=1e-6, atol=1e-6)
    bw = pyBigWig.open(str(tmp_path / "scan" / "llr_max_abs.bw"))
    assert bw.chroms() == {"chrM": 16569} and np.isnan(bw.values("chrM", lo - 10, lo)).all()
    max_abs = np.where(scored, np.abs(np.where(ref[:, None] == np.arange(4), 0, np.nan_to_num(want))).max(1), np.nan)
    np.testing.assert_allclose(bw.values("chrM", lo, hi), max_abs, rtol=1e-6, atol=1e-6)


def test_a_window_equals_the_definition_snv_by_snv(engine, shared_data, chrM, tmp_path):
    """No stride overlap: the parquet rows of one window are the direct computation (the
    mutated window tokenised on its own, the same tokens masked, the log-softmax)."""
    scan_genome(engine, shared_data / "genomes" / CHRM, tmp_path / "scan", EmbedSettings(window=240, snv_every=7),
                formats=("parquet",), regions=["chrM:3001-3240"], progress=False)
    seq = chrM[3000:3240]
    ids, _ = engine.tokenizer.encode_with_offsets(seq)
    passes = mask_passes(engine.nucleotide_mask(ids[None])[0], 7)
    want = direct_llr(engine, seq, {int(t): set(p.tolist()) for p in passes for t in p})
    rows = pq.read_table(tmp_path / "scan" / "llr.parquet").to_pydict()
    got = {(p - 3001, BASES.index(a)): v for p, a, v in zip(rows["pos"], rows["alt"], rows["llr"])}
    expected = {(i, b): want[i, b] for i in range(240) for b in range(4) if np.isfinite(want[i, b])
                and BASES[b] != seq[i]}
    assert got.keys() == expected.keys() and len(got) == 3 * 239  # the N at 3,107 has none
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=0, atol=2e-5)


def test_one_mask_per_pass_equals_score_variants(engine, shared_data, tmp_path):
    """k = the window's tokens and the scan window where score-variants puts its window (a
    record's start, for variants in its first half window): the same LLR, read from the
    scan or computed by score-variants."""
    fasta, vcf = shared_data / "genomes" / CHRM, shared_data / "variants" / "human_chrM_1000g_mutserve_nobaq.vcf.gz"
    scan_genome(engine, fasta, tmp_path / "scan", EmbedSettings(window=600, snv_every=101), formats=("parquet",),
                regions=["chrM:1-600"], progress=False)
    settings = ScoreSettings(window=600)
    run = dict(regions=["chrM:1-300"], progress=False)
    score_variants(engine, vcf, fasta, tmp_path / "model.vcf", settings, tsv=tmp_path / "model.tsv", **run)
    s = score_variants(None, vcf, fasta, tmp_path / "scan.vcf", settings, tsv=tmp_path / "scan.tsv",
                       scan=tmp_path / "scan", **run)
    model, scan = (list(csv.DictReader((tmp_path / f"{n}.tsv").read_text().splitlines(), delimiter="\t"))
                   for n in ("model", "scan"))
    assert [(r["pos"], r["alt"]) for r in model] == [(r["pos"], r["alt"]) for r in scan]
    snvs = [(m, x) for m, x in zip(model, scan) if len(m["ref"]) == len(m["alt"]) == 1 and m["status"] == "scored"]
    assert len(snvs) >= 20 and all(x["status"] == "scored" for _, x in snvs)
    np.testing.assert_allclose([float(x["llr"]) for _, x in snvs], [float(m["llr"]) for m, _ in snvs],
                               rtol=2e-5, atol=2e-5)  # the TSV's 6 significant digits
    others = [x for m, x in zip(model, scan) if len(m["ref"]) != 1 or len(m["alt"]) != 1]
    assert others and {x["status"] for x in others} <= {"not_snv", "spanning_deletion"}
    assert all(x["logit_diff"] == "" for x in scan)  # a scan holds the LLR only
    assert s["scored"] == len(snvs)


def test_n_overflow_is_scanned_in_pieces_not_dropped(engine, shared_data, chrM, tmp_path):
    """A full-context window holding an N has more tokens than the model takes: its tail
    is scanned as a second piece, so every A/C/G/T base still has its scores."""
    s = scan_genome(engine, shared_data / "genomes" / CHRM, tmp_path / "scan", EmbedSettings(snv_every=7),
                    formats=("zarr",), regions=["chrM:1-12282"], progress=False)
    assert s["windows"] == 1 and s["shortened"] == 1
    llr = zarr.open_group(str(tmp_path / "scan" / "llr.zarr"), mode="r")["llr"][:12282]
    assert np.isnan(llr[3106]).all() and np.isfinite(np.delete(llr, 3106, 0)).all()
    first = engine.tokenizer.batch_encode([chrM[:12282]], truncation=True)
    cut = int(first.offsets[0, 2047, 1])
    assert cut < 12282
    np.testing.assert_allclose(llr[cut:], window_llr(engine, chrM[cut:12282], 7), rtol=1e-6, atol=1e-6)


def test_both_strands_average_the_reverse_complement_mapped_back(engine, chrM):
    seq = chrM[5000:5200]
    forward, reverse = window_llr(engine, seq, 7), window_llr(engine, reverse_complement(seq), 7)
    complement = {"A": "T", "C": "G", "G": "C", "T": "A"}
    got = both_strands_llr(engine, seq, 7)
    for i in range(0, 200, 7):
        for b, base in enumerate(BASES):  # base i -> alt on this strand is L-1-i -> complement on the other
            want = (forward[i, b] + reverse[199 - i, BASES.index(complement[base])]) / 2
            assert got[i, b] == pytest.approx(want, abs=1e-6)


def test_parquet_row_groups_are_sorted_indexable_pieces(engine, shared_data, tmp_path):
    fasta = shared_data / "genomes" / "lambda_phage_NC_001416.1.fa"
    scan_genome(engine, fasta, tmp_path / "scan", EmbedSettings(window=1200, snv_every=7), formats=("parquet",),
                regions=["gi|9626243|ref|NC_001416.1|:1-6000"], rename={"gi|9626243|ref|NC_001416.1|": "lambda"},
                progress=False)
    group = zarr.open_group(str(tmp_path / "scan" / STORE), mode="r")
    write_outputs(group, tmp_path / "small", ("parquet",), block=1000)  # the default is 1 Mb per row group
    whole = pq.read_table(tmp_path / "scan" / "llr.parquet")
    assert pq.read_table(tmp_path / "small" / "llr.parquet").equals(whole)
    meta = pq.ParquetFile(tmp_path / "small" / "llr.parquet").metadata
    assert meta.num_row_groups == 6 and set(whole.column("chrom").to_pylist()) == {"lambda"}
    bounds = [(meta.row_group(g).column(1).statistics.min, meta.row_group(g).column(1).statistics.max)
              for g in range(6)]
    assert bounds == [(1000 * g + 1, 1000 * (g + 1)) for g in range(6)]
    assert [c.column_index for c in meta.row_group(0).sorting_columns] == [0, 1, 3]
    region = pq.read_table(tmp_path / "small" / "llr.parquet", filters=[("pos", ">=", 2500), ("pos", "<=", 2600)])
    assert region.num_rows == 3 * 101 and region.column("pos").to_pylist()[0] == 2500


def test_kill_9_then_resume_gives_identical_bytes(fixtures_dir, shared_data, tmp_path):
    fasta = shared_data / "genomes" / "human_hg38_chr2_1-2333275.fa.gz"
    for suffix in ("", ".fai", ".gzi"):
        shutil.copy(f"{fasta}{suffix}", tmp_path)
    fasta = tmp_path / fasta.name
    cmd = [sys.executable, "-m", "ntengine.cli", "scan", str(fixtures_dir / "v2_tiny"), str(fasta), "--regions",
           "chr2:1-90000", "--window", "1800", "--chunk-windows", "1", "--format", "bigwig,parquet,zarr"]
    subprocess.run(cmd + ["-o", str(tmp_path / "ref"), "-q"], check=True)
    out = tmp_path / "resumed"
    proc = subprocess.Popen(cmd + ["-o", str(out), "-q"], stderr=subprocess.DEVNULL)
    done_flags = out / STORE / "_ntengine" / "chunk_done"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once some, not all, of the 45 windows with bases are committed
        done = zarr.open_group(str(out / STORE), mode="r")["_ntengine/chunk_done"][:] if done_flags.exists() else []
        if 8 <= sum(done) < len(done) - 15:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = int(sum(zarr.open_group(str(out / STORE), mode="r")["_ntengine/chunk_done"][:]))
    assert 0 < committed < 50
    result = subprocess.run(cmd + ["-o", str(out), "--progress", "off"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{50 - committed} chunks run" in result.stderr
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")
    assert not list(tmp_path.glob("*.lock")) and not list(out.rglob("*partial*"))


def test_ray_two_workers_equal_local(fixtures_dir, shared_data, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray jobs need `pip install 'ntengine[ray]'`")
    fasta = shared_data / "genomes" / "lambda_phage_NC_001416.1.fa"
    args = dict(settings=EmbedSettings(window=1200, stride=1000, snv_every=7, chunk_windows=2),
                formats=("bigwig", "parquet"), regions=["gi|9626243|ref|NC_001416.1|:1-12000"], progress=False)
    scan_genome(fixtures_dir / "v2_tiny", fasta, tmp_path / "local", **args)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        summary = scan_genome(fixtures_dir / "v2_tiny", fasta, tmp_path / "ray", ray="", workers=2, **args)
    finally:
        ray.shutdown()
    assert summary["chunks_run"] == 6
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "local")


def test_errors_name_what_is_wrong(engine, fixtures_dir, shared_data, tmp_path):
    chrm, lam = shared_data / "genomes" / CHRM, shared_data / "genomes" / "lambda_phage_NC_001416.1.fa"
    vcf = shared_data / "variants" / "human_chrM_1000g_mutserve_nobaq.vcf.gz"
    scan_genome(engine, lam, tmp_path / "lambda", EmbedSettings(window=600, snv_every=7, max_windows=1),
                formats=(), progress=False)
    with pytest.raises(ValueError, match="scanned another genome"):
        score_variants(None, vcf, chrm, tmp_path / "x.vcf", scan=tmp_path / "lambda", progress=False)
    with pytest.raises(ValueError, match="not a scan"):
        score_variants(None, vcf, chrm, tmp_path / "x.vcf", scan=tmp_path, progress=False)
    with pytest.raises(ValueError, match="not both"):
        score_variants(engine, vcf, chrm, tmp_path / "x.vcf", scan=tmp_path / "lambda", progress=False)
    embed_genome(engine, lam, tmp_path / "emb" / STORE, EmbedSettings(window=600, max_windows=1), progress=False)
    with pytest.raises(ValueError, match="not a scan: this genome store holds embeddings"):
        score_variants(None, vcf, lam, tmp_path / "x.vcf", scan=tmp_path / "emb", progress=False)
    with pytest.raises(ValueError, match="unknown output format 'bed'"):
        write_outputs(zarr.open_group(str(tmp_path / "lambda" / STORE), mode="r"), tmp_path / "f", ("bed",))
    with pytest.raises(ValueError, match="stores LLRs only"):
        EmbedSettings(snv_every=7, token_embeddings=1)
    cli = [sys.executable, "-m", "ntengine.cli"]
    bad = subprocess.run(cli + ["scan", str(fixtures_dir / "v2_tiny"), str(lam), "-o", str(tmp_path / "o"),
                                "--format", "bigwig,csv"], capture_output=True, text=True)
    assert bad.returncode == 2 and "a comma-separated list of bigwig, parquet, zarr" in bad.stderr
    neither = subprocess.run(cli + ["score-variants", "--vcf", str(vcf), "--fasta", str(chrm), "-o",
                                    str(tmp_path / "y.vcf")], capture_output=True, text=True)
    assert neither.returncode != 0 and "give a checkpoint, or --scan OUT" in neither.stderr

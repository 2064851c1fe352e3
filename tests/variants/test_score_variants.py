"""Zero-shot variant scoring on the real VCFs in shared/data/variants and their genomes.

The model is the v2 fixture; windows are 600 bp (100 six-mers) to keep runs short.
"""

import csv

import numpy as np
import pysam
import pytest

import ntengine
from ntengine.cli import main
from ntengine.genome.fasta import read_records
from ntengine.variants.scoring import SCORES, AlleleTask, Scorer, ScoreSettings
from ntengine.variants.vcf import INFO, score_variants
from ntengine.variants.windows import build_windows, ref_window_start, token_at

WINDOW = 600
HEADER = ("##fileformat=VCFv4.2\n##INFO=<ID=END,Number=1,Type=Integer,Description=\"End\">\n"
          "##ALT=<ID=DEL,Description=\"Deletion\">\n##contig=<ID={chrom},length={length}>\n"
          "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")


@pytest.fixture(scope="module")
def engine(fixtures_dir):
    return ntengine.compile(fixtures_dir / "v2_tiny")


@pytest.fixture(scope="module")
def sars(shared_data):
    fasta = shared_data / "genomes" / "sars_cov_2_NC_045512v2.fa"
    return fasta, next(read_records(fasta)).sequence


def write_vcf(path, chrom, length, rows):
    """rows: (pos 1-based, ref, alt[, info]) -> a minimal VCF."""
    text = HEADER.format(chrom=chrom, length=length)
    text += "".join(f"{chrom}\t{r[0]}\t.\t{r[1]}\t{r[2]}\t.\t.\t{r[3] if len(r) > 3 else '.'}\n" for r in rows)
    path.write_text(text)
    return path


def table(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def scores_of(rows):
    return np.array([[float(r[c]) for c in SCORES] for r in rows])


def test_real_vcf_every_record_kept_and_scored(engine, sars, shared_data, tmp_path):
    fasta, _ = sars
    vcf = shared_data / "variants" / "sars_cov_2_usher_global_samples.vcf"
    out, tsv = tmp_path / "out.vcf.gz", tmp_path / "out.tsv"
    s = score_variants(engine, vcf, fasta, out, ScoreSettings(window=WINDOW, block_records=128), tsv=tsv,
                       progress=False)
    assert s["records"] == 423 and s["ref_mismatch_records"] == 0 and s["scored"] == s["alleles"] == 442
    assert s["windows_computed"] + s["masked_computed"] < s["windows_requested"] + s["masked_requested"]
    with pysam.VariantFile(str(vcf)) as a, pysam.VariantFile(str(out)) as b:
        for info_id in INFO:
            assert b.header.info[info_id].number == "A" and b.header.info[info_id].type == "Float"
        pairs = list(zip(a, b, strict=True))
        assert [(x.pos, x.ref, x.alts) for x, _ in pairs] == [(y.pos, y.ref, y.alts) for _, y in pairs]
        assert all(len(y.info["NT_LLR"]) == len(y.alts) for _, y in pairs)
        assert len(b.header.samples) == 422  # genotypes kept
    rows = table(tsv)
    assert len(rows) == 442 and {r["status"] for r in rows} == {"scored"}
    values = scores_of(rows)
    assert np.isfinite(values).all() and (values[:, SCORES.index("cosine")] <= 1 + 1e-9).all()


def test_chrm_skips_star_alleles_and_scores_indels_at_fixed_length(engine, shared_data, tmp_path):
    fasta = shared_data / "genomes" / "human_chrM_rCRS_NC_012920.fasta"
    genome = next(read_records(fasta)).sequence
    src = shared_data / "variants" / "human_chrM_1000g_mutserve_nobaq.vcf.gz"
    subset = tmp_path / "subset.vcf.gz"
    stars = indels = 0
    with pysam.VariantFile(str(src)) as reader, pysam.VariantFile(str(subset), "wz", header=reader.header) as w:
        for i, rec in enumerate(reader):
            star = "*" in rec.alts
            indel = any(a != "*" and len(a) != len(rec.ref) for a in rec.alts)
            if (star and stars < 6) or (indel and indels < 8) or i < 10:
                stars += rec.alts.count("*") if star else 0
                indels += indel
                w.write(rec)
    out = tmp_path / "chrm.vcf"
    s = score_variants(engine, subset, fasta, out, ScoreSettings(window=WINDOW), tsv=tmp_path / "chrm.tsv",
                       progress=False)
    assert s["skipped"] == {"spanning_deletion": stars} and s["ref_mismatch_records"] == 0
    rows = table(tmp_path / "chrm.tsv")
    indel_rows = [r for r in rows if r["alt"] != "*" and len(r["alt"]) != len(r["ref"])]
    assert len(indel_rows) >= 8 and all(r["status"] == "scored" for r in indel_rows)
    for r in indel_rows:
        w = build_windows(lambda c, a, b: genome[a:b], "chrM", int(r["pos"]) - 1, r["ref"], r["alt"], len(genome),
                          WINDOW)
        assert len(w.alt) == len(w.ref) == WINDOW
        assert w.alt[:w.offset] == w.ref[:w.offset] and w.alt[w.offset:].startswith(r["alt"])
    with pysam.VariantFile(str(out)) as b:
        star_recs = [rec for rec in b if "*" in rec.alts]
    for rec in star_recs:
        i = rec.alts.index("*")
        assert rec.info["NT_SKIP"][i] == "spanning_deletion" and rec.info["NT_LLR"][i] is None


def test_ref_mismatch_is_flagged_not_scored_not_fatal(engine, sars, tmp_path):
    fasta, genome = sars
    assert genome[240] == "C"
    rows = [(241, "C", "T"), (3037, "A", "G"), (500, genome[499], "A")]  # 3037 is C in this genome
    assert genome[3036] != "A"
    vcf = write_vcf(tmp_path / "m.vcf", "NC_045512v2", len(genome), rows)
    s = score_variants(engine, vcf, fasta, tmp_path / "o.vcf", ScoreSettings(window=WINDOW), progress=False)
    assert s["ref_mismatch_records"] == 1 and s["skipped"] == {"ref_mismatch": 1} and s["scored"] == 2
    with pysam.VariantFile(str(tmp_path / "o.vcf")) as b:
        recs = list(b)
    assert [list(r.filter) for r in recs] == [[], ["NT_REF_MISMATCH"], []]
    assert recs[1].info["NT_LLR"] == (None,) and recs[1].info["NT_SKIP"] == ("ref_mismatch",)


def test_alt_equal_to_ref_scores_zero(engine, sars, tmp_path):
    fasta, genome = sars
    vcf = write_vcf(tmp_path / "same.vcf", "NC_045512v2", len(genome), [(1000, genome[999], genome[999])])
    score_variants(engine, vcf, fasta, tmp_path / "o.vcf", ScoreSettings(window=WINDOW, both_strands=True),
                   tsv=tmp_path / "o.tsv", progress=False)
    row = dict(zip(SCORES, scores_of(table(tmp_path / "o.tsv"))[0]))
    for name in ("llr", "logit_diff", "l1", "l2", "token_l1", "token_l2"):
        assert row[name] == 0, name
    assert row["cosine"] == pytest.approx(1, abs=1e-6) and row["token_cosine"] == pytest.approx(1, abs=1e-6)


def test_swapping_ref_and_alt_negates_the_llr(engine, sars, tmp_path):
    _, genome = sars
    pos, alt = 15000, "G" if genome[14999] != "G" else "A"
    ref = genome[14999]
    mutated = genome[:14999] + alt + genome[15000:]
    for name, seq in (("ref.fa", genome), ("alt.fa", mutated)):
        (tmp_path / name).write_text(f">NC_045512v2\n{seq}\n")
    write_vcf(tmp_path / "fwd.vcf", "NC_045512v2", len(genome), [(pos, ref, alt)])
    write_vcf(tmp_path / "rev.vcf", "NC_045512v2", len(genome), [(pos, alt, ref)])
    results = []
    for vcf, fa in (("fwd.vcf", "ref.fa"), ("rev.vcf", "alt.fa")):
        score_variants(engine, tmp_path / vcf, tmp_path / fa, tmp_path / f"{vcf}.out",
                       ScoreSettings(window=WINDOW, both_strands=True), tsv=tmp_path / f"{vcf}.tsv", progress=False)
        results.append(dict(zip(SCORES, scores_of(table(tmp_path / f"{vcf}.tsv"))[0])))
    a, b = results
    assert a["llr"] != 0 and b["llr"] == pytest.approx(-a["llr"], abs=1e-4)
    assert b["logit_diff"] == pytest.approx(-a["logit_diff"], abs=1e-4)
    for name in ("l1", "l2", "cosine", "dot"):  # symmetric in ref and alt
        assert b[name] == pytest.approx(a[name], rel=1e-4), name


def test_llr_matches_a_direct_masked_forward(engine, sars):
    _, genome = sars
    pos = 2000
    fetch = lambda c, a, b: genome[a:b]  # noqa: E731
    alt = "T" if genome[pos] != "T" else "C"
    task = AlleleTask("x", pos, genome[pos], alt, len(genome))
    got = Scorer(engine, fetch, ScoreSettings(window=WINDOW)).score([task])[0]
    start = ref_window_start(pos, len(genome), WINDOW)
    window = genome[start:start + WINDOW]
    ids, offsets = engine.tokenizer.encode_with_offsets(window)
    k = token_at(offsets, len(ids), pos - start)
    assert k == 51 and offsets[k].tolist() == [300, 306]  # 600 bp: the variant is base 300, 4th of 6-mer 50
    masked = ids.copy()
    masked[k] = engine.tokenizer.mask_id
    logits = engine.forward(masked[None])["logits"][0, k].astype(np.float64)
    logp = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
    alt_window = window[:pos - start] + alt + window[pos - start + 1:]
    alt_id = engine.tokenizer.encode(alt_window)[k]
    assert got[SCORES.index("llr")] == pytest.approx(logp[alt_id] - logp[ids[k]], abs=1e-6)
    # without sharing, the same numbers
    again = Scorer(engine, fetch, ScoreSettings(window=WINDOW, share_reference=False)).score([task])
    np.testing.assert_allclose(again[0], got, rtol=1e-5, atol=1e-6)


def test_cli_and_errors(fixtures_dir, sars, tmp_path, capsys):
    fasta, genome = sars
    rows = [(100, genome[99], "<DEL>", "END=150"), (200, genome[199], "A")]
    vcf = write_vcf(tmp_path / "v.vcf", "NC_045512v2", len(genome), rows)
    assert main(["score-variants", str(fixtures_dir / "v2_tiny"), "--vcf", str(vcf), "--fasta", str(fasta), "-o",
                 str(tmp_path / "o.vcf.gz"), "--window", "600", "--progress", "off"]) == 0
    assert "2 records, 2 alleles: 1 scored; skipped: 1 symbolic" in capsys.readouterr().err
    assert main(["score-variants", str(fixtures_dir / "v2_tiny"), "--vcf", str(vcf), "--fasta", str(fasta), "-o",
                 str(tmp_path / "o.vcf"), "--window", "99999", "-q"]) == 2
    assert "window must be 1..12282 bp" in capsys.readouterr().err
    (tmp_path / "junk.vcf").write_text("not a vcf\n")
    assert main(["score-variants", str(fixtures_dir / "v2_tiny"), "--vcf", str(tmp_path / "junk.vcf"), "--fasta",
                 str(fasta), "-o", str(tmp_path / "o2.vcf"), "-q"]) == 2
    assert "not a readable VCF" in capsys.readouterr().err

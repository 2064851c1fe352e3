"""Variant scoring on real inputs with their warts: N gaps (hg38 chr2 starts with 10 kb of
N), IUPAC codes in the reference. Nothing here may abort a run that can be completed."""

import csv

import numpy as np
import pysam
import pytest

import ntengine
from ntengine.genome.fasta import read_records
from ntengine.variants.scoring import SCORES, ScoreSettings
from ntengine.variants.vcf import score_variants

CHR2 = "human_hg38_chr2_1-2333275.fa.gz"


@pytest.fixture(scope="module")
def engine(fixtures_dir):
    return ntengine.compile(fixtures_dir / "v2_tiny")  # 2,048-token context, like NT v2


def vcf_of(path, chrom, length, rows):
    """rows: (1-based pos, ref, alt) -> a minimal VCF."""
    path.write_text(f"##fileformat=VCFv4.2\n##contig=<ID={chrom},length={length}>\n"
                    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                    + "".join(f"{chrom}\t{p}\t.\t{r}\t{a}\t.\t.\t.\n" for p, r, a in rows))
    return path


def rows_of(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_a_vcf_across_the_chr2_n_gap_finishes(engine, shared_data, tmp_path):
    """Default 5,994 bp windows: at POS 10,500, 2,497 Ns + 3,497 bases are 3,080 tokens, more
    than the model takes (this aborted the whole run). Terminal N runs are trimmed; an allele
    inside the gap cannot fit and is skipped as n_gap; every record is written back in order."""
    fasta = shared_data / "genomes" / CHR2
    genome = pysam.FastaFile(str(fasta))
    positions = [5000, 9990, 10500, 12000, 20000]
    rows = []
    for pos in positions:
        ref = genome.fetch("chr2", pos - 1, pos)
        rows.append((pos, ref, "A" if ref.upper() != "A" else "C"))
    vcf = vcf_of(tmp_path / "gap.vcf", "chr2", genome.get_reference_length("chr2"), rows)
    s = score_variants(engine, vcf, fasta, tmp_path / "out.vcf", tsv=tmp_path / "out.tsv", progress=False)
    assert s["records"] == 5 and s["skipped"] == {"n_gap": 1} and s["scored"] == 4
    table = rows_of(tmp_path / "out.tsv")
    assert [int(r["pos"]) for r in table] == positions
    assert [r["status"] for r in table] == ["n_gap", "scored", "scored", "scored", "scored"]
    assert all(r[c] == "" for c in SCORES for r in table[:1])
    assert np.isfinite([[float(r[c]) for c in SCORES] for r in table[1:]]).all()
    with pysam.VariantFile(str(tmp_path / "out.vcf")) as out:
        assert [rec.pos for rec in out] == positions
    # A window that fits untouched (POS 12,000: 997 Ns + 4,997 bases) scores as it did alone.
    alone = score_variants(engine, vcf_of(tmp_path / "one.vcf", "chr2", genome.get_reference_length("chr2"),
                                          rows[3:4]), fasta, tmp_path / "one.vcf.out", tsv=tmp_path / "one.tsv",
                           progress=False)
    assert alone["scored"] == 1 and rows_of(tmp_path / "one.tsv")[0] == table[3]


def test_iupac_reference_bases_follow_invalid(engine, shared_data, tmp_path):
    source = shared_data / "genomes" / "sars_cov_2_NC_045512v2.fa"
    lines = source.read_text().splitlines()
    chrom = lines[0][1:].split()[0]
    seq = "".join(lines[1:])
    seq = seq[:3999] + "R" + seq[4000:]  # an IUPAC code 1 kb from the variant below
    fasta = tmp_path / "iupac.fa"
    fasta.write_text(f">{chrom}\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    ref = seq[4999]
    vcf = vcf_of(tmp_path / "v.vcf", chrom, len(seq), [(5000, ref, "A" if ref != "A" else "C")])
    with pytest.raises(ValueError, match=rf"{chrom}:4,000: reference base 'R' is not A/C/G/T/N.*invalid='N'"):
        score_variants(engine, vcf, fasta, tmp_path / "o.vcf", progress=False)
    assert not (tmp_path / "o.vcf").exists()
    s = score_variants(engine, vcf, fasta, tmp_path / "o.vcf", ScoreSettings(invalid="N"), progress=False)
    assert s["scored"] == 1 and s["skipped"] == {}


def test_insertions_are_scored_at_their_first_changed_base(engine, shared_data, tmp_path):
    """Real chrM insertions (1000 Genomes): scored at the VCF anchor's token they gave
    LLR = 0 exactly, the anchor's 6-mer being the same in both windows. Now the token is the
    one covering the first base where the windows differ, checked by a direct masked pass."""
    from ntengine.variants.scoring import AlleleTask, Scorer
    from ntengine.variants.windows import changed_base, token_at

    fasta = shared_data / "genomes" / "human_chrM_rCRS_NC_012920.fasta"
    genome = next(read_records(fasta)).sequence  # no pysam.FastaFile: it would write a .fai into ../shared
    with pysam.VariantFile(str(shared_data / "variants" / "human_chrM_1000g_mutserve_nobaq.vcf.gz")) as vcf:
        inserted = [(r.pos, r.ref, a) for r in vcf for a in r.alts or () if len(a) > len(r.ref) and a[0] != "<"][:8]
    assert len(inserted) == 8
    rows = vcf_of(tmp_path / "ins.vcf", "chrM", len(genome), inserted)
    s = score_variants(engine, rows, fasta, tmp_path / "o.vcf", ScoreSettings(window=600), tsv=tmp_path / "o.tsv",
                       progress=False)
    assert s["scored"] == 8
    llr = [float(r["llr"]) for r in rows_of(tmp_path / "o.tsv")]
    assert all(x != 0.0 for x in llr), llr
    pos, ref, alt = inserted[1]  # chrM:42 T>TC: the anchor T ends its 6-mer (window starts at 0)
    scorer = Scorer(engine, lambda c, a, b: genome[a:b], ScoreSettings(window=600))
    w = scorer.windows(AlleleTask("chrM", pos - 1, ref, alt, len(genome)))
    d = changed_base(w)
    assert d > w.offset
    ids, offsets = engine.tokenizer.encode_with_offsets(w.ref)
    alt_ids, alt_offsets = engine.tokenizer.encode_with_offsets(w.alt)
    k = token_at(offsets, len(ids), d)
    masked = ids.copy()
    masked[k] = engine.tokenizer.mask_id
    logits = engine.forward(masked[None])["logits"][0, k].astype(np.float64)
    logp = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
    want = logp[alt_ids[token_at(alt_offsets, len(alt_ids), d)]] - logp[ids[k]]
    assert llr[1] == pytest.approx(want, abs=1e-5) and want != 0


def _sars(shared_data):
    fasta = shared_data / "genomes" / "sars_cov_2_NC_045512v2.fa"
    lines = fasta.read_text().splitlines()
    return fasta, lines[0][1:].split()[0], "".join(lines[1:])


@pytest.mark.parametrize("case", ["undeclared_contig", "end_undeclared", "pos_0"])
def test_malformed_records_are_skipped_with_a_reason(fixtures_dir, shared_data, tmp_path, case, capsys):
    """As bcftools reads them: an undeclared contig is declared, an undeclared END is the
    spec's Integer END, POS 0 (the telomere position) is outside the contig. Each record
    comes back in order with NT_SKIP; the run exits 0."""
    from ntengine.cli import main

    fasta, chrom, seq = _sars(shared_data)
    head = f"##fileformat=VCFv4.2\n##contig=<ID={chrom},length={len(seq)}>\n"
    good = f"{chrom}\t100\t.\t{seq[99]}\tA\t.\t.\t.\n"
    odd, reason = {"undeclared_contig": ("chrX\t100\t.\tA\tC\t.\t.\t.\n", "contig_not_in_fasta"),
                   "end_undeclared": (f"{chrom}\t300\t.\t{seq[299]}\t<DEL>\t.\t.\tEND=400\n", "symbolic"),
                   "pos_0": (f"{chrom}\t0\t.\tN\tA\t.\t.\t.\n", "pos_outside_contig")}[case]
    if case == "end_undeclared":
        head += '##ALT=<ID=DEL,Description="Deletion">\n'
    vcf = tmp_path / "in.vcf"
    vcf.write_text(head + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + good + odd)
    assert main(["score-variants", str(fixtures_dir / "v2_tiny"), "--vcf", str(vcf), "--fasta", str(fasta),
                 "-o", str(tmp_path / "out.vcf"), "--tsv", str(tmp_path / "out.tsv"), "--window", "600",
                 "--quiet"]) == 0
    assert [r["status"] for r in rows_of(tmp_path / "out.tsv")] == ["scored", reason]
    with pysam.VariantFile(str(tmp_path / "out.vcf")) as out:
        assert [rec.info["NT_SKIP"] for rec in out] == [(".",), (reason,)]


def test_a_line_with_missing_columns_is_an_error_naming_the_record_before(fixtures_dir, shared_data, tmp_path,
                                                                          capsys):
    from ntengine.cli import main

    fasta, chrom, seq = _sars(shared_data)
    vcf = tmp_path / "in.vcf"
    vcf.write_text(f"##fileformat=VCFv4.2\n##contig=<ID={chrom},length={len(seq)}>\n"
                   "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"{chrom}\t100\t.\t{seq[99]}\tA\t.\t.\t.\n{chrom}\t300\t.\t{seq[299]}\n")
    code = main(["score-variants", str(fixtures_dir / "v2_tiny"), "--vcf", str(vcf), "--fasta", str(fasta),
                 "-o", str(tmp_path / "out.vcf"), "--window", "600", "--quiet"])
    assert code == 2
    assert f"in.vcf: malformed line after record 1 ({chrom}:100)" in capsys.readouterr().err
    assert not list(tmp_path.glob("out.vcf*"))  # found before any output was opened

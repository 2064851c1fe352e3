"""FASTA scanning: real genomes list right; malformed files fail naming record, line and column."""

import gzip

import pytest

from ntengine.genome.fasta import FastaError, fasta_index, open_sequences, parse_region, read_records, scan_fasta

GENOMES = {  # file -> (record, length, random access?)
    "phiX174_NC_001422.1.fasta.gz": ("NC_001422.1", 5386, False),  # plain gzip
    "lambda_phage_NC_001416.1.fa": ("gi|9626243|ref|NC_001416.1|", 48502, True),  # ends with an empty line
    "yeast_sacCer3_chrIV.fa": ("chrIV", 1531933, True),  # one 1.5 Mb line
    "human_hg38_chr2_1-2333275.fa.gz": ("chr2", 2333275, True),  # BGZF, soft-masked, N run
    "human_chrM_rCRS_NC_012920.fasta": ("chrM", 16569, True),
}


@pytest.mark.parametrize("name", GENOMES)
def test_real_genomes_scan_and_fetch(shared_data, name):
    path = shared_data / "genomes" / name  # read in place: indexes go to ntengine's cache
    scan = scan_fasta(path)
    record, length, indexable = GENOMES[name]
    assert [(r.name, r.length) for r in scan.records] == [(record, length)]
    assert scan.indexable == indexable
    whole = next(read_records(path)).sequence
    seqs = open_sequences(path, fasta_index(path, scan))
    for start, end in [(0, 100), (length - 77, length), (length // 2, length // 2 + 12282)]:
        assert seqs.fetch(record, start, end) == whole[start:end]
    seqs.close()


def write(path, text, compress=False):
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("text, message", [
    ("ACGT\n>a\nACGT\n", "line 1: sequence before the first '>' header"),
    (">a\nACGT\n>b\n>c\nACGT\n", r"record 'b' \(line 3\) has no sequence"),
    (">a\nACGT\nAC!T\n", r"line 3, column 3: invalid character '!' in record 'a', position 6"),
    (">a\nACGT\n>a\nAC\n", "line 3: duplicate record name 'a'"),
    (">a\nACGTRN\n", r"line 2, column 5: invalid character 'R'.*IUPAC code: pass invalid='N'"),
    ("", "no FASTA records"),
    (">\nACGT\n", "line 1: header without a name"),
])
def test_malformed_fasta(tmp_path, text, message):
    with pytest.raises(FastaError, match=message):
        scan_fasta(write(tmp_path / "bad.fa", text))


def test_iupac_allowed_on_request_and_crlf(tmp_path):
    scan = scan_fasta(write(tmp_path / "x.fa", ">a desc\r\nACGTRYn\r\nac\r\n"), allow_iupac=True)
    assert [(r.name, r.length) for r in scan.records] == [("a", 9)]


def test_truncated_gzip(shared_data, tmp_path):
    data = (shared_data / "genomes" / "ecoli_K12_MG1655_NC_000913.3.fna.gz").read_bytes()
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FastaError, match=r"cut.fa.gz: corrupt or truncated gzip stream: it ends after [\d,]+ bytes "
                                         r"of text \([1-9][\d,]* complete lines read in record 'NC_000913.3'\)"):
        scan_fasta(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such FASTA file"):
        scan_fasta(tmp_path / "absent.fa")


def test_parse_region():
    assert parse_region("chr1:1,000-50,000") == ("chr1", 999, 50000)
    assert parse_region("chrM") == ("chrM", None, None)
    for bad in ("chr1:0-10", "chr1:10-5", "chr1:5"):
        with pytest.raises(ValueError, match="region"):
            parse_region(bad)

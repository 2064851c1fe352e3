"""Tokenizer: official goldens (ids, errors), offsets, modes, errors, padding, batching,
and a real soft-masked genome, C++ against the pure-Python twin."""

import gzip
import json
import pickle
import platform
import re

import numpy as np
import pytest

from ntengine.tokenizer import (
    Encoding,
    InvalidSequenceError,
    Tokenizer,
    UnknownTokenError,
    encode_python,
)

# The C++ tokenizer has an SSE2 and an AVX2 build: every test runs on each this CPU has.
pytestmark = pytest.mark.usefixtures("cpu_level")

VERSIONS = ["v1", "v2"]
TOKENIZERS = {}


def tok(version="v2", **kw) -> Tokenizer:
    """Shared tokenizer instances (construction builds the 4107-token vocabulary)."""
    key = (version, tuple(sorted(kw.items())))
    if key not in TOKENIZERS:
        TOKENIZERS[key] = Tokenizer(version, **kw)
    return TOKENIZERS[key]


@pytest.fixture(scope="module")
def goldens(fixtures_dir):
    """version -> the 285 official cases, same strings in both files."""
    return {v: json.loads((fixtures_dir / f"tokenizer_{v}.json").read_text()) for v in VERSIONS}


def _assert_row(enc: Encoding, row: int, ids, offsets):
    """Row `row` of a padded batch holds exactly ids/offsets, then padding."""
    n = len(ids)
    np.testing.assert_array_equal(enc.ids[row, :n], ids)
    np.testing.assert_array_equal(enc.offsets[row, :n], offsets)
    assert enc.attention_mask[row, :n].all() and not enc.attention_mask[row, n:].any()
    assert (enc.ids[row, n:] == 1).all() and (enc.offsets[row, n:] == 0).all()


# ---- vocabulary ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_vocabulary_layout(version):
    t = tok(version)
    assert t.vocab_size == len(t.vocab) == 4107
    assert (t.unk_id, t.pad_id, t.mask_id, t.cls_id) == (0, 1, 2, 3)
    first_kmer = 6 if version == "v2" else 4
    assert t.token_to_id("AAAAAA") == first_kmer and t.token_to_id("GGGGGG") == first_kmer + 4095
    assert t.token_to_id("ATTTGT") == first_kmer + 349  # base 4, A=0 T=1 C=2 G=3
    assert [t.token_to_id(b) for b in "ATCGN"] == list(range(first_kmer + 4096, first_kmer + 4101))
    assert (t.eos_id, t.bos_id) == ((4, 5) if version == "v2" else (4105, 4106))
    with pytest.raises(KeyError, match="Token acgtac not found in vocabulary"):
        t.token_to_id("acgtac")


# ---- official goldens ---------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_goldens_strict_cpp_and_twin(goldens, version):
    t = tok(version, strict=True)
    assert len(goldens[version]) == 285 and sum("error" in c for c in goldens[version]) == 82
    for case in goldens[version]:
        seq = case["sequence"]
        for encode in (t.encode, lambda s: encode_python(s, version, strict=True)[0]):
            if "error" in case:
                with pytest.raises(KeyError) as err:
                    encode(seq)
                assert err.type is UnknownTokenError
                assert err.value.args[0] == case["error"]["message"], repr(seq)
            else:
                ids = encode(seq)
                assert ids.dtype == np.int32 and ids.tolist() == case["ids"], repr(seq)
                assert [t.vocab[i] for i in ids] == case["tokens"]


@pytest.mark.parametrize("version", VERSIONS)
def test_goldens_default_mode(goldens, version):
    strict, default = tok(version, strict=True), tok(version)
    checked_lower = 0
    for case in goldens[version]:
        seq = case["sequence"]
        if "error" not in case and "<" not in seq:
            # Literal "<mask>" is strict-only: in default mode '<' is an invalid character.
            assert default.encode(seq).tolist() == case["ids"], repr(seq)
        elif "error" in case and re.fullmatch("[ACGTNacgtn]+", seq):
            # Soft-masked input: lower case reads as upper case ('n' splits like 'N').
            expected = strict.encode(seq.upper())
            np.testing.assert_array_equal(default.encode(seq), expected)
            np.testing.assert_array_equal(encode_python(seq, version)[0], expected)
            checked_lower += 1
        elif "error" in case:
            with pytest.raises(InvalidSequenceError):
                default.encode(seq)
    assert checked_lower >= 10


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_offsets_and_decode(goldens, version):
    t = tok(version, strict=True)
    for case in goldens[version]:
        if "error" in case:
            continue
        seq = case["sequence"]
        ids, offsets = t.encode_with_offsets(seq)
        assert offsets.dtype == np.int64 and offsets.shape == (len(ids), 2)
        assert offsets[0].tolist() == [0, 0]  # <cls>
        assert [seq[s:e] for s, e in offsets[1:]] == case["tokens"][1:], repr(seq)
        assert t.decode(ids) == seq


# ---- default-mode errors and invalid="N" ---------------------------------------------------


def test_invalid_character_error_names_sequence_position_character():
    seqs = ["ACGT", "acgtn", "", "ACGTACGTACGTACGTAR" + "Y", "X"]
    with pytest.raises(InvalidSequenceError) as err:
        tok().batch_encode(seqs)
    assert str(err.value) == (
        "sequence 3, position 17: invalid character 'R' "
        "(allowed: A C G T N, any case; pass invalid='N' to map other characters to N)")
    assert isinstance(err.value, ValueError)
    assert (err.value.index, err.value.position, err.value.char) == (3, 17, "R")


@pytest.mark.parametrize("seq, position, char", [
    ("ACGé", 3, "é"), ("€ACGT", 0, "€"), ("AC GT", 2, " "), ("ACGTAC\n", 6, "\n"),
    (b"ACG\xe9", 3, b"\xe9"), (b"ACGTu", 4, "u"), ("ACGTACGT<mask>", 8, "<"),
])
def test_invalid_character_positions(seq, position, char):
    for encode in (tok().encode, encode_python):
        with pytest.raises(InvalidSequenceError) as err:
            encode(seq)
        assert (err.value.index, err.value.position, err.value.char) == (0, position, char)


def test_first_bad_sequence_wins_across_threads():
    # 300 x 30 kb = 9 MB: enough for both passes to split the batch between two threads.
    good = "ACGTACGTNN" * 3_000
    seqs = [good] * 300
    seqs[250] = good[:500] + "R" + good[501:]
    seqs[7] = good[:900] + "-" + good[901:]
    for threads in (1, 2):
        with pytest.raises(InvalidSequenceError) as err:
            Tokenizer(num_threads=threads).batch_encode(seqs)
        assert (err.value.index, err.value.position, err.value.char) == (7, 900, "-")
    strict = Tokenizer(strict=True, num_threads=2)
    with pytest.raises(UnknownTokenError) as err:
        strict.batch_encode([s.replace("-", "a") for s in seqs])
    assert (err.value.index, err.value.position, err.value.args[0]) == (7, 900, "Token aCGTAC not found in vocabulary")


def test_invalid_as_n():
    t = tok(invalid="N")
    for bad, as_n in [("ACGRTTACGTACY", "ACGNTTACGTACN"), ("é<mask>ac", "NNNaNNNac"), (b"AC\xffG", "ACNG")]:
        ids, offsets = t.encode_with_offsets(bad)
        ref_ids, ref_offsets = tok(strict=True).encode_with_offsets(as_n.upper())
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(offsets, ref_offsets)
        np.testing.assert_array_equal(encode_python(bad, invalid="N")[0], ref_ids)


def test_bad_arguments():
    with pytest.raises(ValueError, match="invalid must be"):
        Tokenizer(invalid="skip")
    with pytest.raises(ValueError, match="strict=True"):
        Tokenizer(strict=True, invalid="N")
    with pytest.raises(ValueError, match="version"):
        Tokenizer("v3")
    with pytest.raises(ValueError, match="max_length"):
        Tokenizer(max_length=0)
    with pytest.raises(ValueError, match="num_threads"):
        Tokenizer(num_threads=0)
    with pytest.raises(TypeError, match="use encode"):
        tok().batch_encode("ACGT")
    with pytest.raises(TypeError, match="sequence 1: expected str or bytes, got int"):
        tok().batch_encode(["ACGT", 7])
    with pytest.raises(ValueError, match="padding must be"):
        tok().batch_encode(["A"], padding="right")
    with pytest.raises(ValueError, match="needs a max_length"):
        tok().batch_encode(["A"], padding="max_length")
    with pytest.raises(ValueError, match="needs a max_length"):
        tok().batch_encode(["A"], truncation=True)


# ---- lengths, padding, truncation -----------------------------------------------------------


def test_too_long_raises_unless_truncated():
    seqs = ["ACG", "A" * 60]  # 4 and 11 tokens
    with pytest.raises(ValueError, match=r"sequence 1 has 11 tokens \(including <cls>\), more than max_length=5"):
        tok().batch_encode(seqs, max_length=5)
    with pytest.raises(ValueError, match="sequence 1 has 11 tokens"):
        Tokenizer(max_length=5).batch_encode(seqs)  # the constructor's limit is the default
    assert len(Tokenizer(max_length=5).encode("A" * 60)) == 11  # encode never truncates
    enc = tok().batch_encode(seqs, max_length=5, truncation=True)
    assert enc.ids.shape == (2, 5)
    _assert_row(enc, 0, *tok().encode_with_offsets("ACG"))
    full_ids, full_offsets = tok().encode_with_offsets("A" * 60)
    _assert_row(enc, 1, full_ids[:5], full_offsets[:5])


@pytest.mark.parametrize("strict", [False, True])
def test_truncation_at_every_length(strict):
    # Cuts inside 6-mer runs, tails, N runs and (strict) a literal <mask> chunk.
    seq = "ACGTACGGTTNNACGTAC<mask>GTAGGCATN" if strict else "ACGTACggTTNnACGTAGGCATTGAN"
    t = tok(strict=strict)
    ids, offsets = t.encode_with_offsets(seq)
    for limit in range(1, len(ids) + 3):
        enc = t.batch_encode([seq, "GATTACA"], max_length=limit, padding="max_length", truncation=True)
        assert enc.ids.shape == (2, limit)
        _assert_row(enc, 0, ids[:limit], offsets[:limit])


def test_padding_modes_and_dtypes():
    seqs = ["ACGTACGTA", "", "NNacgt", b"GGGGGGA"]
    longest = tok().batch_encode(seqs)
    assert longest.ids.dtype == np.int32 and longest.attention_mask.dtype == np.bool_
    assert longest.offsets.dtype == np.int64
    assert longest.ids.shape == (4, 7) and longest.offsets.shape == (4, 7, 2)
    padded = tok().batch_encode(seqs, max_length=9, padding="max_length")
    assert padded.ids.shape == (4, 9)
    for enc in (longest, padded):
        ids, mask, offsets = enc  # a NamedTuple: unpacks
        for row, seq in enumerate(seqs):
            _assert_row(enc, row, *tok().encode_with_offsets(seq))
        assert mask.sum() == sum(len(tok().encode(s)) for s in seqs)


def test_empty_inputs():
    ids, offsets = tok().encode_with_offsets("")
    assert ids.tolist() == [3] and offsets.tolist() == [[0, 0]]
    assert tok("v1").encode(b"").tolist() == [3]
    assert tok().decode(ids) == ""
    empty = tok().batch_encode([])
    assert empty.ids.shape == (0, 0) and empty.offsets.shape == (0, 0, 2) and empty.ids.dtype == np.int32
    assert tok().batch_encode([], max_length=7, padding="max_length").ids.shape == (0, 7)


# ---- batch vs single, bytes, threads ---------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_equals_single(threads):
    rng = np.random.default_rng(0)
    alphabet = np.array(list("ACGTACGTACGTNacgtn"))
    # Odd lengths, including long ones, so the batch is split between threads.
    lengths = [0, 1, 5, 6, 7, 59, 769, 1025] + rng.integers(0, 40_000, 40).tolist()
    seqs = ["".join(rng.choice(alphabet, n)) for n in lengths]
    enc = Tokenizer(num_threads=threads).batch_encode(seqs)
    for row, seq in enumerate(seqs):
        ids, offsets = tok().encode_with_offsets(seq)
        _assert_row(enc, row, ids, offsets)
        if row < 12:
            ref_ids, ref_offsets = encode_python(seq)
            np.testing.assert_array_equal(ids, ref_ids)
            np.testing.assert_array_equal(offsets, ref_offsets)


def test_bytes_input_matches_str():
    seqs = ["ACGTACGNNacgtaTTG", "GATTACA" * 11]
    as_bytes = [s.encode() for s in seqs]
    a, b = tok().batch_encode(seqs), tok().batch_encode([as_bytes[0], bytearray(as_bytes[1])])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(tok(strict=True).encode(b"ACGTAC<mask>"), [3, 728, 2])


def test_decode():
    t = tok()
    ids = t.encode("acgtacNGGA")
    assert t.decode(ids) == "ACGTACNGGA"
    assert t.decode(np.r_[ids, t.pad_id, t.pad_id]) == "ACGTACNGGA"
    assert t.decode([t.cls_id, t.mask_id, t.eos_id, t.bos_id, t.unk_id]) == "<mask><unk>"
    assert t.decode([]) == ""
    with pytest.raises(ValueError, match="out of range"):
        t.decode([3, 4107])
    with pytest.raises(ValueError, match="1-D"):
        t.decode(np.zeros((2, 2), dtype=np.int32))


def test_pickle_round_trip():
    t = Tokenizer("v1", max_length=10, num_threads=1)
    u = pickle.loads(pickle.dumps(t))
    assert repr(u) == repr(t)
    np.testing.assert_array_equal(u.encode("ACGTACNN"), t.encode("ACGTACNN"))


# ---- a real genome -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chr2(shared_data):
    """hg38 chr2:1-2,333,275 as one string: soft-masked, a 10 kb N run at the start."""
    with gzip.open(shared_data / "genomes" / "human_hg38_chr2_1-2333275.fa.gz", "rt") as f:
        return "".join(line.rstrip("\n") for line in f if not line.startswith(">"))


def test_real_genome_windows(chr2):
    assert len(chr2) == 2_333_275 and set(chr2[:10_000]) == {"N"}
    # Lower-case share of each 12 kb tile of the first 600 kb: pick the most masked one.
    tiles = range(12_000, 600_000, 12_000)
    masked = max(tiles, key=lambda s: sum(c.islower() for c in chr2[s : s + 12_000]))
    starts = [0, 4_003, 9_995, masked, 1_860_161 - 6_000]  # the N border, odd phases, masked
    windows = [chr2[s : s + 12_000] for s in starts]
    assert sum(c.islower() for c in windows[3]) > 6_000
    enc = Tokenizer(num_threads=2).batch_encode(windows)
    for row, window in enumerate(windows):
        ids, offsets = encode_python(window)
        _assert_row(enc, row, ids, offsets)
        # Offsets map every token back onto the genome slice.
        tokens = [tok().vocab[i] for i in ids[1:]]
        assert [window[s:e].upper() for s, e in offsets[1:]] == tokens
        assert tok().decode(ids) == window.upper()


def test_base_runs_of_every_length_before_an_n_and_the_buffer_end(chr2):
    """The 6-mer fill takes 4 tokens per step where a 32-byte load fits (AVX2): every run
    length 0..100, ending at an N or at the end of the buffer, at every phase."""
    bases = chr2[200_000:200_200]  # soft-masked and plain bases, no N
    seqs = [bases[:n] + tail for n in range(101) for tail in ("", "N", "NacgtTG")]
    enc = Tokenizer(num_threads=1).batch_encode(seqs)
    for row, seq in enumerate(seqs):
        _assert_row(enc, row, *encode_python(seq))
    for n in range(101):  # bytes objects: the data ends exactly where the run does
        data = bases[:n].encode()
        ids, offsets = tok().encode_with_offsets(data)
        want_ids, want_offsets = encode_python(data)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(offsets, want_offsets)


def test_count_tokens_matches_batch_encode_and_names_the_index():
    tok = Tokenizer("v2")
    seqs = ["", "ACGTACGTN", "acgtnnACGTACGTACG", "N" * 13]
    counts = tok.count_tokens(seqs)
    np.testing.assert_array_equal(counts, tok.batch_encode(seqs).attention_mask.sum(1))
    with pytest.raises(InvalidSequenceError, match="sequence 2, position 3"):
        tok.count_tokens(["ACGT", "ACGT", "ACG-T"])


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 builds only")
def test_the_tokenizer_build_follows_the_cpu_level(cpu_level):
    from ntengine import _C

    assert _C.simd_level() == ("sse2" if cpu_level == "baseline" else "avx2")

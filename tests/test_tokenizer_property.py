"""Property: the C++ tokenizer equals the pure-Python twin on random input: ids, offsets,
and for bad input the error type, sequence index and position; both modes, both
vocabularies, str and bytes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ntengine.tokenizer import Tokenizer, encode_python

# Fragments, weighted towards bases so that most strings are valid and long pieces
# (6-mers, tails) occur; "<mask>" lands on a chunk boundary often enough to matter.
FRAGMENTS = list("ACGT" * 6) + list("NNacgtn") + ["ACGTAC", "NNNN", "<mask>", "R", "x", " ", "é", "\x00"]
MODES = [dict(strict=True), dict(strict=False), dict(strict=False, invalid="N")]
TOKENIZERS = {(v, i): Tokenizer(v, num_threads=2, **m) for v in ("v1", "v2") for i, m in enumerate(MODES)}

dna = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)


def _run(fn):
    """('ok', result) or (error type, (index, position))."""
    try:
        return "ok", fn()
    except (KeyError, ValueError) as err:
        return type(err), (err.index, err.position)


@settings(max_examples=300, deadline=None)
@given(seq=dna, version=st.sampled_from(["v1", "v2"]), mode=st.sampled_from(range(len(MODES))),
       as_bytes=st.booleans())
def test_cpp_matches_python_twin(seq, version, mode, as_bytes):
    data = seq.encode() if as_bytes else seq
    status, got = _run(lambda: TOKENIZERS[version, mode].encode_with_offsets(data))
    ref_status, ref = _run(lambda: encode_python(data, version, **MODES[mode]))
    assert status == ref_status
    if status == "ok":
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
    else:
        assert got == ref


@settings(max_examples=100, deadline=None)
@given(seqs=st.lists(dna, max_size=6), version=st.sampled_from(["v1", "v2"]),
       mode=st.sampled_from(range(len(MODES))))
def test_batch_matches_python_twin(seqs, version, mode):
    """The whole batch equals the twin row by row; the first bad sequence is reported."""
    status, enc = _run(lambda: TOKENIZERS[version, mode].batch_encode(seqs))
    refs = []
    for i, seq in enumerate(seqs):
        ref_status, ref = _run(lambda: encode_python(seq, version, index=i, **MODES[mode]))
        if ref_status != "ok":
            assert (status, enc) == (ref_status, ref)
            return
        refs.append(ref)
    assert status == "ok"
    assert enc.ids.shape[1] == max((len(r[0]) for r in refs), default=0)
    for row, (ids, offsets) in enumerate(refs):
        np.testing.assert_array_equal(enc.ids[row, : len(ids)], ids)
        np.testing.assert_array_equal(enc.offsets[row, : len(ids)], offsets)
        assert enc.attention_mask[row].sum() == len(ids)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_every_byte_value(version):
    """Each of the 256 bytes, alone and inside a 6-mer, classified as the twin does."""
    for mode in range(len(MODES)):
        for b in range(256):
            for data in (bytes([b]), b"ACG" + bytes([b]) + b"TAC"):
                assert _run(lambda: TOKENIZERS[version, mode].encode(data).tolist()) == _run(
                    lambda: encode_python(data, version, **MODES[mode])[0].tolist()), (mode, b)

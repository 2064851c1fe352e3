"""Masked LLRs of every SNV in a window (the core of genome-wide scores, issue 17) against
a direct computation: for each substitution, the mutated window tokenised on its own, the
same tokens masked, one unbatched forward, the log-softmax at the masked token."""

import numpy as np
import pytest

import ntengine
from ntengine.genome.fasta import read_records
from ntengine.genome.snv_llr import BASES, mask_passes, window_llr
from ntengine.pooling import log_softmax


@pytest.fixture(scope="module")
def chrM(shared_data):
    return next(read_records(shared_data / "genomes" / "human_chrM_rCRS_NC_012920.fasta")).sequence


def direct_llr(engine, seq: str, masked_with: dict) -> np.ndarray:
    """The definition, SNV by SNV: `masked_with[t]` is the set of tokens masked together with t."""
    tok = engine.tokenizer
    ids, offsets = tok.encode_with_offsets(seq)
    out = np.full((len(seq), 4), np.nan)
    for t, together in masked_with.items():
        start, end = offsets[t]
        if "N" in seq[start:end]:
            continue
        masked = ids.copy()
        masked[sorted(together)] = tok.mask_id
        logp = log_softmax(engine.forward(masked[None], logits=True)["logits"][0, t].astype(np.float64))
        for j in range(start, end):
            for b, base in enumerate(BASES):
                alt_ids = tok.encode(seq[:j] + base + seq[j + 1:])
                assert len(alt_ids) == len(ids)  # an SNV of A/C/G/T never changes the tokenisation
                out[j, b] = logp[alt_ids[t]] - logp[ids[t]]
    return out


@pytest.mark.parametrize("name", ["v2_tiny", "v1_tiny"])
def test_spaced_masks_match_the_definition(fixtures_dir, chrM, name):
    engine = ntengine.compile(fixtures_dir / name)
    seq = chrM[3070:3150] + chrM[3150:3153]  # rCRS's lone N at 3107, and a 3-base tail
    assert "N" in seq
    ids, _ = engine.tokenizer.encode_with_offsets(seq)
    nucleotide = engine.nucleotide_mask(ids[None])[0]
    passes = mask_passes(nucleotide, 7)
    assert sorted(np.concatenate(passes).tolist()) == np.flatnonzero(nucleotide).tolist()  # each token once
    assert max(len(p) for p in passes) == -(-nucleotide.sum() // 7)  # ceil(n / 7): ~14% of the tokens
    got = window_llr(engine, seq, every=7)
    want = direct_llr(engine, seq, {int(t): set(p.tolist()) for p in passes for t in p})
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    ref = np.array([BASES.find(c) for c in seq])
    assert (got[ref >= 0, ref[ref >= 0]] == 0).all() and np.isnan(got[seq.index("N")]).all()
    assert np.isfinite(got[ref >= 0]).all() and np.nanmax(np.abs(got)) > 0


def test_every_token_alone_is_one_mask_per_pass(fixtures_dir, chrM):
    engine = ntengine.compile(fixtures_dir / "v2_tiny")
    seq = chrM[:200]
    ids, _ = engine.tokenizer.encode_with_offsets(seq)
    got = window_llr(engine, seq, every=len(ids))
    want = direct_llr(engine, seq, {t: {t} for t in range(1, len(ids))})
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    with pytest.raises(ValueError, match="every must be >= 1"):
        mask_passes(np.ones(3, bool), 0)

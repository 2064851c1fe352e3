"""Conformance: ntengine.compile on the official fixtures reproduces the official outputs.

Every fixture checkpoint, in both published layouts, must match the goldens computed
by InstaDeep's JAX implementation to `tolerances.FIXTURE` at real (non-pad) positions.
"""

import json

import numpy as np
import pytest

import ntengine
from tolerances import FIXTURE, rel_err

MODELS = ["v1_tiny", "v2_tiny"]
LAYOUTS = ["hf", "jax"]


# The reference (torch) is what the goldens pin down; the fused backend is held to the
# same bound here too, on top of its comparison with the reference (test_fused_backend).
BACKENDS = ["torch", "fused"]


@pytest.fixture(scope="module", params=[(m, lay, b) for m in MODELS for lay in LAYOUTS for b in BACKENDS],
                ids=lambda p: "-".join(p))
def case(request, fixtures_dir):
    model, layout, backend = request.param
    folder = fixtures_dir / model
    engine = ntengine.compile(folder, layout=layout, trust_pickle=(layout == "jax"), backend=backend)
    golden = dict(np.load(folder / "golden.npz"))
    meta = json.loads((folder / "golden.json").read_text())
    return engine, golden, meta


def _all_maps(engine):
    cfg = engine.config
    return [(layer, h) for layer in range(1, cfg.num_layers + 1) for h in range(cfg.num_heads)]


def test_layout_detected_and_config(case):
    engine, golden, meta = case
    cfg = engine.config
    assert (cfg.num_layers, cfg.num_heads, cfg.embed_dim) == (meta["num_layers"], meta["num_heads"], meta["embed_dim"])
    assert cfg.vocab_size == meta["vocab_size"]
    assert cfg.layer_norm_eps == 1e-5  # fixture README: the HF config stores 1e-5 here


def test_logits_and_embeddings(case):
    engine, golden, meta = case
    n = engine.config.num_layers
    out = engine.forward(golden["tokens"], golden["sequence_mask"], layers=range(1, n + 1))
    real = golden["sequence_mask"].astype(bool)
    for name in ["logits"] + [f"embeddings_{i}" for i in range(1, n + 1)]:
        err = rel_err(out[name][real], golden[name][real])
        assert err <= FIXTURE, f"{name}: relative error {err:.2e}"
    # "embeddings" is the final one, after emb_layer_norm_after.
    assert rel_err(out["embeddings"][real], golden[f"embeddings_{n}"][real]) <= FIXTURE


def test_every_attention_head(case):
    engine, golden, meta = case
    out = engine.forward(golden["tokens"], golden["sequence_mask"], attention_maps=_all_maps(engine))
    real = golden["sequence_mask"].astype(bool)
    for layer in range(1, engine.config.num_layers + 1):
        for head in range(engine.config.num_heads):
            ours = out[f"attention_map_layer_{layer}_number_{head}"][real]
            ref = golden[f"attention_weights_layer_{layer}"][:, head][real]
            assert rel_err(ours, ref) <= FIXTURE, (layer, head)


def test_official_map_names_with_off_by_one(case):
    """The official `number_n` map is head n + 1; ours under the name of that real head."""
    engine, golden, meta = case
    requested = [k for k in meta["arrays"] if k.startswith("attention_map_layer_")]
    assert requested
    pairs = [(meta["arrays"][k]["layer"], meta["arrays"][k]["head_index"]) for k in requested]
    out = engine.forward(golden["tokens"], golden["sequence_mask"], attention_maps=pairs)
    real = golden["sequence_mask"].astype(bool)
    for key, (layer, head) in zip(requested, pairs):
        assert head == meta["arrays"][key]["map_number"] + 1
        ours = out[f"attention_map_layer_{layer}_number_{head}"][real]
        assert rel_err(ours, golden[key][real]) <= FIXTURE, key


def test_tokenizer_reproduces_golden_tokens(case):
    engine, golden, meta = case
    enc = engine.tokenizer.batch_encode(meta["sequences"])
    tokens = golden["tokens"].copy()
    for row, col in meta["mask_insertions"]:  # undo the <mask> overwrites
        assert tokens[row, col] == meta["mask_token_id"]
        tokens[row, col] = enc.ids[row, col]
    np.testing.assert_array_equal(enc.ids, tokens)
    np.testing.assert_array_equal(enc.attention_mask.astype(bool), golden["sequence_mask"].astype(bool))


def test_padding_does_not_change_real_positions(case):
    """Extra right padding changes nothing at real positions."""
    engine, golden, meta = case
    pad = engine.tokenizer.pad_id
    tokens = np.pad(golden["tokens"], ((0, 0), (0, 3)), constant_values=pad)
    out = engine.forward(tokens)
    real = golden["sequence_mask"].astype(bool)
    ref = engine.forward(golden["tokens"])
    assert rel_err(out["logits"][:, : real.shape[1]][real], ref["logits"][real]) <= FIXTURE

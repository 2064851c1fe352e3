"""The fused backend computes what the reference computes.

The reference (backend="torch") is pinned to the official goldens in
test_model_fixtures.py; here the fused backend (our kernels, merged QKV, oneDNN GEMMs)
is compared with it: on the fixtures, and on a random checkpoint of the published
NT-v2-50M shape with real genome windows. The kernels are always built by
`pip install`, so these tests run (and must pass) everywhere.
"""


import numpy as np
import pytest
import torch

import ntengine
from isa import SUPPORTED, isa_params
from ntengine import cpu, ops
from ntengine.backends.torch_backend import DTYPES, fused_status
from tolerances import FIXTURE, FP32, rel_err


@pytest.mark.parametrize("level", isa_params())
@pytest.mark.parametrize("model", ["v1_tiny", "v2_tiny"])
def test_fused_matches_reference_on_fixtures(fixtures_dir, model, level):
    golden = np.load(fixtures_dir / model / "golden.npz")
    ref = ntengine.compile(fixtures_dir / model, backend="torch")
    with cpu.forced(level):
        fused = ntengine.compile(fixtures_dir / model, backend="fused")
        assert f"cpu kernels: {level}" in repr(fused)
        _compare_on_fixture(ref, fused, golden)


def _compare_on_fixture(ref, fused, golden):
    assert fused.backend == "fused" and ref.backend == "torch"
    n = ref.config.num_layers
    args = dict(layers=range(1, n + 1), attention_maps=[(1, 0), (n, 1)])
    a = ref.forward(golden["tokens"], golden["sequence_mask"], **args)
    b = fused.forward(golden["tokens"], golden["sequence_mask"], **args)
    real = golden["sequence_mask"].astype(bool)
    assert a.keys() == b.keys()
    for key in a:
        assert rel_err(b[key][real], a[key][real]) <= FP32, key
    # and therefore the official outputs too
    assert rel_err(b["logits"][real], golden["logits"][real]) <= FIXTURE


def test_auto_picks_fused(fixtures_dir):
    assert ntengine.compile(fixtures_dir / "v2_tiny").backend == "fused"
    with pytest.raises(RuntimeError, match="float16"):
        ntengine.compile(fixtures_dir / "v2_tiny", dtype="float16", backend="fused")


def test_auto_never_picks_an_emulated_half_dtype(fixtures_dir):
    """No AVX512_FP16 CPU is in reach: fp16 on the CPU is emulated, and auto says so."""
    with pytest.raises(RuntimeError, match="float16.*emulated.*dtype='float32'"):
        ntengine.compile(fixtures_dir / "v2_tiny", dtype="float16")
    assert ntengine.compile(fixtures_dir / "v2_tiny", dtype="float16", backend="torch").backend == "torch"


@pytest.mark.skipif("avx2" not in SUPPORTED, reason="needs a CPU with AVX2")
def test_bf16_at_avx2_refuses_as_an_avx2_cpu_does(fixtures_dir):
    """Forced to the AVX2 build (what an AVX2-only CPU runs), bf16 behaves as on such a CPU:
    the fused path refuses with the missing instructions, auto refuses the emulated dtype,
    and the plain-torch reference still runs it. Nothing crashes."""
    with cpu.forced("avx2"):
        with pytest.raises(RuntimeError, match="bfloat16 needs AVX-512"):
            ntengine.compile(fixtures_dir / "v2_tiny", dtype="bfloat16", backend="fused")
        with pytest.raises(RuntimeError, match="emulated and no faster than float32"):
            ntengine.compile(fixtures_dir / "v2_tiny", dtype="bfloat16")
        engine = ntengine.compile(fixtures_dir / "v2_tiny", dtype="bfloat16", backend="torch")
        assert np.isfinite(engine.embed(["ACGTACGTAAAC" * 20])).all()


def test_forcing_a_level_the_cpu_lacks_is_refused(fixtures_dir, monkeypatch):
    lacking = [level for level in cpu.LEVELS if level not in SUPPORTED]
    if not lacking:
        pytest.skip("this CPU runs every level")
    with pytest.raises(RuntimeError, match=f"'{lacking[-1]}' needs .*which this CPU .*lacks"):
        cpu.forced(lacking[-1]).__enter__()
    monkeypatch.setenv(cpu.ENV, lacking[-1])
    monkeypatch.setattr(cpu, "_applied", False)
    with pytest.raises(RuntimeError, match=f"NTENGINE_CPU_ISA={lacking[-1]}: .*lacks"):
        ntengine.compile(fixtures_dir / "v2_tiny", backend="fused")
    with pytest.raises(RuntimeError, match=f"NTENGINE_CPU_ISA={lacking[-1]}: .*lacks"):
        ntengine.Tokenizer()  # the tokenizer alone, without torch, refuses it too
    monkeypatch.setenv(cpu.ENV, "sse9")
    with pytest.raises(RuntimeError, match="unknown CPU ISA level 'sse9'"):
        ntengine.compile(fixtures_dir / "v2_tiny", backend="fused")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fused_matches_reference_at_v2_50m_shape(v2_50m, ecoli, dtype):
    ok, why = fused_status(torch.device("cpu"), DTYPES[dtype])
    if not ok:
        with pytest.raises(RuntimeError, match="bfloat16 needs AVX-512"):
            ntengine.compile(v2_50m, backend="fused", dtype=dtype)
        pytest.skip(f"fused {dtype} refused here, as it must be: {why}")
    seqs = [ecoli[:6000], ecoli[6000:6500], ecoli[7000:7007] + "NNNN" + ecoli[8000:9000]]
    ref32 = ntengine.compile(v2_50m, backend="torch")
    fused = ntengine.compile(v2_50m, backend="fused", dtype=dtype)
    want = ref32.embed(seqs, pooling="none")
    err = max(rel_err(g, w) for g, w in zip(fused.embed(seqs, pooling="none"), want))
    if dtype == "float32":
        assert err <= FP32
    else:  # no worse than the reference itself computed in bf16 (x2, flash-attention's rule)
        ref16 = ntengine.compile(v2_50m, backend="torch", dtype=dtype).embed(seqs, pooling="none")
        ref_err = max(rel_err(r, w) for r, w in zip(ref16, want))
        assert err <= 2 * ref_err, (err, ref_err)


def test_ffn_row_tiles_give_the_untiled_result(v2_50m, ecoli, monkeypatch):
    """The CPU FFN runs in tiles of rows (ops.row_tiled); 2000 rows in tiles of 64 end
    in a partial tile, and must give what one untiled FFN gives."""
    fused = ntengine.compile(v2_50m, backend="fused")
    seqs = [ecoli[:6000], ecoli[6000:6500]]
    monkeypatch.setattr(ops, "CPU_TILE_BYTES", 1 << 40)
    whole = fused.embed(seqs, pooling="none", batch_size=2)
    calls = []
    swiglu = ops.swiglu
    monkeypatch.setattr(ops, "swiglu", lambda h, fused: calls.append(h.shape[0]) or swiglu(h, fused))
    monkeypatch.setattr(ops, "CPU_TILE_BYTES", 1)  # the 64-row minimum
    tiled = fused.embed(seqs, pooling="none", batch_size=2)
    assert max(calls) == 64 and min(calls) < 64, calls[:40]
    for t, w in zip(tiled, whole):
        assert rel_err(t, w) <= FP32


def test_fused_padding_invariance(v2_50m, ecoli):
    fused = ntengine.compile(v2_50m, backend="fused")
    seqs = [ecoli[:1200], ecoli[1200:1206], ecoli[2000:2700]]
    batched = fused.embed(seqs, pooling="none", batch_size=3)
    for seq, rows in zip(seqs, batched):
        assert rel_err(rows, fused.embed([seq], pooling="none")[0]) <= FP32
    assert 0 < fused.padding_fraction < 1


def test_torch_and_fused_engines_run_in_two_threads_at_once(fixtures_dir, ecoli):
    """The kernel route belongs to each model instance, not to the process: a reference
    and a fused engine interleaving in two threads each give exactly their own result."""
    import threading

    seqs = [ecoli[:300], ecoli[300:420] + "NNNN" + ecoli[500:560]]
    engines = {b: ntengine.compile(fixtures_dir / "v2_tiny", backend=b) for b in ("torch", "fused")}
    alone = {b: e.embed(seqs, pooling="none") for b, e in engines.items()}
    assert any(not np.array_equal(t, f) for t, f in zip(alone["torch"], alone["fused"]))  # routes differ
    results = {b: [] for b in engines}

    def run(backend):
        for _ in range(15):
            results[backend].append(engines[backend].embed(seqs, pooling="none"))

    threads = [threading.Thread(target=run, args=(b,)) for b in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for backend, runs in results.items():
        assert len(runs) == 15
        for run_rows in runs:
            for got, want in zip(run_rows, alone[backend]):
                np.testing.assert_array_equal(got, want)


def test_an_engines_model_called_directly_runs_its_own_route(fixtures_dir, ecoli):
    fused = ntengine.compile(fixtures_dir / "v2_tiny", backend="fused")
    enc = fused.tokenizer.batch_encode([ecoli[:300]])
    ids, mask = torch.from_numpy(enc.ids).long(), torch.from_numpy(enc.attention_mask)
    with torch.inference_mode():
        direct = fused.model(ids, mask, logits=False)["embeddings"]
        with ops.use("torch"):
            reference = fused.model(ids, mask, logits=False)["embeddings"]
    np.testing.assert_array_equal(direct.numpy(), fused.forward(enc.ids, enc.attention_mask, logits=False)["embeddings"])
    assert not torch.equal(direct, reference) and rel_err(direct, reference) <= FP32


def test_merged_qkv_replaces_separate_projections(fixtures_dir):
    fused = ntengine.compile(fixtures_dir / "v2_tiny", backend="fused")
    attn = fused.model.layers[0].attn
    assert attn.qkv_proj is not None and not hasattr(attn, "q_proj")
    assert attn.qkv_proj.weight.shape == (3 * fused.config.embed_dim, fused.config.embed_dim)


@pytest.mark.parametrize("backend", ["torch", "fused"])
@pytest.mark.parametrize("model", ["v1_tiny", "v2_tiny"])
def test_packed_equals_padded(fixtures_dir, ecoli, backend, model):
    """Packed rows (no padding, per-sequence positions and token dropout) == padded rows."""
    seqs = [ecoli[:500], ecoli[500:506], ecoli[600:620] + "NN" + ecoli[700:760], ecoli[1000:1300]]
    padded = ntengine.compile(fixtures_dir / model, backend=backend)
    packed = ntengine.compile(fixtures_dir / model, backend=backend, packed=True)
    for a, b in zip(padded.embed(seqs, pooling="none"), packed.embed(seqs, pooling="none")):
        assert rel_err(b, a) <= FP32
    for a, b in zip(padded.logits(seqs), packed.logits(seqs)):
        assert rel_err(b, a) <= FP32
    assert packed.padding_fraction == 0 < padded.padding_fraction


def test_packed_token_dropout_is_per_sequence(fixtures_dir):
    """v1 rescales by each sequence's own <mask> ratio, packed or not."""
    engine = ntengine.compile(fixtures_dir / "v1_tiny", backend="torch")
    tok = engine.tokenizer
    a, b = tok.encode("ACGTACGGGTTTAAACCC"), tok.encode("TTTTTTGGGGGG")
    a[2] = tok.mask_id
    alone = [engine.forward(x[None])["logits"][0] for x in (a, b)]
    cu = np.array([0, len(a), len(a) + len(b)], dtype=np.int32)
    packed = engine.forward(np.concatenate([a, b])[None], cu_seqlens=cu)["logits"][0]
    assert rel_err(packed[: len(a)], alone[0]) <= FP32
    assert rel_err(packed[len(a):], alone[1]) <= FP32


@pytest.mark.parametrize("cu", [[0], [1, 5], [0, 5, 5], [0, 4, 30], [0, 9, 4]])
def test_bad_cu_seqlens_are_refused(fixtures_dir, cu):
    """Empty, not starting at 0, an empty segment, past the row, falling: each a ValueError."""
    engine = ntengine.compile(fixtures_dir / "v2_tiny", backend="torch")
    with pytest.raises(ValueError, match="cu_seqlens must rise strictly from 0 to at most 20"):
        engine.forward(np.full((1, 20), 5), cu_seqlens=np.array(cu, dtype=np.int32))


def test_compile_and_export_see_one_op_each(fixtures_dir):
    """torch.compile (fullgraph) and torch.export trace the fused model through the
    custom ops' fakes: each fused op is one graph node, and the results do not change."""
    import torch

    engine = ntengine.compile(fixtures_dir / "v2_tiny", backend="fused")
    golden = np.load(fixtures_dir / "v2_tiny" / "golden.npz")
    ids, mask = torch.from_numpy(golden["tokens"]).long(), torch.from_numpy(golden["sequence_mask"]).bool()
    with ops.use("fused"), torch.inference_mode():
        eager = engine.model(ids, mask)["logits"]
        compiled = torch.compile(engine.model, backend="aot_eager", fullgraph=True)(ids, mask)["logits"]
    assert rel_err(compiled, eager) <= FP32
    with ops.use("fused"):
        program = torch.export.export(engine.model, (ids, mask))
        exported = program.module()(ids, mask)["logits"].detach()
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    for op in ("qkv_rope", "attention", "swiglu", "add_layernorm"):
        assert f"ntengine.{op}.default" in targets
    assert rel_err(exported, eager) <= FP32


# AgroNT-1B (InstaDeepAI/agro-nucleotide-transformer-1b) is a v1 model (learned positions,
# GELU FFN, no rotary) with 20 heads of size 75: odd. A tiny random v1 model with the same
# head size (E = 150, H = 2) runs every fused kernel at D = 75.
@pytest.fixture(scope="module")
def v1_head75(tmp_path_factory):
    from ntengine.checkpoint import save_checkpoint
    from ntengine.config import NTConfig
    from ntengine.model import NTModel, init_random_weights

    cfg = NTConfig("v1", 4105, 150, 2, 2, 64, max_positions=128, token_dropout=True)
    assert cfg.head_dim == 75 and not cfg.rotary
    model = init_random_weights(NTModel(cfg), seed=75)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "v1-head75", cfg, model.state_dict())


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_fused_matches_reference_at_head_size_75(v1_head75, ecoli, packed):
    # 762 bp = 127 6-mers + <cls>: the full 128-token context; 6 bp: <cls> + one token; Ns.
    seqs = [ecoli[:762], ecoli[1000:1006], ecoli[2000:2030] + "NN" + ecoli[3000:3100], ecoli[5000:5300]]
    ref = ntengine.compile(v1_head75, backend="torch")
    fused = ntengine.compile(v1_head75, backend="fused", packed=packed)
    assert fused.backend == "fused" and fused.config.head_dim == 75
    for a, b in zip(ref.embed(seqs, pooling="none"), fused.embed(seqs, pooling="none")):
        assert rel_err(b, a) <= FP32
    for a, b in zip(ref.logits(seqs), fused.logits(seqs)):
        assert rel_err(b, a) <= FP32
    assert (fused.padding_fraction == 0) == packed


def test_fused_forward_at_head_size_75(v1_head75, ecoli):
    """One padded batch through Engine.forward: every layer, logits and attention maps."""
    ref = ntengine.compile(v1_head75, backend="torch")
    fused = ntengine.compile(v1_head75, backend="fused")
    enc = ref.tokenizer.batch_encode([ecoli[:762], ecoli[800:806], ecoli[900:1200]])
    args = dict(layers=(1, 2), attention_maps=[(1, 0), (2, 1)])
    a = ref.forward(enc.ids, enc.attention_mask, **args)
    b = fused.forward(enc.ids, enc.attention_mask, **args)
    real = enc.attention_mask.astype(bool)
    assert a.keys() == b.keys() and "attention_map_layer_2_number_1" in a
    for key in a:
        assert rel_err(b[key][real], a[key][real]) <= FP32, key

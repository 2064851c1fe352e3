"""ONNX export and the onnxruntime backend reproduce the PyTorch reference.

Artefacts are exported once per module (the v2-50M-shaped one takes a few seconds) and
run in onnxruntime on the CPU on padded batches of phiX174 windows; errors are measured
at real tokens only (values at padding are not meaningful).
"""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="ONNX export needs `pip install 'ntengine[onnx]'`")
pytest.importorskip("onnxruntime", reason="ONNX export needs `pip install 'ntengine[onnx]'`")
pytest.importorskip("onnxscript", reason="ONNX export needs `pip install 'ntengine[onnx]'`")

import onnx  # noqa: E402

import ntengine  # noqa: E402
from ntengine import ops  # noqa: E402
from ntengine.backends.ort_backend import OrtBackend  # noqa: E402
from ntengine.cli import main  # noqa: E402
from ntengine.export import to_onnx  # noqa: E402
from ntengine.export.onnx import export_model  # noqa: E402
from ntengine.export.validate import compare, genome_batch, validate_onnx  # noqa: E402
from tolerances import rel_err  # noqa: E402

ONNX_FP32 = 1e-4  # ORT's fused/reordered fp32 kernels vs torch (measured ~1e-6)
ONNX_FP16 = 1e-2  # fp16 weights and compute vs the fp32 reference (measured ~2e-3)
OUTPUTS = ("embeddings", "logits", "embeddings_1")


def reference(model, ids, mask, layers=(1,)):
    with ops.use("torch"), torch.inference_mode():
        out = model(torch.from_numpy(ids).long(), torch.from_numpy(mask), layers=layers)
    return {k: v.numpy() for k, v in out.items()}


def check(path, model, ids, mask, tol=ONNX_FP32):
    art = OrtBackend(path)
    got = art.run(ids, mask, art.outputs)
    errors = compare(got, reference(model, ids, mask, art.layers_logits[1]), mask)
    assert all(r <= tol for _, r in errors.values()), errors
    return errors


@pytest.fixture(scope="module")
def tiny(fixtures_dir, tmp_path_factory):
    """{name: (fp32 artefact, reference model)} for the v1 and v2 fixtures."""
    out = tmp_path_factory.mktemp("onnx")
    return {m: (to_onnx(fixtures_dir / m, out / f"{m}.onnx", outputs=OUTPUTS), export_model(fixtures_dir / m))
            for m in ("v1_tiny", "v2_tiny")}


@pytest.fixture(scope="module")
def v2_50m_onnx(v2_50m, tmp_path_factory):
    """The session's NT-v2-50M-shaped checkpoint, its fp32 artefact and the model."""
    out = tmp_path_factory.mktemp("onnx")
    ckpt = v2_50m
    return ckpt, to_onnx(ckpt, out / "model.onnx", outputs=("embeddings", "logits")), export_model(ckpt)


@pytest.mark.parametrize("name", ["v1_tiny", "v2_tiny"])
def test_fixture_export_matches_reference(tiny, name):
    path, model = tiny[name]
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in proto.graph.output] == list(OUTPUTS)
    for lengths in [(1,), (1, 2), (60, 17, 5, 33), (model.config.max_positions,)]:  # <cls> alone .. full context
        ids, mask = genome_batch(model.config, lengths, seed=len(lengths))
        check(path, model, ids, mask)


def test_opset_23_uses_onnx_attention(fixtures_dir, tmp_path):
    # ORT's Attention takes only a [B, 1, L, L] mask: attention_ref expands the key mask when exporting.
    path = to_onnx(fixtures_dir / "v2_tiny", tmp_path / "a23.onnx", opset=23, outputs=("embeddings",))
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 23 and "Attention" in {n.op_type for n in proto.graph.node}
    model = export_model(fixtures_dir / "v2_tiny")
    for lengths in [(1,), (1,) * 8, (90, 3, 41)]:
        ids, mask = genome_batch(model.config, lengths, seed=2)
        check(path, model, ids, mask)


def test_v2_50m_dynamic_shapes(v2_50m_onnx):
    _, path, model = v2_50m_onnx
    errors = validate_onnx(path, model)  # the validation that to_onnx runs, explicitly
    assert max(r for _, r in errors.values()) <= ONNX_FP32
    for lengths in [(1,), tuple(range(300, 220, -10)), (2048,)]:  # 1 x <cls>; 8 padded rows; full context
        ids, mask = genome_batch(model.config, lengths, seed=1)
        assert ids.shape[0] == len(lengths)
        check(path, model, ids, mask)


def test_compile_onnx_engine_matches_torch_engine(v2_50m_onnx, tiny, fixtures_dir):
    ckpt, path, _ = v2_50m_onnx
    ort, ref = ntengine.compile(path), ntengine.compile(ckpt)  # ref: fused where it runs
    assert ort.backend == "onnxruntime" and ort.config == ref.config
    seqs = ["ACGTAGGCTAGCATCGATCG" * 30, "ACGTTT", "NNACGTTAGCATCAGGAC" * 7]
    assert rel_err(ort.embed(seqs), ref.embed(seqs)) <= ONNX_FP32
    for a, b in zip(ort.logits(seqs), ref.logits(seqs)):
        assert rel_err(a, b) <= ONNX_FP32
    small = ntengine.compile(tiny["v1_tiny"][0])
    torch_v1 = ntengine.compile(fixtures_dir / "v1_tiny", backend="torch")
    assert rel_err(small.embed(seqs[1:], layer=1), torch_v1.embed(seqs[1:], layer=1)) <= ONNX_FP32
    assert rel_err(small.embed(seqs, layer=2), torch_v1.embed(seqs)) <= ONNX_FP32  # last layer == embeddings


def test_compile_backend_onnxruntime_exports_to_cache(fixtures_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NTENGINE_CACHE", str(tmp_path))
    engine = ntengine.compile(fixtures_dir / "v2_tiny", backend="onnxruntime")
    ref = ntengine.compile(fixtures_dir / "v2_tiny", backend="torch")
    assert engine.backend == "onnxruntime" and len(list(tmp_path.rglob("*.onnx"))) == 1
    golden = np.load(fixtures_dir / "v2_tiny" / "golden.npz")
    a = engine.forward(golden["tokens"], golden["sequence_mask"], layers=(1, 2))
    b = ref.forward(golden["tokens"], golden["sequence_mask"], layers=(1, 2))
    real = golden["sequence_mask"].astype(bool)
    assert a.keys() == b.keys()
    for key in a:
        assert rel_err(a[key][real], b[key][real]) <= ONNX_FP32, key
    ntengine.compile(fixtures_dir / "v2_tiny", backend="onnxruntime")  # second time: from the cache
    assert len(list(tmp_path.rglob("*.onnx"))) == 1


def test_missing_outputs_and_unsupported_calls_are_clear(tiny):
    engine = ntengine.compile(tiny["v2_tiny"][0])
    ids, mask = genome_batch(engine.config, (9, 4))
    with pytest.raises(ValueError, match="layer 5 out of range 1..2"):
        engine.forward(ids, mask, layers=(5,))
    with pytest.raises(ValueError, match="attention maps"):
        engine.forward(ids, mask, attention_maps=[(1, 0)])
    with pytest.raises(ValueError, match="padded batches only"):
        ntengine.compile(tiny["v2_tiny"][0], packed=True)
    emb_only = to_onnx(tiny["v2_tiny"][1], tiny["v2_tiny"][0].with_name("emb.onnx"), validate=False)
    with pytest.raises(ValueError, match=r"no output logits \(pass logits=False\)"):
        ntengine.compile(emb_only).forward(ids, mask)
    with pytest.raises(ValueError, match=r"no output embeddings_1; it holds \['embeddings'\]"):
        ntengine.compile(emb_only).forward(ids, mask, layers=(1,), logits=False)
    out = ntengine.compile(emb_only).forward(ids, mask, layers=(2,), logits=False)  # layer 2 is the last
    assert out.keys() == {"embeddings", "embeddings_2"}


def test_broken_and_foreign_files_are_refused(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        ntengine.compile(junk)
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(foreign))
    with pytest.raises(ValueError, match="without ntengine metadata"):
        ntengine.compile(foreign)
    with pytest.raises(FileNotFoundError):
        ntengine.compile(tmp_path / "absent.onnx")


def test_bad_export_arguments(fixtures_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown output"):
        to_onnx(fixtures_dir / "v2_tiny", tmp_path / "a.onnx", outputs=("attention",))
    with pytest.raises(ValueError, match="out of range"):
        to_onnx(fixtures_dir / "v2_tiny", tmp_path / "a.onnx", outputs=("embeddings_3",))
    with pytest.raises(ValueError, match="dtype"):
        to_onnx(fixtures_dir / "v2_tiny", tmp_path / "a.onnx", dtype="int8")
    with pytest.raises(ValueError, match="bfloat16 ONNX file cannot be validated in onnxruntime"):
        to_onnx(fixtures_dir / "v2_tiny", tmp_path / "a.onnx", dtype="bfloat16")


def test_bfloat16_export_is_well_formed(fixtures_dir, tmp_path):
    # For TensorRT (which checks the engine on the GPU); onnxruntime's CPU EP cannot run it.
    path = to_onnx(fixtures_dir / "v2_tiny", tmp_path / "bf16.onnx", dtype="bfloat16", validate=False)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    types = {t.data_type for t in proto.graph.initializer}
    assert onnx.TensorProto.BFLOAT16 in types and onnx.TensorProto.FLOAT16 not in types
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_validation_fails_loudly(tiny):
    path, model = tiny["v2_tiny"]
    wrong = export_model(model)
    with torch.no_grad():
        wrong.final_norm.bias += 0.01
    with pytest.raises(ValueError, match=r"beyond 0.0001.*embeddings: max abs"):
        validate_onnx(path, wrong)


@pytest.mark.parametrize("name", ["v1_tiny", "v2_tiny"])
def test_float16_export_runs_in_ort_cpu(fixtures_dir, tmp_path, name):
    path = to_onnx(fixtures_dir / name, tmp_path / "fp16.onnx", dtype="float16", outputs=("embeddings", "logits"))
    model = export_model(fixtures_dir / name)
    assert OrtBackend(path).dtype == torch.float16
    ids, mask = genome_batch(model.config, (70, 12, 1), seed=3)
    errors = check(path, model, ids, mask, tol=ONNX_FP16)
    assert max(r for _, r in errors.values()) > 1e-5  # it really computed in fp16
    assert ntengine.compile(path).dtype == torch.float16


def test_cli_export(fixtures_dir, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(fixtures_dir / "v1_tiny"), "-o", str(out), "--outputs", "embeddings,logits,embeddings_2",
                 "--opset", "18"]) == 0
    assert out.is_file() and OrtBackend(out).outputs == ("embeddings", "logits", "embeddings_2")
    assert onnx.load(str(out)).opset_import[0].version == 18
    assert "validate cli.onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "--no-validate" in capsys.readouterr().out


# AgroNT-1B (InstaDeepAI/agro-nucleotide-transformer-1b): a v1 model with 20 heads of size
# 75 (odd). A tiny random v1 model with that head size (E = 150, H = 2) exports and runs.
@pytest.fixture(scope="module")
def v1_head75(tmp_path_factory):
    """(checkpoint, opset-default artefact, reference model) at head size 75."""
    from ntengine.checkpoint import save_checkpoint
    from ntengine.config import NTConfig
    from ntengine.model import NTModel, init_random_weights

    out = tmp_path_factory.mktemp("v1_head75")
    cfg = NTConfig("v1", 4105, 150, 2, 2, 64, max_positions=128, token_dropout=True)
    assert cfg.head_dim == 75
    ckpt = save_checkpoint(out / "ckpt", cfg, init_random_weights(NTModel(cfg), seed=75).state_dict())
    path = to_onnx(ckpt, out / "model.onnx", outputs=OUTPUTS)  # validates against torch itself
    return ckpt, path, export_model(ckpt)


def test_head_size_75_export_matches_torch_engine(v1_head75, ecoli):
    ckpt, path, model = v1_head75
    for lengths in [(1,), (60, 17, 5, 33), (model.config.max_positions,)]:
        ids, mask = genome_batch(model.config, lengths, seed=len(lengths))
        check(path, model, ids, mask)
    ort, ref = ntengine.compile(path), ntengine.compile(ckpt, backend="torch")
    assert ort.backend == "onnxruntime" and ort.config.head_dim == 75
    seqs = [ecoli[:762], ecoli[1000:1006], ecoli[2000:2030] + "NN" + ecoli[3000:3100]]  # padded batch
    for a, b in zip(ort.embed(seqs, pooling="none"), ref.embed(seqs, pooling="none")):
        assert rel_err(a, b) <= ONNX_FP32
    for a, b in zip(ort.logits(seqs), ref.logits(seqs)):
        assert rel_err(a, b) <= ONNX_FP32


def test_head_size_75_opset_23_attention(v1_head75, tmp_path):
    ckpt, _, model = v1_head75
    path = to_onnx(ckpt, tmp_path / "a23.onnx", opset=23, outputs=("embeddings", "logits"))
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 23 and "Attention" in {n.op_type for n in proto.graph.node}
    for lengths in [(1,), (1,) * 8, (90, 3, 41), (model.config.max_positions, 7)]:
        ids, mask = genome_batch(model.config, lengths, seed=2)
        check(path, model, ids, mask)


def test_graph_takes_the_tokenizers_output_and_carries_its_vocabulary(tiny):
    path, model = tiny["v2_tiny"]
    proto = onnx.load(str(path))
    types = {i.name: i.type.tensor_type.elem_type for i in proto.graph.input}
    assert types == {"input_ids": onnx.TensorProto.INT32, "attention_mask": onnx.TensorProto.BOOL}
    meta = {p.key: p.value for p in proto.metadata_props}
    tok = ntengine.Tokenizer(model.config.version)
    assert meta["ntengine.vocab"].split("\n") == tok.vocab
    assert json.loads(meta["ntengine.tokenizer"])["version"] == "v2"
    # batch_encode's arrays go to onnxruntime as they are (this raised on int64 graphs).
    import onnxruntime

    ids, mask = genome_batch(model.config, (40, 9))  # phiX174 windows through Tokenizer.batch_encode
    assert ids.dtype == np.int32 and mask.dtype == np.bool_
    (emb,) = onnxruntime.InferenceSession(str(path)).run(["embeddings"], {"input_ids": ids, "attention_mask": mask})
    errors = compare({"embeddings": emb}, reference(model, ids, mask), mask)
    assert errors["embeddings"][1] <= ONNX_FP32


def test_files_exported_with_int64_inputs_still_run(fixtures_dir, tmp_path, monkeypatch):
    import ntengine.export.onnx as export_onnx

    typed = export_onnx._example_inputs
    monkeypatch.setattr(export_onnx, "_example_inputs", lambda m: tuple(t.long() for t in typed(m)))
    path = to_onnx(fixtures_dir / "v1_tiny", tmp_path / "old.onnx", outputs=("embeddings",), validate=False)
    assert {i.type.tensor_type.elem_type for i in onnx.load(str(path)).graph.input} == {onnx.TensorProto.INT64}
    check(path, export_model(fixtures_dir / "v1_tiny"), *genome_batch(OrtBackend(path).config, (30, 4)))


def test_a_foreign_vocabulary_is_refused(tiny, tmp_path):
    proto = onnx.load(str(tiny["v2_tiny"][0]))
    vocab = next(p for p in proto.metadata_props if p.key == "ntengine.vocab")
    vocab.value = vocab.value.replace("AAAAAA", "TTTTTT", 1)
    onnx.save(proto, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ValueError, match="not ntengine's v2 vocabulary"):
        OrtBackend(tmp_path / "foreign.onnx")

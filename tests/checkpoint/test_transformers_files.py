"""Checkpoints as users' own tools write them, checked against those tools' outputs.

The references here are code nobody on this project wrote: transformers' EsmForMaskedLM
(= NT v1), EsmForSequenceClassification / EsmForTokenClassification / EsmModel, and PEFT's
LoRA and IA3. Random small v1 models are saved the ways users save them (transformers 5's
default gamma/beta naming and save_original_format=False, safetensors and a transformers-4
style pytorch_model.bin, tied and untied, sharded), compiled by ntengine and compared with
what transformers computes on real genome windows with padding and N, at real positions.
"""

import json

import numpy as np
import pytest
import torch

import ntengine
from ntengine.checkpoint import CheckpointError
from tolerances import FP32, rel_err

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

PAD, MASK = 1, 2
# peft calls a transformers 5 property transformers has deprecated: theirs, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def _config(**overrides):
    # NT v1 as InstaDeep's HF configs describe it, at a tiny width; eps as the JAX code.
    kw = dict(vocab_size=4105, hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
              max_position_embeddings=130, position_embedding_type="absolute", token_dropout=True,
              pad_token_id=PAD, mask_token_id=MASK, layer_norm_eps=1e-5, emb_layer_norm_before=False,
              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return transformers.EsmConfig(**{**kw, **overrides})


@torch.no_grad()
def _randomise(model, seed=0):
    """Weights at the scale of trained ones (transformers' 0.02 init would make every
    layer close to the identity and hide mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if "norm" in name.lower() and name.endswith("weight"):
            p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
        elif p.dim() == 2:
            std = 1.0 if "embeddings" in name else p.shape[1] ** -0.5
            p.copy_(std * torch.randn(p.shape, generator=gen))
        else:
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _hf(cls, seed=0, **overrides):
    config = _config(**overrides)
    config._attn_implementation = "eager"  # the one that returns attention maps
    return _randomise(cls(config), seed)


@pytest.fixture(scope="module")
def batch(ecoli):
    """Real E. coli windows of different lengths (so padding), one with an N run, one <mask>."""
    tok = ntengine.Tokenizer(version="v1", max_length=128)
    seqs = [ecoli[:600], ecoli[1000:1300] + "NNNNN" + ecoli[2000:2100], ecoli[3000:3031]]
    enc = tok.batch_encode(seqs)
    return seqs, enc.ids.astype(np.int64), enc.attention_mask


def _with_mask(ids):
    ids = ids.copy()
    ids[0, 7] = MASK  # exercises v1 token dropout, which both apply at inference
    return ids


def _reference(model, ids, mask):
    with torch.no_grad():
        return model(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask.astype(np.int64)),
                     output_hidden_states=True, output_attentions=True)


def _save(model, folder, naming="default", file="safetensors"):
    if file == "safetensors":
        model.save_pretrained(folder, save_original_format=naming == "default")
    else:  # transformers 4 wrote pytorch_model.bin: torch.save of the state dict + config.json
        folder.mkdir(parents=True, exist_ok=True)
        model.config.to_json_file(folder / "config.json")
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("naming,file", [("default", "safetensors"), ("original", "safetensors"),
                                         ("original", "bin")])
def test_masked_lm_matches_transformers(tmp_path, batch, naming, file, tied):
    model = _hf(transformers.EsmForMaskedLM, tie_word_embeddings=tied)
    if not tied:  # an untied decoder that differs from the embeddings, as InstaDeep's v1 files have
        torch.nn.init.normal_(model.lm_head.decoder.weight, std=48 ** -0.5)
    folder = _save(model, tmp_path / "ckpt", naming, file)
    if naming == "default":
        assert any(k.endswith("LayerNorm.gamma") for k in _keys(folder))  # what transformers 5 writes
    assert ("lm_head.decoder.weight" in _keys(folder)) == (not tied or file == "bin")
    _, ids, mask = batch
    ids = _with_mask(ids)
    want = _reference(model, ids, mask)
    engine = ntengine.compile(folder, backend="torch", trust_pickle=file == "bin")
    n = engine.config.num_layers
    every_head = [(layer, h) for layer in range(1, n + 1) for h in range(4)]
    got = engine.forward(ids, mask, layers=range(1, n + 1), attention_maps=every_head)
    real = mask.astype(bool)
    assert rel_err(got["logits"][real], want.logits.numpy()[real]) <= FP32
    assert rel_err(got["embeddings"][real], want.hidden_states[n].numpy()[real]) <= FP32
    for i in range(1, n + 1):
        assert rel_err(got[f"embeddings_{i}"][real], want.hidden_states[i].numpy()[real]) <= FP32, i
        for h in range(4):
            theirs = want.attentions[i - 1][:, h].numpy()
            assert rel_err(got[f"attention_map_layer_{i}_number_{h}"][real], theirs[real]) <= FP32, (i, h)
    report = engine.load_report
    assert report.stored_dtypes == {"float32": len(_keys(folder))}
    assert any("contact_head" in u for u in report.unused)  # transformers saves ESM's contact head
    assert any("tied" in note for note in report.notes) == tied


def _keys(folder):
    if (folder / "model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            return set(f.keys())
    return set(torch.load(folder / "pytorch_model.bin", weights_only=True))


def test_sharded_safetensors_and_half_precision_weights(tmp_path, batch):
    model = _hf(transformers.EsmForMaskedLM, tie_word_embeddings=False)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="300KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    _, ids, mask = batch
    want = _reference(model, ids, mask).logits.numpy()
    real = mask.astype(bool)
    engine = ntengine.compile(tmp_path / "sharded", backend="torch")
    assert len(engine.load_report.files) > 2  # the index and its shards
    assert rel_err(engine.forward(ids, mask)["logits"][real], want[real]) <= FP32
    model.half().save_pretrained(tmp_path / "fp16")
    half = ntengine.compile(tmp_path / "fp16", backend="torch")  # computes in float32 from fp16 weights
    assert set(half.load_report.stored_dtypes) == {"float16"}
    assert 0 < rel_err(half.forward(ids, mask)["logits"][real], want[real]) <= 2e-3


def test_tied_config_with_a_different_stored_decoder_is_refused(tmp_path):
    model = _hf(transformers.EsmForMaskedLM, tie_word_embeddings=False)
    folder = _save(model, tmp_path / "ckpt", "original")
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("tie_word_embeddings")  # absent: transformers ties by default
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="tie_word_embeddings"):
        ntengine.compile(folder)


@pytest.mark.parametrize("labels,problem", [(3, None), (1, None), (4, "multi_label_classification")])
def test_sequence_classification_head_as_transformers(tmp_path, batch, labels, problem):
    model = _hf(transformers.EsmForSequenceClassification, num_labels=labels, problem_type=problem)
    model.save_pretrained(tmp_path / "cls")
    seqs, ids, mask = batch
    with torch.no_grad():
        logits = model(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask.astype(np.int64))).logits
    want = {1: logits, 3: logits.softmax(-1), 4: logits.sigmoid()}[labels].numpy()
    for backend in ("torch", "fused"):
        engine = ntengine.compile(tmp_path / "cls", backend=backend)
        assert not engine.config.lm_head and engine.head[0]["source"] == "EsmForSequenceClassification"
        assert rel_err(engine.predict(seqs), want) <= FP32, backend
    assert engine.head[0]["labels"] == [model.config.id2label[i] for i in range(labels)]
    assert engine.head[0]["task"] == {1: "regression", 3: "classification", 4: "multi_label"}[labels]
    with pytest.raises(ValueError, match="no LM head"):
        engine.logits(seqs)


def test_token_classification_head_as_transformers(tmp_path, batch):
    model = _hf(transformers.EsmForTokenClassification, num_labels=2)
    model.save_pretrained(tmp_path / "tok")
    seqs, ids, mask = batch
    with torch.no_grad():
        want = model(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask.astype(np.int64))).logits
    want = want.softmax(-1).numpy()
    engine = ntengine.compile(tmp_path / "tok", backend="torch")
    for r, probs in enumerate(engine.predict(seqs)):
        t = int(mask[r].sum())
        assert probs.shape == (t, 2)
        assert rel_err(probs, want[r, :t]) <= FP32, r


def test_bare_esm_model_as_automodel_saves_it(tmp_path, batch):
    model = _hf(transformers.EsmModel)  # AutoModel: no "esm." prefix, a pooler, no LM head
    model.save_pretrained(tmp_path / "bare")
    _, ids, mask = batch
    want = _reference(model, ids, mask).last_hidden_state.numpy()
    engine = ntengine.compile(tmp_path / "bare")
    real = mask.astype(bool)
    assert rel_err(engine.forward(ids, mask)["embeddings"][real], want[real]) <= FP32
    assert {u.split()[0] for u in engine.load_report.unused} == {
        "esm.pooler.dense.weight", "esm.pooler.dense.bias", "esm.contact_head.regression.weight",
        "esm.contact_head.regression.bias"}
    assert "never read" in repr(engine)


# --------------------------------------------------------------------------- PEFT adapters


def _peft_model(base, config, tmp_path, seed=1):
    wrapped = peft.get_peft_model(base, config)
    with torch.no_grad():  # trained-looking adapter weights (LoRA's B starts at zero)
        gen = torch.Generator().manual_seed(seed)
        for name, p in wrapped.named_parameters():
            if "lora_" in name or "ia3_l" in name:
                p.copy_((1 if "ia3_l" in name else 0) + 0.3 * torch.randn(p.shape, generator=gen))
    wrapped.eval().save_pretrained(tmp_path / "adapter")
    return wrapped


def test_lora_classifier_adapter_merged_matches_peft(tmp_path, batch):
    """InstaDeep's fine-tuning notebook: LoRA on query/value of a sequence classifier."""
    base = _hf(transformers.EsmForMaskedLM, tie_word_embeddings=False)
    base.save_pretrained(tmp_path / "base")
    classifier = transformers.EsmForSequenceClassification.from_pretrained(
        tmp_path / "base", num_labels=2, attn_implementation="eager")
    torch.nn.init.normal_(classifier.classifier.dense.weight, std=0.2)
    lora = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"],
                           init_lora_weights=False)
    wrapped = _peft_model(classifier, lora, tmp_path)
    seqs, ids, mask = batch
    with torch.no_grad():
        want = wrapped(input_ids=torch.from_numpy(ids),
                       attention_mask=torch.from_numpy(mask.astype(np.int64))).logits.softmax(-1).numpy()
    for backend in ("torch", "fused", "onnxruntime"):
        engine = ntengine.compile(tmp_path / "base", backend=backend, adapter=tmp_path / "adapter")
        assert rel_err(engine.predict(seqs), want) <= FP32, backend
        if backend == "torch":
            assert any("LORA adapter" in n for n in engine.load_report.notes)
    # The adapter folder alone works when it names its base, as PEFT records it.
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tmp_path / "base")
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps(cfg))
    assert rel_err(ntengine.compile(tmp_path / "adapter", backend="torch").predict(seqs), want) <= FP32


def test_ia3_adapter_merged_matches_peft(tmp_path, batch):
    base = _hf(transformers.EsmForMaskedLM, tie_word_embeddings=False)
    base.save_pretrained(tmp_path / "base")
    ia3 = peft.IA3Config(target_modules=["key", "value", "output.dense"], feedforward_modules=["output.dense"])
    wrapped = _peft_model(base, ia3, tmp_path)
    _, ids, mask = batch
    ids = _with_mask(ids)
    with torch.no_grad():
        want = wrapped(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask.astype(np.int64)))
    real = mask.astype(bool)
    engine = ntengine.compile(tmp_path / "base", backend="fused", adapter=tmp_path / "adapter")
    assert rel_err(engine.forward(ids, mask)["logits"][real], want.logits.numpy()[real]) <= FP32
    plain = ntengine.compile(tmp_path / "base", backend="fused").forward(ids, mask)["logits"][real]
    assert rel_err(plain, want.logits.numpy()[real]) > 1e-2  # the adapter really changed the model


def test_classification_adapter_without_its_head_is_refused(tmp_path):
    base = _hf(transformers.EsmForMaskedLM, tie_word_embeddings=False)
    base.save_pretrained(tmp_path / "base")
    classifier = transformers.EsmForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=2)
    lora = peft.LoraConfig(task_type="SEQ_CLS", r=2, target_modules=["query"], modules_to_save=[],
                           init_lora_weights=False)
    _peft_model(classifier, lora, tmp_path)
    from safetensors.torch import load_file, save_file

    path = tmp_path / "adapter" / "adapter_model.safetensors"
    save_file({k: v for k, v in load_file(str(path)).items() if "classifier" not in k}, str(path))
    with pytest.raises(CheckpointError, match="holds no classifier weights"):
        ntengine.compile(tmp_path / "base", adapter=tmp_path / "adapter")


@pytest.mark.parametrize("cls,options", [
    ("EsmForMaskedLM", dict(alpha_pattern={"query|value": 12}, bias="all", use_rslora=True)),
    ("EsmModel", dict(bias="lora_only")),  # AutoModel embeddings fine-tune: keys without "esm."
], ids=["alpha-pattern-bias-rslora", "bare-esm-model"])
def test_lora_options_merge_as_peft_computes(tmp_path, batch, cls, options):
    base = _hf(getattr(transformers, cls))
    base.save_pretrained(tmp_path / "base")
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value", "dense"], init_lora_weights=False,
                           **options)
    wrapped = _peft_model(base, lora, tmp_path)
    if options.get("bias") == "all":  # trained biases, saved as <module>.base_layer.bias
        with torch.no_grad():
            for name, p in wrapped.named_parameters():
                if name.endswith("bias") and "lora_" not in name:
                    p.add_(0.5)
        wrapped.save_pretrained(tmp_path / "adapter")
    _, ids, mask = batch
    want = _reference(wrapped, ids, mask).hidden_states[-1].numpy()
    real = mask.astype(bool)
    got = ntengine.compile(tmp_path / "base", backend="torch", adapter=tmp_path / "adapter").forward(ids, mask)
    assert rel_err(got["embeddings"][real], want[real]) <= FP32


def test_adapter_with_an_exported_artefact_is_refused(tmp_path):
    with pytest.raises(ValueError, match="holds its weights already"):
        ntengine.compile(tmp_path / "model.onnx", adapter=tmp_path / "adapter")

"""InstaDeep's Hugging Face layout: config.json (model_type esm) + safetensors | .bin | shards."""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from ntengine.checkpoint.common import (Checkpoint, CheckpointError, LoadReport, match_strict, read_json,
                                       read_safetensors, refuse_pickle)
from ntengine.checkpoint.heads import esm_head
from ntengine.checkpoint.names import expected_shapes, external_names
from ntengine.config import NTConfig

# The per-layer rotary buffer of older checkpoints: checked against the config, not loaded.
_HF_INV_FREQ = re.compile(r"^esm\.encoder\.layer\.(\d+)\.attention\.self\.rotary_embeddings\.inv_freq$")
# transformers 5 writes LayerNorm parameters as gamma/beta by default (and reads both).
_GAMMA_BETA = re.compile(r"^(.*(?:LayerNorm|layer_norm)[^.]*)\.(gamma|beta)$")
# transformers' bare EsmModel saves its keys without the "esm." prefix.
_BARE_PREFIXES = ("embeddings.", "encoder.", "pooler.", "contact_head.")


def unused_shapes(config: NTConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    """HF keys published files carry that NT's forward never reads: expected shape and why."""
    e, rows = config.embed_dim, config.max_positions + 2
    unused = {
        "esm.embeddings.position_ids": ((1, rows), "a derived index buffer of older transformers"),
        "esm.contact_head.regression.weight": ((1, config.num_layers * config.num_heads),
                                               "ESM's contact-prediction head, which NT never uses"),
        "esm.contact_head.regression.bias": ((1,), "ESM's contact-prediction head, which NT never uses"),
        "esm.pooler.dense.weight": ((e, e), "transformers' EsmModel pooler, which NT's outputs never use"),
        "esm.pooler.dense.bias": ((e,), "transformers' EsmModel pooler, which NT's outputs never use"),
    }
    if config.rotary:  # InstaDeep's EsmEmbeddings always builds (and saves) a learned table
        unused["esm.embeddings.position_embeddings.weight"] = ((rows, e), "a learned-position table rotary "
                                                               "(v2) models never read")
    return unused


def config_from_hf(d: dict, lm_head: bool = True) -> NTConfig:
    pos = d.get("position_embedding_type", "absolute")
    if pos not in ("absolute", "rotary"):
        raise CheckpointError(f"unsupported position_embedding_type {pos!r} (NT uses absolute or rotary)")
    version = "v2" if pos == "rotary" else "v1"
    bias_ffn = d.get("add_bias_fnn", True)
    if bias_ffn != (version == "v1"):
        raise CheckpointError(
            f"add_bias_fnn={bias_ffn} with {pos} positions is not an NT architecture "
            "(v1: absolute + FFN biases; v2: rotary + SwiGLU without biases)"
        )
    return NTConfig(
        version=version,
        vocab_size=d["vocab_size"],
        embed_dim=d["hidden_size"],
        num_layers=d["num_hidden_layers"],
        num_heads=d["num_attention_heads"],
        ffn_dim=d["intermediate_size"],
        max_positions=d["max_position_embeddings"] - 2,
        layer_norm_eps=d.get("layer_norm_eps", 1e-12),
        emb_layer_norm_before=bool(d.get("emb_layer_norm_before", False)),
        token_dropout=bool(d.get("token_dropout", False)),
        rotary_rescaling_factor=d.get("rescaling_factor"),  # as SegmentNT's configs spell it
        pad_id=d.get("pad_token_id", 1),
        mask_id=d.get("mask_token_id", 2),
        lm_head=lm_head,
    )


def tokenizer_files(cfg: NTConfig) -> dict[str, str]:
    """vocab.txt, tokenizer_config.json and special_tokens_map.json, so transformers'
    AutoTokenizer opens the folder as an EsmTokenizer that tokenizes as the official code
    does (greedy 6-mers over the vocabulary; <cls> first and, as there, no <eos>)."""
    import json

    from ntengine.tokenizer import _vocab

    tokens, _ = _vocab(cfg.version)
    specials = {"cls_token": "<cls>", "pad_token": "<pad>", "mask_token": "<mask>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "EsmTokenizer", "model_max_length": cfg.max_positions, "eos_token": None, **specials}
    return {"vocab.txt": "\n".join(tokens) + "\n", "tokenizer_config.json": json.dumps(config, indent=2) + "\n",
            "special_tokens_map.json": json.dumps(specials, indent=2) + "\n"}


def config_to_hf(cfg: NTConfig) -> dict:
    # HF's ESM has no embed_scale and hard-codes the token-dropout ratio (0.15 * 0.8).
    custom_dropout = cfg.token_dropout and not math.isclose(cfg.masking_ratio * cfg.masking_prob, 0.12)
    if cfg.embed_scale != 1.0 or custom_dropout:
        raise CheckpointError("the HF layout cannot store embed_scale != 1 or a custom token-dropout "
                              "ratio; write the ntengine layout instead")
    d = {
        "architectures": ["EsmForMaskedLM" if cfg.lm_head else "EsmModel"],
        "model_type": "esm",
        "add_bias_fnn": not cfg.rotary,
        "attention_probs_dropout_prob": 0.0,
        "hidden_dropout_prob": 0.0,
        "emb_layer_norm_before": cfg.emb_layer_norm_before,
        "hidden_size": cfg.embed_dim,
        "intermediate_size": cfg.ffn_dim,
        "layer_norm_eps": cfg.layer_norm_eps,
        "mask_token_id": cfg.mask_id,
        "pad_token_id": cfg.pad_id,
        "max_position_embeddings": cfg.max_positions + 2,
        "num_attention_heads": cfg.num_heads,
        "num_hidden_layers": cfg.num_layers,
        "position_embedding_type": "rotary" if cfg.rotary else "absolute",
        "tie_word_embeddings": False,
        "token_dropout": cfg.token_dropout,
        "torch_dtype": "float32",
        "vocab_size": cfg.vocab_size,
    }
    if cfg.rotary_rescaling_factor is not None:
        d["rescaling_factor"] = cfg.rotary_rescaling_factor
    return d


def _read_hf_tensors(folder: Path, trust_pickle: bool) -> tuple[dict[str, torch.Tensor], list[str]]:
    """All tensors of the folder's weights (one file or a sharded index) and the files read."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            shards = sorted(set(read_json(index)["weight_map"].values()))
            tensors = {}
            for shard in shards:
                if not (folder / shard).resolve().is_relative_to(folder.resolve()):
                    raise CheckpointError(f"{index}: shard {shard!r} lies outside the checkpoint folder: refused")
                if not (folder / shard).is_file():
                    raise CheckpointError(f"{index}: shard {shard} is missing")
                tensors.update(_read_hf_file(folder / shard, trust_pickle))
            return tensors, [index_name, *shards]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return _read_hf_file(folder / name, trust_pickle), [name]
    raise CheckpointError(f"{folder}: no model.safetensors, pytorch_model.bin or sharded index found")


def _read_hf_file(path: Path, trust_pickle: bool) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    refuse_pickle(path, trust_pickle)
    return torch.load(path, map_location="cpu", weights_only=True)


def _check_inv_freq(config: NTConfig, stored: dict[str, torch.Tensor], problems: list[str]) -> None:
    from ntengine.model import rotary_inv_freq

    want = rotary_inv_freq(config)
    for key, value in stored.items():
        if not config.rotary:
            problems.append(f"unexpected {key}: rotary buffer in a model with learned positions")
        elif value.shape != want.shape or not torch.allclose(value.float(), want, rtol=1e-5, atol=0):
            problems.append(
                f"{key} disagrees with the config (head size {config.head_dim}, base "
                f"{config.rotary_base:g}): stored {value.flatten()[:4].tolist()}..., "
                f"expected {want[:4].tolist()}..."
            )


def canonical_keys(tensors: dict[str, torch.Tensor], notes: list[str]) -> dict[str, torch.Tensor]:
    """Keys as InstaDeep's files spell them: "esm." prefixed, LayerNorm weight/bias."""
    if not any(k.startswith("esm.") for k in tensors) and any(k.startswith(_BARE_PREFIXES) for k in tensors):
        tensors = {("esm." + k if k.startswith(_BARE_PREFIXES) else k): v for k, v in tensors.items()}
        notes.append("keys without the 'esm.' prefix (transformers' EsmModel) read as esm.*")
    out, renamed = {}, 0
    for key, value in tensors.items():
        m = _GAMMA_BETA.match(key)
        if m:
            key, renamed = f"{m.group(1)}.{'weight' if m.group(2) == 'gamma' else 'bias'}", renamed + 1
            if key in tensors:
                raise CheckpointError(f"both {m.group(0)} and {key} are stored: which one is meant?")
        out[key] = value
    if renamed:
        notes.append(f"{renamed} LayerNorm gamma/beta tensors read as weight/bias (transformers 5 naming)")
    return out


def _tie_decoder(tensors: dict[str, torch.Tensor], notes: list[str], problems: list[str]) -> None:
    """tie_word_embeddings: the LM-head decoder is the word-embedding matrix (not stored)."""
    embeddings_key, decoder_key = (external_names(name, "hf")[0]
                                   for name in ("embed_tokens.weight", "lm_head.decoder.weight"))
    embeddings, decoder = tensors.get(embeddings_key), tensors.get(decoder_key)
    if embeddings is None:
        return  # reported as missing by the strict match
    if decoder is None:
        tensors[decoder_key] = embeddings.clone()
        notes.append("LM-head decoder tied to the word embeddings (tie_word_embeddings)")
    elif torch.equal(decoder, embeddings):
        notes.append("LM-head decoder tied to the word embeddings (tie_word_embeddings; the stored copy is equal)")
    else:
        problems.append("config.json ties the LM-head decoder to the word embeddings (tie_word_embeddings, "
                        "transformers' default when the key is absent) but the file stores a different "
                        "lm_head.decoder.weight: set \"tie_word_embeddings\": false if the stored one is meant")


def load_hf(folder: Path, trust_pickle: bool) -> Checkpoint:

    hf_config = read_json(folder / "config.json")
    report = LoadReport(source=str(folder), folder=str(folder), layout="hf")
    stored, report.files = _read_hf_tensors(folder, trust_pickle)
    tensors = canonical_keys(stored, report.notes)
    problems: list[str] = []
    try:
        config = config_from_hf(hf_config, lm_head=any(k.startswith("lm_head.") for k in tensors))
    except KeyError as err:
        raise CheckpointError(f"{folder / 'config.json'}: no {err} key: not a complete ESM/NT config") from None
    if not config.lm_head:
        report.notes.append("no LM head in the file: embeddings and task heads only, no logits")
    elif hf_config.get("tie_word_embeddings", True):
        _tie_decoder(tensors, report.notes, problems)
    head = esm_head({k: tensors.pop(k) for k in list(tensors) if k.startswith("classifier.")}, hf_config,
                    config.embed_dim)
    if head is not None:
        report.notes.append(f"task head: {head[0]['source']} ({head[0]['num_outputs']} outputs)")
    hf_to_ours = {external_names(name, "hf")[0]: name for name in expected_shapes(config)}
    unused = unused_shapes(config)
    found, unplaced, inv_freq = {}, {}, {}
    for key, value in tensors.items():
        if key in hf_to_ours:
            found[hf_to_ours[key]] = value
        elif _HF_INV_FREQ.match(key):
            inv_freq[key] = value
        elif key in unused:
            shape, why = unused[key]
            if tuple(value.shape) != shape:
                problems.append(f"wrong shape for {key}: {list(value.shape)}, expected {list(shape)} ({why})")
            report.ignore(key, value, why)
        else:
            unplaced[key] = key
    _check_inv_freq(config, inv_freq, problems)
    if inv_freq:
        report.notes.append(f"{len(inv_freq)} rotary inv_freq buffers checked against the config")
    state = match_strict(config, found, unplaced, lambda n: external_names(n, "hf")[0], problems)
    report.count(state, stored)
    return Checkpoint(config, state, report, head)

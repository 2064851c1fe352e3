"""One configuration for NT v1 and v2, and the published model sizes.

`NTConfig` holds only what changes the arithmetic of the forward pass; layout
specific names (HF `hidden_size`, JAX `embed_dim`) are translated in
`ntengine.checkpoint`, never here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

# Vocabulary sizes the *models* use. The tokenizer always has 4107 ids; v1 models
# drop <eos>/<bos> (ids 4105, 4106) from their embedding table.
V1_VOCAB_SIZE = 4105
V2_VOCAB_SIZE = 4107


@dataclass(frozen=True)
class NTConfig:
    """Hyperparameters of one Nucleotide Transformer.

    Attributes:
        version: "v1" (learned positions, GELU FFN with biases) or "v2" (rotary, SwiGLU).
        vocab_size: rows of the token embedding / LM-head decoder (4105 v1, 4107 v2).
        embed_dim: model width E.
        num_layers: number of transformer blocks.
        num_heads: attention heads H; head size is embed_dim // num_heads.
        ffn_dim: FFN intermediate width F (v2: fc1 has 2F outputs for the GLU).
        max_positions: longest input in tokens, `<cls>` included.
        layer_norm_eps: epsilon of every LayerNorm (1e-12 in InstaDeep's HF configs,
            1e-5 in the official JAX code).
        embed_scale: multiplier on token embeddings.
        emb_layer_norm_before: LayerNorm after the embeddings, before block 1.
        token_dropout: ESM token-dropout rescaling, applied at inference too (v1).
        masking_ratio, masking_prob: their product is the token-dropout train ratio.
        rotary_rescaling_factor: None, or the factor that enlarges the rotary base
            (see `rotary_base`).
        pad_id, mask_id, cls_id: special token ids (same for v1 and v2).
        lm_head: the masked-LM head is present (False for encoders saved without it, such
            as transformers' EsmModel or a fine-tuned EsmForSequenceClassification).
    """

    version: Literal["v1", "v2"]
    vocab_size: int
    embed_dim: int
    num_layers: int
    num_heads: int
    ffn_dim: int
    max_positions: int
    layer_norm_eps: float = 1e-5
    embed_scale: float = 1.0
    emb_layer_norm_before: bool = False
    token_dropout: bool = False
    masking_ratio: float = 0.15
    masking_prob: float = 0.8
    rotary_rescaling_factor: Optional[float] = None
    pad_id: int = 1
    mask_id: int = 2
    cls_id: int = 3
    lm_head: bool = True

    def __post_init__(self):
        if self.version not in ("v1", "v2"):
            raise ValueError(f"version must be 'v1' or 'v2', got {self.version!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.version == "v2" and self.head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head size, got {self.head_dim}")

    # Derived quantities: properties, so they can never disagree with the fields.
    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def rotary(self) -> bool:
        """v2 uses rotary position embeddings and a SwiGLU FFN without biases."""
        return self.version == "v2"

    @property
    def rotary_base(self) -> float:
        """Rotary base: 10000, enlarged as the official code does when rescaling.

        The official `RotaryEmbedding` (nucleotide_transformer/layers.py) uses
        ``10000 * rescaling_factor ** (head_dim / (head_dim - 2))`` (NTK-aware scaling).
        """
        if self.rotary_rescaling_factor is None:
            return 10000.0
        d = self.head_dim
        return 10000.0 * self.rotary_rescaling_factor ** (d / (d - 2))

    @property
    def tokenizer_version(self) -> str:
        return self.version

    @property
    def num_parameters(self) -> int:
        """Parameter count implied by the config (for reports and sanity checks)."""
        e, f, v, n = self.embed_dim, self.ffn_dim, self.vocab_size, self.num_layers
        attn = 4 * (e * e + e)
        if self.rotary:
            ffn = e * 2 * f + f * e
        else:
            ffn = e * f + f + f * e + e
        block = attn + ffn + 2 * 2 * e
        embed = v * e + ((self.max_positions + 2) * e if not self.rotary else 0)
        head = (e * e + e) + 2 * e + (e * v + v) if self.lm_head else 0  # dense, LN, decoder
        before = 2 * e if self.emb_layer_norm_before else 0
        return embed + before + n * block + 2 * e + head  # 2e: the final LayerNorm

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NTConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown NTConfig fields: {unknown}")
        return cls(**d)

    @classmethod
    def from_preset(cls, name: str) -> "NTConfig":
        """Config of a published model, e.g. ``NTConfig.from_preset("v2-50m")``."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[name]


def _v1(embed_dim, num_layers, num_heads, ffn_dim):
    # InstaDeep's HF configs: position_embedding_type "absolute", max_position_embeddings
    # 1002 (= 1000 tokens + the ESM offset of 2), token_dropout true, layer_norm_eps 1e-12.
    return NTConfig("v1", V1_VOCAB_SIZE, embed_dim, num_layers, num_heads, ffn_dim,
                    max_positions=1000, layer_norm_eps=1e-12, token_dropout=True)


def _agro(embed_dim, num_layers, num_heads, ffn_dim):
    # AgroNT is v1-shaped (learned positions, GELU) with a 1024-token context
    # (max_position_embeddings 1026); eps and token dropout assumed as in the v1 configs.
    return dataclasses.replace(_v1(embed_dim, num_layers, num_heads, ffn_dim), max_positions=1024)


def _v2(embed_dim, num_layers, ffn_dim):
    # InstaDeep's HF configs: "rotary", max_position_embeddings 2050 (2048 tokens),
    # 16 heads, add_bias_fnn false, token_dropout false, layer_norm_eps 1e-12; the
    # GLU's first linear layer has 2 * ffn_dim outputs. No rotary rescaling.
    return NTConfig("v2", V2_VOCAB_SIZE, embed_dim, num_layers, 16, ffn_dim,
                    max_positions=2048, layer_norm_eps=1e-12)


# The published models, with the eps of their HF configs (1e-12; the official JAX code
# uses 1e-5: load a JAX checkpoint to get that). Sources (hyperparameter files and
# config.json of the InstaDeepAI/<name> repositories on the Hugging Face hub, and the
# official repository instadeepai/nucleotide-transformer):
# - 500m-*: jax_model/hyperparams.json (embed_dim 1280, 24 layers, 20 heads, ffn 5120,
#   max_positions 1000). Its model_num_parameters says 485,729,545; `num_parameters`
#   gives 485,698,825, 30,720 (= 24 x 1280) fewer: a gap the files readable here do
#   not explain.
# - 2b5-multi-species: config.json (hidden 2560, 32 layers, 20 heads, intermediate 10240).
#   2b5-1000g: no config could be read here; its checkpoint has the same size as
#   2b5-multi-species and the paper gives both as 2.5B, so it is assumed identical.
# - v2-50m / v2-100m / v2-250m / v2-500m: config.json (hidden 512/512/768/1024, layers
#   12/22/24/29, intermediate 2048/2048/3072/4096); v2-500m also matches its
#   jax_model/hyperparams.json (key_size 64, ffn_activation swish, use_glu_in_ffn).
# - agront-1b: hidden 1500, 40 layers, 20 heads of 75 (an odd head size), 1024 tokens, the
#   v1 vocabulary (4105 rows); ffn 5120 is inferred, not read: with it the parameter count
#   (991,260,405) matches the published pytorch_model.bin (3,965,239,677 bytes, fp32) to
#   within its pickle overhead, and 4096 or 6000 miss by over 10%.
PRESETS: dict[str, NTConfig] = {
    "v1-500m-human-ref": _v1(1280, 24, 20, 5120),
    "v1-500m-1000g": _v1(1280, 24, 20, 5120),
    "v1-2b5-1000g": _v1(2560, 32, 20, 10240),
    "v1-2b5-multi-species": _v1(2560, 32, 20, 10240),
    "v2-50m": _v2(512, 12, 2048),
    "v2-100m": _v2(512, 22, 2048),
    "v2-250m": _v2(768, 24, 3072),
    "v2-500m": _v2(1024, 29, 4096),
    "agront-1b": _agro(1500, 40, 20, 5120),
}

# Where each preset is published (InstaDeep's repositories on the Hugging Face hub).
HUB_IDS: dict[str, str] = {
    "v1-500m-human-ref": "InstaDeepAI/nucleotide-transformer-500m-human-ref",
    "v1-500m-1000g": "InstaDeepAI/nucleotide-transformer-500m-1000g",
    "v1-2b5-1000g": "InstaDeepAI/nucleotide-transformer-2.5b-1000g",
    "v1-2b5-multi-species": "InstaDeepAI/nucleotide-transformer-2.5b-multi-species",
    "v2-50m": "InstaDeepAI/nucleotide-transformer-v2-50m-multi-species",
    "v2-100m": "InstaDeepAI/nucleotide-transformer-v2-100m-multi-species",
    "v2-250m": "InstaDeepAI/nucleotide-transformer-v2-250m-multi-species",
    "v2-500m": "InstaDeepAI/nucleotide-transformer-v2-500m-multi-species",
    "agront-1b": "InstaDeepAI/agro-nucleotide-transformer-1b",
}

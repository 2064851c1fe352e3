"""What a genome embedding job computes: one frozen record, validated once, passed to the
workers in the `JobSpec` and recorded in the store (`params`), so a resumed job that asks
for anything different is refused."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ntengine.config import NTConfig
from ntengine.genome.windows import default_window_bp


@dataclass(frozen=True, kw_only=True)
class EmbedSettings:
    """Attributes:
        window, stride: window length and step in bp (default: the model's context,
            6 x (max_positions - 1) bp; stride = window, no overlap).
        layer: 1-based block for the pooled embeddings (default: final embeddings).
        reverse_complement: also embed each window's reverse complement and store the mean
            of the two strands' pooled embeddings (per-token outputs stay forward); with
            snv_every, the mean of both strands' LLRs.
        token_embeddings: also store per-token embeddings (float16) from this layer.
        tracks: also store per-token log P(reference base) and entropy (the bigWig tracks).
        invalid: "raise" (an IUPAC code other than N is an error naming record, line and
            column) or "N" (read them as N, as the tokenizer's policy).
        batch_size: windows per forward pass; chunk_windows: windows per committed chunk.
        max_windows: only the first N windows of the plan (a quick trial run; recorded, so
            the full job needs a new store).
        snv_every: a scan (`ntengine scan`) instead of embeddings: store the masked LLR of
            every SNV of each window (`snv_llr.window_llr`), masking every snv_every-th token
            per pass, so snv_every passes per window.
    """

    window: int | None = None
    stride: int | None = None
    layer: int | None = None
    reverse_complement: bool = False
    token_embeddings: int | None = None
    tracks: bool = False
    invalid: str = "raise"
    batch_size: int = 8
    chunk_windows: int = 32
    max_windows: int | None = None
    snv_every: int | None = None

    def __post_init__(self):
        if self.batch_size < 1 or self.chunk_windows < 1 or any(
                v is not None and v < 1 for v in (self.max_windows, self.snv_every)):
            raise ValueError("batch_size, chunk_windows, max_windows and snv_every must be >= 1")
        if self.snv_every and (self.layer or self.token_embeddings or self.tracks):
            raise ValueError("a scan (snv_every) stores LLRs only: layer, token_embeddings and tracks do not apply")
        if self.invalid not in ("raise", "N"):
            raise ValueError(f"invalid must be 'raise' or 'N', got {self.invalid!r}")

    def for_model(self, config: NTConfig) -> "EmbedSettings":
        """These settings with the layers checked against `config` and window/stride filled in."""
        for name, value in (("layer", self.layer), ("token_embeddings", self.token_embeddings)):
            if value is not None and not 1 <= value <= config.num_layers:
                raise ValueError(f"{name} {value} out of range 1..{config.num_layers}")
        window = self.window or default_window_bp(config)
        return replace(self, window=window, stride=self.stride or window)

    def params(self, spans) -> dict:
        """What the store records (its "params"); chunking is part of its layout instead."""
        return {"window": self.window, "stride": self.stride, "layer": self.layer, "spans": spans,
                "reverse_complement": self.reverse_complement, "token_embeddings": self.token_embeddings,
                "tracks": self.tracks, "invalid": self.invalid, "batch_size": self.batch_size,
                **({"max_windows": self.max_windows} if self.max_windows else {}),
                **({"snv_every": self.snv_every} if self.snv_every else {})}

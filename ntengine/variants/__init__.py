"""Zero-shot variant effect scores from a VCF: `score_variants` (CLI: ntengine score-variants)."""

"""OUTPUTS.md, the one user-facing page on output formats, names everything the code writes."""

import re
from pathlib import Path

from ntengine.cli import build_parser
from ntengine.genome.store import COORDINATES, DONE, FORMAT, _array_specs
from ntengine.variants.vcf import COLUMNS, INFO, MISMATCH_FILTER, SKIP_INFO

DOC = (Path(__file__).resolve().parents[1] / "OUTPUTS.md").read_text()
EVERY_ARRAY = {"layout": {"windows": 4, "chunk_windows": 2, "embed_dim": 8, "tokens": 5, "token_embeddings": True,
                          "tracks": True}}


def named(name: str) -> bool:
    return re.search(rf"`{re.escape(name)}`|\b{re.escape(name)}\b", DOC) is not None


SCAN = {"layout": {**EVERY_ARRAY["layout"], "token_embeddings": False, "tracks": False, "snv_window": 6}}


def test_every_store_array_vcf_field_and_column_is_documented():
    from ntengine.genome.snv_outputs import parquet_schema

    arrays = [name.split("/")[-1] for name in [*_array_specs(EVERY_ARRAY), *_array_specs(SCAN)]]
    files = ["llr_max_abs.bw", *(f"llr_{b}.bw" for b in "ACGT"), "llr.parquet", "llr.zarr", "not_snv",
             "not_in_scan"]
    names = [*arrays, *files, *parquet_schema().names, *COORDINATES.split(), DONE, FORMAT, *INFO, SKIP_INFO, MISMATCH_FILTER, *COLUMNS]
    assert [n for n in names if not named(n)] == []


def test_help_lists_the_outputs(capsys):
    help_text = {cmd: build_parser()._subparsers._group_actions[0].choices[cmd].format_help()
                 for cmd in ("embed", "score-variants", "scan")}
    assert "OUTPUTS.md" in help_text["scan"] and "llr_max_abs.bw" in help_text["scan"]
    assert "OUTPUTS.md" in help_text["embed"] and all(c in help_text["embed"] for c in COORDINATES.split())
    assert all(f"INFO/{key}" in help_text["score-variants"] for key in INFO)
    assert ", ".join(COLUMNS) in help_text["score-variants"].replace("\n", " ")

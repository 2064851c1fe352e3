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


def test_every_store_array_vcf_field_and_column_is_documented():
    arrays = [name.split("/")[-1] for name in _array_specs(EVERY_ARRAY)]
    names = [*arrays, *COORDINATES.split(), DONE, FORMAT, *INFO, SKIP_INFO, MISMATCH_FILTER, *COLUMNS]
    assert [n for n in names if not named(n)] == []


def test_help_lists_the_outputs(capsys):
    help_text = {cmd: build_parser()._subparsers._group_actions[0].choices[cmd].format_help()
                 for cmd in ("embed", "score-variants")}
    assert "OUTPUTS.md" in help_text["embed"] and all(c in help_text["embed"] for c in COORDINATES.split())
    assert all(f"INFO/{key}" in help_text["score-variants"] for key in INFO)
    assert ", ".join(COLUMNS) in help_text["score-variants"].replace("\n", " ")

"""Checkpoints we write in the HF layout carry tokenizer files: transformers' AutoTokenizer
opens them and tokenizes every official fixture case exactly as InstaDeep's code did."""

import json

import pytest

from ntengine.checkpoint import load_checkpoint, save_checkpoint


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_transformers_tokenizes_our_checkpoints_as_the_official_code(fixtures_dir, tmp_path, version):
    transformers = pytest.importorskip("transformers")
    ckpt = load_checkpoint(fixtures_dir / f"{version}_tiny")
    folder = save_checkpoint(tmp_path / "ckpt", ckpt.config, ckpt.state, layout="hf")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert type(tokenizer).__name__ == "EsmTokenizer"
    cases = [c for c in json.loads((fixtures_dir / f"tokenizer_{version}.json").read_text()) if "ids" in c]
    assert len(cases) > 100
    wrong = [c["sequence"][:30] for c in cases if tokenizer(c["sequence"])["input_ids"] != c["ids"]]
    assert not wrong, wrong[:5]
    assert load_checkpoint(folder).config == ckpt.config  # the extra files do not disturb loading

"""Tests of the ABC byte-level BPE tokenizer (abcmamba.tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoTokenizer

from abcmamba import UserError, cli
from abcmamba.tokenizer import (
    META_FILE,
    chars_per_token,
    check_lossless,
    load_corpus,
    load_corpus_split,
    load_tokenizer,
    train_tokenizer,
)

NON_ASCII = (
    "X:1\nC:Antonín Dvořák «Humoreske» 日本\nM:2/4\nL:1/8\nK:Gb\n|:_G>A _GE|_D2 z2:|\n"
)


@pytest.fixture(scope="module")
def tunes(data_tunes) -> list[str]:
    """120 real folk tunes."""
    return data_tunes("train_folk.abc")


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tunes) -> Path:
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(tunes[:100], vocab_size=600).save_pretrained(str(out))
    return out


def test_lossless_including_non_ascii(saved, tunes):
    tok = load_tokenizer(saved)
    texts = tunes + [NON_ASCII, 'X:1\nK:C\n"Am"!trill!c2 [ceg]|]\n', "  \n\t|"]
    assert check_lossless(tok, texts) == []


def test_special_tokens_and_autotokenizer(saved):
    tok = AutoTokenizer.from_pretrained(str(saved))
    assert tok.is_fast
    assert tok.pad_token is not None and tok.eos_token is not None
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}) == 3
    ids = tok("X:1\nM:6/8\n")["input_ids"]
    # pipeline prompts go through the post-processor: they must start with BOS...
    assert ids[0] == tok.bos_token_id
    # ...and must not end with EOS, or generation would stop at once
    assert ids[-1] != tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "X:1\nM:6/8\n"


def test_abc_pretokenizer_beats_gpt2_regex(tunes):
    train, held_out = tunes[:100], tunes[100:]
    abc = train_tokenizer(train, vocab_size=600, pretokenizer="abc-bars")
    gpt2 = train_tokenizer(train, vocab_size=600, pretokenizer="gpt2")
    assert chars_per_token(abc, held_out) > chars_per_token(gpt2, held_out)


def test_cli_writes_tokenizer_and_metadata(tmp_path, tunes):
    data = tmp_path / "corpus"
    DatasetDict(
        {
            "train": Dataset.from_dict({"abc": tunes[:100]}),
            "validation": Dataset.from_dict({"abc": tunes[100:]}),
        }
    ).save_to_disk(str(data))
    out = tmp_path / "tok"
    rc = cli.main(
        ["tokenizer", "--data", str(data), "--out", str(out), "--vocab-size", "500"]
    )
    assert rc == 0
    meta = json.loads((out / META_FILE).read_text())
    tok = load_tokenizer(out)
    assert meta["vocab_size"] == len(tok) <= 500
    assert meta["chars_per_token_split"] == "validation"
    assert meta["chars_per_token"] == round(chars_per_token(tok, tunes[100:]), 4)
    assert meta["train_tunes"] == 100 and meta["lossless_checked_tunes"] == 20


def test_cli_missing_data_is_one_line(tmp_path, capsys):
    rc = cli.main(
        ["tokenizer", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "t")]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("abcmamba tokenizer: error:") and "\n" not in err


def test_load_corpus_checks_the_splits_asked_for(tmp_path, tunes):
    DatasetDict(
        {
            "train": Dataset.from_dict({"abc": ["", *tunes[:3]]}),
            "test": Dataset.from_dict({"text": tunes[3:5]}),
        }
    ).save_to_disk(str(tmp_path / "corpus"))
    assert len(load_corpus(tmp_path / "corpus", "train")["train"]) == 4
    assert load_corpus_split(tmp_path / "corpus", "train") == tunes[:3]  # no ""
    with pytest.raises(UserError, match="no 'validation' split"):
        load_corpus(tmp_path / "corpus", "validation")
    with pytest.raises(UserError, match="no 'abc' column"):
        load_corpus(tmp_path / "corpus", "test")
    DatasetDict(
        {"train": Dataset.from_dict({"abc": tunes[:2]}), "test": Dataset.from_dict({})}
    ).save_to_disk(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="empty split"):
        load_corpus(tmp_path / "empty", "train")
    Dataset.from_dict({"abc": tunes[:2]}).save_to_disk(str(tmp_path / "one"))
    with pytest.raises(UserError, match="not a DatasetDict"):
        load_corpus(tmp_path / "one")

"""Fixtures shared by the test files: one torch thread, the tunes of a data file,
a small training corpus, the bits per character of a trained run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict, load_from_disk

from abcmamba import RUN_FILE
from abcmamba.abc import read_abc_file, split_tunes
from abcmamba.evaluate.bpc import bits_per_character
from abcmamba.tokenizer import load_tokenizer, train_tokenizer

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """torch on one thread for a module, restored after.

    Tiny models run fastest on one thread, and the test machine's cores are
    shared: two spinning threads on a busy CPU crawl.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_tunes() -> Callable[[str], list[str]]:
    """``data_tunes(name)``: the tunes of tests/data/NAME, split as data_prep splits them."""

    def tunes(name: str) -> list[str]:
        return split_tunes(read_abc_file(DATA / name))

    return tunes


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, data_tunes) -> Path:
    """A data_prep-shaped DatasetDict of real folk tunes with its tokenizer."""
    tunes = data_tunes("train_folk.abc")
    path = tmp_path_factory.mktemp("data") / "corpus"
    DatasetDict(
        {
            "train": Dataset.from_dict({"abc": tunes[:100]}),
            "validation": Dataset.from_dict({"abc": tunes[100:]}),
        }
    ).save_to_disk(str(path))
    (path / "manifest.json").write_text(json.dumps({"sources": ["test fixture"]}))
    train_tokenizer(tunes[:100], vocab_size=512).save_pretrained(
        str(path / "tokenizer")
    )
    return path


@pytest.fixture(scope="session")
def saved_bpc(corpus) -> Callable[[Path], dict]:
    """``saved_bpc(run)``: bits_per_character of RUN/final on the validation tunes
    of ``corpus`` that its run scored, to check the number train.py recorded."""
    from transformers import AutoModelForCausalLM

    def bpc(run: Path) -> dict:
        record = json.loads((run / "final" / RUN_FILE).read_text())
        texts = list(load_from_disk(str(corpus))["validation"]["abc"])
        return bits_per_character(
            AutoModelForCausalLM.from_pretrained(str(run / "final")),
            load_tokenizer(run / "final"),
            texts[: record["metrics"]["val_tunes"]],
            max_length=record["train_config"]["block_size"] + 1,
            progress=False,
        )

    return bpc

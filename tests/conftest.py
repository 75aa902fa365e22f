"""Fixtures shared by the test files: one torch thread, the tunes of a data file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from abcmamba.abc import read_abc_file, split_tunes

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

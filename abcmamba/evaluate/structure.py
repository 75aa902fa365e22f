"""Repetition, structure and plagiarism metrics over ABC text, bar by bar.

Bars are compared as text after removing whitespace and ending numbers, so
two bars are "the same" when they are written the same way. That is exact,
fast and what a copy of a training tune looks like.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from abcmamba.abc.header import parse_header
from abcmamba.abc.text import FIELD_LINE

logger = logging.getLogger(__name__)

# A bar line (`|`, `||`, `|]`, `[|`, `|:`, `:|`, `::`, `:||:`), with an
# optional ending number after it (`|1`, `:|2`, `|[1`, `[1,3`).
_BARLINE = re.compile(r"(?:::|\[\||:*\|+\]?:*)(?:\s*\[?\d+(?:[,\-]\d+)*)?")
_WHITESPACE = re.compile(r"\s+")


def tune_body(abc: str) -> str:
    """The music of a tune: the lines after its header, without field lines."""
    lines = abc[parse_header(abc).end :].splitlines()
    return "\n".join(
        line.split("%", 1)[0] for line in lines if not FIELD_LINE.match(line)
    )


def bar_texts(abc: str) -> list[str]:
    """Bars of the body as copies are compared: no bar lines, endings or spaces.

    Empty bars are dropped. (:func:`abcmamba.abc.split_bars` keeps the bar lines.)
    """
    body = _WHITESPACE.sub("", tune_body(abc))
    return [bar for bar in _BARLINE.split(body) if bar]


def has_repeats(abc: str) -> bool:
    """True if the body has a repeat sign (`|:`, `:|`, `::`) or a numbered ending."""
    body = tune_body(abc)
    return bool(re.search(r"\|:|:\||::", body) or re.search(r"(?:\||\[)[1-9]", body))


def self_similarity(bars: Sequence[str]) -> float:
    """Share of bars that repeat an earlier bar of the same tune (0 = no bar repeats)."""
    if not bars:
        return 0.0
    seen: set[str] = set()
    repeated = 0
    for bar in bars:
        repeated += bar in seen
        seen.add(bar)
    return repeated / len(bars)


def _hash(bar: str) -> int:
    """Stable 64-bit hash of a bar (Python's str hash changes between runs)."""
    return int.from_bytes(
        hashlib.blake2b(bar.encode(), digest_size=8).digest(), "little"
    )


_INLINE_FIELD = re.compile(r"\[[A-Za-z]:[^\]]*\]")
_RESTS_ONLY = re.compile(r"(?:[zxZX][0-9/]*)+")


def _bar_hashes(abc: str) -> list[int | None]:
    """Hash of each bar; None for bars of rests only, which never count as copied.

    Whole-bar rests are common to every multi-voice piece; matching them would
    report long "copies" of silence.
    """
    return [
        None if _RESTS_ONLY.fullmatch(_INLINE_FIELD.sub("", bar)) else _hash(bar)
        for bar in bar_texts(abc)
    ]


@dataclass
class Match:
    """Longest run of consecutive bars a sample shares with one training tune."""

    length: int  # bars
    tune_index: int  # index into the training tunes, -1 when nothing matched
    sample_start: int
    tune_start: int


class BarIndex:
    """Index of training tunes by bar n-grams, to find copied phrases quickly.

    Every run of ``n`` consecutive bars of every training tune is stored under
    its hash; a sample's n-grams are looked up and each hit extended forward,
    only from hits that cannot be extended backward, so the work per sample is
    about the number of hits plus the length of the matches.
    """

    def __init__(self, tunes: Iterable[str], n: int = 2) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        self.n = n
        self.bars: list[list[int | None]] = []
        self.ngrams: dict[tuple[int, ...], list[tuple[int, int]]] = defaultdict(list)
        self.single: set[int] = set()
        for t, abc in enumerate(tunes):
            hashes = _bar_hashes(abc)
            self.bars.append(hashes)
            self.single.update(h for h in hashes if h is not None)
            for j in range(len(hashes) - n + 1):
                gram = tuple(hashes[j : j + n])
                if None not in gram:
                    self.ngrams[gram].append((t, j))

    def __len__(self) -> int:
        return len(self.bars)

    def longest_match(self, abc: str) -> Match:
        """Longest sequence of consecutive bars of `abc` found in any training tune."""
        sample = _bar_hashes(abc)
        best = Match(0, -1, -1, -1)
        n = self.n
        for i in range(len(sample) - n + 1):
            for t, j in self.ngrams.get(tuple(sample[i : i + n]), ()):
                tune = self.bars[t]
                if (
                    i > 0
                    and j > 0
                    and sample[i - 1] is not None
                    and sample[i - 1] == tune[j - 1]
                ):
                    continue  # found already from an earlier start
                length = n
                while (
                    i + length < len(sample)
                    and j + length < len(tune)
                    and sample[i + length] is not None
                    and sample[i + length] == tune[j + length]
                ):
                    length += 1
                if length > best.length:
                    best = Match(length, t, i, j)
        if best.length == 0 and n > 1 and any(h in self.single for h in sample):
            # shorter than one n-gram: a shared single bar, but where is not tracked
            best = Match(1, -1, -1, -1)
        return best


def structure_summary(
    bars_per_tune: Sequence[Sequence[str]], repeats: Sequence[bool]
) -> dict:
    """Share with repeats, mean bar-level self-similarity, and the bar counts."""
    count = len(bars_per_tune)
    if count == 0:
        return {"count": 0}
    similarity = [self_similarity(bars) for bars in bars_per_tune]
    lengths = [len(bars) for bars in bars_per_tune]
    return {
        "count": count,
        "share_with_repeats": sum(repeats) / count,
        "self_similarity_mean": sum(similarity) / count,
        "n_bars_mean": sum(lengths) / count,
        "n_bars": lengths,
        "self_similarity": similarity,
    }

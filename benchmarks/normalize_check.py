"""Does normalization keep the music? `python benchmarks/normalize_check.py`.

For every single-voice tune of music21's folk corpus that normalizes and
validates, compare the (pitches, quarterLength) sequence music21 reads from
the original text with the one it reads from the normalized text, and print
how many agree, with the first differences. Slow (two music21 parses per
tune): use --step to check every k-th tune, --num-proc to use more cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from abcmamba.abc import (
    AbcError,
    normalize,
    read_abc_file,
    split_tunes,
    validate,
)  # noqa: E402
from data_prep.sources import music21_corpus_dir  # noqa: E402


def music(abc: str) -> list[tuple]:
    import music21

    score = music21.converter.parse(abc, format="abc")
    return [
        (tuple(p.midi for p in n.pitches), float(n.quarterLength))
        for n in score.flatten().notes
    ]


def check(tune: str) -> str | None:
    """None when skipped, "same", or a short description of the difference."""
    try:
        result = normalize(tune)
    except AbcError:
        return None
    if result.n_voices != 1 or validate(result.abc):
        return None
    try:
        before, after = music(tune), music(result.abc)
    except Exception as err:  # music21 fails on some originals
        return f"parse error: {type(err).__name__}"
    if before == after:
        return "same"
    at = next(
        (i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b), None
    )
    return f"differs at note {at} ({len(before)} vs {len(after)} notes)"


def main(argv: list[str] | None = None) -> int:
    """Check the corpus and print the agreement rate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--step", type=int, default=1, help="check every k-th tune")
    parser.add_argument("--num-proc", type=int, default=2)
    args = parser.parse_args(argv)
    tunes = []
    for path in sorted(music21_corpus_dir().rglob("*.abc")):
        if "josquin" not in path.parts:
            tunes += split_tunes(read_abc_file(path))
    tunes = tunes[:: args.step]
    with multiprocessing.Pool(args.num_proc) as pool:
        results = pool.map(check, tunes, chunksize=50)
    checked = [r for r in results if r is not None]
    same = sum(r == "same" for r in checked)
    print(
        f"tunes: {len(tunes)}, single-voice valid: {len(checked)}, identical: {same} "
        f"({same / max(1, len(checked)):.2%})"
    )
    for tune, r in zip(tunes, results, strict=True):
        if r not in (None, "same"):
            print(f"- {r}: {tune.splitlines()[1][:60]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Agreement of our ABC -> MIDI with abc2midi, per collection.

Collections: a sample of music21's folk corpus, the ABC 2.1 conformance suite
(tests/data/conformance.abc) and any ABC files or folders given with
``--files`` (real-world collections: multi-voice scores, directives, ...).
Prints, for each, the share of tunes whose (onset, pitch, duration) note lists
are identical, and every mismatch counted by its reason class.  Tunes abc2midi
cannot play (no MIDI: a bare ``K:``, ...) have no reference and are counted
apart; a tune in which neither plays a note is identical.  Run by hand:
``python benchmarks/abc2midi_agreement.py --n 1000 --files my_abc_folder/``.
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import time
from pathlib import Path

import music21
from tqdm import tqdm

from abcmamba.abc.text import split_tunes
from abcmamba.convert.reference import abc2midi_available, compare_with_abc2midi

CORPUS_DIR = Path(music21.__file__).parent / "corpus"
SUITE = Path(__file__).resolve().parents[1] / "tests" / "data" / "conformance.abc"
COLLECTIONS = (
    "essenFolksong",
    "ryansMammoth",
    "oneills1850",
    "airdsAirs",
    "miscFolk",
    "nottingham-dataset",
)


def corpus_tunes(collections_: tuple[str, ...] = COLLECTIONS) -> list[tuple[str, str]]:
    """(name, abc) of every tune in the given music21 corpus collections."""
    tunes = []
    for name in collections_:
        for path in sorted((CORPUS_DIR / name).rglob("*.abc")):
            text = path.read_text(encoding="latin-1")
            for i, chunk in enumerate(re.split(r"(?m)^(?=X:)", text)):
                if chunk.startswith("X:") and "K:" in chunk:
                    tunes.append((f"{name}/{path.name}#{i}", chunk.strip() + "\n"))
    return tunes


def file_tunes(paths: list[Path]) -> list[tuple[str, str]]:
    """(name, abc) of every tune in ABC files, or in the .abc files under folders."""
    tunes = []
    for path in paths:
        files = sorted(path.rglob("*.abc")) if path.is_dir() else [path]
        for file in files:
            text = file.read_text(encoding="utf-8", errors="replace")
            for i, tune in enumerate(split_tunes(text)):
                tunes.append((f"{file.name}#{i}", tune))
    return tunes


def reason_class(reason: str) -> str:
    """Reason without the numbers, to count mismatch kinds."""
    return re.sub(r"[-\d./]+", "N", reason)


def measure(title: str, tunes: list[tuple[str, str]], literal: bool, show: int) -> str:
    """Compare every tune; returns the table row and prints the reasons."""
    reasons: collections.Counter[str] = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    start = time.perf_counter()
    identical = unplayable = 0
    for name, abc in tqdm(tunes, desc=title, mininterval=5):
        result = compare_with_abc2midi(abc, literal=literal)
        if result:
            identical += 1
            continue
        unplayable += result.reference_failed
        kind = reason_class(result.reason)
        reasons[kind] += 1
        if len(examples[kind]) < show:
            examples[kind].append(f"{name}: {result.reason}")
    elapsed = time.perf_counter() - start
    compared = len(tunes) - unplayable
    print(
        f"\n{title}: {identical}/{compared} identical, {unplayable} that abc2midi "
        f"cannot play left out ({elapsed:.0f} s)"
    )
    for kind, count in reasons.most_common():
        print(f"{count:5d}  {kind}")
        for example in examples[kind]:
            print(f"         {example}")
    share = identical / max(compared, 1)
    return f"| {title} | {len(tunes)} | {unplayable} | {identical} | {share:.1%} |"


def main(argv: list[str] | None = None) -> int:
    """Measure each collection and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=1000, help="folk tunes to sample (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--files", type=Path, nargs="*", default=[], help="ABC files or folders"
    )
    parser.add_argument(
        "--literal",
        action="store_true",
        help="give abc2midi the tune as written (its ornament/staccato/swing "
        "realisation counts as a mismatch)",
    )
    parser.add_argument("--show", type=int, default=3, help="examples per reason")
    args = parser.parse_args(argv)
    if not abc2midi_available():
        print("abc2midi not found (Debian package abcmidi)")
        return 2
    missing = [str(p) for p in args.files if not p.exists()]
    if missing:
        print(f"no such file: {', '.join(missing)}")
        return 2
    folk = corpus_tunes()
    random.Random(args.seed).shuffle(folk)
    collections_ = [("music21 folk corpus", folk[: args.n])] if args.n > 0 else []
    collections_.append(("ABC 2.1 conformance suite", file_tunes([SUITE])))
    if args.files:
        collections_.append(("--files", file_tunes(args.files)))
    rows = [measure(t, tunes, args.literal, args.show) for t, tunes in collections_]
    print(
        "\n| collection | tunes | abc2midi cannot play | identical | agreement |"
        "\n| --- | --- | --- | --- | --- |"
    )
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

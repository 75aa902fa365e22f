"""Agreement of our ABC -> MIDI with abc2midi on music21's folk corpus.

Prints the share of tunes whose (onset, pitch, duration) note lists are
identical, and the mismatch reasons.  Run by hand:
``python benchmarks/abc2midi_agreement.py --n 1000``.
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

from abcmamba.convert.reference import abc2midi_available, compare_with_abc2midi

CORPUS_DIR = Path(music21.__file__).parent / "corpus"
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


def reason_class(reason: str) -> str:
    """Reason without the numbers, to count mismatch kinds."""
    return re.sub(r"[-\d./]+", "N", reason)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="tunes to sample")
    parser.add_argument("--seed", type=int, default=0)
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
    tunes = corpus_tunes()
    random.Random(args.seed).shuffle(tunes)
    tunes = tunes[: args.n]
    reasons: collections.Counter[str] = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    start = time.perf_counter()
    identical = 0
    for name, abc in tqdm(tunes, desc="tunes"):
        result = compare_with_abc2midi(abc, literal=args.literal)
        if result:
            identical += 1
            continue
        kind = reason_class(result.reason)
        reasons[kind] += 1
        if len(examples[kind]) < args.show:
            examples[kind].append(f"{name}: {result.reason}")
    elapsed = time.perf_counter() - start
    print(
        f"tunes: {len(tunes)}  identical: {identical}  "
        f"agreement: {identical / max(len(tunes), 1):.2%}  ({elapsed:.0f} s)"
    )
    for kind, count in reasons.most_common():
        print(f"{count:5d}  {kind}")
        for example in examples[kind]:
            print(f"         {example}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

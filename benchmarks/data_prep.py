"""Throughput of data_prep per source type, on one process: `python benchmarks/data_prep.py`.

Prints a markdown table (items/s and tunes kept/s) for ABC text, MusicXML,
Humdrum and MIDI inputs taken from music21's bundled corpus (MIDI files are
rendered from folk tunes with abc2midi). Run it on an idle machine: timings
taken while the load average is above the core count are flagged.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from abcmamba.abc import read_abc_file, split_tunes  # noqa: E402
from data_prep.build import process_chunk  # noqa: E402
from data_prep.sources import Item, music21_corpus_dir  # noqa: E402


def abc_items(n: int) -> list[Item]:
    root = music21_corpus_dir()
    tunes = []
    for path in sorted((root / "ryansMammoth").glob("*.abc")) + sorted(
        (root / "essenFolksong").glob("*.abc")
    ):
        tunes += split_tunes(read_abc_file(path))
    step = max(1, len(tunes) // n)
    return [
        Item("bench", f"t#{i}", "abc", text=t) for i, t in enumerate(tunes[::step][:n])
    ]


def file_items(pattern: str, fmt: str, n: int) -> list[Item]:
    files = sorted(music21_corpus_dir().glob(pattern))
    step = max(1, len(files) // n)
    return [Item("bench", f.name, fmt, path=str(f)) for f in files[::step][:n]]


def midi_items(n: int, tmp: Path) -> list[Item]:
    items = []
    for i, item in enumerate(abc_items(n)):
        src = tmp / f"t{i}.abc"
        src.write_text(item.text)
        subprocess.run(
            ["abc2midi", str(src), "-o", str(tmp / f"t{i}.mid"), "-quiet"],
            capture_output=True,
        )
        if (tmp / f"t{i}.mid").exists():
            items.append(
                Item("bench", f"t{i}.mid", "midi", path=str(tmp / f"t{i}.mid"))
            )
    return items


def measure(items: list[Item], check_abc2midi: bool) -> tuple[float, float, float]:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    records, _ = process_chunk(items, check_abc2midi=check_abc2midi)
    seconds = time.perf_counter() - start
    return len(items) / seconds, len(records) / seconds, load


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=40, help="score files per type")
    parser.add_argument("--n-abc", type=int, default=1000, help="ABC tunes")
    args = parser.parse_args(argv)
    has_abc2midi = shutil.which("abc2midi") is not None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("ABC text (folk)", abc_items(args.n_abc)),
            ("MusicXML (.mxl, Bach)", file_items("bach/*.mxl", "musicxml", args.n)),
            (
                "Humdrum (.krn, Palestrina)",
                file_items("palestrina/*.krn", "humdrum", args.n),
            ),
        ]
        if has_abc2midi:
            cases.append(("MIDI (rendered folk)", midi_items(args.n, Path(tmp))))
        for name, items in cases:
            per_s, kept_s, load = measure(items, has_abc2midi)
            rows.append((name, len(items), per_s, kept_s, load))
    cores = os.cpu_count() or 1
    print(
        f"| source type | items | items/s | kept tunes/s | load avg (of {cores} cores) |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, n, per_s, kept_s, load in rows:
        flag = " (busy machine)" if load > cores else ""
        print(f"| {name} | {n} | {per_s:.1f} | {kept_s:.1f} | {load:.1f}{flag} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m data_prep [SOURCE ...] --out DIR`: build the normalized ABC corpus.

SOURCE is `music21:folk`, `music21:classical`, a file or folder of .abc,
.mid/.midi, .musicxml/.xml/.mxl or .krn files, or `hf:OWNER/NAME[:SPLIT][:COLUMN]`
(a column of ABC text, score bytes or score paths), optionally after labels:
`composer=Chopin:FOLDER`. A folder's metadata.csv/.jsonl labels its files.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import shlex
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path

from abcmamba import UserError

log = logging.getLogger("data_prep")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of `python -m data_prep`."""
    from data_prep.labels import LABEL_FIELDS
    from data_prep.sources import DEFAULT_SOURCES

    labels = ", ".join(LABEL_FIELDS)

    parser = argparse.ArgumentParser(
        prog="python -m data_prep",
        description="Turn ABC, MIDI, MusicXML, Humdrum and Hugging Face sources into one "
        "normalized ABC corpus (a datasets.DatasetDict with train/validation/test splits, "
        "manifest.json and rejects.jsonl).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        default=DEFAULT_SOURCES,
        help="music21:folk, music21:classical, a file or folder, or "
        "hf:OWNER/NAME[:SPLIT][:COLUMN] (ABC text, MIDI/MusicXML bytes or paths), "
        f"optionally prefixed by labels LABEL=VALUE: ({labels}), e.g. "
        "composer=Chopin:path/to/folder. A metadata.csv or metadata.jsonl in a "
        "folder (a file_name column relative to it, plus label columns) labels each "
        "file; a dataset's label columns label each row. composer is written as C:, "
        "rhythm as R:, title only in the title column",
    )
    parser.add_argument(
        "--label-column",
        action="append",
        metavar="LABEL=COLUMN",
        help=f"read LABEL ({labels}) from this metadata or dataset column "
        "(default: the column named like the label); repeatable",
    )
    parser.add_argument(
        "--labels-win",
        action="store_true",
        help="labels replace the file's own composer/title/rhythm; without it a "
        "label fills only a field the file leaves empty. Conflicts are logged and "
        "counted in manifest.json either way",
    )
    parser.add_argument("--out", default="data/corpus", help="output folder")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output folder"
    )
    parser.add_argument(
        "--num-proc",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes for conversion",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="take at most this many tunes/files from each source (for trials)",
    )
    parser.add_argument(
        "--no-abc2midi-check",
        dest="check_abc2midi",
        action="store_false",
        help="skip re-checking kept tunes with abc2midi (used when on PATH)",
    )
    parser.add_argument(
        "--check-music21",
        action="store_true",
        help="also re-parse every kept tune with music21 (slow: ~50 ms a tune)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run data preparation; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return _run(args, argv)
    except UserError as err:
        print(f"data_prep: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from data_prep.build import dedupe, process_items, save_corpus
    from data_prep.labels import parse_label_columns
    from data_prep.sources import scan_source

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace it")
    start = time.time()
    items, rejects = [], []
    skipped: Counter = Counter()
    given: dict[str, int] = {}
    labelling: dict[str, dict] = {}
    label_columns = parse_label_columns(args.label_column)
    for spec in args.sources:
        scan = scan_source(spec, label_columns)
        if scan.labels:
            labelling[spec] = scan.labels
        found = scan.items[: args.limit] if args.limit else scan.items
        log.info(
            "%s: %d items (%d files skipped)", spec, len(found), len(scan.skipped_files)
        )
        items += found
        given[spec] = len(found)
        skipped.update(scan.skipped)
        rejects += [
            {"source": spec, "file": f, "tune_index": None, "reason": r}
            for f, r in scan.skipped_files
        ]
    if not items:
        raise UserError(f"no tunes found in {', '.join(args.sources)}")

    records, failed = process_items(
        items,
        num_proc=max(1, args.num_proc),
        check_abc2midi=args.check_abc2midi,
        check_music21=args.check_music21,
        labels_win=args.labels_win,
    )
    records, duplicates = dedupe(records)
    _report_conflicts(records, labelling, args.labels_win)
    rejects += failed + duplicates
    if not records:
        raise UserError(
            f"no usable tunes in {', '.join(args.sources)} ({len(rejects)} rejected; "
            "see the reasons with --verbose)"
        )
    manifest = {
        "command": " ".join(
            ["python -m data_prep", *map(shlex.quote, argv or sys.argv[1:])]
        ),
        "sources": args.sources,
        "items_given": given,
        "skipped_file_types": dict(skipped),
        "labels": labelling,
        "checks": {
            "abcmamba.abc.validate": True,
            "abc2midi": args.check_abc2midi,
            "music21": args.check_music21,
        },
        "versions": _versions(),
    }
    counts = save_corpus(records, out, manifest, rejects, overwrite=args.overwrite)
    minutes = (time.time() - start) / 60
    log.info(
        "wrote %s: %s tunes (%s), %d rejected, in %.1f min",
        out,
        sum(counts.values()),
        ", ".join(f"{k} {v}" for k, v in counts.items()),
        len(rejects),
        minutes,
    )
    return 0


def _report_conflicts(
    records: list[dict], labelling: dict[str, dict], labels_win: bool
) -> None:
    """Log labels that disagree with their file and count them per source and label."""
    kept = "label's" if labels_win else "file's"
    n = 0
    for record in records:
        for name, have, label in record["_conflicts"]:
            n += 1
            if n <= 10:
                log.warning(
                    "%s: the file says %s %r, its label %r; kept the %s",
                    record["id"],
                    name,
                    have,
                    label,
                    kept,
                )
            counts = labelling.setdefault(record["source"], {}).setdefault(
                "conflicts", {}
            )
            counts[name] = counts.get(name, 0) + 1
    if n:
        log.warning(
            "%d label conflicts in all (counted in manifest.json; --labels-win "
            "makes labels replace the file's values)",
            n,
        )


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("abcmamba", "music21", "datasets", "pyparsing"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


if __name__ == "__main__":
    raise SystemExit(main())

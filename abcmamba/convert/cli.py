"""`abcmamba convert FILE... [--to mid,musicxml,svg,png] [--out DIR]`."""

from __future__ import annotations

import argparse
import logging
import re
import unicodedata
from pathlib import Path

from abcmamba import UserError
from abcmamba.abc.text import read_abc_file, split_tunes
from abcmamba.convert.abctext import tune_title
from abcmamba.convert.render import abc_to_midi, abc_to_musicxml, abc_to_svg, svg_to_png
from abcmamba.convert.scores import (
    DEFAULT_TIMEOUT_S,
    SCORE_SUFFIXES,
    ConversionError,
    score_file_to_abc,
    time_limit,
)

logger = logging.getLogger(__name__)

FORMATS = ("mid", "musicxml", "svg", "png")
ABC_SUFFIXES = (".abc",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `convert` subcommand's arguments."""
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help=".abc, .mid/.midi, .musicxml/.xml/.mxl, .krn",
    )
    parser.add_argument(
        "--to",
        default="mid,musicxml,svg,png",
        help="formats for ABC input, comma-separated from: " + ",".join(FORMATS),
    )
    parser.add_argument("--out", default=".", help="output folder")


def slugify(text: str, max_len: int = 60) -> str:
    """File-name-safe ASCII slug of a title ('' if nothing is left)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return text[:max_len].rstrip("-")


def _tune_stem(tune: str, index: int, file_stem: str, used: set[str]) -> str:
    stem = slugify(tune_title(tune)) or f"{file_stem}-{index + 1}"
    unique, n = stem, 2
    while unique in used:
        unique, n = f"{stem}-{n}", n + 1
    used.add(unique)
    return unique


def convert_abc_tune(tune: str, stem: Path, formats: list[str]) -> list[Path]:
    """Write one tune in each format as stem.<ext>; returns the files written."""
    written = []
    for fmt in formats:
        if fmt == "mid":
            written.append(abc_to_midi(tune, stem.with_suffix(".mid")))
        elif fmt == "musicxml":
            written.append(abc_to_musicxml(tune, stem.with_suffix(".musicxml")))
        elif fmt == "svg" or (fmt == "png" and "svg" not in formats):
            written.append(abc_to_svg(tune, stem.with_suffix(".svg")))
            if fmt == "png":
                written.append(svg_to_png(written.pop(), stem.with_suffix(".png")))
                stem.with_suffix(".svg").unlink()
        if fmt == "png" and "svg" in formats:
            written.append(
                svg_to_png(stem.with_suffix(".svg"), stem.with_suffix(".png"))
            )
    return written


def _parse_formats(spec: str) -> list[str]:
    formats = [f.strip().lower() for f in spec.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UserError(
            f"unknown --to format {','.join(unknown) or spec!r}; choose from {','.join(FORMATS)}"
        )
    # svg before png so the png is made from the svg just written.
    return sorted(set(formats), key=FORMATS.index)


def run(args: argparse.Namespace) -> int:
    """Convert every tune of every file; exit 1 if any tune failed."""
    formats = _parse_formats(args.to)
    paths = [Path(f) for f in args.files]
    for path in paths:
        if not path.is_file():
            raise UserError(f"no such file: {path}")
        if path.suffix.lower() not in ABC_SUFFIXES + SCORE_SUFFIXES:
            raise UserError(
                f"{path}: unsupported file type; expected .abc, "
                + ", ".join(SCORE_SUFFIXES)
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, str]] = []  # file, tune, status, outputs
    used: set[str] = set()
    for path in paths:
        if path.suffix.lower() in ABC_SUFFIXES:
            tunes = split_tunes(read_abc_file(path))
            if not tunes:
                logger.error("%s: no tunes (no X: line)", path)
                rows.append((path.name, "-", "failed", "no tunes"))
            for i, tune in enumerate(tunes):
                label = f"{i + 1}" + (
                    f" ({tune_title(tune)})" if tune_title(tune) else ""
                )
                stem = out / _tune_stem(tune, i, path.stem, used)
                try:
                    with time_limit(DEFAULT_TIMEOUT_S):
                        written = convert_abc_tune(tune, stem, formats)
                except Exception as err:  # one bad tune must not stop the others
                    reason = (
                        str(err)
                        if isinstance(err, ConversionError)
                        else (f"{type(err).__name__}: {err}")
                    )
                    logger.error("%s: tune %s: %s", path, label, reason)
                    rows.append((path.name, label, "failed", reason[:60]))
                    continue
                rows.append((path.name, label, "ok", " ".join(p.name for p in written)))
        else:
            try:
                abcs = score_file_to_abc(path)
            except ConversionError as err:
                logger.error("%s: %s", path, err)
                rows.append((path.name, "-", "failed", str(err)[:60]))
                continue
            for i, abc in enumerate(abcs):
                name = path.stem if len(abcs) == 1 else f"{path.stem}-{i + 1}"
                target = out / f"{name}.abc"
                target.write_text(abc, encoding="utf-8")
                rows.append((path.name, str(i + 1), "ok", target.name))
    _print_table(rows)
    return 1 if any(row[2] == "failed" for row in rows) else 0


def _print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("file", "tune", "status", "output")
    widths = [min(40, max(len(str(r[i])) for r in [header, *rows])) for i in range(3)]
    for row in [header, *rows]:
        cells = [str(c)[: widths[i]].ljust(widths[i]) for i, c in enumerate(row[:3])]
        print("  ".join(cells) + "  " + row[3])
    failed = sum(row[2] == "failed" for row in rows)
    print(f"{len(rows) - failed} converted, {failed} failed")

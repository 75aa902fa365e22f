"""Resolve SOURCE arguments into work items: ABC tunes and score files."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from abcmamba import UserError
from abcmamba.abc import read_abc_file, split_tunes

log = logging.getLogger(__name__)

ABC_SUFFIXES = {".abc"}
SCORE_SUFFIXES = {
    ".mid": "midi",
    ".midi": "midi",
    ".musicxml": "musicxml",
    ".xml": "musicxml",
    ".mxl": "musicxml",
    ".krn": "humdrum",
}
DEFAULT_SOURCES = ["music21:folk", "music21:classical"]
# music21 corpus folders that are not classical repertoire (tests, pop lead sheets).
_NOT_CLASSICAL = {
    "demos",
    "theoryExercises",
    "leadSheet",
    "__pycache__",
    "_metadataCache",
}
_POLYPHONIC_ABC = {"josquin"}


@dataclass
class Item:
    """One unit of work: an ABC tune given as text, or a score file to convert."""

    source: str
    ref: str  # file path (relative where possible) plus tune index
    origin_format: str
    text: str | None = None
    path: str | None = None
    composer: str = ""


@dataclass
class SourceScan:
    """What a source yielded, and what it skipped."""

    items: list[Item] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # file suffix -> count
    skipped_files: list[tuple[str, str]] = field(default_factory=list)


def music21_corpus_dir() -> Path:
    """Folder of the corpus bundled inside the music21 package."""
    import music21.corpus

    return Path(music21.corpus.__file__).parent


def scan_source(spec: str) -> SourceScan:
    """Expand one SOURCE argument; raises UserError for one that cannot be read."""
    if spec == "music21:folk":
        return _scan_music21(spec, folk=True)
    if spec == "music21:classical":
        return _scan_music21(spec, folk=False)
    if spec.startswith("music21:"):
        raise UserError(
            f"unknown source {spec!r}: use music21:folk or music21:classical"
        )
    if spec.startswith("hf:"):
        return _scan_hf(spec)
    path = Path(spec)
    if not path.exists():
        raise UserError(f"no such file or folder: {spec}")
    scan = SourceScan()
    files = (
        sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    )
    for file in files:
        _add_file(scan, spec, file, path if path.is_dir() else path.parent)
    return scan


def _add_file(
    scan: SourceScan, source: str, file: Path, root: Path, composer: str = ""
) -> None:
    suffix = file.suffix.lower()
    rel = str(file.relative_to(root)) if file.is_relative_to(root) else str(file)
    if suffix in ABC_SUFFIXES:
        try:
            text = read_abc_file(file)
        except OSError as err:
            scan.skipped_files.append((rel, f"cannot read: {err.strerror}"))
            return
        tunes = split_tunes(text)
        if not tunes:
            scan.skipped_files.append((rel, "no tune (no X: or K: line) in ABC file"))
        for i, tune in enumerate(tunes):
            scan.items.append(
                Item(source, f"{rel}#{i}", "abc", text=tune, composer=composer)
            )
    elif suffix in SCORE_SUFFIXES:
        scan.items.append(
            Item(source, rel, SCORE_SUFFIXES[suffix], path=str(file), composer=composer)
        )
    elif not file.name.startswith("."):
        scan.skipped[suffix or file.name] += 1
        scan.skipped_files.append(
            (rel, f"unsupported file type {suffix or file.name!r}")
        )


def _scan_music21(spec: str, folk: bool) -> SourceScan:
    root = music21_corpus_dir()
    scan = SourceScan()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name in _NOT_CLASSICAL:
            continue
        for file in sorted(folder.rglob("*")):
            suffix = file.suffix.lower()
            is_abc = suffix in ABC_SUFFIXES
            if is_abc and folder.name not in _POLYPHONIC_ABC:
                if folk:
                    _add_file(scan, spec, file, root)
            elif not folk and (is_abc or suffix in SCORE_SUFFIXES):
                _add_file(scan, spec, file, root, composer=_composer_name(folder.name))
    return scan


def _composer_name(folder: str) -> str:
    names = {
        "cpebach": "C. P. E. Bach",
        "schumann_clara": "Clara Schumann",
        "schumann_robert": "Robert Schumann",
        "johnson_j_r": "J. Rosamond Johnson",
        "trecento": "Trecento",
        "luca": "Gregorio Luca",
    }
    return names.get(folder, folder.replace("_", " ").title())


def _scan_hf(spec: str) -> SourceScan:
    """`hf:OWNER/NAME[:SPLIT][:COLUMN]`, or `hf:PATH` of a save_to_disk folder."""
    import datasets

    parts = spec[3:].split(":")
    name, split = parts[0], (parts[1] if len(parts) > 1 and parts[1] else None)
    column = parts[2] if len(parts) > 2 else None
    try:
        if Path(name).exists():
            data = datasets.load_from_disk(name)
        else:
            data = datasets.load_dataset(name, split=split)
    except Exception as err:  # the datasets library raises many types here
        first = (
            str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        )
        raise UserError(f"cannot load Hugging Face dataset {name!r}: {first}") from None
    if isinstance(data, datasets.DatasetDict):
        splits = [split] if split else list(data)
        if split and split not in data:
            raise UserError(f"{name!r} has no split {split!r} (has {', '.join(data)})")
    else:
        data, splits = {split or "data": data}, [split or "data"]
    scan = SourceScan()
    for part in splits:
        table = data[part]
        col = column or _abc_column(table.column_names)
        if col not in table.column_names:
            raise UserError(
                f"{name!r} has no column {col!r} (columns: {', '.join(table.column_names)})"
            )
        for row, text in enumerate(table[col]):
            for i, tune in enumerate(_tunes_in_text(text or "")):
                scan.items.append(Item(spec, f"{part}/{row}#{i}", "abc", text=tune))
            if not (text or "").strip():
                scan.skipped_files.append((f"{part}/{row}", "empty ABC text"))
    return scan


def _abc_column(columns: list[str]) -> str:
    for candidate in ("abc", "abc notation", "abc_notation", "ABC", "text", "content"):
        if candidate in columns:
            return candidate
    raise UserError(
        f"no ABC column found (columns: {', '.join(columns)}); name it: hf:NAME:SPLIT:COLUMN"
    )


def _tunes_in_text(text: str) -> Iterator[str]:
    tunes = split_tunes(text)
    if not tunes and text.strip():
        yield "X:1\n" + text  # a row holding one tune without its X: line
    yield from tunes

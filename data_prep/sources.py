"""Resolve SOURCE arguments into work items: ABC tunes and score files."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from abcmamba import UserError
from abcmamba.abc import read_abc_file, split_tunes
from data_prep.labels import (
    METADATA_NAMES,
    parse_label_columns,
    read_metadata,
    split_label_prefix,
)

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
_REPORT_NAMES = 20  # file names listed in the manifest per kind of label problem


@dataclass
class Item:
    """One unit of work: an ABC tune given as text, or a score file to convert.

    A score is a file at `path`, or `data` (its bytes, from a dataset row) with
    `path` naming it only for its suffix.
    """

    source: str
    ref: str  # file path (relative where possible) plus tune index
    origin_format: str
    text: str | None = None
    path: str | None = None
    composer: str = ""  # the music21 corpus's spelling: always wins
    labels: dict[str, str] = field(default_factory=dict)  # see data_prep.labels
    data: bytes | None = None


@dataclass
class SourceScan:
    """What a source yielded, and what it skipped."""

    items: list[Item] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # file suffix -> count
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    labels: dict = field(default_factory=dict)  # what labelling did, for the manifest


def music21_corpus_dir() -> Path:
    """Folder of the corpus bundled inside the music21 package."""
    import music21.corpus

    return Path(music21.corpus.__file__).parent


def scan_source(spec: str, label_columns: dict[str, str] | None = None) -> SourceScan:
    """Expand one SOURCE argument; raises UserError for one that cannot be read.

    `label_columns` maps labels (composer, title, rhythm) to the metadata or
    dataset columns that hold them (by default, columns of the same name).
    """
    labels, rest = split_label_prefix(spec)
    columns = label_columns or parse_label_columns(None)
    if rest == "music21:folk":
        scan = _scan_music21(spec, folk=True)
    elif rest == "music21:classical":
        scan = _scan_music21(spec, folk=False)
    elif rest.startswith("music21:"):
        raise UserError(
            f"unknown source {spec!r}: use music21:folk or music21:classical"
        )
    elif rest.startswith("hf:"):
        from data_prep.hf import scan_hf

        scan = scan_hf(spec, rest, columns)
    elif not Path(rest).exists():
        raise UserError(f"no such file or folder: {rest}")
    else:
        scan = _scan_path(spec, Path(rest), columns)
    if labels:
        for item in scan.items:  # a file's own row is more specific than the source's
            item.labels = {**labels, **item.labels}
        scan.labels = {"labels": labels, **scan.labels}
    return scan


def _scan_path(spec: str, path: Path, columns: dict[str, str]) -> SourceScan:
    """A file, or a folder walked recursively with its metadata files' labels."""
    scan = SourceScan()
    if not path.is_dir():
        add_file(scan, spec, path, path.parent)
        return scan
    files = sorted(p for p in path.rglob("*") if p.is_file())
    metadata = [f for f in files if f.name in METADATA_NAMES]
    rows = _metadata_rows(metadata, path, columns)
    labelled, without_row = 0, []
    for file in files:
        if file in metadata:
            continue
        row = rows.pop(file.resolve(), None)
        before = len(scan.items)
        add_file(scan, spec, file, path, labels=row[0] if row else {})
        if metadata and len(scan.items) > before:
            if row:
                labelled += 1
            else:
                without_row.append(str(file.relative_to(path)))
    missing, root = [], path.resolve()
    for target, (_, where) in rows.items():
        name = str(target.relative_to(root)) if target.is_relative_to(root) else where
        scan.skipped_files.append((name, f"{where} names a file that is not there"))
        missing.append(name)
    if metadata:
        scan.labels = {
            "metadata_files": [str(f.relative_to(path)) for f in metadata],
            "labelled_files": labelled,
            "files_without_metadata_row": _named_count(without_row),
            "metadata_rows_without_file": _named_count(missing),
        }
        _warn_names(
            spec, without_row, "files have no metadata row and carry no labels from it"
        )
        _warn_names(spec, missing, "metadata rows name files that are not there")
    return scan


def _warn_names(spec: str, names: list[str], what: str) -> None:
    """Warn "SPEC: N WHAT: the first five names", if there are any names."""
    if names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        log.warning("%s: %d %s: %s", spec, len(names), what, shown)


def _metadata_rows(
    metadata: list[Path], root: Path, columns: dict[str, str]
) -> dict[Path, tuple[dict[str, str], str]]:
    """Resolved file path -> (labels, "metadata.csv line N") over all metadata files."""
    folders = [f.parent for f in metadata]
    if len(set(folders)) < len(folders):
        raise UserError(
            f"{folders[0]} holds both metadata.csv and metadata.jsonl; keep one"
        )
    rows: dict[Path, tuple[dict[str, str], str]] = {}
    for meta in metadata:
        rel = meta.relative_to(root)
        for name, line, labels in read_metadata(meta, columns):
            target = (meta.parent / name).resolve()
            if target in rows:
                raise UserError(
                    f"{name} has two metadata rows: {rows[target][1]}, {rel}"
                )
            rows[target] = (labels, f"{rel} line {line}")
    return rows


def _named_count(names: list[str]) -> dict:
    return {"count": len(names), "files": names[:_REPORT_NAMES]}


def add_file(
    scan: SourceScan,
    source: str,
    file: Path,
    root: Path,
    composer: str = "",
    labels: dict[str, str] | None = None,
    ref: str | None = None,
) -> None:
    """Add a file's tunes (ABC) or the file itself (a score) to scan, or a skip line."""
    suffix = file.suffix.lower()
    rel = str(file.relative_to(root)) if file.is_relative_to(root) else str(file)
    rel = ref or rel
    labels = labels or {}
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
                Item(
                    source,
                    f"{rel}#{i}",
                    "abc",
                    text=tune,
                    composer=composer,
                    labels=dict(labels),
                )
            )
    elif suffix in SCORE_SUFFIXES:
        scan.items.append(
            Item(
                source,
                rel,
                SCORE_SUFFIXES[suffix],
                path=str(file),
                composer=composer,
                labels=dict(labels),
            )
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
                    add_file(scan, spec, file, root)
            elif not folk and (is_abc or suffix in SCORE_SUFFIXES):
                add_file(scan, spec, file, root, composer=_composer_name(folder.name))
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

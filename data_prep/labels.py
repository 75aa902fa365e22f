"""Labels for a source's tunes: `composer=Chopin:FOLDER`, metadata.csv/.jsonl, columns.

A label names a record column that is metadata, not music: composer (written
as `C:`), rhythm (`R:`) and title (the column only: normalized ABC keeps no
`T:`). Meter, key and unit note length describe the notes and are never
labels. By default the file's own value wins and a label fills only a field
the file leaves empty; a differing value is a conflict, logged and counted.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from abcmamba import UserError
from abcmamba.abc import NormalizedTune
from abcmamba.abc.header import ORDER

log = logging.getLogger(__name__)

# label (record column) -> ABC header letter; "" when the text keeps no field
LABEL_FIELDS = {"composer": "C", "rhythm": "R", "title": ""}
METADATA_NAMES = ("metadata.csv", "metadata.jsonl")
FILE_NAME_COLUMN = "file_name"  # the datasets audiofolder/imagefolder convention
# What converters write when a score has none (xml2abc's "T:Title").
_PLACEHOLDERS = {"title": {"title"}, "composer": {"music21"}}


def split_label_prefix(spec: str) -> tuple[dict[str, str], str]:
    """`composer=Chopin:rhythm=waltz:PATH` -> ({composer: Chopin, rhythm: waltz}, PATH)."""
    labels: dict[str, str] = {}
    rest = spec
    while "=" in rest.partition(":")[0] and not Path(rest).exists():
        head, sep, tail = rest.partition(":")
        name, _, value = head.partition("=")
        if not sep or not tail:
            raise UserError(
                f"{spec!r}: a label needs a source after it: NAME=VALUE:SOURCE"
            )
        if name.strip() not in LABEL_FIELDS:
            raise UserError(
                f"unknown label {name!r} in {spec!r} (labels: {', '.join(LABEL_FIELDS)})"
            )
        labels[name.strip()] = clean_value(value)
        rest = tail
    return labels, rest


def parse_label_columns(pairs: list[str] | None) -> dict[str, str]:
    """`--label-column composer=artist` -> {composer: artist}; defaults to the label names."""
    mapping = {name: name for name in LABEL_FIELDS}
    for pair in pairs or []:
        name, sep, column = pair.partition("=")
        if not sep or name not in LABEL_FIELDS or not column:
            raise UserError(
                f"--label-column {pair!r}: write LABEL=COLUMN with LABEL one of "
                f"{', '.join(LABEL_FIELDS)}"
            )
        mapping[name] = column
    return mapping


def clean_value(value: object) -> str:
    """One line of text: ABC header values cannot span lines, `%` starts a comment."""
    if value is None:
        return ""
    return " ".join(str(value).replace("%", " ").split())


def labels_of_row(row: dict, label_columns: dict[str, str]) -> dict[str, str]:
    """The non-empty labels of one metadata row or dataset row."""
    labels = {
        name: clean_value(row.get(column)) for name, column in label_columns.items()
    }
    return {name: value for name, value in labels.items() if value}


def read_metadata(
    path: Path, label_columns: dict[str, str]
) -> list[tuple[str, int, dict]]:
    """(file_name, line number, labels) of each row of a metadata.csv or .jsonl file.

    Raises UserError, in one line, for a file without a file_name column, one
    that cannot be read, or one that names a file twice.
    """
    try:
        columns, rows = _read_rows(path)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror}") from None
    except csv.Error as err:
        raise UserError(f"{path}: unreadable CSV: {err}") from None
    if FILE_NAME_COLUMN not in columns:
        found = ", ".join(map(str, columns)) or "none"
        raise UserError(f"{path} has no {FILE_NAME_COLUMN} column (columns: {found})")
    out, seen = [], {}
    for line, row in rows:
        name = str(row.get(FILE_NAME_COLUMN) or "").strip()
        if not name:
            raise UserError(f"{path}, line {line}: empty {FILE_NAME_COLUMN}")
        if name in seen:
            raise UserError(
                f"{path}: {name} is named twice (lines {seen[name]}, {line})"
            )
        seen[name] = line
        out.append((name, line, labels_of_row(row, label_columns)))
    return out


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """The columns, and (line number, row) pairs, of a metadata file."""
    text = path.read_text(encoding="utf-8-sig")
    rows: list[tuple[int, dict]] = []
    if path.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}, line {n}: not JSON: {err.msg}") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}, line {n}: not a JSON object")
            rows.append((n, row))
        # every row must name its file, so the columns are those all rows share
        columns = set.intersection(*(set(r) for _, r in rows)) if rows else set()
        return sorted(columns), rows
    reader = csv.DictReader(text.splitlines(), strict=True)
    for row in reader:
        if None in row:  # DictReader's key for fields past the header
            raise csv.Error(f"line {reader.line_num} has more fields than the header")
        rows.append((reader.line_num, row))
    return list(reader.fieldnames or []), rows


def apply_labels(
    tune: NormalizedTune, labels: dict[str, str], labels_win: bool = False
) -> list[tuple[str, str, str]]:
    """Write labels into the tune (column and header line) in place.

    Returns the conflicts, as (label, the file's value, the label's value).
    """
    conflicts = []
    for name, value in labels.items():
        have = getattr(tune, name)
        if have and have.casefold() not in _PLACEHOLDERS.get(name, ()):
            if have.casefold() == value.casefold():
                continue
            conflicts.append((name, have, value))
            if not labels_win:
                continue
        setattr(tune, name, value)
        if LABEL_FIELDS[name]:
            tune.abc = set_header_field(tune.abc, LABEL_FIELDS[name], value)
    return conflicts


def set_header_field(abc: str, letter: str, value: str) -> str:
    """Normalized ABC with its `letter:` header line set to value, in canonical order."""
    lines = abc.split("\n")
    k_at = next(i for i, ln in enumerate(lines) if ln.startswith("K:"))
    head = [ln for ln in lines[:k_at] if not ln.startswith(f"{letter}:")]
    at = next(
        (
            i
            for i, ln in enumerate(head)
            if i > 0 and ORDER.get(ln[:1], len(ORDER)) > ORDER[letter]
        ),
        len(head),
    )
    return "\n".join([*head[:at], f"{letter}:{value}", *head[at:], *lines[k_at:]])

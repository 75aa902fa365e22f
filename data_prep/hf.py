"""`hf:OWNER/NAME[:SPLIT][:COLUMN]`: a Hugging Face dataset of ABC text or scores.

A column may hold ABC text, score bytes (MIDI, MusicXML, compressed MusicXML,
Humdrum: raw bytes or a `datasets` Audio-like dict with bytes/path) or paths
to score files. Label columns (composer, title, rhythm, or those named by
`--label-column`) label each row's tunes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from abcmamba import UserError
from abcmamba.abc import split_tunes
from data_prep.labels import labels_of_row
from data_prep.sources import (
    ABC_SUFFIXES,
    SCORE_SUFFIXES,
    Item,
    SourceScan,
    add_file,
)

log = logging.getLogger(__name__)

_ABC_COLUMNS = ("abc", "abc notation", "abc_notation", "ABC")
_SCORE_COLUMNS = (
    "midi",
    "midi_bytes",
    "score",
    "musicxml",
    "audio",
    "file",
    "path",
    "file_name",
    "midi_filename",
    "filename",
)
_TEXT_COLUMNS = ("text", "content")


def scan_hf(spec: str, rest: str, label_columns: dict[str, str]) -> SourceScan:
    """Items of `rest` = `hf:NAME[:SPLIT][:COLUMN]`, or `hf:PATH` of a save_to_disk folder."""
    import datasets

    parts = rest[3:].split(":")
    name, split = parts[0], (parts[1] if len(parts) > 1 and parts[1] else None)
    column = parts[2] if len(parts) > 2 else None
    local = Path(name).exists()
    try:
        if local:
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
    base = Path(name) if local else None
    for part in splits:
        table = data[part]
        col = column or _music_column(table)
        if col not in table.column_names:
            raise UserError(
                f"{name!r} has no column {col!r} (columns: {', '.join(table.column_names)})"
            )
        if isinstance(table.features[col], datasets.Audio):
            # MIDI in an Audio column: take the bytes, never decode them as sound
            table = table.cast_column(col, datasets.Audio(decode=False))
        present = {
            label: c
            for label, c in label_columns.items()
            if c in table.column_names and c != col
        }
        table = table.select_columns([col, *dict.fromkeys(present.values())])
        for row, values in enumerate(table):
            labels = labels_of_row(values, present)
            _add_value(scan, spec, f"{part}/{row}", values[col], base, labels)
        if present:
            scan.labels.setdefault("label_columns", {}).update(present)
    return scan


def _music_column(table) -> str:
    """The column holding the music: ABC text, score bytes or score paths."""
    import datasets

    names = table.column_names
    for candidate in _ABC_COLUMNS:
        if candidate in names:
            return candidate
    for name in names:
        feature = table.features[name]
        if isinstance(feature, datasets.Audio) or (
            isinstance(feature, dict) and "bytes" in feature
        ):
            return name
    for candidate in (*_SCORE_COLUMNS, *_TEXT_COLUMNS):
        if candidate in names:
            return candidate
    for name in names:
        if getattr(table.features[name], "dtype", "") in ("binary", "large_binary"):
            return name
    raise UserError(
        f"no ABC or score column found (columns: {', '.join(names)}); "
        "name it: hf:NAME:SPLIT:COLUMN"
    )


def _add_value(
    scan: SourceScan,
    source: str,
    ref: str,
    value: object,
    base: Path | None,
    labels: dict[str, str],
) -> None:
    """One row's music: ABC text, score bytes or a path, as items or a skip line."""
    where, data = "", None
    if isinstance(value, dict):  # datasets' Audio/Image-like {"bytes", "path"}
        where, data = value.get("path") or "", value.get("bytes")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, str) and _is_path(value):
        where = value
    elif isinstance(value, str) or value is None:
        text = value or ""
        for i, tune in enumerate(_tunes_in_text(text)):
            scan.items.append(
                Item(source, f"{ref}#{i}", "abc", text=tune, labels=dict(labels))
            )
        if not text.strip():
            scan.skipped_files.append((ref, "empty ABC text"))
        return
    else:
        scan.skipped_files.append((ref, f"unsupported value: {type(value).__name__}"))
        return
    if data:
        suffix = sniff_score(data, where)
        if suffix:
            scan.items.append(
                Item(
                    source,
                    ref,
                    SCORE_SUFFIXES[suffix],
                    path=str(Path(where or ref).with_suffix(suffix)),
                    data=data,
                    labels=dict(labels),
                )
            )
            return
        text = data.decode("utf-8", "replace")
        if split_tunes(text):
            _add_value(scan, source, ref, text, base, labels)
        else:
            scan.skipped_files.append(
                (ref, "bytes are not MIDI, MusicXML, Humdrum or ABC")
            )
        return
    if not where:
        scan.skipped_files.append((ref, "empty value (no bytes, no path)"))
        return
    file = _resolve(where, base)
    if file is None:
        scan.skipped_files.append((ref, f"no such file: {where}"))
    else:
        add_file(scan, source, file, file.parent, labels=labels, ref=ref)


def sniff_score(data: bytes, name: str = "") -> str | None:
    """The file suffix that fits score bytes (.mid, .mxl, .musicxml, .krn), or None."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"MThd"):
        return ".mid"
    if head.startswith(b"PK\x03\x04"):
        return ".mxl"
    if b"<score-partwise" in head or b"<score-timewise" in head:
        return ".musicxml"
    if head.startswith(b"**") or b"\n**kern" in head:
        return ".krn"
    suffix = Path(name).suffix.lower()
    return suffix if suffix in SCORE_SUFFIXES else None


def _is_path(text: str) -> bool:
    return "\n" not in text and Path(text.strip()).suffix.lower() in (
        *SCORE_SUFFIXES,
        *ABC_SUFFIXES,
    )


def _resolve(where: str, base: Path | None) -> Path | None:
    """A dataset's path as given, else relative to its save_to_disk folder."""
    for file in (Path(where), base / where if base else None):
        if file is not None and file.is_file():
            return file
    return None


def _tunes_in_text(text: str) -> Iterator[str]:
    tunes = split_tunes(text)
    if not tunes and text.strip():
        yield "X:1\n" + text  # a row holding one tune without its X: line
    yield from tunes

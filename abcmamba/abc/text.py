"""Reading ABC files, splitting them into tunes and tokenizing music lines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FIELD_LINE = re.compile(r"^([A-Za-z+]):(.*)$")

# One regex for the music part of a line; alternatives are tried in order.
_TOKEN = re.compile(
    r"""
    (?P<string>"[^"]*")
  | (?P<decoration>![^!\s]*!|\+[A-Za-z0-9.<>]*\+)
  | (?P<field>\[[A-Za-z]:[^\]]*\])
  | (?P<bar>\.?(?:\[\||:*\|+\]?|::+)[:|\]]*(?:\[?\d+(?:[-,]\d+)*)?)
  | (?P<ending>\[\d+(?:[-,]\d+)*)
  | (?P<grace>\{[^}]*\})
  | (?P<chord>\[[^\]]*\][\d/]*)
  | (?P<tuplet>\(\d+(?::\d*){0,2})
  | (?P<slur>[()])
  | (?P<note>[_^=]*[A-Ga-g][,']*\d*/*\d*)
  | (?P<rest>[zx]\d*/*\d*)
  | (?P<measure_rest>[ZX]\d*)
  | (?P<spacer>y[\d/]*)
  | (?P<broken>[<>]+)
  | (?P<tie>-)
  | (?P<symbol>[.~HIJKLMNOPQRSTUVWhijklmnopqrstuvw])
  | (?P<overlay>&)
  | (?P<space>[\s`]+)
  | (?P<unknown>.)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    """One lexical item of an ABC music line."""

    kind: str
    text: str


def tokenize_music(line: str) -> list[Token]:
    """Split a music line (no comments, no field lines) into tokens."""
    return [Token(m.lastgroup or "unknown", m.group()) for m in _TOKEN.finditer(line)]


def read_abc_file(path: str | Path) -> str:
    """Read an ABC file as text: UTF-8 (with or without BOM), else Latin-1."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_tunes(text: str) -> list[str]:
    """Split the text of an ABC file into tunes, each starting at its `X:` line.

    A tune ends at the first blank line or the next `X:`. Text between tunes
    is free text and ignored. Fields of the file header (before the first
    tune) such as `M:`, `L:`, `R:` or `C:` are inherited by tunes that lack
    them, as ABC 2.1 says. A file with no `X:` but a `K:` is one tune.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("X:")]
    if not starts:
        if any(line.startswith("K:") for line in lines):
            return [_strip_blank_edges("X:1\n" + text)]
        return []
    inherited = _file_header_fields(lines[: starts[0]])
    tunes = []
    for n, start in enumerate(starts):
        stop = starts[n + 1] if n + 1 < len(starts) else len(lines)
        body: list[str] = []
        for line in lines[start:stop]:
            if not line.strip() and body:
                break
            body.append(line)
        tune = "\n".join(body)
        if inherited:
            tune = _inherit(tune, inherited)
        tunes.append(tune.rstrip() + "\n")
    return tunes


def _strip_blank_edges(text: str) -> str:
    return text.strip("\n") + "\n"


_INHERITABLE = "CLMRQ"


def _file_header_fields(lines: list[str]) -> dict[str, str]:
    """Fields of the file header: only those before the first blank-separated block."""
    fields: dict[str, str] = {}
    for line in lines:
        m = FIELD_LINE.match(line)
        if m and m.group(1) in _INHERITABLE:
            fields[m.group(1)] = m.group(2).strip()
    return fields


def _inherit(tune: str, inherited: dict[str, str]) -> str:
    lines = tune.split("\n")
    header_end = next(
        (i for i, line in enumerate(lines) if line.startswith("K:")), len(lines)
    )
    present = {line[0] for line in lines[:header_end] if FIELD_LINE.match(line)}
    extra = [f"{k}:{v}" for k, v in inherited.items() if k not in present]
    return "\n".join(lines[:1] + extra + lines[1:])


def strip_comment(line: str) -> str:
    """Remove a `%` comment from a line, ignoring `\\%` and `%` inside strings."""
    if "%" not in line:
        return line
    in_string = False
    for i, ch in enumerate(line):
        if ch == '"':
            in_string = not in_string
        elif ch == "%" and not in_string and (i == 0 or line[i - 1] != "\\"):
            return line[:i]
    return line


# No-break and other Unicode spaces (tune archives exported from HTML): spaces.
UNICODE_SPACE = re.compile("[\u00a0\u2000-\u200b\u202f\u3000]")

# Lines that annotate the music line above: lyrics, symbols, decorations.
_LINE_ANNOTATION = re.compile(r"^[wsd+]:")


def logical_lines(text: str) -> Iterator[str]:
    """Lines of a tune with comments and `%%` directives removed and `\\` joined."""
    pending = ""
    for raw in UNICODE_SPACE.sub(" ", text).split("\n"):
        if raw.startswith("%%"):
            continue
        line = strip_comment(raw).rstrip()
        if pending and FIELD_LINE.match(line):
            # lyrics (w:) under a continued line do not end it; another field does
            if not _LINE_ANNOTATION.match(line):
                yield pending.rstrip()
                pending = ""
            yield line
            continue
        if line.endswith("\\") and not FIELD_LINE.match(line):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.strip():
            yield line
    if pending.strip():
        yield pending.rstrip()

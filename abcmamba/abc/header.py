"""Header fields: parsing, canonical order and spelling of keys and meters, default `L:`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from abcmamba.abc.text import FIELD_LINE, strip_comment

HEADER_ORDER = "XCRMLQVK"  # canonical order of header fields in normalized ABC
ORDER = {letter: i for i, letter in enumerate(HEADER_ORDER)}

# Canonical spelling of modes: major is written as the bare tonic.
_MODES = {
    "": "",
    "maj": "",
    "ion": "",
    "m": "m",
    "min": "m",
    "aeo": "m",
    "mix": "mix",
    "dor": "dor",
    "phr": "phr",
    "lyd": "lyd",
    "loc": "loc",
}
# A clef name as ABC 2.1 allows it without `clef=` (in `K:` and `V:` lines).
CLEF_WORD = re.compile(r"^(treble|bass|alto|tenor|perc|none)[\d+\-]*$", re.IGNORECASE)
# abcm2ps octave-clef hints such as `-8va`: layout only, dropped.
_OCTAVE_HINT = re.compile(r"^[+-]8va?$|^8va?$")
_ACCIDENTAL = re.compile(r"^(\^{1,2}|_{1,2}|=)[A-Ga-g]$")
_KEY = re.compile(r"^(?P<tonic>[A-Ga-g])(?P<acc>[#b]?)(?P<tail>.*)$")
_METER = re.compile(r"^\(?(\d+(?:\+\d+)*)\)?/(\d+)$")

ACCEPTED_KEYS = (
    "a tonic A-G with optional # or b, then an optional mode "
    "(major, m/minor, mix, dor, phr, lyd, loc, ion, aeo), e.g. D, Em, F#m, Bb, "
    "Ador, Gmix; or HP, Hp, none"
)
ACCEPTED_METERS = "N/D such as 4/4, 6/8, 3/2, (2+3)/8; C; C|; or none"


@dataclass(frozen=True)
class Header:
    """The header of a tune: its field lines in order and where its body starts."""

    fields: tuple[tuple[str, str], ...]  # (letter, value) up to and including K:
    closed: bool  # K: or a line of music was read: no field can join the header
    end: int  # offset of the body: after the K: line, else at the first music line

    def __contains__(self, letter: str) -> bool:
        return any(f == letter for f, _ in self.fields)

    def get(self, letter: str, default: str | None = None) -> str | None:
        """The last value of field ``letter``, or ``default`` when it is absent."""
        return next((v for f, v in reversed(self.fields) if f == letter), default)

    def values(self, letter: str) -> list[str]:
        """Every value of field ``letter``, in order (`T:` may come several times)."""
        return [v for f, v in self.fields if f == letter]


def parse_header(text: str, partial: bool = False) -> Header:
    """The header of a tune: field lines up to the first `K:`, comments left out.

    Lines that are not fields before `K:` are skipped (stray text is not ABC),
    but they close the header.  ``partial``: ``text`` is being written, so its
    last line, with no newline yet, is not read.
    """
    lines = text.split("\n")
    if partial:
        lines = lines[:-1]
    fields: list[tuple[str, str]] = []
    closed, end, offset = False, None, 0
    for raw in lines:
        start, offset = offset, offset + len(raw) + 1
        m = FIELD_LINE.match(raw)
        if not m:
            if not raw.startswith("%"):
                closed = True
                end = start if end is None else end
            continue
        fields.append((m.group(1), strip_comment(m.group(2)).strip()))
        if m.group(1) == "K":
            return Header(tuple(fields), True, min(offset, len(text)))
    return Header(tuple(fields), closed, len(text) if end is None else end)


# an accidental glued to what comes before it: "C^f^c" (not "clef=bass")
GLUED_ACCIDENTAL = re.compile(
    r"(?<=\S)(?=(?:\^{1,2}|_{1,2})[A-Ga-g])|(?<=[\^_=][A-Ga-g])(?==[A-Ga-g])"
)


def canonical_key(value: str) -> str:
    """Canonical spelling of a `K:` value, e.g. 'E minor' -> 'Em', 'G Major' -> 'G'.

    Explicit accidentals and clef settings after the key are kept.
    Raises ValueError for a key that is not ABC.
    """
    words = GLUED_ACCIDENTAL.sub(" ", value).split()
    if not words:
        return "none"
    first = words[0]
    rest = words[1:]
    if first in ("HP", "Hp"):
        key = first
    elif first.lower() == "none":
        key = "none"
    elif CLEF_WORD.match(first) or "=" in first:
        key, rest = "C", words
    else:
        m = _KEY.match(first)
        if not m:
            raise ValueError(f"unknown key {value!r}")
        mode = m.group("tail")
        if not mode and rest and "=" not in rest[0] and _mode_code(rest[0]) is not None:
            mode, rest = rest[0], rest[1:]
        code = _mode_code(mode)
        if code is None:
            raise ValueError(f"unknown key {value!r}")
        key = m.group("tonic").upper() + m.group("acc") + code
    extras = []
    for word in rest:
        if _ACCIDENTAL.match(word) or word == "exp":
            extras.append(word)
        elif CLEF_WORD.match(word):
            extras.append(f"clef={word.lower()}")
        elif _OCTAVE_HINT.match(word):
            continue
        elif "=" in word and word.split("=")[0].lower() in (
            "clef",
            "middle",
            "transpose",
            "octave",
            "stafflines",
            "m",
            "t",
        ):
            extras.append(word)
        else:
            raise ValueError(f"unknown key {value!r}")
    return " ".join([key, *extras])


def _mode_code(mode: str) -> str | None:
    mode = mode.lower()
    if mode in ("", "m"):
        return _MODES[mode]
    return _MODES.get(mode[:3]) if mode[:3] in _MODES else None


def key_name(canonical: str) -> str:
    """The key part of a canonical `K:` value (no clef or accidentals)."""
    return canonical.split()[0] if canonical else "none"


def canonical_meter(value: str) -> str:
    """Canonical spelling of an `M:` value; raises ValueError if not ABC."""
    text = value.replace(" ", "")
    if text in ("", "none", "None", "NONE"):
        return "none"
    if text in ("C", "C|"):
        return text
    if not _METER.match(text):
        raise ValueError(f"unknown meter {value!r}")
    return text


# The tempo words abc2midi reads in a Q: without a number (store.c, temponame).
TEMPO_WORDS = frozenset(
    [
        "larghissimo",
        "adagissimo",
        "lentissimo",
        "largo",
        "adagio",
        "lento",
        "larghetto",
        "adagietto",
        "andante",
        "andantino",
        "moderato",
        "allegretto",
        "allegro",
        "vivace",
        "vivo",
        "presto",
        "allegrissimo",
        "vivacissimo",
        "prestissimo",
    ]
)
_TEMPO_TEXT = re.compile(r'"([^"]*)"')
_TEMPO_BEATS = re.compile(r"((?:\d+/\d+\s*)+)=\s*(?:ca\.?\s*)?(\d+)")
_TEMPO_OLD = re.compile(r"^(C\d*\s*=\s*)?(\d+)$")


def canonical_tempo(value: str) -> str:
    """Canonical spelling of a `Q:` value that music21 and abc2midi both read:
    ``"Allegro" 1/4=120``, ``"Allegro"``, ``3/8=100``, or the old ``120``.

    What they cannot read is repaired where it says a tempo (``1/4=ca. 80``,
    ``1/2 1/4=100`` as ``3/4=100``; bare words before it become its text),
    a tempo word alone is quoted (``Allegro`` as ``"Allegro"``), and '' is
    returned when no tempo is left (``1/4``, ``Fast``, ``Sweden``).
    """
    value = value.split("%", 1)[0].strip()
    texts = _TEMPO_TEXT.findall(value)
    rest = _TEMPO_TEXT.sub(" ", value).strip()
    tempo = ""
    beats = _TEMPO_BEATS.search(rest)
    if beats:
        total = sum(Fraction(b) for b in beats.group(1).split())
        tempo = f"{total.numerator}/{total.denominator}={beats.group(2)}"
        rest = (rest[: beats.start()] + rest[beats.end() :]).strip()
    elif _TEMPO_OLD.match(rest.replace(" ", "")):
        tempo, rest = rest.replace(" ", ""), ""
    text = " ".join(t.strip() for t in texts if t.strip())
    if not text and re.search(r"[A-Za-z]", rest):
        text = rest  # words where the quoted text belongs
    if not tempo and text.lower() not in TEMPO_WORDS:
        return ""  # text alone: abc2midi reads only its tempo words
    parts = ([f'"{text}"'] if text else []) + ([tempo] if tempo else [])
    return " ".join(parts)


def meter_length(meter: str) -> Fraction | None:
    """Length of a bar in whole notes (C -> 1, 6/8 -> 3/4); None for free meter."""
    if meter == "none":
        return None
    if meter == "C":
        return Fraction(1)
    if meter == "C|":
        return Fraction(1)
    m = _METER.match(meter)
    if not m:
        raise ValueError(f"unknown meter {meter!r}")
    numerator = sum(int(n) for n in m.group(1).split("+"))
    if numerator == 0 or int(m.group(2)) == 0:
        raise ValueError(f"unknown meter {meter!r}")
    return Fraction(numerator, int(m.group(2)))


def default_tuplet_q(p: int, compound: bool) -> int:
    """The ABC standard's q of a tuplet ``(p``: p notes in the time of q."""
    return {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}.get(p, 3 if compound else 2)


def is_compound(meter: str) -> bool:
    """True for compound meters (6/8, 9/8, 12/8, ...), which change tuplet rules."""
    m = _METER.match(meter)
    return (
        bool(m)
        and "+" not in m.group(1)
        and int(m.group(1)) % 3 == 0
        and int(m.group(1)) > 3
    )


def default_unit(meter: str) -> str:
    """The `L:` ABC 2.1 implies when it is absent: 1/16 below 3/4, else 1/8."""
    length = meter_length(meter) if meter != "none" else None
    if length is not None and length < Fraction(3, 4):
        return "1/16"
    return "1/8"


def parse_unit(value: str) -> Fraction:
    """Value of an `L:` field in whole notes; raises ValueError if not ABC."""
    text = value.replace(" ", "")
    m = re.match(r"^(\d+)(?:/(\d+))?$", text)
    if not m or int(m.group(1)) == 0 or (m.group(2) and int(m.group(2)) == 0):
        raise ValueError(f"unknown unit note length {value!r}")
    return Fraction(int(m.group(1)), int(m.group(2) or 1))

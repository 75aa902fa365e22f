"""ABC text rewrites that make other readers play what abc2midi plays.

abc2xml (our ABC reader) and music21 differ from abc2midi, the reference
implementation; this module settles the differences in the text itself:

- accidentals carry to later notes of the same letter in *any* octave until
  the bar line (abc2midi's default ``%%propagate-accidentals pitch``), except
  those of grace notes, and not at all under ``%%MIDI nobarlines``;
- repeats, first/second endings and the header's ``P:`` part order are played
  out for MIDI by abc2midi's own rules, sloppy repeats included;
- a missing ``L:`` defaults from the meter (abc2xml always takes 1/8);
- free-text header fields, ``%%begintext`` blocks, ``r:``/``s:``/``d:``/``m:``
  lines and ``+:`` continuing a text field, which abc2xml can misread as
  music, are dropped;
- tuplets ``(p:q:r`` are written in full (abc2xml drops ``(3::2``), and
  broken rhythms of three or more signs as plain lengths;
- a percussion clef sounds its written notes unless the tune uses the drum
  channel;
- a grace group right after ``>``/``<`` is dropped (abc2xml loses the rhythm);
- a tie written after a slur's end (``c6)-``) or a bar line (``G3|-G2``)
  ties the note, as abc2midi reads it (abc2xml drops it); a tie to another
  accidental is no tie within the bar, holds the first pitch across it, and
  from a chord holds only the notes that keep their pitch;
- ``K:HP``/``K:Hp`` bagpipe keys sound with F and C sharp, a key's explicit
  accidentals are spaced apart (``K:C^f^c``), the aeolian and ionian
  modes are written as minor and major, ``K:none`` and ``K:D exp ...`` as
  keys from C, ``M:2`` as 2/1, and ``t=`` (abc2xml's transpose) is dropped;
- ``%%MIDI transpose`` holds from where it is written (render plays it); one
  in the header of a tune with voices transposes every voice, on top of a
  voice's own ``transpose=``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import partial

from abcmamba.abc.header import (
    GLUED_ACCIDENTAL,
    canonical_key,
    default_tuplet_q,
    is_compound,
)

logger = logging.getLogger(__name__)

_TOKEN = re.compile(
    r"""
    (?P<comment>%.*$)
  | (?P<quote>"[^"\n]*"?)
  | (?P<deco>![^!\n]*!|\+[^+\n:|]*\+)
  | (?P<field>\[[A-Za-z]:[^\]\n]*\])
  | (?P<tuplet>\(\d+(?::\d*){0,2})
  | (?P<bar>(?:\[\|\]|\[\|:*|:*\|[\]|]*:*|::+)(?:\[?(?P<ending>\d+(?:[-,]\d+)*))?)
  | (?P<ending_alone>\[(?P<ending2>\d+(?:[-,]\d+)*))
  | (?P<note>(?P<acc>\^{1,2}|_{1,2}|=)?(?P<letter>[A-Ga-g])(?P<octave>[,']*))
  | (?P<other>.)
    """,
    re.VERBOSE | re.MULTILINE,
)
_FIELD_LINE = re.compile(r"^[A-Za-z+]:")
_NOT_MUSIC = re.compile(r"^(?:%|[A-Za-z+]:)")


@dataclass
class Token:
    """One lexical item of an ABC body line."""

    kind: str
    text: str
    endings: tuple[int, ...] = ()


def _endings(spec: str | None) -> tuple[int, ...]:
    if not spec:
        return ()
    numbers: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        # Cap the span: "[1-99999999]" must not allocate a huge list.
        numbers.extend(range(int(lo), min(int(hi or lo), int(lo) + 16) + 1))
    return tuple(numbers)


def tokenize(line: str) -> list[Token]:
    """Split one body line into comments, fields, bars, notes and the rest."""
    tokens = []
    for match in _TOKEN.finditer(line):
        kind = match.lastgroup
        if kind in ("ending", "ending2", "acc", "letter", "octave"):
            kind = next(k for k in ("bar", "ending_alone", "note") if match.group(k))
        if kind == "ending_alone":
            tokens.append(
                Token("bar", match.group(0), _endings(match.group("ending2")))
            )
        elif kind == "bar":
            tokens.append(Token("bar", match.group(0), _endings(match.group("ending"))))
        else:
            tokens.append(Token(kind, match.group(0)))
    return tokens


def split_header(abc: str) -> tuple[list[str], list[str]]:
    """(header lines up to and including the first K:, body lines)."""
    lines = abc.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("K:"):
            return lines[: i + 1], lines[i + 1 :]
    return lines, []


# Header fields that carry no music: notes, origin, source, transcriber,
# history, book, discography, file, group, area, words.
_TEXT_FIELDS = tuple(f"{letter}:" for letter in "NOSZHBDFGAW")


def drop_text_fields(abc: str) -> str:
    """The tune without free-text header fields, which abc2xml can misread as music."""
    header, body = split_header(abc)
    kept = [
        line
        for i, line in enumerate(header)
        if i == 0
        or line.startswith("%")
        or (_FIELD_LINE.match(line) and not line.startswith(_TEXT_FIELDS))
    ]
    return "\n".join(kept + body) + "\n"


# Lines abc2xml reads as notes but abc2midi ignores: remarks, symbol lines
# (``s:``, abcm2ps's older ``d:``) and macro definitions (abc2midi does not
# expand macros).
_IGNORED_FIELDS = ("r:", "s:", "d:", "m:")
_MUSIC_FIELD_LINE = re.compile(r"^[KLMPQUVI]:")


def drop_ignored_lines(abc: str) -> str:
    """The tune without ``r:``, ``s:``, ``d:`` and ``m:`` lines, nor ``+:``
    lines that continue a text field (``W:``, ``w:``, ...)."""
    kept: list[str] = []
    field = ""  # the field line a "+:" line would continue
    for line in abc.splitlines():
        if line.startswith("+:"):
            if field and not _MUSIC_FIELD_LINE.match(field):
                continue
        elif _FIELD_LINE.match(line):
            field = line
        elif not line.startswith("%"):
            field = ""
        if not line.startswith(_IGNORED_FIELDS):
            kept.append(line)
    return "\n".join(kept) + "\n"


_TEXT_BLOCK = re.compile(r"^%%begintext\b.*?(?:^%%endtext[^\n]*$|\Z)", re.M | re.S)


def drop_text_blocks(abc: str) -> str:
    """The tune without ``%%begintext`` ... ``%%endtext`` blocks (printed text),
    whose words abc2xml would otherwise read as notes."""
    return _TEXT_BLOCK.sub("%", abc)


_STAFF_GROUPS = re.compile(r"^(?:%%|I:)(?:staves|score)\b.*$", re.M)
_STAFF_MOVE = re.compile(r"\[I:\s*staff\b[^\]\n]*\]")


def drop_staff_groups(abc: str) -> str:
    """The tune without ``%%score``/``%%staves`` staff groupings.  For MIDI
    only: abc2xml writes the voices of one staff as one part, where one
    voice's overfull bar (common in scores converted from MusicXML) moves the
    later bars of every voice of the staff; abc2midi plays each voice on.
    Moves of a voice to another staff (``[I:staff 2]``) go with them."""
    return _STAFF_MOVE.sub("", _STAFF_GROUPS.sub("%", abc))


_MIDDLE = re.compile(
    r"(^(?:K|V):[^%\n]*?|\[(?:K|V):[^\]\n]*?)\s+middle=\S+?(?=[\s\]%]|$)", re.M
)


def clef_middle_dropped(abc: str) -> str:
    """``K:C bass middle=d`` as ``K:C bass``.  For MIDI only: ``middle=``
    places notes on the staff and abc2midi plays them as written, but abc2xml
    moves them (even ``treble middle=B``, the default, an octave down)."""
    return _MIDDLE.sub(r"\1", abc)


_OCTAVE_CLEF = re.compile(r"(?:^|\s)(?:clef=)?[A-Za-z]+\d?[-+^_](?:8|15)\b|\boctave=")
_CLEF_WORD = re.compile(
    r"(?:^|\s+)(?:clef=\S+|octave=\S+|(?:treble|bass|alto|tenor|baritone|mezzo|soprano)"
    r"\d?(?:[-+^_](?:8|15))?)(?=[\s\]%]|$)"
)


def body_clefs_after_octave_clef(abc: str) -> str:
    """A header ``K:`` with an octave clef (``K:C treble-8``) keeps its octave
    to the end, with a warning: abc2midi reads no later clef of a ``K:`` field
    (abc2xml would).  For MIDI only."""
    header, body = split_header(abc)
    if not header or not _OCTAVE_CLEF.search(header[-1][2:].split("%")[0]):
        return abc
    changed = []

    def plain(match: re.Match) -> str:
        value = _CLEF_WORD.sub("", match.group(2))
        if value != match.group(2):
            changed.append(match.group(2).strip())
        return match.group(1) + value

    out = [
        _KEY_FIELD.sub(plain, line) if not line.startswith("%") else line
        for line in body
    ]
    # a field left with no key is no field (an empty K: would be C major)
    out = [
        "%" if line.strip() == "K:" else re.sub(r"\[K:\s*\]", "", line) for line in out
    ]
    if changed:
        logger.warning(
            "%s: K:%s: a clef after the header's octave clef is not played, as "
            "abc2midi plays it",
            tune_label(abc),
            changed[0],
        )
    return "\n".join(header + out) + "\n"


_TUPLET_SPEC = re.compile(r"\((\d+):(\d*)(?::(\d*))?")


def full_tuplet_specs(abc: str, abc2midi_meters: bool = False) -> str:
    """``(3::2`` as ``(3:2:2`` and ``(5`` in 6/8 as ``(5:3:5``: abc2xml reads
    a tuplet with an empty q or r as no notes at all, and takes every
    ``(5``, ``(7``, ``(9`` as in the time of 2; every ``(p:q:r``, and every
    ``(p`` whose q depends on the meter, is written out in full.

    abc2midi_meters (for MIDI): a meter of 3 beats (3/4, 3/8) counts as
    compound, as abc2midi plays it (the standard says simple), with a warning.
    """
    header, body = split_header(abc)
    meter = next((line[2:] for line in header if line.startswith("M:")), "")
    out = []
    differs = False
    for line in body:
        if line.startswith("M:"):
            meter = line[2:]
        elif not _NOT_MUSIC.match(line):
            compound = is_compound(meter.strip())
            if abc2midi_meters and _THREE_BEATS.match(meter.strip()):
                differs |= bool(_PLAIN_TUPLET.search(line))
                compound = True
            line = _outside_quotes(
                line,
                lambda text, c=compound: _PLAIN_TUPLET.sub(
                    partial(_full_tuplet, c),
                    _TUPLET_SPEC.sub(partial(_full_tuplet, c), text),
                ),
            )
        out.append(line)
    if differs:
        logger.warning(
            "%s: a (5, (7 or (9 in M:%s is played in the time of 3, as abc2midi "
            "plays it (the standard says 2)",
            tune_label(abc),
            meter.strip(),
        )
    return "\n".join(header + out) + "\n"


# (p with a q that depends on the meter (the standard's table fixes 2, 3, 4, 6, 8)
_PLAIN_TUPLET = re.compile(r"\((?![2-468](?![\d:]))(\d+)(?![\d:])()()")
_THREE_BEATS = re.compile(r"^3/\d+$")
_QUOTED = re.compile(r'"[^"\n]*"?')


def _outside_quotes(line: str, change) -> str:
    """The line with `change` applied to its text outside "..." strings."""
    pieces, at = [], 0
    for match in _QUOTED.finditer(line):
        pieces += [change(line[at : match.start()]), match.group(0)]
        at = match.end()
    return "".join(pieces + [change(line[at:])])


def _full_tuplet(compound: bool, match: re.Match) -> str:
    p = int(match.group(1))
    q = match.group(2) or str(default_tuplet_q(p, compound))
    return f"({p}:{q}:{match.group(3) or p}"


_PERC_CLEF = re.compile(
    r"^((?:K:|V:|\[K:|\[V:)[^\]\n%]*?\b(?:clef=)?perc\b)(?![=\w])", re.M
)


def pitched_percussion_clefs(abc: str) -> str:
    """A percussion clef sounds its written pitches, as abc2midi plays it,
    unless the tune puts voices on the drum channel (``%%MIDI channel 10``);
    abc2xml would map its notes to drum sounds.  For MIDI only."""
    if re.search(r"(?m)^%%MIDI\s+channel\s+10\b", abc):
        return abc
    return _PERC_CLEF.sub(r"\1 perc=off", abc)


_NOTE_TEXT = r"(?:\^{1,2}|_{1,2}|=)?[A-Ga-g][,']*|[zx]|\[[^\]\[|:\n]*\]"
_DECORATIONS_TEXT = r'(?:"[^"\n]*"|![^!\n]*!|[.~H-Wh-w])*'
_LONG_BROKEN = re.compile(
    rf"({_NOTE_TEXT})([\d/]*)(>{{3,}}|<{{3,}})({_DECORATIONS_TEXT})({_NOTE_TEXT})([\d/]*)"
)


def _length(text: str) -> Fraction:
    """A written length multiplier: '' -> 1, '3/2' -> 3/2, '/' -> 1/2, '//' -> 1/4."""
    if "/" not in text:
        return Fraction(int(text or 1))
    numerator, _, rest = text.partition("/")
    denominator = int(rest) if rest.isdigit() else 2 ** (rest.count("/") + 1)
    return Fraction(int(numerator or 1), denominator)


def _spelled(length: Fraction) -> str:
    return str(length.numerator) + (
        f"/{length.denominator}" if length.denominator > 1 else ""
    )


def _written_broken(match: re.Match) -> str:
    first, first_len, signs, decorations, second, second_len = match.groups()
    short = Fraction(1, 2 ** len(signs))
    a, b = (2 - short, short) if signs[0] == ">" else (short, 2 - short)
    return (
        first + _spelled(_length(first_len) * a)
        + " " + decorations + second + _spelled(_length(second_len) * b)
    )  # fmt: skip


def written_long_broken_rhythm(abc: str) -> str:
    """``c>>>e`` as ``c15/8 e1/8``: abc2xml reads no broken rhythm of three or
    more signs (abc2midi does)."""
    header, body = split_header(abc)
    body = [
        line if _NOT_MUSIC.match(line) else _LONG_BROKEN.sub(_written_broken, line)
        for line in body
    ]
    return "\n".join(header + body) + "\n"


_BROKEN = re.compile(
    rf"({_NOTE_TEXT})([\d/]*)(>{{1,2}}|<{{1,2}})({_DECORATIONS_TEXT})({_NOTE_TEXT})([\d/]*)"
)


def unequal_broken_rhythm_dropped(abc: str) -> str:
    """``A2>B`` as ``A2B``, with a warning: abc2midi plays no broken rhythm
    between notes written with different lengths.  Arguably an abc2midi bug
    (the standard scales both), but it is what its users hear, so MIDI plays
    it so."""
    header, body = split_header(abc)
    dropped = []

    def unequal(match: re.Match) -> str:
        first, first_len, signs, decorations, second, second_len = match.groups()
        if _length(first_len) == _length(second_len):
            return match.group(0)
        dropped.append(match.group(0))
        return first + first_len + decorations + second + second_len

    body = [
        line if _NOT_MUSIC.match(line) else _BROKEN.sub(unequal, line) for line in body
    ]
    if dropped:
        logger.warning(
            "%s: %s: a broken rhythm between unequal notes is not played, as "
            "abc2midi plays it",
            tune_label(abc),
            dropped[0],
        )
    return "\n".join(header + body) + "\n"


def explicit_unit_length(abc: str) -> str:
    """Add the default `L:` when the header has none (abc2xml always takes 1/8).

    The ABC standard: 1/16 when the meter is below 3/4, else 1/8.
    """
    header, body = split_header(abc)
    if any(line.startswith("L:") for line in header) or not header:
        return abc
    meter = next((line[2:].strip() for line in header if line.startswith("M:")), "")
    unit = "1/8"
    match = re.match(r"^(\d+)/(\d+)", meter)
    if (
        match
        and int(match.group(2))
        and int(match.group(1)) / int(match.group(2)) < 0.75
    ):
        unit = "1/16"
    at = next(i for i, line in enumerate(header) if line.startswith("K:"))
    if not header[at].startswith("K:"):
        return abc
    return "\n".join(header[:at] + [f"L:{unit}"] + header[at:] + body) + "\n"


_KEY_FIELD = re.compile(r"(^K:|\[K:)([^\]\n%]*)", re.M)


def spaced_key_accidentals(abc: str) -> str:
    """``K:C^f^c`` as ``K:C ^f ^c``: abc2xml reads explicit accidentals of a key
    only when spaces part them.  (For MIDI abc2midi drops the first, see
    :func:`tonic_accidental_dropped`.)"""
    return _KEY_FIELD.sub(
        lambda m: m.group(1) + GLUED_ACCIDENTAL.sub(" ", m.group(2)), abc
    )


_GLUED_TO_TONIC = re.compile(
    r"(^K:[ \t]*|\[K:[ \t]*)([A-G])(?:\^{1,2}|_{1,2}|=)[A-Ga-g]", re.M
)


def tonic_accidental_dropped(abc: str) -> str:
    """``K:C^f^c`` as ``K:C^c``, with a warning: abc2midi ignores an explicit
    accidental glued to a one-letter tonic (not after a mode or ``b``/``#``:
    ``K:Am^g`` keeps it).  Arguably an abc2midi bug, but it is what its users
    hear, so MIDI plays it so; engraving keeps the standard's key."""
    dropped = _GLUED_TO_TONIC.findall(abc)
    if not dropped:
        return abc
    logger.warning(
        "%s: K:%s...: the accidental glued to the tonic is dropped, as abc2midi "
        "plays it",
        tune_label(abc),
        dropped[0][1],
    )
    return _GLUED_TO_TONIC.sub(r"\1\2", abc)


_BRACKETED_METER = re.compile(r"(^M:\s*|\[M:\s*)\((\d+(?:\+\d+)+)\)(?=/)", re.M)


def unbracketed_meters(abc: str) -> str:
    """``M:(2+3+2)/8`` as ``M:2+3+2/8``: abc2xml writes the bracketed form as a
    time signature music21 cannot read."""
    return _BRACKETED_METER.sub(r"\1\2", abc)


_BARE_METER = re.compile(r"(^M:\s*|\[M:\s*)(\d+)(?=\s*(?:\]|%|$))", re.M)


def bare_meters_in_whole_notes(abc: str) -> str:
    """``M:2`` as ``M:2/1``, the bar length abc2midi plays (abc2xml would
    assume 4/4)."""
    return _BARE_METER.sub(r"\1\2/1", abc)


_PIPES_KEY = re.compile(r"(^K:\s*|\[K:\s*)H[Pp](?=[\s\]]|$)", re.M)


def bagpipe_keys(abc: str) -> str:
    """``K:HP``/``K:Hp`` (Highland pipes) as ``K:Amix``: the F and C sharp that
    abc2midi plays; abc2xml would read no key at all."""
    return _PIPES_KEY.sub(r"\1Amix", abc)


# K:none (no signature) and K:D exp _b ^f (only the accidentals written)
_KEY_FROM_C = re.compile(
    r"(^K:\s*|\[K:\s*)(?:none(?=[\s\]%]|$)|[A-G][#b]?[A-Za-z]*\s+exp\b)", re.M
)


def keys_from_c(abc: str) -> str:
    """``K:none`` as ``K:C`` and ``K:D exp _b ^f`` as ``K:C _b ^f``: abc2xml
    keeps the previous key's signature for a ``K:none`` in the body and
    ignores ``exp`` (keeping D's); abc2midi plays only what is written."""
    return _KEY_FROM_C.sub(r"\1C", abc)


_SYNONYM_MODE = re.compile(
    r"(^K:\s*|\[K:\s*)([A-G][#b]?)\s*(?:(aeo)|ion)[a-z]*(?=[\s\]%]|$)", re.M | re.I
)


def plain_key_modes(abc: str) -> str:
    """``K:EAeo`` as ``K:Em`` and ``K:Dion`` as ``K:D``: abc2xml knows no
    aeolian or ionian mode and reads them as major."""
    return _SYNONYM_MODE.sub(
        lambda m: m.group(1) + m.group(2) + ("m" if m.group(3) else ""), abc
    )


_SHORT_TRANSPOSE = re.compile(r"((?:^[KV]:|\[[KV]:)[^\n\]%]*?)\s+t=-?\d+", re.M)


def short_transpose_dropped(abc: str) -> str:
    """``K:G t=8`` as ``K:G``: abc2xml reads ``t=`` as ``transpose=``,
    abc2midi ignores it."""
    return _SHORT_TRANSPOSE.sub(r"\1", abc)


_MIDI_TRANSPOSE = re.compile(r"^%%MIDI\s+transpose\s+(-?\d+)")
_VOICE_FIELD = re.compile(r"^V:\s*([^\s%\]]+)|\[V:\s*([^\s%\]]+)")
_TRANSPOSE_OPTION = re.compile(r"(\stranspose=)(-?\d+)")


def header_transpose_in_voices(abc: str) -> str:
    """A header ``%%MIDI transpose`` written as ``transpose=`` on every voice.

    abc2midi transposes every voice by it, on top of the voice's own
    ``transpose=``; abc2xml applies it to no voice of a tune with ``V:``.
    """
    header, body = split_header(abc)
    shifts = [m.group(1) for m in map(_MIDI_TRANSPOSE.match, header) if m]
    ids = [
        m.group(1) or m.group(2)
        for line in header + body
        if not line.startswith("%")
        for m in _VOICE_FIELD.finditer(line)
        if line.startswith("V:") or not _FIELD_LINE.match(line)
    ]
    if not shifts or not ids:
        return abc
    shift = int(shifts[-1])
    lines = header[:-1] + [header[-1]] + body
    defined: set[str] = set()
    for i, line in enumerate(lines):
        match = _VOICE_FIELD.match(line)
        if not line.startswith("V:") or match.group(1) in defined:
            continue
        defined.add(match.group(1))
        text, _, comment = line.partition("%")
        own = _TRANSPOSE_OPTION.search(text)
        if own:
            total = int(own.group(2)) + shift
            text = text[: own.start(2)] + str(total) + text[own.end(2) :]
        else:
            text = text.rstrip() + f" transpose={shift}"
        lines[i] = text + (" %" + comment if comment else "")
    at = len(header) - 1  # voices only named in [V:] fields: defined before K:
    new = [f"V:{i} transpose={shift}" for i in dict.fromkeys(ids) if i not in defined]
    lines[at:at] = new
    return "\n".join(lines) + "\n"


_TIE_AFTER_SLUR = re.compile(r"((?:\^{1,2}|_{1,2}|=)?[A-Ga-g][,']*[\d/]*)(\)+)-")
_TIE_AFTER_GRACE = re.compile(r"(\s*\{[^}\n]*\})-")
# "G3|-G2": a tie written after the bar line (and the next note's fingering)
_TIE_AFTER_BAR = re.compile(
    r"((?:\^{1,2}|_{1,2}|=)?[A-Ga-g][,']*[\d/]*)(\s*\|[|\]]?\s*(?:![^!\n]*!\s*)*)-"
)
_STACCATO_BEFORE_SLUR_END = re.compile(r"\.(?=\))")


def misplaced_ties(abc: str) -> str:
    """``c6)-`` as ``c6-)``, ``B {c}-B`` as ``B- {c}B`` and ``G3|-G2`` as
    ``G3-|G2``: abc2midi ties the note before, abc2xml drops the tie; and a
    staccato dot before a slur's end (``(B>.)A``) is dropped, as abc2midi
    drops it (abc2xml gives it to the next note)."""

    def moved(text: str) -> str:
        text = _TIE_AFTER_BAR.sub(r"\1-\2", _TIE_AFTER_SLUR.sub(r"\1-\2", text))
        return _STACCATO_BEFORE_SLUR_END.sub("", _TIE_AFTER_GRACE.sub(r"-\1", text))

    header, body = split_header(abc)
    body = [
        line if _NOT_MUSIC.match(line) else _outside_quotes(line, moved)
        for line in body
    ]
    return "\n".join(header + body) + "\n"


def closed_quotes(abc: str) -> str:
    """A chord symbol or annotation left open is closed at the end of its
    line, where abc2midi ends it (abc2xml reads on into the next line)."""
    header, body = split_header(abc)
    out = []
    for line in body:
        if not _NOT_MUSIC.match(line) and '"' in line:
            tokens = tokenize(line)
            quote = [t for t in tokens if t.kind == "quote"]
            if quote and (len(quote[-1].text) == 1 or quote[-1].text[-1] != '"'):
                line = line.rstrip() + '"'
        out.append(line)
    return "\n".join(header + out) + "\n"


def _chord_without_length(tokens: list[Token], at: int) -> bool:
    # abc2midi plays "'[ce]" staccato, but "'[ce]2" full length
    if tokens[at].text != "[":
        return False
    close = next((j for j in range(at, len(tokens)) if tokens[j].text == "]"), None)
    return close is not None and (
        close + 1 == len(tokens) or tokens[close + 1].text not in "0123456789/"
    )


def apostrophe_staccato(abc: str) -> str:
    """``'A`` (a ``'`` before a note, not after one) as ``.A``: abc2midi reads
    it as a staccato, abc2xml as an octave mark of the note before it (seen
    in the Nottingham Music Database)."""
    header, body = split_header(abc)
    out = []
    for line in body:
        if not _NOT_MUSIC.match(line) and "'" in line:
            tokens = tokenize(line)
            for i, token in enumerate(tokens[:-1]):
                if token.text == "'" and (
                    tokens[i + 1].kind in ("note", "deco", "quote")
                    or _chord_without_length(tokens, i + 1)
                ):
                    token.text = "."
            line = "".join(token.text for token in tokens)
        out.append(line)
    return "\n".join(header + out) + "\n"


_GRACE_AFTER_BROKEN = re.compile(r"([<>]+)\s*\{[^}\n]*\}")


_GRACE_OR_CHORD = re.compile(r"\{[^}\n]*\}|\[(?![A-Za-z]:)[^\]\[\n]*\]")
_MICROTONE = re.compile(r"([\^_])\d*/\d*(?=[A-Ga-g])")
_TEXTS = re.compile(r'"[^"\n]*"?|![^!\n]*!')


def microtones_as_written_notes(abc: str) -> str:
    """``{_/E}`` as ``{E}`` and ``[C_22/100EG]`` as ``[CEG]``, with a warning:
    abc2xml reads a microtone in a grace group or chord as notes of their
    own.  abc2midi sounds the written note with a pitch bend, which our MIDI
    does not play (a microtone on a lone note, as ``^/G``, is left as is)."""
    header, body = split_header(abc)
    found = False
    out = []
    for line in body:
        if not _NOT_MUSIC.match(line):
            found |= bool(_MICROTONE.search(_TEXTS.sub("", line)))
            line = _GRACE_OR_CHORD.sub(lambda m: _MICROTONE.sub("", m.group(0)), line)
        out.append(line)
    if found:
        logger.warning(
            "%s: microtone accidentals sound as the written note, without "
            "abc2midi's pitch bend",
            tune_label(abc),
        )
    return "\n".join(header + out) + "\n"


def drop_grace_after_broken_rhythm(abc: str) -> str:
    """`d>{f}e` -> `d>e`: abc2xml drops the `>` when a grace group follows it.

    Grace notes take no time, so this only loses that one ornament.
    """
    header, body = split_header(abc)
    body = [
        line if _FIELD_LINE.match(line) else _GRACE_AFTER_BROKEN.sub(r"\1", line)
        for line in body
    ]
    return "\n".join(header + body) + "\n"


_MODE_NAMES = {"": "major", "m": "minor", "mix": "mixolydian", "dor": "dorian",
               "phr": "phrygian", "lyd": "lydian", "loc": "locrian"}  # fmt: skip
_KEY_ACCIDENTAL = re.compile(r"^(\^{1,2}|_{1,2}|=)([A-Ga-g])$")


def key_accidentals(value: str) -> dict[str, str]:
    """Accidental of each letter (upper case) in a ``K:`` value's signature,
    explicit accidentals included: 'D' -> {'F': '^', 'C': '^'}; {} if unknown."""
    from music21 import key as m21key

    try:
        words = canonical_key(value.strip()).split()
    except ValueError:
        return {}
    accidentals: dict[str, str] = {}
    if words[0] in ("HP", "Hp"):
        accidentals = {"F": "^", "C": "^"}
    elif words[0] != "none" and "exp" not in words:
        match = re.match(r"([A-G])([#b]?)(.*)", words[0])
        tonic = match.group(1) + match.group(2).replace("b", "-")
        sharps = m21key.Key(tonic, _MODE_NAMES[match.group(3)]).sharps
        for pitch in m21key.KeySignature(sharps).alteredPitches:
            accidentals[pitch.step] = "^" if pitch.accidental.alter > 0 else "_"
    for word in words[1:]:
        match = _KEY_ACCIDENTAL.match(word)
        if match:
            accidentals[match.group(2).upper()] = match.group(1)
    return accidentals


_LENGTH_TEXT = re.compile(r"[\d/]+")
_NO_PROPAGATION = re.compile(
    r"^%%(?:MIDI\s+nobarlines|propagate-accidentals\s+not)\b", re.M
)


def propagate_accidentals(abc: str) -> str:
    """Write out accidentals that carry through the bar, in every octave, and
    cancel those abc2midi does not carry (a grace note's; every one under
    ``%%MIDI nobarlines`` or ``%%propagate-accidentals not``)."""
    header, body = split_header(abc)
    carry = not _NO_PROPAGATION.search(abc)
    signature = key_accidentals(header[-1][2:]) if header else {}
    out = []
    carried: dict[str, str] = {}  # letter (upper case) -> accidental in this bar
    marked: set[str] = set()  # letters written with an accidental abc2xml would carry
    for line in body:
        if _FIELD_LINE.match(line):
            if line.startswith(("V:", "K:")):
                carried, marked = {}, set()
            if line.startswith("K:"):
                signature = key_accidentals(line[2:])
            out.append(line)
            continue
        pieces: list[str] = []
        grace = chord = False
        ties = _Ties(pieces)
        for token in tokenize(line):
            played = None
            if token.kind == "bar" or (token.kind == "field" and token.text[1] in "VK"):
                carried, marked = {}, set()
                ties.bar()
                if token.text.startswith("[K:"):
                    signature = key_accidentals(token.text[3:-1])
            elif token.text in ("{", "}"):
                grace = token.text == "{"
            elif token.text in ("[", "]"):
                chord = token.text == "["
                ties.bracket(chord)
            elif token.text == "-":
                ties.tie()
            elif _LENGTH_TEXT.fullmatch(token.text):
                ties.length()
            elif token.kind == "note":
                match = _TOKEN.match(token.text)
                acc, letter = match.group("acc"), match.group("letter").upper()
                if acc:
                    marked.add(letter)
                    if carry and not grace:  # as abc2midi: a grace note's is its own
                        carried[letter] = acc
                elif letter in carried:
                    token.text = carried[letter] + token.text
                elif letter in marked:  # undo abc2xml's carrying
                    token.text = signature.get(letter, "=") + token.text
                sounding = _TOKEN.match(token.text).group("acc")
                sounding = sounding or signature.get(letter, "=")
                note = match.group("letter") + match.group("octave")
                played = None if grace else (note, acc, sounding, chord)
            pieces.append(token.text)
            if played:
                ties.note(*played)
        out.append("".join(pieces))
    return "\n".join(header + out) + "\n"


class _Ties:
    """Ties between notes of different accidentals, as abc2midi plays them.

    A tie to a note that writes another accidental (``_B2-=B2``, also from or
    into a chord: ``[G_B]2-[G=B]2``) is no tie in the bar: both notes sound,
    and a chord's tie holds only the notes that keep their pitch (abc2xml
    ties them all and gives the new note the old accidental).  Across a bar
    line abc2midi holds the first pitch on: the tied note is written with it.
    """

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.chord: list[list] = []  # [last piece, note, sounding] in this chord
        self.closed: list[list] | None = None  # the note or chord just written
        self.tied: list[list] | None = None  # one tied onwards ...
        self.tie_at = 0  # ... the piece of its "-" ...
        self.crossed = False  # ... and whether a bar line came since
        self.next: list[tuple[str, str, int]] = []  # (note, accidental, piece)

    def bracket(self, opens: bool) -> None:
        if opens:
            self.chord, self.closed = [], None
        else:
            self.closed = self.chord
            if self.tied is not None and self.next:
                self._resolve()

    def length(self) -> None:
        written = self.chord if self.closed is None else self.closed
        if written:
            written[-1][0] = len(self.pieces)

    def tie(self) -> None:
        if self.closed:
            self.tied, self.tie_at = self.closed, len(self.pieces)
            self.crossed, self.next = False, []
        self.closed = None

    def bar(self) -> None:
        self.crossed = True

    def note(self, note: str, acc: str, sounding: str, chord: bool) -> None:
        at = len(self.pieces) - 1
        if self.tied is not None:
            self.next.append((note, acc, at))
        if chord:
            self.chord.append([at, note, sounding])
        else:
            self.closed = [[at, note, sounding]]
            if self.tied is not None:
                self._resolve()

    def _resolve(self) -> None:
        held = {note: sounding for _, note, sounding in self.tied}
        changed = {
            (note, at): held[note]
            for note, acc, at in self.next
            if acc and note in held and held[note] != acc
        }
        if changed and self.crossed:
            for (note, at), sounding in changed.items():
                self.pieces[at] = sounding + note
        elif changed:
            self.pieces[self.tie_at] = ""
            moved = {note for note, _, _ in self.next} - {note for note, _ in changed}
            if len(self.tied) > 1:
                for at, note, _ in self.tied:
                    if note in moved:
                        self.pieces[at] += "-"
        self.tied, self.next = None, []


def _voices(
    body: list[str],
) -> tuple[list[str], dict[str, str], dict[str, list[Token]]]:
    """Body split into voices: (order, first V: line, tokens) per voice id."""
    order: list[str] = []
    heads: dict[str, str] = {}
    tokens: dict[str, list[Token]] = {}
    current = ""

    def switch(voice_id: str, head: str) -> str:
        if voice_id not in tokens:
            order.append(voice_id)
            tokens[voice_id] = []
            heads[voice_id] = head
        return voice_id

    for line in body:
        if line.startswith("V:"):
            voice_id = line[2:].split()[0] if line[2:].split() else ""
            current = switch(voice_id, line)
            continue
        if _FIELD_LINE.match(line) or line.startswith("%%"):
            switch(current, "")
            # A field or directive line (%%MIDI channel 10) must start a line
            # of its own after expansion.
            tokens[current].append(Token("other", "\n" + line + "\n"))
            continue
        switch(current, "")
        for token in tokenize(line):
            if token.kind == "field" and token.text.startswith("[V:"):
                voice_id = token.text[3:-1].split()[0]
                current = switch(voice_id, f"V:{voice_id}")
                continue
            if token.kind != "comment":
                tokens[current].append(token)
        tokens[current].append(Token("other", "\n"))
    return order, heads, tokens


_SOUNDING = re.compile(r"^(?:\^{1,2}|_{1,2}|=)?[A-Ga-g]|^[zxZX]$")
# Bar-line features, named as in abc2midi.
SINGLE_BAR, DOUBLE_BAR, THIN_THICK, THICK_THIN = "|", "||", "|]", "[|"
BAR_REP, REP_BAR, DOUBLE_REP, PLAY_ON_REP = "|:", ":|", "::", "[n"
# Where a skipped variant ending stops (that bar line itself is not acted on).
_ENDING_STOPS = {REP_BAR, BAR_REP, DOUBLE_BAR, THICK_THIN, THIN_THICK, PLAY_ON_REP}


def _bar_features(token: Token) -> list[str]:
    core = re.sub(r"\[?\d+(?:[-,]\d+)*$", "", token.text)
    if not core:
        features = []
    elif core.startswith(":") and core.endswith(":") and len(core) > 1:
        features = [DOUBLE_REP]
    elif core.startswith(":"):
        features = [REP_BAR]
    elif core.endswith(":"):
        features = [BAR_REP]
    elif core in (DOUBLE_BAR, THIN_THICK, THICK_THIN):
        features = [core]
    else:
        features = [SINGLE_BAR]
    return features + ([PLAY_ON_REP] if token.endings else [])


def _features(
    tokens: list[Token], insert_starts: bool = True
) -> list[tuple[str, str, tuple[int, ...]]]:
    """(kind, music text, endings) items; kind is "music" or a bar feature.

    Missing `|:` are placed as abc2midi's parser places them (store.c,
    fixreps): a `:|`, `::` or first ending without a `|:` before it gets one
    after the last `:|` or a `||`, `|]`, `[|` after it (the tune's start when
    there is no `:|` before), a `:|` only until the first ending of the tune;
    a second `|:` in a row is read as `::`.  Not in a tune played by header `P:` order
    (insert_starts=False) nor one of several voices, where abc2midi does not.
    """
    items: list[tuple[str, str, tuple[int, ...]]] = []
    expect_repeat = False
    rep_point: int | None = None  # item a `|:` would follow; None: the start
    plays = 0  # endings seen

    def place_start() -> None:
        # the tune's start already acts as a `|:` in _expand
        if rep_point is not None:
            items.insert(rep_point + 1, (BAR_REP, "", ()))

    for token in tokens:
        if token.kind != "bar":
            items.append(("music", token.text, ()))
            continue
        for feature in _bar_features(token):
            if insert_starts:
                if feature == BAR_REP and expect_repeat:
                    feature = DOUBLE_REP
                elif feature in (DOUBLE_BAR, THIN_THICK, THICK_THIN):
                    if rep_point is not None:  # as abc2midi 4.84 plays it
                        rep_point = len(items)
                elif feature == REP_BAR:
                    if not expect_repeat and plays < 1:
                        place_start()
                    rep_point = len(items)
                elif feature == PLAY_ON_REP:
                    if plays == 0 and not expect_repeat:
                        place_start()
                    plays += 1
                elif feature == DOUBLE_REP and not expect_repeat:
                    place_start()
            if feature in (BAR_REP, DOUBLE_REP):
                expect_repeat = True
            elif feature == REP_BAR:
                expect_repeat = False
            items.append((feature, "", token.endings))
    return items


# A key, meter or unit change: an inline field or a field line of the body.
KLM_FIELDS = ("K:", "L:", "M:")
_STATE_FIELD = re.compile(r"^(?:\[([KLM]):([^\]]*)\]|\n([KLM]):(.*)\n)$")


def _expand(
    tokens: list[Token],
    insert_starts: bool = True,
    start: dict | None = None,
    label: str = "tune",
) -> list[str]:
    """Play one voice through its repeats and endings exactly as abc2midi does.

    abc2midi's rules, including its handling of sloppy repeats: the tune
    starts as if after a `|:`; a `:|` on a later pass repeats again only if a
    played second ending raised the pass limit; a skipped ending stops at the
    next `:|`, `|:`, `||`, `|]`, `[|` or ending, and that bar is not acted on.
    A jump back restores the key, meter and unit in force where the repeat
    starts (``start``: those of the header), as abc2midi plays them (not a
    ``%%MIDI transpose``, which holds on).  Ties are then settled as abc2midi
    plays them across the jumps (:func:`abcmamba.convert.ties.abc2midi_ties`).
    """
    from abcmamba.convert.ties import abc2midi_ties

    items = _features(tokens, insert_starts)
    out: list[tuple[str, int]] = []  # (text, the item it copies; -1: none)
    fields = dict(start or {})  # K, L, M -> value in force
    saved_fields = dict(fields)

    def jump_back() -> None:
        nonlocal fields
        out.extend(
            (f"[{letter}:{value}]", -1)
            for letter, value in saved_fields.items()
            if fields.get(letter) != value
        )
        fields = dict(saved_fields)

    sounded = [False]  # a note or rest since the last "|"

    def emit_bar() -> None:
        # A "|" only after a note or rest: a jump, or a bar line after just a
        # decoration, must not leave an empty measure, which readers turn
        # into a bar of rest.
        if sounded[0]:
            out.append(("|", -1))
            sounded[0] = False

    saved, pass_no, max_pass, expect_repeat = -1, 1, 2, True  # -1: tune start
    j = 0
    guard = 8 * len(items) + 100  # malformed repeats must never loop forever
    while j < len(items) and guard > 0:
        guard -= 1
        kind, text, endings = items[j]
        if kind == "music":
            out.append((text, j))
            if _SOUNDING.match(text):
                sounded[0] = True
            field = _STATE_FIELD.match(text)
            if field:
                letter = field.group(1) or field.group(3)
                fields[letter] = (field.group(2) or field.group(4) or "").strip()
        elif kind == BAR_REP:
            emit_bar()
            saved, expect_repeat, pass_no, max_pass = j, True, 1, 2
            saved_fields = dict(fields)
        elif kind == REP_BAR:
            emit_bar()
            if (pass_no == 1 and expect_repeat) or 1 < pass_no < max_pass:
                pass_no, expect_repeat, j = pass_no + 1, False, saved
                jump_back()
        elif kind == DOUBLE_REP:
            emit_bar()
            if pass_no > 1 or not expect_repeat:
                saved, expect_repeat, pass_no, max_pass = j, True, 1, 2
                saved_fields = dict(fields)
            else:
                pass_no, j = pass_no + 1, saved
                jump_back()
        elif kind == PLAY_ON_REP:
            if pass_no not in endings:
                j += 1
                while j < len(items) and items[j][0] not in _ENDING_STOPS:
                    j += 1
                emit_bar()
            elif max_pass < 4:
                max_pass = pass_no + 1
        else:
            emit_bar()
        j += 1
    # a voice ends its last bar (a P: part played next starts a new one, as
    # in abc2midi; abc2xml would run the two into one overfull measure)
    emit_bar()
    texts = [text if kind == "music" else "|" for kind, text, _ in items]
    return abc2midi_ties(out, texts, dict(start or {}), label)


def parse_part_order(spec: str) -> list[str]:
    """Play order of a header `P:` field: 'A(BC)2' -> ['A', 'B', 'C', 'B', 'C']."""
    spec = re.sub(r"[^A-Za-z0-9()]", "", spec.split("%")[0])

    def sequence(pos: int) -> tuple[list[str], int]:
        items: list[list[str]] = []
        while pos < len(spec) and spec[pos] != ")":
            if spec[pos] == "(":
                inner, pos = sequence(pos + 1)
                items.append(inner)
                pos += 1  # the ")"
            elif spec[pos].isdigit():
                digits = re.match(r"\d+", spec[pos:]).group(0)
                if items:
                    items[-1] = items[-1] * max(int(digits), 1)
                pos += len(digits)
            else:
                items.append([spec[pos]])
                pos += 1
        return [name for item in items for name in item], pos

    return sequence(0)[0]


_INLINE_KLM = re.compile(r"\[([KLM]):([^\]\n]*)\]")


def _parts(abc: str) -> tuple[list[str], list[str], dict[str, list[str]]] | None:
    """(header, play order, body lines per part) if the tune has P: parts."""
    header, body = split_header(abc)
    order_fields = [line[2:] for line in header if line.startswith("P:")]
    if not order_fields:
        return None
    order = parse_part_order(order_fields[0])
    sections: dict[str, list[str]] = {}
    # The M:, L: and K: in force where each part starts (also from an inline
    # [K:] before it), so a part played again after a key change is in its
    # own key, as abc2midi plays it.
    state = {line[0]: line for line in header if line[:2] in ("M:", "L:", "K:")}
    current = None
    intro: list[str] = []  # abc2midi plays music before the first P: first
    for line in body:
        if line.startswith("P:"):
            current = line[2:].strip()[:1]
            if current not in sections:
                sections[current] = [state[f] for f in "MLK" if f in state]
        elif current is not None:
            sections[current].append(line)
        else:
            intro.append(line)
        if line[:2] in ("M:", "L:", "K:"):
            state[line[0]] = line
        elif not _NOT_MUSIC.match(line):  # an inline change holds on too
            for field in _INLINE_KLM.finditer(line):
                state[field.group(1)] = f"{field.group(1)}:{field.group(2)}"
    order = [p for p in order if p in sections]  # as abc2midi: skip the others
    if len(order) < 2:
        return None
    if any(line.strip() and not _NOT_MUSIC.match(line) for line in intro):
        sections[""] = intro
        order.insert(0, "")
    return [h for h in header if not h.startswith("P:")], order, sections


_TIED_AT_END = re.compile(r"-[\s|\]:\d]*$")


def expand_repeats(abc: str) -> str:
    """The tune with repeats, endings and the header's P: order written out."""
    parts = _parts(abc)
    if parts is not None:
        # abc2midi plays the parts in the header's order, each with its own
        # repeats.
        header, order, sections = parts
        music = {
            name: "".join(
                re.sub(r"%.*", "", line) for line in lines if not _NOT_MUSIC.match(line)
            )
            for name, lines in sections.items()
        }
        if any(_TIED_AT_END.search(text) for text in music.values()):
            # abc2midi joins it to the next part's first note in the text
            logger.warning(
                "%s: a tie across a P: part is not held as abc2midi holds it",
                tune_label(abc),
            )
        out = list(header)
        for name in order:
            section = "\n".join(header + sections[name])
            out += split_header(_expand_voices(section, insert_starts=False))[1]
        return "\n".join(out) + "\n"
    return _expand_voices(abc)


def _expand_voices(abc: str, insert_starts: bool = True) -> str:
    header, body = split_header(abc)
    order, heads, tokens = _voices(body)
    start = {line[0]: line[2:].strip() for line in header if line[:2] in KLM_FIELDS}
    # abc2midi places missing |: only in a tune of one voice (store.c: fixreps
    # runs when voicecount == 1)
    played = [v for v in order if any(t.kind == "note" for t in tokens[v])]
    insert_starts = insert_starts and len(played) <= 1
    out = list(header)
    for voice_id in order:
        if heads[voice_id]:
            out.append(heads[voice_id])
        elif voice_id:
            out.append(f"V:{voice_id}")
        text = "".join(_expand(tokens[voice_id], insert_starts, start, tune_label(abc)))
        out.extend(line for line in text.splitlines() if line.strip())
    return "\n".join(out) + "\n"


def tune_title(abc: str) -> str:
    """The first ``T:`` of a tune ('' when it has none)."""
    match = re.search(r"(?m)^T:\s*(.+?)\s*$", abc)
    return match.group(1) if match else ""


def tune_label(abc: str) -> str:
    """``X:n "Title"`` of a tune, to name it in messages."""
    number = re.search(r"(?m)^X:\s*(\S*)", abc)
    title = tune_title(abc)
    label = f"X:{number.group(1)}" if number else "tune"
    return f"{label} {title!r}" if title else label

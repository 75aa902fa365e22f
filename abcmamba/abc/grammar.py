"""An incremental recognizer of valid normalized ABC, one character at a time.

The constrained sampler (``abcmamba.generate.constrained``) asks it, for every
prefix of a tune being written, which continuations can still end as a tune
that :func:`abcmamba.abc.validate` accepts.  It works in two layers, so the
per-token work can be shared:

- the *lexer* (:func:`lex`) reads characters into ABC items (notes, chords,
  bar lines, fields, ...) and emits events; it knows nothing about lengths;
- the *tracker* (:meth:`TuneGrammar.apply`) applies events to the musical
  state: header fields in canonical order (requested ones exactly), the running
  length of the current bar against the meter (notes, rests, chords, broken
  rhythm, tuplets, ``L:`` and inline ``[M:]``/``[L:]``), bar lines only where a
  bar is complete (or a pickup / section edge, as the validator allows), slurs,
  and multi-voice lines of one bar per voice, in order, of equal length.

It is stricter than the validator on purpose (a subset of ABC that readers and
converters agree on): lengths are multiples of 1/16 of the unit note, no bar
is ever longer than the meter, every bar of a multi-voice line has the same
length, a tune ends only after a bar line at the end of a line.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import cache, lru_cache
from typing import NamedTuple

import regex

from abcmamba.abc.header import (
    HEADER_ORDER,
    ORDER,
    canonical_key,
    canonical_meter,
    default_tuplet_q,
    is_compound,
    meter_length,
    parse_unit,
)

MIN_BARS = 2  # as the validator
GRID = Fraction(1, 16)  # written lengths are multiples of this many unit notes
# Shorter notes than these reach MusicXML (abc2xml) with the wrong length:
NOTE_GRID = Fraction(1, 32)  # a plain note lasts a multiple of a 32nd note
MIN_NOTE = Fraction(1, 48)  # and none, in a tuplet or broken rhythm, under a 48th
MAX_LENGTH = 16  # longest written length, in unit notes
MAX_SLURS = 3
MAX_SPACES = 8
MAX_HEADER_LINE = 64
# Composer and rhythm are free text: the lexer keeps no copy of it (so tokens of
# any text share their work) and a requested value must come with the prompt.
FREE_TEXT_FIELDS = "CR"
FREE_TEXT = "\x00"  # stands for the text of such a line
NOTE_LETTERS = frozenset("ABCDEFGabcdefg")
ACCIDENTALS = ("^", "^^", "_", "__", "=")
SYMBOLS = frozenset(".~HLMOPSTuv")  # decoration letters ABC 2.1 defines
DECORATIONS = (
    "trill", "fermata", "invertedfermata", "accent", "emphasis", ">", "tenuto",
    "staccato", "mordent", "lowermordent", "uppermordent", "pralltriller", "roll",
    "turn", "turnx", "invertedturn", "arpeggio", "upbow", "downbow", "open",
    "thumb", "snap", "slide", "wedge", "breath", "segno", "coda", "D.S.", "D.C.",
    "fine", "p", "pp", "ppp", "mp", "mf", "f", "ff", "fff", "sfz", "crescendo(",
    "crescendo)", "diminuendo(", "diminuendo)", "0", "1", "2", "3", "4", "5",
    "plus", "marcato",
)  # fmt: skip
BARS = (
    "|", "||", "|]", "|:", ":|", "::", ":|:", ":||:", "||:", ":||", "[|",
    "|1", "|2", ":|1", ":|2", "|[1", "|[2", ":|[1", ":|[2", "||1", "||2",
)  # fmt: skip
_BAR_PREFIXES = frozenset(b[:i] for b in BARS for i in range(1, len(b) + 1))
_CLEF = r"clef=(?:treble|bass|alto|tenor)(?:-8|\+8)?"
# each property at most once, in a fixed order
_VOICE_PROPS = rf"(?: {_CLEF})?(?: transpose=-?\d{{1,2}})?(?: octave=-?\d)?(?: middle=[A-Ga-g][,']?)?"
MAX_VOICES = 8
# Field values the sampler may write, matched partially while being written.
FIELD_VALUES = {
    "M": regex.compile(r"C\||C|none|(?:1[0-6]|[1-9])/(?:1|2|4|8|16)"),
    "L": regex.compile(r"1/(?:1|2|4|8|16|32)"),
    "Q": regex.compile(
        r'(?:[1-9]/(?:1|2|4|8|16)=)?[1-9]\d{1,2}(?: "[A-Za-z .,-]{1,30}")?'
    ),
    "K": regex.compile(
        rf"(?:[A-G][#b]?(?:mix|dor|phr|lyd|loc|m)?|none|HP|Hp){_VOICE_PROPS}"
    ),
    "P": regex.compile(r"[A-Z][A-Z0-9.]{0,15}"),
}
_VOICE = regex.compile(rf"([1-{MAX_VOICES}]){_VOICE_PROPS}")
FIELD_VALUES["V"] = _VOICE
# A chord symbol as normalize keeps it (annotations such as "^text" are not written).
_CHORD_SYMBOL = regex.compile(
    r"\(?[A-G][#b]?(?:maj|min|dim|aug|sus|add|[mMo+#b()/\-\d]|[A-G])*\)?"
)
MAX_CHORD_SYMBOL = 12
_FREE_TEXT_BAN = frozenset("%\\")


def _prefixes(values) -> frozenset[str]:
    return frozenset(v[:i] for v in values for i in range(len(v) + 1))


# ------------------------------------------------------------------ the lexer
#
# Lexer states are small tuples:
#   ("H", text)          in a header line (text so far)
#   ("L",)               body, at the start of a line
#   ("B",)               body, between items
#   ("N", rest, acc, phase, length)   a note (rest=True for z/x): accidentals,
#                        phase "a" before the letter, "p" after it: "pl"/"pu"
#                        for a lower/upper case letter and its octave marks
#                        so far ("pl'", "pu,,"), "l" in the length
#   ("C", first, inner)  a chord: first note's written length (None before it),
#                        inner note state (acc, phase, length) or None
#   ("CL", first, length)  a chord's own length after "]"
#   ("Q", text)  chord symbol;  ("D", text)  decoration;
#   ("G", has_note, n)  grace notes (n characters so far)
#   ("F", text)  inline field after "[";   ("FL", text)  body field line
#   ("R", text)  a bar line;  ("P",) after "(";  ("T", text) a tuplet;
#   ("K", text)  broken rhythm;  ("S", letter)  a letter at line start (field?)
#   ("X", text)  an "X"/"Z" measure rest


def note_length(text: str) -> Fraction | None:
    """Written length multiplier of a note: '3/2' -> 3/2, '/' -> 1/2; None if malformed."""
    m = re.fullmatch(r"(\d*)(/*)(\d*)", text)
    if not m or (m.group(3) and not m.group(2)):
        return None
    num = int(m.group(1)) if m.group(1) else 1
    slashes = len(m.group(2))
    if not slashes:
        return Fraction(num)
    den = int(m.group(3)) * 2 ** (slashes - 1) if m.group(3) else 2**slashes
    return Fraction(num, den) if den else None


@cache
def reachable_texts(text: str) -> dict[Fraction, str]:
    """On-grid written lengths a note whose length so far is ``text`` can still
    get, each with its shortest spelling."""
    found: dict[Fraction, str] = {}
    stack = [text]
    while stack:
        t = stack.pop()
        value = _written(t)
        on_grid = value is not None and 0 < value <= MAX_LENGTH
        on_grid = on_grid and (value / GRID).denominator == 1
        if on_grid and len(t) < len(found.get(value, t + "~")):
            found[value] = t
        for ch in "/0123456789":
            if _length_prefix_ok(t + ch):
                stack.append(t + ch)
    return found


@cache
def reachable_lengths(text: str) -> tuple[Fraction, ...]:
    """On-grid written lengths a note whose length so far is ``text`` can still get."""
    return tuple(sorted(reachable_texts(text)))


def _written(text: str) -> Fraction | None:
    """The length of a finished length spelling; None unless the sampler may write it."""
    return note_length(text) if text == "" or text in _LENGTH_SPELLINGS else None


def _after_letter(letter: str) -> str:
    return "pl" if letter.islower() else "pu"


def _spellings() -> frozenset[str]:
    """Length spellings the sampler may write: the canonical one of each on-grid
    length up to MAX_LENGTH with a numerator below 16 (or a whole number), and
    the shorthands the corpus uses ("/", "//", "///", "3/")."""
    found = {"/", "//", "///", "3/"}
    for sixteenths in range(1, int(MAX_LENGTH / GRID) + 1):
        value = sixteenths * GRID
        if value.denominator == 1 or value.numerator < 16:
            found.add(length_text(value))
    found.discard("")
    return frozenset(found)


@cache
def _by_commonness(text: str) -> tuple[Fraction, ...]:
    """reachable_lengths(text), those nearest one unit note first."""
    return tuple(sorted(reachable_lengths(text), key=lambda v: (abs(v - 1), v)))


def _length_prefix_ok(text: str) -> bool:
    return text in _LENGTH_PREFIXES


def _between(ch: str, line_start: bool):
    """Lexer step from between items: (state, events) or None."""
    if ch == " ":
        return ("W", 1), ()
    if ch == "\n":
        return None if line_start else (("L",), (("nl",),))
    if line_start and ch in ("K", "M", "L", "P"):
        return ("S", ch), ()
    if ch in NOTE_LETTERS:
        return ("N", False, "", _after_letter(ch), ""), ()
    if ch in "^_=":
        return ("N", False, ch, "a", ""), ()
    if ch in "zx":
        return ("N", True, "", "p", ""), ()
    if ch in "ZX":
        return ("X", ch), ()
    if ch == "[":
        return ("C", None, None), ()  # a chord, an inline field or "[|": next char
    if ch == '"':
        return ("Q", ""), ()
    if ch == "!":
        return ("D", ""), ()
    if ch == "{":
        return ("G", False, 0), ()
    if ch in "|:":
        return ("R", ch), ()
    if ch == "(":
        return ("P",), ()
    if ch == ")":
        return ("B",), (("slur", -1),)
    if ch in "<>":
        return ("K", ch), ()
    if ch == "-":
        return ("B",), (("tie",),)
    if ch in SYMBOLS:
        return ("B",), (("deco",),)
    return None


def _close_then(events: tuple, ch: str, line_start: bool = False):
    """Emit ``events`` for a finished item, then read ``ch`` from between items."""
    nxt = _between(ch, line_start)
    if nxt is None:
        return None
    return nxt[0], events + nxt[1]


def _note_step(acc: str, phase: str, length: str, ch: str, rest: bool):
    """Continue a note or rest: the new (acc, phase, length), or None if it ends here."""
    if phase == "a":
        if ch in "^_=" and acc + ch in ACCIDENTALS:
            return acc + ch, "a", ""
        if ch in NOTE_LETTERS:
            return acc, _after_letter(ch), ""
        return False  # malformed: accidentals with no note
    if phase[0] == "p" and not rest and ch in ",'":
        # the corpus's range: c'' at the top, C,,, at the bottom
        mark, most = ("'", 2) if phase[1] == "l" else (",", 3)
        if ch != mark or len(phase) - 2 >= most:
            return False
        return acc, phase + ch, ""
    if ch.isdigit() or ch == "/":
        if _length_prefix_ok(length + ch):
            return acc, "l", length + ch
        return False
    return None


@lru_cache(maxsize=1 << 18)
def lex(state: tuple, ch: str):
    """One character: (next lexer state, events) or None when ``ch`` cannot come next."""
    kind = state[0]
    if kind == "H":
        text = state[1]
        if ch == "\n":
            if len(text) < 2:
                return None
            return (("L",) if text.startswith("K:") else ("H", "")), (("hline", text),)
        if not ch.isprintable() or ch == "\ufffd" or len(text) >= MAX_HEADER_LINE:
            return None
        if len(text) >= 2 and ch in _FREE_TEXT_BAN:
            return None
        if len(text) == 0 and ch not in HEADER_ORDER:
            return None
        if len(text) == 1 and ch != ":":
            return None
        if len(text) == 2 and ch == " ":
            return None
        if len(text) == 2 and text[0] in FREE_TEXT_FIELDS:
            return ("HT", text[0]), (("hfree",),)
        longer = text + ch
        if len(longer) > 2 and longer[0] == "X" and not ch.isdigit():
            return None
        if (
            len(longer) > 2
            and longer[0] in FIELD_VALUES
            and not _value_ok(longer[0], longer[2:], partial=True)
        ):
            return None
        return ("H", longer), ()
    if kind == "HT":  # composer or rhythm: any text; only its length is tracked
        if ch == "\n":
            return ("H", ""), (("hline", state[1] + ":" + FREE_TEXT),)
        if not ch.isprintable() or ch == "\ufffd" or ch in _FREE_TEXT_BAN:
            return None
        return ("HT", state[1]), (("hfree",),)
    if kind in ("L", "B"):
        return _between(ch, kind == "L")
    if kind == "W":  # spaces: a few in a row, as in the corpus, never endless
        if ch == " ":
            return (("W", state[1] + 1), ()) if state[1] < MAX_SPACES else None
        return _between(ch, False)
    if kind == "N":
        _, rest, acc, phase, length = state
        step = _note_step(acc, phase, length, ch, rest)
        if step is False:
            return None
        if step is not None:
            acc, phase, length = step
            return ("N", rest, acc if phase == "a" else "", phase, length), ()
        written = _written(length)
        if written is None:
            return None
        return _close_then((("el", written),), ch)
    if kind == "X":
        if ch.isdigit():
            return None  # multi-bar rests are not written by normalized ABC
        return _close_then((("mrest",),), ch)
    if kind == "C":
        first, inner = state[1], state[2]
        if first is None and inner is None and ch not in NOTE_LETTERS | set("^_="):
            if ch == "|":
                return ("R", "[|"), ()
            if ch in "KMLVP":
                return ("F", ch), ()
            return None
        if inner is not None:
            acc, phase, length = inner
            step = _note_step(acc, phase, length, ch, False)
            if step is False:
                return None
            if step is not None:
                acc, phase, length = step
                return ("C", first, (acc if phase == "a" else "", phase, length)), ()
            written = _written(length)
            if written is None:
                return None
            first = written if first is None else first
        if ch in NOTE_LETTERS:
            return ("C", first, ("", _after_letter(ch), "")), ()
        if ch in "^_=":
            return ("C", first, (ch, "a", "")), ()
        if ch == "]" and first is not None:
            return ("CL", first, ""), ()
        return None
    if kind == "CL":
        first, length = state[1], state[2]
        if ch.isdigit() or ch == "/":
            return (
                (("CL", first, length + ch), ())
                if _length_prefix_ok(length + ch)
                else None
            )
        written = _written(length)
        if written is None:
            return None
        return _close_then((("el", first * written),), ch)
    if kind == "Q":
        text = state[1]
        if ch == '"':
            if not _CHORD_SYMBOL.fullmatch(text):
                return None
            return ("B",), (("deco",),)
        longer = text + ch
        if not _CHORD_SYMBOL.fullmatch(longer, partial=True):
            return None
        rest = _shortest_completion(_CHORD_SYMBOL, longer)
        if rest is None or len(longer) + len(rest) > MAX_CHORD_SYMBOL:
            return None
        return ("Q", longer), ()
    if kind == "D":
        text = state[1]
        if ch == "!":
            return (("B",), (("deco",),)) if text in DECORATIONS else None
        if text + ch not in _DECORATION_PREFIXES:
            return None
        return ("D", text + ch), ()
    if kind == "G":
        has_note, n = state[1], state[2]
        if ch == "}":
            return (("B",), (("deco",),)) if has_note else None
        if ch in NOTE_LETTERS or ch in "^_=,'/" or ch.isdigit():
            ok = n < 16 and (has_note or ch in NOTE_LETTERS or ch in "^_=/")
            return (("G", has_note or ch in NOTE_LETTERS, n + 1), ()) if ok else None
        return None
    if kind == "F":
        text = state[1]
        if len(text) == 1:
            return (("F", text + ch), ()) if ch == ":" else None
        if ch == "]":
            return ("B",), (("field", text[0], text[2:]),)
        if not ch.isprintable() or ch in "[|\n" or len(text) > 24:
            return None
        return ("F", text + ch), ()
    if kind == "S":
        if ch == ":":
            return ("FL", state[1] + ":"), ()
        if state[1] == "K":
            return None  # K is not a decoration letter
        nxt = _between(ch, False)
        return None if nxt is None else (nxt[0], (("deco",),) + nxt[1])
    if kind == "FL":
        text = state[1]
        if ch == "\n":
            return ("L",), (("field", text[0], text[2:]),)
        if not ch.isprintable() or ch in "[]|" or len(text) > 24:
            return None
        return ("FL", text + ch), ()
    if kind == "R":
        text = state[1]
        if text + ch in _BAR_PREFIXES:
            return ("R", text + ch), ()
        if text.endswith("["):  # "|[" not followed by an ending number: "|" then "["
            if text[:-1] not in BARS:
                return None
            after = lex(("C", None, None), ch)
            if after is None:
                return None
            return after[0], (("bar", text[:-1]),) + after[1]
        if ch in ":|]" or ch.isdigit():
            return None  # the validator would read a longer bar line
        if text not in BARS:
            return None
        return _close_then((("bar", text),), ch)
    if kind == "P":
        if ch in "23456789":
            return ("T", ch), ()
        nxt = _between(ch, False)
        return None if nxt is None else (nxt[0], (("slur", 1),) + nxt[1])
    if kind == "T":
        text = state[1]
        if re.fullmatch(r"[2-9](:[1-9]?(:[1-9]?)?)?", text + ch):
            return ("T", text + ch), ()
        if ch.isdigit() or ch == ":":
            return None
        parts = [int(x) if x else 0 for x in text.split(":")]
        parts += [0] * (3 - len(parts))
        return _close_then((("tuplet", *parts),), ch)
    if kind == "K":
        text = state[1]
        if ch == text[0] and len(text) < 2:
            return ("K", text + ch), ()
        if ch in "<>":
            return None
        return _close_then((("broken", text),), ch)
    raise ValueError(f"unknown lexer state {state!r}")


_DECORATION_PREFIXES = _prefixes(DECORATIONS)


@lru_cache(maxsize=1 << 16)
def lex_open_events(state: tuple) -> tuple:
    """Events that describe an item still open at the end of a token (checks only)."""
    kind = state[0]
    if kind == "H":
        return (("hpart", state[1]),)
    if kind == "HT":
        return (("hpart", state[1] + ":" + FREE_TEXT),)
    if kind == "N":
        return (("open", 1, state[4] if state[3] == "l" else ""),)
    if kind == "C":
        first, inner = state[1], state[2]
        if first is None and inner is None:
            return (("open_bracket",),)  # "[" alone: a chord, a field or "[|"
        if first is None:
            return (("open_chord", inner[2] if inner[1] == "l" else "", None),)
        return (("open_chord", "", first),)
    if kind == "CL":
        return (("open", state[1], state[2]),)
    if kind == "S":
        return (("open_letter", state[1]),)
    if kind in ("Q", "D", "G"):
        return (("need",),)
    if kind == "X":
        return (("open_mrest",),)
    if kind == "P":
        return (("open_paren",),)
    if kind == "T":
        parts = [int(x) if x else 0 for x in state[1].split(":")]
        return (("open_tuplet", *(parts + [0] * (3 - len(parts)))),)
    if kind == "K":
        return (("open_broken", state[1]),)
    if kind == "R":
        return (("open_bar", state[1]),)
    if kind in ("F", "FL"):
        return (("open_field", state[1]),)
    return ()


# ------------------------------------------------------------------ the tracker


class Music(NamedTuple):
    """The musical state of a tune being written (hashable, immutable)."""

    header: tuple = ()  # (letter, value) lines written so far
    body: bool = False
    # per voice: (bar length in whole notes or None for free meter, unit, compound)
    meters: tuple = ((None, Fraction(1, 8), False),)
    voices: tuple = ()  # voice ids when the tune has several voices
    vi: int = 0  # current voice (index into voices)
    phase: int = 1  # multi-voice: 0 needs [V:], 1 in the bar, 2 bar done
    # per voice: (bars, last bar line a section edge, slurs, full bars in the section)
    bars: tuple = ((0, False, 0, 0),)
    fill: Fraction = Fraction(0)  # length of the current bar so far
    music: bool = False  # the current bar has notes
    last: Fraction = Fraction(0)  # length of the last element (broken rhythm)
    broken: Fraction | None = None  # factor for the next element
    tuplet: tuple | None = None  # (elements left, ratio)
    pending: bool = False  # a decoration or chord symbol waits for its note
    target: Fraction | None = None  # multi-voice: length of this line's bars
    line: int = 0  # characters of a composer or rhythm line being written
    closing: str = ""  # multi-voice: voice 1's bar line on this line, which all repeat

    @property
    def cap(self) -> Fraction | None:
        """Length of a full bar in the current voice (None: free meter)."""
        return self.meters[self.vi][0]

    @property
    def unit(self) -> Fraction:
        """The unit note length of the current voice."""
        return self.meters[self.vi][1]

    @property
    def compound(self) -> bool:
        """Whether the current voice's meter is compound (tuplet defaults)."""
        return self.meters[self.vi][2]

    def with_meter(self, cap=None, unit=None, compound=None) -> Music:
        """A copy with the current voice's meter or unit changed."""
        old = self.meters[self.vi]
        new = (
            old[0] if compound is None else cap,
            old[1] if unit is None else unit,
            old[2] if compound is None else compound,
        )
        meters = list(self.meters)
        meters[self.vi] = new
        return self._replace(meters=tuple(meters))


def _edge(bar: str) -> bool:
    """A bar line that ends or starts a section: repeats, double and end bars.

    Endings (``|1``, ``|2``) are not: the bars of an ending are ordinary bars.
    """
    return any(c in bar for c in ":][") or "||" in bar


def _feasible(room: Fraction, unit: Fraction, ratio: Fraction, k: int) -> bool:
    """Can ``k`` more elements (scaled by ``ratio``) fit in ``room`` leaving a
    remainder that plain elements on the grid can fill exactly?"""
    if room < 0:
        return False
    step = max(GRID * unit, NOTE_GRID)  # both are powers of two
    if k == 0:
        return (room / step).denominator == 1
    # each scaled element lasts at least MIN_NOTE (`_on_el` refuses shorter)
    j = k * max(1, math.ceil(MIN_NOTE / (ratio * step)))
    while ratio * j * step <= room:
        rest = room - ratio * j * step
        if (rest / step).denominator == 1:
            return True
        j += 1
        if j > 4096:
            break
    return False


class TuneGrammar:
    """Valid normalized ABC for one request (requested header fields honoured exactly)."""

    def __init__(self, request: dict[str, str] | None = None):
        self.request = dict(request or {})
        self.prompting = False  # reading a prompt: requested free text may be written

    # ---- the public surface

    def start(self) -> tuple:
        """The state before any character."""
        return ("H", ""), Music()

    def feed(self, state: tuple, text: str) -> tuple | None:
        """State after ``text``, or None when ``text`` cannot continue a valid tune."""
        lexer, music = state
        for ch in text:
            step = lex(lexer, ch)
            if step is None:
                return None
            lexer, events = step
            music = self.apply(music, events)
            if music is None:
                return None
        if self.apply(music, lex_open_events(lexer)) is None:
            return None
        return lexer, music

    def accepts(self, state: tuple) -> bool:
        """True when the tune may end here (an EOS is valid)."""
        lexer, m = state
        if lexer != ("L",) or not m.body or m.pending or m.tuplet or m.broken:
            return False
        if m.voices and m.phase != 0:
            return False
        # a last bar with no bar line after it counts, as in the validator
        open_bar = 1 if m.music else 0
        return all(n + open_bar >= MIN_BARS and s == 0 for n, _, s, _ in m.bars)

    def mask_key(self, state: tuple) -> tuple:
        """What of ``state`` decides which text may follow it (a cache key).

        Two states with the same key allow the same continuations: lengths
        matter only relative to the room left in the bar, bar counts only up
        to the two a tune needs.
        """
        lexer, m = state
        if not m.body:  # one token may run from the header into the body
            return lexer, m.header, m.line
        cap = self._cap(m)
        room = None if cap is None else cap - m.fill
        free_fill = m.fill if cap is None and m.voices else None
        bars = tuple((min(n, MIN_BARS), e, s, f) for n, e, s, f in m.bars)
        return (
            lexer,
            m.phase,
            m.vi,
            m.voices,
            m.meters,
            room,
            free_fill,
            m.target,
            m.last,
            m.broken,
            m.tuplet,
            m.pending,
            m.music,
            bars,
            m.closing if m.voices and m.vi > 0 else None,
        )

    # ---- events

    def apply(self, m: Music | None, events: tuple) -> Music | None:
        """Apply lexer events to the musical state; None when one is not allowed."""
        for event in events:
            if m is None:
                return None
            m = getattr(self, "_on_" + event[0])(m, *event[1:])
        return m

    def _on_hpart(self, m: Music, text: str) -> Music | None:
        if m.body:
            return None
        return m if self._header_line_ok(m, text, partial=True) else None

    def _on_hfree(self, m: Music) -> Music | None:
        if m.body or m.line + 1 > MAX_HEADER_LINE - 2:
            return None
        return m._replace(line=m.line + 1)

    def _on_hline(self, m: Music, text: str) -> Music | None:
        if m.body or not self._header_line_ok(m, text, partial=False):
            return None
        letter, value = text[0], text[2:]
        header = m.header + ((letter, value),)
        m = m._replace(line=0)
        if letter != "K":
            return m._replace(header=header)
        fields = dict(header)
        meter = fields.get("M", "none")
        voices = tuple(v.split()[0] for f, v in header if f == "V")
        return m._replace(
            header=header,
            body=True,
            meters=((meter_length(meter), parse_unit(fields["L"]), is_compound(meter)),)
            * max(1, len(voices)),
            voices=voices,
            phase=0 if voices else 1,
            bars=((0, False, 0, 0),) * max(1, len(voices)),
        )

    def _header_line_ok(self, m: Music, text: str, partial: bool) -> bool:
        if not text:
            return True
        letter = text[0]
        written = [f for f, _ in m.header]
        if not written and letter != "X":
            return False
        if written and letter == "X":
            return False
        last = ORDER[written[-1]] if written else -1
        order = ORDER[letter]
        if order < last or (order == last and letter != "V"):
            return False
        for wanted in self.request:
            if ORDER[wanted] < order and wanted not in written:
                return False  # this line would skip a requested field
        if order > ORDER["L"] and "L" not in written:
            return False  # normalized ABC always states L: (before Q:, V:, K:)
        if letter == "V" and written.count("V") >= MAX_VOICES:
            return False
        n_voices = written.count("V")
        if letter == "K" and n_voices == 1:
            return False  # one V: line is not a multi-voice tune
        if len(text) < 2:
            return True
        value = text[2:]
        if letter == "X":
            return value.isdigit() or (partial and value == "")
        if letter == "V":
            match = _VOICE.fullmatch(value, partial=partial)
            if not match:
                return False
            number = match.group(1) or ""
            expected = str(n_voices + 1)
            return expected.startswith(number) if partial else number == expected
        if letter in FREE_TEXT_FIELDS:
            # a requested composer/rhythm is in the prompt (see start_checked)
            requested = letter in self.request and not self.prompting
            return value in (FREE_TEXT, "") and not (partial and requested)
        if letter in self.request:
            want = self.request[letter]
            return want.startswith(value) if partial else value == want
        if letter in FIELD_VALUES:
            return _value_ok(letter, value, partial)
        # free text (composer, rhythm): printable, not empty
        if not partial and not value.strip():
            return False
        return not value.startswith(" ")

    def _on_nl(self, m: Music) -> Music | None:
        if m.pending or m.broken or m.tuplet:
            return None
        if m.voices:
            if m.phase != 2 or m.vi != len(m.voices) - 1:
                return None
            return m._replace(vi=0, phase=0, target=None)
        return m

    def _cap(self, m: Music) -> Fraction | None:
        return m.target if m.voices and m.vi > 0 else m.cap

    def _on_el(self, m: Music, written: Fraction) -> Music | None:
        if m.phase != 1 or not 0 < written <= MAX_LENGTH:
            return None
        if (written / GRID).denominator != 1:
            return None
        length = written * m.unit
        if (length / NOTE_GRID).denominator != 1:
            return None
        if m.broken is not None:
            length *= m.broken
        tuplet = m.tuplet
        if tuplet:
            length *= tuplet[1]
            tuplet = (tuplet[0] - 1, tuplet[1]) if tuplet[0] > 1 else None
        if length < MIN_NOTE:
            return None
        fill = m.fill + length
        m = m._replace(
            fill=fill,
            music=True,
            last=length,
            broken=None,
            tuplet=tuplet,
            pending=False,
        )
        return m if self._fits(m) else None

    def _fits(self, m: Music) -> bool:
        cap = self._cap(m)
        if cap is None and not m.voices:
            return True
        if cap is None:  # free meter: voice 1's bars still end on the grid for the rest
            cap = m.fill + 64
        room = cap - m.fill
        if m.tuplet:
            return _feasible(room, m.unit, m.tuplet[1], m.tuplet[0])
        if m.broken is not None:
            return _feasible(room, m.unit, m.broken, 1)
        if m.pending:
            return _feasible(room, m.unit, Fraction(1), 1)
        return _feasible(room, m.unit, Fraction(1), 0)

    def _on_open(self, m: Music, factor: Fraction, text: str) -> Music | None:
        # some length the note can still get must fit
        for v in reachable_lengths(text):
            if self._on_el(m, factor * v) is not None:
                return m
        return None

    def _on_open_chord(self, m: Music, inner: str, first: Fraction | None) -> Music:
        # the common lengths first: most chords end on the first try
        firsts = (first,) if first is not None else _by_commonness(inner)
        for f in firsts:
            for outer in (1, Fraction(1, 2), Fraction(1, 4), Fraction(1, 8), GRID):
                if self._on_el(m, f * outer) is not None:
                    return m
        return None

    def _on_need(self, m: Music) -> Music | None:
        if m.phase != 1:
            return None
        return m if self._fits(m._replace(pending=True)) else None

    def _on_open_bracket(self, m: Music) -> Music | None:
        if m.voices and (m.phase == 0 or m.phase == 2 and _next_voice(m)):
            return m  # the "[" of "[V:"
        return self._on_need(m)

    def _on_open_tuplet(self, m: Music, p: int, q: int, r: int) -> Music | None:
        return m if self._on_tuplet(m, p, q, r) is not None else None

    def _on_open_letter(self, m: Music, letter: str) -> Music | None:
        # a letter at a line's start: a field line ("M:") or a decoration ("M")
        if letter != "K" and self._on_need(m) is not None:
            return m
        return self._on_open_field(m, letter)

    def _on_open_mrest(self, m: Music) -> Music | None:
        return m if self._on_mrest(m) is not None else None

    def _on_open_paren(self, m: Music) -> Music | None:
        # "(" opens a slur or, with a digit after it, a tuplet
        if self._on_open_tuplet(m, 3, 0, 0) is not None:
            return m
        slur = self._on_slur(m, 1)
        return m if slur is not None and self._on_need(slur) is not None else None

    def _on_open_broken(self, m: Music, text: str) -> Music | None:
        return m if self._on_broken(m, text) is not None else None

    def _on_open_bar(self, m: Music, text: str) -> Music | None:
        # some bar line starting with ``text`` must be allowed here ...
        if any(self._on_bar(m, b) for b in BARS if b.startswith(text)):
            return m
        # ... or "|[" is a bar line and the "[" of what follows ("[V:2]")
        if text.endswith("[") and text[:-1] in BARS:
            after = self._on_bar(m, text[:-1])
            if after is not None and self._on_open_bracket(after) is not None:
                return m
        return None

    def _on_open_field(self, m: Music, text: str) -> Music | None:
        letter = text[0]
        if m.voices and (letter == "V" or m.phase != 1):
            if letter != "V" or m.phase == 1:
                return None
            want = m.voices[0] if m.phase == 0 else _next_voice(m)
            return m if want is not None and want.startswith(text[2:]) else None
        if not _body_field_ok(m, letter):
            return None
        if len(text) < 2:
            return m
        if letter in self.request:
            return m if self.request[letter].startswith(text[2:]) else None
        return m if _value_ok(letter, text[2:], partial=True) else None

    def _on_mrest(self, m: Music) -> Music | None:
        if m.phase != 1 or m.music or m.pending or m.tuplet or m.broken:
            return None
        if m.voices:
            return None  # the validator counts a Z bar as empty: voices would drift
        cap = self._cap(m)
        return m._replace(fill=cap or Fraction(0), music=True, last=Fraction(0))

    def _on_bar(self, m: Music, text: str) -> Music | None:
        if m.pending or m.broken is not None or m.tuplet:
            return None
        if m.voices and (m.phase != 1 or not m.music):
            return None
        if not m.music:
            return m  # a bar line with no notes before it starts no bar
        n, after_edge, slurs, full = m.bars[m.vi]
        if m.voices and m.vi > 0 and (m.fill != m.target or text != m.closing):
            return None  # every voice's bar as long as voice 1's, with its bar line
        edge = _edge(text)
        short = m.cap is not None and m.fill != m.cap
        # a short bar: the tune's pickup, a section's pickup, or the bar that ends
        # a section of at least two full bars (never a way around the meter)
        if short and not (n == 0 or after_edge or (edge and full >= MIN_BARS)):
            return None
        full = 0 if edge else min(full + (not short), MIN_BARS)
        bars = list(m.bars)
        bars[m.vi] = (n + 1, edge, slurs, full)
        target = m.target if m.vi > 0 else m.fill
        return m._replace(
            bars=tuple(bars),
            fill=Fraction(0),
            music=False,
            last=Fraction(0),
            phase=2 if m.voices else 1,
            target=target if m.voices else None,
            closing=text if m.voices and m.vi == 0 else m.closing,
        )

    def _on_slur(self, m: Music, delta: int) -> Music | None:
        if m.phase != 1:
            return None
        n, edge, slurs, full = m.bars[m.vi]
        slurs += delta
        if not 0 <= slurs <= MAX_SLURS:
            return None
        bars = list(m.bars)
        bars[m.vi] = (n, edge, slurs, full)
        return m._replace(bars=tuple(bars))

    def _on_tuplet(self, m: Music, p: int, q: int, r: int) -> Music | None:
        if m.phase != 1 or m.tuplet or m.broken is not None:
            return None
        q = q or default_tuplet_q(p, m.compound)
        m = m._replace(tuplet=(r or p, Fraction(q, p)))
        return m if self._fits(m) else None

    def _on_broken(self, m: Music, text: str) -> Music | None:
        if m.phase != 1 or not m.last or m.tuplet or m.broken is not None:
            return None
        short = Fraction(1, 2 ** len(text))
        first, second = (2 - short, short) if text[0] == ">" else (short, 2 - short)
        if m.last * first < MIN_NOTE:
            return None  # the note it shortens would be too short
        fill = m.fill + m.last * (first - 1)
        m = m._replace(fill=fill, last=Fraction(0), broken=second)
        cap = self._cap(m)
        if cap is not None and fill > cap:
            return None
        return m if self._fits(m) else None

    def _on_tie(self, m: Music) -> Music | None:
        # one tie per note: a run of ties is not music (and would never end)
        return m._replace(last=Fraction(0)) if m.phase == 1 and m.last else None

    def _on_deco(self, m: Music) -> Music | None:
        if m.phase != 1:
            return None
        m = m._replace(pending=True)
        return m if self._fits(m) else None

    def _on_field(self, m: Music, letter: str, value: str) -> Music | None:
        if m.voices and (letter == "V" or m.phase != 1):
            if letter != "V" or m.phase == 1:
                return None
            want = m.voices[0] if m.phase == 0 else _next_voice(m)
            if value != want:
                return None
            vi = 0 if m.phase == 0 else m.vi + 1
            return m._replace(vi=vi, phase=1)
        if not _body_field_ok(m, letter):
            return None
        if letter in self.request:
            return m if value == self.request[letter] else None
        if not _value_ok(letter, value, partial=False):
            return None
        if letter == "M":
            return m.with_meter(cap=meter_length(value), compound=is_compound(value))
        if letter == "L":
            return m.with_meter(unit=parse_unit(value))
        return m


def _body_field_ok(m: Music, letter: str) -> bool:
    """Whether a field ``letter`` (not V:) may start here in the body."""
    if letter not in "MLKP" or m.music or m.pending:
        return False
    # a meter or part change in one voice would part the voices' bars
    return not (m.voices and letter in "MP")


def _next_voice(m: Music) -> str | None:
    return m.voices[m.vi + 1] if m.vi + 1 < len(m.voices) else None


@lru_cache(maxsize=65536)
def _value_ok(letter: str, value: str, partial: bool) -> bool:
    """Whether a field value is (a prefix of) a canonical spelling the sampler writes."""
    if not FIELD_VALUES[letter].fullmatch(value, partial=partial):
        return False
    if partial:
        return True
    try:
        if letter == "M":
            return canonical_meter(value) == value and meter_length(value) != 0
        if letter == "K":
            return canonical_key(value) == value
    except ValueError:
        return False
    return True


@lru_cache(maxsize=4096)
def length_text(written: Fraction) -> str:
    """ABC spelling of a written length multiplier: 1 -> '', 2 -> '2', 1/2 -> '/2'."""
    if written == 1:
        return ""
    if written.denominator == 1:
        return str(written.numerator)
    num = "" if written.numerator == 1 else str(written.numerator)
    return f"{num}/{written.denominator}"


_SEARCH_ALPHABET = ' |]\n)"!}z/2c:'


def completion(grammar: TuneGrammar, state: tuple, limit: int = 200) -> str | None:
    """A short text that ends the tune validly from ``state`` (None if none found).

    Built a piece at a time (close what is open, give pending decorations and
    tuplets their notes, close slurs, complete the bar, reach two bars, end the
    line), each piece checked with :meth:`TuneGrammar.feed`; where that gets
    stuck, a few characters are searched for first.
    """
    text = _build_completion(grammar, state, limit)
    if text is not None:
        return text
    frontier = [("", state)]
    for _ in range(3):
        nxt = []
        for prefix, st in frontier:
            for ch in _SEARCH_ALPHABET:
                after = grammar.feed(st, ch)
                if after is None:
                    continue
                rest = _build_completion(grammar, after, limit)
                if rest is not None:
                    return prefix + ch + rest
                nxt.append((prefix + ch, after))
        frontier = nxt[:64]
    return None


def _build_completion(grammar: TuneGrammar, state: tuple, limit: int) -> str | None:
    out = ""
    for _ in range(limit):
        if grammar.accepts(state):
            return out
        for piece in _pieces(grammar, state):
            after = grammar.feed(state, piece)
            if after is not None:
                out, state = out + piece, after
                break
        else:
            return None
    return None


def _pieces(g: TuneGrammar, state: tuple) -> list[str]:
    """Candidate next pieces of a completion, most preferred first."""
    lexer, m = state
    kind = "B" if lexer[0] == "W" else lexer[0]
    if kind == "H":
        return _header_pieces(g, m, lexer[1])
    if kind == "D":
        names = sorted((d for d in DECORATIONS if d.startswith(lexer[1])), key=len)
        return [names[0][len(lexer[1]) :] + "!"] if names else []
    if kind == "Q":
        rest = _shortest_completion(_CHORD_SYMBOL, lexer[1])
        return [] if rest is None else [rest + '"']
    if kind == "G":
        return ["}", "c}"]
    if kind == "C" and lexer[1] is None and lexer[2] is None:
        return [f"V:{v}]" for v in m.voices] + ["c]", "|"]
    if kind == "C":
        return [c + o for c in ("]", "c]") for o in ("", "/", "//", "/8", "/16")]
    if kind == "F":
        want = _field_value(g, m, lexer[1])
        return [want + "]"] if want is not None else []
    if kind == "FL":
        want = _field_value(g, m, lexer[1])
        return [want + "\n"] if want is not None else []
    if kind == "R":
        bars = sorted((b for b in BARS if b.startswith(lexer[1])), key=len)
        return [b[len(lexer[1]) :] + " " for b in bars] + [
            b[len(lexer[1]) :] + "\n" for b in bars
        ]
    if kind == "S":
        return ["c"]
    if kind in ("K", "T", "P", "X"):
        return [" "]  # close the item first, so the bar's state is known
    if kind in ("N", "CL"):
        text = lexer[4] if kind == "N" else lexer[2]
        if kind == "N" and lexer[3] == "a":
            return ["c "]
        spelled = sorted(reachable_texts(text).values(), key=len)
        return [t[len(text) :] + " " for t in spelled if t.startswith(text)]
    pieces = []
    if m.voices and m.phase == 0:
        return [f"[V:{m.voices[0]}]"]
    if m.voices and m.phase == 2:
        nxt = _next_voice(m)
        return [f"[V:{nxt}]"] if nxt is not None else ["\n"]
    cap = m.target if m.voices and m.vi > 0 else m.cap
    room = (cap - m.fill) if cap is not None else None
    if m.pending or m.tuplet or m.broken is not None:
        factor = (m.tuplet[1] if m.tuplet else 1) * (m.broken or 1)
        pieces += _rests(room, m.unit, factor)
    if m.bars[m.vi][2] and kind == "B":
        pieces.append(")")
    if m.music or (room is not None and room > 0 and m.voices):
        bar_lines = [m.closing] if m.voices and m.vi > 0 else ["|", "|]"]
        if room:
            pieces += [r + bar_lines[0] for r in _rests(room, m.unit, 1, exact=True)]
        pieces += bar_lines
        if room:
            pieces += list(_rests(room, m.unit, 1))
    n_bars = m.bars[m.vi][0]
    if not m.music and kind == "B" and n_bars >= MIN_BARS:
        pieces.append("\n")
    if not m.music and n_bars < MIN_BARS:
        pieces += ["Z|", "z|"]
    if kind == "L" and not m.voices:
        pieces += ["Z|"]
    return pieces


@lru_cache(maxsize=65536)
def _rests(room: Fraction | None, unit: Fraction, factor: Fraction, exact=False):
    """Rests that fit ``room`` (scaled by ``factor``), exactly filling it if
    ``exact``, else leaving a remainder on the grid; simplest spellings first."""
    if room is None:
        return ("z",)
    # in grid steps: room R = a/b, each written step of j adds j*c/d; need R - j*c/d
    # to be a whole number of steps (exact: zero), j = 1 .. MAX_LENGTH/GRID
    r = room / (GRID * unit)
    a, b, c, d = r.numerator, r.denominator, factor.numerator, factor.denominator
    fits = []
    for j in range(1, int(MAX_LENGTH / GRID) + 1):
        left = a * d - j * c * b  # (R - j*factor) * b * d
        if left < 0:
            break
        if (left == 0) if exact else left % (b * d) == 0:
            fits.append(j * GRID)
    fits.sort(key=lambda w: (len(length_text(w)), -w))
    return tuple("z" + length_text(w) for w in fits[:6])


def _field_value(g: TuneGrammar, m: Music, text: str) -> str | None:
    """The rest of a field's value (header line, inline field or body field line)."""
    letter, value = text[0], text[2:]
    if len(text) < 2:
        return None
    if letter == "V" and not m.body:
        return _shortest_value("V", value)
    if letter == "V":
        want = m.voices[0] if m.phase == 0 else _next_voice(m)
        return want[len(value) :] if want and want.startswith(value) else None
    if letter in g.request:
        want = g.request[letter]
        return want[len(value) :] if want.startswith(value) else None
    if letter == "X":
        return "" if value.isdigit() else "1"
    if letter in FIELD_VALUES:
        return _shortest_value(letter, value)
    return "" if value.strip() else "x"


@lru_cache(maxsize=4096)
def _shortest_value(letter: str, value: str) -> str | None:
    """The shortest text completing a partial field value."""
    if _value_ok(letter, value, partial=False):
        return ""
    return _shortest_completion(FIELD_VALUES[letter], value, letter)


@lru_cache(maxsize=65536)
def _shortest_completion(pattern, value: str, letter: str | None = None) -> str | None:
    """The shortest suffix making ``value`` match ``pattern`` (breadth-first)."""
    alphabet = "0123456789/=CABDEFG#bmnoe|lcftr-+)ajdgsui "

    def ok(text: str, partial: bool) -> bool:
        if letter is not None:
            return _value_ok(letter, text, partial)
        return bool(pattern.fullmatch(text, partial=partial))

    frontier = [""]
    for _ in range(12):
        nxt = []
        for suffix in frontier:
            if ok(value + suffix, False):
                return suffix
            nxt += [suffix + ch for ch in alphabet if ok(value + suffix + ch, True)]
        frontier = nxt[:48]  # breadth-first, but bounded: values are short
    return None


def _header_pieces(g: TuneGrammar, m: Music, text: str) -> list[str]:
    if text:
        if len(text) == 1:
            text += ":"
            prefix = ":"
        else:
            prefix = ""
        rest = _field_value(g, m, text)
        return [] if rest is None else [prefix + rest + "\n"]
    written = [f for f, _ in m.header]
    if not written:
        return ["X:1\n"]
    last = ORDER[written[-1]]
    if written.count("V") == 1:
        return ["V:2\n"]
    lines = []
    for letter in HEADER_ORDER[last + 1 :]:
        if letter in g.request:
            lines.append(f"{letter}:{g.request[letter]}\n")
            break
        if letter == "L" and "L" not in written:
            lines.append("L:1/8\n")
            break
        if letter == "K":
            lines.append("K:C\n")
    return lines


_LENGTH_SPELLINGS = _spellings()
_LENGTH_PREFIXES = _prefixes(_LENGTH_SPELLINGS)

"""Normalize one ABC tune into the canonical text the models learn from.

Rules: `X:1` first; header `C R M L Q V... K` in that order (HEADER_ORDER), `L:`
always explicit; titles, notes, comments, `%%` directives, lyrics and
annotations (quoted text that is not a chord symbol) removed;
multi-voice music bar-interleaved, one line per bar group
(`[V:1]...|[V:2]...|`); LF endings, no trailing spaces, one final newline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from abcmamba.abc.header import (
    CLEF_WORD,
    HEADER_ORDER,
    canonical_key,
    canonical_meter,
    canonical_tempo,
    default_unit,
    key_name,
    parse_header,
    parse_unit,
)
from abcmamba.abc.text import FIELD_LINE, Token, logical_lines, tokenize_music

MUSIC_KINDS = frozenset({"note", "rest", "chord", "measure_rest"})
# Body field lines that change the music and so become part of a voice.
_MUSIC_FIELDS = "KMLQ"
# Fields of the header that may follow K: before the music starts.
_PRELUDE_FIELDS = "MLQCRNZOSHBDFGA"
# Inline fields that carry only text or layout.
_TEXT_INLINE = re.compile(r"^\[[IrTNwWHSOZDBFGRsm+]:")
_VOICE_PROPS = ("clef", "octave", "transpose", "middle", "stafflines", "t", "m")
# Decoration letters ABC 2.1 defines without a U: field.
DEFAULT_SYMBOLS = frozenset(".~HLMOPSTuv")
# A chord symbol (`"Am7"`, `"(G)"`, `"N.C."`); any other quoted string is an
# annotation (`"^rit."`, `"@5,5 text"`, a fingering `"4"`): text, not music.
_CHORD_SYMBOL = re.compile(
    r'^"(?:\(?[A-G][#b]?(?:maj|min|dim|aug|sus|add|[mMo+#b()/\-\d]|[A-G])*\)?'
    r'|N\.?C\.?)"$'
)
_USER_SYMBOL = re.compile(r"^\s*(\S)\s*=\s*(\S+)\s*$")


class AbcError(ValueError):
    """A tune that cannot be normalized; the message is the reason."""


@dataclass
class NormalizedTune:
    """A normalized tune and the metadata taken out of its text."""

    abc: str
    title: str = ""
    composer: str = ""
    rhythm: str = ""
    meter: str = ""
    key: str = ""
    unit_note_length: str = ""
    n_bars: int = 0
    n_voices: int = 1


@dataclass
class _Voice:
    props: str = ""
    lines: list[str] = field(default_factory=list)


def normalize(tune: str) -> NormalizedTune:
    """Normalize one tune; raises AbcError with the reason when it cannot."""
    lines = list(logical_lines(tune))
    k_at = next((i for i, ln in enumerate(lines) if ln.startswith("K:")), None)
    if k_at is None:
        raise AbcError("no K: field")
    # fields between K: and the music (K:G / M:4/4 / L:1/4 / V:1 ...) hold for
    # the whole tune, as abc2xml and the voices' bars read them
    prelude = k_at + 1
    while prelude < len(lines) and (m := FIELD_LINE.match(lines[prelude])):
        if m.group(1) not in _PRELUDE_FIELDS or m.group(2).startswith(("|", ":")):
            break
        prelude += 1
    fields = parse_header("\n".join(lines[: k_at + 1])).fields + tuple(
        (ln[0], ln[2:].strip()) for ln in lines[k_at + 1 : prelude]
    )
    header = _header_values(fields)
    try:
        key = canonical_key(header["K"])
        meter = canonical_meter(header["M"]) if "M" in header else ""
        unit = header.get("L") or default_unit(meter or "none")
        parse_unit(unit)
    except ValueError as err:
        raise AbcError(str(err)) from None

    symbols = header["U"]
    voices: dict[str, _Voice] = {vid: _Voice(props) for vid, props in header["V"]}
    current = next(iter(voices), "1")
    for line in lines[prelude:]:
        m = FIELD_LINE.match(line)
        if m and not m.group(2).startswith(("|", ":")):
            letter, value = m.group(1), m.group(2).strip()
            if letter == "V":
                vid, props = _split_voice(value)
                voice = voices.setdefault(vid, _Voice(props))
                voice.props = voice.props or props
                current = vid
            elif letter in _MUSIC_FIELDS or letter == "P":
                field = _canonical_field(letter, value)
                if field:
                    voices.setdefault(current, _Voice()).lines.append(field)
            elif letter == "U":
                _add_user_symbol(symbols, value)
            continue
        current = _add_music(line, voices, current, symbols)

    played = {vid: v for vid, v in voices.items() if _has_music(v.lines)}
    for voice in played.values():
        try:
            voice.lines = close_full_bars(voice.lines, meter or "none", unit)
        except ValueError as err:  # a length such as "A/0"
            raise AbcError(str(err)) from None
        voice.lines = balance_slurs(voice.lines)
    if not played:
        raise AbcError("no notes")
    values = {
        "C": header["C"],
        "R": header["R"],
        "M": meter,
        "L": unit.replace(" ", ""),
        "Q": canonical_tempo(header.get("Q", "")),
    }
    # V: and K: come last in HEADER_ORDER: they are written below
    head = ["X:1"] + [f"{f}:{values[f]}" for f in HEADER_ORDER if values.get(f)]

    if len(played) == 1:
        voice = next(iter(played.values()))
        clef = _clef_from_props(voice.props)
        k_line = f"K:{key}" + (f" {clef}" if clef and "clef=" not in key else "")
        body = [_field_line(ln) for ln in voice.lines]
        n_bars = len(split_bars(" ".join(voice.lines)))
        text = "\n".join([*head, k_line, *body])
    else:
        names = {vid: str(n) for n, vid in enumerate(played, start=1)}
        head += [
            f"V:{names[vid]}"
            + (f" {props}" if (props := _voice_props(v.props)) else "")
            for vid, v in played.items()
        ]
        bars = {vid: split_bars(" ".join(v.lines)) for vid, v in played.items()}
        counts = {len(b) for b in bars.values()}
        if len(counts) > 1:
            detail = ", ".join(f"V:{names[v]} {len(b)}" for v, b in bars.items())
            raise AbcError(f"voices have different numbers of bars ({detail})")
        n_bars = counts.pop()
        body = [
            "".join(f"[V:{names[vid]}]{bars[vid][i]}" for vid in played)
            for i in range(n_bars)
        ]
        text = "\n".join([*head, f"K:{key}", *body])

    text = "\n".join(ln.rstrip() for ln in text.split("\n") if ln.strip()) + "\n"
    return NormalizedTune(
        abc=text,
        title=header["T"],
        composer=header["C"],
        rhythm=header["R"],
        meter=meter,
        key=key_name(key),
        unit_note_length=unit.replace(" ", ""),
        n_bars=n_bars,
        n_voices=len(played),
    )


def _header_values(fields: tuple[tuple[str, str], ...]) -> dict:
    """The header as normalization reads it: first T: and R:, every C:, last M: L: Q: K:."""
    header: dict = {"T": "", "C": "", "R": "", "V": [], "U": {}}
    last = None
    for letter, value in fields:
        if letter == "+" and last in ("T", "C", "R"):
            header[last] = f"{header[last]} {value}".strip()
            continue
        last = letter
        if letter == "T":
            header["T"] = header["T"] or value
        elif letter == "C":
            header["C"] = f"{header['C']}; {value}" if header["C"] else value
        elif letter == "R":
            header["R"] = header["R"] or value
        elif letter == "V":
            vid, props = _split_voice(value)
            if all(vid != v for v, _ in header["V"]):
                header["V"].append((vid, props))
        elif letter == "U":
            _add_user_symbol(header["U"], value)
        elif letter in "MLQK":
            header[letter] = value
    return header


def _split_voice(value: str) -> tuple[str, str]:
    parts = value.split(None, 1)
    return (parts[0] if parts else "1"), (parts[1] if len(parts) > 1 else "")


def _voice_props(props: str) -> str:
    """Keep the voice properties that change the music or its clef; drop names."""
    kept = []
    for word in re.findall(r'\S+="[^"]*"|\S+', props):
        name = word.split("=", 1)[0].lower()
        if "=" in word and name in _VOICE_PROPS:
            kept.append(word)
        elif "=" not in word and CLEF_WORD.match(word):
            kept.append(f"clef={word.lower()}")
    return " ".join(kept)


def _clef_from_props(props: str) -> str:
    clef = [w for w in _voice_props(props).split() if w.startswith("clef=")]
    return clef[0] if clef and clef[0] != "clef=treble" else ""


def _canonical_field(letter: str, value: str) -> str:
    """The field as an inline field; '' for a `Q:` without a tempo."""
    try:
        if letter == "K":
            value = canonical_key(value)
        elif letter == "M":
            value = canonical_meter(value)
        elif letter == "Q":
            value = canonical_tempo(value)
            if not value:
                return ""
    except ValueError as err:
        raise AbcError(str(err)) from None
    return f"[{letter}:{value}]"


def _field_line(line: str) -> str:
    """In a single-voice body, a lone inline field is written as a field line."""
    m = re.fullmatch(r"\[([A-Za-z]):([^\]]*)\]", line)
    return f"{m.group(1)}:{m.group(2)}" if m else line


def _add_user_symbol(symbols: dict[str, str], value: str) -> None:
    m = _USER_SYMBOL.match(value)
    if m:
        symbols[m.group(1)] = m.group(2)


def _add_music(
    line: str, voices: dict[str, _Voice], current: str, symbols: dict[str, str]
) -> str:
    """Append one music line to its voice(s); returns the voice active after it."""
    pieces: list[str] = []

    def flush() -> None:
        text = "".join(pieces).strip()
        if text:
            voices.setdefault(current, _Voice()).lines.append(text)
        pieces.clear()

    for tok in place_decorations(tokenize_music(line)):
        if tok.kind == "field" and tok.text.startswith("[V:"):
            flush()
            vid, props = _split_voice(tok.text[3:-1].strip())
            voice = voices.setdefault(vid, _Voice(props))
            voice.props = voice.props or props
            current = vid
        elif tok.kind == "field" and _TEXT_INLINE.match(tok.text):
            continue
        elif tok.kind == "field" and tok.text[1] in "KMQ":
            pieces.append(_canonical_field(tok.text[1], tok.text[3:-1].strip()))
        elif tok.kind == "symbol" and tok.text in symbols:
            pieces.append(symbols[tok.text])
        elif tok.kind == "symbol" and tok.text not in DEFAULT_SYMBOLS:
            continue  # an undefined decoration letter: readers reject it
        elif tok.kind == "decoration" and tok.text.startswith("+"):
            # ABC 2.0's +trill+ is the deprecated spelling of !trill!
            pieces.append(f"!{tok.text[1:-1]}!" if len(tok.text) > 2 else "")
        elif tok.kind == "string" and not _CHORD_SYMBOL.match(tok.text):
            continue  # annotations: music21's ABC reader takes them for chords
        elif tok.kind == "unknown" and tok.text in "$!":
            pieces.append(" ")  # score line breaks are layout, not music
        else:
            pieces.append(tok.text)
    flush()
    return current


_DECORATION = frozenset({"symbol", "decoration"})
# What may stand between a decoration and its note.
_BEFORE_NOTE = frozenset({"slur", "tuplet", "string", "grace", "space"})


def place_decorations(tokens: list[Token]) -> list[Token]:
    """Put each decoration right before its note, as ABC 2.1 requires.

    Sources write `u(AB)` or `T"^4"c`; readers want `(uAB)` and `"^4"Tc`. A
    decoration with no note after it (`H:|`) is dropped.
    """
    out: list[Token] = []
    held: list[Token] = []
    for tok in tokens:
        if tok.kind in _DECORATION:
            held.append(tok)
        elif held and tok.kind in _BEFORE_NOTE:
            if tok.kind != "space":
                out.append(tok)
        else:
            if tok.kind in MUSIC_KINDS:
                out += held
            held = []
            out.append(tok)
    return out


def balance_slurs(lines: list[str]) -> list[str]:
    """Drop slur marks that open or close nothing (common in converted scores)."""
    tokens = [tokenize_music(line) for line in lines]
    opened: list[tuple[int, int]] = []
    unmatched: set[tuple[int, int]] = set()
    for n, line_tokens in enumerate(tokens):
        for i, tok in enumerate(line_tokens):
            if tok.kind == "slur" and tok.text == "(":
                opened.append((n, i))
            elif tok.kind == "slur":
                if opened:
                    opened.pop()
                else:
                    unmatched.add((n, i))
    unmatched.update(opened)
    if not unmatched:
        return lines
    return [
        "".join(t.text for i, t in enumerate(line_tokens) if (n, i) not in unmatched)
        for n, line_tokens in enumerate(tokens)
    ]


def _has_music(lines: list[str]) -> bool:
    return any(t.kind in MUSIC_KINDS for ln in lines for t in tokenize_music(ln))


def close_full_bars(lines: list[str], meter: str, unit: str) -> list[str]:
    """Add the bar line a source left out where a line ends on a full bar.

    Some collections (Essen among them) end a phrase line exactly at a bar's
    end without writing `|`; readers then merge two bars into one.
    """
    from abcmamba.abc.validate import bar_lengths

    if meter == "none":
        return lines
    out = []
    pending: list = []  # tokens of the bar still open at the end of a line
    for line in lines:
        tokens = tokenize_music(line)
        bars = bar_lengths(pending + tokens, meter, unit)
        ends_open = bool(tokens) and tokens[-1].kind != "bar"
        opened = _open_tail(pending + tokens)
        closes_bar = (
            ends_open
            and opened
            and bars
            and bars[-1].closing == ""
            and bars[-1].regular
            and bars[-1].expected is not None
            and not bars[-1].measure_rest
        )
        if closes_bar:
            line += " |"
            opened = []
        out.append(line)
        pending = opened
    return out


def _open_tail(tokens: list) -> list:
    """Tokens after the last bar line (the bar still open)."""
    for i in range(len(tokens) - 1, -1, -1):
        if tokens[i].kind == "bar":
            return tokens[i + 1 :]
    return tokens


def split_bars(text: str) -> list[str]:
    """Split music text into bars, each ending with its bar line.

    A bar line before any note joins the first bar; text after the last bar
    line is the last bar. Only segments holding notes or rests count.
    """
    bars: list[str] = []
    current: list[str] = []
    has_music = False
    for tok in tokenize_music(text):
        current.append(tok.text)
        if tok.kind in MUSIC_KINDS:
            has_music = True
        elif tok.kind == "bar" and has_music:
            bars.append("".join(current).strip())
            current, has_music = [], False
    rest = "".join(current).strip()
    if has_music:
        bars.append(rest)
    elif rest and bars:
        bars[-1] = f"{bars[-1]} {rest}"
    return bars

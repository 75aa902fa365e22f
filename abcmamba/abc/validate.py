"""Check that a (normalized) tune is usable: parseable header, sane bars."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from abcmamba.abc.header import (
    canonical_key,
    canonical_meter,
    default_tuplet_q,
    default_unit,
    is_compound,
    meter_length,
    parse_header,
    parse_unit,
)
from abcmamba.abc.text import FIELD_LINE, Token, logical_lines, tokenize_music

_LENGTH = re.compile(r"(\d*)(/*)(\d*)$")
_NOTE_OR_REST = re.compile(r"^(?:[_^=]*[A-Ga-g][,']*|[zx])(.*)$")
# Share of bars (not at a section edge) allowed to disagree with the meter.
MAX_BAD_BAR_SHARE = 0.1
MIN_BARS = 2
# Voices may differ this much in total length (overlays, cue notes) before it
# counts as voices drifting apart.
MAX_VOICE_DRIFT = 0.05


@dataclass
class Bar:
    """One bar of one voice: its length in whole notes and its context."""

    length: Fraction
    expected: Fraction | None
    closing: str
    measure_rest: int = 0

    @property
    def regular(self) -> bool:
        """True when the bar fills the meter (or the meter is free)."""
        if self.expected is None or self.measure_rest:
            return True
        return self.length == self.expected


def validate(abc: str) -> list[str]:
    """Reasons why a tune is not usable; an empty list means it is valid."""
    header = parse_header(abc)
    if "X" not in header:
        return ["no X: field"]
    if "K" not in header:
        return ["no K: field"]
    reasons = []
    try:
        canonical_key(header.get("K"))
    except ValueError as err:
        reasons.append(str(err))
    meter = "none"
    try:
        meter = canonical_meter(header.get("M", "none"))
        meter_length(meter)
    except ValueError as err:
        reasons.append(str(err))
        meter = "none"
    unit = header.get("L", default_unit(meter))
    try:
        parse_unit(unit)
    except ValueError as err:
        reasons.append(str(err))
        unit = "1/8"
    if reasons:
        return reasons

    voices = voice_tokens(abc)
    if not voices:
        return ["no notes"]
    reasons += _syntax_reasons(voices)
    if reasons:
        return reasons
    try:
        all_bars = {vid: bar_lengths(t, meter, unit) for vid, t in voices.items()}
    except ValueError as err:  # a length such as "A/0"
        return [str(err)]
    n_bars = max(len(b) for b in all_bars.values())
    if n_bars < MIN_BARS:
        reasons.append(f"fewer than {MIN_BARS} bars")
    for vid, bars in all_bars.items():
        bad = irregular_bars(bars)
        if len(bad) > max(1, MAX_BAD_BAR_SHARE * len(bars)):
            where = f" in voice {vid}" if len(voices) > 1 else ""
            reasons.append(
                f"{len(bad)} of {len(bars)} bars{where} disagree with the meter"
            )
    if len(voices) > 1:
        totals = [
            sum((b.length for b in bars), Fraction(0)) for bars in all_bars.values()
        ]
        if max(totals) - min(totals) > MAX_VOICE_DRIFT * max(totals):
            reasons.append("voices have different lengths")
    return reasons


def voice_tokens(abc: str) -> dict[str, list[Token]]:
    """Tokens of the body of each voice, field lines turned into inline fields."""
    lines = list(logical_lines(abc))
    k_at = next((i for i, ln in enumerate(lines) if ln.startswith("K:")), len(lines))
    voices: dict[str, list[Token]] = {}
    current = "1"
    for line in lines[k_at + 1 :]:
        m = FIELD_LINE.match(line)
        if m and not m.group(2).startswith(("|", ":")):
            if m.group(1) == "V":
                current = (m.group(2).split() or ["1"])[0]
            elif m.group(1) in "KMLQP":
                voices.setdefault(current, []).append(
                    Token("field", f"[{m.group(1)}:{m.group(2).strip()}]")
                )
            continue
        for tok in tokenize_music(line):
            if tok.kind == "field" and tok.text.startswith("[V:"):
                current = (tok.text[3:-1].split() or ["1"])[0]
            else:
                voices.setdefault(current, []).append(tok)
    return {
        v: t
        for v, t in voices.items()
        if any(x.kind in ("note", "rest", "chord", "measure_rest") for x in t)
    }


def voices_with_notes(abc: str) -> int:
    """How many voices of the tune hold at least one note or chord (not only rests)."""
    return sum(
        any(t.kind in ("note", "chord") for t in tokens)
        for tokens in voice_tokens(abc).values()
    )


def _syntax_reasons(voices: dict[str, list[Token]]) -> list[str]:
    reasons = []
    unknown = sorted(
        {t.text for toks in voices.values() for t in toks if t.kind == "unknown"}
    )
    names = {
        '"': "unclosed quote",
        "[": "unbalanced brackets",
        "]": "unbalanced brackets",
        "{": "unbalanced grace-note braces",
        "}": "unbalanced grace-note braces",
        "!": "unclosed decoration",
    }
    for ch in unknown:
        if ch in names and names[ch] not in reasons:
            reasons.append(names[ch])
    other = [ch for ch in unknown if ch not in names]
    if other:
        reasons.append("unexpected characters " + " ".join(repr(c) for c in other[:5]))
    for toks in voices.values():
        depth = 0
        for t in toks:
            if t.kind == "slur":
                depth += 1 if t.text == "(" else -1
                if depth < 0:
                    break
        if depth != 0 and "unbalanced slurs" not in reasons:
            reasons.append("unbalanced slurs")
    return reasons


def note_length(text: str) -> Fraction:
    """Length multiplier written after a note or rest: '3/2' -> 3/2, '/' -> 1/2."""
    m = _LENGTH.search(text)
    num = int(m.group(1)) if m.group(1) else 1
    slashes = len(m.group(2))
    if not slashes:
        return Fraction(num)
    den = int(m.group(3)) * 2 ** (slashes - 1) if m.group(3) else 2**slashes
    if den == 0:
        raise ValueError(f"a note length divided by zero ({text!r})")
    return Fraction(num, den)


def _element_length(tok: Token) -> Fraction:
    if tok.kind == "chord":
        close = tok.text.rindex("]")
        inner = [t for t in tokenize_music(tok.text[1:close]) if t.kind == "note"]
        first = (
            note_length(_NOTE_OR_REST.match(inner[0].text).group(1))
            if inner
            else Fraction(0)
        )
        return first * note_length(tok.text[close + 1 :])
    return note_length(_NOTE_OR_REST.match(tok.text).group(1))


def bar_lengths(tokens: list[Token], meter: str, unit: str) -> list[Bar]:
    """Lengths of the bars of one voice in whole notes, following inline M: and L:."""
    unit_len = parse_unit(unit)
    expected = meter_length(meter)
    compound = is_compound(meter)
    bars: list[Bar] = []
    elements: list[Fraction] = []
    measure_rest = 0
    tuplet_left, tuplet_ratio = 0, Fraction(1)
    broken: tuple[Fraction, Fraction] | None = None
    in_overlay = False
    for tok in tokens:
        kind = tok.kind
        if kind == "field":
            letter, value = tok.text[1], tok.text[3:-1].strip()
            try:
                if letter == "M":
                    meter = canonical_meter(value)
                    expected, compound = meter_length(meter), is_compound(meter)
                elif letter == "L":
                    unit_len = parse_unit(value)
            except ValueError:
                pass
        elif kind == "overlay":
            in_overlay = True
        elif kind == "tuplet":
            nums = [int(x) if x else 0 for x in tok.text[1:].split(":")]
            p = nums[0] or 3
            q = nums[1] if len(nums) > 1 and nums[1] else default_tuplet_q(p, compound)
            tuplet_left = nums[2] if len(nums) > 2 and nums[2] else p
            tuplet_ratio = Fraction(q, p)
        elif kind == "broken":
            n = len(tok.text)
            short = Fraction(1, 2**n)
            ratios = (2 - short, short) if tok.text[0] == ">" else (short, 2 - short)
            if elements and not in_overlay:
                elements[-1] *= ratios[0]
            broken = ratios
        elif kind in ("note", "rest", "chord"):
            length = _element_length(tok) * unit_len
            if tuplet_left:
                length *= tuplet_ratio
                tuplet_left -= 1
            if broken:
                length *= broken[1]
                broken = None
            if not in_overlay:
                elements.append(length)
        elif kind == "measure_rest":
            measure_rest = int(tok.text[1:] or 1)
        elif kind == "bar":
            if elements or measure_rest:
                bars.append(
                    Bar(sum(elements, Fraction(0)), expected, tok.text, measure_rest)
                )
            elements, measure_rest, in_overlay = [], 0, False
    if elements or measure_rest:
        bars.append(Bar(sum(elements, Fraction(0)), expected, "", measure_rest))
    return bars


def irregular_bars(bars: list[Bar]) -> list[int]:
    """Indices of bars whose length disagrees with the meter, ignoring section edges.

    Pickups and the short bars that complete them are normal at the first and
    last bar, on either side of repeat signs, double bars and endings, and as
    a bar split in two halves that add up to a full bar (chorale phrase ends).
    """
    split = set()
    for i in range(len(bars) - 1):
        a, b = bars[i], bars[i + 1]
        halves = not (a.regular or b.regular) and a.expected == b.expected
        if halves and a.length + b.length == a.expected:
            split.update((i, i + 1))
    bad = []
    for i, bar in enumerate(bars):
        if bar.regular or i in (0, len(bars) - 1) or i in split:
            continue
        prev_closing = bars[i - 1].closing
        if _is_section_edge(bar.closing) or _is_section_edge(prev_closing):
            continue
        bad.append(i)
    return bad


def _is_section_edge(barline: str) -> bool:
    return barline != "|" and barline != ".|"

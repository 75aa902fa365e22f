"""Ties into repeats and endings, played as abc2midi plays them.

abc2midi joins a tied note to the next note or chord *in the text* of its
voice, before it plays the repeats: the tied note always sounds for its own
length plus that next note's, and the next note, wherever it is played,
sounds as a rest.  When the music jumps between the two (``G3-|1 G D G:|2 G
B c``: on the second pass the ``G3`` goes on to the second ending), the tied
note still lasts into the notes played after the jump, and a note that the
tie would join only in the text order (``G3-`` then ``[2 G``) is played
again.  A note of another pitch next in the text is no tie at all.

:func:`abc2midi_ties` rewrites a voice written out by
:func:`abcmamba.convert.abctext.expand_repeats` to that effect: a tie whose
two notes are played one after the other stays; one whose music jumps is
dropped, its note carries a :data:`HOLD` annotation (the MusicXML reader
turns it into a lyric that :mod:`abcmamba.convert.render` lengthens the
note by), and its next note becomes a rest where it is played after
something else.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from fractions import Fraction

from abcmamba.convert.abctext import _length

logger = logging.getLogger(__name__)

# Annotation text: "abcmamba-hold:<chord note index>=<whole notes>,...".
HOLD = "abcmamba-hold"
_NOTE = re.compile(r"^(?:\^{1,2}|_{1,2}|=)?([A-Ga-g])([,']*)$")
_RESTS = ("z", "x", "Z", "X")
_UNIT_FIELD = re.compile(r"^(?:\[L:([^\]]*)\]|\nL:(.*)\n)$")
_METER_FIELD = re.compile(r"^(?:\[M:([^\]]*)\]|\nM:(.*)\n)$")
_TUPLET = re.compile(r"^\((\d+)(?::(\d*))?(?::(\d*))?$")


@dataclass
class NoteEvent:
    """One note, chord or rest of a voice as written, by item index."""

    start: int  # its first item: the note, "[" or the rest
    end: int  # the item after its length
    pitches: list[int] = field(default_factory=list)  # pitch lines, written order
    note_items: list[int] = field(default_factory=list)  # each note's first item
    note_ends: list[int] = field(default_factory=list)  # each note's last item
    ties: dict[int, int] = field(default_factory=dict)  # pitch line -> "-" item
    length: Fraction | None = None  # whole notes; None: not known here
    chord_length: tuple[int, int] | None = None  # items of the length after "]"

    @property
    def stop(self) -> int:
        """The item after it and its ties."""
        return max([self.end] + [tie + 1 for tie in self.ties.values()])


def pitch_line(note: str) -> int:
    """A written note's staff position: 'C' 0, 'c' 7, "c'" 14 (accidentals ignored)."""
    match = _NOTE.match(note)
    letter, octave = match.group(1), match.group(2)
    line = "CDEFGAB".index(letter.upper()) + (7 if letter.islower() else 0)
    return line + 7 * octave.count("'") - 7 * octave.count(",")


def _unit_of_meter(meter: str) -> Fraction:
    match = re.match(r"^\s*(\d+)/(\d+)", meter or "")
    if (
        match
        and int(match.group(2))
        and int(match.group(1)) / int(match.group(2)) < 0.75
    ):
        return Fraction(1, 16)
    return Fraction(1, 8)


def _unit(value: str) -> Fraction | None:
    match = re.match(r"^\s*(\d+)/(\d+)", value)
    return Fraction(int(match.group(1)), int(match.group(2))) if match else None


def note_events(texts: list[str], start: dict[str, str]) -> list[NoteEvent]:
    """The notes, chords and rests of one voice's items (texts), in order.

    ``start`` holds the header's ``L:`` and ``M:``; grace notes are no events.
    """
    unit = _unit(start.get("L", "")) or _unit_of_meter(start.get("M", ""))
    unit_set = "L" in start
    events: list[NoteEvent] = []
    grace = False
    tuplet_left = 0
    factor = Fraction(1)  # of the next event, from a broken rhythm before it
    i = 0

    def length_span(j: int) -> int:
        while j < len(texts) and texts[j] and texts[j] in "0123456789/":
            j += 1
        return j

    def tie_at(j: int) -> int | None:
        while j < len(texts) and texts[j] in (")", " "):  # abc2midi reads "A6 -"
            j += 1
        return j if j < len(texts) and texts[j] == "-" else None

    def known(event: NoteEvent, written: Fraction) -> None:
        nonlocal tuplet_left, factor
        event.length = None if tuplet_left else written * unit * factor
        tuplet_left = max(tuplet_left - 1, 0)
        factor = Fraction(1)

    while i < len(texts):
        text = texts[i]
        unit_field, meter_field = _UNIT_FIELD.match(text), _METER_FIELD.match(text)
        if unit_field:
            unit = _unit(unit_field.group(1) or unit_field.group(2) or "") or unit
            unit_set = True
        elif meter_field and not unit_set:
            unit = _unit_of_meter(meter_field.group(1) or meter_field.group(2))
        if text in ("{", "}"):
            grace = text == "{"
        elif grace:
            pass
        elif text in ("<", ">"):
            signs = 1
            while i + signs < len(texts) and texts[i + signs] == text:
                signs += 1
            short = Fraction(1, 2**signs)
            before, factor = (2 - short, short) if text == ">" else (short, 2 - short)
            if events and events[-1].length is not None:
                events[-1].length *= before
            i += signs
            continue
        elif _TUPLET.match(text):
            groups = _TUPLET.match(text).groups()
            tuplet_left = int(groups[2] or groups[0])
        elif _NOTE.match(text):
            end = length_span(i + 1)
            event = NoteEvent(i, end, [pitch_line(text)], [i], [end - 1])
            tie = tie_at(end)
            if tie is not None:
                event.ties[event.pitches[0]] = tie
            known(event, _length("".join(texts[i + 1 : end])))
            events.append(event)
            i = end
            continue
        elif text in _RESTS:
            end = length_span(i + 1)
            event = NoteEvent(i, end)
            known(event, _length("".join(texts[i + 1 : end])))
            events.append(event)
            i = end
            continue
        elif text == "[":
            event, i = _chord(texts, i, length_span, tie_at)
            if event is None:
                continue
            inner = texts[event.note_items[0] + 1 : event.note_ends[0] + 1]
            outer = texts[slice(*event.chord_length)]
            known(event, _length("".join(inner)) * _length("".join(outer)))
            events.append(event)
            continue
        i += 1
    return events


def _chord(texts, i, length_span, tie_at) -> tuple[NoteEvent | None, int]:
    """The chord starting at item i ("["), and the item after it."""
    event = NoteEvent(i, i)
    j = i + 1
    while j < len(texts) and texts[j] != "]":
        if _NOTE.match(texts[j]):
            end = length_span(j + 1)
            line = pitch_line(texts[j])
            event.pitches.append(line)
            event.note_items.append(j)
            event.note_ends.append(end - 1)
            tie = tie_at(end)
            if tie is not None:
                event.ties[line] = tie
                end = tie + 1
            j = end
            continue
        if texts[j] in ("[", "|", "\n") or texts[j].startswith("["):
            return None, i + 1  # not a chord after all
        j += 1
    if j >= len(texts) or not event.pitches:
        return None, i + 1
    end = length_span(j + 1)
    event.chord_length = (j + 1, end)
    tie = tie_at(end)
    if tie is not None:
        for line in event.pitches:
            event.ties.setdefault(line, tie)
    event.end = end
    return event, end


def abc2midi_ties(
    out: list[tuple[str, int]], texts: list[str], start: dict[str, str], label: str
) -> list[str]:
    """One written-out voice (text, source item) with its ties as abc2midi plays them."""
    if "&" in texts:
        return [text for text, _ in out]  # overlays: text order is not time order
    events = note_events(texts, start)
    by_start = {event.start: k for k, event in enumerate(events)}
    copies: list[tuple[int, int]] = []  # (position in out, event number)
    for position, (_, source) in enumerate(out):
        if source in by_start:
            copies.append((position, by_start[source]))
    texts_out = [text for text, _ in out]
    sources = [source for _, source in out]
    silenced: list[set[int]] = []  # per copy: the pitch lines made rests

    def tied_on(number: int) -> set[int]:
        """Lines of event `number` that abc2midi ties to the next event."""
        follows = events[number + 1] if number + 1 < len(events) else None
        return {
            line for line in events[number].ties if follows and line in follows.pitches
        }

    def held(number: int, line: int) -> Fraction | None:
        """Whole notes a tie from event `number` on `line` adds (the chain)."""
        total = Fraction(0)
        while line in tied_on(number):
            number += 1
            if events[number].length is None:
                return None
            total += events[number].length
        return total

    for n, (position, number) in enumerate(copies):
        event = events[number]
        joined = set()
        if number > 0:
            joined = tied_on(number - 1)
            if n > 0 and copies[n - 1][1] == number - 1:
                joined &= silenced[n - 1]  # a rest's tie goes on as a rest
        silenced.append(joined)
        if joined:
            _silence(texts_out, sources, texts, position, event, joined)
        tied = tied_on(number) - joined
        adjacent = n + 1 < len(copies) and copies[n + 1][1] == number + 1
        if not event.ties or (adjacent and tied == set(event.ties)):
            continue
        _blank(texts_out, sources, position, event, set(event.ties.values()))
        for line in tied if adjacent else ():  # a chord's tie, now note by note
            note_end = event.note_ends[event.pitches.index(line)]
            texts_out[position + sources[position:].index(note_end)] += "-"
        if adjacent or not tied:
            continue
        holds = {
            i: held(number, line)
            for i, line in enumerate(event.pitches)
            if line in tied
        }
        if None in holds.values():
            logger.warning(
                "%s: a tie into a repeat or ending is not held (a tuplet note)", label
            )
            continue
        spec = ",".join(f"{i}={length}" for i, length in holds.items())
        texts_out[position] = f'"^{HOLD}:{spec}"' + texts_out[position]
    return texts_out


def _span(sources: list[int], position: int, event: NoteEvent) -> list[int]:
    """Positions in the written-out voice of one copy of an event."""
    span = []
    while position < len(sources) and event.start <= sources[position] < event.stop:
        span.append(position)
        position += 1
    return span


def _blank(texts_out, sources, position, event: NoteEvent, items: set[int]) -> None:
    for k in _span(sources, position, event):
        if sources[k] in items:
            texts_out[k] = ""


def _written(texts: list[str], event: NoteEvent) -> Fraction:
    """A note's or chord's written length multiplier."""
    first, last = event.note_items[0], event.note_ends[0]
    inner = _length("".join(texts[first + 1 : last + 1]))
    if event.chord_length is None:
        return inner
    return inner * _length("".join(texts[slice(*event.chord_length)]))


def _silence(texts_out, sources, texts, position, event: NoteEvent, lines) -> None:
    """The notes of one written-out note or chord on the given lines as rests."""
    span = _span(sources, position, event)
    if set(event.pitches) <= lines:
        written = _written(texts, event)
        for k in span:
            if texts_out[k] != ")":  # a slur's end stays
                texts_out[k] = ""
        texts_out[span[0]] = "z" + (
            str(written.numerator)
            + (f"/{written.denominator}" if written.denominator > 1 else "")
        )
        return
    for line, first, last in zip(
        event.pitches, event.note_items, event.note_ends, strict=True
    ):
        if line in lines:
            for k in span:
                if first <= sources[k] <= last or sources[k] == event.ties.get(line):
                    texts_out[k] = ""

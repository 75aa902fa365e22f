"""Compare our ABC -> MIDI with abc2midi, the reference ABC implementation.

Both sides are reduced to a sorted list of notes (onset, pitch, duration),
times in quarter notes, so tempo, velocity, channel and track layout do not
matter. abc2midi is run with ``-NGUI -NGRA -NFER`` (no guitar-chord
accompaniment, grace notes or fermata lengthening) and the tune is stripped of
performance-only decorations first (see :func:`reference_abc`): rolls,
trills (also as ``U:`` symbols), chord arpeggiation and hornpipe swing are abc2midi's own
realisation, not notes written in the score; music21, MusicXML and engraving
keep them as marks.  Two abc2midi misreadings are written around so that it
plays what the standard says: a ``>`` before a staccato dot (ignored by
abc2midi), a staccato dot before a chord symbol or decoration (dropped), an
octave clef followed by other settings in a ``V:`` line (ignored), a staccato chord with its length outside the brackets (played
full length), the invisible bar line ``[|]`` and voice ids it runs together
(``V:s`` with ``V:1``, ``V:P1_1`` with ``V:P1_2``; see :func:`_voice_labels`).
``%%MIDI ratio`` (abc2midi's swing of ``>``), ``%%MIDI trim`` (gaps between
notes) and drones are dropped for the
same reason, and drum notes (channel 10) are not compared.
Repeats are expanded on both sides, as abc2midi and any player does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import music21

from abcmamba.convert.abctext import (
    _BROKEN,
    _length,
    _spelled,
    _written_broken,
    split_header,
)
from abcmamba.convert.render import PERCUSSION_CHANNEL

# A note: (onset, MIDI pitch, duration); onset/duration in quarter notes.
Note = tuple[float, int, float]

# abc2midi starts every track one tick late; allow a couple of ticks of its
# 480-per-quarter grid on onsets and durations.
TOLERANCE_QL = 2.5 / 480
ABC2MIDI_FLAGS = ("-NGUI", "-NGRA", "-NFER", "-silent")
ABC2MIDI_TIMEOUT_S = 30

# Decorations abc2midi turns into extra or shortened notes: rolls, trills,
# mordents and turns.  Their notated pitch and length stay.
_PERFORMANCE_NAMES = (
    "trill|roll|turn|turnx|invertedturn|invertedturnx|mordent|lowermordent|"
    "uppermordent|pralltriller|shortphrase|mediumphrase|longphrase|"
    "arpeggio|slide|breath"
)
# (also in ABC 2.0's +trill+ form)
_PERFORMANCE_DECORATIONS = re.compile(
    rf"!(?:{_PERFORMANCE_NAMES}|\+)!|\+(?:{_PERFORMANCE_NAMES})\+"
)


# abc2midi ignores a `>` followed by a staccato dot (`F>.E` and `F>"4".E`
# play even); inside a chord bracket the same note is read as the standard says.
_BROKEN_STACCATO = re.compile(
    r"([<>]+)((?:\"[^\"\n]*\"|![^!\n]*!)*)\.((?:\^{1,2}|_{1,2}|=)?[A-Ga-g][,']*[\d/]*)"
)
# abc2midi plays no broken rhythm after a staccato note (`.c2<e2` as `.c2e2`);
# the reference writes the lengths out (between equal notes: see
# abctext.unequal_broken_rhythm_dropped for unequal ones).
_STACCATO_THEN_BROKEN = re.compile(r"\." + _BROKEN.pattern)
# abc2midi halves a staccato chord only when its length is written inside
# the brackets (`.[CE]2` plays full length, `.[C2E2]` half).
_STACCATO_CHORD = re.compile(r"\.\[([^\]\[:|\d/]*)\]([\d/]+)")
_CHORD_NOTE = re.compile(r"((?:\^{1,2}|_{1,2}|=)?[A-Ga-g][,']*)")
# abc2midi ignores the length inside a chord that also has one outside; the
# standard multiplies them (`[C2E2G2]3` is `[CEG]6`).
_LENGTHS_INSIDE_AND_OUT = re.compile(
    r"\[((?:(?:\^{1,2}|_{1,2}|=)?[A-Ga-g][,']*[\d/]*-?)+)\]([\d/]+)"
)
_LENGTHENED_NOTE = re.compile(_CHORD_NOTE.pattern + r"([\d/]*)")
# abc2midi drops a staccato dot followed by a chord symbol or another
# decoration (`."G"A`, `.!accent!A`); next to the note it keeps it.
_STACCATO_BEFORE_DECORATION = re.compile(
    r'\.((?:"[^"\n]*"|![^!\n]*!|[~H-Wh-w])+)(?=(?:\^{1,2}|_{1,2}|=)?[A-Ga-g\[])'
)
# abc2midi ignores the octave of a V: line's clef when more settings follow
# (`V:1 clef=treble-8 name="T"` sounds as treble); last on the line it reads it.
_VOICE_OCTAVE_CLEF = re.compile(
    r"^(V:.*?)(\s+(?:clef=)?[A-Za-z]+\d?[-+^_](?:8|15)\b)(.+?)(\s*%.*)?$"
)
# abc2midi before 2024 reads `||:` as a double bar, not a repeat start
# (fixed upstream 2024-02-19, "handle ||: as a variant of |:").
_DOUBLE_BAR_REPEAT = re.compile(r"(?<!:)\|\|:")
# abc2midi misreads the invisible bar line `[|]` (it repeats notes).
_INVISIBLE_BAR = re.compile(r"\[\|\](?=([|:]?))")

# Lines between K: and the music: field lines other than V:, comments, blanks.
_PRELUDE_LINE = re.compile(r"^(?:[A-UW-Za-z]:|%|\s*$)")
# A voice id in a V: line or an inline [V:] field.
_VOICE_ID = re.compile(r"(^V:[ \t]*|\[V:[ \t]*)([^\s\]%]+)", re.M)

# A user-defined symbol: "U:W = !trill!" (also "+trill+").
_USER_SYMBOL = re.compile(r"^U:\s*([~H-Wh-w])\s*=\s*([!+][^!+]*[!+])", re.M)

_PLAYBACK_ONLY = re.compile(r"^%%MIDI\s+(?:ratio|trim|drone|droneon)\b")


def notes_from_midi(path: str | Path) -> list[Note]:
    """Sorted (onset, pitch, duration) of every note in a MIDI file, drums excepted."""
    mf = music21.midi.MidiFile()
    mf.open(str(path))
    mf.read()
    mf.close()
    tpq = mf.ticksPerQuarterNote
    notes: list[Note] = []
    cvm = music21.midi.ChannelVoiceMessages
    for track in mf.tracks:
        tick = 0
        sounding: dict[tuple[int, int], list[int]] = {}
        for event in track.events:
            if event.isDeltaTime():
                tick += event.time
                continue
            if event.type not in (cvm.NOTE_ON, cvm.NOTE_OFF):
                continue
            if event.channel == PERCUSSION_CHANNEL:
                continue  # drums (%%MIDI drum/drumon, channel 10): not the score's notes
            key = (event.channel, event.pitch)
            if event.type == cvm.NOTE_ON and event.velocity > 0:
                sounding.setdefault(key, []).append(tick)
            elif sounding.get(key):
                start = sounding[key].pop(0)
                notes.append((start / tpq, event.pitch, (tick - start) / tpq))
    notes.sort()
    return notes


def _voice_labels(abc: str) -> str:
    """Voice ids renamed where abc2midi would run two voices into one.

    abc2midi numbers named voices 1, 2, ... in order of appearance, so in a
    tune with ``V:s``, ``V:a``, ``V:1`` and ``V:2`` the voice ``s`` and the
    voice ``1`` are one voice to it, played one after the other; and it stops
    reading an id at a character other than a letter or digit (``V:P1_1``
    and ``V:P1_2`` are one voice ``P1``).  The standard makes every id its
    own voice; with all ids plain names, abc2midi numbers them apart.
    """
    ids = list(dict.fromkeys(m.group(2) for m in _VOICE_ID.finditer(abc)))
    numbered = [i for i in ids if i.isdigit()]
    plain = all(i.isalnum() and i.isascii() for i in ids)
    if plain and (not numbered or len(numbered) == len(ids)):
        return abc
    prefix = "voice"
    while any(i.startswith(prefix) for i in ids):
        prefix += "x"
    names = {voice_id: f"{prefix}{k}" for k, voice_id in enumerate(ids, start=1)}
    return _VOICE_ID.sub(lambda m: m.group(1) + names[m.group(2)], abc)


def _prelude_fields_in_header(abc: str) -> str:
    """``M:``/``L:`` lines between ``K:`` and the first ``V:`` moved above ``K:``.

    abc2midi gives them to its voice 1 only; the voices' bars show the writer
    meant every voice (``K:G`` / ``L:1/4`` / ``V:1`` ... ``V:2`` in quarter
    notes), which is how abc2xml and we read them.
    """
    header, body = split_header(abc)
    prelude = 0
    while prelude < len(body) and _PRELUDE_LINE.match(body[prelude]):
        prelude += 1
    moved = [line for line in body[:prelude] if line[:2] in ("M:", "L:")]
    if not moved or not _VOICE_ID.search("\n".join(body[prelude:])):
        return abc
    kept = [line for line in body[:prelude] if line[:2] not in ("M:", "L:")]
    lines = header[:-1] + moved + header[-1:] + kept + body[prelude:]
    return "\n".join(lines) + "\n"


def reference_abc(abc: str) -> str:
    """The tune with performance-only decorations removed, for abc2midi."""
    abc = _prelude_fields_in_header(_voice_labels(abc))
    # letters the tune defines as rolls, trills, ... (U:W = !trill!)
    performed = "~TR" + "".join(
        letter
        for letter, mark in _USER_SYMBOL.findall(abc)
        if _PERFORMANCE_DECORATIONS.fullmatch("!" + mark[1:-1] + "!")
    )
    body_lines = []
    for line in abc.splitlines():
        if line.startswith("X:"):
            # abc2midi staggers chord notes by default; the score does not.
            body_lines += [line, "%%MIDI chordattack 0"]
            continue
        if line.startswith("R:") or _PLAYBACK_ONLY.match(line):
            # abc2midi swings `>` as 2:1 in hornpipes (and as `%%MIDI ratio`
            # says); the notation says 3:1.  Drones are accompaniment.
            continue
        if line.startswith(("r:", "m:")):
            # remarks and macro definitions: abc2midi plays their letters
            continue
        if line.startswith("V:"):
            line = _VOICE_OCTAVE_CLEF.sub(r"\1\3\2\4", line)
        if re.match(r"^[A-Za-z+]:", line) or line.startswith("%"):
            body_lines.append(line)
            continue
        line = _PERFORMANCE_DECORATIONS.sub("", line)
        line = _strip_outside_quotes(line, performed)  # R: abc2midi's roll
        line = _STACCATO_BEFORE_DECORATION.sub(r"\1.", line)
        line = _STACCATO_THEN_BROKEN.sub(_staccato_broken_written, line)
        line = _BROKEN_STACCATO.sub(r"\1\2[.\3]", line)
        line = _STACCATO_CHORD.sub(
            lambda m: ".[" + _CHORD_NOTE.sub(r"\g<1>" + m.group(2), m.group(1)) + "]",
            line,
        )
        line = _LENGTHS_INSIDE_AND_OUT.sub(_lengths_multiplied, line)
        line = _DOUBLE_BAR_REPEAT.sub("|:", line)
        line = _INVISIBLE_BAR.sub(lambda m: "" if m.group(1) else "|", line)
        body_lines.append(line)
    return "\n".join(body_lines) + "\n"


def _staccato_broken_written(match: re.Match) -> str:
    if _length(match.group(2)) != _length(match.group(6)):
        return match.group(0)
    return "." + _written_broken(match)


def _lengths_multiplied(match: re.Match) -> str:
    lengths = {m.group(2) for m in _LENGTHENED_NOTE.finditer(match.group(1))}
    if len(lengths) > 1 or lengths == {""}:
        return match.group(0)  # mixed lengths: abc2midi's reading is its own
    outer = _length(match.group(2))
    notes = _LENGTHENED_NOTE.sub(
        lambda m: m.group(1) + _spelled(_length(m.group(2)) * outer), match.group(1)
    )
    return f"[{notes}]"


def _strip_outside_quotes(line: str, chars: str) -> str:
    # `~` (roll) and `T` (trill) are only decorations outside chord symbols
    # and !...! marks.
    out = []
    in_quote = in_bang = False
    for i, ch in enumerate(line):
        if ch == '"' and not in_bang:
            in_quote = not in_quote
        elif ch == "!" and not in_quote:
            in_bang = not in_bang
        elif not (in_quote or in_bang) and ch in chars:
            # Letters are text inside "[K:..]"-like fields; a decoration
            # precedes a note, so keep letters that are part of an inline field.
            if ch.isalpha() and _inside_inline_field(line, i):
                out.append(ch)
            continue
        out.append(ch)
    return "".join(out)


def _inside_inline_field(line: str, index: int) -> bool:
    open_at = line.rfind("[", 0, index)
    return (
        open_at >= 0
        and line.find("]", open_at) > index
        and ":" in line[open_at : index + 3]
    )


def abc2midi_available() -> bool:
    """Whether the abc2midi program is on PATH."""
    return shutil.which("abc2midi") is not None


def abc2midi_notes(abc: str, literal: bool = False) -> list[Note]:
    """Notes abc2midi plays for one tune (raises RuntimeError if it fails).

    literal=True feeds the tune as written (ornaments, staccato, swing and
    chord arpeggiation realised by abc2midi), only with ABC2MIDI_FLAGS.
    """
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "tune.abc"
        out = Path(tmp) / "tune.mid"
        src.write_text(abc if literal else reference_abc(abc), encoding="utf-8")
        proc = subprocess.run(
            ["abc2midi", str(src), "-o", str(out), *ABC2MIDI_FLAGS],
            capture_output=True,
            # its messages can split a UTF-8 character ("Unrecognized character")
            encoding="utf-8",
            errors="replace",
            timeout=ABC2MIDI_TIMEOUT_S,
        )
        if not out.exists():
            raise RuntimeError(f"abc2midi wrote no MIDI: {proc.stdout.strip()[:200]}")
        try:
            notes = notes_from_midi(out)
        except music21.midi.MidiException as err:  # e.g. after lengths like e/3
            raise RuntimeError(f"abc2midi wrote a broken MIDI file: {err}") from err
        errors = [line for line in proc.stdout.splitlines() if line.startswith("Error")]
        if not notes and errors:
            # e.g. a length it cannot read ("e/3"): the MIDI it writes is empty
            raise NoReferenceNotes(f"abc2midi played no notes: {errors[-1][:200]}")
        return notes


class NoReferenceNotes(RuntimeError):
    """abc2midi reported errors and played no note of the tune."""


def our_notes(abc: str) -> list[Note]:
    """Notes our converter (abc_to_midi) plays for one tune."""
    from abcmamba.convert.render import abc_to_midi

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tune.mid"
        abc_to_midi(abc, out)
        return notes_from_midi(out)


@dataclass
class Comparison:
    """Outcome of comparing our notes with abc2midi's for one tune."""

    identical: bool
    reason: str = ""
    n_ours: int = 0
    n_reference: int = 0
    first_difference: int | None = None
    ours: list[Note] = field(default_factory=list, repr=False)
    reference: list[Note] = field(default_factory=list, repr=False)
    reference_failed: bool = False  # abc2midi itself played nothing (no reference)

    def __bool__(self) -> bool:
        return self.identical


def _close(a: Note, b: Note) -> bool:
    return (
        a[1] == b[1]
        and abs(a[0] - b[0]) <= TOLERANCE_QL
        and abs(a[2] - b[2]) <= TOLERANCE_QL
    )


def compare_notes(ours: list[Note], reference: list[Note]) -> Comparison:
    """Compare two sorted note lists within the tick tolerance."""
    # Sort within tolerance-equal onsets by pitch so chord order never matters.
    key = lambda n: (round(n[0] * 96), n[1], n[2])  # noqa: E731
    ours, reference = sorted(ours, key=key), sorted(reference, key=key)
    result = Comparison(True, "", len(ours), len(reference), None, ours, reference)
    for i, (a, b) in enumerate(zip(ours, reference, strict=False)):
        if not _close(a, b):
            result.identical = False
            result.first_difference = i
            result.reason = _describe(a, b)
            return result
    if len(ours) != len(reference):
        result.identical = False
        result.first_difference = min(len(ours), len(reference))
        result.reason = f"note count {len(ours)} vs abc2midi {len(reference)}"
    return result


def _describe(a: Note, b: Note) -> str:
    if abs(a[0] - b[0]) > TOLERANCE_QL:
        return f"onset {a[0]:g} vs abc2midi {b[0]:g}"
    if a[1] != b[1]:
        return f"pitch {a[1]} vs abc2midi {b[1]} at {a[0]:g}"
    return f"duration {a[2]:g} vs abc2midi {b[2]:g} at {a[0]:g}"


def compare_with_abc2midi(abc: str, literal: bool = False) -> Comparison:
    """Whether our MIDI of one tune plays the same notes as abc2midi's."""
    try:
        reference = abc2midi_notes(abc, literal=literal)
    except NoReferenceNotes as err:
        try:
            silent = not our_notes(abc)
        except Exception as ours_err:  # a converter crash: not silence
            silent = "no notes" in str(ours_err)
        if silent:
            return Comparison(True, "both play no notes")
        return Comparison(False, f"abc2midi failed: {err}", reference_failed=True)
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return Comparison(
            False, f"abc2midi failed: {first_line}", reference_failed=True
        )
    try:
        ours = our_notes(abc)
    except Exception as err:  # any converter crash is a mismatch to report
        if not reference and "no notes" in str(err):
            return Comparison(True, "both play no notes")
        return Comparison(False, f"ours failed: {type(err).__name__}: {err}"[:200])
    return compare_notes(ours, reference)

"""ABC -> music21 that plays the written notes.

music21's own ABC reader (9.x) silently changes the music: an accidental is
not carried to later notes of the same pitch in the bar, invisible rests `x`
are dropped so every later note comes early, bar-interleaved `[V:n]` voices
are run together into one part next to an empty part made by the header
`V:` lines, a `:|` without `|:` is not repeated, and some tunes crash it
("TimeSignature already found in this Stream"); 59% of a 150-tune folk sample
played what abc2midi plays.  So ABC is read with abc2xml, the reference
ABC -> MusicXML converter, after :mod:`abcmamba.convert.abctext` has settled
the points where abc2xml and abc2midi disagree, and music21 then reads the
MusicXML, which it reads well.  tests/test_convert.py has one tune per fault.
"""

from __future__ import annotations

import copy
import logging
import re
from fractions import Fraction
from xml.etree import ElementTree

import music21

from abcmamba.abc.text import UNICODE_SPACE
from abcmamba.convert.scores import ConversionError
from abcmamba.convert.ties import HOLD

logger = logging.getLogger(__name__)


def abc_to_musicxml_text(abc: str) -> str:
    """MusicXML text of one ABC tune, by abc2xml (raises ConversionError)."""
    from abcmamba.convert._vendor import abc2xml

    if "K:" not in abc:
        raise ConversionError("no K: field")
    from abcmamba.convert.abctext import (
        apostrophe_staccato,
        bagpipe_keys,
        bare_meters_in_whole_notes,
        closed_quotes,
        drop_grace_after_broken_rhythm,
        drop_ignored_lines,
        drop_text_blocks,
        drop_text_fields,
        explicit_unit_length,
        full_tuplet_specs,
        header_transpose_in_voices,
        keys_from_c,
        microtones_as_written_notes,
        misplaced_ties,
        plain_key_modes,
        short_transpose_dropped,
        spaced_key_accidentals,
        unbracketed_meters,
        written_long_broken_rhythm,
    )

    # a tab before a comment ("V:M\t% Melody") crashes abc2xml's voice reader,
    # and it reads a no-break space (tune archives' HTML) as a misplaced symbol
    abc = UNICODE_SPACE.sub(" ", abc.replace("\t", " "))
    abc = drop_text_fields(drop_text_blocks(abc))
    abc = drop_ignored_lines(abc)
    abc = full_tuplet_specs(drop_grace_after_broken_rhythm(abc))
    abc = written_long_broken_rhythm(microtones_as_written_notes(abc))
    abc = spaced_key_accidentals(bagpipe_keys(explicit_unit_length(abc)))
    abc = bare_meters_in_whole_notes(keys_from_c(abc))
    abc = header_transpose_in_voices(short_transpose_dropped(plain_key_modes(abc)))
    abc = misplaced_ties(unbracketed_meters(apostrophe_staccato(closed_quotes(abc))))
    abc2xml.getInfo()  # drop messages left over from an earlier tune
    try:
        docs = abc2xml.getXmlDocs(abc)
    except Exception as err:  # abc2xml's pyparsing raises many types
        raise ConversionError(
            f"abc2xml failed: {type(err).__name__}: {err}"[:200]
        ) from err
    messages = abc2xml.getInfo().strip()
    if not docs:
        raise ConversionError(
            f"abc2xml failed: {messages.splitlines()[-1:] or '?'}"[:200]
        )
    if messages:
        logger.debug("abc2xml: %s", messages)
    lost = [m.split("-- ")[-1] for m in messages.splitlines() if _LOST.search(m)]
    if lost:
        from abcmamba.convert.abctext import tune_label

        logger.warning(
            "%s: abc2xml read past what it could not: %s",
            tune_label(abc),
            "; ".join(dict.fromkeys(lost))[:300],
        )
    add_default_clefs(docs[0])
    last_meter_only(docs[0])
    keep_long_rests(docs[0])
    hold_lyrics(docs[0])
    xml = abc2xml.fixDoctype(docs[0])
    if "<note" not in xml:
        raise ConversionError("tune has no notes")
    return xml


# abc2xml messages that say music was skipped or changed: the tune's MIDI
# may then differ from abc2midi's
_LOST = re.compile(
    r"misplaced symbol|not recognized|error in M:|illegal duration|"
    r"error in broken rhythm|duration too small|not allowed, 1/8 assumed"
)


# MusicXML's order of the children of <attributes> that may come before <clef>
_BEFORE_CLEF = ("footnote", "level", "divisions", "key", "time", "staves", "part-symbol", "instruments")  # fmt: skip


def add_default_clefs(score) -> None:
    """Give a treble clef to every part that starts without one, in place.

    abc2xml writes a <clef> only for an explicit ``clef=`` (ABC's default is
    treble), and engravers such as verovio then draw staves with no clef.
    """
    for part in score.iter("part"):
        measure = part.find("measure")
        if measure is None or part.find("measure/attributes/clef") is not None:
            continue
        attributes = measure.find("attributes")
        if attributes is None:
            attributes = ElementTree.Element("attributes")
            measure.insert(0, attributes)
        if attributes.find("staves") is not None:
            continue  # a grand staff needs a clef per staff; leave it to the reader
        at = sum(1 for child in attributes if child.tag in _BEFORE_CLEF)
        clef = ElementTree.Element("clef")
        ElementTree.SubElement(clef, "sign").text = "G"
        ElementTree.SubElement(clef, "line").text = "2"
        attributes.insert(at, clef)


def last_meter_only(score) -> None:
    """Keep only the last of the meters a measure starts with, in place.

    A ``P:`` part written out with the meter in force (``M:3/2``) before its
    voices' own ``[M:C|]`` gives two; music21 would take the first.
    """
    for measure in score.iter("measure"):
        times = []
        for child in measure:
            if child.tag == "note":
                break
            if child.tag == "attributes":
                times += [(child, time) for time in child.findall("time")]
        for attributes, time in times[:-1]:
            attributes.remove(time)


_HALF_TYPE = {"breve": "whole", "whole": "half"}


def keep_long_rests(score) -> None:
    """Write a lone whole or breve rest that is not one bar long as two
    rests, in place.

    music21 reads a measure holding only such a rest as a full-measure rest
    and gives it the bar's length: ``z8`` in a 4/4 bar would last 4 beats,
    and the voice would run ahead (abc2midi plays all 8).
    """
    for part in score.iter("part"):
        divisions, bar = 1, Fraction(4)  # music21's bar without a time signature
        for measure in part.iter("measure"):
            divisions = int(measure.findtext("attributes/divisions") or divisions)
            beats = measure.findtext("attributes/time/beats")
            if beats and re.fullmatch(r"\d+(\+\d+)*", beats):
                beat_type = int(measure.findtext("attributes/time/beat-type") or 4)
                bar = Fraction(4 * sum(map(int, beats.split("+"))), beat_type)
            notes = measure.findall("note")
            rest = notes[0].find("rest") if len(notes) == 1 else None
            if rest is None or rest.get("measure") == "yes":
                continue
            type_ = notes[0].find("type")
            length = Fraction(int(notes[0].findtext("duration") or 0), divisions)
            if (
                type_ is None
                or type_.text not in _HALF_TYPE
                or notes[0].find("dot") is not None
                or notes[0].find("time-modification") is not None
                or length == bar
                or int(notes[0].findtext("duration") or 0) % 2
            ):
                continue
            notes[0].find("duration").text = str(
                int(notes[0].findtext("duration")) // 2
            )
            type_.text = _HALF_TYPE[type_.text]
            at = list(measure).index(notes[0])
            measure.insert(at + 1, copy.deepcopy(notes[0]))


def hold_lyrics(score) -> None:
    """Move each :data:`~abcmamba.convert.ties.HOLD` annotation onto the note
    after it as a lyric, in place, where music21 keeps it with the note
    (a direction it would place in the measure, apart from its voice)."""
    for measure in score.iter("measure"):
        pending = None
        for child in list(measure):
            words = child.findtext("direction-type/words") or ""
            if child.tag == "direction" and words.startswith(HOLD + ":"):
                measure.remove(child)
                pending = words
            elif child.tag == "note" and pending and child.find("grace") is None:
                lyric = ElementTree.SubElement(child, "lyric")
                ElementTree.SubElement(lyric, "text").text = pending
                pending = None


def abc_to_score(abc: str, expand: bool = False) -> music21.stream.Score:
    """Parse one ABC tune into a music21 Score."""
    from abcmamba.convert.abctext import (
        body_clefs_after_octave_clef,
        clef_middle_dropped,
        drop_staff_groups,
        drop_text_blocks,
        expand_repeats,
        full_tuplet_specs,
        propagate_accidentals,
        tonic_accidental_dropped,
        unequal_broken_rhythm_dropped,
    )

    if expand:
        abc = clef_middle_dropped(tonic_accidental_dropped(abc))
        abc = body_clefs_after_octave_clef(unequal_broken_rhythm_dropped(abc))
        abc = full_tuplet_specs(abc, abc2midi_meters=True)
    abc = propagate_accidentals(drop_text_blocks(abc))
    if expand:
        abc = expand_repeats(drop_staff_groups(abc))
    xml = abc_to_musicxml_text(abc)
    try:
        score = music21.converter.parse(xml, format="musicxml", forceSource=True)
    except Exception as err:
        raise ConversionError(
            f"music21 could not read abc2xml's MusicXML: {type(err).__name__}: {err}"[
                :200
            ]
        ) from err
    drums = percussion_parts(xml)
    shifts = transpositions(xml)
    for index, part in enumerate(score.parts):
        part.editorial.percussion = index in drums
        part.editorial.transpositions = shifts.get(index, [])
    return score


def transpositions(xml: str) -> dict[int, list[tuple[int, int]]]:
    """Per part index, (measure index, semitones) where a <transpose> starts.

    abc2xml writes ``%%MIDI transpose`` and ``transpose=`` so; music21 reads
    them into instruments, but also gives instruments it guesses from a MIDI
    program their usual transposition (an alto sax sounds a sixth lower),
    which abc2midi does not play; so they are read here.
    """
    root = ElementTree.fromstring(xml.encode("utf-8"))
    found: dict[int, list[tuple[int, int]]] = {}
    for index, part in enumerate(root.iter("part")):
        for number, measure in enumerate(part.iter("measure")):
            for chromatic in measure.iterfind("attributes/transpose/chromatic"):
                found.setdefault(index, []).append((number, int(chromatic.text)))
    return found


def percussion_parts(xml: str) -> set[int]:
    """Indexes of the parts abc2xml put on MIDI channel 10 (``%%MIDI channel 10``).

    music21 reads no channel from MusicXML, so the MIDI writer is told apart.
    """
    root = ElementTree.fromstring(xml.encode("utf-8"))
    return {
        index
        for index, part in enumerate(root.iter("score-part"))
        if any(c.text and c.text.strip() == "10" for c in part.iter("midi-channel"))
    }


def _unplayed(element: music21.base.Music21Object) -> bool:
    # Grace notes: music21 gives them the length of the following notes in
    # MIDI; abc2midi -NGRA (our reference) plays only the principal note.
    if isinstance(element, music21.note.GeneralNote) and element.duration.isGrace:
        return True
    # Chord symbols are accompaniment marks (abc2midi -NGUI); music21 sometimes
    # writes one as a chord lasting to the end of the part.
    # "D.C."/"Fine"/"Segno" words become RepeatExpressions that music21's MIDI
    # writer acts on (it calls expandRepeats); repeats are already written out.
    return isinstance(
        element,
        music21.harmony.Harmony
        | music21.repeat.RepeatExpression
        | music21.bar.Repeat
        | music21.spanner.RepeatBracket,
    )


def playable(score: music21.stream.Score) -> music21.stream.Score:
    """Ready a repeat-expanded score for music21's MIDI writer, as abc2midi plays it."""
    untied: set[int] = set()  # pitches whose tie a staccato note broke
    for element in list(score.recurse()):
        if _unplayed(element):
            element.activeSite.remove(element)
        elif isinstance(element, music21.note.Note) and element.pitch.midi in untied:
            # the note the staccato was tied to sounds again, as abc2midi plays it
            untied.discard(element.pitch.midi)
            if element.tie is not None and element.tie.type in ("stop", "continue"):
                stop = element.tie.type == "stop"
                element.tie = None if stop else music21.tie.Tie("start")
        elif isinstance(element, music21.key.KeySignature) and element.sharps is None:
            # a key of explicit accidentals ("K:Dphr ^F"): the notes carry their
            # pitches, and music21's MIDI writer fails on the key's meta event
            element.activeSite.remove(element)
        elif isinstance(element, music21.note.NotRest) and any(
            type(a) is music21.articulations.Staccato for a in element.articulations
        ):
            # A staccato note or chord sounds for half its length, as abc2midi
            # plays it (not a wedge or spiccato); the next note keeps its
            # offset, and a tie from it is cut.
            element.quarterLength = element.quarterLength / 2
            for note in element.notes if element.isChord else [element]:
                if note.tie is not None and note.tie.type in ("start", "continue"):
                    note.tie = None
                    untied.add(note.pitch.midi)
            # nor is it held past a repeat (ties.HOLD), as abc2midi plays it
            element.lyrics = [
                lyric
                for lyric in element.lyrics
                if not (lyric.text or "").startswith(HOLD + ":")
            ]
    return score

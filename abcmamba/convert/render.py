"""One ABC tune to MIDI, MusicXML, SVG (verovio) and PNG (cairosvg) files."""

from __future__ import annotations

import logging
from pathlib import Path

from abcmamba.convert.abcread import abc_to_musicxml_text, abc_to_score, playable
from abcmamba.convert.abctext import (
    pitched_percussion_clefs,
    propagate_accidentals,
)

logger = logging.getLogger(__name__)
PERCUSSION_CHANNEL = 10  # General MIDI drums (channels counted from 1)

# Verovio page: one tall page so a tune is one SVG; width in 1/10 mm.
VEROVIO_OPTIONS = {
    "pageWidth": 2100,
    "pageHeight": 60000,
    "adjustPageHeight": True,
    "scale": 40,
    "breaks": "auto",
    "footer": "none",
    "header": "auto",
}


def abc_to_midi(abc: str, path: str | Path) -> Path:
    """Write one ABC tune as MIDI, repeats played out as abc2midi does."""
    import music21

    score = playable(abc_to_score(pitched_percussion_clefs(abc), expand=True))
    _sound_transpositions(score)
    score = _notes_tied_by_pitch(_part_per_voice(score))
    mf = music21.midi.translate.streamToMidiFile(score)
    _assign_channels(mf, score)
    mf.open(str(path), "wb")
    try:
        mf.write()
    finally:
        mf.close()
    return Path(path)


def _sound_transpositions(score) -> None:
    """Play every note at its sounding pitch, in place: as abc2midi, each
    ``%%MIDI transpose``/``transpose=`` holds from its measure on in its part,
    replacing the last (music21's MIDI writer plays written pitches)."""
    import music21

    for part in score.parts:
        changes = dict(getattr(part.editorial, "transpositions", []))
        semitones = 0
        for index, measure in enumerate(
            part.getElementsByClass(music21.stream.Measure)
        ):
            semitones = changes.get(index, semitones)
            if semitones:
                for note in measure.recurse().notes:
                    note.transpose(semitones, inPlace=True)


def _part_per_voice(score):
    """A score with one part per voice (two voices on one staff become two parts).

    On one track a unison of two voices is one note to music21's MIDI writer;
    abc2midi gives every voice its own track.
    """
    import music21

    if not any(
        p.recurse().getElementsByClass(music21.stream.Voice) for p in score.parts
    ):
        return score
    split = music21.stream.Score()
    for part in score.parts:
        pieces = [part]
        if part.recurse().getElementsByClass(music21.stream.Voice):
            pieces = list(part.voicesToParts().parts)
        for piece in pieces:
            piece.editorial.percussion = part.editorial.get("percussion")
            split.insert(0, piece)
    return split


def _notes_tied_by_pitch(score):
    """A score of flat parts in which every chord is single notes and every
    tie is already joined, note by note.

    A tie joins a note to the next note of the same pitch in its voice, also
    into or out of a chord (``C2-[CE]2``, ``[CE-]2[CE]2``), as abc2midi plays
    it; music21's MIDI writer ties whole chords (a tie on one chord note
    holds all of them, and a note tied into a chord takes the chord along).
    """
    import music21

    flat_score = music21.stream.Score()
    for part in score.parts:
        flat = part.flatten()
        for chord in list(flat.getElementsByClass(music21.chord.Chord)):
            offset = chord.getOffsetBySite(flat)
            for member in chord.notes:
                note = music21.note.Note(
                    member.pitch, quarterLength=chord.quarterLength
                )
                note.volume = chord.volume
                note.tie = member.tie
                flat.insert(offset, note)
            flat.remove(chord)
        open_ties: dict[int, tuple[music21.note.Note, float]] = (
            {}
        )  # pitch -> (note, end)
        for note in list(flat.getElementsByClass(music21.note.Note)):
            start, tie = note.getOffsetBySite(flat), note.tie
            note.tie = None
            held = open_ties.pop(note.pitch.midi, None)
            if held and abs(held[1] - start) < 1e-6 and tie and tie.type != "start":
                held[0].quarterLength += note.quarterLength
                flat.remove(note)
                if tie.type == "continue":
                    open_ties[note.pitch.midi] = (held[0], start + note.quarterLength)
            elif tie and tie.type in ("start", "continue"):
                open_ties[note.pitch.midi] = (note, start + note.quarterLength)
        flat.editorial.percussion = part.editorial.get("percussion")
        flat_score.insert(0, flat)
    return flat_score


def _assign_channels(mf, score) -> None:
    """One MIDI channel per part, channel 10 for percussion parts, in place.

    music21 shares a channel between parts of the same program (a unison of
    two voices then cuts itself short) and reads no channel from MusicXML.
    """
    melodic = [c for c in range(1, 17) if c != PERCUSSION_CHANNEL]
    # music21 writes a conductor track, then one track per part in order
    tracks = mf.tracks[1:]
    if len(tracks) != len(score.parts):
        logger.debug(
            "%d tracks for %d parts: channels left", len(tracks), len(score.parts)
        )
        return
    for index, (part, track) in enumerate(zip(score.parts, tracks, strict=True)):
        drums = part.editorial.get("percussion")
        channel = PERCUSSION_CHANNEL if drums else melodic[index % len(melodic)]
        for event in track.events:
            if event.channel is not None and not event.isDeltaTime():
                event.channel = channel


def abc_to_musicxml(abc: str, path: str | Path) -> Path:
    """Write one ABC tune as MusicXML (repeats kept as repeat signs)."""
    path = Path(path)
    path.write_text(abc_to_musicxml_text(propagate_accidentals(abc)), encoding="utf-8")
    return path


def abc_to_svg(abc: str, path: str | Path) -> Path:
    """Engrave one ABC tune as SVG sheet music with verovio (from MusicXML)."""
    import verovio

    verovio.enableLog(verovio.LOG_OFF)
    toolkit = verovio.toolkit()
    toolkit.setOptions(VEROVIO_OPTIONS)
    if not toolkit.loadData(abc_to_musicxml_text(propagate_accidentals(abc))):
        raise ValueError("verovio could not load the MusicXML")
    path = Path(path)
    path.write_text(toolkit.renderToSVG(1), encoding="utf-8")
    if toolkit.getPageCount() > 1:
        logger.warning("%s: only page 1 of %d engraved", path, toolkit.getPageCount())
    return path


def svg_to_png(svg_path: str | Path, png_path: str | Path, scale: float = 1.0) -> Path:
    """Rasterize an SVG to PNG on a white background with cairosvg."""
    import cairosvg

    cairosvg.svg2png(
        url=str(svg_path), write_to=str(png_path), scale=scale, background_color="white"
    )
    return Path(png_path)


def abc_to_png(abc: str, path: str | Path) -> Path:
    """Engrave one ABC tune straight to PNG."""
    svg = Path(path).with_suffix(".svg.tmp")
    try:
        abc_to_svg(abc, svg)
        return svg_to_png(svg, path)
    finally:
        svg.unlink(missing_ok=True)

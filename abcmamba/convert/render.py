"""One ABC tune to MIDI, MusicXML, SVG (verovio) and PNG (cairosvg) files."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

from abcmamba.convert.abcread import abc_to_musicxml_text, abc_to_score, playable
from abcmamba.convert.abctext import (
    pitched_percussion_clefs,
    propagate_accidentals,
    tune_label,
)

logger = logging.getLogger(__name__)
PERCUSSION_CHANNEL = 10  # General MIDI drums (channels counted from 1)
ABC2MIDI_MAX_VOICES = 16  # abc2midi 4.84 drops the voices after these

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
    score = sounding_parts(score)
    if len(score.parts) > ABC2MIDI_MAX_VOICES:
        logger.warning(
            "%s: %d voices: abc2midi plays only the first %d",
            tune_label(abc),
            len(score.parts),
            ABC2MIDI_MAX_VOICES,
        )
    mf = music21.midi.translate.streamToMidiFile(score)
    _assign_channels(mf, score)
    mf.open(str(path), "wb")
    try:
        mf.write()
    finally:
        mf.close()
    return Path(path)


def sounding_parts(score):
    """A played-out score as notes for music21's MIDI writer: sounding pitches,
    ties joined note by note, one part per voice."""
    _sound_transpositions(score)
    _notes_tied_by_pitch(score)
    return _part_per_voice(score)


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


def _notes_tied_by_pitch(score) -> None:
    """Join every tie note by note, in place: chords become single notes and
    a tied note takes the length of the notes tied to it; no tie is left.

    A tie joins a note to the next note of the same pitch in its voice, also
    into or out of a chord (``C2-[CE]2``, ``[CE-]2[CE]2``), as abc2midi plays
    it; music21's MIDI writer ties whole chords (a tie on one chord note
    holds all of them, and a note tied into a chord takes the chord along).
    Done before the voices become parts: abc2xml's MusicXML may move a voice
    from one staff voice to another between bars, tie and all.
    """
    import music21

    for part in score.parts:
        placed = []  # (offset in the part, note, its stream)
        for site, base in _note_sites(part):
            for element in list(site.notes):
                offset = base + element.offset
                holds = _holds(element)
                if not isinstance(element, music21.chord.Chord):
                    element.editorial.hold = holds.get(0, 0.0)
                    placed.append((offset, element, site))
                    continue
                for index, member in enumerate(element.notes):
                    note = music21.note.Note(
                        member.pitch, quarterLength=element.quarterLength
                    )
                    note.volume, note.tie = element.volume, member.tie
                    note.editorial.hold = holds.get(index, 0.0)
                    site.insert(element.offset, note)
                    placed.append((offset, note, site))
                site.remove(element)
        placed.sort(key=lambda item: item[0])
        # pitch -> [note, where it ends, its voice] of notes tied onwards
        held: dict[int, list[list]] = {}
        for offset, note, site in placed:
            if isinstance(note, music21.note.Unpitched):
                continue
            tie, key, voice = note.tie, note.pitch.midi, _voice_id(site)
            note.tie = None
            ends_here = [h for h in held.get(key, []) if abs(h[1] - offset) < 1e-6]
            own = any(h[2] == voice for h in ends_here)
            if own and (tie is None or tie.type == "start"):
                # a tie abc2xml closed on a unison of the same chord ([ee]2-[ee]2,
                # [C-C] C): the next note of the pitch in the voice ends it
                tie = music21.tie.Tie("stop" if tie is None else "continue")
            if tie and tie.type != "start" and ends_here:
                # its own voice's tie first (abc2xml may move a voice between bars)
                tied_to = next((h for h in ends_here if h[2] == voice), ends_here[0])
                tied_to[0].quarterLength += note.quarterLength
                tied_to[0].editorial.hold += note.editorial.hold
                site.remove(note)
                held[key].remove(tied_to)
                if tie.type == "continue":
                    tied_to[1] = offset + note.quarterLength
                    held[key].append(tied_to)
            elif tie and tie.type in ("start", "continue"):
                held.setdefault(key, []).append(
                    [note, offset + note.quarterLength, voice]
                )
        for _, note, _ in placed:
            # a tie into a repeat or ending, held past the jump (see ties.py)
            if note.editorial.get("hold") and note.activeSite is not None:
                note.quarterLength += note.editorial.hold


def _holds(element) -> dict[int, float]:
    """Chord note index -> quarter notes that a :data:`HOLD` lyric lengthens it
    by; the lyric is removed."""
    from abcmamba.convert.ties import HOLD

    holds: dict[int, float] = {}
    for lyric in list(element.lyrics):
        if lyric.text and lyric.text.startswith(HOLD + ":"):
            for spec in lyric.text.split(":")[1].split(","):
                index, _, whole_notes = spec.partition("=")
                holds[int(index)] = float(Fraction(whole_notes) * 4)
            element.lyrics.remove(lyric)
    return holds


def _voice_id(site):
    import music21

    return site.id if isinstance(site, music21.stream.Voice) else None


def _note_sites(part):
    """(stream, its offset in the part) of the part, its measures and voices."""
    import music21

    yield part, 0.0
    for measure in part.getElementsByClass(music21.stream.Measure):
        yield measure, measure.offset
        for voice in measure.voices:
            yield voice, measure.offset + voice.offset


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

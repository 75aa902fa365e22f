"""Scores (MusicXML, Humdrum, MIDI, music21 streams) to ABC through xml2abc."""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import struct
import threading
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from pathlib import Path

import music21

logger = logging.getLogger(__name__)

MUSICXML_SUFFIXES = (".musicxml", ".xml", ".mxl")
HUMDRUM_SUFFIXES = (".krn",)
MIDI_SUFFIXES = (".mid", ".midi")
SCORE_SUFFIXES = MUSICXML_SUFFIXES + HUMDRUM_SUFFIXES + MIDI_SUFFIXES

# Seconds one file may take; pathological inputs (huge tuplet nests, giant
# MIDI files) otherwise stall a whole data_prep worker.
DEFAULT_TIMEOUT_S = 120
# music21's quantize grid: sixteenths and eighth-note triplets.
QUANTIZE_DIVISORS = (4, 3)


class ConversionError(Exception):
    """An input that cannot be converted; str(err) is a short human reason."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ConversionError when the block runs longer than `seconds`.

    Uses SIGALRM, so it only guards the main thread of a Unix process (each
    data_prep worker process is one); elsewhere, or when the caller already
    has an alarm running, it is a no-op.
    """
    usable = (
        seconds
        and hasattr(signal, "SIGALRM")
        and threading.current_thread() is threading.main_thread()
        # A caller's own alarm (data_prep has one) shares the timer: keep it.
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0
    )
    if not usable:
        yield
        return

    def _expire(signum, frame):
        raise ConversionError(f"timed out after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_midi_bytes(data: bytes) -> None:
    """Raise ConversionError unless `data` is a structurally complete MIDI file."""
    if len(data) < 14 or data[:4] != b"MThd":
        raise ConversionError("not a MIDI file (bad header)")
    header_len = struct.unpack(">I", data[4:8])[0]
    n_tracks = struct.unpack(">H", data[10:12])[0]
    pos = 8 + header_len
    found = 0
    while pos + 8 <= len(data) and found < n_tracks:
        chunk_len = struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        if pos + 8 + chunk_len > len(data):
            raise ConversionError("truncated MIDI file (track runs past end of file)")
        if data[pos : pos + 4] == b"MTrk":
            found += 1
        pos += 8 + chunk_len
    if found < n_tracks:
        raise ConversionError(
            f"truncated MIDI file ({found} of {n_tracks} tracks present)"
        )


def xml_to_abc(xml: str | bytes) -> str:
    """Convert MusicXML text to ABC with xml2abc, in-process."""
    from abcmamba.convert._vendor import xml2abc

    # x=1: no `$` line-break markers (normalize re-lines the body anyway);
    # u=0: repeats stay repeats; m=0: no %%MIDI directives.
    abc, info = xml2abc.vertaal(xml, x=1, u=0, m=0)
    if "occurred:" in info:
        reason = info.split("occurred:", 1)[1].strip().splitlines()[0]
        raise ConversionError(f"xml2abc failed: {reason[:200]}")
    if not abc.strip() or "has no notes" in info:
        raise ConversionError("score has no notes")
    text = xml.decode("utf-8", "replace") if isinstance(xml, bytes) else xml
    if "-title>" not in text:  # xml2abc's placeholder for a score without a title
        abc = re.sub(r"(?m)^T:Title\n", "", abc, count=1)
    return abc


def _has_notes(score: music21.stream.Stream) -> bool:
    return any(True for _ in score.recurse().notes)


def score_to_abc(score: music21.stream.Score, make_notation: bool = True) -> list[str]:
    """ABC text of each score in a parsed music21 object (Score, Opus or Part).

    `make_notation=False` skips music21's re-notation (measures, ties, beams,
    courtesy accidentals) for scores read from notated files such as Humdrum:
    the notes come out the same and export is about 3x faster.
    """
    from music21.musicxml.m21ToXml import GeneralObjectExporter, ScoreExporter

    scores = list(score.scores) if isinstance(score, music21.stream.Opus) else [score]
    tunes = []
    for one in scores:
        if not _has_notes(one):
            raise ConversionError("score has no notes")
        xml = None
        if not make_notation and isinstance(one, music21.stream.Score):
            try:
                xml = ET.tostring(ScoreExporter(one, makeNotation=False).parse())
            except Exception:  # not fully notated after all: take the slow path
                xml = None
        try:
            xml = xml or GeneralObjectExporter(one).parse()
        except Exception as err:  # music21 raises many types on odd streams
            raise ConversionError(
                f"music21 could not write MusicXML: {type(err).__name__}: {err}"[:200]
            ) from err
        tunes.append(xml_to_abc(_drop_music21_defaults(xml)))
    return tunes


def _drop_music21_defaults(xml: bytes | str) -> bytes:
    """MusicXML without the title and composer music21 makes up when it has none."""
    xml = xml.encode() if isinstance(xml, str) else xml
    for placeholder in (
        rb"<movement-title>Music21 Fragment</movement-title>",
        rb"<work-title>Music21 Fragment</work-title>",
        rb'<creator type="composer">Music21</creator>',
    ):
        xml = xml.replace(placeholder, b"")
    return xml


def _read_musicxml(path: Path) -> bytes:
    if path.suffix.lower() != ".mxl":
        return path.read_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            names = [
                n
                for n in archive.namelist()
                if not n.startswith("META")
                and n.lower().endswith((".xml", ".musicxml"))
            ]
            if not names:
                raise ConversionError("compressed MusicXML holds no .xml file")
            return archive.read(names[0])
    except zipfile.BadZipFile as err:
        raise ConversionError("not a compressed MusicXML file (bad zip)") from err


def _parse_midi(path: Path) -> music21.stream.Score:
    data = path.read_bytes()
    check_midi_bytes(data)
    try:
        mf = music21.midi.MidiFile()
        mf.readstr(data)
        split_channels(mf)
        # Quantize while importing: music21 quantizes before it makes measures,
        # so tuplets and ties come out of a clean grid.
        score = music21.midi.translate.midiFileToStream(
            mf, quantizePost=True, quarterLengthDivisors=QUANTIZE_DIVISORS
        )
    except Exception as err:
        raise ConversionError(
            f"unreadable MIDI: {type(err).__name__}: {err}"[:200]
        ) from err
    if not _has_notes(score):
        raise ConversionError("MIDI has no notes (drums on channel 10 are left out)")
    return score


def split_channels(mf) -> None:
    """One track per MIDI channel, drums (channel 10) dropped, in place.

    A type-0 file (every channel in one track, common for files from the
    wild) otherwise becomes one music21 part with the instruments mixed into
    voices, and drum hits become unpitched notes that ABC cannot hold.
    Files with one channel per track and no drums are left as they are.
    """
    from music21 import midi

    def channel(event) -> int | None:
        return event.channel if midi.ChannelVoiceMessages.hasValue(event.type) else None

    per_track = []
    for track in mf.tracks:
        channels = {
            channel(e) for e in track.events if not isinstance(e, midi.DeltaTime)
        }
        per_track.append(channels - {None})
    if all(len(c) <= 1 and 10 not in c for c in per_track):
        return
    tracks = []
    for track, channels in zip(mf.tracks, per_track, strict=True):
        timed: dict[int | None, list] = {key: [] for key in (None, *sorted(channels))}
        now = 0
        for event in track.events:
            if isinstance(event, midi.DeltaTime):
                now += event.time
            elif event.type != midi.MetaEvents.END_OF_TRACK:
                timed[channel(event)].append((now, event))
        timed.pop(10, None)
        tracks += [_track(events) for events in timed.values() if events]
    for index, track in enumerate(tracks, start=1):
        track.index = index
    mf.tracks = tracks
    mf.format = 1


def _track(timed: list) -> music21.midi.MidiTrack:
    """A MIDI track of (absolute tick, event) pairs, ended by END_OF_TRACK."""
    from music21 import midi

    track = midi.MidiTrack()
    last = 0
    end = midi.MidiEvent(track, type=midi.MetaEvents.END_OF_TRACK)
    end.data = b""
    for tick, event in [*timed, (timed[-1][0], end)]:
        event.track = track
        track.events += [midi.DeltaTime(track, time=tick - last), event]
        last = tick
    return track


def score_file_to_abc(
    path: str | Path, timeout_s: float | None = DEFAULT_TIMEOUT_S
) -> list[str]:
    """ABC text of each tune/movement in a MusicXML, Humdrum or MIDI file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SCORE_SUFFIXES:
        raise ConversionError(f"unsupported file type {suffix or '(none)'}")
    if not path.is_file():
        raise ConversionError(f"no such file: {path}")
    with time_limit(timeout_s):
        if suffix in MUSICXML_SUFFIXES:
            return [xml_to_abc(_read_musicxml(path))]
        if suffix in MIDI_SUFFIXES:
            return score_to_abc(_parse_midi(path))
        try:
            score = music21.converter.parse(path, format="humdrum", forceSource=True)
        except Exception as err:
            raise ConversionError(
                f"unreadable Humdrum: {type(err).__name__}: {err}"[:200]
            ) from err
        return score_to_abc(score, make_notation=False)

"""Find the pieces of a listening test in sample folders and prepare their media.

A sample folder is what `abcmamba generate` writes (per tune ``NAME.abc``,
``NAME.mid``, ``NAME.musicxml``, ``NAME.svg``, maybe ``NAME.wav``) or a folder of
real tunes (``.abc`` files with one or many tunes, ``.mid`` files). Files that
share a stem form one sample. A multi-tune ``.abc`` file gives one sample per tune.

The test is fair only if every source sounds alike: a sample with ABC is always
played from MIDI made here from its blinded ABC by one engine
(`abcmamba.convert.abc_to_midi`: no chord accompaniment, no beat accents), never
from the folder's own MIDI or audio, and audio is rendered from that MIDI with one
soundfont and the same FluidSynth settings for every source, then brought to one
loudness.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import wave
from dataclasses import dataclass, field
from pathlib import Path

from abcmamba import UserError
from abcmamba.abc.text import read_abc_file, split_tunes
from abcmamba.convert import abc_to_midi, abc_to_svg
from abcmamba.listen.midi import strip_midi_text

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".ogg", ".mp3")
MIDI_SUFFIXES = (".mid", ".midi")
HUMAN_LABELS = ("real", "human")
# Header fields that could reveal where a tune came from (title, composer,
# origin, notes, ...) are removed before engraving so the page stays blind.
REVEALING_FIELDS = set("TCOABDFGHNSZIPW")
# How every sample with ABC is rendered; part of the cache key, so a change here
# renders again instead of mixing old and new files.
MIDI_ENGINE = "abcmamba.convert.abc_to_midi"
# FluidSynth's own defaults, written out so a local config cannot change them.
FLUIDSYNTH_OPTIONS = ("-r", "44100", "-g", "0.2", "-R", "1", "-C", "1")
# Every rendered WAV is scaled to this RMS (of full scale, -20 dBFS) with its peak
# kept below 0.9, so that no source sounds louder than another.
TARGET_RMS = 0.1
DEFAULT_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
    "/usr/share/sounds/sf2/default-GM.sf2",
)


@dataclass
class Sample:
    """One piece of the test: where its files are and which source made it."""

    id: str
    source: str
    name: str
    is_human: bool
    abc: str | None = None
    files: dict[str, Path] = field(default_factory=dict)  # kind -> path


def sample_id(source: str, name: str) -> str:
    """Stable id of a sample: a hash of its source label and file name."""
    return hashlib.sha1(f"{source}/{name}".encode()).hexdigest()[:16]


def parse_samples_arg(value: str) -> tuple[Path, str]:
    """Split ``DIR`` or ``DIR=label`` into a folder and a source label."""
    if "=" in value and not Path(value).expanduser().is_dir():
        folder, label = value.rsplit("=", 1)
        label = label.strip()
    else:
        folder, label = value, ""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise UserError(f"--samples {value}: {path} is not a folder")
    label = label or path.resolve().name
    if not re.fullmatch(r"[\w.+-]{1,64}", label):
        raise UserError(
            f"--samples {value}: label {label!r} must be 1-64 of [A-Za-z0-9_.+-]"
        )
    return path, label


def blind_abc(abc: str) -> str:
    """The tune without header fields that name its title, composer or origin."""
    lines = []
    for line in abc.splitlines():
        stripped = line.strip()
        if stripped.startswith("%"):
            continue
        if len(stripped) > 1 and stripped[1] == ":" and stripped[0] in REVEALING_FIELDS:
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def find_samples(
    folders: list[tuple[Path, str]], human_labels: tuple[str, ...] = HUMAN_LABELS
) -> list[Sample]:
    """All samples in the given (folder, label) pairs, in a stable order."""
    samples: dict[str, Sample] = {}
    for folder, label in folders:
        is_human = label.lower() in human_labels
        found = 0
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            suffix = path.suffix.lower()
            rel = path.relative_to(folder).with_suffix("").as_posix()
            if suffix == ".abc":
                tunes = split_tunes(read_abc_file(path))
                if not tunes:
                    logger.warning("skipping %s: no tune (no X: line)", path)
                    continue
                for k, tune in enumerate(tunes):
                    name = rel if len(tunes) == 1 else f"{rel}#{k + 1}"
                    s = _get(samples, label, name, is_human)
                    s.abc, s.files["abc"] = tune, path
            elif suffix in MIDI_SUFFIXES:
                _get(samples, label, rel, is_human).files["midi"] = path
            elif suffix in AUDIO_SUFFIXES:
                _get(samples, label, rel, is_human).files["audio"] = path
            elif suffix == ".svg":
                _get(samples, label, rel, is_human).files["svg"] = path
            else:
                continue
            found += 1
        if not found:
            raise UserError(
                f"--samples {folder}: no .abc, .mid, .wav or .svg files in it"
            )
    # A sample needs something to listen to; MIDI can be made from ABC later.
    usable = [
        s for s in samples.values() if s.abc or "midi" in s.files or "audio" in s.files
    ]
    for s in samples.values():
        if s not in usable:
            logger.warning(
                "skipping %s/%s: no ABC, MIDI or audio file", s.source, s.name
            )
    if not usable:
        raise UserError("no playable samples found in the --samples folders")
    return sorted(usable, key=lambda s: (s.source, s.name))


def _get(samples: dict[str, Sample], label: str, name: str, is_human: bool) -> Sample:
    sid = sample_id(label, name)
    if sid not in samples:
        samples[sid] = Sample(id=sid, source=label, name=name, is_human=is_human)
    return samples[sid]


def find_soundfont(explicit: str | None = None) -> Path | None:
    """The General MIDI soundfont to render with: the given one or a Debian one."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise UserError(f"--soundfont {explicit}: no such file")
        return path
    return next((Path(p) for p in DEFAULT_SOUNDFONTS if Path(p).is_file()), None)


class MediaStore:
    """Makes and caches what the page needs per sample: MIDI, audio and SVG files."""

    def __init__(self, cache_dir: Path, soundfont: Path | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self.soundfont = soundfont
        settings = f"{MIDI_ENGINE} {FLUIDSYNTH_OPTIONS} {TARGET_RMS} {soundfont}"
        self.tag = hashlib.sha1(settings.encode()).hexdigest()[:8]

    def prepare(self, sample: Sample, render_audio: bool = False) -> dict[str, Path]:
        """The sample's media by kind ("midi", "audio", "svg"); made ones are cached.

        Runs before serving, in the main thread: verovio loads its fonts per thread,
        and a participant should never wait on abc2midi or FluidSynth.
        """
        media = {}
        midi = self.midi(sample)
        if midi is not None:
            media["midi"] = midi
        audio = self.audio(sample, midi, render_audio)
        if audio is not None:
            media["audio"] = audio
        svg = self.svg(sample)
        if svg is not None:
            media["svg"] = svg
        return media

    def midi(self, sample: Sample) -> Path | None:
        """The sample's MIDI, text events such as track names removed so the file
        cannot reveal a title. With ABC it is made from the blinded ABC by
        `MIDI_ENGINE` whatever MIDI the folder holds, so all sources sound alike."""
        if sample.abc is not None:
            src = sample.files["abc"]
        else:
            src = sample.files.get("midi")
        if src is None:
            return None
        out = self.cache_dir / f"{sample.id}.{self.tag}.mid"
        if _fresh(out, src):
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        if sample.abc is not None:
            made = out.with_suffix(".made.mid")
            if not render_midi(blind_abc(sample.abc), made):
                return None
            data = made.read_bytes()
            made.unlink()
        else:
            data = src.read_bytes()
        try:
            data = strip_midi_text(data)
        except ValueError as err:
            logger.warning(
                "skipping MIDI of %s/%s: %s", sample.source, sample.name, err
            )
            return None
        _write_atomic(out, data)
        return out

    def svg(self, sample: Sample) -> Path | None:
        """Sheet music: engraved from the blinded ABC so every source looks alike."""
        if sample.abc:
            out = self.cache_dir / f"{sample.id}.svg"
            if _fresh(out, sample.files["abc"]) or _abc_to_svg(
                blind_abc(sample.abc), out
            ):
                return out
        return sample.files.get("svg")

    def audio(self, sample: Sample, midi: Path | None, render: bool) -> Path | None:
        """A WAV rendered from the sample's MIDI with FluidSynth when asked. The
        folder's own audio is played only by samples with neither ABC nor MIDI: it
        was rendered elsewhere, with other settings."""
        if midi is None:
            return sample.files.get("audio")
        if not render or self.soundfont is None:
            return None
        out = self.cache_dir / f"{sample.id}.{self.tag}.wav"
        if _fresh(out, midi) or render_wav(midi, out, self.soundfont):
            return out
        return None


def unfair_sources(samples: list[Sample]) -> dict[str, int]:
    """Samples per source that cannot be rendered like the others (no ABC: their
    own MIDI or audio is played as it is)."""
    counts: dict[str, int] = {}
    for s in samples:
        if s.abc is None:
            counts[s.source] = counts.get(s.source, 0) + 1
    return counts


def _fresh(out: Path, src: Path) -> bool:
    """Whether a cached file exists and is not older than what it was made from."""
    return out.is_file() and out.stat().st_mtime >= src.stat().st_mtime


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def render_wav(midi: Path, out: Path, soundfont: Path) -> bool:
    """Render MIDI to a 44.1 kHz WAV with FluidSynth at `TARGET_RMS`; False when
    that fails."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.wav")
    cmd = [
        exe,
        "-ni",
        "-q",
        *FLUIDSYNTH_OPTIONS,
        "-F",
        str(tmp),
        str(soundfont),
        str(midi),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        logger.warning("fluidsynth timed out on %s", midi)
        return False
    if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size <= 44:
        logger.warning("fluidsynth failed on %s: %s", midi, proc.stderr.strip()[-200:])
        tmp.unlink(missing_ok=True)
        return False
    match_loudness(tmp)
    tmp.replace(out)  # atomic: a half-written WAV is never served
    return True


def match_loudness(wav: Path, target_rms: float = TARGET_RMS) -> None:
    """Scale a 16-bit WAV in place to target_rms of full scale, its peak below 0.9."""
    import numpy as np

    with wave.open(str(wav)) as f:
        params = f.getparams()
        frames = f.readframes(f.getnframes())
    if params.sampwidth != 2:
        return
    pcm = np.frombuffer(frames, dtype="<i2") / 32768  # (frames * channels,)
    rms, peak = np.sqrt(np.mean(pcm**2)), np.abs(pcm).max()
    if rms == 0:
        return
    scale = min(target_rms / rms, 0.9 / peak)
    with wave.open(str(wav), "wb") as f:
        f.setparams(params)
        f.writeframes(np.round(pcm * scale * 32768).astype("<i2").tobytes())


def render_midi(abc: str, out: Path) -> bool:
    """Make MIDI from one ABC tune with `MIDI_ENGINE`, the one engine for every
    source (abc2midi would add chord accompaniment and beat accents to some tunes
    only); False when the tune cannot be read."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        abc_to_midi(abc, out)
    except Exception as err:  # music21 raises many kinds on bad ABC
        logger.warning("cannot make MIDI from ABC: %s", err)
        out.unlink(missing_ok=True)
        return False
    return out.is_file()


def _abc_to_svg(abc: str, out: Path) -> bool:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.svg")
    try:
        abc_to_svg(abc, tmp)
    except Exception as err:  # engraving is best effort; the page works without it
        logger.warning("cannot engrave sheet music: %s", err)
        tmp.unlink(missing_ok=True)
        return False
    if not tmp.is_file():
        return False
    tmp.replace(out)
    return True

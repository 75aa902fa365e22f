"""Objective music metrics after Yang & Lerch (2018), over plain note arrays.

A piece is a ``NoteArray``: parallel arrays of MIDI pitch, onset and duration
(both in quarterLength) and the voice each note belongs to. Features are
computed per piece; two sets of pieces are compared through the distribution
of pairwise distances between pieces (intra-set: within one set; inter-set:
across the two sets), smoothed with a Gaussian KDE, then summarised by the
overlap area and the KL divergence of the two distance distributions.

Reference: Li-Chia Yang and Alexander Lerch, "On the evaluation of generative
models in music", Neural Computing and Applications 32, 2020 (preprint 2018).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

# Note-length classes of Yang & Lerch, in quarterLength: whole, half, quarter,
# eighth, sixteenth, their dotted forms, and half/quarter/eighth triplets.
NOTE_LENGTH_CLASSES: tuple[float, ...] = (
    4.0,
    2.0,
    1.0,
    0.5,
    0.25,
    3.0,
    1.5,
    0.75,
    0.375,
    4.0 / 3.0,
    2.0 / 3.0,
    1.0 / 3.0,
)


@dataclass(frozen=True)
class NoteArray:
    """Notes of one piece: MIDI pitch, onset and duration in quarterLength, voice."""

    pitch: np.ndarray  # (N,) int
    onset: np.ndarray  # (N,) float, quarterLength from the start
    duration: np.ndarray  # (N,) float, quarterLength
    voice: np.ndarray  # (N,) int, index of the part the note belongs to

    @classmethod
    def from_notes(
        cls,
        pitch: Sequence[int],
        onset: Sequence[float] | None = None,
        duration: Sequence[float] | None = None,
        voice: Sequence[int] | None = None,
    ) -> NoteArray:
        """Build from lists; onsets default to consecutive notes of the durations."""
        n = len(pitch)
        dur = np.ones(n) if duration is None else np.asarray(duration, dtype=float)
        if onset is None:
            onset = np.concatenate([[0.0], np.cumsum(dur)[:-1]]) if n else np.zeros(0)
        return cls(
            pitch=np.asarray(pitch, dtype=int),
            onset=np.asarray(onset, dtype=float),
            duration=dur,
            voice=np.zeros(n, dtype=int) if voice is None else np.asarray(voice, int),
        )

    def __len__(self) -> int:
        return int(self.pitch.shape[0])

    def voices(self) -> list[NoteArray]:
        """One NoteArray per voice (part) that has notes, in voice order."""
        return [
            NoteArray(
                self.pitch[mask],
                self.onset[mask],
                self.duration[mask],
                self.voice[mask],
            )
            for mask in (self.voice == v for v in np.unique(self.voice))
        ]


def notes_from_stream(stream) -> NoteArray:
    """Extract a NoteArray from a music21 Score/Part/Stream (chords give one note per pitch)."""
    from music21 import stream as m21stream

    parts = list(stream.parts) if isinstance(stream, m21stream.Score) else [stream]
    if not parts:
        parts = [stream]
    pitch: list[int] = []
    onset: list[float] = []
    duration: list[float] = []
    voice: list[int] = []
    for v, part in enumerate(parts):
        flat = part.flatten()
        for element in flat.notes:
            if element.duration.isGrace:
                continue  # grace notes take no time; they would distort IOI and lengths
            offset = float(element.getOffsetInHierarchy(flat))
            ql = float(element.quarterLength)
            for p in element.pitches:
                pitch.append(int(p.midi))
                onset.append(offset)
                duration.append(ql)
                voice.append(v)
    order = np.lexsort((np.asarray(pitch), np.asarray(onset), np.asarray(voice)))
    return NoteArray(
        pitch=np.asarray(pitch, dtype=int)[order] if pitch else np.zeros(0, int),
        onset=np.asarray(onset, dtype=float)[order] if pitch else np.zeros(0),
        duration=np.asarray(duration, dtype=float)[order] if pitch else np.zeros(0),
        voice=np.asarray(voice, dtype=int)[order] if pitch else np.zeros(0, int),
    )


# ---------------------------------------------------------------- features


def pitch_count(notes: NoteArray) -> float:
    """Number of distinct MIDI pitches used (Yang & Lerch 'PC')."""
    return float(len(np.unique(notes.pitch)))


def pitch_class_histogram(notes: NoteArray) -> np.ndarray:
    """12-bin histogram of pitch classes (C=0), normalised to sum 1 ('PCH')."""
    hist = np.bincount(notes.pitch % 12, minlength=12).astype(float)
    return hist / hist.sum() if hist.sum() else hist


def pitch_class_transition_matrix(notes: NoteArray) -> np.ndarray:
    """12x12 counts of pitch-class transitions within each voice, normalised to sum 1 ('PCTM')."""
    matrix = np.zeros((12, 12))
    for a, b in _consecutive_pairs(notes):
        matrix[a % 12, b % 12] += 1
    total = matrix.sum()
    return matrix / total if total else matrix


def pitch_range(notes: NoteArray) -> float:
    """Highest minus lowest MIDI pitch, in semitones ('PR')."""
    return float(notes.pitch.max() - notes.pitch.min()) if len(notes) else 0.0


def average_pitch_interval(notes: NoteArray) -> float:
    """Mean absolute interval in semitones between consecutive notes of a voice ('PI')."""
    pairs = _consecutive_pairs(notes)
    if not pairs:
        return 0.0
    return float(np.mean([abs(b - a) for a, b in pairs]))


def note_count(notes: NoteArray) -> float:
    """Number of notes ('NC'); a chord counts one note per pitch."""
    return float(len(notes))


def average_inter_onset_interval(notes: NoteArray) -> float:
    """Mean time in quarterLength between consecutive distinct onsets ('IOI')."""
    onsets = np.unique(notes.onset)
    return float(np.mean(np.diff(onsets))) if len(onsets) > 1 else 0.0


def note_length_histogram(notes: NoteArray) -> np.ndarray:
    """Histogram over the 12 note-length classes, nearest class in log time, sum 1 ('NLH')."""
    hist = np.zeros(len(NOTE_LENGTH_CLASSES))
    durations = notes.duration[notes.duration > 0]
    if len(durations):
        classes = np.log2(np.asarray(NOTE_LENGTH_CLASSES))
        nearest = np.abs(np.log2(durations)[:, None] - classes[None, :]).argmin(axis=1)
        hist = np.bincount(nearest, minlength=len(classes)).astype(float)
        hist /= hist.sum()
    return hist


def _consecutive_pairs(notes: NoteArray) -> list[tuple[int, int]]:
    """(previous pitch, next pitch) within each voice; in a chord, its lowest note leads."""
    pairs: list[tuple[int, int]] = []
    for v in np.unique(notes.voice):
        mask = notes.voice == v
        onset, pitch = notes.onset[mask], notes.pitch[mask]
        # one pitch per onset (the lowest, arrays are sorted by onset then pitch)
        _, first = np.unique(onset, return_index=True)
        melody = pitch[np.sort(first)]
        pairs.extend(zip(melody[:-1].tolist(), melody[1:].tolist(), strict=True))
    return pairs


FEATURES: dict[str, Callable[[NoteArray], float | np.ndarray]] = {
    "pitch_count": pitch_count,
    "pitch_class_histogram": pitch_class_histogram,
    "pitch_class_transition_matrix": pitch_class_transition_matrix,
    "pitch_range": pitch_range,
    "average_pitch_interval": average_pitch_interval,
    "note_count": note_count,
    "average_inter_onset_interval": average_inter_onset_interval,
    "note_length_histogram": note_length_histogram,
}


def piece_features(notes: NoteArray) -> dict[str, np.ndarray]:
    """All features of one piece, each as a flat float array."""
    return {
        name: np.atleast_1d(np.asarray(f(notes), float)).ravel()
        for name, f in FEATURES.items()
    }


# ---------------------------------------------------------------- set comparison


def intra_set_distances(values: np.ndarray) -> np.ndarray:
    """Euclidean distances between all pairs of distinct pieces of one set.

    values: (N, F) feature vectors; returns N*(N-1)/2 distances.
    """
    from scipy.spatial.distance import pdist

    values = np.asarray(values, float).reshape(len(values), -1)  # (N, F)
    return pdist(values) if len(values) > 1 else np.zeros(0)


def inter_set_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between every piece of set a and every piece of set b."""
    from scipy.spatial.distance import cdist

    a = np.asarray(a, float).reshape(len(a), -1)  # (Na, F)
    b = np.asarray(b, float).reshape(len(b), -1)  # (Nb, F)
    return cdist(a, b).ravel()  # (Na * Nb,)


def _kde(samples: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Gaussian KDE; a narrow Gaussian where the samples have no spread (KDE is singular)."""
    from scipy.stats import gaussian_kde, norm

    samples = np.asarray(samples, float).ravel()
    if len(samples) == 0:
        raise ValueError("cannot estimate a density from no samples")
    if len(samples) > 1 and np.ptp(samples) > 0:
        return gaussian_kde(samples)
    width = 1e-2 * max(1.0, abs(float(samples[0])))
    return lambda x: norm.pdf(x, loc=float(samples.mean()), scale=width)


def _grid(a: np.ndarray, b: np.ndarray, points: int) -> np.ndarray:
    """Common evaluation grid covering both samples with a margin for the KDE tails."""
    both = np.concatenate([np.ravel(a), np.ravel(b)])
    low, high = float(both.min()), float(both.max())
    margin = max(0.25 * (high - low), 1e-2 * max(1.0, abs(low), abs(high)))
    return np.linspace(low - margin, high + margin, points)


def overlap_area(a: np.ndarray, b: np.ndarray, points: int = 1000) -> float:
    """Area under min(KDE(a), KDE(b)): 1 for identical distributions, 0 for disjoint ones."""
    from scipy.integrate import trapezoid

    grid = _grid(a, b, points)
    pa, pb = _kde(a)(grid), _kde(b)(grid)
    # normalise on the grid so that truncated tails do not bias the area
    pa, pb = pa / trapezoid(pa, grid), pb / trapezoid(pb, grid)
    return float(np.clip(trapezoid(np.minimum(pa, pb), grid), 0.0, 1.0))


def kl_divergence(a: np.ndarray, b: np.ndarray, points: int = 1000) -> float:
    """KL(KDE(a) || KDE(b)) in nats on a common grid (as mgeval: scipy.stats.entropy)."""
    from scipy.stats import entropy

    grid = _grid(a, b, points)
    pa, pb = _kde(a)(grid), _kde(b)(grid)
    # floor q so that a sample outside the other's support gives a large finite value
    return float(entropy(pa + 1e-12, pb + 1e-12))


def compare_sets(
    real: list[dict[str, np.ndarray]], generated: list[dict[str, np.ndarray]]
) -> dict[str, dict[str, float]]:
    """Per feature: intra/inter distance statistics, overlap area and KL (intra-real vs inter).

    The overlap area is 1 when a generated piece is as far from the real pieces
    as real pieces are from each other, and falls towards 0 as they differ.
    """
    if len(real) < 2 or len(generated) < 1:
        raise ValueError("need at least 2 real and 1 generated piece to compare sets")
    result: dict[str, dict[str, float]] = {}
    for name in FEATURES:
        r = np.stack([f[name] for f in real])  # (Nr, F)
        g = np.stack([f[name] for f in generated])  # (Ng, F)
        intra_real = intra_set_distances(r)
        intra_gen = intra_set_distances(g) if len(g) > 1 else np.zeros(0)
        inter = inter_set_distances(r, g)
        result[name] = {
            "real_mean": float(r.mean()) if r.shape[1] == 1 else float("nan"),
            "generated_mean": float(g.mean()) if g.shape[1] == 1 else float("nan"),
            "intra_real_mean": float(intra_real.mean()),
            "intra_real_std": float(intra_real.std()),
            "intra_generated_mean": (
                float(intra_gen.mean()) if len(intra_gen) else float("nan")
            ),
            "intra_generated_std": (
                float(intra_gen.std()) if len(intra_gen) else float("nan")
            ),
            "inter_mean": float(inter.mean()),
            "inter_std": float(inter.std()),
            "overlap_area": overlap_area(intra_real, inter),
            "kl_divergence": kl_divergence(intra_real, inter),
        }
    return result

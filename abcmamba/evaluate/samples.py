"""Analyse tunes (real or sampled): validity, MIDI conversion, features, conditioning.

Every tune goes through :func:`analyse_tune`, which records why it failed
instead of dropping it, so each metric can say on how many tunes it was
computed and how many could not be used.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from abcmamba.abc import validate
from abcmamba.abc.header import Header, canonical_key, canonical_meter, parse_header
from abcmamba.abc.validate import voices_with_notes
from abcmamba.convert import abc_to_midi, abc_to_score
from abcmamba.evaluate.metrics import notes_from_stream, piece_features
from abcmamba.evaluate.structure import bar_texts, has_repeats
from abcmamba.generate.conditions import FLAG_FIELDS

logger = logging.getLogger(__name__)

# Header fields a conditioned sample is asked for, in canonical order.
CONDITION_FIELDS = ("rhythm", "meter", "unit_note_length", "key")
METER_FIT = 0.75  # share of inner bars that must fill the meter


@dataclass
class TuneAnalysis:
    """What could be measured on one tune, and why the rest could not."""

    abc: str
    reasons: list[str] = field(default_factory=list)  # empty == valid
    parsed: bool = False
    features: dict[str, np.ndarray] | None = None
    bars: list[str] = field(default_factory=list)
    repeats: bool = False
    header: Header = field(default_factory=lambda: parse_header(""))
    key_sharps: int | None = None  # key signature the tune declares
    analysed_sharps: int | None = None  # key signature of music21's key estimate
    bar_fit: float | None = None  # share of inner bars whose length fits the meter
    voices_with_notes: int = 0  # voices of the ABC that hold notes
    parts_with_notes: int = 0  # parts of the converted score that hold notes
    voice_features: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def every_voice_sounds(self) -> bool:
        """Each voice with notes in the ABC has notes in the score MIDI/MusicXML come from."""
        return self.parsed and self.parts_with_notes >= self.voices_with_notes

    @property
    def valid(self) -> bool:
        """Passed validation, parsed, and converted to MIDI."""
        return not self.reasons


def _reason_kind(reason: str) -> str:
    """A reason with its numbers and quoted parts removed, to count reasons by kind."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason)
    text = re.sub(r"'…'(?:\s*'…')+", "'…'", text)
    return re.sub(r"(?<![A-Za-z0-9])\d+(?:[./]\d+)*", "N", text).strip()[:120]


def _validate(abc: str) -> list[str]:
    return list(validate(abc))


def _to_score(abc: str):
    return abc_to_score(abc)


def _to_midi(abc: str, path: Path) -> None:
    abc_to_midi(abc, path)


def key_signature_sharps(key: str) -> int | None:
    """Sharps (negative: flats) of an ABC `K:` value, e.g. 'Dmix' -> 1; None if unknown."""
    from music21 import abcFormat

    meta = abcFormat.ABCMetadata(f"K:{key}")
    meta.preParse()
    try:
        return int(meta.getKeySignatureObject().sharps)
    except Exception:  # music21 raises several types for keys it cannot read
        return None


def _bar_fit(score) -> float | None:
    """Share of bars (first and last excluded: pickups) whose length equals the meter's."""
    from music21 import stream

    part = score.parts[0] if isinstance(score, stream.Score) and score.parts else score
    measures = list(part.getElementsByClass(stream.Measure))[1:-1]
    fits = []
    for measure in measures:
        ts = measure.getContextByClass("TimeSignature")
        if ts is None:
            continue
        fits.append(
            abs(measure.duration.quarterLength - ts.barDuration.quarterLength) < 1e-6
        )
    return sum(fits) / len(fits) if fits else None


def analyse_tune(abc: str, midi: bool = True, finished: bool = True) -> TuneAnalysis:
    """Validate, parse and convert one tune; collect its features and structure."""
    result = TuneAnalysis(abc=abc, header=parse_header(abc))
    if not finished:
        result.reasons.append("unfinished: no end of tune within the token budget")
    result.bars = bar_texts(abc)
    result.repeats = has_repeats(abc)
    try:
        result.reasons.extend(_validate(abc))
    except Exception as err:  # a crash in the validator is a reason, not a stop
        result.reasons.append(f"validator error: {type(err).__name__}")
    try:
        score = _to_score(abc)
    except Exception as err:  # music21 raises many types on bad ABC
        result.reasons.append(f"music21 cannot parse: {type(err).__name__}")
        return result
    result.parsed = True
    notes = notes_from_stream(score)
    if len(notes) < 2:
        result.reasons.append("fewer than 2 notes")
    else:
        result.features = piece_features(notes)
    try:
        result.voices_with_notes = voices_with_notes(abc)
    except Exception as err:  # the tokenizer's fault, not the tune's
        logger.debug("voice split failed: %s", err)
    voices = notes.voices()
    result.parts_with_notes = len(voices)
    if len(voices) > 1:
        result.voice_features = [piece_features(v) for v in voices if len(v) >= 2]
    if "K" in result.header:
        result.key_sharps = key_signature_sharps(result.header.get("K"))
    try:
        result.analysed_sharps = (
            int(score.analyze("key").sharps) if len(notes) else None
        )
    except Exception as err:
        logger.debug("key analysis failed: %s", err)
    try:
        result.bar_fit = _bar_fit(score)
    except Exception as err:
        logger.debug("bar analysis failed: %s", err)
    if midi:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                _to_midi(abc, Path(tmp) / "tune.mid")
            except Exception as err:
                result.reasons.append(f"MIDI conversion failed: {type(err).__name__}")
    return result


def analyse_tunes(
    tunes: Sequence[str],
    desc: str = "analyse",
    midi: bool = True,
    finished: Sequence[bool] | None = None,
) -> list[TuneAnalysis]:
    """:func:`analyse_tune` over many tunes with a progress bar."""
    finished = [True] * len(tunes) if finished is None else finished
    pairs = list(zip(tunes, finished, strict=True))
    return [
        analyse_tune(abc, midi=midi, finished=done)
        for abc, done in tqdm(pairs, desc=desc, unit="tune")
    ]


def validity_summary(analyses: Sequence[TuneAnalysis]) -> dict:
    """Validity rate and failure reasons counted by kind."""
    reasons = Counter(_reason_kind(r) for a in analyses for r in a.reasons)
    n = len(analyses)
    return {
        "count": n,
        "valid": sum(a.valid for a in analyses),
        "validity_rate": sum(a.valid for a in analyses) / n if n else float("nan"),
        "parsed": sum(a.parsed for a in analyses),
        "parse_failures": sum(not a.parsed for a in analyses),
        "reasons": dict(reasons.most_common()),
    }


# ---------------------------------------------------------------- sampling


def conditions_from_records(
    records: Sequence[dict], n: int, seed: int = 0, batch_size: int = 8
) -> list[dict[str, str]]:
    """n requests (rhythm, meter, unit note length, key) as real tunes' headers have them.

    Header combinations are drawn in proportion to how often real tunes use
    them, at most ceil(n / batch_size) distinct ones, so that identical
    requests can be sampled together in batches.
    """
    rng = np.random.default_rng(seed)
    combos: Counter[tuple] = Counter()
    for record in records:
        if record.get("meter") and record.get("key") and _acceptable(record):
            combos[
                tuple((f, str(record[f])) for f in CONDITION_FIELDS if record.get(f))
            ] += 1
    if not combos or n < 1:
        return []
    names = list(combos)
    weights = np.array([combos[c] for c in names], float)
    k = min(len(names), -(-n // max(1, batch_size)))
    chosen = rng.choice(len(names), size=k, replace=False, p=weights / weights.sum())
    return [dict(names[int(chosen[i % k])]) for i in range(n)]


def _acceptable(record: dict) -> bool:
    """Whether the key and meter are spellings the sampler accepts as conditions."""
    try:
        canonical_key(str(record["key"]))
        canonical_meter(str(record["meter"]))
    except ValueError:
        return False
    return True


@dataclass
class Sample:
    """A raw sample and whether the model ended it (EOS) within the token budget."""

    abc: str
    finished: bool


def voice_summary(analyses: Sequence[TuneAnalysis]) -> dict:
    """Multi-voice tunes, how many sound every voice once converted, voices per piece."""
    multi = [a for a in analyses if a.voices_with_notes > 1]
    return {
        "count": len(analyses),
        "multi_voice": len(multi),
        "every_voice_sounds": sum(a.every_voice_sounds for a in multi),
        "voices_mean": (
            float(np.mean([a.voices_with_notes for a in multi])) if multi else None
        ),
        "voices_compared": sum(len(a.voice_features) for a in analyses),
    }


def sample_tunes(
    model,
    tokenizer,
    conditions: Sequence[dict[str, str]],
    seed: int = 0,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    constrained: bool = True,
    min_new_tokens: int = 0,
) -> list[Sample]:
    """One raw sample (no retries) per request, with or without the ABC grammar."""
    from abcmamba.generate import generate_tunes

    groups: dict[tuple, list[int]] = {}
    for i, request in enumerate(conditions):
        groups.setdefault(tuple(sorted(request.items())), []).append(i)
    by_index: dict[int, Sample] = {}
    # identical requests (all unconditioned ones) are sampled together, in batches
    for g, (request, indices) in enumerate(groups.items()):
        kwargs = {"unit" if k == "unit_note_length" else k: v for k, v in request}
        tunes, _ = generate_tunes(
            model,
            tokenizer,
            len(indices),
            seed=seed + g,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            retries=0,
            constrained=constrained,
            min_new_tokens=min_new_tokens,
            **kwargs,
        )
        for i, tune in zip(indices, tunes, strict=True):
            by_index[i] = Sample(tune.abc, tune.finished)
    return [by_index[i] for i in range(len(conditions))]


def conditioning_summary(
    requests: Sequence[dict[str, str]], analyses: Sequence[TuneAnalysis]
) -> dict:
    """Share of samples whose header and music match the requested key/meter/rhythm.

    - header: the sample's own `K:`/`M:`/`R:` line says what was asked;
    - key (music): music21's key estimate has the requested key signature;
    - meter (music): at least 75% of inner bars have the bar length of the meter
      (folk tunes split bars around pickups at section starts);
    A tune that did not parse counts as a miss for the music checks.
    """
    counts: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    for request, a in zip(requests, analyses, strict=True):
        ok_all = True
        for name in ("rhythm", "meter", "key"):
            if name not in request:
                continue
            asked[name] += 1
            got = a.header.get(FLAG_FIELDS[name], "")
            header_ok = (
                got.replace(" ", "").lower() == request[name].replace(" ", "").lower()
            )
            music_ok = True
            if name == "key":
                want = key_signature_sharps(request[name])
                music_ok = a.parsed and want is not None and a.analysed_sharps == want
            elif name == "meter":
                music_ok = a.parsed and a.bar_fit is not None and a.bar_fit >= METER_FIT
            counts[f"{name}_header"] += header_ok
            counts[f"{name}_music"] += music_ok
            counts[name] += header_ok and music_ok
            ok_all = ok_all and header_ok and music_ok
        counts["all"] += ok_all
    n = len(requests)
    result = {"count": n}
    for key, value in counts.items():
        base = n if key == "all" else asked[key.split("_")[0]]
        result[key] = value / base if base else float("nan")
    return result

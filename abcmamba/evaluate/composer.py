"""A composer classifier, to measure how well a model honours a requested composer.

Each tune becomes a vector of music features (those of
:mod:`abcmamba.evaluate.metrics` that do not grow with the tune's length,
plus the key's tonic and mode, the meter, the number of voices and the note
density); a scikit-learn pipeline (StandardScaler + LogisticRegression,
balanced class weights) learns the composers of the training split that have
at least ``MIN_PIECES`` tunes. It is first measured on real held-out tunes,
then applied to tunes sampled with ``C:COMPOSER`` for each of its composers.

Nothing is read from the `C:` or `T:` lines: the label of a tune is the
corpus's ``composer`` column (or the `C:` line of a fixture), never a feature.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from tqdm.auto import tqdm

from abcmamba.abc.header import (
    canonical_key,
    canonical_meter,
    is_compound,
    key_name,
    meter_length,
    parse_header,
)
from abcmamba.evaluate.metrics import (
    NoteArray,
    _consecutive_pairs,
    average_inter_onset_interval,
    average_pitch_interval,
    note_length_histogram,
    notes_from_stream,
    pitch_class_histogram,
    pitch_range,
)

logger = logging.getLogger(__name__)

MIN_PIECES = 20  # a composer joins the classifier with this many training tunes
MAX_TRAIN_PER_COMPOSER = 200  # cap per composer: music21 parsing is the slow part
CV_FOLDS = 5
SAMPLES_PER_COMPOSER = 6  # generated tunes per requested composer
# absolute interval sizes in semitones: unison, step, third, fourth/fifth, sixth/octave, more
INTERVAL_EDGES = (0, 1, 3, 5, 8, 13, 128)
MODES = ("", "m", "dor", "mix", "phr", "lyd", "loc")  # canonical_key's mode spellings
_TONICS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

FEATURE_NAMES: tuple[str, ...] = (
    *(f"pch_{i}" for i in range(12)),
    *(f"pch_from_tonic_{i}" for i in range(12)),
    *(f"interval_{lo}_{hi - 1}" for lo, hi in pairwise(INTERVAL_EDGES)),
    *(f"note_length_{i}" for i in range(12)),
    "average_pitch_interval",
    "average_inter_onset_interval",
    "pitch_range",
    "pitch_mean",
    "pitch_std",
    "voices",
    "notes_per_quarter",
    "notes_per_onset",
    "bar_quarters",
    "compound_meter",
    *(f"mode_{m or 'major'}" for m in MODES),
)


class NoFeatures(ValueError):
    """A tune the classifier cannot read: the message says why."""


def _tonic_pitch_class(key: str) -> int | None:
    name = key_name(key)
    if name[:1] not in _TONICS:
        return None
    shift = {"#": 1, "b": -1}.get(name[1:2], 0)
    return (_TONICS[name[0]] + shift) % 12


def _interval_histogram(notes: NoteArray) -> np.ndarray:
    sizes = [abs(b - a) for a, b in _consecutive_pairs(notes)]
    hist = np.histogram(sizes, bins=INTERVAL_EDGES)[0].astype(float)
    return hist / hist.sum() if hist.sum() else hist


def tune_features(abc: str) -> np.ndarray:
    """The classifier's feature vector of one tune; NoFeatures when it has none."""
    from abcmamba.convert import abc_to_score

    header = parse_header(abc)
    try:
        key = canonical_key(header.get("K") or "none")
    except ValueError:
        key = "none"
    try:
        meter = canonical_meter(header.get("M") or "none")
        bar = meter_length(meter)
    except ValueError:
        meter, bar = "none", None
    try:
        notes = notes_from_stream(abc_to_score(abc))
    except Exception as err:  # music21 and abc2xml raise many types on bad ABC
        raise NoFeatures(f"cannot parse: {type(err).__name__}") from None
    if len(notes) < 2:
        raise NoFeatures("fewer than 2 notes")
    pch = pitch_class_histogram(notes)
    tonic = _tonic_pitch_class(key)
    end = float((notes.onset + notes.duration).max() - notes.onset.min())
    mode = key_name(key)[1:].lstrip("#b") if tonic is not None else None
    vector = np.concatenate(
        [
            pch,
            np.roll(pch, -tonic) if tonic is not None else np.zeros(12),
            _interval_histogram(notes),
            note_length_histogram(notes),
            [
                average_pitch_interval(notes),
                average_inter_onset_interval(notes),
                pitch_range(notes),
                float(notes.pitch.mean()),
                float(notes.pitch.std()),
                float(len(np.unique(notes.voice))),
                len(notes) / end if end > 0 else 0.0,
                len(notes) / len(np.unique(notes.onset)),
                float(bar * 4) if bar is not None else 0.0,
                float(is_compound(meter)),
            ],
            [float(mode == m) for m in MODES],
        ]
    )
    assert vector.shape == (len(FEATURE_NAMES),)
    return vector


def _features_or_reason(abc: str) -> np.ndarray | str:
    try:
        return tune_features(abc)
    except NoFeatures as err:
        return str(err)


def featurize(
    tunes: Sequence[str], desc: str = "composer features", workers: int = 1
) -> tuple[np.ndarray, list[int], dict[int, str]]:
    """Features of many tunes: (X, indices of the tunes in X, {index: why skipped})."""
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(
                tqdm(
                    pool.map(_features_or_reason, tunes, chunksize=4),
                    total=len(tunes),
                    desc=desc,
                    unit="tune",
                )
            )
    else:
        results = [_features_or_reason(t) for t in tqdm(tunes, desc=desc, unit="tune")]
    kept = [i for i, r in enumerate(results) if not isinstance(r, str)]
    skipped = {i: r for i, r in enumerate(results) if isinstance(r, str)}
    for i, reason in skipped.items():
        logger.info("tune %d skipped by the composer classifier: %s", i, reason)
    X = (
        np.stack([results[i] for i in kept])
        if kept
        else np.zeros((0, len(FEATURE_NAMES)))
    )
    return X, kept, skipped


def select_composers(labels: Sequence[str], min_pieces: int = MIN_PIECES) -> list[str]:
    """Composers with at least ``min_pieces`` tunes, most tunes first ('' is no composer)."""
    counts = Counter(label for label in labels if label)
    return [c for c, n in counts.most_common() if n >= min_pieces]


def make_pipeline(seed: int = 0):
    """StandardScaler + LogisticRegression with balanced class weights."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline as sk_pipeline
    from sklearn.preprocessing import StandardScaler

    return sk_pipeline(
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=5000, random_state=seed),
    )


@dataclass
class ComposerClassifier:
    """A fitted pipeline and the composers it tells apart."""

    composers: list[str]
    pipeline: object
    trained_on: dict[str, int] = field(default_factory=dict)  # tunes per composer
    skipped: dict[str, int] = field(default_factory=dict)  # unreadable, by reason

    def predict_features(self, X: np.ndarray) -> list[str]:
        """Composer of each feature row."""
        return [str(c) for c in self.pipeline.predict(X)] if len(X) else []

    def predict(self, tunes: Sequence[str], workers: int = 1) -> list[str | None]:
        """Composer of each tune; None for a tune with no features (logged)."""
        X, kept, _ = featurize(tunes, "classify", workers)
        out: list[str | None] = [None] * len(tunes)
        for i, composer in zip(kept, self.predict_features(X), strict=True):
            out[i] = composer
        return out


def capped_indices(
    labels: Sequence[str], composers: Sequence[str], cap: int, seed: int = 0
) -> list[int]:
    """Indices of the tunes of ``composers``, at most ``cap`` per composer (random, sorted)."""
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for composer in composers:
        mine = [i for i, label in enumerate(labels) if label == composer]
        if cap and len(mine) > cap:
            mine = rng.choice(mine, size=cap, replace=False).tolist()
        picked += mine
    return sorted(picked)


def fit_features(
    X: np.ndarray, y: Sequence[str], composers: Sequence[str], seed: int = 0
) -> ComposerClassifier:
    """Fit the pipeline on feature rows labelled with ``composers``."""
    if len(set(y)) < 2:
        raise ValueError("a composer classifier needs tunes of at least 2 composers")
    pipeline = make_pipeline(seed).fit(X, list(y))
    counts = Counter(y)
    trained_on = {c: counts[c] for c in composers if counts[c]}
    return ComposerClassifier(list(composers), pipeline, trained_on)


def _fit_capped(
    tunes: Sequence[str],
    labels: Sequence[str],
    composers: list[str],
    max_per_composer: int,
    seed: int,
    workers: int,
) -> tuple[ComposerClassifier, np.ndarray, list[str]]:
    picked = capped_indices(labels, composers, max_per_composer, seed)
    X, kept, skipped = featurize([tunes[i] for i in picked], "train features", workers)
    y = [labels[picked[i]] for i in kept]
    classifier = fit_features(X, y, composers, seed)
    classifier.skipped = dict(Counter(skipped.values()))
    return classifier, X, y


def train_classifier(
    tunes: Sequence[str],
    labels: Sequence[str],
    composers: Sequence[str] | None = None,
    min_pieces: int = MIN_PIECES,
    max_per_composer: int = MAX_TRAIN_PER_COMPOSER,
    seed: int = 0,
    workers: int = 1,
) -> ComposerClassifier:
    """Train on the tunes of the composers with ``min_pieces`` tunes (or ``composers``)."""
    composers = list(composers or select_composers(labels, min_pieces))
    return _fit_capped(tunes, labels, composers, max_per_composer, seed, workers)[0]


def accuracy_summary(
    truth: Sequence[str], predicted: Sequence[str | None], composers: Sequence[str]
) -> dict:
    """Accuracy, balanced accuracy, per-composer recall and counts, confusion matrix.

    A tune the classifier could not read (prediction None) counts as wrong.
    """
    from sklearn.metrics import confusion_matrix

    truth = list(truth)
    pred = [p if p is not None else "(unreadable)" for p in predicted]
    per = {}
    for c in composers:
        n = sum(t == c for t in truth)
        hits = sum(t == p == c for t, p in zip(truth, pred, strict=True))
        per[c] = {"count": n, "correct": hits, "recall": hits / n if n else None}
    columns = list(composers) + (["(unreadable)"] if "(unreadable)" in pred else [])
    return {
        "count": len(truth),
        "accuracy": (
            float(np.mean([t == p for t, p in zip(truth, pred, strict=True)]))
            if truth
            else None
        ),
        # mean recall over the composers with held-out tunes
        "balanced_accuracy": (
            float(np.mean([r["recall"] for r in per.values() if r["count"]]))
            if truth
            else None
        ),
        "chance": 1 / len(composers),
        "per_composer": per,
        "confusion": {
            "rows": list(composers),
            "columns": columns,
            "matrix": confusion_matrix(truth, pred, labels=columns)[
                : len(composers)
            ].tolist(),
        },
    }


def cross_validation(
    X: np.ndarray, y: Sequence[str], composers: Sequence[str], folds: int = CV_FOLDS
) -> dict:
    """Stratified k-fold predictions over labelled feature rows, summarised."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = min(folds, min(Counter(y).values()))
    predicted = cross_val_predict(
        make_pipeline(),
        X,
        list(y),
        cv=StratifiedKFold(folds, shuffle=True, random_state=0),
    )
    return dict(accuracy_summary(y, list(predicted), composers), folds=folds)


def conditioning_summary(
    classifier: ComposerClassifier, samples: dict[str, Sequence[str]], workers: int = 1
) -> dict:
    """Per requested composer: samples, how many the classifier read, share it names as asked."""
    out: dict = {"chance": 1 / len(classifier.composers), "per_composer": {}}
    hits = total = 0
    for composer, tunes in samples.items():
        predicted = classifier.predict(list(tunes), workers)
        read = [p for p in predicted if p is not None]
        n_hits = sum(p == composer for p in read)
        out["per_composer"][composer] = {
            "count": len(tunes),
            "classified": len(read),
            "as_requested": n_hits,
            # unreadable samples count as misses
            "share_as_requested": n_hits / len(tunes) if tunes else None,
            "predicted": dict(Counter(p or "(unreadable)" for p in predicted)),
        }
        hits, total = hits + n_hits, total + len(tunes)
    out["count"] = total
    out["share_as_requested"] = hits / total if total else None
    return out


def classifier_section(
    corpus,
    composers: Sequence[str] | None = None,
    min_pieces: int = MIN_PIECES,
    max_per_composer: int = MAX_TRAIN_PER_COMPOSER,
    seed: int = 0,
    workers: int = 1,
) -> tuple[dict, ComposerClassifier]:
    """Train on a corpus's train split; measure on every other split and by cross-validation.

    ``corpus``: a DatasetDict with `abc` and `composer` columns.
    """
    train = corpus["train"]
    labels = list(train["composer"])
    given = bool(composers)
    composers = list(composers or select_composers(labels, min_pieces))
    if len(composers) < 2:
        raise ValueError(
            f"fewer than 2 composers have {min_pieces} training tunes: {composers}"
        )
    classifier, X, y = _fit_capped(
        train["abc"], labels, composers, max_per_composer, seed, workers
    )
    held_splits = [s for s in corpus if s != "train"]
    held_abc: list[str] = []
    held_y: list[str] = []
    for split in held_splits:
        for record in corpus[split]:
            if record["composer"] in composers:
                held_abc.append(record["abc"])
                held_y.append(record["composer"])
    X_held, kept_held, skipped_held = featurize(held_abc, "held-out features", workers)
    predicted: list[str | None] = [None] * len(held_abc)
    for i, c in zip(kept_held, classifier.predict_features(X_held), strict=True):
        predicted[i] = c
    section = {
        "method": "StandardScaler + LogisticRegression(class_weight='balanced') over "
        f"{len(FEATURE_NAMES)} music features",
        "features": list(FEATURE_NAMES),
        "composers": composers,
        "min_pieces": None if given else min_pieces,
        "max_train_per_composer": max_per_composer,
        "trained_on": classifier.trained_on,
        "train_skipped": classifier.skipped,
        "held_out_splits": held_splits,
        "held_out_skipped": dict(Counter(skipped_held.values())),
        "real": accuracy_summary(held_y, predicted, composers),
    }
    all_X = np.concatenate([X, X_held])
    all_y = y + [held_y[i] for i in kept_held]
    if min(Counter(all_y).values()) >= 2:
        section["cross_validation"] = cross_validation(all_X, all_y, composers)
    return section, classifier


def sample_per_composer(
    model,
    tokenizer,
    composers: Sequence[str],
    n: int = SAMPLES_PER_COMPOSER,
    seed: int = 0,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    constrained: bool = True,
    min_new_tokens: int = 0,
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """n samples asked for `C:COMPOSER` per composer; composers the model cannot write, with why."""
    from abcmamba import UserError
    from abcmamba.evaluate.samples import sample_tunes

    samples: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    for i, composer in enumerate(composers):
        try:
            tunes = sample_tunes(
                model,
                tokenizer,
                [{"composer": composer}] * n,
                seed + i,
                max_new_tokens,
                batch_size,
                constrained=constrained,
                min_new_tokens=min_new_tokens,
            )
        except UserError as err:
            logger.warning("no samples for composer %s: %s", composer, err)
            errors[composer] = str(err)
            continue
        samples[composer] = [t.abc for t in tunes]
    return samples, errors

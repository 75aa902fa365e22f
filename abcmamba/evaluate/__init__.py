"""`abcmamba evaluate`: bits per character, validity, conditioning and music metrics.

Measures one or more models against the held-out split of a corpus and
writes to OUT: report.json (everything measured, samples included),
report.md, PNG plots (features.png, overlap.png, bpc_per_source.png,
n_bars.png) and samples/NAME/*.abc (samples/real/ holds the held-out tunes
they are compared with). The metric functions live in the submodules and
are plain functions over note arrays (metrics), ABC text (structure),
tokens (bpc) and analysed tunes (samples); composer holds the classifier of
``--composer-classifier``, which measures conditioning on composer.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from abcmamba import UserError

logger = logging.getLogger(__name__)

PLAGIARISM_BARS = 8  # a shared run of this many bars counts as a copied phrase


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `abcmamba evaluate`."""
    from abcmamba.evaluate.composer import (
        MAX_TRAIN_PER_COMPOSER,
        MIN_PIECES,
        SAMPLES_PER_COMPOSER,
    )

    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="DIR_OR_ID",
        help="model folder, run folder (uses its final/) or Hub id; repeat to compare",
    )
    parser.add_argument(
        "--data", required=True, help="corpus folder written by data_prep"
    )
    parser.add_argument(
        "-n", type=int, default=200, help="samples per model and per mode"
    )
    parser.add_argument("--out", default="reports/evaluate", help="report folder")
    parser.add_argument("--split", default="test", help="held-out split to measure on")
    parser.add_argument(
        "--bpc-tunes",
        type=int,
        default=0,
        help="score only this many tunes for bpc (0: all)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="tunes per forward pass"
    )
    parser.add_argument(
        "--max-length", type=int, default=2048, help="tokens per bpc window"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=512, help="tokens per sample"
    )
    parser.add_argument(
        "--min-new-tokens",
        type=int,
        default=0,
        help="no sample ends before this many new tokens (long pieces)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of sampling")
    parser.add_argument(
        "--sampler",
        choices=("both", "constrained", "unconstrained"),
        default="both",
        help="constrained: the ABC grammar (every tune valid, the default of "
        "`abcmamba generate`); unconstrained: the model's own text; both: each "
        "model is reported twice, the unconstrained one as 'NAME (unconstrained)'",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device; None picks cuda if available, else cpu",
    )
    parser.add_argument(
        "--composer-classifier",
        action="store_true",
        help="train a composer classifier (music features + logistic regression) on "
        "the train split, at most --classifier-max-train tunes per composer; "
        "measure it on the other splits, then on samples asked for each composer",
    )
    parser.add_argument(
        "--classifier-max-train",
        type=int,
        default=MAX_TRAIN_PER_COMPOSER,
        help="training tunes per composer at most (music21 reads a long piece in "
        "seconds: fewer makes the classifier quicker to train)",
    )
    parser.add_argument(
        "--classifier-min-pieces",
        type=int,
        default=MIN_PIECES,
        help="composers with at least this many training tunes join the classifier",
    )
    parser.add_argument(
        "--classifier-composers",
        default=None,
        metavar="A,B,...",
        help="comma-separated composers for the classifier instead of --classifier-min-pieces",
    )
    parser.add_argument(
        "--classifier-samples",
        type=int,
        default=SAMPLES_PER_COMPOSER,
        help="samples per composer classified for composer conditioning",
    )


def _features_of(analyses) -> list[dict]:
    return [a.features for a in analyses if a.features is not None]


def _plagiarism(index, tunes: list[str], training_ids: list[str]) -> dict:
    from abcmamba.evaluate.structure import BarIndex

    assert isinstance(index, BarIndex)
    matches = [index.longest_match(abc) for abc in tunes]
    lengths = [m.length for m in matches]
    worst = max(range(len(matches)), key=lambda i: lengths[i]) if matches else None
    return {
        "count": len(lengths),
        "longest": lengths,
        "longest_mean": float(np.mean(lengths)) if lengths else float("nan"),
        "longest_max": max(lengths) if lengths else 0,
        "share_at_least_8": (
            sum(n >= PLAGIARISM_BARS for n in lengths) / len(lengths)
            if lengths
            else float("nan")
        ),
        "worst_training_tune": (
            training_ids[matches[worst].tune_index]
            if worst is not None and matches[worst].tune_index >= 0
            else None
        ),
    }


def _distances(real_features: list[dict], generated: list[dict]) -> dict:
    """Real-vs-generated distances per feature (empty when no sample parsed)."""
    from abcmamba.evaluate.metrics import FEATURES, inter_set_distances

    out = {}
    for name in FEATURES:
        if not generated:
            out[name] = np.zeros(0)
            continue
        r = np.stack([f[name] for f in real_features])
        g = np.stack([f[name] for f in generated])
        out[name] = inter_set_distances(r, g)
    return out


def _write_samples(report: dict, real_abc: list[str], folder: Path) -> None:
    """One .abc file per tune under samples/NAME/ (and samples/real/), e.g. for `listen`."""
    sets = {"real": {"real": real_abc}}
    sets.update({name: m["samples"] for name, m in report["models"].items()})
    for name, kinds in sets.items():
        target = folder / name.replace("/", "_")
        target.mkdir(parents=True, exist_ok=True)
        for kind, tunes in kinds.items():
            for i, abc in enumerate(tunes, 1):
                (target / f"{kind}-{i:03d}.abc").write_text(abc, encoding="utf-8")


def _composer_classifier(args: argparse.Namespace, corpus):
    """Train and measure the composer classifier on the corpus (report section, classifier)."""
    from abcmamba.evaluate.composer import classifier_section

    if "composer" not in corpus["train"].column_names:
        raise UserError(f"--composer-classifier: {args.data} has no composer column")
    composers = (
        [c.strip() for c in args.classifier_composers.split(",") if c.strip()]
        if args.classifier_composers
        else None
    )
    try:
        section, classifier = classifier_section(
            corpus,
            composers,
            args.classifier_min_pieces,
            args.classifier_max_train,
            seed=args.seed,
        )
    except ValueError as err:
        raise UserError(f"--composer-classifier: {err}") from None
    real = section["real"]
    logger.info(
        "composer classifier: accuracy %.3f, balanced %.3f on %d held-out tunes",
        real["accuracy"] or float("nan"),
        real["balanced_accuracy"] or float("nan"),
        real["count"],
    )
    return section, classifier


def _composer_conditioning(args, entry: dict, classifier, model, tokenizer) -> None:
    """Sample --classifier-samples tunes per composer; the share classified as asked."""
    from abcmamba.evaluate.composer import conditioning_summary, sample_per_composer

    samples, errors = sample_per_composer(
        model,
        tokenizer,
        classifier.composers,
        args.classifier_samples,
        args.seed + 2 * args.n,
        args.max_new_tokens,
        args.batch_size,
        constrained=entry["sampler"] == "constrained",
        min_new_tokens=args.min_new_tokens,
    )
    result = conditioning_summary(classifier, samples)
    result["not_sampled"] = errors
    entry["composer_conditioning"] = result
    entry["samples"]["composer"] = [abc for tunes in samples.values() for abc in tunes]


def evaluate(args: argparse.Namespace) -> dict:
    """Run every measurement for every --model; returns the report and writes it."""
    from abcmamba.evaluate.bpc import bits_per_character
    from abcmamba.evaluate.metrics import (
        FEATURES,
        compare_sets,
        intra_set_distances,
        overlap_area,
    )
    from abcmamba.evaluate.report import write_json, write_markdown, write_plots
    from abcmamba.evaluate.samples import (
        analyse_tunes,
        conditioning_summary,
        conditions_from_records,
        sample_tunes,
        validity_summary,
        voice_summary,
    )
    from abcmamba.evaluate.structure import BarIndex, structure_summary
    from abcmamba.generate.loading import load_model, resolve_model
    from abcmamba.tokenizer import load_corpus

    if args.n < 2:
        raise UserError("-n must be at least 2")
    specs = list(dict.fromkeys(args.model))
    for spec in specs:
        resolve_model(spec)  # fail before any slow work
    corpus = load_corpus(args.data, args.split, "train")
    held_out, train = corpus[args.split], corpus["train"]
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(held_out), size=min(args.n, len(held_out)), replace=False)
    real_records = [held_out[int(i)] for i in sorted(picks)]
    real_abc = [r["abc"] for r in real_records]

    logger.info("indexing %d training tunes by bar n-grams", len(train))
    start = time.perf_counter()
    index = BarIndex(train["abc"])
    train_ids = [
        str(i)
        for i in (train["id"] if "id" in train.column_names else range(len(train)))
    ]
    logger.info("bar index built in %.1f s", time.perf_counter() - start)

    classifier = None
    if args.composer_classifier:
        report_classifier, classifier = _composer_classifier(args, corpus)

    real = analyse_tunes(real_abc, desc="real tunes", midi=False)
    real_features = _features_of(real)
    if len(real_features) < 2:
        raise UserError(
            f"fewer than 2 {args.split} tunes of {args.data} could be parsed"
        )
    real_structure = structure_summary(
        [a.bars for a in real], [a.repeats for a in real]
    )
    real_voices = [f for a in real for f in a.voice_features]
    report: dict = {
        "data": str(args.data),
        "split": args.split,
        "n": args.n,
        "seed": args.seed,
        "real": {
            "validity": validity_summary(real),
            "voices": voice_summary(real),
            "features_computed_on": len(real_features),
            "structure": real_structure,
            "plagiarism": _plagiarism(index, real_abc, train_ids),
        },
        "models": {},
    }
    if classifier is not None:
        report["composer_classifier"] = report_classifier
    distances = {
        "real": {
            name: intra_set_distances(np.stack([f[name] for f in real_features]))
            for name in FEATURES
        }
    }

    bpc_texts = list(held_out["abc"])
    bpc_sources = (
        list(held_out["source"]) if "source" in held_out.column_names else None
    )
    if args.bpc_tunes:
        bpc_texts = bpc_texts[: args.bpc_tunes]
        bpc_sources = bpc_sources[: args.bpc_tunes] if bpc_sources else None
    requests = conditions_from_records(
        real_records, args.n, seed=args.seed, batch_size=args.batch_size
    )

    for spec in specs:
        path = Path(spec)
        # run folders keep the model in final/: name it after the run
        name = (
            (path.parent.name if path.name == "final" else path.name)
            if path.exists()
            else spec
        )
        if name in report["models"]:
            name = spec
        model, tokenizer = load_model(spec, args.device)
        entry: dict = {
            "model": spec,
            "params": sum(p.numel() for p in model.parameters()),
        }
        logger.info("%s: bits per character on %d tunes", name, len(bpc_texts))
        start = time.perf_counter()
        entry["bpc"] = bits_per_character(
            model, tokenizer, bpc_texts, bpc_sources, args.batch_size, args.max_length
        )
        entry["bpc"].pop("per_tune_bits")
        entry["bpc"]["seconds"] = time.perf_counter() - start

        samplers = (
            ["constrained", "unconstrained"]
            if args.sampler == "both"
            else [args.sampler]
        )
        shared = entry
        for sampler in samplers:
            label = name if sampler == "constrained" else f"{name} (unconstrained)"
            entry = dict(shared, sampler=sampler)
            start = time.perf_counter()
            free = sample_tunes(
                model,
                tokenizer,
                [{}] * args.n,
                args.seed,
                args.max_new_tokens,
                args.batch_size,
                constrained=sampler == "constrained",
                min_new_tokens=args.min_new_tokens,
            )
            conditioned = sample_tunes(
                model,
                tokenizer,
                requests,
                args.seed + args.n,
                args.max_new_tokens,
                args.batch_size,
                constrained=sampler == "constrained",
                min_new_tokens=args.min_new_tokens,
            )
            entry["sampling_seconds"] = time.perf_counter() - start
            free_a = analyse_tunes(
                [s.abc for s in free],
                f"{name} samples",
                finished=[s.finished for s in free],
            )
            cond_a = analyse_tunes(
                [s.abc for s in conditioned],
                f"{name} conditioned",
                finished=[s.finished for s in conditioned],
            )
            entry["validity_unconditioned"] = validity_summary(free_a)
            entry["validity_conditioned"] = validity_summary(cond_a)
            entry["conditioning"] = conditioning_summary(requests, cond_a)
            entry["requests"] = requests

            every = free_a + cond_a
            generated = _features_of(every)
            entry["features_computed_on"] = len(generated)
            entry["features_not_computed"] = len(every) - len(generated)
            if generated:
                entry["features"] = compare_sets(real_features, generated)
            else:
                logger.warning(
                    "%s: no sample could be parsed; music features skipped", name
                )
                entry["features"] = {f: {} for f in FEATURES}
            distances[label] = _distances(real_features, generated)
            entry["voices"] = voice_summary(every)
            generated_voices = [f for a in every for f in a.voice_features]
            if len(real_voices) >= 2 and generated_voices:
                entry["features_per_voice"] = compare_sets(
                    real_voices, generated_voices
                )
            structure = structure_summary(
                [a.bars for a in every], [a.repeats for a in every]
            )
            if structure["count"] and real_structure["count"]:
                structure["n_bars_overlap_area"] = overlap_area(
                    real_structure["n_bars"], structure["n_bars"]
                )
            entry["structure"] = structure
            entry["plagiarism"] = _plagiarism(index, [a.abc for a in every], train_ids)
            # how likely the model finds its own samples (the grammar must not
            # push it into text it would not write)
            entry["sample_bpc"] = bits_per_character(
                model,
                tokenizer,
                [a.abc for a in every],
                None,
                args.batch_size,
                args.max_length,
            )["bpc"]
            entry["samples"] = {
                "unconditioned": [s.abc for s in free],
                "conditioned": [s.abc for s in conditioned],
            }
            if classifier is not None:
                _composer_conditioning(args, entry, classifier, model, tokenizer)
            report["models"][label] = entry
        del model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report["plots"] = write_plots(report, distances, out)
    _write_samples(report, real_abc, out / "samples")
    write_json(report, out / "report.json")
    write_markdown(report, out / "report.md")
    return report


def run(args: argparse.Namespace) -> int:
    """Entry point of `abcmamba evaluate`."""
    report = evaluate(args)
    out = Path(args.out)
    logger.info(
        "wrote %s, %s and %d plots",
        out / "report.json",
        out / "report.md",
        len(report["plots"]),
    )
    return 0

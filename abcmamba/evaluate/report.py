"""Write an evaluation as report.json, report.md and PNG plots."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from abcmamba.evaluate.metrics import FEATURES, _kde

logger = logging.getLogger(__name__)


def _jsonable(value):
    """numpy scalars/arrays and NaN to plain JSON values (NaN -> null)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(report: dict, path: Path) -> None:
    """report.json: everything measured, NaN written as null."""
    path.write_text(json.dumps(_jsonable(report), indent=2) + "\n", encoding="utf-8")


DEFINITIONS = [
    "- **bpc**: NLL in bits of every token of each tune, EOS included, given BOS, "
    "summed over the split and divided by its characters (`len(abc)`); "
    "bits/token divides by the same tokens.",
    "- **valid**: passes `abcmamba.abc.validate`, parses with music21 and converts to "
    "MIDI, and the model ended it (EOS) within the token budget; samples are raw "
    "(no retries).",
    "- **conditioning**: requests are header combinations of real test tunes; a field "
    "matches when the sample's header says it and, for key, music21's key estimate "
    "has the requested key signature, for meter, at least 75% of inner bars fill it.",
    "- **features**: per-piece features after Yang & Lerch (2018) over all samples "
    "that parsed into 2 or more notes (the others are counted in report.json).",
    "- **self-similarity**: share of a tune's bars that repeat an earlier bar "
    "(bars compared as text without spaces).",
    "- **copied bars**: longest run of consecutive bars shared with any training "
    "tune; the `real` row is held-out tunes against the training split.",
]


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines + [""]


def write_markdown(report: dict, path: Path) -> None:
    """report.md: the headline tables of report.json for people."""
    models = report["models"]
    names = list(models)
    real = report["real"]
    lines = [
        "# abcmamba evaluation",
        "",
        f"Corpus `{report['data']}`; real reference: {real['validity']['count']} "
        f"{report['split']} tunes; {report['n']} unconditioned and {report['n']} "
        "conditioned samples per model.",
        "",
        "## Language modelling and validity",
        "",
    ]
    rows = []
    for name in names:
        m = models[name]
        bpc = m.get("bpc") or {}
        rows.append(
            [
                name,
                m.get("params"),
                bpc.get("bpc"),
                bpc.get("bits_per_token"),
                m.get("sampler", "unconstrained"),
                m["validity_unconditioned"]["validity_rate"],
                m["validity_conditioned"]["validity_rate"],
                m.get("sample_bpc"),
                m["conditioning"].get("all"),
                m["conditioning"].get("key"),
                m["conditioning"].get("meter"),
                m["conditioning"].get("rhythm"),
            ]
        )
    lines += _table(
        [
            "model",
            "params",
            "bpc",
            "bits/token",
            "sampler",
            "valid (uncond.)",
            "valid (cond.)",
            "bpc of own samples",
            "cond. all",
            "key",
            "meter",
            "rhythm",
        ],
        rows,
    )
    sources = sorted(
        {s for m in models.values() for s in (m.get("bpc") or {}).get("per_source", {})}
    )
    if sources:
        lines += ["### Bits per character per source", ""]
        rows = [
            [s]
            + [
                (models[n].get("bpc") or {}).get("per_source", {}).get(s, {}).get("bpc")
                for n in names
            ]
            for s in sources
        ]
        lines += _table(["source", *names], rows)
    lines += ["## Failure reasons", ""]
    for name in names:
        reasons: dict[str, int] = {}
        for kind in ("validity_unconditioned", "validity_conditioned"):
            for reason, count in models[name][kind]["reasons"].items():
                reasons[reason] = reasons.get(reason, 0) + count
        top = sorted(reasons.items(), key=lambda kv: -kv[1])[:10]
        lines += [
            f"**{name}**: " + (", ".join(f"{r} ({c})" for r, c in top) or "none"),
            "",
        ]
    lines += [
        "## Music features (Yang & Lerch 2018)",
        "",
        "Overlap area (OA, 1 = best) and KL divergence (0 = best) between the "
        "intra-set distances of real tunes and the real-vs-generated distances.",
        "",
    ]
    rows = []
    for feature in FEATURES:
        row = [feature]
        for name in names:
            f = models[name]["features"].get(feature, {})
            row += [f.get("overlap_area"), f.get("kl_divergence")]
        rows.append(row)
    lines += _table(
        ["feature"] + [f"{n} {k}" for n in names for k in ("OA", "KL")], rows
    )
    lines += _voice_lines(report)
    lines += ["## Structure and plagiarism", ""]
    rows = [
        [
            "real",
            real["structure"].get("share_with_repeats"),
            real["structure"].get("self_similarity_mean"),
            real["structure"].get("n_bars_mean"),
            None,
            real["plagiarism"].get("longest_mean"),
            real["plagiarism"].get("longest_max"),
            real["plagiarism"].get("share_at_least_8"),
        ]
    ]
    for name in names:
        s, p = models[name]["structure"], models[name]["plagiarism"]
        rows.append(
            [
                name,
                s.get("share_with_repeats"),
                s.get("self_similarity_mean"),
                s.get("n_bars_mean"),
                s.get("n_bars_overlap_area"),
                p.get("longest_mean"),
                p.get("longest_max"),
                p.get("share_at_least_8"),
            ]
        )
    lines += _table(
        [
            "set",
            "with repeats",
            "bar self-similarity",
            "bars (mean)",
            "bars OA vs real",
            "longest copied bars (mean)",
            "max",
            "share >= 8 bars",
        ],
        rows,
    )
    lines += ["Plots: " + ", ".join(f"`{p}`" for p in report.get("plots", [])), ""]
    if "composer_classifier" in report:
        lines += _composer_lines(report["composer_classifier"], models)
    lines += ["## Definitions", "", *DEFINITIONS, ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def _voice_lines(report: dict) -> list[str]:
    """Voices: multi-voice pieces, every voice converted, per-voice feature overlap."""
    models = report["models"]
    sets = {"real": report["real"].get("voices")} | {
        name: m.get("voices") for name, m in models.items()
    }
    if not any(v and v["multi_voice"] for v in sets.values()):
        return []
    lines = [
        "## Voices",
        "",
        "Multi-voice pieces, how many sound every voice that has notes in the "
        "ABC once converted (the music21 score that MIDI and MusicXML are written "
        "from), and the Yang & Lerch overlap areas computed per voice.",
        "",
    ]
    rows = [
        [
            name,
            v["count"],
            v["multi_voice"],
            v["every_voice_sounds"],
            v["voices_mean"],
            v["voices_compared"],
        ]
        for name, v in sets.items()
        if v
    ]
    lines += _table(
        ["set", "pieces", "multi-voice", "every voice sounds", "voices (mean)",
         "voices compared"],
        rows,
    )  # fmt: skip
    per_voice = [n for n in models if models[n].get("features_per_voice")]
    if per_voice:
        rows = [
            [f]
            + [
                models[n]["features_per_voice"][f].get("overlap_area")
                for n in per_voice
            ]
            for f in FEATURES
        ]
        lines += _table(["feature (per voice)", *[f"{n} OA" for n in per_voice]], rows)
    return lines


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _composer_lines(section: dict, models: dict) -> list[str]:
    """Composer conditioning: the classifier on real tunes first, then on samples."""
    composers = section["composers"]
    trained = ", ".join(f"{c} {n}" for c, n in section["trained_on"].items())
    chosen = (
        f"composers with at least {section['min_pieces']} training tunes"
        if section["min_pieces"]
        else "composers as given"
    )
    lines = [
        "## Composer conditioning",
        "",
        f"Classifier: {section['method']}, trained on the train split ({trained} "
        f"tunes; at most {section['max_train_per_composer']} per composer); "
        f"{chosen}; chance {_pct(1 / len(composers))}.",
        "",
    ]
    measures = [("held-out " + "+".join(section["held_out_splits"]), section["real"])]
    if "cross_validation" in section:
        cv = section["cross_validation"]
        measures.append((f"{cv['folds']}-fold cross-validation, all real", cv))
    rows = []
    for c in composers:
        per = [m["per_composer"][c] for _, m in measures]
        rows.append([c] + [f"{p['correct']}/{p['count']}" for p in per])
    rows.append(["accuracy"] + [_pct(m["accuracy"]) for _, m in measures])
    rows.append(
        ["balanced accuracy"] + [_pct(m["balanced_accuracy"]) for _, m in measures]
    )
    lines += _table(["real tunes"] + [name for name, _ in measures], rows)
    rows = []
    for name, entry in models.items():
        result = entry.get("composer_conditioning", {})
        for c, row in result.get("per_composer", {}).items():
            share = _pct(row["share_as_requested"])
            rows.append([name, c, row["count"], row["classified"], share])
        if result:
            share = _pct(result["share_as_requested"])
            classified = sum(r["classified"] for r in result["per_composer"].values())
            rows.append([f"{name}, all", "", result["count"], classified, share])
    lines += _table(
        ["model", "requested composer", "samples", "classified", "as requested"], rows
    )
    return lines + [
        f"Chance is {_pct(1 / len(composers))}; a sample the classifier cannot read "
        "counts as a miss.",
        "",
    ]


def write_plots(report: dict, distances: dict, out: Path) -> list[str]:
    """Feature distance distributions, overlap bars, bpc per source, bar counts: PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["models"])
    written = []

    features = list(FEATURES)
    cols = 4
    rows = math.ceil(len(features) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, feature in zip(axes.flat, features, strict=False):
        curves = [("real (intra-set)", distances["real"][feature], "k")]
        curves += [(f"{n} vs real", distances[n][feature], None) for n in names]
        values = np.concatenate([c[1] for c in curves if len(c[1])])
        grid = np.linspace(values.min(), values.max() + 1e-9, 300)
        for label, data, color in curves:
            if len(data):
                ax.plot(grid, _kde(data)(grid), label=label, color=color)
        ax.set_title(feature, fontsize=9)
        ax.set_xlabel("distance")
    for ax in list(axes.flat)[len(features) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "features.png", dpi=100)
    plt.close(fig)
    written.append("features.png")

    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(features))
    for i, name in enumerate(names):
        oa = [
            report["models"][name]["features"][f].get("overlap_area", np.nan)
            for f in features
        ]
        ax.bar(x + i * width, oa, width, label=name)
    ax.set_xticks(
        x + width * (len(names) - 1) / 2, features, rotation=30, ha="right", fontsize=8
    )
    ax.set_ylim(0, 1)
    ax.set_ylabel("overlap area with real")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "overlap.png", dpi=100)
    plt.close(fig)
    written.append("overlap.png")

    sources = sorted(
        {
            s
            for n in names
            for s in (report["models"][n].get("bpc") or {}).get("per_source", {})
        }
    )
    if sources:
        fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(sources)), 4))
        x = np.arange(len(sources))
        for i, name in enumerate(names):
            per = (report["models"][name].get("bpc") or {}).get("per_source", {})
            ax.bar(
                x + i * width,
                [per.get(s, {}).get("bpc", np.nan) for s in sources],
                width,
                label=name,
            )
        ax.set_xticks(x + width * (len(names) - 1) / 2, sources)
        ax.set_ylabel("bits per character")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "bpc_per_source.png", dpi=100)
        plt.close(fig)
        written.append("bpc_per_source.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    sets = [("real", report["real"]["structure"].get("n_bars", []))]
    sets += [(n, report["models"][n]["structure"].get("n_bars", [])) for n in names]
    top = max([max(v) for _, v in sets if v] + [1])
    bins = np.arange(0, top + 2) - 0.5 if top < 80 else 40
    for label, values in sets:
        if values:
            ax.hist(values, bins=bins, density=True, histtype="step", label=label)
    ax.set_xlabel("bars per tune")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "n_bars.png", dpi=100)
    plt.close(fig)
    written.append("n_bars.png")
    return written

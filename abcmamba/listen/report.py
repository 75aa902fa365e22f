"""Statistics of a listening test: MOS with confidence intervals, Mann-Whitney U
tests between sources with Holm and Bonferroni correction, Wilcoxon signed-rank
tests on per-participant means (paired: each participant rates every source), and
how often people tell the real tune from the generated one (binomial test against
chance)."""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from abcmamba import UserError

QUESTION_ORDER = ("overall", "musicality", "human_likeness")


def holm(pvalues: list[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order."""
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def bonferroni(pvalues: list[float]) -> list[float]:
    """Bonferroni adjusted p-values."""
    return [min(1.0, p * len(pvalues)) for p in pvalues]


def mean_ci(scores: list[float], confidence: float = 0.95) -> dict:
    """Mean, standard deviation and Student-t confidence interval of the scores."""
    from scipy import stats

    n = len(scores)
    mean = sum(scores) / n
    if n < 2:
        return {"n": n, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    std = math.sqrt(sum((x - mean) ** 2 for x in scores) / (n - 1))
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "ci_low": mean - half,
        "ci_high": mean + half,
    }


def wilcoxon_pairs(
    ratings: list[tuple], question: str, sources: list[str]
) -> list[dict]:
    """Wilcoxon signed-rank test for each pair of sources on one question, over
    the participants who rated both: each gives one pair of mean scores, so
    several ratings by one person are not counted as independent."""
    from scipy import stats

    means: dict[tuple[str, str], list[int]] = defaultdict(list)
    for participant, _sample, source, q, score in ratings:
        if q == question:
            means[participant, source].append(score)
    per = {key: sum(xs) / len(xs) for key, xs in means.items()}
    rows = []
    for a, b in itertools.combinations(sources, 2):
        both = sorted({p for p, s in per if s == a} & {p for p, s in per if s == b})
        if not both:
            continue
        diffs = [per[p, a] - per[p, b] for p in both]
        if any(diffs):
            res = stats.wilcoxon([per[p, a] for p in both], [per[p, b] for p in both])
            w, pvalue = float(res.statistic), float(res.pvalue)
        else:  # no participant told them apart: nothing to rank
            w, pvalue = 0.0, 1.0
        rows.append(
            {
                "question": question,
                "a": a,
                "b": b,
                "n_participants": len(both),
                "mean_diff": sum(diffs) / len(diffs),
                "w": w,
                "p": pvalue,
            }
        )
    return rows


def _load(db: str | Path) -> tuple[list[tuple], list[tuple], dict[str, bool]]:
    path = Path(db)
    if not path.is_file():
        raise UserError(f"--db {db}: no such file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            ratings = conn.execute(
                "SELECT participant, sample_id, source, question, score FROM ratings"
            ).fetchall()
            choices = conn.execute(
                "SELECT participant, model_source, correct FROM choices"
            ).fetchall()
            kinds = dict(
                conn.execute("SELECT DISTINCT source, is_human FROM samples").fetchall()
            )
        finally:
            conn.close()
    except sqlite3.DatabaseError as err:
        raise UserError(f"--db {db}: not a listening-test database ({err})") from err
    return ratings, choices, {s: bool(h) for s, h in kinds.items()}


def make_report(db: str | Path, confidence: float = 0.95) -> dict:
    """All statistics of a results database, as a JSON-ready dict."""
    from scipy import stats

    ratings, choices, is_human = _load(db)
    if not ratings and not choices:
        raise UserError(f"--db {db}: no ratings or choices yet")
    alpha = 1 - confidence
    scores: dict[tuple[str, str], list[int]] = defaultdict(list)
    raters: dict[tuple[str, str], set[str]] = defaultdict(set)
    for participant, _sample, source, question, score in ratings:
        scores[source, question].append(score)
        raters[source, question].add(participant)
    questions = sorted({q for _, q in scores}, key=_question_key)
    sources = sorted({s for s, _ in scores})

    mos = []
    for question in questions:
        for source in sources:
            if (source, question) not in scores:
                continue
            row = {
                "source": source,
                "question": question,
                "human": is_human.get(source, False),
            }
            row.update(mean_ci(scores[source, question], confidence))
            row["n_participants"] = len(raters[source, question])
            mos.append(row)

    tests = []
    for question in questions:
        family = []
        for a, b in itertools.combinations(sources, 2):
            xa, xb = scores.get((a, question)), scores.get((b, question))
            if not xa or not xb:
                continue
            res = stats.mannwhitneyu(xa, xb, alternative="two-sided")
            u = float(res.statistic)
            family.append(
                {
                    "question": question,
                    "a": a,
                    "b": b,
                    "n_a": len(xa),
                    "n_b": len(xb),
                    "u": u,
                    # Rank-biserial correlation: +1 when every a outranks every b.
                    "rank_biserial": 2 * u / (len(xa) * len(xb)) - 1,
                    "p": float(res.pvalue),
                }
            )
        pvals = [t["p"] for t in family]
        for t, p_holm, p_bonf in zip(
            family, holm(pvals), bonferroni(pvals), strict=True
        ):
            t.update(p_holm=p_holm, p_bonferroni=p_bonf, significant=p_holm < alpha)
        tests.extend(family)

    paired = []
    for question in questions:
        family = wilcoxon_pairs(ratings, question, sources)
        for t, p_holm in zip(family, holm([t["p"] for t in family]), strict=True):
            t.update(p_holm=p_holm, significant=p_holm < alpha)
        paired.extend(family)

    by_model: dict[str, list[int]] = defaultdict(list)
    for _participant, model_source, correct in choices:
        by_model[model_source].append(int(correct))
    identification = []
    groups = sorted(by_model.items())
    if len(groups) > 1:
        groups.append(("all", [c for _, cs in groups for c in cs]))
    for model, correct in groups:
        k, n = sum(correct), len(correct)
        res = stats.binomtest(k, n, p=0.5, alternative="two-sided")
        ci = res.proportion_ci(confidence_level=confidence, method="exact")
        identification.append(
            {
                "model": model,
                "n": n,
                "correct": k,
                "rate": k / n,
                "ci_low": float(ci.low),
                "ci_high": float(ci.high),
                "p": float(res.pvalue),
                "significant": float(res.pvalue) < alpha,
            }
        )

    return {
        "db": str(db),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "confidence": confidence,
        "n_participants": len({r[0] for r in ratings} | {c[0] for c in choices}),
        "n_ratings": len(ratings),
        "n_choices": len(choices),
        "sources": {s: is_human.get(s, False) for s in sources},
        "mos": mos,
        "mann_whitney": tests,
        "wilcoxon": paired,
        "identification": identification,
    }


def _question_key(q: str) -> tuple[int, str]:
    return (QUESTION_ORDER.index(q) if q in QUESTION_ORDER else len(QUESTION_ORDER), q)


def write_report(report: dict, out: str | Path) -> list[Path]:
    """Write report.json, report.md, mos.png and identification.png into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plots = _plots(report, out)
    paths[1].write_text(_markdown(report, plots), encoding="utf-8")
    return paths + plots


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _fmt_p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def _table(header: str, align: str, rows: list[list[str]]) -> list[str]:
    """The lines of a Markdown table; ALIGN has "l" or "r" for each column."""
    lines = [header, "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _markdown(report: dict, plots: list[Path]) -> str:
    level = round(report["confidence"] * 100)
    lines = [
        "# Listening test report",
        "",
        f"{report['n_participants']} participants, {report['n_ratings']} ratings, "
        f"{report['n_choices']} forced choices (database `{report['db']}`).",
        "",
        f"## Mean opinion score (1-5) with {level}% t-interval",
        "",
    ]
    lines += _table(
        "| question | source | n | raters | MOS | std | CI |",
        "llrrrrl",
        [
            [r["question"], r["source"] + (" (human)" if r["human"] else ""),
             str(r["n"]), str(r["n_participants"]), _fmt(r["mean"]), _fmt(r["std"]),
             f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"]
            for r in report["mos"]
        ],
    )  # fmt: skip
    lines += [
        "",
        "## Mann-Whitney U between sources (two-sided)",
        "",
        "Holm correction within each question (* marks p Holm below "
        f"{1 - report['confidence']:.2g}); Bonferroni for comparison. Rank-biserial r > 0 "
        "means the first source is rated higher. The test takes every rating as "
        "independent; several ratings per participant make p-values somewhat optimistic "
        "(the paired test below does not).",
        "",
    ]
    lines += _table(
        "| question | a | b | n_a | n_b | U | r | p | p Holm | p Bonferroni |",
        "lllrrrrrrr",
        [
            [t["question"], t["a"], t["b"], str(t["n_a"]), str(t["n_b"]),
             f"{t['u']:.1f}", f"{t['rank_biserial']:+.2f}", _fmt_p(t["p"]),
             _p_holm(t), _fmt_p(t["p_bonferroni"])]
            for t in report["mann_whitney"]
        ],
    )  # fmt: skip
    lines += [
        "",
        "## Wilcoxon signed-rank on per-participant means (paired, two-sided)",
        "",
        "Each participant who rated both sources gives one pair: their mean score "
        "for a and for b. Holm correction within each question (* marks p Holm below "
        f"{1 - report['confidence']:.2g}). Mean diff > 0 means a is rated higher.",
        "",
    ]
    lines += _table(
        "| question | a | b | participants | mean diff | W | p | p Holm |",
        "lllrrrrr",
        [
            [t["question"], t["a"], t["b"], str(t["n_participants"]),
             f"{t['mean_diff']:+.2f}", f"{t['w']:.1f}", _fmt_p(t["p"]), _p_holm(t)]
            for t in report["wilcoxon"]
        ],
    )  # fmt: skip
    lines += [
        "",
        "## Which is human? Identification of the real tune",
        "",
        "Rate of choosing the real tune over the generated one; 0.5 is chance, i.e. the "
        "model cannot be told from people. Exact binomial test against 0.5.",
        "",
    ]
    lines += _table(
        f"| model | n | correct | rate | {level}% CI | p |",
        "lrrrlr",
        [
            [r["model"], str(r["n"]), str(r["correct"]), _fmt(r["rate"]),
             f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]", _fmt_p(r["p"])]
            for r in report["identification"]
        ],
    )  # fmt: skip
    lines.append("")
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _p_holm(test: dict) -> str:
    """p Holm, with * where the test is significant."""
    return _fmt_p(test["p_holm"]) + (" *" if test["significant"] else "")


def _plots(report: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if report["mos"]:
        questions = sorted({r["question"] for r in report["mos"]}, key=_question_key)
        sources = sorted({r["source"] for r in report["mos"]})
        rows = {(r["source"], r["question"]): r for r in report["mos"]}
        fig, ax = plt.subplots(
            figsize=(1.6 + 1.2 * len(questions) * len(sources) / 2, 4)
        )
        width = 0.8 / len(sources)
        for j, source in enumerate(sources):
            xs, ys, errs = [], [], [[], []]
            for i, q in enumerate(questions):
                r = rows.get((source, q))
                if r is None:
                    continue
                xs.append(i + (j - (len(sources) - 1) / 2) * width)
                ys.append(r["mean"])
                errs[0].append(0 if r["ci_low"] is None else r["mean"] - r["ci_low"])
                errs[1].append(0 if r["ci_high"] is None else r["ci_high"] - r["mean"])
            ax.bar(xs, ys, width, yerr=errs, capsize=3, label=source)
        ax.set_xticks(range(len(questions)), [q.replace("_", " ") for q in questions])
        ax.set_ylim(0, 6)  # room for the legend above the bars
        ax.set_yticks(range(6))
        ax.set_ylabel("MOS (1-5)")
        ax.set_title(f"Mean opinion score, {round(report['confidence'] * 100)}% CI")
        ax.legend(fontsize="small", ncols=min(4, len(sources)))
        fig.tight_layout()
        paths.append(out / "mos.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    if report["identification"]:
        rows = report["identification"]
        fig, ax = plt.subplots(figsize=(1.5 + 1.0 * len(rows), 3.5))
        ys = [r["rate"] for r in rows]
        errs = [
            [r["rate"] - r["ci_low"] for r in rows],
            [r["ci_high"] - r["rate"] for r in rows],
        ]
        ax.bar(range(len(rows)), ys, 0.6, yerr=errs, capsize=4, color="#2a5db0")
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_xticks(range(len(rows)), [r["model"] for r in rows])
        ax.set_ylim(0, 1)
        ax.set_ylabel("real tune identified")
        ax.set_title("Which is human?")
        ax.legend(fontsize="small")
        fig.tight_layout()
        paths.append(out / "identification.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths

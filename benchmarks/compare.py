"""Mamba against the Transformer and xLSTM baselines of the same size, with error bars.

    python benchmarks/compare.py --preset small --data data/classical --train \\
        --lrs 1e-3,2e-3,4e-3 --seeds 0,1,2 --train-args "--max-steps 150"
    python benchmarks/compare.py --run runs/mamba-small --run runs/llama-small

With `--train`, every architecture is trained at each learning rate of
`--lrs` with the first seed (the sweep); the learning rate with the lowest
validation bpc is each architecture's own, and it is trained again with the
other seeds. Runs are child processes of this script (their peak memory is
recorded) writing to RUNS_DIR/compare-PRESET/ARCH-lrLR-sSEED; a run that is
already there is reused. `--run` compares given run folders instead, grouped
by the architecture their run record names.

Every final run is evaluated together by `abcmamba evaluate` (same test
tunes, same requests, unconstrained sampling: the architecture's own
validity), decode speed is timed at fixed contexts, and each metric is
reported as mean ± 95% confidence half-width (Student t over seeds or
repeats) with Welch's t-test of Mamba against each baseline. Writes
OUT/compare.md (also printed) and OUT/compare.json. Run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from abcmamba import RUN_FILE, UserError  # noqa: E402

logger = logging.getLogger("compare")

ARCHS = ("mamba", "llama", "xlstm")
DEFAULT_CONTEXTS = (256, 2048, 8192)
DEFAULT_NEW_TOKENS = 64
PEAK_FILE = "compare_peak_memory.json"

# Runs train.py's main in this child process and reports its peak memory.
_CHILD = """
import json, resource, runpy, sys
sys.argv = ["train.py", *json.loads(sys.argv[1])]
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit_:
    code = exit_.code or 0
peak = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
try:
    import torch
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
except ImportError:
    pass
print("ABCMAMBA_PEAK " + json.dumps(peak))
sys.exit(code)
"""


@dataclass
class Run:
    """One training run: its architecture, learning rate (None: the preset's) and seed."""

    arch: str
    lr: float | None
    seed: int
    path: Path
    record: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def final(self) -> Path:
        return self.path / "final"

    def load_record(self) -> None:
        path = self.final / RUN_FILE
        self.record = json.loads(path.read_text()) if path.is_file() else {}

    @property
    def metrics(self) -> dict:
        return self.record.get("metrics", {})


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Flags of the comparison."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", default="small", help="train.py preset of every run"
    )
    parser.add_argument(
        "--archs",
        default=",".join(ARCHS),
        help="architectures to train, comma-separated; the first is the one "
        "tested against the others",
    )
    parser.add_argument(
        "--data", default="data/corpus", help="corpus (DatasetDict folder)"
    )
    parser.add_argument("--runs-dir", default="runs", help="where train.py writes runs")
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        help="existing run folders to compare instead of training (repeatable)",
    )
    parser.add_argument(
        "--train", action="store_true", help="train runs that are missing"
    )
    parser.add_argument(
        "--lrs",
        default="",
        help="learning rates to sweep per architecture with the first seed, "
        "comma-separated (default: the preset's only)",
    )
    parser.add_argument(
        "--seeds", default="0", help="seeds of the final runs, comma-separated"
    )
    parser.add_argument(
        "--train-args",
        default="",
        help="extra train.py flags of every run, e.g. '--max-steps 150'",
    )
    parser.add_argument("-n", type=int, default=50, help="samples per model and mode")
    parser.add_argument(
        "--bpc-tunes", type=int, default=0, help="test tunes for bpc (0: all)"
    )
    parser.add_argument(
        "--composer-classifier",
        action="store_true",
        help="also measure composer conditioning (abcmamba evaluate "
        "--composer-classifier; the corpus needs composers)",
    )
    parser.add_argument(
        "--classifier-max-train",
        type=int,
        default=200,
        help="composer classifier: training tunes per composer at most",
    )
    parser.add_argument(
        "--classifier-samples",
        type=int,
        default=6,
        help="samples per composer with --composer-classifier",
    )
    parser.add_argument(
        "--contexts",
        default=",".join(map(str, DEFAULT_CONTEXTS)),
        help="generation contexts in tokens",
    )
    parser.add_argument(
        "--new-tokens", type=int, default=DEFAULT_NEW_TOKENS, help="decode steps"
    )
    parser.add_argument(
        "--speed-repeats",
        type=int,
        default=3,
        help="decode timings per architecture and context (for the interval)",
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=512, help="tokens per sample"
    )
    parser.add_argument("--out", default="reports/compare", help="output folder")
    parser.add_argument(
        "--reuse-evaluation",
        action="store_true",
        help="read OUT/evaluate/report.json of an earlier run of the same runs "
        "instead of evaluating again (to re-time decoding only)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: default)"
    )
    return parser.parse_args(argv)


def train_run(run: Run, args: argparse.Namespace) -> None:
    """Train one run in a child process; its peak memory goes beside the run."""
    flags = ["--arch", run.arch, "--preset", args.preset, "--data", args.data]
    flags += ["--out", str(run.path), "--seed", str(run.seed)]
    if run.lr is not None:
        flags += ["--lr", repr(run.lr)]
    flags += args.train_args.split()
    logger.info("training %s: train.py %s", run.name, " ".join(flags))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(flags)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    peak = {}
    for line in proc.stdout.splitlines():
        if line.startswith("ABCMAMBA_PEAK "):
            peak = json.loads(line.split(" ", 1)[1])
    if proc.returncode != 0:
        raise UserError(
            f"training {run.name} failed (exit {proc.returncode}); see the log above"
        )
    (run.path / PEAK_FILE).write_text(json.dumps(peak, indent=2) + "\n")


def ensure_trained(run: Run, args: argparse.Namespace) -> None:
    """Train `run` unless its final model is there; load its record."""
    if not (run.final / "config.json").is_file():
        if not args.train:
            raise UserError(f"no trained run in {run.path} (add --train to train it)")
        train_run(run, args)
    run.load_record()


def given_runs(folders: list[str]) -> list[Run]:
    """Runs from --run folders; architecture and seed from their run records."""
    runs = []
    for folder in folders:
        path = Path(folder)
        if path.name == "final":
            path = path.parent
        run = Run(arch=path.name.split("-")[0], lr=None, seed=0, path=path)
        if not (run.final / "config.json").is_file():
            raise UserError(f"no trained run in {path} (no final/config.json)")
        run.load_record()
        config = run.record.get("train_config", {})
        run.arch = run.record.get("arch") or run.arch
        run.lr, run.seed = config.get("lr"), config.get("seed", 0)
        runs.append(run)
    return runs


def sweep_and_seeds(args: argparse.Namespace) -> tuple[list[Run], dict]:
    """Train the sweep, pick each architecture's learning rate, train the other seeds.

    Returns the final runs and the sweep ({arch: {lr: val bpc}, arch_best: lr}).
    """
    archs = [a for a in args.archs.split(",") if a]
    unknown = [a for a in archs if a not in ARCHS + ("mamba2",)]
    if unknown:
        raise UserError(f"unknown architecture(s) {unknown}; known: {ARCHS}")
    lrs: list[float | None] = _floats(args.lrs) or [None]
    seeds = _ints(args.seeds)
    if not seeds:
        raise UserError("--seeds names no seed")
    base = Path(args.runs_dir) / f"compare-{args.preset}"

    def run(arch: str, lr: float | None, seed: int) -> Run:
        tag = "default" if lr is None else f"{lr:g}"
        return Run(arch, lr, seed, base / f"{arch}-lr{tag}-s{seed}")

    sweep: dict = {"val_bpc": {}, "best_lr": {}}
    finals = []
    for arch in archs:
        scores = {}
        for lr in lrs:
            candidate = run(arch, lr, seeds[0])
            ensure_trained(candidate, args)
            scores[lr] = candidate.metrics.get("val_bpc", float("inf"))
        best = min(scores, key=scores.get)
        sweep["val_bpc"][arch] = {str(lr): bpc for lr, bpc in scores.items()}
        sweep["best_lr"][arch] = best
        if len(lrs) > 1:
            logger.info(
                "%s: best learning rate %s (val bpc %.4f)", arch, best, scores[best]
            )
        for seed in seeds:
            final = run(arch, best, seed)
            ensure_trained(final, args)
            finals.append(final)
    return finals, sweep


class _StepClock:
    """A logits processor that only notes when each generation step reaches it."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids, scores):
        self.times.append(time.perf_counter())
        return scores


def generation_speed(
    model, tokenizer, texts: list[str], context: int, new_tokens: int
) -> dict:
    """Decode tokens/s after a `context`-token prompt (batch 1, greedy, the model's cache).

    One `generate` call; a logits processor notes when each step's logits
    arrive, so the prefill (before the first) is timed apart from the decode
    steps (between the first and the last), whatever cache the architecture uses.
    """
    import torch

    ids: list[int] = []
    for text in texts:  # real ABC, tune after tune, as long as needed
        ids += tokenizer(text)["input_ids"]
        if len(ids) >= context:
            break
    if len(ids) < context:
        ids = (ids * (context // max(1, len(ids)) + 1))[:context]
    prompt = torch.tensor([ids[:context]], device=next(model.parameters()).device)

    def timed(count: int) -> tuple[float, float]:
        clock = _StepClock()
        start = time.perf_counter()
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=count,
            min_new_tokens=count,
            pad_token_id=tokenizer.pad_token_id,
            logits_processor=[clock],
        )
        assert out.shape[1] == prompt.shape[1] + count
        return clock.times[0] - start, clock.times[-1] - clock.times[0]

    with torch.inference_mode():
        timed(2)  # warm-up: lazy initialisation, kernel selection
        prefill, decode = timed(1 + new_tokens)
    return {
        "context": context,
        "prefill_s": prefill,
        "new_tokens": new_tokens,
        "decode_tokens_per_s": new_tokens / max(decode, 1e-9),
    }


def mean_ci(values: list[float]) -> dict:
    """Mean, 95% confidence half-width (Student t; None under 2 values) and the values."""
    import numpy as np
    from scipy import stats

    values = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not values:
        return {"mean": None, "ci95": None, "n": 0, "values": []}
    mean = float(np.mean(values))
    half = None
    if len(values) >= 2:
        sem = float(np.std(values, ddof=1)) / np.sqrt(len(values))
        half = float(stats.t.ppf(0.975, len(values) - 1) * sem)
    return {"mean": mean, "ci95": half, "n": len(values), "values": values}


def welch(a: dict, b: dict) -> float | None:
    """Two-sided p-value of Welch's t-test between two mean_ci summaries (None if n < 2)."""
    import numpy as np
    from scipy import stats

    if a["n"] < 2 or b["n"] < 2:
        return None
    if np.std(a["values"]) == 0 and np.std(b["values"]) == 0:
        return 1.0 if a["mean"] == b["mean"] else 0.0
    return float(stats.ttest_ind(a["values"], b["values"], equal_var=False).pvalue)


def run_metrics(run: Run, entry: dict) -> dict:
    """The per-run numbers of one evaluated run."""
    import numpy as np

    peak_path = run.path / PEAK_FILE
    peak = json.loads(peak_path.read_text()) if peak_path.is_file() else {}
    overlap = {f: v.get("overlap_area") for f, v in entry["features"].items()}
    finite = [v for v in overlap.values() if v is not None and np.isfinite(v)]
    composer = entry.get("composer_conditioning") or {}
    return {
        "training tokens/s": run.metrics.get("tokens_per_s"),
        "peak memory (training, MB)": peak.get("cuda_mb", peak.get("rss_mb")),
        "validation bpc (train.py)": run.metrics.get("val_bpc"),
        "test bpc": entry["bpc"]["bpc"],
        "validity (unconditioned)": entry["validity_unconditioned"]["validity_rate"],
        "validity (conditioned)": entry["validity_conditioned"]["validity_rate"],
        "conditioning accuracy": entry["conditioning"].get("all"),
        "composer as requested": composer.get("share_as_requested"),
        "mean overlap area": float(np.mean(finite)) if finite else None,
        **{f"overlap: {f}": v for f, v in overlap.items()},
    }


def _cell(summary: dict, spec: str) -> str:
    if summary["mean"] is None:
        return "–"
    text = format(summary["mean"], spec)
    if summary["ci95"] is not None:
        text += " ± " + format(summary["ci95"], spec)
    return text


def _spec(metric: str) -> str:
    return ",.0f" if ("tokens/s" in metric or "MB" in metric) else ".3f"


def markdown(result: dict) -> str:
    """The comparison table, the significance tests and the sweep."""
    archs = list(result["per_arch"])
    lines = [f"Device: {result['device']}", ""]
    head = ["", *archs]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    first = result["per_arch"][archs[0]]
    lines.append(
        "| runs (seeds) | "
        + " | ".join(
            ", ".join(str(r["seed"]) for r in result["per_arch"][a]["runs"])
            for a in archs
        )
        + " |"
    )
    lines.append(
        "| learning rate | "
        + " | ".join(
            (
                f"{result['per_arch'][a]['lr']:g}"
                if result["per_arch"][a]["lr"] is not None
                else "preset"
            )
            for a in archs
        )
        + " |"
    )
    lines.append(
        "| parameters | "
        + " | ".join(f"{result['per_arch'][a]['params']:,}" for a in archs)
        + " |"
    )
    for metric in first["metrics"]:
        cells = [
            _cell(result["per_arch"][a]["metrics"][metric], _spec(metric))
            for a in archs
        ]
        if all(c == "–" for c in cells):
            continue
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Mean ± 95% confidence half-width over runs (decode: over "
        f"{result['speed_repeats']} timings of the first seed's model)."
    )
    tests = result["tests"]
    if tests:
        lines += ["", f"Welch's t-test, {archs[0]} against each baseline:", ""]
        others = [a for a in archs if a != archs[0]]
        head = ["", *[f"{archs[0]} − {o}" for o in others]]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for metric in first["metrics"]:
            cells = []
            for other in others:
                test = tests.get(other, {}).get(metric)
                if not test or test["p"] is None:
                    cells.append("–")
                    continue
                mark = " *" if test["p"] < 0.05 else ""
                cells.append(f"{test['difference']:+.3g} (p={test['p']:.3f}){mark}")
            if any(c != "–" for c in cells):
                lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("* p < 0.05: the difference is significant at the 5% level.")
    sweep = result.get("sweep") or {}
    if sweep.get("val_bpc") and any(len(v) > 1 for v in sweep["val_bpc"].values()):
        lrs = list(next(iter(sweep["val_bpc"].values())))
        lines += ["", "Learning-rate sweep, validation bpc (first seed):", ""]
        head = ["lr", *sweep["val_bpc"]]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for lr in lrs:
            cells = []
            for arch, scores in sweep["val_bpc"].items():
                text = _cell(mean_ci([scores.get(lr)]), ".4f")
                if str(sweep["best_lr"][arch]) == lr:
                    text = f"**{text}**"
                cells.append(text)
            lines.append(f"| {lr} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Train or load the runs, evaluate them together, print the markdown table."""
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    try:
        return _compare(args)
    except UserError as err:
        print(f"compare.py: error: {err}", file=sys.stderr)
        return 2


def _compare(args: argparse.Namespace) -> int:
    import torch

    from abcmamba.evaluate import evaluate
    from abcmamba.generate import load_model
    from abcmamba.tokenizer import load_corpus

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    contexts = _ints(args.contexts)
    corpus = load_corpus(args.data, "test", "train")
    if args.run:
        runs, sweep = given_runs(args.run), {}
    else:
        runs, sweep = sweep_and_seeds(args)

    eval_args = argparse.Namespace(
        model=[str(r.final) for r in runs],
        data=args.data,
        n=args.n,
        out=str(out / "evaluate"),
        split="test",
        bpc_tunes=args.bpc_tunes,
        batch_size=8,
        max_length=2048,
        max_new_tokens=args.max_new_tokens,
        min_new_tokens=0,
        seed=0,
        device=None,
        # the architectures' own validity; the grammar would make every one valid
        sampler="unconstrained",
        composer_classifier=args.composer_classifier,
        classifier_min_pieces=20,
        classifier_composers=None,
        classifier_samples=args.classifier_samples,
        classifier_max_train=args.classifier_max_train,
    )
    saved = out / "evaluate" / "report.json"
    if args.reuse_evaluation:
        if not saved.is_file():
            raise UserError(f"--reuse-evaluation: no {saved}")
        report = json.loads(saved.read_text())
        models = [m["model"] for m in report["models"].values()]
        if models != eval_args.model:
            raise UserError(f"--reuse-evaluation: {saved} evaluated other runs")
    else:
        report = evaluate(eval_args)
    entries = list(report["models"].values())
    texts = list(corpus["test"]["abc"])

    per_arch: dict = {}
    for run, entry in zip(runs, entries, strict=True):
        group = per_arch.setdefault(
            run.arch, {"lr": run.lr, "params": entry["params"], "runs": []}
        )
        group["runs"].append(
            {"name": run.name, "seed": run.seed, "metrics": run_metrics(run, entry)}
        )

    for arch, group in per_arch.items():
        first = next(r for r in runs if r.arch == arch)
        model, tokenizer = load_model(str(first.final))
        speeds = {c: [] for c in contexts}
        for context in contexts:
            logger.info("%s: decode speed at %d tokens of context", arch, context)
            for _ in range(args.speed_repeats):
                speeds[context].append(
                    generation_speed(model, tokenizer, texts, context, args.new_tokens)
                )
        del model
        metrics = {
            name: mean_ci([r["metrics"][name] for r in group["runs"]])
            for name in group["runs"][0]["metrics"]
        }
        for context, timings in speeds.items():
            metrics[f"decode tokens/s at {context:,} context"] = mean_ci(
                [t["decode_tokens_per_s"] for t in timings]
            )
            metrics[f"prefill seconds at {context:,}"] = mean_ci(
                [t["prefill_s"] for t in timings]
            )
        group["metrics"] = metrics

    archs = list(per_arch)
    tests: dict = {}
    for other in archs[1:]:
        tests[other] = {
            metric: {
                "difference": (summary["mean"] or 0.0)
                - (per_arch[other]["metrics"][metric]["mean"] or 0.0),
                "p": welch(summary, per_arch[other]["metrics"][metric]),
            }
            for metric, summary in per_arch[archs[0]]["metrics"].items()
            if summary["mean"] is not None
            and per_arch[other]["metrics"][metric]["mean"] is not None
        }

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    device += f", {torch.get_num_threads()} threads, torch {torch.__version__}"
    # timings taken while other processes use the cores are not comparable
    device += (
        f", load average {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    result = {
        "device": device,
        "speed_repeats": args.speed_repeats,
        "per_arch": per_arch,
        "tests": tests,
        "sweep": {
            "val_bpc": sweep.get("val_bpc", {}),
            "best_lr": {a: str(lr) for a, lr in sweep.get("best_lr", {}).items()},
        },
    }
    table = markdown(result)
    (out / "compare.md").write_text(table)
    (out / "compare.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Mamba against the Transformer and xLSTM baselines of the same preset, side by side.

    python benchmarks/compare.py --preset small --data data/corpus [--train]
    python benchmarks/compare.py --run runs/mamba-small --run runs/llama-small \\
        --run runs/xlstm-small

For each architecture it uses the run folder train.py writes
(`runs/ARCH-PRESET`, or the given `--run` folders); with `--train` a missing
run is trained first, in a child process whose peak memory is recorded.
Then it evaluates all runs together with `abcmamba evaluate` (same test
tunes, same requests) and times generation at fixed context lengths.
Writes OUT/compare.md (also printed) and OUT/compare.json. Run by hand,
never in CI.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from abcmamba import RUN_FILE, UserError  # noqa: E402

logger = logging.getLogger("compare")

ARCHS = ("mamba", "llama", "xlstm")
DEFAULT_CONTEXTS = (256, 2048)
DEFAULT_NEW_TOKENS = 64

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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Flags of the comparison."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", default="small", help="train.py preset of every run"
    )
    parser.add_argument(
        "--data", default="data/corpus", help="corpus (DatasetDict folder)"
    )
    parser.add_argument("--runs-dir", default="runs", help="where train.py writes runs")
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        help="existing run folders (instead of ARCH-PRESET)",
    )
    parser.add_argument(
        "--train", action="store_true", help="train runs that are missing"
    )
    parser.add_argument(
        "--train-args", default="", help="extra train.py flags, e.g. '--max-minutes 20'"
    )
    parser.add_argument("-n", type=int, default=50, help="samples per model and mode")
    parser.add_argument(
        "--bpc-tunes", type=int, default=0, help="test tunes for bpc (0: all)"
    )
    parser.add_argument(
        "--contexts",
        default=",".join(map(str, DEFAULT_CONTEXTS)),
        help="generation contexts",
    )
    parser.add_argument(
        "--new-tokens", type=int, default=DEFAULT_NEW_TOKENS, help="decode steps"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=512, help="tokens per sample"
    )
    parser.add_argument("--out", default="reports/compare", help="output folder")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: default)"
    )
    return parser.parse_args(argv)


def train_run(arch: str, args: argparse.Namespace, run_dir: Path) -> dict:
    """Train one run in a child process; returns its peak memory."""
    flags = [
        "--arch",
        arch,
        "--preset",
        args.preset,
        "--data",
        args.data,
        "--out",
        str(run_dir),
    ]
    flags += args.train_args.split()
    logger.info("training %s: train.py %s", arch, " ".join(flags))
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
            f"training {arch} failed (exit {proc.returncode}); see the log above"
        )
    return peak


def find_runs(args: argparse.Namespace, out: Path) -> list[tuple[str, Path]]:
    """(name, run folder) of each model to compare, training missing ones with --train."""
    if args.run:
        runs = [(Path(r).name, Path(r)) for r in args.run]
    else:
        runs = [
            (f"{a}-{args.preset}", Path(args.runs_dir) / f"{a}-{args.preset}")
            for a in ARCHS
        ]
    for name, run_dir in runs:
        if (run_dir / "final" / "config.json").is_file():
            continue
        if not args.train:
            raise UserError(f"no trained run in {run_dir} (add --train to train it)")
        arch = name.split("-")[0]
        if arch not in ARCHS + ("mamba2",):
            raise UserError(f"cannot tell the architecture of run {name} to train it")
        peak = train_run(arch, args, run_dir)
        (out / f"train_{name}.json").write_text(json.dumps(peak, indent=2) + "\n")
    return runs


def generation_speed(
    model, tokenizer, texts: list[str], context: int, new_tokens: int
) -> dict:
    """Decode tokens/s after a `context`-token prompt (batch 1, greedy, the model's cache).

    Timed as the difference between generating 1 + new_tokens tokens and 1
    token from the same prompt (best of two each), so prefill cancels out
    whatever cache mechanism the architecture uses.
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

    def timed(count: int) -> float:
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            out = model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                do_sample=False,
                max_new_tokens=count,
                min_new_tokens=count,
                pad_token_id=tokenizer.pad_token_id,
            )
            best = min(best, time.perf_counter() - start)
            assert out.shape[1] == prompt.shape[1] + count
        return best

    with torch.inference_mode():
        timed(2)  # warm-up: lazy initialisation, kernel selection
        first = timed(1)
        full = timed(1 + new_tokens)
    return {
        "context": context,
        "prefill_s": first,
        "new_tokens": new_tokens,
        "decode_tokens_per_s": new_tokens / max(full - first, 1e-9),
    }


def _fmt(value, spec: str = ".3f") -> str:
    if value is None:
        return "–"
    return format(value, spec) if isinstance(value, float) else str(value)


def markdown(
    rows: list[dict], contexts: list[int], features: list[str], device: str
) -> str:
    """The side-by-side table (and the per-feature overlap areas)."""
    head = ["", *[r["name"] for r in rows]]
    lines = [
        f"Device: {device}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * len(head),
    ]

    def row(label: str, key, spec: str = ".3f") -> None:
        cells = [_fmt(key(r), spec) for r in rows]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("architecture", lambda r: r["arch"])
    row("parameters", lambda r: r["params"], ",")
    row("training tokens/s", lambda r: r["train_tokens_per_s"], ",.0f")
    row("peak memory (training, MB)", lambda r: r["peak_memory_mb"], ",.0f")
    row("validation bpc (train.py)", lambda r: r["val_bpc"])
    row("test bpc", lambda r: r["test_bpc"])
    row("validity (unconditioned)", lambda r: r["validity_unconditioned"])
    row("validity (conditioned)", lambda r: r["validity_conditioned"])
    row("conditioning accuracy", lambda r: r["conditioning_all"])
    row("mean overlap area", lambda r: r["mean_overlap_area"])
    for feature in features:
        row(f"overlap: {feature}", lambda r, f=feature: r["overlap_areas"].get(f))
    for key, label in (("generation_stock", "stock"), ("generation", "abcmamba")):
        for c in contexts:
            row(
                f"decode tokens/s at {c:,} context ({label})",
                lambda r, c=c, k=key: r[k][str(c)]["decode_tokens_per_s"],
                ",.1f",
            )
            row(
                f"prefill seconds at {c:,} ({label})",
                lambda r, c=c, k=key: r[k][str(c)]["prefill_s"],
            )
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
    import numpy as np
    import torch

    from abcmamba.evaluate import evaluate
    from abcmamba.generate import load_model
    from abcmamba.tokenizer import load_corpus

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    contexts = [int(c) for c in args.contexts.split(",") if c]
    corpus = load_corpus(args.data, "test", "train")
    runs = find_runs(args, out)
    finals = [str(run_dir / "final") for _, run_dir in runs]

    eval_args = argparse.Namespace(
        model=finals,
        data=args.data,
        n=args.n,
        out=str(out / "evaluate"),
        split="test",
        bpc_tunes=args.bpc_tunes,
        batch_size=8,
        max_length=2048,
        max_new_tokens=args.max_new_tokens,
        seed=0,
        device=None,
        # the architectures' own validity; the grammar would make every one valid
        sampler="unconstrained",
    )
    report = evaluate(eval_args)
    entries = list(report["models"].values())
    texts = list(corpus["test"]["abc"])

    rows = []
    for (name, run_dir), final, entry in zip(runs, finals, entries, strict=True):
        record_path = Path(final) / RUN_FILE
        record = json.loads(record_path.read_text()) if record_path.is_file() else {}
        metrics = record.get("metrics", {})
        peak_file = out / f"train_{name}.json"
        peak = json.loads(peak_file.read_text()) if peak_file.is_file() else {}
        # Stock transformers (what a plain pipeline() user gets), then with
        # abcmamba's CPU paths (abcmamba generate/evaluate; no-op for Llama).
        generation, generation_stock = {}, {}
        for speeds, fast in ((generation_stock, False), (generation, True)):
            model, tokenizer = load_model(final, fast=fast)
            for context in contexts:
                logger.info(
                    "%s: generation speed at %d tokens (%s)",
                    name,
                    context,
                    "abcmamba paths" if fast else "stock",
                )
                speeds[str(context)] = generation_speed(
                    model, tokenizer, texts, context, args.new_tokens
                )
            del model
        overlap = {f: v.get("overlap_area") for f, v in entry["features"].items()}
        finite = [v for v in overlap.values() if v is not None and np.isfinite(v)]
        rows.append(
            {
                "name": name,
                "run": str(run_dir),
                "arch": record.get("arch") or entry.get("model"),
                "params": entry["params"],
                "train_tokens_per_s": metrics.get("tokens_per_s"),
                "peak_memory_mb": peak.get("cuda_mb", peak.get("rss_mb")),
                "val_bpc": metrics.get("val_bpc"),
                "test_bpc": entry["bpc"]["bpc"],
                "validity_unconditioned": entry["validity_unconditioned"][
                    "validity_rate"
                ],
                "validity_conditioned": entry["validity_conditioned"]["validity_rate"],
                "conditioning_all": entry["conditioning"].get("all"),
                "overlap_areas": overlap,
                "mean_overlap_area": float(np.mean(finite)) if finite else None,
                "generation": generation,
                "generation_stock": generation_stock,
            }
        )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    device += f", {torch.get_num_threads()} threads, torch {torch.__version__}"
    # timings taken while other processes use the cores are not comparable
    device += (
        f", load average {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    features = list(entries[0]["features"]) if entries else []
    table = markdown(rows, contexts, features, device)
    (out / "compare.md").write_text(table)
    (out / "compare.json").write_text(
        json.dumps({"device": device, "runs": rows}, indent=2, default=str) + "\n"
    )
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training speed (tokens/s) and peak memory of every architecture and Mamba scan path.

Run by hand, never in CI::

    python benchmarks/train_speed.py                       # the full table
    python benchmarks/train_speed.py --presets small --seq-lens 512 --archs mamba:kernel llama

Each row runs in a fresh subprocess (so its peak RSS is its own): AdamW, fp32,
``--tokens-per-step`` tokens per step (batch = tokens / seq_len), a warm-up step,
then timed steps. A load guard reads /proc/stat around every timed step and
discards the step when other processes used more than ``--max-foreign-cores``
of CPU meanwhile; a row with no clean step is reported as ``noisy`` with the
foreign load it saw, never as a clean number.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time

TOKENS_PER_STEP = 4096  # batch 8 x 512
PRESETS = ("tiny", "small")
SEQ_LENS = (512, 2048)
ARCHS = (
    "mamba:kernel",
    "mamba:mambapy",
    "mamba:sequential",
    "mamba2",
    "llama",
    "xlstm",
)
MIN_CLEAN_STEPS = 3
MAX_STEPS = 12
MAX_SECONDS = 150.0
MAX_FOREIGN_CORES = 0.3
VOCAB_SIZE = 4096

logger = logging.getLogger("train_speed")


def _busy_seconds() -> float:
    """CPU seconds all processes spent busy since boot (first line of /proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: idle and iowait are not busy
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds used by this process (all threads)."""
    t = os.times()
    return t.user + t.system


def run_row(arch: str, preset: str, seq_len: int, args: argparse.Namespace) -> dict:
    """Build one model, train it for a few steps and measure; runs inside a worker process."""
    import torch

    from abcmamba.modeling import build_model, count_params, describe_scan_path

    name, _, path = arch.partition(":")
    torch.manual_seed(0)
    start = time.perf_counter()
    try:
        if name == "mamba":
            model = build_model(name, preset, VOCAB_SIZE, scan_path=path or "auto")
        else:
            model = build_model(name, preset, VOCAB_SIZE)
    except Exception as exc:  # e.g. a scan path whose package is not installed
        return {"status": f"skipped: {exc}"}
    scan = describe_scan_path(model)
    if (
        name == "mamba"
        and path
        and not scan.startswith(path.replace("kernel", "cpu-kernel"))
    ):
        return {"status": f"skipped: asked for {path}, got {scan}"}
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = max(1, args.tokens_per_step // seq_len)
    ids = torch.randint(
        0, VOCAB_SIZE, (batch, seq_len), generator=torch.Generator().manual_seed(0)
    )

    def step() -> None:
        # use_cache=False as in train.py: xLSTM's training cache breaks backward
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up: allocator, kernel compile or cache load, first-touch pages
    setup_s = time.perf_counter() - start
    clean, noisy, foreign_seen = [], [], []
    t_begin = time.perf_counter()
    while (
        len(clean) < args.min_clean_steps and len(clean) + len(noisy) < args.max_steps
    ):
        if clean + noisy and time.perf_counter() - t_begin > args.max_seconds:
            break
        busy0, own0, t0 = _busy_seconds(), _own_seconds(), time.perf_counter()
        step()
        wall = time.perf_counter() - t0
        foreign = max(0.0, (_busy_seconds() - busy0) - (_own_seconds() - own0)) / wall
        foreign_seen.append(foreign)
        (clean if foreign <= args.max_foreign_cores else noisy).append(wall)
    times = clean or noisy
    step_s = statistics.median(times)
    return {
        "status": "ok" if clean else "noisy",
        "scan_path": scan,
        "params": count_params(model),
        "batch": batch,
        "step_s": round(step_s, 3),
        "tokens_per_s": round(batch * seq_len / step_s, 1),
        "clean_steps": len(clean),
        "noisy_steps": len(noisy),
        "foreign_cores": round(statistics.median(foreign_seen), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "setup_s": round(setup_s, 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def _skip_reason(
    arch: str, preset: str, seq_len: int, args: argparse.Namespace
) -> str | None:
    """Rows not worth running: the sequential loop is minutes per step beyond tiny/512."""
    slow = preset != "tiny" or seq_len != 512
    if arch == "mamba:sequential" and not args.all_sequential and slow:
        return "skipped: sequential loop takes minutes per step here (--all-sequential runs it)"
    return None


def _spawn(arch: str, preset: str, seq_len: int, args: argparse.Namespace) -> dict:
    """Run one row in a fresh interpreter and return its result dict."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        arch,
        preset,
        str(seq_len),
    ]
    for flag in (
        "tokens_per_step",
        "min_clean_steps",
        "max_steps",
        "max_seconds",
        "max_foreign_cores",
    ):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": f"failed: {tail[:120]}"}
    return json.loads(lines[-1])


def format_table(rows: list[dict]) -> str:
    """Markdown table of all rows."""
    head = (
        "| model | scan path | preset | params | seq | batch | tokens/s | peak RSS (MB) "
        "| clean/noisy steps | other load (cores) | status |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r.get('scan_path', '')} | {r['preset']} | {r.get('params', '')} "
            f"| {r['seq_len']} | {r.get('batch', '')} | {r.get('tokens_per_s', '')} "
            f"| {r.get('peak_rss_mb', '')} | {r.get('clean_steps', '')}/{r.get('noisy_steps', '')} "
            f"| {r.get('foreign_cores', '')} | {r['status']} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags (defaults are the constants at the top of this file)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--archs",
        nargs="+",
        default=list(ARCHS),
        help="mamba:PATH, mamba2, llama, xlstm",
    )
    p.add_argument("--presets", nargs="+", default=list(PRESETS))
    p.add_argument("--seq-lens", nargs="+", type=int, default=list(SEQ_LENS))
    p.add_argument("--tokens-per-step", type=int, default=TOKENS_PER_STEP)
    p.add_argument("--min-clean-steps", type=int, default=MIN_CLEAN_STEPS)
    p.add_argument("--max-steps", type=int, default=MAX_STEPS)
    p.add_argument(
        "--max-seconds", type=float, default=MAX_SECONDS, help="timing budget per row"
    )
    p.add_argument(
        "--max-foreign-cores",
        type=float,
        default=MAX_FOREIGN_CORES,
        help="discard a step when other processes used more CPU than this meanwhile",
    )
    p.add_argument(
        "--all-sequential",
        action="store_true",
        help="run the sequential loop everywhere",
    )
    p.add_argument("--json-out", help="also write the rows as JSON here")
    p.add_argument(
        "--worker", nargs=3, metavar=("ARCH", "PRESET", "SEQ"), help=argparse.SUPPRESS
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run every row and print the table."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.worker:
        arch, preset, seq = args.worker
        logging.getLogger().setLevel(logging.WARNING)
        print(json.dumps(run_row(arch, preset, int(seq), args)), flush=True)
        return 0
    rows = []
    for preset in args.presets:
        for seq_len in args.seq_lens:
            for arch in args.archs:
                row = {"arch": arch, "preset": preset, "seq_len": seq_len}
                reason = _skip_reason(arch, preset, seq_len, args)
                row.update(
                    {"status": reason}
                    if reason
                    else _spawn(arch, preset, seq_len, args)
                )
                logger.info("%s", json.dumps(row))
                rows.append(row)
    print(f"\ncpus: {os.cpu_count()}  loadavg at end: {os.getloadavg()}\n")
    print(format_table(rows))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

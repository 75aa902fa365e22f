"""Training speed (tokens/s) and peak memory of every architecture and Mamba scan path.

Run by hand, never in CI::

    python benchmarks/train_speed.py                       # the full table
    python benchmarks/train_speed.py --presets small --seq-lens 512 --archs mamba:kernel llama

For each (preset, sequence length) every architecture gets its own worker
process (so its peak RSS is its own): AdamW, fp32, ``--tokens-per-step`` tokens
per step (batch = tokens / seq_len), a warm-up step, then timed steps taken in
turn, one architecture after the other, so a change of load on the machine
hits all rows alike. A load guard reads /proc/stat around every timed step and
discards the step when other processes used more than ``--max-foreign-cores``
of CPU meanwhile; a row with no clean step is reported as ``noisy`` with the
foreign load it saw, never as a clean number.

Settings, each with one or more values; every architecture runs once with each
combination, and "vs Llama" is against the Llama row with the same settings:

- ``--omp-spin``: libgomp's spin (``GOMP_SPINCOUNT``) per worker: by default
  the value ``import abcmamba`` gives train.py; 300000 is libgomp's own.
- ``--loss``: ``chunked`` (train.py's default, abcmamba.training.loss: no full
  logits tensor) or ``model`` (the model's own, from full logits).
- ``--precision``: ``fp32`` or ``bf16`` (CPU autocast, as ``train.py
  --mixed-precision bf16``).
- ``--malloc``: ``kept`` (train.py's: glibc keeps freed blocks for the next
  step, abcmamba.training.malloc) or ``glibc`` (its defaults).

MFU is the model's FLOP/s over the machine's: training FLOPs per token taken as
6 x parameters plus, for attention, 12 x layers x sequence x hidden (the PaLM
convention; Mamba's scan adds under 5% and is left out), against the best
matmul rate torch reaches here with the same threads in the row's precision
(measured first).

"vs Llama" divides the two rows' median tokens/s. "paired" divides Llama's
step time by the row's within each round (their steps ran back to back, so
the machine's drift between rounds cancels) and gives the median with its
quartiles over the rounds where both steps were clean: how far one ratio can
be trusted on this machine.
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

from abcmamba import OMP_SPIN

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

LOSSES = ("chunked", "model")
PRECISIONS = ("fp32", "bf16")
MALLOCS = ("kept", "glibc")

#: libgomp's default spin rounds (GOMP_SPINCOUNT unset, OMP_WAIT_POLICY unset)
STOCK_OMP_SPIN = 300_000

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


def _build(arch: str, preset: str, seq_len: int, args: argparse.Namespace):
    """The model, its optimiser and one batch of ids, or a skip reason."""
    import torch

    from abcmamba.modeling import build_model, describe_scan_path

    name, _, path = arch.partition(":")
    torch.manual_seed(0)
    try:
        if name == "mamba":
            model = build_model(name, preset, VOCAB_SIZE, scan_path=path or "auto")
        else:
            model = build_model(name, preset, VOCAB_SIZE)
    except Exception as exc:  # e.g. a scan path whose package is not installed
        return f"skipped: {exc}"
    scan = describe_scan_path(model)
    if (
        name == "mamba"
        and path
        and not scan.startswith(path.replace("kernel", "cpu-kernel"))
    ):
        return f"skipped: asked for {path}, got {scan}"
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = max(1, args.tokens_per_step // seq_len)
    ids = torch.randint(
        0, VOCAB_SIZE, (batch, seq_len), generator=torch.Generator().manual_seed(0)
    )
    return model, opt, ids, scan


def serve(arch: str, preset: str, seq_len: int, args: argparse.Namespace) -> None:
    """Worker loop: build, warm up, then one timed step per "step" line on stdin."""
    import torch

    from abcmamba.modeling import count_params
    from abcmamba.training.loss import fused_loss, model_loss
    from abcmamba.training.malloc import keep_freed_memory

    start = time.perf_counter()
    if args.malloc[0] == "kept":
        keep_freed_memory()
    built = _build(arch, preset, seq_len, args)
    if isinstance(built, str):
        print(json.dumps({"status": built}), flush=True)
        return
    model, opt, ids, scan = built
    batch = {"input_ids": ids, "labels": ids}
    bf16 = args.precision[0] == "bf16"

    def step() -> None:
        # as train.py: use_cache=False (xLSTM's training cache breaks backward)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if args.loss[0] == "model":
                loss = model_loss(model, batch)
            else:
                loss = fused_loss(model, model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up: allocator, kernel compile or cache load, first-touch pages
    config = model.config
    print(
        json.dumps(
            {
                "status": "ready",
                "scan_path": scan,
                "params": count_params(model),
                "batch": ids.shape[0],
                "layers": config.num_hidden_layers,
                "hidden": config.hidden_size,
                "attention": config.model_type == "llama",
                "setup_s": round(time.perf_counter() - start, 1),
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        if line.strip() != "step":
            break
        own0, t0 = _own_seconds(), time.perf_counter()
        step()
        wall = time.perf_counter() - t0
        print(json.dumps({"wall": wall, "own": _own_seconds() - own0}), flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": round(rss)}), flush=True)


class _Worker:
    """One architecture's worker process, stepped on request."""

    def __init__(self, arch: str, preset: str, seq_len: int, setting, args) -> None:
        spin, loss, precision, malloc = setting
        cmd = [sys.executable, os.path.abspath(__file__), "--worker"]
        cmd += [arch, preset, str(seq_len), "--tokens-per-step"]
        cmd += [str(args.tokens_per_step), "--loss", loss, "--precision", precision]
        cmd += ["--malloc", malloc]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONPATH=path, GOMP_SPINCOUNT=str(spin)),
        )
        self.seq_len = seq_len
        self.setting = dict(
            omp_spin=spin, loss=loss, precision=precision, malloc=malloc
        )
        self.info = self._read()
        self.rounds: dict[int, float] = {}  # round -> wall of its clean step
        self.noisy: list[float] = []
        self.foreign: list[float] = []

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        tail = (self.proc.stderr.read().strip().splitlines() or ["no output"])[-1]
        return {"status": f"failed: {tail[:120]}"}

    @property
    def clean(self) -> list[float]:
        """Wall times of the clean steps, in order."""
        return list(self.rounds.values())

    @property
    def ready(self) -> bool:
        return self.info.get("status") == "ready"

    def step(self, max_foreign: float, round_no: int) -> None:
        busy0 = _busy_seconds()
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        done = self._read()
        if "wall" not in done:
            self.info = done
            return
        busy = _busy_seconds() - busy0
        foreign = max(0.0, busy - done["own"]) / done["wall"]
        self.foreign.append(foreign)
        if foreign <= max_foreign:
            self.rounds[round_no] = done["wall"]
        else:
            self.noisy.append(done["wall"])

    def finish(self) -> dict:
        """Stop the worker; the row's measurements."""
        if self.ready and self.proc.poll() is None:
            self.proc.stdin.write("done\n")
            self.proc.stdin.flush()
            self.info.update(self._read())
        self.proc.wait()
        row = dict(self.info, **self.setting)
        times = self.clean or self.noisy
        if row.get("status") != "ready" or not times:
            row.setdefault("status", "failed: no step")
            return row
        step_s = statistics.median(times)
        tokens = row["batch"] * self.seq_len
        row.update(
            status="ok" if self.clean else "noisy",
            step_s=round(step_s, 3),
            tokens_per_s=round(tokens / step_s, 1),
            clean_steps=len(self.clean),
            noisy_steps=len(self.noisy),
            foreign_cores=round(statistics.median(self.foreign), 2),
            loadavg_1m=round(os.getloadavg()[0], 2),
            rounds=self.rounds,
        )
        return row


def run_group(
    archs: list[str], preset: str, seq_len: int, args: argparse.Namespace
) -> list[dict]:
    """Rows for every arch at one (preset, seq_len), their timed steps interleaved."""
    settings = [
        (spin, loss, precision, malloc)
        for spin in args.omp_spin
        for loss in args.loss
        for precision in args.precision
        for malloc in args.malloc
    ]
    workers = {
        (arch, setting): _Worker(arch, preset, seq_len, setting, args)
        for arch in archs
        for setting in settings
    }
    t_begin = time.perf_counter()

    def wanted(w: _Worker) -> bool:
        steps = len(w.clean) + len(w.noisy)
        return (
            w.ready and len(w.clean) < args.min_clean_steps and steps < args.max_steps
        )

    round_no = 0
    while any(wanted(w) for w in workers.values()):
        if time.perf_counter() - t_begin > args.max_seconds and all(
            w.clean or w.noisy for w in workers.values() if w.ready
        ):
            break
        for w in workers.values():
            if wanted(w):
                w.step(args.max_foreign_cores, round_no)
        round_no += 1
    rows = []
    for (arch, _), w in workers.items():
        rows.append({"arch": arch, "preset": preset, "seq_len": seq_len} | w.finish())
    return rows


def peak_gflops(precision: str = "fp32", seconds: float = 2.0) -> float:
    """The best matmul rate torch reaches on this machine (GFLOP/s)."""
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * 1024**3 / (time.perf_counter() - t0) / 1e9)
    return best


def model_flops_per_token(row: dict) -> float:
    """Training FLOPs per token: 6N, plus 12 x layers x seq x hidden for attention."""
    flops = 6.0 * row["params"]
    if row.get("attention"):
        flops += 12.0 * row["layers"] * row["seq_len"] * row["hidden"]
    return flops


def _skip_reason(
    arch: str, preset: str, seq_len: int, args: argparse.Namespace
) -> str | None:
    """Rows not worth running: the sequential loop is minutes per step beyond tiny/512."""
    slow = preset != "tiny" or seq_len != 512
    if arch == "mamba:sequential" and not args.all_sequential and slow:
        return "skipped: sequential loop takes minutes per step here (--all-sequential runs it)"
    return None


def paired_ratio(row: dict, ref: dict) -> str:
    """ref's step time over row's, per round where both stepped clean: median
    [quartiles] (n). Steps of one round ran back to back, so a change of the
    machine's speed between rounds cancels; the spread is the ratio's noise."""
    both = sorted(set(row.get("rounds", {})) & set(ref.get("rounds", {})))
    ratios = [ref["rounds"][k] / row["rounds"][k] for k in both]
    if not ratios:
        return ""
    if len(ratios) < 4:
        return f"{statistics.median(ratios):.2f}x ({len(ratios)})"
    q1, q2, q3 = statistics.quantiles(ratios, n=4)
    return f"{q2:.2f}x [{q1:.2f}-{q3:.2f}] ({len(ratios)})"


def _group_key(r: dict) -> tuple:
    return tuple(
        r.get(k)
        for k in ("preset", "seq_len", "omp_spin", "loss", "precision", "malloc")
    )


def format_table(rows: list[dict], peaks: dict[str, float]) -> str:
    """Markdown table of all rows, speed and memory against the Llama row with
    the same settings, MFU against the matmul peak of the row's precision.

    "vs Llama" divides the two rows' median tokens/s; "paired" takes the
    ratio within each round (see paired_ratio)."""
    head = (
        "| model | scan path | libgomp spin | loss | precision | malloc | preset "
        "| params | seq | batch | tokens/s | vs Llama | paired [quartiles] (rounds) "
        "| peak RSS (MB) | vs Llama | MFU | clean/noisy steps | other load (cores) "
        "| status |"
    )
    lines = [head, "|" + "---|" * 19]
    llama = {
        _group_key(r): r for r in rows if r["arch"] == "llama" and "tokens_per_s" in r
    }
    for r in rows:
        ref = llama.get(_group_key(r))
        speed = paired = memory = mfu = ""
        if "tokens_per_s" in r:
            peak = peaks[r["precision"]]
            mfu = f"{r['tokens_per_s'] * model_flops_per_token(r) / 1e9 / peak:.1%}"
            if ref and r is not ref:
                speed = f"{r['tokens_per_s'] / ref['tokens_per_s']:.2f}x"
                paired = paired_ratio(r, ref)
                memory = f"{r['peak_rss_mb'] / ref['peak_rss_mb']:.2f}x"
        lines.append(
            f"| {r['arch']} | {r.get('scan_path', '')} | {r.get('omp_spin', '')} "
            f"| {r.get('loss', '')} | {r.get('precision', '')} | {r.get('malloc', '')} "
            f"| {r['preset']} | {r.get('params', '')} "
            f"| {r['seq_len']} | {r.get('batch', '')} | {r.get('tokens_per_s', '')} "
            f"| {speed} | {paired} "
            f"| {r.get('peak_rss_mb', '')} | {memory} | {mfu} "
            f"| {r.get('clean_steps', '')}/{r.get('noisy_steps', '')} "
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
    p.add_argument(
        "--omp-spin",
        nargs="+",
        type=int,
        default=[int(OMP_SPIN)],
        help=f"GOMP_SPINCOUNT of the workers (default {OMP_SPIN}, what train.py "
        f"gets; libgomp's own is {STOCK_OMP_SPIN}); each value runs every arch",
    )
    p.add_argument(
        "--loss",
        nargs="+",
        choices=LOSSES,
        default=["chunked"],
        help="chunked: train.py's default loss (no full logits); model: the "
        "model's own; each value runs every arch",
    )
    p.add_argument(
        "--precision",
        nargs="+",
        choices=PRECISIONS,
        default=["fp32"],
        help="fp32, or bf16 CPU autocast (train.py --mixed-precision bf16); "
        "each value runs every arch",
    )
    p.add_argument(
        "--malloc",
        nargs="+",
        choices=MALLOCS,
        default=["kept"],
        help="kept: glibc keeps freed blocks for the next step, as in train.py; "
        "glibc: its defaults; each value runs every arch",
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
        serve(arch, preset, int(seq), args)
        return 0
    peaks = {precision: peak_gflops(precision) for precision in args.precision}
    for precision, peak in peaks.items():
        logger.info("%s matmul peak here: %.1f GFLOP/s", precision, peak)
    rows = []
    for preset in args.presets:
        for seq_len in args.seq_lens:
            archs = []
            for arch in args.archs:
                reason = _skip_reason(arch, preset, seq_len, args)
                if reason:
                    rows.append(
                        {"arch": arch, "preset": preset, "seq_len": seq_len}
                        | {"status": reason}
                    )
                else:
                    archs.append(arch)
            for row in run_group(archs, preset, seq_len, args):
                logger.info("%s", json.dumps(row))
                rows.append(row)
    shown = ", ".join(f"{k} {v:.1f}" for k, v in peaks.items())
    print(
        f"\ncpus: {os.cpu_count()}  loadavg at end: {os.getloadavg()}  "
        f"matmul peak (GFLOP/s): {shown}\n"
    )
    print(format_table(rows, peaks))
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump({"peak_gflops": peaks, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

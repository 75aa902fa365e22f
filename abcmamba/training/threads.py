"""How many CPU threads a training process uses.

`accelerate launch` without a config sets ``OMP_NUM_THREADS=1`` for the script
it starts unless the user set it, so the README's `accelerate launch train.py`
trained on one core of a CPU machine (1,971 tokens/s instead of 3,684 on 2
cores, small preset). A CPU run therefore shares the cores this process may
use among the processes on this machine, unless ``--threads`` or the user's
own ``OMP_NUM_THREADS`` says otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: set in the script's environment by `accelerate launch` (never by torchrun alone)
LAUNCHER_MARK = "ACCELERATE_MIXED_PRECISION"


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. under taskset or a container)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def choose_cpu_threads(
    requested: int,
    local_processes: int,
    environ: Mapping[str, str] | None = None,
    cores: int | None = None,
) -> tuple[int, str]:
    """Threads for each of ``local_processes`` CPU processes, and the reason (for the log).

    ``requested`` > 0 (``--threads``) wins. Otherwise ``OMP_NUM_THREADS`` counts
    as the user's choice, except the ``1`` that `accelerate launch` puts there
    by default; then the usable cores are split evenly among the processes.
    """
    if requested > 0:
        return requested, "--threads"
    env = os.environ if environ is None else environ
    omp = env.get("OMP_NUM_THREADS", "").strip()
    from_launcher = LAUNCHER_MARK in env and omp == "1"
    if omp.isdigit() and int(omp) > 0 and not from_launcher:
        return int(omp), "OMP_NUM_THREADS"
    cores = usable_cores() if cores is None else cores
    processes = max(1, local_processes)
    share = max(1, cores // processes)
    why = f"{cores} usable cores / {processes} process{'es' if processes > 1 else ''}"
    if from_launcher:
        why += "; accelerate launch had set OMP_NUM_THREADS=1 (--threads N to choose)"
    return share, why

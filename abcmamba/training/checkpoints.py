"""Checkpoints of a run: ``accelerator.save_state`` folders, written atomically.

``RUN/checkpoints/step_NNNNNNN`` holds Accelerate's state (model, optimizer,
scheduler, RNGs) plus the trainer state in ``STATE_FILE``; the last
``--keep-last`` are kept and ``--resume`` continues from the newest.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from accelerate import Accelerator

from abcmamba import UserError
from abcmamba.training.config import TrainConfig

logger = logging.getLogger(__name__)

STATE_FILE = "abcmamba_trainer_state.json"


def checkpoints(run_dir: Path) -> list[Path]:
    """Completed checkpoints of a run, oldest first (temporary folders excluded)."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step_")]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def prepare_run_folder(
    config: TrainConfig, run_dir: Path, accelerator: Accelerator
) -> None:
    """Refuse to clobber a run unless --overwrite (then delete it) or --resume."""
    if config.resume:
        if not checkpoints(run_dir):
            raise UserError(f"--resume: no checkpoint in {run_dir / 'checkpoints'}")
    elif run_dir.exists() and any(run_dir.iterdir()):
        if not config.overwrite:
            raise UserError(
                f"run folder {run_dir} exists: pass --overwrite, --resume or another --run-name"
            )
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(run_dir)
    accelerator.wait_for_everyone()


def save_checkpoint(
    accelerator: Accelerator, run_dir: Path, state: dict, keep_last: int
) -> Path:
    """``save_state`` into a temporary folder, then rename: a kill never leaves half a checkpoint."""
    final = run_dir / "checkpoints" / f"step_{state['step']:07d}"
    tmp = run_dir / "checkpoints" / f"tmp_step_{state['step']:07d}"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoints(run_dir)[: -max(1, keep_last)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, path: Path) -> dict:
    """Restore model, optimizer, scheduler and RNG states; return the trainer state."""
    try:
        state = json.loads((path / STATE_FILE).read_text())
        accelerator.load_state(str(path))
    except Exception as err:  # noqa: BLE001 - any failure here means a damaged folder
        raise UserError(
            f"checkpoint {path} is corrupt or incomplete: {type(err).__name__}: {err}"
        ) from None
    return state


def start_state(
    config: TrainConfig, accelerator: Accelerator, run_dir: Path, total: int
) -> dict:
    """The trainer state of a fresh run, or the newest checkpoint's under --resume."""
    if not config.resume:
        return {
            "step": 0,
            "total_steps": total,
            "calibrated": config.max_steps > 0,
            "train_seconds": 0.0,
            "tokens_seen": 0,
            "loss": None,
        }
    state = load_checkpoint(accelerator, checkpoints(run_dir)[-1])
    logger.info("resumed from step %d of %d", state["step"], state["total_steps"])
    return state

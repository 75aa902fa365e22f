"""Experiment trackers of a run (``--report-to``): checked before training starts.

Accelerate silently drops a tracker whose package is missing, so a run asked to
log to wandb would log nothing; here a missing package is a :class:`UserError`
naming what to install.  MLflow logs to a local SQLite store in the run folder
(``RUN/mlflow/mlflow.db``) unless ``--tracking-dir`` or ``MLFLOW_TRACKING_URI``
says otherwise.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from accelerate import Accelerator
from accelerate.tracking import LOGGER_TYPE_TO_CLASS
from accelerate.utils import is_mlflow_available

from abcmamba import UserError

logger = logging.getLogger(__name__)

# Accelerate's tracker name -> the pip package that provides it
PACKAGES = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "comet_ml": "comet-ml",
    "aim": "aim",
    "clearml": "clearml",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
    "trackio": "trackio",
}
EXTRA_HINT = 'pip install -e ".[tracking]"'
MLFLOW_DB = "mlflow.db"


def _installed(name: str) -> bool:
    """Whether Accelerate will find tracker ``name``'s package."""
    if name == "mlflow":
        return is_mlflow_available()  # mlflow or mlflow-skinny
    if name == "tensorboard":  # torch.utils.tensorboard needs the tensorboard package
        return any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX"))
    return importlib.util.find_spec(name) is not None


def resolve_trackers(report_to: str, tracking_dir: str | None = None) -> list[str]:
    """The trackers of ``--report-to`` (comma-separated; ``none``, ``all``).

    Raises UserError for an unknown name or one whose package is not installed.
    """
    names = [n.strip() for n in report_to.split(",") if n.strip()]
    if names in ([], ["none"]):
        return []
    if names == ["all"]:
        names = [n for n in PACKAGES if n in LOGGER_TYPE_TO_CLASS and _installed(n)]
    for name in names:
        if name not in PACKAGES or name not in LOGGER_TYPE_TO_CLASS:
            raise UserError(
                f"unknown --report-to {name!r}; choose from none, all, "
                + ", ".join(n for n in PACKAGES if n in LOGGER_TYPE_TO_CLASS)
            )
        if not _installed(name):
            raise UserError(
                f"--report-to {name}: the {PACKAGES[name]} package is not installed; "
                f"pip install {PACKAGES[name]} (or {EXTRA_HINT})"
            )
    local_store = tracking_dir or not os.environ.get("MLFLOW_TRACKING_URI")
    if "mlflow" in names and local_store:
        # the local store is SQLite: MLflow 3 refuses plain folders, and
        # mlflow-skinny comes without the database libraries
        missing = [
            m for m in ("sqlalchemy", "alembic") if not importlib.util.find_spec(m)
        ]
        if missing:
            raise UserError(
                f"--report-to mlflow: its local store needs {' and '.join(missing)}; "
                f"pip install {' '.join(missing)} (or {EXTRA_HINT})"
            )
    return list(dict.fromkeys(names))


def mlflow_uri(tracking_dir: str | None, run_dir: Path) -> str:
    """--tracking-dir, else MLFLOW_TRACKING_URI, else the SQLite store RUN/mlflow."""
    if not tracking_dir and os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    folder = Path(tracking_dir) if tracking_dir else run_dir / "mlflow"
    return f"sqlite:///{folder.resolve() / MLFLOW_DB}"


def start_trackers(
    accelerator: Accelerator,
    trackers: list[str],
    hparams: dict,
    run_dir: Path,
    tracking_dir: str | None,
    state: dict,
) -> None:
    """``init_trackers``; an MLflow run resumed under ``--resume`` keeps its run id."""
    if not trackers:
        return
    init_kwargs = {}
    if "mlflow" in trackers:
        import mlflow

        uri = mlflow_uri(tracking_dir, run_dir)
        if uri.startswith("sqlite:///"):
            folder = Path(uri.removeprefix("sqlite:///")).parent
            if accelerator.is_main_process:
                folder.mkdir(parents=True, exist_ok=True)
            # artifacts beside the database, not in ./mlruns of the working folder
            init_kwargs["mlflow"] = {"logging_dir": (folder / "artifacts").as_uri()}
        mlflow.set_tracking_uri(uri)
        init_kwargs.setdefault("mlflow", {}).update(
            run_name=run_dir.name, run_id=state.get("mlflow_run_id")
        )
        logger.info("MLflow tracking URI: %s", uri)
    resumed = "mlflow" in trackers and state.get("mlflow_run_id") is not None
    accelerator.init_trackers(
        "abcmamba", config=None if resumed else hparams, init_kwargs=init_kwargs
    )
    if resumed:
        # MLflow refuses to change a logged parameter (--resume itself is one):
        # a resumed MLflow run keeps the parameters of its first start
        for tracker in accelerator.trackers:
            if tracker.name != "mlflow":
                tracker.store_init_configuration(hparams)
    if "mlflow" in trackers and accelerator.is_main_process:
        state["mlflow_run_id"] = accelerator.get_tracker(
            "mlflow", unwrap=True
        ).info.run_id

"""Load a model for sampling: a save_pretrained folder or a Hub id, plain Auto classes."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from abcmamba import UserError

logger = logging.getLogger(__name__)
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def load_model(dir_or_repo: str, device: str | None = None):
    """Model and tokenizer from a save_pretrained folder or a Hub id (plain Auto classes)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(dir_or_repo)
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a model folder (no config.json)")
        if not any(
            (path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")
        ):
            raise UserError(
                f"{path} has no tokenizer (tokenizer.json); save one with the model"
            )
    elif not HUB_ID.fullmatch(dir_or_repo):
        raise UserError(
            f"{dir_or_repo}: no such model folder, and not a Hub id (OWNER/NAME)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(dir_or_repo)
        model = AutoModelForCausalLM.from_pretrained(dir_or_repo)
    except (OSError, ValueError) as err:
        first = (
            str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        )
        raise UserError(f"cannot load model {dir_or_repo!r}: {first}") from None
    except Exception as err:  # network errors from huggingface_hub / requests
        name = type(err).__name__
        if (
            "Http" in name
            or "Connection" in name
            or "Timeout" in name
            or "Offline" in name
        ):
            raise UserError(
                f"cannot reach the Hub for {dir_or_repo!r}: {name}"
            ) from None
        raise
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    if device == "cpu":
        enable_cpu_fast_paths(model)
    return model, tokenizer


def enable_cpu_fast_paths(model) -> None:
    """abcmamba's CPU kernels for a Mamba model's prefill and decode (others: no-op).

    The weights and the results stay those of the stock model; only the
    forward of the mixers changes.
    """
    from abcmamba.decode import enable_fast_decode

    enable_fast_decode(model)
    try:
        from abcmamba.modeling import configure_scan_path

        configure_scan_path(model, "auto")  # fast prefill where a CPU scan exists
    except Exception as err:  # a missing/broken kernel only costs prefill speed
        logger.warning("fast prefill not available (%s); using the stock scan", err)

"""Load a model: a save_pretrained folder, a training run folder or a Hub id, Auto classes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from abcmamba import UserError, is_hub_id

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def resolve_model(spec: str) -> str:
    """A loadable folder or Hub id for DIR_OR_ID; run folders resolve to their final/."""
    path = Path(spec)
    if not path.exists():
        if not is_hub_id(spec):
            raise UserError(
                f"{spec}: no such model folder, and not a Hub id (OWNER/NAME)"
            )
        return spec
    if (path / "final" / "config.json").is_file():
        path = path / "final"
    elif not (path / "config.json").is_file():
        raise UserError(
            f"no model in {spec} (expected config.json or final/config.json)"
        )
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise UserError(
            f"{path} has no tokenizer (tokenizer.json); save one with the model"
        )
    return str(path)


def load_model(
    spec: str, device: str | None = None, fast: bool = True
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) from a model folder, run folder or Hub id; one-line errors.

    ``fast``: on a CPU, run Mamba on abcmamba's kernels (same results, faster).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = resolve_model(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where)
    except (OSError, ValueError) as err:
        first = (
            str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        )
        raise UserError(f"cannot load model {spec!r}: {first}") from None
    except Exception as err:  # network errors from huggingface_hub / requests
        name = type(err).__name__
        if any(kind in name for kind in ("Http", "Connection", "Timeout", "Offline")):
            raise UserError(f"cannot reach the Hub for {spec!r}: {name}") from None
        raise
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    if device == "cpu" and fast:
        enable_cpu_fast_paths(model)
    return model, tokenizer


def enable_cpu_fast_paths(model: PreTrainedModel) -> None:
    """abcmamba's numba scan for a Mamba model's prefill (others: no-op).

    The fused one-token decode step needs no call: importing abcmamba installs
    it for every MambaForCausalLM (abcmamba.kernels.decode). The weights and
    the results stay those of the stock model; only the mixers' forward changes.
    """
    try:
        from abcmamba.modeling import configure_scan_path

        configure_scan_path(model, "auto")  # fast prefill where a CPU scan exists
    except Exception as err:  # a missing/broken kernel only costs prefill speed
        logger.warning("fast prefill not available (%s); using the stock scan", err)

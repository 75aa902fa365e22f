"""Fast, exact CPU kernels for Mamba-1 (selective scan, conv1d+SiLU) built with numba.

Usage::

    from abcmamba.kernels import enable_cpu_kernel, describe_scan_path
    enable_cpu_kernel(model)          # a MambaForCausalLM; returns False if unavailable
    logger.info("scan path: %s", describe_scan_path(model))

The model stays a plain ``MambaForCausalLM``: only the class of each
``MambaMixer`` is swapped for a subclass with the same parameters, so
``save_pretrained`` writes exactly what the stock model writes.
:mod:`abcmamba.kernels.decode` makes the cached one-token step fast (sampling).
Importing this package compiles nothing; numba compiles (or loads its cache)
on first use.
"""

from __future__ import annotations

import importlib.util
import logging

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "kernel_available",
    "enable_cpu_kernel",
    "disable_cpu_kernel",
    "describe_scan_path",
]

_load_error: str | None = None


def kernel_available() -> bool:
    """True when numba imports and the kernels compile (or load from cache); never raises."""
    global _load_error
    if _load_error is not None:
        return False
    try:
        from abcmamba.kernels.functions import load_kernels

        load_kernels()
    except Exception as exc:  # any failure means "use the fallback", never a crash
        _load_error = f"{type(exc).__name__}: {exc}"
        logger.debug("CPU kernel load failed", exc_info=True)
        return False
    return True


def mamba_mixers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every MambaMixer (or subclass) inside the model."""
    from transformers.models.mamba.modeling_mamba import MambaMixer

    return [m for m in model.modules() if isinstance(m, MambaMixer)]


def enable_cpu_kernel(model: torch.nn.Module) -> bool:
    """Route the model's Mamba mixers through the CPU kernels; False (with a warning) if unavailable."""
    mixers = mamba_mixers(model)
    if not mixers:
        logger.warning(
            "enable_cpu_kernel: %s has no MambaMixer; nothing to do",
            type(model).__name__,
        )
        return False
    if not kernel_available():
        logger.warning(
            "The numba CPU kernel for Mamba could not load (%s); falling back to "
            "transformers' own scan path (%s)",
            _load_error,
            describe_scan_path(model),
        )
        return False
    from abcmamba.kernels.mixer import CpuKernelMambaMixer

    for mixer in mixers:
        # Same parameters and buffers, only forward differs: state_dict is untouched.
        mixer.__class__ = CpuKernelMambaMixer
    logger.info("Mamba CPU kernel enabled on %d mixers", len(mixers))
    return True


def disable_cpu_kernel(model: torch.nn.Module) -> None:
    """Undo enable_cpu_kernel: mixers go back to transformers' MambaMixer."""
    from transformers.models.mamba.modeling_mamba import MambaMixer

    for mixer in mamba_mixers(model):
        mixer.__class__ = MambaMixer


def describe_scan_path(model: torch.nn.Module) -> str:
    """The scan a forward pass runs, as run records name it ("cpu-kernel", "mambapy", ...)."""
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    if model_type == "llama":
        return "attention (sdpa)"
    if model_type == "mamba2":
        return "mamba2 chunked SSD (torch)"
    if model_type == "xlstm":
        return "mlstm chunkwise (torch)"
    mixers = mamba_mixers(model)
    if not mixers:
        return "sequential"
    mixer = mixers[0]
    device = mixer.A_log.device
    if device.type == "cuda" and importlib.util.find_spec("mamba_ssm") is not None:
        return "mamba-ssm-cuda"
    if device.type == "cpu" and type(mixer).__name__ == "CpuKernelMambaMixer":
        dtype = mixer.in_proj.weight.dtype
        if dtype in (torch.float32, torch.float64):
            return "cpu-kernel"
    if (
        getattr(mixer, "use_mambapy", False)
        and importlib.util.find_spec("mambapy") is not None
    ):
        return "mambapy"
    return "sequential"

"""Model presets and builders: Mamba (the published model), Mamba2, a Llama
baseline and xLSTM.

Every architecture is a stock `transformers` class, so a trained folder loads with
``pipeline("text-generation", model=...)`` and no custom code.  The Llama and
xLSTM baselines are sized to the Mamba model's parameter count at the same preset
(within 10%).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import asdict, dataclass

import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Mamba2Config,
    Mamba2ForCausalLM,
    MambaConfig,
    MambaForCausalLM,
    PreTrainedModel,
    xLSTMConfig,
    xLSTMForCausalLM,
)

from abcmamba import UserError, kernels, xlstm
from abcmamba.kernels import describe_scan_path

logger = logging.getLogger(__name__)

ARCHS = ("mamba", "mamba2", "llama", "xlstm")
SCAN_PATHS = ("auto", "cuda", "kernel", "mambapy", "sequential")
# Mamba, Mamba2 and Llama alike: one embedding matrix for input and output, and
# 0.02 as in mamba_ssm (transformers' default 0.1 starts the loss far above ln(V))
_TIED_SMALL_INIT = {"tie_word_embeddings": True, "initializer_range": 0.02}


@dataclass(frozen=True)
class Preset:
    """Sizes shared by every architecture at one named scale."""

    hidden_size: int
    """Width of the residual stream (d_model)."""
    num_layers: int
    """Number of Mamba blocks (Mamba2 uses the same; Llama is solved to match params)."""
    state_size: int = 16
    """SSM state size N of Mamba-1 (Mamba2 uses ``mamba2_state_size``)."""
    expand: int = 2
    """Inner width of a Mamba block is ``expand * hidden_size``."""
    conv_kernel: int = 4
    """Width of the causal depthwise convolution in a Mamba block."""
    mamba2_state_size: int = 64
    """SSM state size of Mamba2 (its heads are scalar-decay, so a larger N is cheap)."""
    mamba2_head_dim: int = 64
    """Head dimension of Mamba2; ``expand * hidden_size`` must be a multiple of it."""
    llama_layers: int | None = None
    """Layers of the Llama baseline (default: half the Mamba layers, as a
    Transformer block holds about twice the parameters of a Mamba block)."""
    llama_head_dim: int = 64
    """Attention head dimension of the Llama baseline."""
    max_position_embeddings: int = 4096
    """Longest context of the Llama baseline (Mamba has no such limit)."""
    xlstm_num_heads: int = 4
    """mLSTM heads of the xLSTM baseline (its width and depth are solved to match params)."""


PRESETS: dict[str, Preset] = {
    # Under 1M parameters at vocab 4096: unit tests and smoke runs.
    "tiny": Preset(
        hidden_size=64, num_layers=2, mamba2_state_size=16, mamba2_head_dim=16
    ),
    # The default: about 4.5M parameters at vocab 4096, trains on 2 CPU cores.
    "small": Preset(hidden_size=256, num_layers=8),
    # About 100M parameters: a GPU run.
    "base": Preset(hidden_size=768, num_layers=26, llama_layers=12),
}


def get_preset(name: str) -> Preset:
    """Return the preset called ``name`` or raise UserError listing the choices."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def count_params(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _mamba_config(p: Preset, vocab_size: int, **special: int) -> MambaConfig:
    return MambaConfig(
        vocab_size=vocab_size,
        hidden_size=p.hidden_size,
        num_hidden_layers=p.num_layers,
        state_size=p.state_size,
        expand=p.expand,
        conv_kernel=p.conv_kernel,
        **_TIED_SMALL_INIT,
        **special,
    )


def _mamba2_config(p: Preset, vocab_size: int, **special: int) -> Mamba2Config:
    inner = p.expand * p.hidden_size
    if inner % p.mamba2_head_dim:
        raise ValueError("expand * hidden_size must be a multiple of mamba2_head_dim")
    return Mamba2Config(
        vocab_size=vocab_size,
        hidden_size=p.hidden_size,
        num_hidden_layers=p.num_layers,
        state_size=p.mamba2_state_size,
        expand=p.expand,
        conv_kernel=p.conv_kernel,
        head_dim=p.mamba2_head_dim,
        num_heads=inner // p.mamba2_head_dim,
        n_groups=1,
        chunk_size=128,
        **_TIED_SMALL_INIT,
        **special,
    )


def mamba_param_count(p: Preset, vocab_size: int) -> int:
    """Parameters of the Mamba model at preset ``p`` (computed, nothing allocated)."""
    h, d_in, n = p.hidden_size, p.expand * p.hidden_size, p.state_size
    r = math.ceil(h / 16)  # transformers' default time_step_rank
    block = (
        h * 2 * d_in  # in_proj
        + d_in * p.conv_kernel
        + d_in  # conv1d (+bias)
        + d_in * (r + 2 * n)  # x_proj
        + r * d_in
        + d_in  # dt_proj
        + d_in * n
        + d_in  # A_log, D
        + d_in * h  # out_proj
        + h  # norm
    )
    return vocab_size * h + p.num_layers * block + h


def _llama_config(p: Preset, vocab_size: int, **special: int) -> LlamaConfig:
    """A Llama whose MLP width is solved so its size matches the Mamba model's."""
    h = p.hidden_size
    layers = p.llama_layers or max(1, p.num_layers // 2)
    target = mamba_param_count(p, vocab_size)
    fixed = vocab_size * h + h + layers * (4 * h * h + 2 * h)
    intermediate = max(8, round((target - fixed) / (3 * h * layers) / 8) * 8)
    heads = max(1, h // p.llama_head_dim)
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=h,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=p.max_position_embeddings,
        **_TIED_SMALL_INIT,
        **special,
    )


def _xlstm_config(p: Preset, vocab_size: int, **special: int) -> xLSTMConfig:
    """An xLSTM whose width and depth are solved to the Mamba model's size."""
    return xlstm.xlstm_config(
        p, vocab_size, mamba_param_count(p, vocab_size), **special
    )


def build_config(arch: str, preset: str, vocab_size: int, **special: int):
    """Config for ``arch`` at ``preset``; ``special`` holds bos/eos/pad token ids."""
    p = get_preset(preset)
    builders = {
        "mamba": _mamba_config,
        "mamba2": _mamba2_config,
        "llama": _llama_config,
        "xlstm": _xlstm_config,
    }
    if arch not in builders:
        raise UserError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    return builders[arch](p, vocab_size, **special)


MODEL_CLASSES = {
    "mamba": MambaForCausalLM,
    "mamba2": Mamba2ForCausalLM,
    "llama": LlamaForCausalLM,
    "xlstm": xLSTMForCausalLM,
}


def build_model(
    arch: str,
    preset: str,
    vocab_size: int,
    scan_path: str | None = "auto",
    **special: int,
) -> PreTrainedModel:
    """A freshly initialised causal LM; Mamba models get the fastest scan for the
    device they sit on (the CPU), unless ``scan_path`` is None: then the choice is
    left to a later :func:`configure_scan_path` once the model is on its device."""
    config = build_config(arch, preset, vocab_size, **special)
    model = MODEL_CLASSES[arch](config)
    if arch == "mamba" and scan_path is not None:
        configure_scan_path(model, scan_path)
    return model


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _set_mambapy(model: PreTrainedModel, on: bool) -> None:
    model.config.use_mambapy = on
    for layer in model.backbone.layers:
        layer.mixer.use_mambapy = on


def configure_scan_path(model: PreTrainedModel, requested: str = "auto") -> str:
    """Select the selective-scan implementation of a Mamba model for the device
    its weights sit on now; return its name as :func:`describe_scan_path` gives it.

    Call it once the model is on its device (train.py: after
    ``accelerator.prepare``); calling it again decides afresh. Order for ``auto``:
    on a GPU the mamba-ssm CUDA kernels, then ``mambapy``; on the CPU the abcmamba
    CPU kernel, then ``mambapy``; transformers' sequential loop last, with a
    warning because it runs at tens of tokens per second.
    """
    if requested not in SCAN_PATHS:
        raise UserError(f"unknown scan path {requested!r}; choose one of {SCAN_PATHS}")
    if getattr(model.config, "model_type", "") != "mamba":
        return describe_scan_path(model)
    # the mixers' weights, as describe_scan_path reads them: under FSDP the root's
    # first parameter may be a flat shard while the mixers sit on the device
    device = kernels.mamba_mixers(model)[0].A_log.device.type
    # a CPU kernel left from an earlier choice would not run on a GPU, and would
    # hide the path chosen below on the CPU
    kernels.disable_cpu_kernel(model)
    if requested == "cuda" or (requested == "auto" and device == "cuda"):
        if device != "cuda":
            raise UserError(
                f"--scan-path cuda needs the model on a GPU; it is on {device}"
            )
        if _importable("mamba_ssm") and _importable("causal_conv1d"):
            return describe_scan_path(model)
        if requested == "cuda":
            raise UserError("--scan-path cuda needs mamba-ssm and causal-conv1d")
    if requested == "kernel" and device != "cpu":
        raise UserError(
            f"the abcmamba scan kernel runs on the CPU; the model is on {device}"
        )
    if requested == "kernel" or (requested == "auto" and device == "cpu"):
        if kernels.kernel_available() and kernels.enable_cpu_kernel(model):
            return describe_scan_path(model)
        if requested == "kernel":
            raise UserError("the abcmamba CPU scan kernel is not available here")
    if requested in ("auto", "mambapy"):
        if _importable("mambapy"):
            _set_mambapy(model, True)
            return describe_scan_path(model)
        if requested == "mambapy":
            raise UserError("--scan-path mambapy needs the mambapy package")
    _set_mambapy(model, False)
    logger.warning(
        "Mamba runs on transformers' SEQUENTIAL scan (about 44 tokens/s on 2 CPU "
        "cores): install mambapy or build the abcmamba kernel for real training"
    )
    return describe_scan_path(model)


def preset_table(vocab_size: int = 4096) -> list[dict]:
    """Parameters of every architecture at every preset (for docs and --help)."""
    rows = []
    for name in PRESETS:
        for arch in ARCHS:
            config = build_config(arch, name, vocab_size)
            with torch.device("meta"):
                model = MODEL_CLASSES[arch](config)
            rows.append({"preset": name, "arch": arch, "params": count_params(model)})
    return rows


def preset_dict(name: str) -> dict:
    """The preset's fields as a plain dict (for run metadata)."""
    return asdict(get_preset(name))

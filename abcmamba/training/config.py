"""The training configuration: one dataclass whose fields are the flags of train.py.

``transformers.HfArgumentParser`` turns every field into a ``--flag`` whose help
is the field's ``help`` text, so ``train.py --help`` documents all of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

from abcmamba import UserError, modeling
from abcmamba.generate.defaults import DEFAULT_MAX_NEW_TOKENS
from abcmamba.training.tracking import resolve_trackers

DEFAULT_DATA = "data/corpus"
DEFAULT_MAX_MINUTES = 30.0


@dataclass
class TrainConfig:
    """Everything a training run depends on; saved into the run folder."""

    preset: str = field(
        default="small",
        metadata={
            "help": "model size: tiny (<1M params, tests), small (~4.5M, CPU), base (~100M, GPU)"
        },
    )
    arch: str = field(
        default="mamba",
        metadata={
            "help": "mamba (MambaForCausalLM), mamba2 (Mamba2ForCausalLM), llama (Transformer baseline) or xlstm (xLSTMForCausalLM), both of matched size"
        },
    )
    data: str = field(
        default=DEFAULT_DATA,
        metadata={
            "help": "data_prep DatasetDict folder; the default is built with `python -m data_prep` if missing"
        },
    )
    tokenizer: str | None = field(
        default=None,
        metadata={
            "help": "tokenizer folder (default: DATA/tokenizer, trained if missing; with --init-from: that model's tokenizer)"
        },
    )
    vocab_size: int = field(
        default=4096,
        metadata={"help": "BPE vocabulary size when the tokenizer has to be trained"},
    )
    run_name: str | None = field(
        default=None,
        metadata={
            "help": "run name (default: ARCH-PRESET); the run folder is runs/RUN_NAME"
        },
    )
    out: str | None = field(
        default=None, metadata={"help": "run folder (overrides runs/RUN_NAME)"}
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "delete an existing run folder instead of refusing to start"},
    )
    resume: bool = field(
        default=False,
        metadata={"help": "continue from the newest checkpoint in the run folder"},
    )
    init_from: str | None = field(
        default=None,
        metadata={
            "help": "fine-tune: start from this model folder, run folder or Hub id instead of random weights"
        },
    )
    max_steps: int = field(
        default=0,
        metadata={
            "help": "optimizer steps, the same model on any machine (no time budget unless --max-minutes is given); 0 = as many as fit in --max-minutes (or --epochs)"
        },
    )
    max_minutes: float | None = field(
        default=None,
        metadata={
            "help": f"training-time budget in minutes (0 = none; default {DEFAULT_MAX_MINUTES:g} without --max-steps, none with it); the cosine schedule is fitted to the speed of the first steps, and the run warns at the end if it got under half of the fitted steps"
        },
    )
    epochs: float = field(
        default=20.0,
        metadata={
            "help": "upper bound on passes over the training blocks when --max-steps is 0"
        },
    )
    block_size: int = field(
        default=512, metadata={"help": "tokens per packed training block"}
    )
    batch_size: int = field(
        default=8, metadata={"help": "blocks per device per micro-batch"}
    )
    grad_accum: int = field(
        default=1, metadata={"help": "micro-batches per optimizer step"}
    )
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (AdamW)"})
    min_lr_ratio: float = field(
        default=0.1, metadata={"help": "the cosine decays to lr * min_lr_ratio"}
    )
    warmup_steps: int = field(
        default=50,
        metadata={"help": "linear warm-up steps (capped at 10%% of the run)"},
    )
    weight_decay: float = field(
        default=0.1,
        metadata={
            "help": "AdamW weight decay on matrices (not norms, biases, A_log, D)"
        },
    )
    max_grad_norm: float = field(
        default=1.0, metadata={"help": "gradient clipping norm (0 = off)"}
    )
    seed: int = field(
        default=42, metadata={"help": "seed of weights, data order and sampling"}
    )
    mixed_precision: str = field(
        default="auto",
        metadata={
            "help": "auto (bf16 on a GPU that has it and on a CPU that multiplies bf16 natively, AVX512-BF16 or AMX; else fp32), no, bf16 or fp16. Weights, optimizer and the Mamba scan stay fp32"
        },
    )
    scan_path: str = field(
        default="auto",
        metadata={
            "help": "Mamba selective scan: auto, cuda (mamba-ssm), kernel (abcmamba CPU kernel), mambapy, sequential"
        },
    )
    threads: int = field(
        default=0,
        metadata={
            "help": "CPU threads per process for torch and the scan kernel (0 = the usable cores shared among this machine's processes, or OMP_NUM_THREADS if you set it; `accelerate launch` alone would pin a CPU run to 1)"
        },
    )
    fused_loss: bool = field(
        default=True,
        metadata={
            "help": "compute the loss chunk by chunk from the LM head's input, never the whole (tokens x vocabulary) logits (faster on CPU, less memory; checked against the model's own loss on the first batch); --no-fused-loss uses the model's own"
        },
    )
    save_every: int = field(
        default=200,
        metadata={"help": "checkpoint every N optimizer steps (0 = only at the end)"},
    )
    keep_last: int = field(
        default=2, metadata={"help": "checkpoints kept in RUN/checkpoints"}
    )
    eval_every: int = field(
        default=200,
        metadata={
            "help": "quick validation bpc every N steps on --eval-tunes tunes (0 = off)"
        },
    )
    eval_batch_size: int = field(
        default=16,
        metadata={"help": "windows per forward pass when measuring validation bpc"},
    )
    eval_tunes: int = field(
        default=100,
        metadata={"help": "validation tunes used by the periodic quick evaluation"},
    )
    final_eval_tunes: int = field(
        default=0,
        metadata={"help": "validation tunes for the final bpc (0 = the whole split)"},
    )
    n_samples: int = field(
        default=50,
        metadata={
            "help": "tunes sampled at the end to measure the validity rate (0 = skip)"
        },
    )
    max_new_tokens: int = field(
        default=DEFAULT_MAX_NEW_TOKENS,
        metadata={
            "help": "longest sampled tune in tokens (also written to generation_config.json)"
        },
    )
    log_every: int = field(
        default=10, metadata={"help": "log loss / tokens/s / lr every N steps"}
    )
    report_to: str = field(
        default="tensorboard",
        metadata={
            "help": "Accelerate tracker(s), comma-separated: tensorboard (RUN/logs), mlflow, wandb, ..., all (every installed one) or none; a tracker that is not installed is an error (pip install -e '.[tracking]' for mlflow and wandb)"
        },
    )
    tracking_dir: str | None = field(
        default=None,
        metadata={
            "help": "folder of the local MLflow store (SQLite mlflow.db + artifacts/) for --report-to mlflow; default: $MLFLOW_TRACKING_URI if set, else RUN/mlflow"
        },
    )


def parse_config(argv: list[str] | None, description: str | None = None) -> TrainConfig:
    """Parse flags into a TrainConfig (``--help`` documents every field)."""
    parser = HfArgumentParser(TrainConfig, description=description)
    (config,) = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    modeling.get_preset(config.preset)
    if config.arch not in modeling.ARCHS:
        raise UserError(
            f"unknown arch {config.arch!r}; choose one of {', '.join(modeling.ARCHS)}"
        )
    if config.scan_path not in modeling.SCAN_PATHS:
        raise UserError(
            f"unknown --scan-path {config.scan_path!r}; choose one of {modeling.SCAN_PATHS}"
        )
    if config.block_size < 8 or config.batch_size < 1 or config.grad_accum < 1:
        raise UserError("--block-size must be >= 8, --batch-size and --grad-accum >= 1")
    if config.threads < 0:
        raise UserError("--threads must be >= 0 (0 = choose from the usable cores)")
    if config.max_minutes is None:
        # --max-steps alone means that many steps whatever the machine's speed
        config.max_minutes = 0.0 if config.max_steps > 0 else DEFAULT_MAX_MINUTES
    if config.max_steps <= 0 and config.max_minutes <= 0 and config.epochs <= 0:
        raise UserError("give --max-steps, --max-minutes or --epochs")
    resolve_trackers(config.report_to, config.tracking_dir)
    return config


def run_folder(config: TrainConfig) -> Path:
    """runs/RUN_NAME (or --out)."""
    if config.out:
        return Path(config.out)
    return Path("runs") / (config.run_name or f"{config.arch}-{config.preset}")


def resolve_mixed_precision(choice: str) -> str:
    """Accelerate's mixed_precision for ``--mixed-precision`` (``auto`` resolved)."""
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # without native bf16 instructions CPU autocast emulates them, slower than fp32
    return "bf16" if cpu_has_native_bf16() else "no"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16)."""
    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # older torch
        return False
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def tracker_config(config: TrainConfig) -> dict:
    """The config as the hyperparameters of a tracker (which take only scalars)."""
    return {
        k: (v if isinstance(v, (int, float, str, bool)) else str(v))
        for k, v in asdict(config).items()
    }

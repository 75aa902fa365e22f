"""Train a Mamba language model on ABC tunes: `accelerate launch train.py [flags]`.

The loop is transformers' ``run_clm_no_trainer.py`` (Accelerate): tunes are packed
into fixed blocks with BOS/EOS around each tune, AdamW with warm-up + cosine,
``save_state`` checkpoints (atomic, last K kept, ``--resume``), TensorBoard logs.
With no flags on a fresh clone it builds ``data/corpus`` and its tokenizer, trains
the ``small`` preset inside a time budget, measures bits per character on the
validation split and the validity rate of sampled tunes, and saves
``runs/<name>/final`` for ``pipeline("text-generation", model=...)``.

Data-parallel on CPUs: ``accelerate launch --multi_gpu --num_processes 2 train.py``
(torchrun; train.py switches Accelerate to gloo when there is no GPU).  Accelerate
1.x's ``--cpu --num_processes 2`` starts a single process.

Fine-tuning on your own ABC/MIDI folder::

    python -m data_prep my_tunes/ --out data/mine
    accelerate launch train.py --init-from runs/mamba-small --data data/mine \
        --run-name mine --max-minutes 10 --lr 5e-4
    abcmamba generate --model runs/mine/final --out samples/

Bits per character: the summed negative log-likelihood (in bits) of every token
of every validation tune *including its closing EOS* (predicted from BOS + tune),
divided by the number of characters of the tune texts (EOS and BOS count zero
characters).  Tunes longer than ``--block-size`` tokens are scored in windows.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import GenerationConfig, HfArgumentParser, default_data_collator

from abcmamba import UserError, modeling
from abcmamba.abc import validate
from abcmamba.generate import AbcLogitsProcessor
from abcmamba.generate.conditions import KNOWN_VALUES_FILE, known_values
from abcmamba.generate.defaults import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_P,
)
from abcmamba.tokenizer import build_and_save, load_corpus_split, load_tokenizer

logger = logging.getLogger("train")

DEFAULT_DATA = "data/corpus"
STATE_FILE = "abcmamba_trainer_state.json"
RUN_FILE = "abcmamba_run.json"


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
            "help": "mamba (MambaForCausalLM), mamba2 (Mamba2ForCausalLM) or llama (Transformer baseline of matched size)"
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
            "help": "optimizer steps; 0 = as many as fit in --max-minutes (or --epochs)"
        },
    )
    max_minutes: float = field(
        default=30.0,
        metadata={
            "help": "training-time budget in minutes (0 = none); the cosine schedule is fitted to it"
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
            "help": "auto (bf16 on a GPU that has it, else fp32), no, bf16 or fp16"
        },
    )
    scan_path: str = field(
        default="auto",
        metadata={
            "help": "Mamba selective scan: auto, cuda (mamba-ssm), kernel (abcmamba CPU kernel), mambapy, sequential"
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
        metadata={"help": "Accelerate tracker(s): tensorboard, wandb, all, none"},
    )


def parse_config(argv: list[str] | None) -> TrainConfig:
    """Parse flags into a TrainConfig (``--help`` documents every field)."""
    parser = HfArgumentParser(TrainConfig, description=__doc__.split("\n\n")[0])
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
    if config.max_steps <= 0 and config.max_minutes <= 0 and config.epochs <= 0:
        raise UserError("give --max-steps, --max-minutes or --epochs")
    return config


# ---------------------------------------------------------------- data


def prepare_data(config: TrainConfig, accelerator: Accelerator) -> Path:
    """The corpus folder, built with data_prep when the default one is missing."""
    data = Path(config.data)
    with accelerator.main_process_first():
        if (
            not data.exists()
            and config.data == DEFAULT_DATA
            and accelerator.is_main_process
        ):
            logger.info("%s is missing: building it with `python -m data_prep`", data)
            from data_prep.__main__ import main as data_prep_main

            if data_prep_main(["--out", str(data)]) not in (0, None):
                raise UserError(f"data_prep failed to build {data}")
    if not data.exists():
        raise UserError(
            f"--data {data} does not exist (build it with `python -m data_prep --out {data}`)"
        )
    return data


def prepare_tokenizer(config: TrainConfig, data: Path, accelerator: Accelerator):
    """Load the tokenizer, training ``DATA/tokenizer`` first when it is missing."""
    if config.tokenizer:
        return load_tokenizer(config.tokenizer)
    if config.init_from:
        return _init_from_tokenizer(config.init_from)
    path = data / "tokenizer"
    with accelerator.main_process_first():
        if not (path / "tokenizer.json").is_file() and accelerator.is_main_process:
            logger.info(
                "training a %d-token tokenizer into %s", config.vocab_size, path
            )
            build_and_save(data, path, config.vocab_size)
    return load_tokenizer(path)


def _init_from_tokenizer(source: str):
    path = Path(source)
    if (path / "final").is_dir():
        path = path / "final"
    try:
        return load_tokenizer(path) if path.exists() else _hub_tokenizer(source)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - any loading failure is the user's input
        raise UserError(
            f"cannot load the tokenizer of --init-from {source}: {err}"
        ) from None


def _hub_tokenizer(repo_id: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(repo_id)


def tokenize_tunes(texts: list[str], tokenizer) -> list[list[int]]:
    """BOS + tune + EOS for every tune (BOS comes from the post-processor)."""
    # verbose=False: long tunes are cut into blocks later, not fed whole to the model
    ids = tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
    return [seq + [tokenizer.eos_token_id] for seq in ids]


def group_texts(sequences: list[list[int]], block_size: int) -> torch.Tensor:
    """Concatenate tunes and cut them into full blocks (the remainder is dropped)."""
    flat = [tok for seq in sequences for tok in seq]
    n_blocks = len(flat) // block_size
    return torch.tensor(flat[: n_blocks * block_size], dtype=torch.long).view(
        n_blocks, block_size
    )


class Blocks(torch.utils.data.Dataset):
    """Packed blocks as causal-LM examples (labels == input_ids; the model shifts)."""

    def __init__(self, blocks: torch.Tensor):
        self.blocks = blocks

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


# ---------------------------------------------------------------- model


def build_or_load_model(config: TrainConfig, tokenizer):
    """A fresh preset model, or the --init-from model with embeddings resized."""
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if not config.init_from:
        return modeling.build_model(
            config.arch, config.preset, len(tokenizer), config.scan_path, **special
        )
    from transformers import AutoModelForCausalLM

    source = Path(config.init_from)
    if (source / "final").is_dir():
        source = source / "final"
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(source) if source.exists() else config.init_from
        )
    except Exception as err:  # noqa: BLE001 - bad path, no network, not a model
        raise UserError(f"cannot load --init-from {config.init_from}: {err}") from None
    model_vocab = model.get_input_embeddings().weight.shape[0]
    if config.tokenizer:
        _check_vocab_extends(source, tokenizer, model_vocab)
    if len(tokenizer) > model_vocab:
        logger.info(
            "resizing embeddings %d -> %d for the larger tokenizer",
            model_vocab,
            len(tokenizer),
        )
        model.resize_token_embeddings(len(tokenizer))
    for key, value in special.items():
        setattr(model.config, key, value)
    if model.config.model_type == "mamba":
        modeling.configure_scan_path(model, config.scan_path)
    return model


def _check_vocab_extends(source: Path, tokenizer, model_vocab: int) -> None:
    """Refuse a tokenizer that does not extend the model's own vocabulary."""
    if len(tokenizer) < model_vocab:
        raise UserError(
            f"tokenizer has {len(tokenizer)} tokens but the --init-from model has {model_vocab}: "
            "use the model's tokenizer or one that extends it"
        )
    if (source / "tokenizer.json").is_file():
        old = load_tokenizer(source).get_vocab()
        new = tokenizer.get_vocab()
        mismatched = sum(new.get(tok) != idx for tok, idx in old.items())
        if mismatched:
            raise UserError(
                f"tokenizer does not match the --init-from model's vocabulary "
                f"({mismatched} of {len(old)} tokens differ): use the model's tokenizer"
            )


def _optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # norms, biases and the SSM's A_log / D are not regularised (as in Mamba's recipe)
        (decay if p.ndim >= 2 and "A_log" not in name else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))


class CosineSchedule:
    """Warm-up then cosine to ``floor``; ``total`` may be set after calibration.

    Holds only numbers: LambdaLR pickles a callable's ``__dict__`` into the
    checkpoint, and torch.load(weights_only=True) refuses arbitrary classes.
    """

    def __init__(self, config: TrainConfig, total: int, processes: int):
        self.warmup_steps = int(config.warmup_steps)
        self.floor = float(config.min_lr_ratio)
        self.total, self.processes = int(total), int(processes)

    def __call__(self, sched_step: int) -> float:
        # Accelerate steps a prepared scheduler once per process per optimizer step
        step = sched_step / self.processes
        total = max(1, self.total)
        warmup = min(self.warmup_steps, max(1, total // 10))
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------- checkpoints


def checkpoints(run_dir: Path) -> list[Path]:
    """Completed checkpoints of a run, oldest first (temporary folders excluded)."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step_")]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


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


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_bpc(
    model,
    tokenizer,
    texts: list[str],
    accelerator: Accelerator,
    block_size: int,
    batch_size: int,
) -> dict:
    """Bits per character and mean loss per token of ``texts`` (see module docstring)."""
    model.eval()
    windows: list[list[int]] = []
    for seq in tokenize_tunes(texts, tokenizer):
        # a window predicts its tokens 1..n from token 0; windows overlap by one token
        for start in range(0, max(1, len(seq) - 1), block_size):
            windows.append(seq[start : start + block_size + 1])
    windows.sort(key=len)
    nll = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    n_tok = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    with accelerator.split_between_processes(windows) as mine:
        for i in range(0, len(mine), batch_size):
            batch = mine[i : i + batch_size]
            width = max(len(w) for w in batch)
            ids = torch.full(
                (len(batch), width), tokenizer.pad_token_id, dtype=torch.long
            )
            labels = torch.full_like(ids, -100)
            for row, w in enumerate(batch):
                ids[row, : len(w)] = torch.tensor(w)
                labels[row, : len(w)] = torch.tensor(w)
            ids, labels = ids.to(accelerator.device), labels.to(accelerator.device)
            with accelerator.autocast():
                logits = model(
                    input_ids=ids
                ).logits.float()  # (B, L, V); right padding never leaks back
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]),
                labels[:, 1:].reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            nll += loss.double()
            n_tok += (labels[:, 1:] != -100).sum()
    nll = accelerator.reduce(nll, reduction="sum")
    n_tok = accelerator.reduce(n_tok, reduction="sum")
    model.train()
    n_chars = sum(len(t) for t in texts)
    return {
        "bpc": float(nll / math.log(2) / max(1, n_chars)),
        "loss": float(nll / max(1, n_tok)),
        "tokens": int(n_tok),
        "chars": n_chars,
    }


def generation_config(tokenizer, max_new_tokens: int) -> GenerationConfig:
    """Sampling defaults written next to the model: one tune, stop at EOS."""
    return GenerationConfig(
        do_sample=True,
        temperature=DEFAULT_TEMPERATURE,
        top_p=DEFAULT_TOP_P,
        max_new_tokens=max_new_tokens,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


@torch.no_grad()
def sample_validity(
    model, tokenizer, n: int, gen_config: GenerationConfig, seed: int
) -> tuple[dict[str, float], list[str]]:
    """Sample ``n`` tunes from ``X:1`` with plain ``model.generate``, without and
    with the ABC grammar (:class:`AbcLogitsProcessor`); returns the fraction
    valid of each and the constrained tunes."""
    model.eval()
    prompt = tokenizer("X:1\n", return_tensors="pt")["input_ids"].to(model.device)
    rates, tunes = {}, []
    for name in ("unconstrained", "constrained"):
        set_seed(seed)
        tunes = []
        for start in tqdm(range(0, n, 25), desc=f"sampling ({name})", leave=False):
            rows = min(25, n - start)
            processors = []
            if name == "constrained":
                processors = [
                    AbcLogitsProcessor(
                        tokenizer, max_new_tokens=gen_config.max_new_tokens
                    )
                ]
            out = model.generate(
                prompt.repeat(rows, 1),
                generation_config=gen_config,
                logits_processor=processors,
            )
            tunes += tokenizer.batch_decode(out, skip_special_tokens=True)
        rates[name] = sum(1 for t in tunes if not validate(t)) / max(1, len(tunes))
    model.train()
    return rates, tunes


def write_known_values(data: Path, folder: Path) -> None:
    """conditioning.json: the corpus spellings of composer and rhythm, with counts."""
    from datasets import load_from_disk

    train = load_from_disk(str(data))["train"]
    columns = {
        name: list(train[name])
        for name in ("composer", "rhythm")
        if name in train.column_names
    }
    (folder / KNOWN_VALUES_FILE).write_text(
        json.dumps(known_values(columns), indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )


# ---------------------------------------------------------------- training


def run_folder(config: TrainConfig) -> Path:
    """runs/RUN_NAME (or --out)."""
    if config.out:
        return Path(config.out)
    return Path("runs") / (config.run_name or f"{config.arch}-{config.preset}")


def _mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"  # CPU autocast to bf16 is slower than fp32 on most x86 cores


def train(config: TrainConfig) -> dict:
    """Run one training job end to end; return the metrics written to abcmamba_run.json."""
    run_dir = run_folder(config)
    # torchrun (`accelerate launch --multi_gpu`) on a machine without GPUs: Accelerate
    # only picks data-parallel gloo over CPUs when told it runs on the CPU
    cpu_ddp = (
        not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    )
    accelerator = Accelerator(
        cpu=cpu_ddp,
        gradient_accumulation_steps=config.grad_accum,
        mixed_precision=_mixed_precision(config.mixed_precision),
        log_with=None if config.report_to == "none" else config.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(run_dir), logging_dir=str(run_dir / "logs")
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    main = accelerator.is_main_process
    if config.resume:
        if not checkpoints(run_dir):
            raise UserError(f"--resume: no checkpoint in {run_dir / 'checkpoints'}")
    elif run_dir.exists() and any(run_dir.iterdir()):
        if not config.overwrite:
            raise UserError(
                f"run folder {run_dir} exists: pass --overwrite, --resume or another --run-name"
            )
        accelerator.wait_for_everyone()
        if main:
            shutil.rmtree(run_dir)
    accelerator.wait_for_everyone()
    set_seed(config.seed)

    data = prepare_data(config, accelerator)
    tokenizer = prepare_tokenizer(config, data, accelerator)
    train_texts = load_corpus_split(data, "train")
    val_texts = load_corpus_split(data, "validation")
    if not val_texts:
        raise UserError(f"--data {data} has an empty validation split")
    with accelerator.main_process_first():
        blocks = group_texts(tokenize_tunes(train_texts, tokenizer), config.block_size)
    if len(blocks) < config.batch_size * accelerator.num_processes:
        raise UserError(
            f"--data {data}: {len(blocks)} training blocks of {config.block_size} tokens, fewer than "
            f"one batch; lower --block-size / --batch-size or add tunes"
        )
    loader = DataLoader(
        Blocks(blocks),
        batch_size=config.batch_size,
        shuffle=True,
        collate_fn=default_data_collator,
        drop_last=True,
    )

    model = build_or_load_model(config, tokenizer)
    scan = modeling.describe_scan_path(model)
    params = modeling.count_params(model)
    logger.info(
        "%s %s: %.2fM parameters, scan path: %s, %d train blocks, %d processes",
        config.arch,
        config.preset,
        params / 1e6,
        scan,
        len(blocks),
        accelerator.num_processes,
    )
    optimizer = _optimizer(model, config)
    steps_per_epoch = max(
        1, len(loader) // (accelerator.num_processes * config.grad_accum)
    )
    epoch_steps = int(config.epochs * steps_per_epoch) if config.epochs > 0 else 10**9
    total = min(config.max_steps, epoch_steps) if config.max_steps > 0 else epoch_steps
    schedule = CosineSchedule(config, total, accelerator.num_processes)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model, optimizer, loader, scheduler = accelerator.prepare(
        model, optimizer, loader, scheduler
    )

    state = {
        "step": 0,
        "total_steps": total,
        "calibrated": config.max_steps > 0,
        "train_seconds": 0.0,
        "tokens_seen": 0,
        "loss": None,
    }
    if config.resume:
        state = load_checkpoint(accelerator, checkpoints(run_dir)[-1])
        schedule.total = state["total_steps"]
        logger.info("resumed from step %d of %d", state["step"], state["total_steps"])
    if config.report_to != "none":
        accelerator.init_trackers(
            "abcmamba",
            config={
                k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                for k, v in asdict(config).items()
            },
        )

    tokens_per_step = (
        config.batch_size
        * config.block_size
        * config.grad_accum
        * accelerator.num_processes
    )
    budget_s = config.max_minutes * 60 if config.max_minutes > 0 else math.inf
    bar = tqdm(
        total=schedule.total,
        initial=state["step"],
        desc="train",
        disable=not accelerator.is_local_main_process,
        dynamic_ncols=True,
    )
    model.train()
    step, epoch = state["step"], state["step"] // steps_per_epoch
    seg_start, seg_tokens, seg_time = time.time(), 0, state["train_seconds"]
    running = None
    while step < schedule.total:
        loader.set_epoch(epoch)
        skip = (step - epoch * steps_per_epoch) * config.grad_accum
        active = accelerator.skip_first_batches(loader, skip) if skip > 0 else loader
        for batch in active:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(
                        model.parameters(), config.max_grad_norm
                    )
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            step += 1
            seg_tokens += tokens_per_step
            loss_value = accelerator.reduce(loss.detach(), reduction="mean").item()
            running = (
                loss_value if running is None else 0.9 * running + 0.1 * loss_value
            )
            elapsed = seg_time + time.time() - seg_start
            tok_s = seg_tokens / max(1e-9, time.time() - seg_start)
            if (
                not state["calibrated"]
                and step in (5, 25)
                and budget_s < math.inf
                and step < schedule.total
            ):
                # fit the cosine to the time budget from the measured speed; once
                # early, then again from steps 5..25 (first steps pay for compiling)
                if step == 5:
                    per_step, state["t5"] = elapsed / step, elapsed
                else:
                    per_step = (elapsed - state["t5"]) / 20
                    state["calibrated"] = True
                fit = step + int((budget_s - elapsed) / per_step)
                schedule.total = max(step + 1, min(epoch_steps, fit))
                bar.total = schedule.total
                logger.info(
                    "%.2f s/step: %d steps fit in %.0f minutes",
                    per_step,
                    schedule.total,
                    config.max_minutes,
                )
            if state.get("first_loss") is None:
                state["first_loss"] = loss_value
            state.update(
                step=step,
                total_steps=schedule.total,
                train_seconds=elapsed,
                loss=loss_value,
                tokens_seen=state["tokens_seen"] + tokens_per_step,
            )
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}", tok_s=f"{tok_s:.0f}")
            if step % config.log_every == 0 or step == schedule.total:
                accelerator.log(
                    {
                        "train/loss": loss_value,
                        "train/tokens_per_s": tok_s,
                        "train/lr": scheduler.get_last_lr()[0],
                    },
                    step=step,
                )
            if config.eval_every and step % config.eval_every == 0:
                quick = evaluate_bpc(
                    model,
                    tokenizer,
                    val_texts[: config.eval_tunes],
                    accelerator,
                    config.block_size,
                    config.eval_batch_size,
                )
                accelerator.log(
                    {"val/bpc": quick["bpc"], "val/loss": quick["loss"]}, step=step
                )
                logger.info(
                    "step %d: val bpc %.3f (%d tunes)",
                    step,
                    quick["bpc"],
                    len(val_texts[: config.eval_tunes]),
                )
            out_of_time = elapsed >= budget_s
            if config.save_every and (
                step % config.save_every == 0 or step == schedule.total or out_of_time
            ):
                save_checkpoint(accelerator, run_dir, state, config.keep_last)
            if step >= schedule.total or out_of_time:
                break
        else:
            epoch += 1
            continue
        if elapsed >= budget_s and step < schedule.total:
            logger.warning(
                "time budget of %.1f minutes reached at step %d of %d",
                config.max_minutes,
                step,
                schedule.total,
            )
        break
    bar.close()
    return finish(
        config,
        accelerator,
        model,
        tokenizer,
        run_dir,
        state,
        val_texts,
        data,
        scan,
        params,
    )


def finish(
    config, accelerator, model, tokenizer, run_dir, state, val_texts, data, scan, params
) -> dict:
    """Final validation bpc, samples, and the save_pretrained folder runs/NAME/final."""
    texts = (
        val_texts[: config.final_eval_tunes]
        if config.final_eval_tunes > 0
        else val_texts
    )
    t0 = time.time()
    result = evaluate_bpc(
        model, tokenizer, texts, accelerator, config.block_size, config.eval_batch_size
    )
    logger.info(
        "validation: %.4f bits/char, %.4f nats/token over %d tunes (%.0f s)",
        result["bpc"],
        result["loss"],
        len(texts),
        time.time() - t0,
    )
    unwrapped = accelerator.unwrap_model(model)
    gen_config = generation_config(tokenizer, config.max_new_tokens)
    metrics = {
        "val_bpc": result["bpc"],
        "val_loss": result["loss"],
        "val_tunes": len(texts),
        "val_tokens": result["tokens"],
        "val_chars": result["chars"],
        "train_loss": state["loss"],
        "first_train_loss": state.get("first_loss"),
        "steps": state["step"],
        "tokens_seen": state["tokens_seen"],
        "train_seconds": round(state["train_seconds"], 1),
        "tokens_per_s": round(
            state["tokens_seen"] / max(1e-9, state["train_seconds"]), 1
        ),
        "scan_path": scan,
        "num_processes": accelerator.num_processes,
        "validity_rate": None,
        "validity_rate_unconstrained": None,
        "n_samples": 0,
    }
    final = run_dir / "final"
    if accelerator.is_main_process:
        if config.n_samples > 0:
            rates, tunes = sample_validity(
                unwrapped, tokenizer, config.n_samples, gen_config, config.seed
            )
            metrics.update(
                validity_rate=rates["constrained"],
                validity_rate_unconstrained=rates["unconstrained"],
                n_samples=len(tunes),
            )
            (run_dir / "samples.abc").write_text(
                "\n".join(t.rstrip("\n") + "\n" for t in tunes)
            )
            logger.info(
                "validity of %d samples: %.0f%% with the ABC grammar, %.0f%% without",
                len(tunes),
                100 * rates["constrained"],
                100 * rates["unconstrained"],
            )
        tmp = run_dir / "final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        unwrapped.save_pretrained(str(tmp), save_function=accelerator.save)
        tokenizer.save_pretrained(str(tmp))
        gen_config.save_pretrained(str(tmp))
        write_known_values(data, tmp)
        manifest = data / "manifest.json"
        record = {
            "train_config": asdict(config),
            "metrics": metrics,
            "data_manifest": (
                json.loads(manifest.read_text()) if manifest.is_file() else None
            ),
            "params": params,
            "arch": config.arch,
            "preset": config.preset,
            "bpc_definition": "NLL in bits of every token of each validation tune incl. its EOS, "
            "given BOS, divided by the characters of the tune texts",
        }
        (tmp / RUN_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        logger.info("saved %s", final)
    accelerator.wait_for_everyone()
    accelerator.log({"final/val_bpc": metrics["val_bpc"]}, step=state["step"])
    accelerator.end_training()
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Parse flags, train, print the final metrics; user errors exit 2 with one line."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = parse_config(argv)
        metrics = train(config)
    except UserError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

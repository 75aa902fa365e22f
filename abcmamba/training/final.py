"""The end of a run: validation bpc, sampled tunes, and the ``final`` folder.

``runs/NAME/final`` is a ``save_pretrained`` folder that loads with
``pipeline("text-generation", model=...)``: weights, tokenizer, sampling
defaults (``generation_config.json``), the corpus spellings of composer and
rhythm, and ``RUN_FILE`` with the config and metrics of the run.

The weights are saved as Accelerate documents for sharded models (FSDP,
DeepSpeed ZeRO-3): ``accelerator.get_state_dict`` on every process, then
``save_pretrained(state_dict=..., is_main_process=...)``; the end-of-run tunes
are sampled from that saved folder, not from the main process's own module,
which under sharding holds only its shard.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from abcmamba import RUN_FILE
from abcmamba.abc import validate
from abcmamba.evaluate.bpc import bits_per_character
from abcmamba.generate import AbcLogitsProcessor
from abcmamba.generate.conditions import KNOWN_VALUES_FILE, known_values
from abcmamba.generate.defaults import DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from abcmamba.training.config import TrainConfig
from abcmamba.training.schedule import short_run_warning

logger = logging.getLogger(__name__)

BPC_DEFINITION = (
    "NLL in bits of every token of each validation tune incl. its EOS, "
    "given BOS, divided by the characters of the tune texts"
)


@dataclass
class TrainedRun:
    """What the end of a run needs from the training loop."""

    config: TrainConfig
    accelerator: Accelerator
    model: torch.nn.Module
    """The prepared (possibly wrapped) model."""
    tokenizer: PreTrainedTokenizerBase
    run_dir: Path
    data: Path
    """The corpus folder (its manifest and known values go into ``final``)."""
    val_texts: list[str]
    state: dict
    """The trainer state: step, tokens_seen, train_seconds, loss, first_loss."""
    scan: str
    """The scan path the model trained with."""
    params: int


def sharded(accelerator: Accelerator) -> bool:
    """Whether each process holds only a shard of the weights (FSDP, DeepSpeed ZeRO-3)."""
    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return accelerator.state.deepspeed_plugin.zero_stage == 3
    return False


def validation_bpc(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    config: TrainConfig,
    accelerator: Accelerator,
    progress: bool = False,
) -> dict:
    """Validation bpc of the training model, in windows of block_size + 1 tokens."""
    # split between the processes, each scoring with the bare module, unless the
    # weights are sharded: then the bare module lacks them and every forward
    # gathers them from all processes, so each process scores every window
    # through the wrapper (same calls everywhere, same result)
    split = None if sharded(accelerator) else accelerator
    # block_size + 1: a window predicts block_size tokens, as a training block does
    result = bits_per_character(
        model,
        tokenizer,
        texts,
        batch_size=config.eval_batch_size,
        max_length=config.block_size + 1,
        progress=progress and accelerator.is_local_main_process,
        accelerator=split,
    )
    result["loss"] = result["bits_per_token"] * math.log(2)  # nats per token
    return result


def generation_config(
    tokenizer: PreTrainedTokenizerBase, max_new_tokens: int
) -> GenerationConfig:
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
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n: int,
    gen_config: GenerationConfig,
    seed: int,
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
    from abcmamba.tokenizer import load_corpus

    train = load_corpus(data, "train")["train"]
    columns = {
        name: list(train[name])
        for name in ("composer", "rhythm")
        if name in train.column_names
    }
    (folder / KNOWN_VALUES_FILE).write_text(
        json.dumps(known_values(columns), indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )


def release_model(run: TrainedRun) -> None:
    """Drop every reference to the prepared model while the process group lives.

    A DDP wrapper that outlives ``end_training`` is destroyed at interpreter
    exit, after its gloo process group, and its reducer can then hang joining
    gloo's threads (seen in the two-process CPU test).
    """
    run.model = None
    run.accelerator.free_memory()  # its own list of prepared models, then gc


def finish(run: TrainedRun) -> dict:
    """Final validation bpc, samples, and the save_pretrained folder runs/NAME/final."""
    config, accelerator, state = run.config, run.accelerator, run.state
    texts = (
        run.val_texts[: config.final_eval_tunes]
        if config.final_eval_tunes > 0
        else run.val_texts
    )
    t0 = time.time()
    result = validation_bpc(
        run.model, run.tokenizer, texts, config, accelerator, progress=True
    )
    logger.info(
        "validation: %.4f bits/char, %.4f nats/token over %d tunes (%.0f s)",
        result["bpc"],
        result["loss"],
        len(texts),
        time.time() - t0,
    )
    metrics = {
        "val_bpc": result["bpc"],
        "val_loss": result["loss"],
        "val_tunes": len(texts),
        "val_tokens": result["tokens"],
        "val_chars": result["characters"],
        "train_loss": state["loss"],
        "first_train_loss": state.get("first_loss"),
        "steps": state["step"],
        "tokens_seen": state["tokens_seen"],
        "train_seconds": round(state["train_seconds"], 1),
        "tokens_per_s": round(
            state["tokens_seen"] / max(1e-9, state["train_seconds"]), 1
        ),
        "planned_steps": state["total_steps"],
        "short_run_warning": short_run_warning(state, config.max_minutes or 0.0),
        "scan_path": run.scan,
        "mixed_precision": accelerator.mixed_precision,
        "num_processes": accelerator.num_processes,
        "validity_rate": None,
        "validity_rate_unconstrained": None,
        "n_samples": 0,
    }
    # every process takes part: under FSDP / ZeRO-3 this gathers the shards
    # (the full weights land on the main process only)
    state_dict = accelerator.get_state_dict(run.model)
    if accelerator.is_main_process:
        _save_final(run, metrics, state_dict)
    accelerator.wait_for_everyone()
    accelerator.log(
        {
            f"final/{name}": value
            for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        },
        step=state["step"],
    )
    release_model(run)
    accelerator.end_training()
    if metrics["short_run_warning"] and accelerator.is_main_process:
        # last, after the long final evaluation, where it cannot scroll away
        logger.warning("SHORT RUN: %s", metrics["short_run_warning"])
    return metrics


def _save_final(run: TrainedRun, metrics: dict, state_dict: dict) -> None:
    """Write ``final`` atomically with the gathered weights, sampling tunes from
    it into samples.abc on the way (main process)."""
    config, run_dir, accelerator = run.config, run.run_dir, run.accelerator
    # with --save-every 0 and --report-to none nothing has created the folder yet
    run_dir.mkdir(parents=True, exist_ok=True)
    gen_config = generation_config(run.tokenizer, config.max_new_tokens)
    tmp, final = run_dir / "final.tmp", run_dir / "final"
    shutil.rmtree(tmp, ignore_errors=True)
    accelerator.unwrap_model(run.model).save_pretrained(
        str(tmp),
        is_main_process=accelerator.is_main_process,
        state_dict=state_dict,
        save_function=accelerator.save,
    )
    run.tokenizer.save_pretrained(str(tmp))
    gen_config.save_pretrained(str(tmp))
    write_known_values(run.data, tmp)
    if config.n_samples > 0:
        _sample_saved(run, tmp, gen_config, metrics)
    manifest = run.data / "manifest.json"
    record = {
        "train_config": asdict(config),
        "metrics": metrics,
        "data_manifest": (
            json.loads(manifest.read_text()) if manifest.is_file() else None
        ),
        "params": run.params,
        "arch": config.arch,
        "preset": config.preset,
        "bpc_definition": BPC_DEFINITION,
    }
    (tmp / RUN_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    logger.info("saved %s", final)


def _sample_saved(
    run: TrainedRun, folder: Path, gen_config: GenerationConfig, metrics: dict
) -> None:
    """Sample --n-samples tunes from the model saved in ``folder`` into samples.abc."""
    config = run.config
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    rates, tunes = sample_validity(
        model.to(run.accelerator.device),
        run.tokenizer,
        config.n_samples,
        gen_config,
        config.seed,
    )
    metrics.update(
        validity_rate=rates["constrained"],
        validity_rate_unconstrained=rates["unconstrained"],
        n_samples=len(tunes),
    )
    (run.run_dir / "samples.abc").write_text(
        "\n".join(t.rstrip("\n") + "\n" for t in tunes)
    )
    logger.info(
        "validity of %d samples: %.0f%% with the ABC grammar, %.0f%% without",
        len(tunes),
        100 * rates["constrained"],
        100 * rates["unconstrained"],
    )

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
import os
import sys
import time
from pathlib import Path

import abcmamba  # noqa: F401  before torch: it shortens libgomp's spin (see there)

# isort: split
import torch
from accelerate import Accelerator
from accelerate.utils import (
    DataLoaderConfiguration,
    DistributedType,
    ProjectConfiguration,
    set_seed,
)
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from abcmamba import RUN_FILE, UserError, modeling
from abcmamba.training.checkpoints import (
    prepare_run_folder,
    save_checkpoint,
    start_state,
)
from abcmamba.training.config import (
    TrainConfig,
    parse_config,
    resolve_mixed_precision,
    run_folder,
    tracker_config,
)
from abcmamba.training.data import (
    load_splits,
    prepare_data,
    prepare_tokenizer,
    train_loader,
)
from abcmamba.training.final import TrainedRun, finish, validation_bpc
from abcmamba.training.loss import fused_loss, fused_loss_matches, model_loss
from abcmamba.training.malloc import keep_freed_memory
from abcmamba.training.model import build_optimizer, build_or_load_model
from abcmamba.training.schedule import CosineSchedule, TimeBudget, plan_steps
from abcmamba.training.threads import choose_cpu_threads
from abcmamba.training.tracking import resolve_trackers, start_trackers

# RUN_FILE and TrainConfig stay importable from train.py, where scripts looked first
__all__ = ["RUN_FILE", "TrainConfig", "main", "train"]

logger = logging.getLogger("train")


def make_accelerator(config: TrainConfig, run_dir: Path) -> Accelerator:
    """The run's Accelerator: gradient accumulation, mixed precision, trackers."""
    # torchrun (`accelerate launch --multi_gpu`) on a machine without GPUs: Accelerate
    # only picks data-parallel gloo over CPUs when told it runs on the CPU
    cpu_ddp = (
        not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    )
    if cpu_ddp and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        # Accelerate 1.x shards only over accelerators: on CPU processes
        # `--use_fsdp` fails inside it (sync_module_states) or trains plain DDP
        raise UserError(
            "FSDP needs GPUs (Accelerate does not shard over CPU processes): use "
            "`accelerate launch --multi_gpu --num_processes N` for data-parallel "
            "training on CPUs"
        )
    return Accelerator(
        cpu=cpu_ddp,
        gradient_accumulation_steps=config.grad_accum,
        mixed_precision=resolve_mixed_precision(config.mixed_precision),
        log_with=resolve_trackers(config.report_to, config.tracking_dir) or None,
        project_config=ProjectConfiguration(
            project_dir=str(run_dir), logging_dir=str(run_dir / "logs")
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )


def choose_loss(
    config: TrainConfig, accelerator: Accelerator, model, inner, loader
) -> bool:
    """Whether the run uses abcmamba.training.loss.fused_loss (checked on two
    training blocks against the model's own loss) or the model's own."""
    if not config.fused_loss:
        return False
    if accelerator.distributed_type in (
        DistributedType.FSDP,
        DistributedType.DEEPSPEED,
    ):
        logger.info("loss: the model's own (the LM head's weight is sharded)")
        return False
    blocks = [loader.dataset[i] for i in range(min(2, len(loader.dataset)))]
    batch = {
        k: torch.stack([b[k] for b in blocks]).to(accelerator.device) for k in blocks[0]
    }
    ok, ref, got = fused_loss_matches(model, inner, batch, accelerator.autocast())
    if not ok:
        logger.warning(
            "loss: the model's own; the chunked loss gave %.5f where %s gives %.5f",
            got,
            type(inner).__name__,
            ref,
        )
        return False
    logger.info(
        "loss: chunked from the LM head's input (%.5f, the model's %.5f)", got, ref
    )
    return True


def train(config: TrainConfig) -> dict:
    """Run one training job end to end; return the metrics written to abcmamba_run.json."""
    run_dir = run_folder(config)
    accelerator = make_accelerator(config, run_dir)
    if accelerator.device.type == "cpu":
        # torchrun names the processes on this machine; one machine otherwise
        local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
        threads, why = choose_cpu_threads(config.threads, local)
        torch.set_num_threads(threads)  # the scan kernel follows torch's count
        logger.info("CPU threads per process: %d (%s)", threads, why)
        logger.info("malloc: %s", keep_freed_memory())
    prepare_run_folder(config, run_dir, accelerator)
    set_seed(config.seed)

    data = prepare_data(config, accelerator)
    tokenizer = prepare_tokenizer(config, data, accelerator)
    train_texts, val_texts = load_splits(data)
    loader = train_loader(config, train_texts, tokenizer, accelerator)
    model = build_or_load_model(config, tokenizer)
    params = modeling.count_params(model)  # before FSDP can shard it
    optimizer = build_optimizer(model, config)
    plan = plan_steps(config, len(loader), accelerator.num_processes)
    schedule = CosineSchedule(config, plan.total, accelerator.num_processes)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model, optimizer, loader, scheduler = accelerator.prepare(
        model, optimizer, loader, scheduler
    )
    # chosen on the device prepare put the model on: a scan picked on the CPU
    # before the move (the CPU kernel) would not be the one that runs on a GPU
    inner = accelerator.unwrap_model(model)  # the causal LM inside any wrapper
    scan = modeling.configure_scan_path(inner, config.scan_path)
    logger.info(
        "%s %s: %.2fM parameters, scan path: %s, mixed precision: %s, "
        "%d train blocks, %d processes",
        config.arch,
        config.preset,
        params / 1e6,
        scan,
        accelerator.mixed_precision,
        len(loader.dataset),
        accelerator.num_processes,
    )

    use_fused = choose_loss(config, accelerator, model, inner, loader)

    state = start_state(config, accelerator, run_dir, plan.total)
    schedule.total = state["total_steps"]
    budget = TimeBudget.from_state(config, plan.epoch_steps, state)
    start_trackers(
        accelerator,
        resolve_trackers(config.report_to, config.tracking_dir),
        tracker_config(config),
        run_dir,
        config.tracking_dir,
        state,
    )

    bar = tqdm(
        total=schedule.total,
        initial=state["step"],
        desc="train",
        disable=not accelerator.is_local_main_process,
        dynamic_ncols=True,
    )
    model.train()
    step, epoch = state["step"], state["step"] // plan.steps_per_epoch
    seg_start, seg_tokens, seg_time = time.time(), 0, state["train_seconds"]
    # this process's losses since the last log step, for the progress bar
    loss_sum, loss_count, shown_loss = 0.0, 0, "-"
    while step < schedule.total:
        loader.set_epoch(epoch)
        skip = (step - epoch * plan.steps_per_epoch) * config.grad_accum
        active = accelerator.skip_first_batches(loader, skip) if skip > 0 else loader
        for batch in active:
            with accelerator.accumulate(model):
                # no inference cache while training: xLSTM (transformers 5.x) builds
                # one by default and overwrites its initial state in place, which
                # breaks backward (abcmamba/xlstm.py); Mamba skips it in training
                # anyway and Llama's would only hold keys and values nobody reads
                if use_fused:
                    loss = fused_loss(model, inner, batch, accelerator.autocast())
                else:
                    loss = model_loss(model, batch)
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
            seg_tokens += plan.tokens_per_step
            loss_sum, loss_count = loss_sum + loss.detach().float(), loss_count + 1
            elapsed = seg_time + time.time() - seg_start
            tok_s = seg_tokens / max(1e-9, time.time() - seg_start)
            fitted = budget.fit(step, elapsed, schedule.total)
            if fitted is not None:
                schedule.total = bar.total = fitted
                state.update(budget.state())
            out_of_time = elapsed >= budget.seconds
            log_now = step % config.log_every == 0 or step == schedule.total
            state.update(
                step=step,
                total_steps=schedule.total,
                train_seconds=elapsed,
                tokens_seen=state["tokens_seen"] + plan.tokens_per_step,
            )
            if log_now or out_of_time or state.get("first_loss") is None:
                # the loss crosses processes only here, not every step: the run
                # record's first_train_loss / train_loss are the mean over the
                # processes of the loss at the first / last step, as before
                state["loss"] = accelerator.reduce(loss.detach(), "mean").item()
                if state.get("first_loss") is None:
                    state["first_loss"] = state["loss"]
                shown_loss = f"{float(loss_sum) / loss_count:.3f}"
            if log_now:
                accelerator.log(
                    {
                        "train/loss": state["loss"],
                        "train/tokens_per_s": tok_s,
                        "train/lr": scheduler.get_last_lr()[0],
                    },
                    step=step,
                )
                loss_sum, loss_count = 0.0, 0
            bar.update(1)
            bar.set_postfix(loss=shown_loss, tok_s=f"{tok_s:.0f}")
            if config.eval_every and step % config.eval_every == 0:
                quick_eval(model, tokenizer, val_texts, config, accelerator, step)
            if config.save_every and (
                step % config.save_every == 0 or step == schedule.total or out_of_time
            ):
                save_checkpoint(accelerator, run_dir, state, config.keep_last)
            if step >= schedule.total or out_of_time:
                break
        else:
            epoch += 1
            continue
        if out_of_time and step < schedule.total:
            logger.warning(
                "time budget of %.1f minutes reached at step %d of %d",
                config.max_minutes,
                step,
                schedule.total,
            )
        break
    bar.close()
    run = TrainedRun(
        config=config,
        accelerator=accelerator,
        model=model,
        tokenizer=tokenizer,
        run_dir=run_dir,
        data=data,
        val_texts=val_texts,
        state=state,
        scan=scan,
        params=params,
    )
    del model  # finish() must be able to free the DDP wrapper: see release_model
    return finish(run)


def quick_eval(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    val_texts: list[str],
    config: TrainConfig,
    accelerator: Accelerator,
    step: int,
) -> None:
    """Log the validation bpc of the first --eval-tunes tunes."""
    texts = val_texts[: config.eval_tunes]
    quick = validation_bpc(model, tokenizer, texts, config, accelerator)
    accelerator.log({"val/bpc": quick["bpc"], "val/loss": quick["loss"]}, step=step)
    logger.info("step %d: val bpc %.3f (%d tunes)", step, quick["bpc"], len(texts))


def main(argv: list[str] | None = None) -> int:
    """Parse flags, train, print the final metrics; user errors exit 2 with one line."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = parse_config(argv, description=__doc__.split("\n\n")[0])
        metrics = train(config)
    except UserError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The model to train and its optimizer: a fresh preset or an ``--init-from`` model."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from abcmamba import UserError, modeling
from abcmamba.tokenizer import load_tokenizer
from abcmamba.training.config import TrainConfig

logger = logging.getLogger(__name__)


def build_or_load_model(
    config: TrainConfig, tokenizer: PreTrainedTokenizerBase
) -> PreTrainedModel:
    """A fresh preset model, or the --init-from model with embeddings resized.

    Its scan path is chosen later, by train.py once ``accelerator.prepare`` has
    put the model on its device: a scan chosen on the CPU may not run on a GPU.
    """
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if not config.init_from:
        model = modeling.build_model(
            config.arch, config.preset, len(tokenizer), scan_path=None, **special
        )
        return _fit_positions(model, config.block_size)
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
        check_vocab_extends(source, tokenizer, model_vocab)
    if len(tokenizer) > model_vocab:
        logger.info(
            "resizing embeddings %d -> %d for the larger tokenizer",
            model_vocab,
            len(tokenizer),
        )
        model.resize_token_embeddings(len(tokenizer))
    for key, value in special.items():
        setattr(model.config, key, value)
    return _fit_positions(model, config.block_size)


def _fit_positions(model: PreTrainedModel, block_size: int) -> PreTrainedModel:
    """Let a position-limited model (Llama) take blocks longer than its preset's limit.

    Rotary positions have no table to grow, so only the recorded limit changes;
    Mamba and xLSTM have no positions.
    """
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and limit < block_size:
        logger.info(
            "max_position_embeddings %d -> %d for --block-size", limit, block_size
        )
        model.config.max_position_embeddings = block_size
    return model


def check_vocab_extends(
    source: Path, tokenizer: PreTrainedTokenizerBase, model_vocab: int
) -> None:
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


def build_optimizer(
    model: torch.nn.Module, config: TrainConfig
) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # norms, biases and the SSM's A_log / D are not regularised (as in Mamba's recipe)
        (decay if p.ndim >= 2 and "A_log" not in name else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95))

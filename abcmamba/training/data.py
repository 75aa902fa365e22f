"""Training data: the corpus folder, its tokenizer, and tunes packed into blocks.

As in transformers' ``run_clm_no_trainer.py``, every tune becomes
BOS + tune + EOS, the tunes are concatenated and cut into ``block_size`` blocks
(``group_texts``), and the remainder is dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase, default_data_collator

from abcmamba import UserError
from abcmamba.tokenizer import build_and_save, load_corpus_split, load_tokenizer
from abcmamba.training.config import DEFAULT_DATA, TrainConfig

logger = logging.getLogger(__name__)


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


def prepare_tokenizer(
    config: TrainConfig, data: Path, accelerator: Accelerator
) -> PreTrainedTokenizerBase:
    """Load the tokenizer, training ``DATA/tokenizer`` first when it is missing."""
    if config.tokenizer:
        return load_tokenizer(config.tokenizer)
    if config.init_from:
        return init_from_tokenizer(config.init_from)
    path = data / "tokenizer"
    with accelerator.main_process_first():
        if not (path / "tokenizer.json").is_file() and accelerator.is_main_process:
            logger.info(
                "training a %d-token tokenizer into %s", config.vocab_size, path
            )
            build_and_save(data, path, config.vocab_size)
    return load_tokenizer(path)


def init_from_tokenizer(source: str) -> PreTrainedTokenizerBase:
    """The tokenizer of an ``--init-from`` model folder, run folder or Hub id."""
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


def _hub_tokenizer(repo_id: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(repo_id)


def load_splits(data: Path) -> tuple[list[str], list[str]]:
    """The train and validation tunes; training refuses to start without both."""
    train = load_corpus_split(data, "train")
    validation = load_corpus_split(data, "validation")
    if not validation:
        raise UserError(f"--data {data} has an empty validation split")
    return train, validation


def tokenize_tunes(
    texts: list[str], tokenizer: PreTrainedTokenizerBase
) -> list[list[int]]:
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
    )  # (n_blocks, block_size)


class Blocks(torch.utils.data.Dataset):
    """Packed blocks as causal-LM examples (labels == input_ids; the model shifts)."""

    def __init__(self, blocks: torch.Tensor):
        self.blocks = blocks

    def __len__(self) -> int:
        return self.blocks.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.blocks[i], "labels": self.blocks[i]}


def train_loader(
    config: TrainConfig,
    texts: list[str],
    tokenizer: PreTrainedTokenizerBase,
    accelerator: Accelerator,
) -> DataLoader:
    """Shuffled batches of packed training blocks (not yet ``accelerator.prepare``-d)."""
    with accelerator.main_process_first():
        blocks = group_texts(tokenize_tunes(texts, tokenizer), config.block_size)
    if len(blocks) < config.batch_size * accelerator.num_processes:
        raise UserError(
            f"--data {config.data}: {len(blocks)} training blocks of {config.block_size} tokens, "
            f"fewer than one batch; lower --block-size / --batch-size or add tunes"
        )
    return DataLoader(
        Blocks(blocks),
        batch_size=config.batch_size,
        shuffle=True,
        collate_fn=default_data_collator,
        drop_last=True,
    )

"""Bits per character and per token of a causal language model on ABC tunes.

How a tune is counted:
- it is tokenized with the model's tokenizer (whose post-processor adds BOS)
  and EOS is appended when the tokenizer did not add one;
- BOS is context only: it is never predicted, so it adds no bits and no token;
- every other token, EOS included, is predicted and its negative log
  likelihood is summed, so ``tokens`` = len(ids) - 1 per tune;
- characters are the tune's Unicode characters (``len(abc)``, trailing
  newline included); EOS adds bits but no character, which makes the model
  pay for knowing where a tune ends.
bpc = total NLL bits / total characters, bits per token = total bits / tokens,
summed over the whole set (not an average of per-tune ratios).

Tunes longer than ``max_length`` tokens are scored in consecutive windows;
the first token of each window is context only, so every token is counted
once but loses the context before its window.

train.py measures its validation bpc with this same function, passing its
``Accelerator`` so that the windows are split between the processes. The
forward passes run without the run's mixed-precision autocast, in the weights'
dtype, so the bpc a run reports is the one anyone re-scoring its saved model
gets (bf16 autocast moved it by ~3e-5 bpc on the default corpus).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)


def encode_tune(tokenizer, text: str) -> list[int]:
    """Token ids of one tune: BOS (from the tokenizer) + tune + EOS."""
    return encode_tunes(tokenizer, [text])[0]


def encode_tunes(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each tune: BOS (from the tokenizer) + tune + EOS."""
    # one batched call (the fast tokenizer runs it in parallel); verbose=False
    # because tunes longer than the model's context are scored in windows
    batch = tokenizer(list(texts), add_special_tokens=True, verbose=False)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    encoded = []
    for ids in batch["input_ids"]:
        ids = list(ids)
        if bos is not None and (not ids or ids[0] != bos):
            ids.insert(0, bos)
        if eos is not None and ids[-1] != eos:
            ids.append(eos)
        encoded.append(ids)
    return encoded


def _windows(ids: list[int], max_length: int) -> list[list[int]]:
    """Split into windows of at most max_length that overlap by one context token."""
    if len(ids) <= max_length:
        return [ids]
    step = max_length - 1
    return [
        ids[s : s + max_length]
        for s in range(0, len(ids) - 1, step)
        if len(ids[s:]) > 1
    ]


# no_grad rather than inference_mode: training calls this between optimizer
# steps, and an inference tensor cached by a module would break the next backward
@torch.no_grad()
def sequence_nll_bits(
    model,
    sequences: Sequence[list[int]],
    batch_size: int = 8,
    pad_id: int = 0,
    progress: bool = True,
) -> list[float]:
    """Sum of NLL in bits over positions 1..L-1 of each sequence (position 0 is context)."""
    device = next(model.parameters()).device
    # without the mixed-precision autocast accelerate.prepare wraps around the
    # forward of train.py's model: the scores are those of the weights' dtype
    forward = model.__dict__.get("_original_forward") or model
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    bits = [0.0] * len(sequences)
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="bpc", unit="batch", disable=not progress):
        width = len(sequences[batch[0]])
        # right padding: for a causal model the real tokens never see the pads
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # (B, L)
        mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, L)
        for row, i in enumerate(batch):
            seq = sequences[i]
            input_ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        logits = forward(input_ids=input_ids, attention_mask=mask).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)  # (B, L-1, V)
        target = input_ids[:, 1:]  # (B, L-1)
        nll = -logprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B, L-1)
        nll = (nll * mask[:, 1:]).sum(dim=1) / math.log(2)  # (B,)
        for row, i in enumerate(batch):
            bits[i] = float(nll[row])
    return bits


def _score_windows(
    model,
    windows: list[list[int]],
    owner: list[int],
    n_texts: int,
    batch_size: int,
    pad_id: int,
    progress: bool,
    accelerator: Accelerator | None,
) -> list[float]:
    """NLL bits of each text, summed over its windows (and over the processes)."""
    mine = list(range(len(windows)))
    if accelerator is not None:
        with accelerator.split_between_processes(mine) as share:
            mine = list(share)
    was_training = model.training
    model.eval()
    try:
        window_bits = sequence_nll_bits(
            model, [windows[i] for i in mine], batch_size, pad_id, progress
        )
    finally:
        model.train(was_training)
    bits_per_text = [0.0] * n_texts
    for i, b in zip(mine, window_bits, strict=True):
        bits_per_text[owner[i]] += b
    if accelerator is None:
        return bits_per_text
    summed = torch.tensor(bits_per_text, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(summed, reduction="sum").tolist()


def bits_per_character(
    model,
    tokenizer,
    texts: Sequence[str],
    sources: Sequence[str] | None = None,
    batch_size: int = 8,
    max_length: int = 2048,
    progress: bool = True,
    accelerator: Accelerator | None = None,
) -> dict:
    """Bits per character and per token over `texts`, overall and per source."""
    if not texts:
        raise ValueError("no texts to score")
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    if accelerator is not None:
        # the bare model: a DDP wrapper would sync buffers on every forward, and
        # the processes run different numbers of batches
        model = accelerator.unwrap_model(model)
        progress = progress and accelerator.is_local_main_process
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and max_length > limit:
        # a Transformer cannot score past its positions; Mamba has no such limit
        max_length = int(limit)
    sources = list(sources) if sources is not None else ["all"] * len(texts)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    windows: list[list[int]] = []
    owner: list[int] = []
    tokens_per_text: list[int] = []
    for t, ids in enumerate(encode_tunes(tokenizer, texts)):
        tokens_per_text.append(len(ids) - 1)
        for window in _windows(ids, max_length):
            windows.append(window)
            owner.append(t)
    bits_per_text = _score_windows(
        model, windows, owner, len(texts), batch_size, pad_id, progress, accelerator
    )

    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0, 0])
    for text, source, b, n_tok in zip(
        texts, sources, bits_per_text, tokens_per_text, strict=True
    ):
        for key in ("__all__", str(source)):
            acc = totals[key]
            acc[0] += b
            acc[1] += len(text)
            acc[2] += n_tok
            acc[3] += 1

    def summary(acc: list[float]) -> dict:
        bits, chars, tokens, tunes = acc
        return {
            "bpc": bits / chars if chars else float("nan"),
            "bits_per_token": bits / tokens if tokens else float("nan"),
            "bits": bits,
            "characters": int(chars),
            "tokens": int(tokens),
            "tunes": int(tunes),
        }

    result = summary(totals.pop("__all__"))
    result["per_source"] = {
        source: summary(acc) for source, acc in sorted(totals.items())
    }
    result["per_tune_bits"] = bits_per_text
    return result

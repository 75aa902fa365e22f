"""The sampling loop: batched, over the model's cache, one token per step.

Each row of the batch is steered by a controller: :class:`ConstrainedRow`
(the default: the ABC grammar, every tune valid) or :class:`GuardedRow`
(``unconstrained``: the model's own text, header kept in order).  Sampling is a
plain loop over the model's recurrent cache (Mamba) or KV cache
(Transformers); finished rows leave the cache so later steps cost less.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import torch

from abcmamba import UserError
from abcmamba.abc.header import parse_header
from abcmamba.compat import cache_kwargs, keep_rows, output_cache
from abcmamba.generate.conditions import build_prompt, field_conditions
from abcmamba.generate.constrained import AbcConstraint, ConstrainedRow
from abcmamba.generate.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_RETRIES,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
)
from abcmamba.generate.unconstrained import GuardedRow, tune_end

logger = logging.getLogger(__name__)
# refused tokens removed and redrawn before the full mask is computed: sampling
# without replacement until a token is allowed keeps the masked distribution
REDRAWS = 4


@dataclass
class GeneratedTune:
    """One sampled tune with its validation outcome."""

    index: int
    abc: str
    valid: bool
    reasons: list[str] = field(default_factory=list)
    attempts: int = 1
    new_tokens: int = 0
    finished: bool = True
    key: str | None = None
    meter: str | None = None
    n_bars: int | None = None


def _sample(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, gen
) -> torch.Tensor:
    """Next token per row from ``logits`` (B, V) with temperature, top-k and nucleus."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)  # (B, V)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=gen)[:, 0]


def _step(model, input_ids: torch.Tensor, cache):
    """One forward with the cache: last-position logits (on the CPU, where the sampling
    generator lives) and the cache."""
    out = model(input_ids=input_ids, **cache_kwargs(cache, model), use_cache=True)
    return out.logits[:, -1].float().cpu(), output_cache(out, model)


def _restrict(row, scores: torch.Tensor, eos: int | None) -> None:
    """The row's mask on its scores; the end of text when it leaves nothing else."""
    row.restrict(scores)
    if eos is not None and not torch.isfinite(scores).any():
        scores[eos] = 0.0  # only the end was allowed, and min_new_tokens masked it


@torch.no_grad()
def sample_batch(
    model,
    tokenizer,
    prompt: str,
    pending: list[tuple[str, str]],
    locked: set[str],
    batch_size: int,
    gen: torch.Generator,
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = DEFAULT_TOP_P,
    top_k: int = DEFAULT_TOP_K,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    constraint: AbcConstraint | None = None,
    min_new_tokens: int = 0,
) -> list[tuple[str, int, bool]]:
    """Sample ``batch_size`` continuations of ``prompt``: (text, new tokens, finished).

    With a ``constraint`` every row follows the ABC grammar (and may run a few
    tokens past ``max_new_tokens`` only to write the ending it planned); without
    one, rows are :class:`GuardedRow` (header guarded, body free). EOS is
    masked for the first ``min_new_tokens`` tokens (the grammar lets music go
    on past a final bar line), unless the ending planned for the budget needs it.
    """
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    bos = tokenizer.bos_token_id
    if bos is not None and (ids.shape[1] == 0 or ids[0, 0] != bos):
        ids = torch.cat([torch.tensor([[bos]]), ids], dim=1)
    logits, cache = _step(model, ids.expand(batch_size, -1).to(device), None)
    if constraint is not None:
        rows = [
            ConstrainedRow(constraint, prompt, max_new_tokens)
            for _ in range(batch_size)
        ]
    else:
        rows = [
            GuardedRow(tokenizer, prompt, pending, locked, logits.shape[-1])
            for _ in range(batch_size)
        ]
    new_ids: list[list[int]] = [[] for _ in range(batch_size)]
    alive = list(range(batch_size))  # rows of the cache, in batch order
    steps = 0
    eos = tokenizer.eos_token_id
    while alive:
        if steps < min_new_tokens and eos is not None:
            logits[:, eos] = float("-inf")
        for r, b in enumerate(alive):
            if rows[b].needs_mask:
                _restrict(rows[b], logits[r], eos)
        sampled = _sample(logits, temperature, top_k, top_p, gen).tolist()
        for r, b in enumerate(alive):
            # a refused token is removed and another drawn; the full mask (dearer)
            # only after REDRAWS refusals
            for redraw in range(REDRAWS + 1):
                if rows[b].allows(sampled[r]):
                    break
                if redraw < REDRAWS:
                    logits[r, sampled[r]] = float("-inf")
                else:
                    _restrict(rows[b], logits[r], eos)
                again = _sample(logits[r : r + 1], temperature, top_k, top_p, gen)
                sampled[r] = int(again[0])
        next_ids = []
        for r, b in enumerate(alive):
            token = rows[b].take(sampled[r])
            new_ids[b].append(token)
            next_ids.append(token)
        steps += 1
        over = steps >= max_new_tokens
        keep = [
            r
            for r, b in enumerate(alive)
            if not rows[b].done and not (over and not getattr(rows[b], "plan", None))
        ]
        if not keep:
            break
        step_ids = torch.tensor(next_ids, device=device)[:, None]  # (B_alive, 1)
        if len(keep) < len(alive):
            # drop finished rows from the cache so later steps cost less
            index = torch.tensor(keep, device=device)
            keep_rows(cache, index)
            step_ids = step_ids[index]
            alive = [alive[r] for r in keep]
        logits, cache = _step(model, step_ids, cache)

    results = []
    for b in range(batch_size):
        text = tokenizer.decode(ids[0].tolist() + new_ids[b], skip_special_tokens=True)
        end = tune_end(text, text.find("\nK:") + 1 if "\nK:" in text else len(text))
        text = text[:end] if end is not None else text
        results.append((text.rstrip("\n") + "\n", len(new_ids[b]), rows[b].done))
    return results


def check_tune(abc: str, conditions: dict[str, str], finished: bool) -> list[str]:
    """Reasons ``abc`` is not a usable answer to the request; [] when it is."""
    from abcmamba.abc import validate

    reasons = []
    if not finished:
        reasons.append("unfinished: max_new_tokens reached")
    header = parse_header(abc)
    for letter, value in conditions.items():
        if header.get(letter) != value:
            reasons.append(f"requested {letter}:{value} missing")
    body = abc[header.end :]
    for letter in set(conditions) & set("MLK"):
        # a mid-tune change of a requested meter/key/unit would not honour the request
        changes = re.findall(rf"(?:^|\[){letter}:([^\]\n]*)", body, flags=re.M)
        if any(value.strip() != conditions[letter] for value in changes):
            reasons.append(
                f"requested {letter}:{conditions[letter]} changed in the body"
            )
    return reasons + list(validate(abc))


def describe(abc: str) -> tuple[str | None, str | None, int | None]:
    """Key, meter and bar count of a tune (bars via the normalizer when it parses)."""
    from abcmamba.abc import AbcError, normalize

    header = parse_header(abc)
    try:
        bars = normalize(abc).n_bars
    except AbcError:  # an invalid tune: count bar lines instead
        bars = len(re.findall(r"\|+\]?|::?\|", abc[header.end :]))
    return header.get("K"), header.get("M"), bars


def generate_tunes(
    model,
    tokenizer,
    n: int,
    *,
    composer: str | None = None,
    rhythm: str | None = None,
    meter: str | None = None,
    unit: str | None = None,
    key: str | None = None,
    tempo: str | None = None,
    prompt: str | None = None,
    seed: int = 0,
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = DEFAULT_TOP_P,
    top_k: int = DEFAULT_TOP_K,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    retries: int = DEFAULT_RETRIES,
    constrained: bool = True,
    known: dict[str, dict[str, int]] | None = None,
    min_new_tokens: int = 0,
) -> tuple[list[GeneratedTune], Counter]:
    """Sample ``n`` tunes honouring the requested fields; retry invalid ones.

    Constrained (the default), every tune is valid by construction and
    ``retries`` never trigger.  Returns the tunes (the last attempt of each)
    and a Counter of the reasons attempts were rejected.
    """
    if n < 1 or batch_size < 1 or retries < 0:
        raise UserError("-n and --batch-size must be at least 1, --retries at least 0")
    if not 0 <= min_new_tokens < max_new_tokens:
        raise UserError(
            f"--min-new-tokens must be from 0 to under --max-new-tokens "
            f"({max_new_tokens}), not {min_new_tokens}"
        )
    conditions = field_conditions(composer, rhythm, meter, unit, key, tempo, known)
    text, pending = build_prompt(conditions, prompt)
    constraint = None
    if constrained:
        constraint = AbcConstraint(tokenizer, conditions)
        try:
            ConstrainedRow(constraint, text, max_new_tokens)
        except ValueError as err:
            raise UserError(str(err)) from None
        _check_expressible(tokenizer, conditions)
    # requested letters are ours to write, and so is X: once the prompt has it
    locked = set(conditions) | ({"X"} if text.startswith("X:") else set())
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    reasons_count: Counter = Counter()
    tunes: dict[int, GeneratedTune] = {}
    todo = deque(range(n))
    attempts: Counter = Counter()
    model.eval()
    while todo:
        slots = [todo.popleft() for _ in range(min(batch_size, len(todo)))]
        start = time.perf_counter()
        samples = sample_batch(
            model, tokenizer, text, pending, locked, len(slots), gen,
            temperature=temperature, top_p=top_p, top_k=top_k,
            max_new_tokens=max_new_tokens, constraint=constraint,
            min_new_tokens=min_new_tokens,
        )  # fmt: skip
        seconds = max(time.perf_counter() - start, 1e-9)
        tokens = sum(s[1] for s in samples)
        logger.info(
            "sampled %d tunes, %d tokens in %.1fs (%.0f tokens/s)",
            len(slots), tokens, seconds, tokens / seconds,
        )  # fmt: skip
        for slot, (abc, new_tokens, finished) in zip(slots, samples, strict=True):
            attempts[slot] += 1
            reasons = check_tune(abc, conditions, finished)
            key_, meter_, bars = describe(abc)
            tunes[slot] = GeneratedTune(
                index=slot, abc=abc, valid=not reasons, reasons=reasons,
                attempts=attempts[slot], new_tokens=new_tokens, finished=finished,
                key=key_, meter=meter_, n_bars=bars,
            )  # fmt: skip
            if reasons:
                reasons_count.update(reasons)
                logger.info(
                    "tune %d attempt %d invalid: %s",
                    slot + 1,
                    attempts[slot],
                    "; ".join(reasons),
                )
                if attempts[slot] <= retries:
                    todo.append(slot)
    return [tunes[i] for i in range(n)], reasons_count


def _check_expressible(tokenizer, conditions: dict[str, str]) -> None:
    """UserError when a requested value holds characters no token can write."""
    pieces = "".join(tokenizer.decode([i]) for i in range(len(tokenizer)))
    for letter, value in conditions.items():
        missing = sorted({ch for ch in value if ch not in pieces})
        if missing:
            raise UserError(
                f"{letter}:{value} cannot be written with this tokenizer "
                f"(no token for {' '.join(map(repr, missing))})"
            )

"""Sample tunes from a model, conditioned on header fields (`abcmamba generate`).

Normalized ABC writes its header in a fixed order (``X C R M L Q V... K``), so a
prompt ``X:1\\n`` plus the requested leading fields conditions the first fields.
A requested field that the model may legitimately be preceded by optional ones
(``--meter`` with no ``--rhythm``: the model may still write ``C:`` or ``R:``)
is *forced when reached*: whenever the model starts a header line that would
come after a pending field (or the body), that line is replaced by the requested
field line, and the model carries on from there.  Sampling is a plain loop over
the model's recurrent cache (Mamba) or KV cache (Transformers), one token per
step for the whole batch, so forced tokens cost the same as sampled ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from abcmamba import UserError
from abcmamba.compat import cache_kwargs, output_cache

logger = logging.getLogger(__name__)

HEADER_ORDER = "XCRMLQVK"  # canonical order of header fields in normalized ABC
ORDER = {letter: i for i, letter in enumerate(HEADER_ORDER)}
BODY = len(HEADER_ORDER)  # the "order" of a line that is not a header field
FLAG_FIELDS = {"composer": "C", "rhythm": "R", "meter": "M", "unit": "L", "key": "K"}

DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_P = 0.95
DEFAULT_TOP_K = 0
DEFAULT_MAX_NEW_TOKENS = 1024
DEFAULT_BATCH_SIZE = 8
DEFAULT_RETRIES = 3
FORMATS = ("mid", "musicxml", "svg", "png")


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


# ---------------------------------------------------------------- conditioning


def field_conditions(
    composer: str | None = None,
    rhythm: str | None = None,
    meter: str | None = None,
    unit: str | None = None,
    key: str | None = None,
) -> dict[str, str]:
    """Requested header fields as ``{letter: canonical value}``; UserError on bad spelling."""
    from abcmamba.abc.header import (
        ACCEPTED_KEYS,
        ACCEPTED_METERS,
        canonical_key,
        canonical_meter,
        parse_unit,
    )

    fields: dict[str, str] = {}
    for name, value in (("composer", composer), ("rhythm", rhythm)):
        if value is not None:
            text = " ".join(value.split())
            if not text:
                raise UserError(f"--{name} is empty")
            fields[FLAG_FIELDS[name]] = text
    if meter is not None:
        try:
            fields["M"] = canonical_meter(meter)
        except ValueError:
            raise UserError(
                f"unknown meter {meter!r}; accepted: {ACCEPTED_METERS}"
            ) from None
    if unit is not None:
        try:
            length = parse_unit(unit)
        except ValueError:
            raise UserError(
                f"unknown unit note length {unit!r}; accepted: 1/N such as 1/4, 1/8, 1/16"
            ) from None
        fields["L"] = f"{length.numerator}/{length.denominator}"
    if key is not None:
        try:
            fields["K"] = canonical_key(key)
        except ValueError:
            raise UserError(f"unknown key {key!r}; accepted: {ACCEPTED_KEYS}") from None
    return dict(sorted(fields.items(), key=lambda kv: ORDER[kv[0]]))


def _header_lines(text: str) -> tuple[list[tuple[str, str]], bool]:
    """Complete header field lines of ``text`` and whether the header is closed."""
    lines = text.split("\n")[:-1]  # the last element is an unfinished line
    found = []
    for line in lines:
        m = re.match(r"^([A-Za-z]):(.*)$", line)
        if not m:
            return found, True
        found.append((m.group(1), m.group(2).strip()))
        if m.group(1) == "K":
            return found, True
    return found, False


def build_prompt(
    conditions: dict[str, str], prompt: str | None = None
) -> tuple[str, list]:
    """The prompt text and the fields still to force, in canonical order.

    Requested fields join the prompt while no optional field could come between
    them and what the prompt already has; the rest are forced during sampling.
    """
    text = prompt if prompt is not None else "X:1\n"
    if not text.startswith("X:"):
        text = "X:1\n" + text
    have, closed = _header_lines(text)
    present = dict(have)
    last = max((ORDER.get(letter, 0) for letter, _ in have), default=0)
    pending = []
    for letter, value in conditions.items():
        if letter in present:
            if present[letter] != value:
                raise UserError(
                    f"the prompt has {letter}:{present[letter]} but {letter}:{value} was requested"
                )
            continue
        if closed or ORDER[letter] < last:
            raise UserError(
                f"cannot add {letter}:{value} after the prompt's header "
                f"(fields go in the order {' '.join(HEADER_ORDER)}); put it in --prompt"
            )
        pending.append((letter, value))
    # a prefix is safe when every field the model could write before it is requested
    while pending and text.endswith("\n"):
        letter, value = pending[0]
        between = [f for f in HEADER_ORDER if last < ORDER[f] < ORDER[letter]]
        if any(f not in conditions for f in between):
            break
        text += f"{letter}:{value}\n"
        last = ORDER[letter]
        pending.pop(0)
    return text, pending


class HeaderGuard:
    """Tracks one sample's header and rewrites lines that would skip a requested field."""

    def __init__(self, prompt: str, pending: list[tuple[str, str]], locked: set[str]):
        _, closed = _header_lines(prompt)
        self.in_header = not closed
        self.line = prompt.rsplit("\n", 1)[-1]  # text of the unfinished line
        self.pending = list(pending)
        self.locked = set(locked)  # requested letters: only we write them

    @property
    def at_line_start(self) -> bool:
        """True when the next character starts a header line."""
        return self.in_header and self.line == ""

    def check(self, piece: str) -> str | None:
        """Accept ``piece`` (None) or return the text to feed instead; updates state."""
        for i, char in enumerate(piece):
            if not self.in_header:
                break
            if self.line == "":
                order = (
                    ORDER.get(char, BODY) if char.isalpha() and char.isupper() else BODY
                )
                # normalized ABC has no other header fields: anything else is the body
                first_pending = ORDER[self.pending[0][0]] if self.pending else BODY + 1
                if char in self.locked or order >= first_pending:
                    limit = ORDER[char] if char in self.locked else order
                    inject = [(f, v) for f, v in self.pending if ORDER[f] <= limit]
                    self.pending = self.pending[len(inject) :]
                    replacement = piece[:i] + "".join(f"{f}:{v}\n" for f, v in inject)
                    if any(f == "K" for f, _ in inject):
                        self.in_header = False
                        if order == BODY:  # the model was starting the body: keep it
                            replacement += piece[i:]
                    return replacement
            self._advance(char)
        return None

    def flush(self) -> str:
        """Text that writes every pending field now (the model tried to stop early)."""
        text = ("\n" if self.line else "") + "".join(
            f"{f}:{v}\n" for f, v in self.pending
        )
        if any(f == "K" for f, _ in self.pending):
            self.in_header = False
        self.pending, self.line = [], ""
        return text

    def _advance(self, char: str) -> None:
        if char == "\n":
            if not re.match(r"^[A-Za-z]:", self.line) or self.line.startswith("K:"):
                self.in_header = False
            self.line = ""
        else:
            self.line += char


# ---------------------------------------------------------------- sampling


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
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = (
            cum - sorted_logits.softmax(-1) > top_p
        )  # keep the token that crosses top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=gen)[:, 0]


def _step(model, input_ids: torch.Tensor, cache):
    """One forward with the cache: last-position logits (on the CPU, where the sampling
    generator lives) and the cache."""
    out = model(input_ids=input_ids, **cache_kwargs(cache, model), use_cache=True)
    return out.logits[:, -1].float().cpu(), output_cache(out, model)


def _tune_end(text: str, body_from: int) -> int | None:
    """Index where a tune's text ends (blank line or a new `X:`), if it has ended."""
    blank = text.find("\n\n", body_from)
    new_tune = text.find("\nX:", body_from)
    ends = [i + 1 for i in (blank, new_tune) if i >= 0]
    return min(ends) if ends else None


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
) -> list[tuple[str, int, bool]]:
    """Sample ``batch_size`` continuations of ``prompt``: (text, new tokens, finished)."""
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    bos = tokenizer.bos_token_id
    if bos is not None and (ids.shape[1] == 0 or ids[0, 0] != bos):
        ids = torch.cat([torch.tensor([[bos]]), ids], dim=1)
    eos = tokenizer.eos_token_id
    pieces = _token_texts(tokenizer)
    logits, cache = _step(model, ids.expand(batch_size, -1).to(device), None)
    masks = _HeaderMasks.get(tokenizer, pieces, logits.shape[-1])

    texts = [prompt] * batch_size
    guards = [HeaderGuard(prompt, pending, locked) for _ in range(batch_size)]
    forced: list[deque] = [deque() for _ in range(batch_size)]
    new_ids: list[list[int]] = [[] for _ in range(batch_size)]
    finished = [False] * batch_size
    alive = list(range(batch_size))  # rows of the cache, in batch order
    for _ in range(max_new_tokens):
        # in the header every line is a field line of normalized ABC, and requested
        # letters are ours to write: mask whatever else the model might start
        for row, b in enumerate(alive):
            if forced[b] or not guards[b].in_header:
                continue
            if guards[b].at_line_start and guards[b].pending:
                # anything that passes a pending field (even the body) makes us write it
                allowed = masks.not_locked(guards[b].locked)
            elif guards[b].at_line_start:
                allowed = masks.field_start(guards[b].locked)
            elif guards[b].line in ORDER:
                allowed = masks.colon
            else:
                continue
            logits[row].masked_fill_(~allowed, float("-inf"))
        logits[:, len(pieces) :] = float("-inf")  # padded vocabulary rows: no token
        sampled = _sample(logits, temperature, top_k, top_p, gen).tolist()
        next_ids = []
        for row, b in enumerate(alive):
            if forced[b]:
                token = forced[b].popleft()
            else:
                token = sampled[row]
                piece = pieces[token] if token != eos else ""
                replacement = guards[b].check(piece) if piece else None
                if replacement is not None:
                    forced[b].extend(
                        tokenizer(replacement, add_special_tokens=False).input_ids
                    )
                    token = forced[b].popleft()
                elif token == eos and guards[b].pending:
                    # ending before a requested field: write the fields instead
                    forced[b].extend(
                        tokenizer(guards[b].flush(), add_special_tokens=False).input_ids
                    )
                    token = forced[b].popleft()
            new_ids[b].append(token)
            if token == eos:
                finished[b] = True
            else:
                texts[b] += pieces[token]
                if not guards[b].in_header and not forced[b]:
                    body_from = max(len(texts[b]) - len(pieces[token]) - 1, 0)
                    finished[b] = _tune_end(texts[b], body_from) is not None
            next_ids.append(token)
        keep = [row for row, b in enumerate(alive) if not finished[b]]
        if not keep:
            break
        step_ids = torch.tensor(next_ids, device=device)[:, None]  # (B_alive, 1)
        if len(keep) < len(alive):
            # drop finished rows from the cache so later steps cost less
            index = torch.tensor(keep, device=device)
            cache.reorder_cache(index)
            step_ids = step_ids[index]
            alive = [alive[row] for row in keep]
        logits, cache = _step(model, step_ids, cache)

    results = []
    for b in range(batch_size):
        text = tokenizer.decode(ids[0].tolist() + new_ids[b], skip_special_tokens=True)
        end = _tune_end(text, text.find("\nK:") + 1 if "\nK:" in text else len(text))
        text = text[:end] if end is not None else text
        results.append((text.rstrip("\n") + "\n", len(new_ids[b]), finished[b]))
    return results


def _token_texts(tokenizer) -> list[str]:
    cached = getattr(tokenizer, "_abcmamba_pieces", None)
    if cached is None:
        cached = [tokenizer.decode([i]) for i in range(len(tokenizer))]
        tokenizer._abcmamba_pieces = cached
    return cached


class _HeaderMasks:
    """Vocabulary masks for header lines, computed once per tokenizer."""

    def __init__(self, pieces: list[str], size: int):
        self.size = size
        self.by_first = {}
        for letter in HEADER_ORDER:
            mask = torch.zeros(size, dtype=torch.bool)
            mask[[i for i, p in enumerate(pieces) if p[:1] == letter]] = True
            self.by_first[letter] = mask
        self.by_letter = {}
        for letter in HEADER_ORDER:
            mask = torch.zeros(size, dtype=torch.bool)
            ids = [
                i
                for i, p in enumerate(pieces)
                if p == letter or p.startswith(letter + ":")
            ]
            mask[ids] = True
            self.by_letter[letter] = mask
        self.colon = torch.zeros(size, dtype=torch.bool)
        self.colon[[i for i, p in enumerate(pieces) if p.startswith(":")]] = True
        self._starts: dict = {}

    @classmethod
    def get(cls, tokenizer, pieces: list[str], size: int) -> _HeaderMasks:
        """The cached masks of ``tokenizer`` for a vocabulary of ``size`` logits."""
        cached = getattr(tokenizer, "_abcmamba_masks", None)
        if cached is None or cached.size != size:
            cached = cls(pieces, size)
            tokenizer._abcmamba_masks = cached
        return cached

    def not_locked(self, locked: set[str]) -> torch.Tensor:
        """Tokens that do not start with a letter we force."""
        key = ("not", frozenset(locked))
        if key not in self._starts:
            mask = torch.ones_like(self.colon)
            for letter in locked:
                mask &= ~self.by_first[letter]
            self._starts[key] = mask
        return self._starts[key]

    def field_start(self, locked: set[str]) -> torch.Tensor:
        """Tokens that may start a header line: a field letter we do not force."""
        key = frozenset(locked)
        if key not in self._starts:
            mask = torch.zeros_like(self.colon)
            for letter, ids in self.by_letter.items():
                if letter not in locked and letter != "X":
                    mask |= ids
            self._starts[key] = mask
        return self._starts[key]


# ---------------------------------------------------------------- validation


def check_tune(abc: str, conditions: dict[str, str], finished: bool) -> list[str]:
    """Reasons ``abc`` is not a usable answer to the request; [] when it is."""
    from abcmamba.abc import validate

    reasons = []
    if not finished:
        reasons.append("unfinished: max_new_tokens reached")
    have = dict(_header_lines(abc)[0])
    for letter, value in conditions.items():
        if have.get(letter) != value:
            reasons.append(f"requested {letter}:{value} missing")
    header, _ = _header_lines(abc)
    body = "\n".join(abc.split("\n")[len(header) :])
    for letter in set(conditions) & set("MLK"):
        # a mid-tune change of a requested meter/key/unit would not honour the request
        changes = re.findall(rf"(?:^|\[){letter}:([^\]\n]*)", body, flags=re.M)
        if any(value.strip() != conditions[letter] for value in changes):
            reasons.append(
                f"requested {letter}:{conditions[letter]} changed in the body"
            )
    return reasons + list(validate(abc))


def _describe(abc: str) -> tuple[str | None, str | None, int | None]:
    """Key, meter and bar count of a tune (bars via the normalizer when it parses)."""
    have = dict(_header_lines(abc)[0])
    try:
        from abcmamba.abc import normalize

        bars = normalize(abc).n_bars
    except Exception:  # an invalid tune: count bar lines instead
        body = abc.split("\nK:", 1)[-1].split("\n", 1)[-1]
        bars = len(re.findall(r"\|+\]?|::?\|", body))
    return have.get("K"), have.get("M"), bars


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
    prompt: str | None = None,
    seed: int = 0,
    temperature: float = DEFAULT_TEMPERATURE,
    top_p: float = DEFAULT_TOP_P,
    top_k: int = DEFAULT_TOP_K,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    retries: int = DEFAULT_RETRIES,
) -> tuple[list[GeneratedTune], Counter]:
    """Sample ``n`` tunes honouring the requested fields; retry invalid ones.

    Returns the tunes (the last attempt of each, valid or not) and a Counter of
    the reasons attempts were rejected.
    """
    if n < 1 or batch_size < 1 or retries < 0:
        raise UserError("-n and --batch-size must be at least 1, --retries at least 0")
    conditions = field_conditions(composer, rhythm, meter, unit, key)
    text, pending = build_prompt(conditions, prompt)
    # requested letters are ours to write, and so is X: once the prompt has it
    locked = set(conditions) | ({"X"} if text.startswith("X:") else set())
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    reasons_count: Counter = Counter()
    tunes: dict[int, GeneratedTune] = {}
    todo = deque(range(n))
    attempts = Counter()
    model.eval()
    while todo:
        slots = [todo.popleft() for _ in range(min(batch_size, len(todo)))]
        start = time.perf_counter()
        samples = sample_batch(
            model, tokenizer, text, pending, locked, len(slots), gen,
            temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens,
        )  # fmt: skip
        tokens = sum(s[1] for s in samples)
        logger.info(
            "sampled %d tunes, %d tokens in %.1fs (%.0f tokens/s)",
            len(slots), tokens, time.perf_counter() - start,
            tokens / max(time.perf_counter() - start, 1e-9),
        )  # fmt: skip
        for slot, (abc, new_tokens, finished) in zip(slots, samples, strict=True):
            attempts[slot] += 1
            reasons = check_tune(abc, conditions, finished)
            key_, meter_, bars = _describe(abc)
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


# ---------------------------------------------------------------- loading


def load_model(dir_or_repo: str, device: str | None = None):
    """Model and tokenizer from a save_pretrained folder or a Hub id (plain Auto classes)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(dir_or_repo)
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a model folder (no config.json)")
        if not any(
            (path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")
        ):
            raise UserError(
                f"{path} has no tokenizer (tokenizer.json); save one with the model"
            )
    elif not re.fullmatch(r"[\w.-]+/[\w.-]+", dir_or_repo):
        raise UserError(
            f"{dir_or_repo}: no such model folder, and not a Hub id (OWNER/NAME)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(dir_or_repo)
        model = AutoModelForCausalLM.from_pretrained(dir_or_repo)
    except (OSError, ValueError) as err:
        first = (
            str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        )
        raise UserError(f"cannot load model {dir_or_repo!r}: {first}") from None
    except Exception as err:  # network errors from huggingface_hub / requests
        name = type(err).__name__
        if (
            "Http" in name
            or "Connection" in name
            or "Timeout" in name
            or "Offline" in name
        ):
            raise UserError(
                f"cannot reach the Hub for {dir_or_repo!r}: {name}"
            ) from None
        raise
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    if device == "cpu":
        enable_cpu_fast_paths(model)
    return model, tokenizer


def enable_cpu_fast_paths(model) -> None:
    """abcmamba's CPU kernels for a Mamba model's prefill and decode (others: no-op).

    The weights and the results stay those of the stock model; only the
    forward of the mixers changes.
    """
    from abcmamba.decode import enable_fast_decode

    enable_fast_decode(model)
    try:
        from abcmamba.modeling import configure_scan_path

        configure_scan_path(model, "auto")  # fast prefill where a CPU scan exists
    except Exception as err:  # a missing/broken kernel only costs prefill speed
        logger.warning("fast prefill not available (%s); using the stock scan", err)


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `abcmamba generate`."""
    parser.add_argument(
        "--model", required=True, help="model folder or Hub id OWNER/NAME"
    )
    parser.add_argument("--composer", help="C: field, e.g. bach")
    parser.add_argument("--rhythm", help="R: field, e.g. jig, reel")
    parser.add_argument("--meter", help="M: field, e.g. 6/8, C, 3/4")
    parser.add_argument("--unit", help="L: field (unit note length), e.g. 1/8")
    parser.add_argument("--key", help="K: field, e.g. D, Em, Ador, Gmix")
    parser.add_argument(
        "--prompt", help="raw ABC the tunes start with (escapes like \\n allowed)"
    )
    parser.add_argument("-n", type=int, default=8, help="number of tunes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--temperature",
        type=float,
        help="default: the model's generation_config, else 1.0",
    )
    parser.add_argument(
        "--top-p",
        type=float,
        help="nucleus sampling; default: generation_config, else 0.95",
    )
    parser.add_argument(
        "--top-k", type=int, help="0 disables; default: generation_config, else 0"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, help="default: generation_config, else 1024"
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        help="re-samples per invalid tune",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (small models decode fastest on 1)",
    )
    parser.add_argument("--out", required=True, help="output folder")


def _setting(value, generation_config, name: str, default):
    if value is not None:
        return value
    configured = getattr(generation_config, name, None)
    return configured if configured is not None else default


def write_formats(abc: str, stem: Path) -> tuple[list[str], dict[str, str]]:
    """Write ``stem``.mid/.musicxml/.svg/.png; returns (written, {format: reason skipped})."""
    try:
        from abcmamba import convert
    except ImportError as err:
        return [], dict.fromkeys(FORMATS, f"abcmamba.convert unavailable: {err}")
    written, skipped = [], {}
    steps = {
        "mid": lambda: convert.abc_to_midi(abc, stem.with_suffix(".mid")),
        "musicxml": lambda: convert.abc_to_musicxml(abc, stem.with_suffix(".musicxml")),
        "svg": lambda: convert.abc_to_svg(abc, stem.with_suffix(".svg")),
        "png": lambda: convert.svg_to_png(
            stem.with_suffix(".svg"), stem.with_suffix(".png")
        ),
    }
    for fmt, step in steps.items():
        if fmt == "png" and "svg" not in written:
            skipped[fmt] = "no SVG to render"
            continue
        try:
            step()
            written.append(fmt)
        except Exception as err:  # any converter fault: skip this format, keep the rest
            reason = (
                str(err).strip().splitlines()[0]
                if str(err).strip()
                else type(err).__name__
            )
            skipped[fmt] = reason
            logger.warning("%s: no .%s: %s", stem.name, fmt, reason)
    return written, skipped


def run(args: argparse.Namespace) -> int:
    """`abcmamba generate`: sample, validate, write ABC + MIDI/MusicXML/SVG/PNG + summary."""
    out = Path(args.out)
    prompt = args.prompt.encode().decode("unicode_escape") if args.prompt else None
    # check the flags before the (slow) model load
    field_conditions(args.composer, args.rhythm, args.meter, args.unit, args.key)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    gc = getattr(model, "generation_config", None)
    settings = {
        "model": args.model,
        "composer": args.composer,
        "rhythm": args.rhythm,
        "meter": args.meter,
        "unit": args.unit,
        "key": args.key,
        "prompt": prompt,
        "n": args.n,
        "seed": args.seed,
        "temperature": _setting(
            args.temperature, gc, "temperature", DEFAULT_TEMPERATURE
        ),
        "top_p": _setting(args.top_p, gc, "top_p", DEFAULT_TOP_P),
        "top_k": _setting(args.top_k, gc, "top_k", DEFAULT_TOP_K),
        "max_new_tokens": _setting(
            args.max_new_tokens, gc, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS
        ),
        "batch_size": args.batch_size,
        "retries": args.retries,
    }
    start = time.perf_counter()
    tunes, reasons = generate_tunes(
        model, tokenizer, args.n,
        **{k: settings[k] for k in ("composer", "rhythm", "meter", "unit", "key", "prompt", "seed",
                                    "temperature", "top_p", "top_k", "max_new_tokens",
                                    "batch_size", "retries")},
    )  # fmt: skip
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    width = len(str(args.n))
    records = []
    for tune in tunes:
        stem = out / f"tune_{tune.index + 1:0{width}d}"
        stem.with_suffix(".abc").write_text(tune.abc, encoding="utf-8")
        if tune.valid:
            written, skipped = write_formats(tune.abc, stem)
        else:
            written, skipped = [], dict.fromkeys(FORMATS, "invalid tune")
        record = asdict(tune)
        record.update(
            file=stem.name + ".abc", formats=["abc", *written], skipped=skipped
        )
        records.append(record)
    valid = sum(t.valid for t in tunes)
    summary = {
        "settings": settings,
        "counts": {
            "requested": args.n,
            "valid": valid,
            "invalid": args.n - valid,
            "attempts": sum(t.attempts for t in tunes),
            "rejected_attempts": sum(t.attempts for t in tunes) - valid,
        },
        "retry_reasons": dict(reasons.most_common()),
        "seconds": round(seconds, 2),
        "new_tokens_last_attempts": sum(t.new_tokens for t in tunes),
        "tunes": records,
    }
    (out / "summary.json").write_text(
        json.dumps(summary, indent=2) + "\n", encoding="utf-8"
    )
    print(f"{'tune':<{width + 10}} {'valid':<6} {'bars':>5}  {'key':<8} {'meter':<6}")
    for r in records:
        bars = "" if r["n_bars"] is None else r["n_bars"]
        print(
            f"{r['file']:<{width + 10}} {'yes' if r['valid'] else 'no':<6} {bars:>5}  {r['key'] or '-':<8} {r['meter'] or '-':<6}"
        )
    print(
        f"{valid}/{args.n} valid after {summary['counts']['attempts']} attempts; wrote {out}"
    )
    return 0

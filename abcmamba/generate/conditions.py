"""What a user asks for: header fields to honour, and the prompt that starts a tune.

Requested composer and rhythm values are matched case-insensitively against
the spellings of the training corpus (``conditioning.json`` beside the model,
written by train.py), so ``--composer bach`` asks for ``C:Bach``.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from abcmamba import UserError
from abcmamba.abc.grammar import FIELD_VALUES
from abcmamba.abc.header import (
    ACCEPTED_KEYS,
    ACCEPTED_METERS,
    HEADER_ORDER,
    ORDER,
    canonical_key,
    canonical_meter,
    parse_header,
    parse_unit,
)

FLAG_FIELDS = {
    "composer": "C",
    "rhythm": "R",
    "meter": "M",
    "unit": "L",
    "tempo": "Q",
    "key": "K",
}
KNOWN_VALUES_FILE = "conditioning.json"


def load_known_values(model_dir: str | Path) -> dict[str, dict[str, int]] | None:
    """Corpus spellings of composer and rhythm beside a model (None when absent)."""
    path = Path(model_dir) / KNOWN_VALUES_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def known_values(texts_by_field: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    """Counts of each spelling of composer/rhythm in a corpus (for conditioning.json)."""
    out = {}
    for name, values in texts_by_field.items():
        counts: dict[str, int] = {}
        for value in values:
            if value:
                counts[value] = counts.get(value, 0) + 1
        out[name] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
    return out


def match_known(name: str, value: str, known: dict[str, int]) -> str:
    """The corpus spelling of ``value`` (case-insensitive); UserError listing the closest."""
    folded = value.casefold()
    same = [k for k in known if k.casefold() == folded]
    if same:
        return max(same, key=lambda k: known[k])  # the most common spelling
    close = difflib.get_close_matches(value, list(known), n=5, cutoff=0.5)
    close += [k for k in known if folded in k.casefold() and k not in close][:3]
    hint = ", ".join(close) if close else ", ".join(list(known)[:8])
    raise UserError(f"unknown {name} {value!r}; closest known: {hint}")


def field_conditions(
    composer: str | None = None,
    rhythm: str | None = None,
    meter: str | None = None,
    unit: str | None = None,
    key: str | None = None,
    tempo: str | None = None,
    known: dict[str, dict[str, int]] | None = None,
) -> dict[str, str]:
    """Requested header fields as ``{letter: canonical value}``; UserError on bad spelling."""
    fields: dict[str, str] = {}
    for name, value in (("composer", composer), ("rhythm", rhythm)):
        if value is None:
            continue
        text = " ".join(value.split())
        if not text:
            raise UserError(f"--{name} is empty")
        if known and known.get(name):
            text = match_known(name, text, known[name])
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
    if tempo is not None:
        text = tempo.replace(" ", "")
        if not FIELD_VALUES["Q"].fullmatch(text):
            raise UserError(f"unknown tempo {tempo!r}; accepted: e.g. 1/4=120 or 96")
        fields["Q"] = text
    if key is not None:
        try:
            fields["K"] = canonical_key(key)
        except ValueError:
            raise UserError(f"unknown key {key!r}; accepted: {ACCEPTED_KEYS}") from None
    return dict(sorted(fields.items(), key=lambda kv: ORDER[kv[0]]))


def build_prompt(
    conditions: dict[str, str], prompt: str | None = None
) -> tuple[str, list]:
    """The prompt text and the fields still to write, in canonical order.

    Requested fields join the prompt while no optional field could come between
    them and what the prompt already has; the rest are written during sampling
    (the constrained sampler makes the model write them, the unconstrained one
    injects them).
    """
    text = prompt if prompt is not None else "X:1\n"
    if not text.startswith("X:"):
        text = "X:1\n" + text
    header = parse_header(text, partial=True)
    present = dict(header.fields)
    last = max((ORDER.get(letter, 0) for letter, _ in header.fields), default=0)
    pending = []
    for letter, value in conditions.items():
        if letter in present:
            if present[letter] != value:
                raise UserError(
                    f"the prompt has {letter}:{present[letter]} but {letter}:{value} was requested"
                )
            continue
        if header.closed or ORDER[letter] < last:
            raise UserError(
                f"cannot add {letter}:{value} after the prompt's header "
                f"(fields go in the order {' '.join(HEADER_ORDER)}); put it in --prompt"
            )
        pending.append((letter, value))
    # a prefix is safe when every field the model could write before it is
    # requested; composer and rhythm (free text) always join it
    while pending and text.endswith("\n"):
        letter, value = pending[0]
        between = [f for f in HEADER_ORDER if last < ORDER[f] < ORDER[letter]]
        if any(f not in conditions for f in between) and letter not in "CR":
            break
        text += f"{letter}:{value}\n"
        last = ORDER[letter]
        pending.pop(0)
    return text, pending

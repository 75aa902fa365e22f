"""Unconstrained sampling (``--unconstrained``): the model's own text, header kept in order.

Only the header is guided: requested fields are *injected* when the model
starts a line that would come after a pending one, and header lines are masked
to field letters.  The body is the model's, so validity is the model's own;
``abcmamba evaluate`` reports it beside the constrained sampler's.
"""

from __future__ import annotations

import re
from collections import deque

import torch

from abcmamba.abc.header import HEADER_ORDER, ORDER, parse_header

BODY = len(HEADER_ORDER)  # the "order" of a line that is not a header field


class HeaderGuard:
    """Tracks one sample's header and rewrites lines that would skip a requested field."""

    def __init__(self, prompt: str, pending: list[tuple[str, str]], locked: set[str]):
        self.in_header = not parse_header(prompt, partial=True).closed
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


def tune_end(text: str, body_from: int) -> int | None:
    """Index where a tune's text ends (blank line or a new `X:`), if it has ended."""
    blank = text.find("\n\n", body_from)
    new_tune = text.find("\nX:", body_from)
    ends = [i + 1 for i in (blank, new_tune) if i >= 0]
    return min(ends) if ends else None


class GuardedRow:
    """One sequence sampled without the grammar: header guarded, body free."""

    def __init__(self, tokenizer, prompt, pending, locked, size: int):
        self.tokenizer = tokenizer
        self.pieces = [tokenizer.decode([i]) for i in range(len(tokenizer))]
        self.masks = _HeaderMasks.get(tokenizer, self.pieces, size)
        self.guard = HeaderGuard(prompt, pending, locked)
        self.forced: deque[int] = deque()
        self.text = prompt
        self.done = False
        self.eos = tokenizer.eos_token_id

    needs_mask = True  # the header masks are cheap: always applied

    def allows(self, token: int) -> bool:
        """Every token the masked scores gave is taken (forced ones replace it)."""
        return True

    def restrict(self, scores: torch.Tensor) -> torch.Tensor:
        """Mask what the header may not hold (in place)."""
        g = self.guard
        if not self.forced and g.in_header:
            if g.at_line_start and g.pending:
                # anything that passes a pending field (even the body) makes us write it
                allowed = self.masks.not_locked(g.locked)
            elif g.at_line_start:
                allowed = self.masks.field_start(g.locked)
            elif g.line in ORDER:
                allowed = self.masks.colon
            else:
                allowed = None
            if allowed is not None:
                scores[: len(allowed)].masked_fill_(~allowed, float("-inf"))
        scores[len(self.pieces) :] = float("-inf")  # padded vocabulary rows: no token
        return scores

    def take(self, token: int) -> int:
        """The token actually written for a sampled ``token`` (a forced one may replace it)."""
        if self.forced:
            token = self.forced.popleft()
        else:
            piece = self.pieces[token] if token != self.eos else ""
            replacement = self.guard.check(piece) if piece else None
            if replacement is None and token == self.eos and self.guard.pending:
                replacement = self.guard.flush()  # ending before a requested field
            if replacement is not None:
                self.forced.extend(
                    self.tokenizer(replacement, add_special_tokens=False).input_ids
                )
                token = self.forced.popleft()
        if token == self.eos:
            self.done = True
        else:
            self.text += self.pieces[token]
            if not self.guard.in_header and not self.forced:
                body_from = max(len(self.text) - len(self.pieces[token]) - 1, 0)
                self.done = tune_end(self.text, body_from) is not None
        return token

"""Constrained decoding: every sampled tune is valid ABC and honours the request.

:class:`AbcLogitsProcessor` is a plain ``transformers.LogitsProcessor``::

    from abcmamba.generate import AbcLogitsProcessor
    processor = AbcLogitsProcessor(tokenizer, max_new_tokens=1024)
    model.generate(**inputs, max_new_tokens=1024, logits_processor=[processor])

It masks, at every step, the tokens after which the text could no longer end
as a valid tune (:mod:`abcmamba.abc.grammar` decides, one character at a time),
allows EOS only where the tune may end, and as the token budget runs out it
keeps to tokens from which the tune can still be finished in time, writing the
shortest valid ending itself when the model's choices cannot.

The work per step stays small because it is shared: the lexer runs each
token's text once per lexer state, tokens with the same musical effect are
grouped, and the mask of each (lexer, music) state is cached with the
tokenizer, for every later processor with the same request.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque

import torch
from transformers import LogitsProcessor

from abcmamba.abc.grammar import (
    FREE_TEXT_FIELDS,
    TuneGrammar,
    completion,
    lex,
    lex_open_events,
)
from abcmamba.abc.header import parse_header

logger = logging.getLogger(__name__)

STEER_CANDIDATES = 32  # model's best tokens checked per step near the budget's end
STEER_MARGIN = 48  # characters of slack before the budget check starts
MASK_CACHE_SIZE = 8192  # masks kept per tokenizer, all requests (32 MB at 4,096 tokens)


class Vocabulary:
    """Per-tokenizer facts: token texts and the lexer's run of each token per state."""

    def __init__(self, tokenizer):
        self.eos = tokenizer.eos_token_id
        special = set(tokenizer.all_special_ids)
        self.size = len(tokenizer)
        self.pieces = [
            "" if i in special else tokenizer.decode([i]) for i in range(self.size)
        ]
        self._groups: dict[tuple, list] = {}
        # masks by (request, mask key): a mask depends only on the vocabulary, the
        # request and the state's mask key, so every constraint shares them
        self.masks: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.tokenizer = tokenizer
        # a character trie of the token texts: tokens sharing a prefix share its lexing
        self.trie: dict = {}
        for token, piece in enumerate(self.pieces):
            node = self.trie
            for ch in piece:
                node = node.setdefault(ch, {})
            if piece:
                node.setdefault(None, []).append(token)

    @classmethod
    def get(cls, tokenizer) -> Vocabulary:
        """The cached vocabulary facts of ``tokenizer``."""
        cached = getattr(tokenizer, "_abcmamba_vocabulary", None)
        if cached is None or cached.size != len(tokenizer):
            cached = cls(tokenizer)
            tokenizer._abcmamba_vocabulary = cached
        return cached

    def groups(self, lexer: tuple) -> list[tuple[tuple, torch.Tensor]]:
        """Tokens readable from ``lexer``, grouped by the events they cause."""
        if lexer not in self._groups:
            by_events: dict[tuple, list[int]] = {}
            stack = [(self.trie, lexer, ())]
            while stack:
                node, state, events = stack.pop()
                for ch, child in node.items():
                    if ch is None:
                        continue
                    step = lex(state, ch)
                    if step is None:
                        continue  # no token with this prefix can come next
                    after, more = step
                    more = events + more
                    if None in child:
                        key = more + lex_open_events(after)
                        by_events.setdefault(key, []).extend(child[None])
                    stack.append((child, after, more))
            self._groups[lexer] = [
                (events, torch.tensor(ids)) for events, ids in by_events.items()
            ]
        return self._groups[lexer]

    def encode(self, text: str) -> list[int]:
        """Token ids for ``text`` (the tokenizer's own split)."""
        return self.tokenizer(text, add_special_tokens=False).input_ids


class AbcConstraint:
    """Which tokens keep a tune valid, for one request over one tokenizer."""

    def __init__(self, tokenizer, conditions: dict[str, str] | None = None):
        self.vocab = Vocabulary.get(tokenizer)
        self.grammar = TuneGrammar(conditions)
        self._request = tuple(sorted(self.grammar.request.items()))
        self._finish: dict[tuple, int] = {}

    def start(self, prompt: str) -> tuple:
        """The state after ``prompt``; ValueError when it cannot start a valid tune."""
        state = self.grammar.start()
        self.grammar.prompting = True
        try:
            for i, ch in enumerate(prompt):
                state = self.grammar.feed(state, ch)
                if state is None:
                    where = prompt[max(0, i - 20) : i + 1]
                    raise ValueError(
                        f"the prompt cannot start a valid tune at {where!r}"
                    )
        finally:
            self.grammar.prompting = False
        header = parse_header(prompt, partial=True)
        for letter in FREE_TEXT_FIELDS:
            want = self.grammar.request.get(letter)
            if want is not None and header.get(letter) != want:
                raise ValueError(f"the prompt must hold the requested {letter}:{want}")
        if self.finish_length(state) is None:
            raise ValueError("no valid tune can start with this prompt")
        return state

    def mask(self, state: tuple) -> torch.Tensor:
        """Boolean mask over the vocabulary of the tokens allowed after ``state``."""
        key = self._request, self.grammar.mask_key(state)
        masks = self.vocab.masks  # shared: a processor per generate call starts warm
        cached = masks.get(key)
        if cached is None:
            lexer, music = state
            cached = torch.zeros(self.vocab.size, dtype=torch.bool)
            for events, ids in self.vocab.groups(lexer):
                if self.grammar.apply(music, events) is not None:
                    cached[ids] = True
            if self.vocab.eos is not None and self.grammar.accepts(state):
                cached[self.vocab.eos] = True
            masks[key] = cached
            while len(masks) > MASK_CACHE_SIZE:
                masks.popitem(last=False)  # the oldest
        return cached

    def advance(self, state: tuple, token: int) -> tuple | None:
        """The state after ``token`` (None after EOS, or for a token not allowed)."""
        if token == self.vocab.eos:
            return None
        return self.grammar.feed(state, self.vocab.pieces[token])

    def finish_length(self, state: tuple) -> int | None:
        """Characters of the shortest ending found from ``state`` (None: no ending)."""
        if state not in self._finish:
            text = completion(self.grammar, state)
            self._finish[state] = None if text is None else len(text)
        return self._finish[state]

    def ending(self, state: tuple) -> list[int]:
        """Tokens that end the tune from ``state``, then EOS."""
        text = completion(self.grammar, state)
        if text is None:
            logger.warning("no valid ending found after %r", state)
        return self.vocab.encode(text or "") + [self.vocab.eos]


class ConstrainedRow:
    """One sequence being sampled under an :class:`AbcConstraint`."""

    def __init__(self, constraint: AbcConstraint, prompt: str, budget: int | None):
        self.constraint = constraint
        self.state: tuple | None = constraint.start(prompt)
        self.budget = budget  # new tokens left (None: no limit)
        self.plan: deque[int] = deque()  # forced ending, once steering needs it
        self._need = 0  # characters to end the tune, as last measured
        if budget is not None:
            need = self._need = constraint.finish_length(self.state)
            if need + 1 > budget:
                raise ValueError(
                    f"max_new_tokens={budget} is too small: ending this tune takes "
                    f"at least {need + 1} tokens"
                )

    @property
    def done(self) -> bool:
        """True after EOS."""
        return self.state is None

    @property
    def needs_mask(self) -> bool:
        """Whether the next token must come from masked scores.

        Otherwise a token sampled from the model's own scores is checked with
        :meth:`allows` and the mask is computed only when it is refused: a
        rejection sampler, so the result has the masked distribution while most
        steps cost one token's check.
        """
        near_end = (
            self.budget is not None and self._need + 2 * STEER_MARGIN >= self.budget
        )
        return self.done or bool(self.plan) or near_end

    def allows(self, token: int) -> bool:
        """Whether ``token`` may come next (the grammar reads just this token)."""
        c = self.constraint
        if token == c.vocab.eos:
            return c.grammar.accepts(self.state)
        if token >= c.vocab.size:
            return False
        after = c.advance(self.state, token)
        self._peek = (token, after)
        return after is not None

    def restrict(self, scores: torch.Tensor) -> torch.Tensor:
        """Set the scores of disallowed tokens to -inf (in place); returns them."""
        eos = self.constraint.vocab.eos
        size = self.constraint.vocab.size
        if self.done or self.plan:
            keep = eos if self.done else self.plan[0]
            value = scores[keep].clone()
            scores.fill_(float("-inf"))
            scores[keep] = value if torch.isfinite(value) else 0.0
            return scores
        allowed = self.constraint.mask(self.state)
        if not allowed.any():  # a fault of the grammar: end the tune rather than fail
            logger.warning("no token allowed after %r; writing the ending", self.state)
            self.plan.extend(self.constraint.ending(self.state))
            return self.restrict(scores)
        scores[:size].masked_fill_(~allowed, float("-inf"))
        scores[size:] = float("-inf")  # padded rows of the embedding
        if self.budget is not None:
            self._steer(scores)
        return scores

    def _steer(self, scores: torch.Tensor) -> None:
        """Near the end of the budget keep only tokens after which the tune can end."""
        c = self.constraint
        # the ending grows by about a token's worth of music per step, so it is
        # measured every 16 steps, and every step once the budget comes near it
        if self._need + 2 * STEER_MARGIN < self.budget and self.budget % 16:
            return
        need = c.finish_length(self.state)
        self._need = need or 0
        if need is None or need + STEER_MARGIN < self.budget:
            return  # far from the end (or no ending known: leave it to the model)
        k = min(STEER_CANDIDATES, int(torch.isfinite(scores).sum()))
        candidates = torch.topk(scores, k).indices.tolist() if k else []
        keep = []
        for token in candidates:
            if token == c.vocab.eos:
                keep.append(token)
                continue
            after = c.advance(self.state, token)
            length = c.finish_length(after) if after is not None else None
            # one token per character of the ending, then EOS
            if length is not None and length + 1 <= self.budget - 1:
                keep.append(token)
        if not keep:
            self.plan.extend(c.ending(self.state))
            logger.debug("token budget: writing the ending %r", self.plan)
            self.restrict(scores)
            return
        kept = scores[keep].clone()
        scores.fill_(float("-inf"))
        scores[keep] = kept

    def take(self, token: int) -> int:
        """Take the sampled ``token``; returns it (the grammar never replaces one)."""
        self.advance(token)
        return token

    def advance(self, token: int) -> None:
        """Take the sampled ``token``."""
        if self.done:
            return
        if self.plan:
            self.plan.popleft()
        if self.budget is not None:
            self.budget -= 1
        peek = getattr(self, "_peek", None)
        if peek is not None and peek[0] == token:
            after = peek[1]
        else:
            after = self.constraint.advance(self.state, token)
        self._peek = None
        if after is None and token != self.constraint.vocab.eos:
            raise RuntimeError(f"token {token} was not allowed")
        self.state = after


class AbcLogitsProcessor(LogitsProcessor):
    """A ``transformers`` logits processor that samples only valid ABC tunes.

    ``conditions`` maps header letters to the exact values wanted, e.g.
    ``{"M": "6/8", "K": "D"}``; pass the same ``max_new_tokens`` as to
    ``generate`` so every tune ends (EOS) inside the budget.  Each prompt row
    must be the start of a tune (``X:1`` and header lines, or nothing).
    """

    def __init__(
        self,
        tokenizer,
        conditions: dict[str, str] | None = None,
        max_new_tokens: int | None = None,
    ):
        self.tokenizer = tokenizer
        self.constraint = AbcConstraint(tokenizer, conditions)
        self.max_new_tokens = max_new_tokens
        self.rows: list[ConstrainedRow] | None = None
        self._length = 0

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor
    ) -> torch.FloatTensor:
        if self.rows is None or input_ids.shape[1] <= self._length:
            prompts = self.tokenizer.batch_decode(input_ids, skip_special_tokens=True)
            self.rows = [
                ConstrainedRow(self.constraint, p, self.max_new_tokens) for p in prompts
            ]
        else:
            for row, token in zip(self.rows, input_ids[:, -1].tolist(), strict=True):
                row.advance(token)
        self._length = input_ids.shape[1]
        scores = scores.clone()
        for b, row in enumerate(self.rows):
            row.restrict(scores[b])
        return scores

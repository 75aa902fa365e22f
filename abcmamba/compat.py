"""The cache argument of causal LMs across transformers versions.

transformers 5.24 renamed the ``cache_params`` argument and output field of the
Mamba classes, and ``past_key_values`` of the Transformers, to ``cache`` (the
old keywords still work, with a warning, until 5.40).  Code that passes or
reads a cache goes through these helpers so it runs on either side of the rename.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from transformers.models.mamba import modeling_mamba


@functools.cache
def _cache_name_of(cls: type) -> str:
    """The cache keyword of ``cls.forward`` (looked up once per class)."""
    forward = inspect.signature(cls.forward).parameters
    for name in ("cache", "cache_params", "past_key_values"):
        if name in forward:
            return name
    raise TypeError(f"{cls.__name__}.forward takes no cache argument")


CACHE_KWARG = _cache_name_of(modeling_mamba.MambaMixer)
"""The keyword (and output field) that carries a Mamba model's recurrent cache."""


def cache_name(model: Any = None) -> str:
    """The forward keyword and output field of ``model``'s cache (Mamba if None)."""
    return CACHE_KWARG if model is None else _cache_name_of(type(model))


def cache_kwargs(cache: Any, model: Any = None) -> dict[str, Any]:
    """``{"cache": cache}`` (or the older name), for a forward call of ``model``."""
    return {cache_name(model): cache}


def output_cache(output: Any, model: Any = None) -> Any:
    """The cache in ``model``'s forward output."""
    return getattr(output, cache_name(model))


def mixer_cache(args: tuple, kwargs: dict) -> Any:
    """The cache given to ``MambaMixer.forward(hidden_states, cache, attention_mask)``."""
    if args:
        return args[0]
    return kwargs.get("cache", kwargs.get("cache_params"))


def mixer_mask(args: tuple, kwargs: dict) -> Any:
    """The attention mask given to ``MambaMixer.forward``."""
    return args[1] if len(args) > 1 else kwargs.get("attention_mask")


def keep_rows(cache: Any, index: Any) -> None:
    """Keep only the batch rows ``index`` of a generation cache, in place.

    Mamba's and the Transformers' caches have ``reorder_cache``; transformers'
    ``xLSTMCache`` has not, so its recurrent states are indexed here.
    """
    if hasattr(cache, "reorder_cache"):
        cache.reorder_cache(index)
    elif isinstance(getattr(cache, "rnn_state", None), dict):
        cache.rnn_state = {
            layer: tuple(state.index_select(0, index) for state in states)
            for layer, states in cache.rnn_state.items()
        }
    else:
        raise TypeError(f"cannot drop rows of a {type(cache).__name__}")

"""The xLSTM baseline: a stock ``transformers.xLSTMForCausalLM`` sized to the Mamba model.

What was broken, and why no patch is needed (transformers 5.24, native torch
kernels, i.e. without the optional ``xlstm`` package):

``xLSTMModel.forward`` (``models/xlstm/modeling_xlstm.py``, lines 1439-1485)
builds an ``xLSTMCache`` whenever ``use_cache`` is true, and ``use_cache``
falls back to ``config.use_cache`` (true) even in training; Mamba and Mamba2
fall back to false while training.  Each block then starts from the cache's
zero state tensors and, after the block, the model writes the new state into
those same tensors with ``cache.rnn_state[layer][i].copy_(...)`` (line 1484).
For 64 tokens and more the chunkwise kernel ``mlstm_chunkwise_recurrent_fw_C``
has saved the initial state for backward (``scaGbar_k[..., None] * matC_k``
and ``scaGbar_k * vecN_k``, lines 147 and 150), so ``loss.backward()`` fails
with "modified by an inplace operation".  Below 64 tokens only the recurrent
kernel runs, which ``clone()``s its states (lines 432/435), hence the report
that the chunkwise path "breaks at 64+ tokens".  ``mode="train"`` goes through
the same model loop and fails the same way.  The kernels themselves are right:
chunkwise and recurrent forward passes agree (tests/test_xlstm.py).

So training passes ``use_cache=False`` (train.py, benchmarks/train_speed.py):
no cache, no in-place write, the same forward.  The saved config keeps
``use_cache=True`` because ``generate`` needs the recurrent state (without it
every new token recomputes the whole prefix, about ten times slower).

Two more limits of 5.24 shape the config:

* ``xLSTMForCausalLM`` declares no ``_tied_weights_keys``, so
  ``tie_word_embeddings=True`` ties nothing: the head is a second V x H matrix.
  The width therefore shrinks where two embedding matrices would not fit the
  Mamba budget (the ``tiny`` preset).
* ``xLSTMLayer`` sizes its query/key and value projections as
  ``int(hidden * factor)`` while ``xLSTMCache`` rounds the same product up to
  a multiple of 64; the cache then has the wrong shape and ``generate`` fails.
  The factors are chosen so that the product is an exact multiple of 64.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from transformers import xLSTMConfig

if TYPE_CHECKING:
    from abcmamba.modeling import Preset

# transformers' defaults: query/key at half the width, values at the full width,
# the gated FFN at 2.667x rounded up to a multiple of 64
QK_FACTOR, V_FACTOR, FFN_FACTOR, FFN_MULTIPLE = 0.5, 1.0, 2.667, 64
# xLSTMCache rounds the projection widths up to this (see the module docstring)
CACHE_MULTIPLE = 64
MIN_WIDTH = 32
CHUNK_SIZE = 64


def projection_factor(hidden_size: int, factor: float) -> float | None:
    """``factor`` rounded up so that the projection width is a multiple of 64.

    None when no such factor is exact in floating point (the layer's ``int()`` and
    the cache's rounding would disagree).
    """
    width = CACHE_MULTIPLE * max(1, math.ceil(hidden_size * factor / CACHE_MULTIPLE))
    exact = width / hidden_size
    if int(hidden_size * exact) != width or hidden_size * exact != width:
        return None
    return exact


def block_params(
    hidden_size: int, num_heads: int, qk_factor: float, v_factor: float
) -> int:
    """Parameters of one xLSTM block (mLSTM layer + gated FFN, two RMSNorms)."""
    h = hidden_size
    qk, v = int(h * qk_factor), int(h * v_factor)
    # transformers' round_up_to_next_multiple_of floors (x + m - 1) // m on a float,
    # so 2048.256 becomes 2048, not 2112: the same arithmetic here
    up = int(((h * FFN_FACTOR + FFN_MULTIPLE - 1) // FFN_MULTIPLE) * FFN_MULTIPLE)
    return (
        2 * h  # norm_mlstm, norm_ffn
        + 2 * qk * h  # q, k
        + 2 * v * h  # v, ogate_preact
        + 2 * (num_heads * h + num_heads)  # igate_preact, fgate_preact (+bias)
        + v  # multihead_norm
        + v * h  # out_proj
        + 3 * up * h  # proj_up_gate, proj_up, proj_down
    )


def xlstm_param_count(
    vocab_size: int, hidden_size: int, num_layers: int, num_heads: int
) -> int:
    """Parameters of an xLSTMForCausalLM built by :func:`xlstm_config` (nothing allocated)."""
    qk = projection_factor(hidden_size, QK_FACTOR)
    v = projection_factor(hidden_size, V_FACTOR)
    if qk is None or v is None:
        raise ValueError(f"no cache-safe xLSTM projections at width {hidden_size}")
    # untied head: embeddings and lm_head are two matrices; + out_norm
    return (
        2 * vocab_size * hidden_size
        + num_layers * block_params(hidden_size, num_heads, qk, v)
        + hidden_size
    )


def solve_size(p: Preset, vocab_size: int, target: int) -> tuple[int, int]:
    """(width, layers) of the xLSTM closest to ``target`` parameters.

    The preset's width is kept when its two embedding matrices leave room for at
    least one block; otherwise the width halves (down to 32) until they do.
    """
    best: tuple[float, int, int] | None = None
    width = p.hidden_size
    while width >= MIN_WIDTH:
        heads = p.xlstm_num_heads
        qk = projection_factor(width, QK_FACTOR)
        v = projection_factor(width, V_FACTOR)
        if qk is not None and v is not None:
            fixed = 2 * vocab_size * width + width
            block = block_params(width, heads, qk, v)
            layers = max(1, round((target - fixed) / block))
            error = abs(fixed + layers * block - target) / target
            if best is None or error < best[0]:
                best = (error, width, layers)
            if error <= 0.05:
                break
        width //= 2
    if best is None:
        raise ValueError(f"no xLSTM width fits preset hidden size {p.hidden_size}")
    return best[1], best[2]


def xlstm_config(
    p: Preset, vocab_size: int, target: int, **special: int
) -> xLSTMConfig:
    """A stock xLSTMConfig of about ``target`` parameters; ``special`` holds token ids."""
    width, layers = solve_size(p, vocab_size, target)
    return xLSTMConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        num_hidden_layers=layers,
        num_heads=p.xlstm_num_heads,
        qk_dim_factor=projection_factor(width, QK_FACTOR),
        v_dim_factor=projection_factor(width, V_FACTOR),
        ffn_proj_factor=FFN_FACTOR,
        ffn_round_up_to_multiple_of=FFN_MULTIPLE,
        # tying is a no-op in transformers 5.24 (see the module docstring); say so
        tie_word_embeddings=False,
        # "inference" takes any length (chunks of 64, the rest recurrent) and is
        # what generate needs; "train" demands a multiple of chunk_size
        mode="inference",
        chunk_size=CHUNK_SIZE,
        # generate needs the cache; training turns it off per call (train.py)
        use_cache=True,
        **special,
    )

"""Fast single-token decoding for transformers' Mamba on CPU, in plain ``generate``.

A cached one-token step of a small Mamba on a CPU is framework time, not
arithmetic: about 35 linears and 150 small tensor ops through nested modules,
each costing more to dispatch than to compute at batch 1. Here the step is
one numba call per layer plus one for the LM head (``_numba_step``), on numpy
views of the model's own weights and of the cache's states (updated in place).

Importing ``abcmamba`` routes ``MambaForCausalLM.forward`` of every model
through :func:`forward` (``abcmamba._import_hook``), so ``model.generate`` and
``pipeline`` get the fast step with no other call: a cached one-token step of
a float32 model in eval mode on the CPU takes the fused path, anything else
(prefill, training, GPU, other dtypes, a padded last token, hidden states
asked for) runs the stock forward, with the numba scan under an inference
prefill on the CPU for that call (same weights, same results).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import numpy as np
import torch
from transformers.models.mamba.modeling_mamba import (
    MambaCausalLMOutput,
    MambaForCausalLM,
)

from abcmamba.compat import CACHE_KWARG, cache_kwargs
from abcmamba.kernels._numba_step import head_step, layer_step

logger = logging.getLogger(__name__)

__all__ = ["forward", "set_enabled", "stock_decode", "fast_step"]

_PLAN = "_abcmamba_decode_plan"
_enabled = True


def _array(tensor: torch.Tensor | None) -> np.ndarray:
    """A numpy view of a float32 tensor's data (no copy); an empty array for None."""
    if tensor is None:
        return np.zeros(0, dtype=np.float32)
    return tensor.detach().numpy()


class _Plan:
    """Numpy views of a model's weights for :func:`fast_step`, rebuilt when they change.

    The views share memory with the parameters, so in-place updates are seen;
    ``key`` notices a parameter replaced by another tensor, and A = -exp(A_log),
    the one derived array, is recomputed when A_log changes in place.
    """

    def __init__(self, model: MambaForCausalLM) -> None:
        self.params = list(model.parameters())
        self.key = self._key()
        self.usable = _eligible(self.params) and (
            model.backbone.embeddings.weight.shape == model.lm_head.weight.shape
        )
        if not self.usable:
            return
        self.embeddings = _array(model.backbone.embeddings.weight)
        self.layers = []
        for layer in model.backbone.layers:
            m = layer.mixer
            self.layers.append(  # layer_step's weight arguments, in order
                (
                    _array(layer.norm.weight),
                    layer.norm.variance_epsilon,
                    _array(m.in_proj.weight),
                    _array(m.in_proj.bias),
                    _array(m.conv1d.weight[:, 0]),
                    _array(m.conv1d.bias),
                    _array(m.x_proj.weight),
                    _array(m.dt_proj.weight),
                    _array(m.dt_proj.bias),
                    (-torch.exp(m.A_log.detach())).numpy(),
                    _array(m.D),
                    _array(m.out_proj.weight),
                    _array(m.out_proj.bias),
                )
            )
        norm_f = model.backbone.norm_f
        self.head = (_array(norm_f.weight), norm_f.variance_epsilon)
        self.lm_head = _array(model.lm_head.weight)

    def _key(self) -> tuple:
        # A_log's version covers the derived A; pointers cover swapped tensors
        return tuple((p.data_ptr(), p._version) for p in self.params)

    def current(self) -> bool:
        return self._key() == self.key


def _eligible(params: list[torch.Tensor]) -> bool:
    """Float32 weights that numpy can view as they are (contiguous, on the CPU)."""
    return all(
        p.dtype == torch.float32 and p.device.type == "cpu" and p.is_contiguous()
        for p in params
    )


def _plan(model: MambaForCausalLM) -> _Plan | None:
    """The model's plan (built once, rebuilt when its weights change); None if unusable."""
    plan = model.__dict__.get(_PLAN)
    if plan is None or not plan.current():
        plan = _Plan(model)
        model.__dict__[_PLAN] = plan
    return plan if plan.usable else None


def fast_step(
    model: MambaForCausalLM, input_ids: torch.Tensor, cache
) -> torch.Tensor | None:
    """Logits (B, 1, V) of one cached step, updating ``cache`` in place; None if not applicable."""
    layers = model.backbone.layers
    states = []
    for i in range(len(layers)):
        window = cache.get_conv_state(i, 0)
        h = cache.get_recurrent_state(i, 0)
        if window is None or h is None:
            return None
        if window.dtype != torch.float32 or h.dtype != torch.float32:
            return None
        if not (window.is_contiguous() and h.is_contiguous()):
            return None
        states.append((window.numpy(), h.numpy()))
    plan = _plan(model)
    if plan is None:
        return None
    # the residual stream, float32 as residual_in_fp32 keeps it
    r = plan.embeddings[input_ids[:, 0].numpy()]  # (B, D), a copy
    for weights, (window, h) in zip(plan.layers, states, strict=True):
        layer_step(r, window, h, *weights)
    logits = np.empty((r.shape[0], plan.lm_head.shape[0]), dtype=np.float32)
    head_step(r, plan.head[0], plan.head[1], plan.lm_head, logits)
    return torch.from_numpy(logits).unsqueeze(1)


def _wants_fast_step(model, input_ids, args, kwargs) -> bool:
    cache = kwargs.get(CACHE_KWARG)
    mask = kwargs.get("attention_mask")
    return (
        _enabled
        and not args
        and cache is not None
        and input_ids is not None
        and input_ids.ndim == 2
        and input_ids.shape[1] == 1
        and input_ids.device.type == "cpu"
        and not model.training
        and kwargs.get("inputs_embeds") is None
        and kwargs.get("labels") is None
        and not kwargs.get("output_hidden_states")
        and kwargs.get("return_dict") is not False
        and (mask is None or bool(mask[:, -1:].all()))
        and not cache.is_recording_past(0)
    )


@contextlib.contextmanager
def _kernel_scan(model: MambaForCausalLM) -> Iterator[None]:
    """Within the block the model's plain mixers run the numba scan (CPU inference)."""
    from transformers.models.mamba.modeling_mamba import MambaMixer

    from abcmamba.kernels import kernel_available, mamba_mixers
    from abcmamba.kernels.mixer import CpuKernelMambaMixer

    plain = []
    if model.lm_head.weight.device.type == "cpu":
        plain = [m for m in mamba_mixers(model) if type(m) is MambaMixer]
    if plain and not kernel_available():
        plain = []
    for mixer in plain:  # same parameters, only forward differs (enable_cpu_kernel)
        mixer.__class__ = CpuKernelMambaMixer
    try:
        yield
    finally:
        for mixer in plain:
            mixer.__class__ = MambaMixer


def forward(stock_forward, model, input_ids=None, *args, **kwargs):
    """MambaForCausalLM.forward: the fused step where it applies, else ``stock_forward``.

    Other inference calls without gradients (prefill in ``generate``) run the
    stock forward with the numba scan under it, for that call only, so a scan
    path chosen for training (``configure_scan_path``) stays as it was.
    """
    if _wants_fast_step(model, input_ids, args, kwargs):
        cache = kwargs[CACHE_KWARG]
        with torch.no_grad():
            logits = fast_step(model, input_ids, cache)
        if logits is not None:
            return MambaCausalLMOutput(logits=logits, **cache_kwargs(cache))
    if _enabled and not model.training and not torch.is_grad_enabled():
        with _kernel_scan(model):
            return stock_forward(model, input_ids, *args, **kwargs)
    return stock_forward(model, input_ids, *args, **kwargs)


def set_enabled(enabled: bool) -> bool:
    """Switch the fast step (and the prefill kernel swap) on or off; returns the old setting."""
    global _enabled
    before, _enabled = _enabled, enabled
    return before


@contextlib.contextmanager
def stock_decode() -> Iterator[None]:
    """Within the block every model decodes on transformers' own path (comparisons)."""
    before = set_enabled(False)
    try:
        yield
    finally:
        set_enabled(before)

"""Fast single-token decoding for transformers' Mamba on CPU.

transformers' ``MambaMixer`` handles a one-token step with a cache through the
same general code as a full sequence: padding masks, transposes, kernel-hub
wrappers and cache look-ups.  On a CPU at batch 1 those framework costs, not
arithmetic, dominate (about 0.5 ms per layer for a 4.5M-parameter model).
:func:`fused_step` is the same recurrence written as the minimum number of
tensor ops, updating the conv and SSM states in place; :func:`enable_fast_decode`
routes one-token cached calls of every mixer to it and leaves everything else
(prefill, training, padding) on the stock path.
"""

from __future__ import annotations

import logging
import types

import numpy as np
import torch
import torch.nn.functional as F

from abcmamba.compat import CACHE_KWARG, cache_kwargs, mixer_cache, mixer_mask
from abcmamba.kernels import mamba_mixers

logger = logging.getLogger(__name__)

_ATTR = "_abcmamba_fast_decode"


def _decay_rates(mixer: torch.nn.Module) -> torch.Tensor:
    """A = -exp(A_log), cached until A_log changes (it is constant while sampling)."""
    key = (mixer.A_log.data_ptr(), mixer.A_log._version, mixer.A_log.dtype)
    cached = getattr(mixer, "_abcmamba_decay", None)
    if cached is None or cached[0] != key:
        cached = (key, -torch.exp(mixer.A_log.detach().float()))
        mixer._abcmamba_decay = cached
    return cached[1]


def fused_step(
    mixer: torch.nn.Module,
    hidden_states: torch.Tensor,
    conv_state: torch.Tensor,
    ssm_state: torch.Tensor,
) -> torch.Tensor:
    """One Mamba step for a single new token; updates ``conv_state``/``ssm_state`` in place."""
    dtype = hidden_states.dtype
    x = hidden_states[:, 0]  # (B, D)
    xz = F.linear(x, mixer.in_proj.weight, mixer.in_proj.bias)  # (B, 2E)
    u, z = xz.chunk(2, dim=-1)  # (B, E), (B, E)

    # causal depthwise conv over the last K inputs: shift the window, append u
    conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))  # (B, E, K)
    conv_state[:, :, -1] = u.to(conv_state.dtype)
    u = torch.einsum(
        "bek,ek->be",
        conv_state.to(mixer.conv1d.weight.dtype),
        mixer.conv1d.weight[:, 0],
    )
    if mixer.conv1d.bias is not None:
        u = u + mixer.conv1d.bias
    u = F.silu(u)  # (B, E)

    # selective parameters: delta (B, E), B and C (B, N)
    rank, n = mixer.time_step_rank, mixer.ssm_state_size
    dt_r, b, c = torch.split(F.linear(u, mixer.x_proj.weight), [rank, n, n], dim=-1)
    delta = F.softplus(
        F.linear(dt_r, mixer.dt_proj.weight, mixer.dt_proj.bias).float()
    )  # (B, E)

    # h <- exp(delta A) h + delta B u ; y = C h + D u   (Mamba paper, eq. 2 discretized)
    a = _decay_rates(mixer)  # (E, N)
    delta_u = (delta * u.float()).unsqueeze(-1)  # (B, E, 1)
    ssm_state.mul_(torch.exp(delta.unsqueeze(-1) * a)).add_(
        delta_u * b.float().unsqueeze(1)
    )
    y = torch.bmm(ssm_state.to(c.dtype), c.unsqueeze(-1)).squeeze(-1)  # (B, E)
    y = (y + u * mixer.D) * F.silu(z)
    return F.linear(y.to(dtype), mixer.out_proj.weight, mixer.out_proj.bias).unsqueeze(
        1
    )  # (B, 1, D)


try:  # numba turns the ~20 small element-wise ops of a step into two calls
    from abcmamba.kernels._numba_scan import conv_silu_step, ssm_step

    HAVE_NUMBA = True
except ImportError:  # fused_step (torch) is the fallback
    HAVE_NUMBA = False


def _numba_ok(mixer, hidden_states, conv_state, ssm_state) -> bool:
    tensors = (hidden_states, conv_state, ssm_state, mixer.in_proj.weight)
    return (
        HAVE_NUMBA
        and all(t.dtype == torch.float32 for t in tensors)
        and mixer.conv1d.bias is not None
        and mixer.dt_proj.bias is not None
        and conv_state.is_contiguous()
        and ssm_state.is_contiguous()
    )


def numba_step(
    mixer: torch.nn.Module,
    hidden_states: torch.Tensor,
    conv_state: torch.Tensor,
    ssm_state: torch.Tensor,
) -> torch.Tensor:
    """:func:`fused_step` with the conv and the SSM update as two numba kernels."""
    x = hidden_states[:, 0]  # (B, D)
    xz = F.linear(x, mixer.in_proj.weight, mixer.in_proj.bias)  # (B, 2E)
    u_new, z = xz.chunk(2, dim=-1)  # (B, E), (B, E)
    u = torch.empty_like(u_new)  # (B, E)
    conv_silu_step(
        conv_state.numpy(),
        u_new.numpy(),
        _weights(mixer, "conv_w", lambda: mixer.conv1d.weight[:, 0]),
        _weights(mixer, "conv_b", lambda: mixer.conv1d.bias),
        u.numpy(),
    )
    rank, n = mixer.time_step_rank, mixer.ssm_state_size
    dt_r, b, c = torch.split(F.linear(u, mixer.x_proj.weight), [rank, n, n], dim=-1)
    dt = F.linear(dt_r, mixer.dt_proj.weight)  # (B, E), bias added in the kernel
    y = torch.empty_like(u)  # (B, E)
    ssm_step(
        ssm_state.numpy(),
        u.numpy(),
        z.numpy(),
        dt.numpy(),
        _weights(mixer, "dt_b", lambda: mixer.dt_proj.bias),
        _decay_rates(mixer).numpy(),
        b.numpy(),
        c.numpy(),
        _weights(mixer, "d", lambda: mixer.D),
        y.numpy(),
    )
    return F.linear(y, mixer.out_proj.weight, mixer.out_proj.bias).unsqueeze(
        1
    )  # (B, 1, D)


def _weights(mixer, name: str, get) -> np.ndarray:
    """A contiguous float32 numpy view of a parameter, cached until it changes."""
    tensor = get()
    key = (tensor.data_ptr(), tensor._version)
    cache = mixer.__dict__.setdefault("_abcmamba_np", {})
    if name not in cache or cache[name][0] != key:
        cache[name] = (key, tensor.detach().float().contiguous().numpy())
    return cache[name][1]


def _fast_forward(self, hidden_states, *args, **kwargs):
    """MambaMixer.forward that takes the fused path for cached single-token steps."""
    cache = mixer_cache(args, kwargs)
    attention_mask = mixer_mask(args, kwargs)
    if (
        cache is not None
        and hidden_states.shape[1] == 1
        and not self.training
        and hidden_states.device.type == "cpu"
        and not cache.is_recording_past(self.layer_idx)
    ):
        conv_state = cache.get_conv_state(self.layer_idx, state_idx=0)
        ssm_state = cache.get_recurrent_state(self.layer_idx, state_idx=0)
        # a padded row is never fed one token at a time with a mask of 0 in our use,
        # but honour a mask that says so by taking the stock path
        if (
            conv_state is not None
            and ssm_state is not None
            and (attention_mask is None or bool(attention_mask[:, -1:].all()))
        ):
            with torch.no_grad():
                return _mixer_step(self, hidden_states, conv_state, ssm_state)
    return type(self).forward(self, hidden_states, *args, **kwargs)


def _mixer_step(mixer, hidden_states, conv_state, ssm_state) -> torch.Tensor:
    if _numba_ok(mixer, hidden_states, conv_state, ssm_state):
        return numba_step(mixer, hidden_states, conv_state, ssm_state)
    return fused_step(mixer, hidden_states, conv_state, ssm_state)


def _rms_norm(norm, hidden_states: torch.Tensor) -> torch.Tensor:
    """MambaRMSNorm.forward without the module call."""
    h = hidden_states.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * h.to(hidden_states.dtype)


def _fast_lm_forward(self, input_ids=None, *args, **kwargs):
    """MambaForCausalLM.forward: a cached one-token step runs as one flat loop.

    The whole step (embedding, 2 x layers of norm + mixer + residual, final norm,
    LM head) without the nested module calls, hooks and output objects of the
    stock path, which cost more than the arithmetic for a small model on a CPU.
    """
    layers = self.backbone.layers
    cache = kwargs.get(CACHE_KWARG)
    attention_mask = kwargs.get("attention_mask")
    if (
        not args
        and input_ids is not None
        and input_ids.shape[1] == 1
        and kwargs.get("inputs_embeds") is None
        and kwargs.get("labels") is None
        and not kwargs.get("output_hidden_states")
        and kwargs.get("return_dict") is not False
        and cache is not None
        and not self.training
        and input_ids.device.type == "cpu"
        and (attention_mask is None or bool(attention_mask[:, -1:].all()))
        and not cache.is_recording_past(0)
    ):
        states = [
            (cache.get_conv_state(i, 0), cache.get_recurrent_state(i, 0))
            for i in range(len(layers))
        ]
        if all(c is not None and r is not None for c, r in states):
            from transformers.models.mamba.modeling_mamba import MambaCausalLMOutput

            with torch.no_grad():
                hidden = self.backbone.embeddings(input_ids)  # (B, 1, D)
                for layer, (conv_state, ssm_state) in zip(layers, states, strict=True):
                    residual = hidden.float() if layer.residual_in_fp32 else hidden
                    h = _rms_norm(layer.norm, hidden.to(layer.norm.weight.dtype))
                    hidden = residual + _mixer_step(
                        layer.mixer, h, conv_state, ssm_state
                    )
                hidden = _rms_norm(self.backbone.norm_f, hidden)
                logits = self.lm_head(hidden.to(self.lm_head.weight.dtype)).float()
            return MambaCausalLMOutput(logits=logits, **cache_kwargs(cache))
    return type(self).forward(self, input_ids, *args, **kwargs)


def enable_fast_decode(model: torch.nn.Module) -> int:
    """Route cached one-token steps of every Mamba mixer in ``model`` to :func:`fused_step`.

    Returns the number of mixers patched (0 for models that are not Mamba-1).
    """
    if getattr(getattr(model, "config", None), "model_type", "") != "mamba":
        return 0
    patched = 0
    # subclasses too (enable_cpu_kernel swaps in one for prefill): their forward
    # stays the fallback, because _fast_forward calls type(self).forward
    for module in mamba_mixers(model):
        if not getattr(module, _ATTR, False):
            module.forward = types.MethodType(_fast_forward, module)
            setattr(module, _ATTR, True)
            patched += 1
    if hasattr(model, "backbone") and not getattr(model, _ATTR, False):
        model.forward = types.MethodType(_fast_lm_forward, model)
        setattr(model, _ATTR, True)
    logger.debug("fast decode enabled on %d Mamba mixers", patched)
    return patched


def disable_fast_decode(model: torch.nn.Module) -> None:
    """Undo :func:`enable_fast_decode` (for comparisons against the stock path)."""
    for module in model.modules():  # includes the model itself
        if getattr(module, _ATTR, False):
            del module.forward
            setattr(module, _ATTR, False)

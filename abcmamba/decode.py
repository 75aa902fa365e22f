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

import torch
import torch.nn.functional as F

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


def _fast_forward(
    self, hidden_states, cache_params=None, attention_mask=None, **kwargs
):
    """MambaMixer.forward that takes the fused path for cached single-token steps."""
    if (
        cache_params is not None
        and hidden_states.shape[1] == 1
        and not self.training
        and hidden_states.device.type == "cpu"
        and not cache_params.is_recording_past(self.layer_idx)
    ):
        conv_state = cache_params.get_conv_state(self.layer_idx, state_idx=0)
        ssm_state = cache_params.get_recurrent_state(self.layer_idx, state_idx=0)
        # a padded row is never fed one token at a time with a mask of 0 in our use,
        # but honour a mask that says so by taking the stock path
        if (
            conv_state is not None
            and ssm_state is not None
            and (attention_mask is None or bool(attention_mask[:, -1:].all()))
        ):
            with torch.no_grad():
                return fused_step(self, hidden_states, conv_state, ssm_state)
    return type(self).forward(
        self, hidden_states, cache_params, attention_mask, **kwargs
    )


def enable_fast_decode(model: torch.nn.Module) -> int:
    """Route cached one-token steps of every Mamba mixer in ``model`` to :func:`fused_step`.

    Returns the number of mixers patched (0 for models that are not Mamba-1).
    """
    if getattr(getattr(model, "config", None), "model_type", "") != "mamba":
        return 0
    from transformers.models.mamba.modeling_mamba import MambaMixer

    patched = 0
    for module in model.modules():
        # subclasses too (abcmamba.kernels swaps in one for prefill): their forward
        # stays the fallback, because _fast_forward calls type(self).forward
        if isinstance(module, MambaMixer) and not getattr(module, _ATTR, False):
            module.forward = types.MethodType(_fast_forward, module)
            setattr(module, _ATTR, True)
            patched += 1
    logger.debug("fast decode enabled on %d Mamba mixers", patched)
    return patched


def disable_fast_decode(model: torch.nn.Module) -> None:
    """Undo :func:`enable_fast_decode` (for comparisons against the stock path)."""
    for module in model.modules():
        if getattr(module, _ATTR, False):
            del module.forward
            setattr(module, _ATTR, False)

"""A drop-in MambaMixer whose sequence path runs the numba kernels on CPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.mamba import modeling_mamba as mm

from abcmamba.compat import mixer_cache, mixer_mask
from abcmamba.kernels.functions import conv_silu, mamba_inner, selective_scan

_KERNEL_DTYPES = (torch.float32, torch.float64)


class CpuKernelMambaMixer(mm.MambaMixer):
    """MambaMixer with the same parameters; full sequences go through the CPU kernels.

    Only the class of the module changes (``enable_cpu_kernel`` swaps it in
    place), so state_dict, config and save_pretrained stay those of a plain
    MambaForCausalLM. Without a cache or a padding mask (training, scoring)
    everything between in_proj and out_proj is one fused Function
    (``mamba_inner``); prefill with a cache or a mask runs the conv and scan
    kernels separately. Single-token decode with a cache, other devices and
    dtypes other than fp32/fp64 take the stock transformers path.
    """

    def uses_kernel(self, hidden_states: torch.Tensor, cache_params=None) -> bool:
        """Whether this call will run on the CPU kernels."""
        if (
            hidden_states.device.type != "cpu"
            or hidden_states.dtype not in _KERNEL_DTYPES
        ):
            return False
        if self.in_proj.weight.dtype != hidden_states.dtype:
            return False
        # Decode steps (one token with a cache) use the stock recurrent update.
        return not (cache_params is not None and hidden_states.shape[1] == 1)

    def forward(self, hidden_states, *args, **kwargs):
        """Same contract and result as MambaMixer.forward(hidden_states, cache, mask)."""
        cache_params = mixer_cache(args, kwargs)
        attention_mask = mixer_mask(args, kwargs)
        if not self.uses_kernel(hidden_states, cache_params):
            return super().forward(hidden_states, *args, **kwargs)
        hidden_states = mm.apply_mask_to_padding_states(hidden_states, attention_mask)
        xz = self.in_proj(hidden_states)  # (B, L, 2D): x, then the gate z
        if not torch.is_autocast_enabled("cpu"):
            return self.out_proj(self._inner(xz, cache_params, attention_mask))
        # CPU autocast (bf16): in_proj and out_proj run in bf16 like every other
        # Linear; the conv, scan and small projections between them compute in
        # the parameters' dtype, as the CUDA kernels keep the scan fp32. The
        # fused path reads and writes bf16 itself; prefill converts.
        with torch.autocast("cpu", enabled=False):
            if not self._fused(cache_params, attention_mask):
                xz = xz.to(self.in_proj.weight.dtype)
            y = self._inner(xz, cache_params, attention_mask)
        return self.out_proj(y)

    @staticmethod
    def _fused(cache_params, attention_mask) -> bool:
        """Training and plain scoring: conv, projections, scan and gate in one Function."""
        return cache_params is None and attention_mask is None

    def _inner(self, xz, cache_params, attention_mask):
        """From in_proj's output (B, L, 2D) to out_proj's input (B, L, D).

        The fused path also takes a bf16 xz (fp32 parameters) and returns bf16.
        """
        seq_len = xz.shape[1]
        dtype = self.in_proj.weight.dtype  # the kernels compute in it
        a = -torch.exp(self.A_log.float()).to(dtype)  # (D, N)
        if self._fused(cache_params, attention_mask):
            y, _ = mamba_inner(
                xz,
                self.conv1d.weight,
                self.conv1d.bias,
                self.x_proj.weight,
                self.dt_proj.weight,
                self.dt_proj.bias,
                a,
                self.D.to(dtype),
            )
            return y

        fresh = (
            cache_params is None or cache_params.get_conv_state(self.layer_idx) is None
        )
        if fresh:
            u = conv_silu(xz, self.conv1d.weight, self.conv1d.bias)  # (B, L, D)
            if cache_params is not None:
                # First prefill: only the cache bookkeeping is needed from the stock call.
                cache_params.update_conv_state(
                    xz[..., : self.intermediate_size].transpose(1, 2),
                    self.layer_idx,
                    conv_kernel_size=self.conv_kernel_size,
                )
        else:
            # Prefill after earlier tokens: the conv sees the cached left context.
            x = xz[..., : self.intermediate_size].transpose(1, 2)  # (B, D, L)
            x = cache_params.update_conv_state(
                x, self.layer_idx, conv_kernel_size=self.conv_kernel_size
            )
            x = mm.causal_conv1d_fn(
                x,
                self.conv1d.weight.squeeze(1),
                self.conv1d.bias,
                activation=self.activation,
            )
            u = x[:, :, -seq_len:].transpose(1, 2)  # (B, L, D)
        u = mm.apply_mask_to_padding_states(u, attention_mask)

        dt, bm, cm = torch.split(
            self.x_proj(u),
            [self.time_step_rank, self.ssm_state_size, self.ssm_state_size],
            dim=-1,
        )  # (B, L, R), (B, L, N), (B, L, N)
        # Δ = softplus(dt + dt_proj.bias) is formed inside the scan.
        dt = F.linear(dt, self.dt_proj.weight)  # (B, L, D)
        y, last_state = selective_scan(
            u, dt, self.dt_proj.bias, a, bm, cm, self.D.to(dtype), xz
        )
        if cache_params is not None:
            cache_params.update_recurrent_state(last_state, self.layer_idx)
        return y

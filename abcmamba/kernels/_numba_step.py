"""Numba kernels for Mamba-1's cached one-token step: a whole layer per call.

At batch 1 on a CPU a decode step is tiny arithmetic spread over many
framework calls (four linears, a conv, a norm and a dozen element-wise ops per
layer). :func:`layer_step` does a layer's work in one call, and
:func:`head_step` the final norm and the LM head, so the step costs about
what reading the weights from memory costs.

One batch row ``b`` of layer ``l`` (Gu & Dao 2023, Algorithm 2: the scan's
recurrence in ``_numba_scan`` for one time step, with its exp and softplus,
the state kept (E, N) so the loop over n reads it in order), with the
residual stream ``r`` (B, D)::

    x      = RMSNorm(r)                                   (D,)
    u0, z  = split(W_in x + b_in)                         (E,), (E,)
    window = [window[1:], u0]                             (E, K)  conv state
    u      = silu(Σ_k window[:, k] w_conv[:, k] + b_conv) (E,)
    dt_r, B_t, C_t = split(W_x u)                         (R,), (N,), (N,)
    Δ_t    = softplus(W_dt dt_r + b_dt)                   (E,)
    h      = exp(Δ_t A) h + Δ_t B_t u                     (E, N)  SSM state
    y      = (h C_t + D u) · silu(z)                      (E,)
    r     += W_out y + b_out                              (D,)

Every loop over a weight matrix walks its rows in memory order and keeps all
batch rows for a weight row together, so each weight is read once per step.
These run on one thread: a step is too little work to share (a parallel
region costs more than a layer's arithmetic at batch 1).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from abcmamba.kernels._numba_scan import vexp, vsoftplus

_JIT = {"cache": True, "fastmath": True, "nogil": True}
_BLAS_BATCH = 8  # from this many rows a step's linears go to BLAS (np.dot)


@njit(**_JIT)
def _rms_norm(r, weight, eps, out):  # pragma: no cover - compiled
    """out[b] = weight * r[b] / sqrt(mean(r[b]^2) + eps), as MambaRMSNorm."""
    batch, dim = r.shape
    for b in range(batch):
        ms = 0.0
        for d in range(dim):
            ms += r[b, d] * r[b, d]
        scale = 1.0 / np.sqrt(ms / dim + eps)
        for d in range(dim):
            out[b, d] = weight[d] * (r[b, d] * scale)


@njit(**_JIT)
def _linear(x, w, bias, out):  # pragma: no cover - compiled
    """out = x @ w.T (+ bias if it has entries): x (B, I), w (O, I), out (B, O)."""
    batch = x.shape[0]
    rows, cols = w.shape
    if batch >= _BLAS_BATCH:  # a real matrix product: BLAS beats the loop
        out[:] = np.dot(x, w.T)
        if bias.shape[0]:
            out += bias
        return
    for o in range(rows):
        for b in range(batch):
            acc = 0.0
            for i in range(cols):
                acc += w[o, i] * x[b, i]
            out[b, o] = acc
    if bias.shape[0]:
        for b in range(batch):
            for o in range(rows):
                out[b, o] += bias[o]


@njit(**_JIT)
def layer_step(
    r,
    window,
    h,
    norm_w,
    eps,
    w_in,
    b_in,
    w_conv,
    b_conv,
    w_x,
    w_dt,
    b_dt,
    a,
    d_skip,
    w_out,
    b_out,
):  # pragma: no cover - compiled
    """One Mamba block for one new token; updates ``r``, ``window``, ``h`` in place.

    The state (r, window, h) comes first, then the layer's weights in the
    order ``decode._Plan`` keeps them.

    Shapes: r (B, D); w_in (2E, D); window (B, E, K); w_conv (E, K); w_x
    (R + 2N, E); w_dt (E, R); a = -exp(A_log) (E, N); h (B, E, N); w_out
    (D, E). A bias with no entries is absent.
    """
    batch, dim = r.shape
    inner, width = w_conv.shape
    n_state = a.shape[1]
    rank = w_dt.shape[1]

    x = np.empty((batch, dim), dtype=r.dtype)
    _rms_norm(r, norm_w, eps, x)
    xz = np.empty((batch, 2 * inner), dtype=r.dtype)
    _linear(x, w_in, b_in, xz)

    u = np.empty((batch, inner), dtype=r.dtype)
    for b in range(batch):
        for e in range(inner):
            acc = b_conv[e]
            for k in range(width - 1):
                v = window[b, e, k + 1]
                window[b, e, k] = v
                acc += v * w_conv[e, k]
            window[b, e, width - 1] = xz[b, e]
            acc += xz[b, e] * w_conv[e, width - 1]
            u[b, e] = acc / (1.0 + np.exp(-acc))

    proj = np.empty((batch, rank + 2 * n_state), dtype=r.dtype)
    _linear(u, w_x, b_in[:0], proj)
    delta = np.empty((batch, inner), dtype=r.dtype)
    _linear(proj[:, :rank].copy(), w_dt, b_dt, delta)

    y = np.empty((batch, inner), dtype=r.dtype)
    for b in range(batch):
        for e in range(inner):
            dt = vsoftplus(delta[b, e])
            dt_u = dt * u[b, e]
            acc = 0.0
            for n in range(n_state):
                s = vexp(dt * a[e, n]) * h[b, e, n] + dt_u * proj[b, rank + n]
                h[b, e, n] = s
                acc += s * proj[b, rank + n_state + n]
            gate = xz[b, inner + e]
            y[b, e] = (acc + d_skip[e] * u[b, e]) * gate / (1.0 + np.exp(-gate))

    out = np.empty((batch, dim), dtype=r.dtype)
    _linear(y, w_out, b_out, out)
    for b in range(batch):
        for d in range(dim):
            r[b, d] += out[b, d]


@njit(**_JIT)
def head_step(r, norm_w, eps, w_head, logits):  # pragma: no cover - compiled
    """logits (B, V) = RMSNorm(r) @ w_head.T (the LM head has no bias)."""
    x = np.empty_like(r)
    _rms_norm(r, norm_w, eps, x)
    _linear(x, w_head, norm_w[:0], logits)

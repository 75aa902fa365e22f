"""torch.autograd.Functions around the numba kernels (fp32 and fp64, CPU).

Memory stays linear in B*L*D: the scan saves its inputs plus the state at the
start of every ``chunk`` steps and recomputes the states inside the backward.
"""

from __future__ import annotations

import logging
import time

import torch

logger = logging.getLogger(__name__)

#: time steps between saved states; the backward recomputes one chunk at a time.
CHUNK = 64
#: channels per parallel task; their state (N x DBLK) stays in cache.
DBLK = 256

_kernels = None


def load_kernels():
    """Import the numba module and compile (or load from cache) every kernel; log the time."""
    global _kernels
    if _kernels is not None:
        return _kernels
    start = time.perf_counter()
    from abcmamba.kernels import _numba_scan as nk

    _kernels = nk
    try:
        # One tiny fp32 call per kernel compiles now, not mid-training (fp64,
        # used by gradcheck, compiles on its first call).
        _warm_up(torch.float32)
    except Exception:
        _kernels = None
        raise
    logger.info(
        "numba selective-scan kernels ready in %.1f s (compiled, or loaded from numba's cache)",
        time.perf_counter() - start,
    )
    return nk


def _warm_up(dtype: torch.dtype) -> None:
    """Run each kernel once on a tiny input of the given dtype."""
    gen = torch.Generator().manual_seed(0)
    b, seqlen, dim, nstate, ksize = 1, 3, 2, 2, 2
    xz = torch.randn(b, seqlen, 2 * dim, generator=gen, dtype=dtype)
    w = torch.randn(dim, 1, ksize, generator=gen, dtype=dtype, requires_grad=True)
    bias = torch.randn(dim, generator=gen, dtype=dtype)
    u = ConvSiluFn.apply(xz, w, bias)
    delta = torch.rand(b, seqlen, dim, generator=gen, dtype=dtype)
    a = -torch.rand(dim, nstate, generator=gen, dtype=dtype)
    bm = torch.randn(b, seqlen, nstate, generator=gen, dtype=dtype)
    cm = torch.randn(b, seqlen, nstate, generator=gen, dtype=dtype)
    d_skip = torch.randn(dim, generator=gen, dtype=dtype)
    y, _ = SelectiveScanFn.apply(u, delta, a, bm, cm, d_skip, xz)
    y.sum().backward()


def _ready():
    """The loaded kernel module, with numba's thread count following torch's."""
    import numba

    # Respect torch.set_num_threads (e.g. one thread per process under DDP).
    wanted = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)
    return _kernels


def _np(t: torch.Tensor):
    """A numpy view of a contiguous CPU tensor (no copy)."""
    return t.detach().numpy()


class SelectiveScanFn(torch.autograd.Function):
    """y = (scan(u, delta, A, B, C) + D*u) * silu(z); z is the second half of xz."""

    @staticmethod
    def forward(ctx, u, delta, a, bm, cm, d_skip, xz):
        nk = _ready()
        batch, seqlen, dim = u.shape
        nstate = a.shape[1]
        u, delta, bm, cm, xz = (t.contiguous() for t in (u, delta, bm, cm, xz))
        a_t = a.t().contiguous()  # (N, D)
        d_skip = d_skip.contiguous()
        nchunk = (seqlen + CHUNK - 1) // CHUNK
        y = torch.empty_like(u)  # (B, L, D)
        ckpt = torch.empty(batch, nchunk, nstate, dim, dtype=u.dtype)  # (B, L/T, N, D)
        last = torch.empty(batch, dim, nstate, dtype=u.dtype)  # (B, D, N)
        nk.scan_fwd(
            _np(u),
            _np(delta),
            _np(a_t),
            _np(bm),
            _np(cm),
            _np(d_skip),
            _np(xz),
            _np(y),
            _np(ckpt),
            _np(last),
            CHUNK,
            DBLK,
        )
        ctx.save_for_backward(u, delta, a_t, bm, cm, d_skip, xz, ckpt)
        ctx.mark_non_differentiable(last)
        return y, last

    @staticmethod
    def backward(ctx, gy, _glast):
        nk = _ready()
        u, delta, a_t, bm, cm, d_skip, xz, ckpt = ctx.saved_tensors
        batch, seqlen, dim = u.shape
        nstate = a_t.shape[0]
        nblk = (dim + DBLK - 1) // DBLK
        gy = gy.contiguous()
        gu = torch.empty_like(u)
        gdelta = torch.empty_like(u)
        ga_part = torch.empty(batch, nstate, dim, dtype=u.dtype)
        gb_part = torch.empty(batch, nblk, seqlen, nstate, dtype=u.dtype)
        gc_part = torch.empty(batch, nblk, seqlen, nstate, dtype=u.dtype)
        gd_part = torch.empty(batch, dim, dtype=u.dtype)
        # Only the z half is written here; the conv backward fills the x half.
        gxz = torch.zeros_like(xz)
        nk.scan_bwd(
            _np(u),
            _np(delta),
            _np(a_t),
            _np(bm),
            _np(cm),
            _np(d_skip),
            _np(xz),
            _np(ckpt),
            _np(gy),
            CHUNK,
            DBLK,
            _np(gu),
            _np(gdelta),
            _np(ga_part),
            _np(gb_part),
            _np(gc_part),
            _np(gd_part),
            _np(gxz),
        )
        ga = ga_part.sum(0).t()  # (D, N)
        return gu, gdelta, ga, gb_part.sum(1), gc_part.sum(1), gd_part.sum(0), gxz


class ConvSiluFn(torch.autograd.Function):
    """u = silu(causal depthwise conv1d(x)); x is the first half of xz (B, L, 2D)."""

    @staticmethod
    def forward(ctx, xz, weight, bias):
        nk = _ready()
        batch, seqlen, dim2 = xz.shape
        dim = dim2 // 2
        xz = xz.contiguous()
        w = weight.reshape(dim, -1).t().contiguous()  # (K, D)
        has_bias = bias is not None
        b = bias.contiguous() if has_bias else torch.zeros(dim, dtype=xz.dtype)
        u = torch.empty(batch, seqlen, dim, dtype=xz.dtype)  # (B, L, D)
        nk.conv_silu_fwd(_np(xz), _np(w), _np(b), _np(u))
        ctx.save_for_backward(xz, w, b)
        ctx.has_bias = has_bias
        ctx.weight_shape = weight.shape
        return u

    @staticmethod
    def backward(ctx, gu):
        nk = _ready()
        xz, w, b = ctx.saved_tensors
        batch, _, dim2 = xz.shape
        dim = dim2 // 2
        gxz = torch.zeros_like(xz)
        gw_part = torch.empty(batch, w.shape[0], dim, dtype=xz.dtype)  # (B, K, D)
        gb_part = torch.empty(batch, dim, dtype=xz.dtype)
        nk.conv_silu_bwd(
            _np(xz),
            _np(w),
            _np(b),
            _np(gu.contiguous()),
            _np(gxz),
            _np(gw_part),
            _np(gb_part),
        )
        gw = gw_part.sum(0).t().reshape(ctx.weight_shape)
        gb = gb_part.sum(0) if ctx.has_bias else None
        return gxz, gw, gb


def selective_scan(u, delta, a, bm, cm, d_skip, xz):
    """Gated selective scan; returns (y (B, L, D), last state (B, D, N))."""
    load_kernels()
    return SelectiveScanFn.apply(u, delta, a, bm, cm, d_skip, xz)


def conv_silu(xz, weight, bias):
    """silu(causal depthwise conv) of xz's first half, (B, L, D)."""
    load_kernels()
    return ConvSiluFn.apply(xz, weight, bias)

"""torch.autograd.Functions around the numba kernels (fp32 and fp64, CPU).

Memory stays linear in B*L*D: the scan saves its inputs plus the state at the
start of every ``chunk`` steps and recomputes the states inside the backward.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time

import torch

logger = logging.getLogger(__name__)

#: time steps between saved states; the backward recomputes one chunk at a time.
CHUNK = 64
#: most channels per parallel task (their state is N x DBLK).
DBLK = 512

_kernels = None


def load_kernels():
    """Import the numba module and compile (or load from cache) every kernel; log the time."""
    global _kernels
    if _kernels is not None:
        return _kernels
    start = time.perf_counter()
    _choose_threading_layer()
    from abcmamba.kernels import _numba_scan as nk

    _kernels = nk
    try:
        # One tiny fp32 call per kernel, and one with bf16 in and out (CPU
        # autocast), compiles now, not mid-training (fp64, used by gradcheck,
        # compiles on its first call).
        with torch.enable_grad():  # it runs a backward; callers may be in no_grad
            _warm_up(torch.float32)
            _warm_up(torch.float32, io_dtype=torch.bfloat16)
    except Exception:
        _kernels = None
        raise
    logger.info(
        "numba selective-scan kernels ready in %.1f s (compiled, or loaded from numba's cache)",
        time.perf_counter() - start,
    )
    return nk


def _choose_threading_layer() -> None:
    """Prefer numba's own thread pool ("workqueue") to its OpenMP layer.

    numba's OpenMP layer links the system libgomp, a second OpenMP runtime next
    to the one torch ships: each pool's threads spin after every parallel
    region while the other's work, and on a machine with few cores the
    kernel/GEMM hand-offs of every layer then cost more than the kernels
    (small preset, 2 cores: ~3x the wall time of a step). workqueue threads
    sleep instead. It is not thread-safe, so launches hold _LAUNCH. An
    explicit NUMBA_THREADING_LAYER, or a layer numba already started, wins.
    """
    import numba

    if os.environ.get("NUMBA_THREADING_LAYER"):
        return
    try:
        numba.threading_layer()  # raises until the first parallel launch
    except ValueError:
        numba.config.THREADING_LAYER = "workqueue"


#: parallel kernel launches, one at a time (the workqueue layer is not thread-safe)
_LAUNCH = threading.Lock()


def _serialized(fn):
    """Run an autograd forward/backward holding _LAUNCH (e.g. a threaded server)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _LAUNCH:
            return fn(*args, **kwargs)

    return wrapper


#: reusable buffers for the (B, L, D) temporaries that never leave MambaInnerFn
_SCRATCH: dict[tuple[str, torch.dtype], torch.Tensor] = {}


def _scratch(slot: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A buffer for a temporary, kept between calls (used under _LAUNCH only).

    A fresh multi-MB tensor comes from mmap and page-faults on first touch;
    at the small preset that was ~40 MB (10k faults, ~20 ms of kernel time)
    per layer and step. One buffer per slot serves every layer in turn, grown
    to the largest shape seen.
    """
    numel = 1
    for n in shape:
        numel *= n
    buf = _SCRATCH.get((slot, dtype))
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel, dtype=dtype)
        _SCRATCH[(slot, dtype)] = buf
    return buf[:numel].view(shape)


def _warm_up(dtype: torch.dtype, io_dtype: torch.dtype | None = None) -> None:
    """Run every kernel (conv and scan, forward and backward) once on a tiny input.

    ``io_dtype``: xz's (and so y's and the gradients') dtype, if not ``dtype``.
    """
    gen = torch.Generator().manual_seed(0)
    b, seqlen, dim, nstate, ksize, rank = 1, 3, 2, 2, 2, 2

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    xz = rnd(b, seqlen, 2 * dim).to(io_dtype or dtype).requires_grad_()
    conv_w, conv_b = rnd(dim, 1, ksize), rnd(dim)
    xproj_w, dtproj_w, dtproj_b = rnd(rank + 2 * nstate, dim), rnd(dim, rank), rnd(dim)
    a, d_skip = -torch.rand(dim, nstate, generator=gen, dtype=dtype), rnd(dim)
    y, _ = MambaInnerFn.apply(
        xz, conv_w, conv_b, xproj_w, dtproj_w, dtproj_b, a, d_skip
    )
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
    """A numpy view of a contiguous CPU tensor (no copy); bf16 as its uint16 bits."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.uint16)
    return t.numpy()


class ConvSiluFn(torch.autograd.Function):
    """u = silu(causal depthwise conv1d(x)); x is the first half of xz (B, L, 2D)."""

    @staticmethod
    @_serialized
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
    @_serialized
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


def _scan_inputs(u, dt, wdt, dt_bias, a_t, bc, boff, d_skip, xz) -> tuple:
    """The leading arguments both scan kernels take, in their order (numpy views).

    Either dt (B, L, D) or dt_proj's weight ``wdt`` (R, D) is given, the other
    None: with ``wdt`` the kernels compute dt from ``bc``'s first R columns.
    """
    nstate = a_t.shape[0]
    b_cols = (boff, boff + nstate)  # first columns of B_t and C_t in ``bc``
    if wdt is None:
        wdt = torch.empty(0, u.shape[2], dtype=u.dtype)
    else:
        dt = torch.empty(1, 1, 1, dtype=u.dtype)  # not read
    return (
        _np(u),
        _np(dt),
        _np(wdt),
        _np(dt_bias),
        _np(a_t),
        _np(bc),
        *b_cols,
        _np(d_skip),
        _np(xz),
    )


def _block_width(batch: int, dim: int) -> int:
    """Channels per scan task: as wide as DBLK allows, in batch * blocks tasks
    that share out evenly over numba's threads (wider blocks measured 8-19%
    faster than 256 at the small preset; an idle thread costs more)."""
    import numba

    threads = numba.get_num_threads()
    nblk = -(-dim // DBLK)
    while (batch * nblk) % threads and nblk < dim:
        nblk += 1
    return -(-dim // nblk)


def _scan_forward(nk, u, dt, dt_bias, a_t, bc, boff, d_skip, xz, wdt=None):
    """Run mamba_scan_fwd: y (B, L, D), chunk checkpoints (B, L/T, N, D), last state (B, D, N).

    x ``u`` and dt (B, L, D), xz (B, L, 2D); A ``a_t`` is (N, D); B_t and C_t
    are N columns each of ``bc`` (B, L, *), from column ``boff`` on. With
    dt_proj's weight ``wdt`` (R, D), dt is None and the kernel computes it.
    """
    batch, seqlen, dim = u.shape
    nstate = a_t.shape[0]
    nchunk = (seqlen + CHUNK - 1) // CHUNK
    # (B, L, D), in xz's dtype (bf16 under CPU autocast)
    y = torch.empty(batch, seqlen, dim, dtype=xz.dtype)
    ckpt = torch.empty(batch, nchunk, nstate, dim, dtype=u.dtype)  # (B, L/T, N, D)
    last = torch.empty(batch, dim, nstate, dtype=u.dtype)  # (B, D, N)
    nk.mamba_scan_fwd(
        *_scan_inputs(u, dt, wdt, dt_bias, a_t, bc, boff, d_skip, xz),
        _np(y),
        _np(ckpt),
        _np(last),
        CHUNK,
        _block_width(batch, dim),
    )
    return y, ckpt, last


def _scan_backward(
    nk, u, dt, dt_bias, a_t, bc, boff, d_skip, xz, ckpt, gy, gu, gdt, gxz, wdt=None
):
    """Run mamba_scan_bwd into ḡx ``gu``, ḡdt (B, L, D) and gxz's z half.

    Returns ḡdt_bias (D,), ḡA (D, N), ḡB, ḡC (B, L, N) and ḡD (D,); with
    dt_proj's weight ``wdt`` (R, D) (dt and gdt None) also the gradients of
    dt_proj's input (B, L, R) and of ``wdt`` (R, D).
    """
    batch, seqlen, dim = u.shape
    nstate = a_t.shape[0]
    rank = 0 if wdt is None else wdt.shape[0]
    if gdt is None:
        gdt = torch.empty(1, 1, 1, dtype=u.dtype)  # not written
    dblk = _block_width(batch, dim)
    nblk = (dim + dblk - 1) // dblk
    gdtb_part = torch.empty(batch, dim, dtype=u.dtype)
    ga_part = torch.empty(batch, nstate, dim, dtype=u.dtype)
    gb_part = torch.empty(batch, nblk, seqlen, nstate, dtype=u.dtype)
    gc_part = torch.empty(batch, nblk, seqlen, nstate, dtype=u.dtype)
    gd_part = torch.empty(batch, dim, dtype=u.dtype)
    gdx_part = torch.empty(batch, nblk, seqlen, rank, dtype=u.dtype)
    gw_part = torch.empty(batch, rank, dim, dtype=u.dtype)
    nk.mamba_scan_bwd(
        *_scan_inputs(u, dt, wdt, dt_bias, a_t, bc, boff, d_skip, xz),
        _np(ckpt),
        _np(gy),
        CHUNK,
        dblk,
        _np(gu),
        _np(gdt),
        _np(gdtb_part),
        _np(ga_part),
        _np(gb_part),
        _np(gc_part),
        _np(gd_part),
        _np(gxz),
        _np(gdx_part),
        _np(gw_part),
    )
    grads = (
        gdtb_part.sum(0),
        ga_part.sum(0).t(),
        gb_part.sum(1),
        gc_part.sum(1),
        gd_part.sum(0),
    )
    if wdt is None:
        return grads
    return grads + (gdx_part.sum(1), gw_part.sum(0))


class SelectiveScanFn(torch.autograd.Function):
    """y = (scan(x, Δ, A, B, C) + D x) silu(z), Δ = softplus(dt + dt_bias), z = xz's second half.

    For prefill with a cache or a padding mask, where x comes from a conv with
    cached left context or is masked, so it cannot be fused as in MambaInnerFn.
    The same scan kernels; B and C travel as one (B, L, 2N) tensor.
    """

    @staticmethod
    @_serialized
    def forward(ctx, u, dt, dt_bias, a, bm, cm, d_skip, xz):
        nk = _ready()
        u, dt, xz = (t.contiguous() for t in (u, dt, xz))
        bc = torch.cat((bm, cm), dim=-1)  # (B, L, 2N): B_t, then C_t
        a_t = a.t().contiguous()  # (N, D)
        dt_bias, d_skip = dt_bias.contiguous(), d_skip.contiguous()
        y, ckpt, last = _scan_forward(nk, u, dt, dt_bias, a_t, bc, 0, d_skip, xz)
        ctx.save_for_backward(u, dt, dt_bias, a_t, bc, d_skip, xz, ckpt)
        ctx.mark_non_differentiable(last)
        return y, last

    @staticmethod
    @_serialized
    def backward(ctx, gy, _glast):
        nk = _ready()
        u, dt, dt_bias, a_t, bc, d_skip, xz, ckpt = ctx.saved_tensors
        gy = gy.contiguous()
        gu = torch.empty_like(u)  # (B, L, D)
        gdt = torch.empty_like(u)  # (B, L, D)
        # Only the z half is written here; x reaches y through u alone.
        gxz = torch.zeros_like(xz)
        gdtb, ga, gb, gc, gd = _scan_backward(
            nk, u, dt, dt_bias, a_t, bc, 0, d_skip, xz, ckpt, gy, gu, gdt, gxz
        )
        return gu, gdt, gdtb, ga, gb, gc, gd, gxz


def _conv_x(nk, xz, w_t, cb):
    """x_t = silu(conv(x)_t), (B, L, D) in scratch."""
    batch, seqlen, dim2 = xz.shape
    u = _scratch("u", (batch, seqlen, dim2 // 2), w_t.dtype)
    nk.conv_silu_fwd(_np(xz), _np(w_t), _np(cb), _np(u))
    return u


class MambaInnerFn(torch.autograd.Function):
    """The Mamba block from in_proj's output to out_proj's input, in one piece.

    Per token (x, z = the halves of xz; R = dt rank, N = state size)::

        x_t          = silu(causal depthwise conv(x)_t)            (B, L, D)
        dt_t, B_t, C_t = split(x_proj(x_t), [R, N, N])              (B, L, R+2N)
        Δ_t          = softplus(dt_proj.weight dt_t + dt_proj.bias) (B, L, D)
        y_t          = (scan(x, Δ, A, B, C)_t + D x_t) silu(z_t)     (B, L, D)

    The conv and the scan (with dt_proj, the softplus, D skip and gate) are
    numba kernels, x_proj a torch GEMM. dt_t, B_t and C_t are read in place
    from x_proj's output; dt_proj's output and Δ never exist as tensors (the
    rank-R product costs the kernels about one state's work per token, a
    torch GEMM wrote and read a (B, L, D) tensor four times per step). Saved
    for the backward: xz, x_proj's output (R + 2N per token) and the chunk
    checkpoints; x_t is recomputed there (a conv pass), which is cheaper than
    keeping another (B, L, D) tensor.

    xz may be bf16 (in_proj's output under CPU autocast) with fp32 parameters:
    the kernels then read xz and ḡy and write y and ḡxz as bf16, computing in
    fp32, bit for bit what ``xz.float()`` in and ``y.bfloat16()`` out give,
    without the fp32 copies (and with half the saved xz).
    """

    @staticmethod
    @_serialized
    def forward(ctx, xz, conv_w, conv_b, xproj_w, dtproj_w, dtproj_b, a, d_skip):
        nk = _ready()
        dim = xz.shape[2] // 2
        rank = dtproj_w.shape[1]
        xz = xz.contiguous()
        w_t = conv_w.reshape(dim, -1).t().contiguous()  # (K, D)
        has_conv_bias = conv_b is not None
        cb = conv_b.contiguous() if has_conv_bias else torch.zeros_like(w_t[0])
        u = _conv_x(nk, xz, w_t, cb)  # x after conv+SiLU dies here
        batch, seqlen, _ = xz.shape
        xdbl3 = torch.mm(u.view(-1, dim), xproj_w.t()).view(batch, seqlen, -1)
        wdt = dtproj_w.t().contiguous()  # (R, D)
        a_t = a.t().contiguous()  # (N, D)
        d_skip = d_skip.contiguous()
        dtproj_b = dtproj_b.contiguous()
        y, ckpt, last = _scan_forward(
            nk, u, None, dtproj_b, a_t, xdbl3, rank, d_skip, xz, wdt
        )
        ctx.save_for_backward(
            xz, w_t, cb, xproj_w, wdt, dtproj_b, a_t, d_skip, xdbl3, ckpt
        )
        ctx.has_conv_bias = has_conv_bias
        ctx.conv_shape = conv_w.shape
        ctx.mark_non_differentiable(last)
        return y, last

    @staticmethod
    @_serialized
    def backward(ctx, gy, _glast):
        nk = _ready()
        xz, w_t, cb, xproj_w, wdt, dtproj_b, a_t, d_skip, xdbl3, ckpt = (
            ctx.saved_tensors
        )
        batch, seqlen, dim2 = xz.shape
        dim = dim2 // 2
        rank = wdt.shape[0]
        nstate = a_t.shape[0]
        dtype = w_t.dtype  # the compute dtype (xz may be bf16)
        u = _conv_x(nk, xz, w_t, cb)  # recomputed (see the class docstring)
        xdbl = xdbl3.view(batch * seqlen, -1)
        gy = gy.contiguous()
        gu = _scratch("gu", (batch, seqlen, dim), dtype)
        # Every element is written: the scan fills the z half, the conv the x half.
        gxz = torch.empty_like(xz)
        g_dtproj_b, ga, gb, gc, gd, gdx, gwdt = _scan_backward(
            nk,
            u,
            None,
            dtproj_b,
            a_t,
            xdbl3,
            rank,
            d_skip,
            xz,
            ckpt,
            gy,
            gu,
            None,
            gxz,
            wdt,
        )
        gxdbl = torch.empty_like(xdbl)  # ḡ of x_proj's output: (ḡdt, ḡB, ḡC)
        gxdbl[:, :rank] = gdx.view(-1, rank)
        gxdbl[:, rank : rank + nstate] = gb.view(-1, nstate)
        gxdbl[:, rank + nstate :] = gc.view(-1, nstate)
        g_dtproj_w = gwdt.t()  # (D, R)
        u2 = u.view(-1, dim)
        g_xproj_w = torch.mm(gxdbl.t(), u2)  # (R+2N, D)
        gu.view(-1, dim).addmm_(gxdbl, xproj_w)  # x_t also feeds x_proj
        gw_part = torch.empty(batch, w_t.shape[0], dim, dtype=dtype)  # (B, K, D)
        gcb_part = torch.empty(batch, dim, dtype=dtype)
        nk.conv_silu_bwd(
            _np(xz), _np(w_t), _np(cb), _np(gu), _np(gxz), _np(gw_part), _np(gcb_part)
        )
        g_conv_w = gw_part.sum(0).t().reshape(ctx.conv_shape)
        g_conv_b = gcb_part.sum(0) if ctx.has_conv_bias else None
        return gxz, g_conv_w, g_conv_b, g_xproj_w, g_dtproj_w, g_dtproj_b, ga, gd


def mamba_inner(xz, conv_w, conv_b, xproj_w, dtproj_w, dtproj_b, a, d_skip):
    """The fused Mamba block core: y (B, L, D) ready for out_proj, last state (B, D, N)."""
    load_kernels()
    return MambaInnerFn.apply(
        xz, conv_w, conv_b, xproj_w, dtproj_w, dtproj_b, a, d_skip
    )


def selective_scan(u, dt, dt_bias, a, bm, cm, d_skip, xz):
    """Gated selective scan, Δ = softplus(dt + dt_bias); returns (y (B, L, D), last state (B, D, N))."""
    load_kernels()
    return SelectiveScanFn.apply(u, dt, dt_bias, a, bm, cm, d_skip, xz)


def conv_silu(xz, weight, bias):
    """silu(causal depthwise conv) of xz's first half, (B, L, D)."""
    load_kernels()
    return ConvSiluFn.apply(xz, weight, bias)

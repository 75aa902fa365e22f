"""Numba kernels for Mamba-1's selective scan and causal depthwise conv on CPU.

Whole sequences (training, prefill); the cached one-token decode step is in
``_numba_step``.

Layout everywhere is time-major per batch, channels last: ``(B, L, D)`` for
``u``/``delta``/``y``, ``(B, L, 2D)`` for the in_proj output ``xz`` (``x`` in the
first half, the gate ``z`` in the second), ``(B, L, N)`` for ``B``/``C`` and
``(N, D)`` for ``A``. The innermost loop always runs over channels so LLVM
vectorises it; the state of one block of channels lives in a small local array.

The recurrence (Gu & Dao 2023, Mamba, Algorithm 2), per batch row, channel d
and state index n, with x_t = ``u`` and the gate z_t from ``xz``::

    h_t[n, d] = exp(Δ_t[d] A[n, d]) h_{t-1}[n, d] + Δ_t[d] B_t[n] x_t[d]   (h_0 = 0)
    s_t[d]    = Σ_n C_t[n] h_t[n, d]
    y_t[d]    = (s_t[d] + D[d] x_t[d]) · z_t[d] σ(z_t[d])                 (SiLU gate)

and its gradients (ḡ = ∂loss/∂·; ḡh_t collects the future through h_{t+1}),
walking t backwards from the chunk checkpoints::

    ḡs_t      = ḡy_t z_t σ(z_t)
    ḡz_t      = ḡy_t (s_t + D x_t) σ(z_t) (1 + z_t (1 - σ(z_t)))
    ḡh_t     += C_t ḡs_t                      ḡC_t[n] = Σ_d ḡs_t[d] h_t[n, d]
    ḡΔ_t      = Σ_n ḡh_t (A exp(Δ_t A) h_{t-1} + B_t x_t)
    ḡA       += Σ_t ḡh_t Δ_t exp(Δ_t A) h_{t-1}
    ḡB_t[n]   = Σ_d ḡh_t[n, d] Δ_t[d] x_t[d]
    ḡx_t      = D ḡs_t + Σ_n ḡh_t Δ_t B_t      ḡD += Σ_t ḡs_t x_t
    ḡh_{t-1}  = exp(Δ_t A) ḡh_t

The scan kernels (``mamba_scan_fwd``/``mamba_scan_bwd``, used for training
and for prefill alike) take dt_proj's output without its bias instead of Δ and
apply the softplus themselves (Δ never becomes a tensor); softplus' is the
logistic σ::

    Δ_t       = softplus(dt_t + dt_bias)          ḡdt_t = ḡΔ_t σ(dt_t + dt_bias)

Given dt_proj's weight ``wdt`` (R, D) they go one step further and compute
dt_t = Σ_r wdt[r] δ_t[r] themselves from its rank-R input δ_t (x_proj's first
R columns, in ``xdbl``), so dt is never a tensor either, and the backward
returns ḡδ_t[r] = Σ_d ḡdt_t[d] wdt[r, d] and ḡwdt += ḡdt_t ⊗ δ_t instead of
ḡdt. With an empty ``wdt`` (R = 0) they read dt from ``dt`` and write ḡdt.

Names in the code: ``u`` x, ``delta`` Δ, ``a_t`` A (stored (N, D)), ``bm``/``cm``
B/C, ``d_skip`` D, ``h`` h, ``da``/``dabuf`` exp(ΔA), ``dhbuf`` exp(ΔA) h_{t-1}, ``du`` Δx,
``acc``/``ss`` s, ``gs`` ḡs, ``gh``/``ght`` ḡh, and ``g*`` the other gradients.

``xz``, ``y``, ``gy`` and ``gxz`` may also be uint16 arrays holding bf16 bits
(CPU autocast): ``ld`` widens an element to fp32 exactly, ``st`` rounds to
nearest even as torch's ``.to(torch.bfloat16)`` does, and everything else,
the arithmetic included, stays fp32.

Importing this module compiles nothing: numba compiles (or loads from its
on-disk cache) on the first call.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic, overload

_JIT = {"cache": True, "fastmath": True, "nogil": True}


def _bitcast(src, dst):
    """A numba intrinsic reinterpreting a ``src`` scalar's bits as ``dst`` (LLVM vectorises it)."""

    @intrinsic
    def cast(typingctx, bits):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(dst))

        return dst(src), codegen

    return cast


_int32_as_float32 = _bitcast(types.int32, types.float32)
_float32_as_int32 = _bitcast(types.float32, types.int32)
_float32_as_uint32 = _bitcast(types.float32, types.uint32)


def vexp(x):
    """exp(x): a vectorisable polynomial in float32, math.exp otherwise."""
    return math.exp(x)


@overload(vexp, jit_options={"fastmath": True})
def _vexp_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:

        def impl(x):
            # Cody-Waite range reduction x = k*ln2 + r, |r| <= ln2/2, then a
            # degree-6 Taylor/minimax polynomial: relative error ~1.5e-7 (fp32 ulp).
            xc = min(max(x, np.float32(-87.0)), np.float32(88.0))
            k = np.floor(xc * np.float32(1.44269504) + np.float32(0.5))
            r = xc - k * np.float32(0.693359375)
            r = r + k * np.float32(2.12194440e-4)
            p = np.float32(1.9875691500e-4)
            p = p * r + np.float32(1.3981999507e-3)
            p = p * r + np.float32(8.3334519073e-3)
            p = p * r + np.float32(4.1665795894e-2)
            p = p * r + np.float32(1.6666665459e-1)
            p = p * r + np.float32(5.0000001201e-1)
            p = p * r * r + r + np.float32(1.0)
            scale = _int32_as_float32((np.int32(k) + np.int32(127)) << np.int32(23))
            return p * scale

        return impl

    def impl(x):
        return math.exp(x)

    return impl


#: log2(e): the scans keep A in base 2, so exp(Δ A) = 2^(Δ A log2(e)).
LOG2E = 1.4426950408889634


def vexp2_neg(x):
    """2^x for x <= 0 (the decay exp(Δ A) with A pre-scaled by log2(e))."""
    return np.exp2(x)


@overload(vexp2_neg, jit_options={"fastmath": True})
def _vexp2_neg_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:

        def impl(x):
            # 2^x = 2^k 2^f, k = round(x), |f| <= 1/2: no Cody-Waite split
            # and one clamp (x <= 0 here), 15% off the scan forward. Its error
            # is that of x itself, |x| eps relative: at most eps e^-1 absolute,
            # under an ulp of a decay near 1 (small decays barely count in h).
            xc = max(x, np.float32(-125.0))
            k = np.floor(xc + np.float32(0.5))
            f = xc - k
            p = np.float32(1.5353362e-4)
            p = p * f + np.float32(1.3398874e-3)
            p = p * f + np.float32(9.6184775e-3)
            p = p * f + np.float32(5.5503338e-2)
            p = p * f + np.float32(2.4022650e-1)
            p = p * f + np.float32(6.9314718e-1)
            p = p * f + np.float32(1.0)
            scale = _int32_as_float32((np.int32(k) + np.int32(127)) << np.int32(23))
            return p * scale

        return impl

    def impl(x):
        return np.exp2(x)

    return impl


def _is_bf16(ty) -> bool:
    """bf16 tensors reach the kernels as uint16 arrays of their bits."""
    return isinstance(ty, types.Integer) and ty.bitwidth == 16


def ld(x):
    """An element of an input array as a float: bf16 bits widen exactly to fp32."""
    return x


@overload(ld, jit_options={"fastmath": True})
def _ld_overload(x):
    if _is_bf16(x):

        def impl(x):
            return _int32_as_float32(np.int32(x) << np.int32(16))

        return impl

    def impl(x):
        return x

    return impl


def st(arr, i, v):
    """arr[i] = v, rounded to nearest even where arr holds bf16 bits (as torch rounds)."""
    arr[i] = v


@overload(st, jit_options={"fastmath": True})
def _st_overload(arr, i, v):
    if _is_bf16(arr.dtype):

        def impl(arr, i, v):
            bits = _float32_as_uint32(np.float32(v))
            rounding = ((bits >> np.uint32(16)) & np.uint32(1)) + np.uint32(0x7FFF)
            arr[i] = np.uint16((bits + rounding) >> np.uint32(16))

        return impl

    def impl(arr, i, v):
        arr[i] = v

    return impl


def vsoftplus(x):
    """softplus(x) = log(1 + exp(x)), x itself above 20 (torch's threshold)."""
    if x > 20.0:
        return x
    return math.log1p(math.exp(x))


def vsoftplus_sigmoid(x):
    """(softplus(x), σ(x)), the softplus and its derivative from one exp(x)."""
    if x > 20.0:
        return x, 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return math.log1p(e), e / (1.0 + e)


# fastmath without "reassoc": it would fold (1 + e) - 1 into e and lose the
# Goldberg correction below.
_NO_REASSOC = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}


@overload(vsoftplus_sigmoid, jit_options={"fastmath": _NO_REASSOC})
def _vsoftplus_sigmoid_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:

        def impl(x):
            # log1p(e), e = exp(x), as log(w) * e / (w - 1) with w = 1 + e
            # (Goldberg): exact to a few ulp even where 1 + e rounds; log(w) is
            # Cephes' logf on the mantissa in [sqrt(1/2), sqrt(2)), all branch-free.
            e = vexp(x)
            w = np.float32(1.0) + e
            bits = _float32_as_int32(w)
            k = np.float32((bits >> np.int32(23)) - np.int32(126))
            m = _int32_as_float32((bits & np.int32(0x7FFFFF)) | np.int32(0x3F000000))
            small = m < np.float32(0.707106781186547524)
            f = m + m - np.float32(1.0) if small else m - np.float32(1.0)
            k = k - np.float32(1.0) if small else k
            z = f * f
            p = np.float32(7.0376836292e-2)
            p = p * f - np.float32(1.1514610310e-1)
            p = p * f + np.float32(1.1676998740e-1)
            p = p * f - np.float32(1.2420140846e-1)
            p = p * f + np.float32(1.4249322787e-1)
            p = p * f - np.float32(1.6668057665e-1)
            p = p * f + np.float32(2.0000714765e-1)
            p = p * f - np.float32(2.4999993993e-1)
            p = p * f + np.float32(3.3333331174e-1)
            r = p * f * z
            r = r + k * np.float32(-2.12194440e-4)
            r = r - np.float32(0.5) * z
            lg = f + r + k * np.float32(0.693359375)
            den = w - np.float32(1.0)
            sp = e if den == np.float32(0.0) else lg * (e / den)
            # Above 20, σ(x) rounds to 1 in float32 (and e / w would be inf / inf).
            big = x > np.float32(20.0)
            return (x if big else sp), (np.float32(1.0) if big else e / w)

        return impl

    def impl(x):
        if x > 20.0:
            return x, 1.0 / (1.0 + math.exp(-x))
        e = math.exp(x)
        return math.log1p(e), e / (1.0 + e)

    return impl


@overload(vsoftplus, jit_options={"fastmath": _NO_REASSOC})
def _vsoftplus_overload(x):
    def impl(x):
        return vsoftplus_sigmoid(x)[0]

    return impl


@njit(**_JIT)
def _in_base2(a_t, d0, d1):
    """A[:, d0:d1] log2(e) in A's dtype: the scans' decay is 2^(Δ A log2(e))."""
    out = np.empty((a_t.shape[0], d1 - d0), dtype=a_t.dtype)
    for n in range(a_t.shape[0]):
        for d in range(d1 - d0):
            out[n, d] = a_t[n, d0 + d] * LOG2E
    return out


#: time steps per conv forward task: its scratch row is allocated once, not per step.
CONV_TBLK = 64


@njit(parallel=True, **_JIT)
def conv_silu_fwd(xz, w_t, bias, u):
    """u = silu(causal depthwise conv of xz's first half); w_t is (K, D)."""
    batch, seqlen, dim2 = xz.shape
    dim = dim2 // 2
    ksize = w_t.shape[0]
    ntblk = (seqlen + CONV_TBLK - 1) // CONV_TBLK
    for task in prange(batch * ntblk):
        b = task // ntblk
        t0 = (task % ntblk) * CONV_TBLK
        one = np.ones(1, dtype=u.dtype)[0]
        acc = np.empty(dim, dtype=u.dtype)
        for t in range(t0, min(t0 + CONV_TBLK, seqlen)):
            acc[:] = bias
            for k in range(ksize):
                ts = t - ksize + 1 + k
                if ts >= 0:
                    wk = w_t[k]
                    xt = xz[b, ts, :dim]
                    for d in range(dim):
                        acc[d] += wk[d] * ld(xt[d])
            ut = u[b, t]
            for d in range(dim):
                a = acc[d]
                ut[d] = a / (one + vexp(-a))


@njit(parallel=True, **_JIT)
def conv_silu_bwd(xz, w_t, bias, gu, gxz, gw_part, gb_part):
    """Backward of conv_silu_fwd: writes gxz's first half and per-batch w/bias grads."""
    batch, seqlen, dim2 = xz.shape
    dim = dim2 // 2
    ksize = w_t.shape[0]
    for b in prange(batch):
        one = np.ones(1, dtype=gu.dtype)[0]
        gpre = np.empty((seqlen, dim), dtype=gu.dtype)
        gw = np.zeros((ksize, dim), dtype=gu.dtype)
        gbl = np.zeros(dim, dtype=gu.dtype)
        acc = np.empty(dim, dtype=gu.dtype)
        for t in range(seqlen):
            acc[:] = bias
            for k in range(ksize):
                ts = t - ksize + 1 + k
                if ts >= 0:
                    wk = w_t[k]
                    xt = xz[b, ts, :dim]
                    for d in range(dim):
                        acc[d] += wk[d] * ld(xt[d])
            gut = gu[b, t]
            gp = gpre[t]
            for d in range(dim):
                a = acc[d]
                sig = one / (one + vexp(-a))
                g = gut[d] * sig * (one + a * (one - sig))
                gp[d] = g
                gbl[d] += g
        gx = np.empty(dim, dtype=gu.dtype)
        for t in range(seqlen):
            xt = xz[b, t, :dim]
            for d in range(dim):
                gx[d] = 0.0
            for k in range(ksize):
                # x at time t feeds the output at t + (ksize - 1 - k)
                to = t + ksize - 1 - k
                if to < seqlen:
                    wk = w_t[k]
                    gwk = gw[k]
                    gp = gpre[to]
                    for d in range(dim):
                        gx[d] += wk[d] * gp[d]
                        gwk[d] += gp[d] * ld(xt[d])
            gxt = gxz[b, t, :dim]
            for d in range(dim):
                st(gxt, d, gx[d])
        gw_part[b] = gw
        gb_part[b] = gbl


@njit(inline="always", **_JIT)
def _dt_row(dt, wdt, xdbl, b, t, d0, d1, rank, out):
    """dt_t[d0:d1] into ``out``: Σ_r wdt[r] xdbl[b, t, r], or dt's row if R = 0."""
    if rank == 0:
        out[:] = dt[b, t, d0:d1]
        return
    out[:] = 0.0
    # Four ranks per pass: a quarter of the loads and stores of ``out``.
    for r in range(0, rank - 3, 4):
        x0, x1 = xdbl[b, t, r], xdbl[b, t, r + 1]
        x2, x3 = xdbl[b, t, r + 2], xdbl[b, t, r + 3]
        w0, w1 = wdt[r, d0:d1], wdt[r + 1, d0:d1]
        w2, w3 = wdt[r + 2, d0:d1], wdt[r + 3, d0:d1]
        for d in range(d1 - d0):
            out[d] += (w0[d] * x0 + w1[d] * x1) + (w2[d] * x2 + w3[d] * x3)
    for r in range(rank - rank % 4, rank):
        xr = xdbl[b, t, r]
        wr = wdt[r, d0:d1]
        for d in range(d1 - d0):
            out[d] += wr[d] * xr


@njit(parallel=True, **_JIT)
def mamba_scan_fwd(
    u,
    dt,
    wdt,
    dt_bias,
    a_t,
    xdbl,
    boff,
    coff,
    d_skip,
    xz,
    y,
    ckpt,
    last_state,
    chunk,
    dblk,
):
    """Gated selective scan forward; fills y, the chunk-start states and the last state.

    Shapes: x ``u``, dt, y (B, L, D); dt_bias, D (D,); A ``a_t`` (N, D); xz
    (B, L, 2D); ckpt (B, ceil(L / chunk), N, D); last_state (B, D, N).
    Δ_t = softplus(dt_t + dt_bias) is computed here (never stored). B_t, C_t
    are read in place from ``xdbl`` (B, L, *), e.g. x_proj's output (B, L, R + 2N),
    at columns ``boff``/``coff``: no split, no copies. With ``wdt`` (R, D),
    dt_t = Σ_r wdt[r] xdbl[b, t, r] (``dt`` is not read), else dt (B, L, D).
    """
    # Inner loops index 1-D views with the loop counter only: numba then knows
    # the index is non-negative and LLVM vectorises (4-5x faster than a[n, d0 + d]).
    batch, seqlen, dim = u.shape
    nstate = a_t.shape[0]
    rank = wdt.shape[0]
    nblk = (dim + dblk - 1) // dblk
    for task in prange(batch * nblk):
        b = task // nblk
        d0 = (task % nblk) * dblk
        dn = min(dblk, dim - d0)
        d1 = d0 + dn
        one = np.ones(1, dtype=u.dtype)[0]
        h = np.zeros((nstate, dn), dtype=u.dtype)  # h_t[n, d] of this block
        acc = np.empty(dn, dtype=u.dtype)  # s_t
        dl = np.empty(dn, dtype=u.dtype)  # Δ_t
        du = np.empty(dn, dtype=u.dtype)  # Δ_t x_t
        a2 = _in_base2(a_t, d0, d1)  # for exp(Δ_t A) = 2^(Δ_t A log2(e))
        dsk = d_skip[d0:d1]
        dtb = dt_bias[d0:d1]
        for t in range(seqlen):
            if t % chunk == 0:
                ckpt[b, t // chunk, :, d0:d1] = h
            _dt_row(dt, wdt, xdbl, b, t, d0, d1, rank, dl)
            ut = u[b, t, d0:d1]
            for d in range(dn):
                dv = vsoftplus(dl[d] + dtb[d])
                dl[d] = dv
                du[d] = dv * ut[d]
                acc[d] = 0.0
            for n in range(nstate):
                bn = xdbl[b, t, boff + n]
                cn = xdbl[b, t, coff + n]
                ar = a2[n]
                hr = h[n]
                for d in range(dn):
                    # h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t;  s_t += C_t h_t
                    hv = vexp2_neg(dl[d] * ar[d]) * hr[d] + du[d] * bn
                    hr[d] = hv
                    acc[d] += hv * cn
            zt = xz[b, t, dim + d0 : dim + d1]
            yt = y[b, t, d0:d1]
            for d in range(dn):
                zz = ld(zt[d])  # y_t = (s_t + D x_t) z_t σ(z_t)
                st(yt, d, (acc[d] + dsk[d] * ut[d]) * zz / (one + vexp(-zz)))
        last_state[b, d0:d1, :] = h.T


@njit(parallel=True, **_JIT)
def mamba_scan_bwd(
    u,
    dt,
    wdt,
    dt_bias,
    a_t,
    xdbl,
    boff,
    coff,
    d_skip,
    xz,
    ckpt,
    gy,
    chunk,
    dblk,
    gu,
    gdt,
    gdtb_part,
    ga_part,
    gb_part,
    gc_part,
    gd_part,
    gxz,
    gdx_part,
    gw_part,
):
    """Backward of mamba_scan_fwd, chunk by chunk from the checkpoints.

    Writes ḡx (gu, scan and D skip only), ḡ(dt_t) = ḡΔ_t σ(dt_t + dt_bias)
    (gdt), the gate's ḡz into gxz's second half and per-task partial sums of
    ḡdt_bias (B, D), ḡA (B, N, D), ḡB, ḡC (B, ceil(D / dblk), L, N), ḡD (B, D); gxz's
    first half is left as it is. With ``wdt`` (R, D) it writes, instead of
    gdt, per-task partial sums of ḡxdbl[..., :R] (gdx_part, (B, ceil(D / dblk),
    L, R)) and of ḡwdt (gw_part, (B, R, D)). With q_t[d] = Σ_n ḡh_t[n, d] B_t[n] the terms of
    ḡΔ_t and ḡx_t that go through B_t x_t cost one pass per (t, d), not per n.
    """
    batch, seqlen, dim = u.shape
    nstate = a_t.shape[0]
    rank = wdt.shape[0]
    nblk = (dim + dblk - 1) // dblk
    nchunk = (seqlen + chunk - 1) // chunk
    for task in prange(batch * nblk):
        b = task // nblk
        blk = task % nblk
        d0 = blk * dblk
        dn = min(dblk, dim - d0)
        d1 = d0 + dn
        one = np.ones(1, dtype=u.dtype)[0]
        zero = one - one
        h = np.empty((nstate, dn), dtype=u.dtype)  # h_t, running forwards
        dhbuf = np.empty((chunk, nstate, dn), dtype=u.dtype)  # exp(Δ_t A) h_{t-1}
        dabuf = np.empty((chunk, nstate, dn), dtype=u.dtype)  # exp(Δ_t A)
        dlbuf = np.empty((chunk, dn), dtype=u.dtype)  # Δ_t
        sgbuf = np.empty((chunk, dn), dtype=u.dtype)  # σ(dt_t + dt_bias)
        ssbuf = np.empty((chunk, dn), dtype=u.dtype)  # s_t
        gsbuf = np.empty((chunk, dn), dtype=u.dtype)  # ḡs_t
        gh = np.zeros((nstate, dn), dtype=u.dtype)
        ga = np.zeros((nstate, dn), dtype=u.dtype)
        gdsk = np.zeros(dn, dtype=u.dtype)
        gdtb = np.zeros(dn, dtype=u.dtype)
        du = np.empty(dn, dtype=u.dtype)
        gdl = np.empty(dn, dtype=u.dtype)
        q = np.empty(dn, dtype=u.dtype)
        gv = np.empty(dn, dtype=u.dtype)  # ḡdt_t
        gw = np.zeros((rank, dn), dtype=u.dtype)
        a2 = _in_base2(a_t, d0, d1)
        dsk = d_skip[d0:d1]
        dtb = dt_bias[d0:d1]
        for c in range(nchunk - 1, -1, -1):
            t0 = c * chunk
            tlen = min(chunk, seqlen - t0)
            h[:] = ckpt[b, c, :, d0:d1]
            # Recompute Δ_t, h_t and s_t of this chunk, keeping exp(Δ_t A) and
            # exp(Δ_t A) h_{t-1} for the walk back. ḡs_t needs only ḡy_t and
            # z_t, so ḡC_t = Σ_d ḡs_t h_t is summed here while h_t is at hand.
            for j in range(tlen):
                t = t0 + j
                ut = u[b, t, d0:d1]
                zt = xz[b, t, dim + d0 : dim + d1]
                gyt = gy[b, t, d0:d1]
                dl = dlbuf[j]
                sg = sgbuf[j]
                ss = ssbuf[j]
                gs = gsbuf[j]
                _dt_row(dt, wdt, xdbl, b, t, d0, d1, rank, dl)
                for d in range(dn):
                    xv = dl[d] + dtb[d]
                    dl[d], sg[d] = vsoftplus_sigmoid(xv)
                    du[d] = dl[d] * ut[d]
                    ss[d] = 0.0
                    zz = ld(zt[d])
                    gs[d] = ld(gyt[d]) * zz / (one + vexp(-zz))  # ḡy_t z_t σ(z_t)
                for n in range(nstate):
                    bn = xdbl[b, t, boff + n]
                    cn = xdbl[b, t, coff + n]
                    ar2 = a2[n]
                    hr = h[n]
                    dar = dabuf[j, n]
                    dhr = dhbuf[j, n]
                    acc_c = zero
                    for d in range(dn):
                        da = vexp2_neg(dl[d] * ar2[d])
                        dar[d] = da
                        dh = da * hr[d]
                        dhr[d] = dh
                        hv = dh + du[d] * bn
                        hr[d] = hv
                        ss[d] += hv * cn
                        acc_c += gs[d] * hv
                    gc_part[b, blk, t, n] = acc_c
            for j in range(tlen - 1, -1, -1):
                t = t0 + j
                dl = dlbuf[j]
                gs = gsbuf[j]
                ut = u[b, t, d0:d1]
                zt = xz[b, t, dim + d0 : dim + d1]
                gyt = gy[b, t, d0:d1]
                gzt = gxz[b, t, dim + d0 : dim + d1]
                gut = gu[b, t, d0:d1]
                ss = ssbuf[j]
                for d in range(dn):
                    zz = ld(zt[d])
                    # σ(z_t) again: cheaper than a (chunk, dn) buffer (measured)
                    sig = one / (one + vexp(-zz))
                    pre = ss[d] + dsk[d] * ut[d]
                    st(gzt, d, ld(gyt[d]) * pre * sig * (one + zz * (one - sig)))
                    gdsk[d] += gs[d] * ut[d]
                    gut[d] = gs[d] * dsk[d]
                    gdl[d] = 0.0
                    q[d] = 0.0
                    du[d] = dl[d] * ut[d]
                for n in range(nstate):
                    bn = xdbl[b, t, boff + n]
                    cn = xdbl[b, t, coff + n]
                    ar = a_t[n, d0:d1]
                    dhr = dhbuf[j, n]
                    dar = dabuf[j, n]
                    ghr = gh[n]
                    gar = ga[n]
                    acc_b = zero
                    for d in range(dn):
                        ght = ghr[d] + gs[d] * cn  # ḡh_t
                        tmp = ght * dhr[d]  # ḡh_t exp(Δ_t A) h_{t-1}
                        gdl[d] += tmp * ar[d]
                        gar[d] += tmp * dl[d]
                        acc_b += ght * du[d]
                        q[d] += ght * bn
                        ghr[d] = ght * dar[d]  # ḡh_{t-1}
                    gb_part[b, blk, t, n] = acc_b
                sg = sgbuf[j]
                for d in range(dn):
                    gut[d] += q[d] * dl[d]
                    g = (gdl[d] + q[d] * ut[d]) * sg[d]  # ḡΔ_t softplus'
                    gv[d] = g
                    gdtb[d] += g
                if rank == 0:
                    gdt[b, t, d0:d1] = gv
                for r in range(rank):
                    xr = xdbl[b, t, r]
                    wr = wdt[r, d0:d1]
                    gwr = gw[r]
                    acc_x = zero
                    for d in range(dn):
                        acc_x += gv[d] * wr[d]
                        gwr[d] += gv[d] * xr
                    gdx_part[b, blk, t, r] = acc_x
        ga_part[b, :, d0:d1] = ga
        gw_part[b, :, d0:d1] = gw
        gd_part[b, d0:d1] = gdsk
        gdtb_part[b, d0:d1] = gdtb

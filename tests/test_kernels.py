"""The numba CPU kernels for Mamba match transformers' own path exactly."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("numba")
from safetensors.torch import load_file  # noqa: E402
from transformers import MambaConfig, MambaForCausalLM  # noqa: E402

import abcmamba.kernels as kernels  # noqa: E402
from abcmamba import OMP_SPIN, modeling  # noqa: E402
from abcmamba.compat import cache_kwargs, output_cache  # noqa: E402
from abcmamba.kernels import functions  # noqa: E402
from abcmamba.kernels import mixer as mixer_module  # noqa: E402

REL_TOL = 1e-5

pytestmark = pytest.mark.skipif(
    not kernels.kernel_available(), reason="numba kernels could not compile here"
)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative error of a against the reference b (Frobenius norms)."""
    return (
        (a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)
    ).item()


def tiny_config(**kw) -> MambaConfig:
    """A tiny Mamba-1 configuration (intermediate 2*hidden, fp32)."""
    args = dict(
        vocab_size=97,
        hidden_size=32,
        state_size=8,
        num_hidden_layers=2,
        intermediate_size=64,
        time_step_rank=4,
        conv_kernel=4,
        initializer_range=0.02,
    )
    args.update(kw)
    return MambaConfig(**args)


def model_pair(seed: int = 0, **kw) -> tuple[MambaForCausalLM, MambaForCausalLM]:
    """(stock model, identical copy running the kernel)."""
    torch.manual_seed(seed)
    ref = MambaForCausalLM(tiny_config(**kw))
    fast = copy.deepcopy(ref)
    assert kernels.enable_cpu_kernel(fast)
    return ref, fast


def test_import_compiles_nothing():
    """Importing the package neither imports numba nor compiles anything."""
    code = "import sys, abcmamba.kernels; print('numba' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "first, env, wanted",
    [
        ("abcmamba", {}, OMP_SPIN),
        ("abcmamba", {"GOMP_SPINCOUNT": "5"}, "5"),
        ("abcmamba", {"OMP_WAIT_POLICY": "ACTIVE"}, "None"),
        ("torch", {}, "None"),  # too late: libgomp has read its settings
    ],
)
def test_import_before_torch_shortens_omp_spin(first, env, wanted):
    """`import abcmamba` before torch sets libgomp's spin, never over the user's choice."""
    code = f"import os, {first}, abcmamba; print(os.environ.get('GOMP_SPINCOUNT'))"
    mine = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")
    base = {k: v for k, v in os.environ.items() if k not in mine}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=base | env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == wanted


def test_forward_and_all_grads_match_stock():
    """Logits and every parameter/input gradient match the stock path in fp32."""
    seq_len = functions.CHUNK + 13  # crosses a chunk boundary, not a multiple
    ref, fast = model_pair()
    ids = torch.randint(0, 97, (3, seq_len), generator=torch.Generator().manual_seed(1))
    results = []
    for model in (ref, fast):
        embeds = model.backbone.embeddings(ids).detach().requires_grad_()
        out = model(inputs_embeds=embeds, labels=ids)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        results.append(
            (out.logits.detach(), out.loss.item(), embeds.grad.clone(), grads)
        )
    (lr, loss_r, er, gr), (lf, loss_f, ef, gf) = results
    assert rel_err(lf, lr) < REL_TOL
    assert abs(loss_f - loss_r) <= REL_TOL * abs(loss_r)
    assert rel_err(ef, er) < REL_TOL
    wanted = ("A_log", "D", "dt_proj", "x_proj", "conv1d", "in_proj", "out_proj")
    for part in wanted:
        names = [n for n in gr if f".{part}" in n]
        assert names, part
        for name in names:
            assert rel_err(gf[name], gr[name]) < REL_TOL, name


def test_padding_mask_matches_stock():
    """With an attention mask (left padding) the outputs still match."""
    ref, fast = model_pair(seed=3)
    ids = torch.randint(0, 97, (2, 33))
    mask = torch.ones_like(ids)
    mask[0, :7] = 0
    with torch.no_grad():
        lr = ref(ids, attention_mask=mask).logits
        lf = fast(ids, attention_mask=mask).logits
    assert rel_err(lf, lr) < REL_TOL


def test_gradcheck_float64(monkeypatch):
    """Hand-written backwards agree with finite differences in float64."""
    gen = torch.Generator().manual_seed(0)
    b, seqlen, dim, ksize = 2, 5, 3, 3

    def rnd(*shape, scale=1.0):
        t = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale
        return t.requires_grad_()

    xz, weight, bias = rnd(b, seqlen, 2 * dim), rnd(dim, 1, ksize, scale=0.5), rnd(dim)
    assert torch.autograd.gradcheck(functions.conv_silu, (xz, weight, bias))

    monkeypatch.setattr(functions, "CHUNK", 2)
    monkeypatch.setattr(functions, "DBLK", 2)  # blocks that do not divide D=3

    def scan(*args):
        return functions.selective_scan(*args)[0]

    inputs = scan_inputs(b, seqlen, dim=dim, nstate=2, dtype=torch.float64)
    assert torch.autograd.gradcheck(scan, inputs)


def selective_scan_reference(u, dt, dt_bias, a, bm, cm, d_skip, xz):
    """The gated selective scan written with plain torch ops, one step per token."""
    batch, seqlen, dim = u.shape
    delta = torch.nn.functional.softplus(dt + dt_bias)  # Δ, (B, L, D)
    h = torch.zeros(batch, dim, a.shape[1], dtype=u.dtype)  # (B, D, N)
    ys = []
    for t in range(seqlen):
        da = torch.exp(delta[:, t, :, None] * a)  # exp(Δ_t A), (B, D, N)
        h = da * h + (delta[:, t] * u[:, t])[..., None] * bm[:, t, None, :]
        ys.append((h * cm[:, t, None, :]).sum(-1))  # s_t = C_t h_t, (B, D)
    y = torch.stack(ys, 1) + d_skip * u  # (B, L, D)
    return y * torch.nn.functional.silu(xz[..., dim:]), h


def scan_inputs(batch, seqlen, dim=24, nstate=4, dtype=torch.float32):
    """Random inputs of selective_scan at a realistic scale (Δ around 0.01 to 0.1)."""
    gen = torch.Generator().manual_seed(batch * 1000 + seqlen + 1)

    def rnd(*shape, scale=1.0, shift=0.0):
        t = torch.randn(*shape, generator=gen, dtype=dtype) * scale + shift
        return t.requires_grad_()

    a = -torch.rand(dim, nstate, generator=gen, dtype=dtype) * nstate - 0.5
    return (
        rnd(batch, seqlen, dim),
        rnd(batch, seqlen, dim, scale=0.5),
        rnd(dim, scale=1.0, shift=-3.0),
        a.requires_grad_(),
        rnd(batch, seqlen, nstate),
        rnd(batch, seqlen, nstate),
        rnd(dim),
        rnd(batch, seqlen, 2 * dim),
    )


def mamba_inner_reference(xz, conv_w, conv_b, xproj_w, dtproj_w, dtproj_b, a, d_skip):
    """The fused block core written with plain torch ops (the stock mixer's maths)."""
    _, seqlen, dim2 = xz.shape
    dim = dim2 // 2
    rank, nstate = dtproj_w.shape[1], a.shape[1]
    x = xz[..., :dim]
    u = torch.nn.functional.conv1d(
        x.transpose(1, 2), conv_w, conv_b, padding=conv_w.shape[-1] - 1, groups=dim
    )[..., :seqlen].transpose(1, 2)
    u = torch.nn.functional.silu(u)  # (B, L, D)
    dt, bm, cm = torch.split(u @ xproj_w.t(), [rank, nstate, nstate], dim=-1)
    dt = dt @ dtproj_w.t()  # (B, L, D)
    return selective_scan_reference(u, dt, dtproj_b, a, bm, cm, d_skip, xz)


def inner_inputs(batch, seqlen, dim=24, nstate=4, rank=6, ksize=4, dtype=torch.float32):
    """Random inputs of MambaInnerFn at a realistic scale (Δ around 0.01 to 0.1)."""
    gen = torch.Generator().manual_seed(batch * 1000 + seqlen)

    def rnd(*shape, scale=1.0, shift=0.0):
        t = torch.randn(*shape, generator=gen, dtype=dtype) * scale + shift
        return t.requires_grad_()

    a = -torch.rand(dim, nstate, generator=gen, dtype=dtype) * nstate - 0.5
    return (
        rnd(batch, seqlen, 2 * dim),
        rnd(dim, 1, ksize, scale=0.5),
        rnd(dim, scale=0.1),
        rnd(rank + 2 * nstate, dim, scale=0.3),
        rnd(dim, rank, scale=0.5),
        rnd(dim, scale=1.0, shift=-3.0),
        a.requires_grad_(),
        rnd(dim),
    )


# the prefill scan (x given) and the fused block core, each against its torch twin
TWINS = {
    "selective_scan": (
        scan_inputs,
        selective_scan_reference,
        functions.selective_scan,
        ("u", "dt", "dt_bias", "A", "B", "C", "D", "xz"),
    ),
    "mamba_inner": (
        inner_inputs,
        mamba_inner_reference,
        functions.mamba_inner,
        ("xz", "conv_w", "conv_b", "x_proj", "dt_proj_w", "dt_proj_b", "A", "D"),
    ),
}


@pytest.mark.parametrize("twin", list(TWINS))
@pytest.mark.parametrize(
    "batch,seqlen", [(1, functions.CHUNK + 13), (3, 2 * functions.CHUNK), (2, 1)]
)
def test_kernel_matches_torch_reference(twin, batch, seqlen):
    """Output, last state and every gradient match the torch reference."""
    make_inputs, reference, kernel, names = TWINS[twin]
    inputs = make_inputs(batch, seqlen)
    gy = torch.randn(batch, seqlen, 24, generator=torch.Generator().manual_seed(9))
    results = []
    for fn in (reference, kernel):
        y, last = fn(*inputs)
        grads = torch.autograd.grad((y * gy).sum(), inputs)
        results.append((y.detach(), last, grads))
    (yr, lr_, gr), (yf, lf, gf) = results
    assert rel_err(yf, yr) < REL_TOL
    assert rel_err(lf, lr_) < REL_TOL
    for name, g_f, g_r in zip(names, gf, gr, strict=True):
        assert rel_err(g_f, g_r) < REL_TOL, name


def test_mamba_inner_gradcheck_float64(monkeypatch):
    """MambaInnerFn's backward agrees with finite differences (tiny chunks and blocks)."""
    monkeypatch.setattr(functions, "CHUNK", 2)
    monkeypatch.setattr(functions, "DBLK", 2)  # blocks that do not divide D=3
    # rank 5: the kernels' four-at-a-time dt_proj loop and its remainder
    inputs = inner_inputs(2, 5, dim=3, nstate=2, rank=5, ksize=3, dtype=torch.float64)

    def inner(*args):
        return functions.mamba_inner(*args)[0]

    assert torch.autograd.gradcheck(inner, inputs)


def test_softplus_kernel_matches_torch():
    """The float32 softplus of the scan (Δ_t) is as exact as torch's, tiny values included."""
    from numba import njit

    from abcmamba.kernels._numba_scan import vsoftplus

    @njit(fastmath=True)
    def apply(x, out):
        for i in range(x.size):
            out[i] = vsoftplus(x[i])

    x = torch.linspace(-80.0, 40.0, 120001)
    out = torch.empty_like(x)
    apply(x.numpy(), out.numpy())
    ref = torch.nn.functional.softplus(x.double())
    assert ((out.double() - ref).abs() / ref).max().item() < 1e-6


def test_softplus_and_sigmoid_from_one_exp_match_torch():
    """The scan backward's (softplus, σ) pair shares one exp; both stay as exact as torch's."""
    from numba import njit

    from abcmamba.kernels._numba_scan import vsoftplus_sigmoid

    @njit(fastmath=True)
    def apply(x, sp, sg):
        for i in range(x.size):
            sp[i], sg[i] = vsoftplus_sigmoid(x[i])

    x = torch.linspace(-80.0, 90.0, 170001)  # exp(x) overflows float32 above 88.7
    sp, sg = torch.empty_like(x), torch.empty_like(x)
    apply(x.numpy(), sp.numpy(), sg.numpy())
    ref_sp = torch.nn.functional.softplus(x.double())
    ref_sg = torch.sigmoid(x.double())
    assert torch.isfinite(sg).all()
    assert ((sp.double() - ref_sp).abs() / ref_sp).max().item() < 1e-6
    assert ((sg.double() - ref_sg).abs() / ref_sg).max().item() < 1e-6


def test_base2_decay_is_within_an_ulp_of_exp():
    """The scans' exp(Δ A) = 2^(Δ A log2 e) in float32 is off by under an ulp of 1.0."""
    from numba import njit

    from abcmamba.kernels._numba_scan import LOG2E, vexp2_neg

    @njit(fastmath=True)
    def apply(dl, a, out):
        for i in range(dl.size):
            out[i] = vexp2_neg(dl[i] * np.float32(a[i] * LOG2E))

    rng = np.random.default_rng(0)
    dl = rng.uniform(1e-4, 2.0, 200_000).astype(np.float32)
    a = -rng.uniform(0.0, 20.0, 200_000).astype(np.float32)
    dl[:1000], a[:1000] = 1.0, -1e4  # far below float32's range: ~0, no wrap-around
    out = np.empty_like(dl)
    apply(dl, a, out)
    ref = np.exp(dl.astype(np.float64) * a.astype(np.float64))
    assert np.abs(out - ref).max() < np.finfo(np.float32).eps
    assert (out >= 0).all() and out[:1000].max() < 1e-37


def test_chunk_boundaries_are_exact(monkeypatch):
    """Tiny chunks (many recomputed segments) give the same gradients."""
    ref, fast = model_pair(seed=5)
    monkeypatch.setattr(functions, "CHUNK", 4)
    monkeypatch.setattr(functions, "DBLK", 24)  # blocks that do not divide D=64
    ids = torch.randint(0, 97, (2, 23))
    for model in (ref, fast):
        model(ids, labels=ids).loss.backward()
    for (name, pr), (_, pf) in zip(
        ref.named_parameters(), fast.named_parameters(), strict=True
    ):
        assert rel_err(pf.grad, pr.grad) < REL_TOL, name


def test_training_run_matches_stock_step_for_step():
    """Five AdamW steps: losses match the stock path at every step."""
    ref, fast = model_pair(seed=7)
    ids = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(2))
    batches = [ids] * 5  # one batch again and again: the loss must fall
    curves = []
    for model in (ref, fast):
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        losses = []
        for ids in batches:
            loss = model(ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        curves.append(losses)
    assert curves[0][-1] < curves[0][0]
    for lr_, lf in zip(*curves, strict=True):
        assert abs(lf - lr_) <= REL_TOL * abs(lr_)


def test_saved_model_is_a_plain_mamba(tmp_path):
    """save_pretrained of a kernel model equals the stock one and reloads as stock."""
    ref, fast = model_pair(seed=11)
    ref.save_pretrained(tmp_path / "ref")
    fast.save_pretrained(tmp_path / "fast")
    sr = load_file(tmp_path / "ref" / "model.safetensors")
    sf = load_file(tmp_path / "fast" / "model.safetensors")
    assert sr.keys() == sf.keys()
    for key in sr:
        assert sr[key].shape == sf[key].shape and torch.equal(sr[key], sf[key]), key
    cr = json.loads((tmp_path / "ref" / "config.json").read_text())
    cf = json.loads((tmp_path / "fast" / "config.json").read_text())
    assert cr == cf
    loaded = MambaForCausalLM.from_pretrained(tmp_path / "fast")
    assert kernels.describe_scan_path(loaded) in ("sequential", "mambapy")


@pytest.mark.parametrize("prompt_len", [37, 3])
def test_prefill_with_cache_and_generation_match_stock(prompt_len):
    """Prefill logits and cached conv/ssm states match; greedy generation is identical."""
    ref, fast = model_pair(seed=13)
    gen = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 97, (2, prompt_len), generator=gen)
    with torch.no_grad():
        out_r = ref(ids, use_cache=True)
        out_f = fast(ids, use_cache=True)
        assert rel_err(out_f.logits, out_r.logits) < REL_TOL
        for layer in range(ref.config.num_hidden_layers):
            cs_r = output_cache(out_r).get_conv_state(layer)
            cs_f = output_cache(out_f).get_conv_state(layer)
            assert cs_f.shape == cs_r.shape and rel_err(cs_f, cs_r) < REL_TOL
            ss_r = output_cache(out_r).get_recurrent_state(layer)
            ss_f = output_cache(out_f).get_recurrent_state(layer)
            assert ss_f.shape == ss_r.shape and rel_err(ss_f, ss_r) < REL_TOL
        gen_r = ref.generate(ids[:1], max_new_tokens=8, do_sample=False)
        gen_f = fast.generate(ids[:1], max_new_tokens=8, do_sample=False)
    assert torch.equal(gen_f, gen_r)


def test_cpu_autocast_keeps_the_kernel_and_fp32_inside(monkeypatch):
    """Under bf16 autocast the kernel still runs, on in_proj's bf16 output
    (computing in fp32); loss and gradients match the stock model's fp32 ones
    to bf16 precision."""
    ref, fast = model_pair(seed=17)
    ids = torch.randint(0, 97, (2, 33))
    seen = []
    real = mixer_module.mamba_inner

    def spy(xz, *args):
        seen.append(xz.dtype)
        return real(xz, *args)

    monkeypatch.setattr(mixer_module, "mamba_inner", spy)
    loss_r = ref(ids, labels=ids).loss
    loss_r.backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast(ids, labels=ids)
    out.loss.backward()
    assert seen == [torch.bfloat16] * ref.config.num_hidden_layers
    assert abs(out.loss.item() - loss_r.item()) < 1e-2 * loss_r.item()
    for (name, p_r), p_f in zip(ref.named_parameters(), fast.parameters(), strict=True):
        assert p_f.grad.dtype == torch.float32
        assert rel_err(p_f.grad, p_r.grad) < 5e-2, name


def test_bf16_in_and_out_is_bit_identical_to_fp32_with_casts():
    """mamba_inner on a bf16 xz gives exactly what xz.float() in and
    y.bfloat16() out give: y, the bf16 gradient of xz and every parameter's."""
    torch.manual_seed(3)
    batch, seqlen, dim, nstate, rank, ksize = 2, 150, 40, 8, 5, 4
    xz = torch.randn(batch, seqlen, 2 * dim).bfloat16()
    params = [
        torch.randn(dim, 1, ksize) * 0.3,
        torch.randn(dim) * 0.1,
        torch.randn(rank + 2 * nstate, dim) * 0.1,
        torch.randn(dim, rank) * 0.2,
        torch.randn(dim) * 0.1 - 1,
        -torch.rand(dim, nstate) * 3,
        torch.randn(dim),
    ]
    gy = torch.randn(batch, seqlen, dim).bfloat16()

    def run(cast: bool):
        ps = [p.clone().requires_grad_() for p in params]
        x = xz.clone().requires_grad_()
        y, _ = functions.mamba_inner(x.float() if cast else x, *ps)
        y = y.bfloat16() if cast else y
        y.backward(gy)
        return [y, x.grad] + [p.grad for p in ps]

    want, got = run(cast=True), run(cast=False)
    assert got[0].dtype == got[1].dtype == torch.bfloat16
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        assert torch.equal(w, g), i


def test_bf16_store_rounds_as_torch():
    """The kernels' fp32 -> bf16 store rounds to nearest even, as torch does,
    ties, negatives, subnormals and overflow to inf included."""
    from numba import njit

    from abcmamba.kernels._numba_scan import st

    @njit
    def store_all(out, values):
        for i in range(values.shape[0]):
            st(out, i, values[i])

    one_ulp = 2.0**-7  # bf16's spacing in [1, 2)
    values = torch.tensor(
        [1 + one_ulp / 2, 1 + 3 * one_ulp / 2, -(1 + one_ulp / 2), 1 + one_ulp / 4]
        + [1e-40, -3e-39, 3.4e38, -3.4e38, 0.0, -0.0, 65504.0]
        + torch.randn(1000).mul(100).tolist(),
        dtype=torch.float32,
    )
    out = torch.empty(len(values), dtype=torch.bfloat16)
    store_all(out.view(torch.uint16).numpy(), values.numpy())
    assert torch.equal(out.view(torch.uint16), values.bfloat16().view(torch.uint16))


def test_describe_scan_path_and_disable():
    """describe_scan_path follows enable/disable; other models are left alone."""
    torch.manual_seed(0)
    model = MambaForCausalLM(tiny_config(use_mambapy=False))
    assert kernels.describe_scan_path(model) == "sequential"
    assert kernels.enable_cpu_kernel(model)
    assert kernels.describe_scan_path(model) == "cpu-kernel"
    kernels.disable_cpu_kernel(model)
    assert kernels.describe_scan_path(model) == "sequential"
    assert not kernels.enable_cpu_kernel(torch.nn.Linear(2, 2))
    # one name for every architecture, as train.py writes it into run records
    assert modeling.describe_scan_path is kernels.describe_scan_path
    llama = modeling.build_model("llama", "tiny", 97)
    assert kernels.describe_scan_path(llama) == "attention (sdpa)"


def test_enable_warns_and_falls_back_when_kernel_missing(monkeypatch, caplog):
    """A kernel that cannot load gives False, a warning, and an untouched model."""
    monkeypatch.setattr(kernels, "_load_error", "ImportError: no numba")
    model = MambaForCausalLM(tiny_config())
    with caplog.at_level(logging.WARNING, logger="abcmamba.kernels"):
        assert not kernels.enable_cpu_kernel(model)
    assert "could not load" in caplog.text
    assert kernels.describe_scan_path(model) != "cpu-kernel"


def test_second_chunk_with_cache_matches_stock():
    """A multi-token call on top of an existing cache (conv left context) matches."""
    ref, fast = model_pair(seed=19)
    gen = torch.Generator().manual_seed(6)
    first = torch.randint(0, 97, (2, 11), generator=gen)
    second = torch.randint(0, 97, (2, 6), generator=gen)
    logits = []
    with torch.no_grad():
        for model in (ref, fast):
            cache = output_cache(model(first, use_cache=True))
            out = model(second, **cache_kwargs(cache), use_cache=True)
            logits.append(out.logits)
    assert rel_err(logits[1], logits[0]) < REL_TOL

"""The chunked training loss gives the model's own loss and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from abcmamba import modeling
from abcmamba.training.loss import (
    fused_loss,
    fused_loss_matches,
    head_inputs,
    linear_cross_entropy,
    model_loss,
)


@pytest.mark.parametrize("cap", [None, 5.0])
def test_linear_cross_entropy_is_cross_entropy_exactly(cap):
    """fp64, ignored targets, chunks that do not divide the rows: loss and both
    gradients equal F.cross_entropy's to rounding."""
    torch.manual_seed(0)
    hidden = torch.randn(3, 29, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 50, (3, 29))
    labels[0, 5] = labels[2, 28] = -100
    logits = hidden @ weight.t()
    if cap:
        logits = cap * torch.tanh(logits / cap)
    ref = F.cross_entropy(
        logits[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    grads_ref = torch.autograd.grad(3 * ref, (hidden, weight))
    got = linear_cross_entropy(hidden, weight, labels, cap, chunk_rows=10)
    grads = torch.autograd.grad(3 * got, (hidden, weight))
    assert abs(got.item() - ref.item()) < 1e-12
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert (g - g_ref).abs().max().item() < 1e-12


@pytest.mark.parametrize("arch", ["mamba", "llama", "xlstm"])
def test_fused_loss_gives_the_models_loss_and_gradients(arch):
    torch.manual_seed(1)
    model = modeling.build_model(arch, "tiny", 97)
    model.train()
    ids = torch.randint(0, 97, (2, 48))
    batch = {"input_ids": ids, "labels": ids}
    ref = model_loss(model, batch)
    ref.backward()
    grads_ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    got = fused_loss(model, model, batch)
    got.backward()
    assert abs(got.item() - ref.item()) < 1e-5 * ref.item()
    for name, p in model.named_parameters():
        err = (p.grad - grads_ref[name]).norm() / grads_ref[name].norm().clamp_min(
            1e-30
        )
        assert err.item() < 1e-4, name
    # the head is itself again afterwards
    assert model(ids).logits.shape == (2, 48, 97)


def test_fused_loss_under_bf16_autocast_is_close():
    torch.manual_seed(2)
    model = modeling.build_model("mamba", "tiny", 97)
    ids = torch.randint(0, 97, (2, 48))
    batch = {"input_ids": ids, "labels": ids}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    ok, ref, got = fused_loss_matches(model, model, batch, autocast, rtol=1e-2)
    assert ok, (ref, got)


def test_a_head_that_is_not_linear_is_caught():
    """A model whose logits are more than head(h) fails the check (train.py
    then keeps the model's own loss)."""
    torch.manual_seed(3)
    model = modeling.build_model("llama", "tiny", 97)
    ids = torch.randint(0, 97, (2, 16))
    batch = {"input_ids": ids, "labels": ids}
    assert fused_loss_matches(model, model, batch)[0]
    original = model.lm_head.forward
    model.lm_head.forward = lambda h: 4.0 * original(h)  # a scaled head
    try:
        ok, ref, got = fused_loss_matches(model, model, batch)
    finally:
        del model.lm_head.forward
    assert not ok and ref != got


def test_head_inputs_captures_what_the_head_sees():
    torch.manual_seed(4)
    model = modeling.build_model("mamba", "tiny", 97)
    ids = torch.randint(0, 97, (1, 12))
    full = model(ids).logits
    with head_inputs(model) as seen:
        out = model(ids)
    assert out.logits.shape == (1, 12, 0)
    assert torch.allclose(model.lm_head(seen[0]).float(), full, atol=1e-6)

"""The training loss without the (tokens, vocabulary) logits tensor.

A causal LM's forward ends in ``logits = lm_head(h)`` and a cross-entropy over
them: at 4,096 tokens per step and a 4,096-token vocabulary that is a 64 MB
logits tensor, a 64 MB fp32 copy, a 64 MB log-softmax, a 64 MB zero-filled
gradient and their backward, each freshly allocated (and page-faulted) every
step. :func:`linear_cross_entropy` computes the same mean loss and its
gradients chunk by chunk, so no chunk leaves the cache (the approach of Liger
Kernel's fused linear cross-entropy), and :func:`head_inputs` runs the model
with its LM head short-circuited to capture the head's input instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

IGNORE_INDEX = -100
#: rows per chunk: a (1024, 4096) fp32 logits chunk is 16 MB
CHUNK_ROWS = 1024


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(t.device.type):
        return torch.get_autocast_dtype(t.device.type)
    return t.dtype


class LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``soft_cap(hidden @ weight.T)`` against ``targets``.

    The gradients are computed in the forward, chunk by chunk, and kept for
    the backward (a training-only Function: scoring should use the model).
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, soft_cap, chunk_rows):
        dtype = _compute_dtype(hidden)
        acc = torch.promote_types(dtype, torch.float32)  # softmax and sums
        with torch.autocast(hidden.device.type, enabled=False):
            h_all = hidden.to(dtype)
            w = weight.to(dtype)
            count = (targets != IGNORE_INDEX).sum().clamp_min(1)
            grad_h = torch.empty_like(hidden)
            grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device)
            loss = torch.zeros((), dtype=acc, device=hidden.device)
            for start in range(0, hidden.shape[0], chunk_rows):
                h = h_all[start : start + chunk_rows]
                t = targets[start : start + chunk_rows]
                keep = t != IGNORE_INDEX
                logits = (h @ w.t()).to(acc)  # (rows, V)
                if soft_cap:
                    tanh = torch.tanh(logits / soft_cap)
                    logits = tanh * soft_cap
                tc = t.clamp_min(0).unsqueeze(1)
                target = logits.gather(1, tc).squeeze(1)
                # one exp per logit serves the loss and the gradient
                top = logits.amax(dim=-1, keepdim=True)
                g = logits.sub_(top).exp_()  # softmax numerators
                total = g.sum(dim=-1, keepdim=True)
                lse = (top + total.log()).squeeze(1)
                loss += ((lse - target) * keep).sum()
                # d loss / d logits = (softmax - one-hot) / count, zero where ignored
                scale = (keep.to(acc) / count).unsqueeze(1)
                g.mul_(scale / total)
                g.scatter_add_(1, tc, -scale)
                if soft_cap:
                    g.mul_(1 - tanh * tanh)
                g = g.to(dtype)
                grad_h[start : start + chunk_rows] = g @ w
                if dtype == acc:
                    grad_w.addmm_(g.t(), h)
                else:  # bf16/fp16 products, summed over the chunks in fp32
                    grad_w += (g.t() @ h).to(acc)
        ctx.save_for_backward(grad_h, grad_w.to(weight.dtype))
        return loss / count

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_loss, grad_w * grad_loss, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    soft_cap: float | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> torch.Tensor:
    """The causal-LM loss from the LM head's input: ``hidden`` (B, L, H) predicts
    ``labels`` (B, L) shifted by one, as transformers' ``ForCausalLMLoss`` does
    (mean over the non-ignored targets)."""
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    t = labels[:, 1:].reshape(-1).to(hidden.device)
    return LinearCrossEntropy.apply(h, weight, t, soft_cap, chunk_rows)


@contextlib.contextmanager
def head_inputs(model: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside, the model's LM head returns an empty (..., 0) tensor and the
    hidden states it was given are appended to the yielded list."""
    head = model.get_output_embeddings()
    seen: list[torch.Tensor] = []

    def capture(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return x.new_empty((*x.shape[:-1], 0))

    previous = head.__dict__.get("forward")  # someone else's patch, kept
    head.forward = capture
    try:
        yield seen
    finally:
        if previous is None:
            del head.forward
        else:
            head.forward = previous


def logit_soft_cap(config) -> float | None:
    """The cap of ``cap * tanh(logits / cap)`` the model applies after its head
    (xLSTM's ``output_logit_soft_cap``), or None."""
    return getattr(config, "output_logit_soft_cap", None) or None


def model_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss as the model computes it (full logits)."""
    return model(**batch, use_cache=False).loss


def fused_loss(
    model: torch.nn.Module,
    inner: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    autocast: contextlib.AbstractContextManager | None = None,
) -> torch.Tensor:
    """The same loss through :func:`linear_cross_entropy`. ``model`` is what to
    call (a DDP wrapper, say), ``inner`` the causal LM inside it; ``autocast``
    the mixed-precision context the model's forward runs in, for the head."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with head_inputs(inner) as seen:
        model(**inputs, use_cache=False)
    with autocast or contextlib.nullcontext():
        return linear_cross_entropy(
            seen[-1],
            inner.get_output_embeddings().weight,
            batch["labels"],
            logit_soft_cap(inner.config),
        )


def fused_loss_matches(
    model: torch.nn.Module,
    inner: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    autocast: contextlib.AbstractContextManager | None = None,
    rtol: float = 1e-3,
) -> tuple[bool, float, float]:
    """Whether :func:`fused_loss` gives the model's own loss on ``batch``
    (an architecture whose head does more than a linear map and xLSTM's soft
    cap would not): (match, model's loss, fused loss)."""
    with torch.no_grad():
        ref = float(model_loss(model, batch))
        got = float(fused_loss(model, inner, batch, autocast))
    return abs(got - ref) <= rtol * max(abs(ref), 1e-6), ref, got

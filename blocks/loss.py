"""Cross-entropy forms for the LM head: a chunked linear + cross-entropy, and a cross-entropy written for inductor.

``linear_cross_entropy``: the LM head's projection and the loss, a chunk of tokens at a time.

The plain head materialises the logits of every token, ``(N, V)``, then an fp32 copy for the loss and an
fp32 gradient of the same size (2 GB each for 16K tokens of a 32K vocabulary). Here each chunk of ``chunk``
tokens is projected, its loss taken in fp32 and, since the loss is a scalar, its gradients with respect to
the hidden states and the head's weight computed at once (``softmax - onehot``), so no more than one chunk
of logits exists at a time. The backward pass only scales the stored gradients. This is the pure-PyTorch
form of the "fused linear cross-entropy" of Liger-Kernel and of Megatron's chunked loss; it computes the
same function as ``F.cross_entropy(x @ weight.T, targets, ignore_index=-100)`` (mean over kept targets).
Matrix products run in ``compute_dtype`` (the autocast dtype under autocast), softmax and sums in fp32
(fp64 for fp64 inputs).
No host synchronisation: the number of kept targets stays on the device.

``cross_entropy``: ``F.cross_entropy(logits.float(), targets, ignore_index=-100)`` as an autograd function that
saves the logits in their own dtype plus one log-sum-exp per row, and writes its backward as one expression
(``softmax - onehot``, scaled). Compiled, the forward is one read of the logits and the backward one read and one
write; inductor's lowering of ``F.cross_entropy`` on an fp32 copy instead writes the fp32 copy in the forward and
reads it back in the backward, twice the bytes of bf16 logits each way (on an H200 at batch 8 x 4096 with a
32K vocabulary: 3.0 -> 2.5 ms per step, docs/BENCHMARKS.md §6).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["IGNORE_INDEX", "cross_entropy", "linear_cross_entropy"]

IGNORE_INDEX = -100


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, weight: Tensor, targets: Tensor, chunk: int, compute_dtype: torch.dtype
    ) -> Tensor:
        n = x.shape[0]  # x (N, D), weight (V, D), targets (N,)
        acc = torch.promote_types(compute_dtype, torch.float32)  # softmax, sums and the weight gradient
        w = weight.to(compute_dtype)
        total = torch.zeros((), dtype=acc, device=x.device)
        grad_x = torch.empty_like(x)
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device)
        for start in range(0, n, chunk):
            xc = x[start : start + chunk].to(compute_dtype)  # (c, D)
            tc = targets[start : start + chunk]
            keep = (tc != IGNORE_INDEX).unsqueeze(1)  # (c, 1)
            tgt = tc.clamp(min=0).unsqueeze(1)
            logits = (xc @ w.t()).to(acc)  # (c, V)
            lse = torch.logsumexp(logits, dim=1, keepdim=True)
            total += ((lse - logits.gather(1, tgt)) * keep).sum()
            g = logits.sub_(lse).exp_()  # softmax, in the logits' memory
            g.scatter_add_(1, tgt, -torch.ones_like(lse))
            g = g.mul_(keep).to(compute_dtype)  # d(sum of losses)/d logits
            grad_x[start : start + chunk] = (g @ w).to(x.dtype)
            grad_w += (g.t() @ xc).to(acc)
        scale = 1.0 / (targets != IGNORE_INDEX).sum().clamp(min=1).to(acc)
        ctx.save_for_backward(grad_x, grad_w, scale)
        ctx.weight_dtype = weight.dtype
        return total * scale

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        grad_x, grad_w, scale = ctx.saved_tensors
        s = grad_out.to(scale.dtype) * scale
        return (grad_x * s.to(grad_x.dtype), (grad_w * s).to(ctx.weight_dtype), None, None, None)


def linear_cross_entropy(x: Tensor, weight: Tensor, targets: Tensor, chunk: int = 4096) -> Tensor:
    """Mean cross-entropy of ``x @ weight.T`` against ``targets`` (``-100`` ignored), ``chunk`` rows at a time.

    Args:
        x: hidden states (..., D), e.g. (B, T, D) after the final norm.
        weight: the LM head's weight (V, D) (tied: the embedding).
        targets: token ids (...), matching ``x`` without its last dim.
        chunk: tokens per chunk; peak extra memory is about ``chunk x V`` fp32 values.

    Under autocast the products run in the autocast dtype, as ``nn.Linear`` would.
    """
    if chunk < 1:
        raise ValueError(f"linear_cross_entropy: chunk must be a positive int; got {chunk!r}")
    device_type = x.device.type
    compute_dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype
    with torch.autocast(device_type, enabled=False):
        return _LinearCrossEntropy.apply(x.flatten(0, -2), weight, targets.flatten(), chunk, compute_dtype)


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor) -> Tensor:  # type: ignore[override]
        acc = torch.promote_types(logits.dtype, torch.float32)  # logits (N, V), targets (N,)
        keep = targets != IGNORE_INDEX
        lse = torch.logsumexp(logits.to(acc), dim=1)  # (N,)
        picked = logits.gather(1, targets.clamp(min=0).unsqueeze(1)).squeeze(1).to(acc)  # (N,)
        count = keep.sum().to(acc)
        ctx.save_for_backward(logits, targets, lse, count)
        return torch.where(keep, lse - picked, 0.0).sum() / count

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        logits, targets, lse, count = ctx.saved_tensors
        keep = (targets != IGNORE_INDEX).unsqueeze(1)  # (N, 1)
        cols = torch.arange(logits.shape[1], device=logits.device)
        onehot = cols == targets.unsqueeze(1)  # (N, V)
        grad = (torch.exp(logits.to(lse.dtype) - lse.unsqueeze(1)) - onehot.to(lse.dtype)) * (grad_out / count)
        return torch.where(keep, grad, 0.0).to(logits.dtype), None


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over targets != -100, in fp32 (fp64 for fp64 logits), for a compiled loss.

    Args:
        logits: (N, V) in any float dtype; kept as they are for the backward, never copied to fp32.
        targets: (N,) token ids, -100 for ignored positions.

    The same function and gradient as ``F.cross_entropy(logits.float(), targets, ignore_index=-100)``
    (NaN when every target is ignored, as there). Eager, each step of the backward is its own kernel;
    it is meant for ``torch.compile``, which fuses the forward into one read of the logits and the
    backward into one read and one write.
    """
    return _CrossEntropy.apply(logits, targets)

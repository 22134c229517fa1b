"""Per-layer entropy diagnostics: attention entropy, S6 selection entropy, GLA forget entropy.

Follows the Samba paper's entropy analysis (Ren et al. 2024, arXiv 2406.07522, App. E of the ICLR
version = App. C of v1, used in §4 "Why hybrid is better?"; samba-facts.md §4):

- attention entropy of an ``A`` layer, ``H_a = -(1/(l h)) sum_i sum_{j > n-l} sum_k A_ijk log A_ijk``:
  the entropy of each query row of the causal (windowed) attention probabilities, averaged over the
  ``h`` heads and the last ``l`` query positions (``attention_entropy``);
- S6 selection entropy of an ``M`` layer: post-softplus Δ (``Softplus(U W_r W_q + b)``, before the
  ``exp(Δ A)`` discretisation) normalised over time per channel, ``Δ'_ij = Δ_ij / sum_i Δ_ij``, the
  entropy of each channel, averaged over the ``d_e`` channels, on full sequences
  (``selection_entropy``). Its maximum is ``log n``.

hybridlab's extension, not in the paper: the forget entropy of a ``G`` (GLA) layer treats the
forget strength ``s = -log α >= 0`` of every (head, key) channel like Δ: normalised over time per
channel, entropy per channel, averaged (``forget_entropy``). Low values mean the layer forgets at a
few selected positions; ``log n`` means it forgets at the same rate everywhere.

All entropies use natural logarithms and ``0 log 0 = 0``; every value is averaged over the batch
with equal weight per sequence (the paper's plain mean over samples). ``layer_entropies`` collects
them for a model through ``blocks.diagnostics.capture`` and returns the MLflow metric names of
design.md; it imports neither MLflow nor Ray.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import torch
from torch import Tensor, nn

from blocks.diagnostics import capture
from blocks.mixers.base import Mixer

__all__ = ["attention_entropy", "selection_entropy", "forget_entropy", "layer_entropies", "CAPTURED"]

CAPTURED = frozenset({"attn_probs", "delta", "log_forget"})

_KIND = {"attn_probs": "attn", "delta": "s6", "log_forget": "gla"}


def _check_last(last: int | None) -> None:
    if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
        raise ValueError(
            f"entropy: 'last' must be a positive int (the number of final query positions to average "
            f"over) or None for all positions; got {last!r}"
        )


def _row_entropy(p: Tensor, dim: int) -> Tensor:
    """``-sum p log p`` along ``dim`` with ``0 log 0 = 0``, accumulated in float64."""
    return -torch.special.xlogy(p, p).sum(dim, dtype=torch.float64)


def _temporal_entropy(strength: Tensor, time_dim: int) -> Tensor:
    """Entropy over time of each channel of a non-negative ``strength``, normalised per channel.

    A channel with zero total strength (nothing selected anywhere) counts as uniform, ``log n``:
    the limit of a constant strength going to zero.
    """
    s = strength.double().clamp_min(0)
    total = s.sum(time_dim, keepdim=True)
    n = s.shape[time_dim]
    p = torch.where(total > 0, s / total.clamp_min(torch.finfo(s.dtype).tiny), 1.0 / n)
    return _row_entropy(p, time_dim)


def attention_entropy(probs: Tensor, last: int | None = None) -> tuple[float, list[float]]:
    """Mean entropy of the query rows of attention probabilities (the paper's ``H_a``).

    Args:
        probs: (B, H, T, T) causal attention probabilities, rows summing to 1, zero outside the
            causal window (``attn_probs`` records of ``blocks.diagnostics``).
        last: average over the last ``last`` query positions only (the paper's ``l``); None, or a
            value of at least T, takes every position.

    Returns:
        The mean over batch, heads and the selected rows, and the per-head means (length H).
    """
    _check_last(last)
    if probs.dim() != 4 or probs.shape[-1] != probs.shape[-2]:
        raise ValueError(f"attention_entropy: probs must be (B, H, T, T); got shape {tuple(probs.shape)}")
    rows = probs if last is None else probs[:, :, -last:, :]  # (B, H, l, T)
    per_head = _row_entropy(rows, -1).mean(dim=(0, 2))  # (H,)
    return float(per_head.mean()), [float(h) for h in per_head]


def selection_entropy(delta: Tensor) -> float:
    """S6 selection entropy ``H_s``: Δ normalised over time per channel, entropy, mean over channels.

    Args:
        delta: (B, C, T) post-softplus Δ (``delta`` records of ``blocks.diagnostics``), C = d_inner.

    Returns:
        The mean over batch and channels; at most ``log T``.
    """
    if delta.dim() != 3:
        raise ValueError(f"selection_entropy: delta must be (B, C, T); got shape {tuple(delta.shape)}")
    return float(_temporal_entropy(delta, time_dim=-1).mean())  # (B, C) -> ()


def forget_entropy(log_forget: Tensor) -> float:
    """GLA forget entropy (hybridlab's extension of ``H_s``, not in the paper).

    The forget strength ``s = -log α`` of each (head, key) channel is normalised over time and its
    entropy taken, exactly as Δ in ``selection_entropy``; a gate that forgets at the same rate at
    every step gives ``log T``.

    Args:
        log_forget: (B, T, H, K) GLA log forget gate ``log α <= 0`` (``log_forget`` records).

    Returns:
        The mean over batch, heads and key channels; at most ``log T``.
    """
    if log_forget.dim() != 4:
        raise ValueError(
            f"forget_entropy: log_forget must be (B, T, H, K); got shape {tuple(log_forget.shape)}"
        )
    return float(_temporal_entropy(-log_forget, time_dim=1).mean())  # (B, H, K) -> ()


def _branch_counts(model: nn.Module) -> Counter[int]:
    return Counter(
        m.layer_index for m in model.modules() if isinstance(m, Mixer) and m.layer_index is not None
    )


@torch.no_grad()
def layer_entropies(
    model: nn.Module, idx: Tensor, last: int | None = None, batch_chunk: int | None = None
) -> dict[str, float]:
    """Entropy metrics of every A, M and G layer of ``model`` on the token batch ``idx``.

    Cost: one extra forward pass over ``idx`` (in eval mode, no autograd) with diagnostics capture
    on, so run it on a small fixed eval batch every evaluation, not every step. Memory: every ``A``
    layer materialises its attention probabilities (b, H, T, T) in float32 even when the kernel
    path is windowed, and all layers' records are held until that forward ends; keep the batch
    small or pass ``batch_chunk`` to run the forward ``batch_chunk`` rows at a time (the results
    are the same; per-sequence means are combined with equal weights).

    Args:
        model: a ``HybridLM`` (or any module built from registered mixers) mapping (B, T) -> logits.
        idx: (B, T) token ids.
        last: attention entropy over the last ``last`` query positions (the paper's ``l``); None
            takes all positions. Selection and forget entropies always use the full sequence.
        batch_chunk: rows per forward; None runs the whole batch at once.

    Returns:
        Metric name -> value, for the layer kinds present: ``entropy/attn/layer{i}``,
        ``entropy/attn/layer{i}/head{h}``, ``entropy/attn/mean``, ``entropy/s6/layer{i}``,
        ``entropy/s6/mean``, ``entropy/gla/layer{i}``, ``entropy/gla/mean``. ``i`` is the sublayer
        index in the pattern; a sublayer with parallel branches gets ``/branch{b}`` after
        ``layer{i}``. Layers recording nothing (R, F) report nothing; ``mean`` is the plain mean
        over the reported layers (and branches) of that kind.
    """
    _check_last(last)
    if idx.dim() != 2:
        raise ValueError(f"layer_entropies: idx must be (B, T) token ids; got shape {tuple(idx.shape)}")
    if batch_chunk is not None and batch_chunk < 1:
        raise ValueError(f"layer_entropies: batch_chunk must be a positive int or None; got {batch_chunk!r}")
    branches = _branch_counts(model)
    param = next(model.parameters(), None)
    if param is not None:
        idx = idx.to(param.device)
    B = idx.shape[0]
    step = B if batch_chunk is None else batch_chunk
    sums: dict[str, float] = defaultdict(float)
    order: list[tuple[str, str]] = []  # (kind, layer key) in the order the layers ran
    was_training = model.training
    model.eval()
    try:
        for start in range(0, B, step):
            piece = idx[start : start + step]  # (b, T)
            weight = piece.shape[0] / B
            with capture(model, names=set(CAPTURED)) as cap:
                model(piece)
            counts: dict[str, int] = defaultdict(int)
            values: dict[str, float] = defaultdict(float)
            for rec in cap.records:
                kind = _KIND.get(rec.name)
                if kind is None:
                    continue
                key = f"entropy/{kind}/layer{rec.layer}"
                if branches[rec.layer] > 1:
                    key += f"/branch{rec.branch}"
                if (kind, key) not in order:
                    order.append((kind, key))
                counts[key] += 1
                if kind == "attn":
                    mean, heads = attention_entropy(rec.value, last)
                    values[key] += mean
                    for h, e in enumerate(heads):
                        values[f"{key}/head{h}"] += e
                        counts[f"{key}/head{h}"] += 1
                elif kind == "s6":
                    values[key] += selection_entropy(rec.value)
                else:
                    values[key] += forget_entropy(rec.value)
            for key, v in values.items():
                sums[key] += weight * v / counts[key]
    finally:
        model.train(was_training)
    out: dict[str, float] = {}
    for kind in ("attn", "s6", "gla"):
        layer_keys = [key for k, key in order if k == kind]
        if not layer_keys:
            continue
        for key in layer_keys:
            out[key] = sums[key]
            h = 0
            while f"{key}/head{h}" in sums:
                out[f"{key}/head{h}"] = sums[f"{key}/head{h}"]
                h += 1
        out[f"entropy/{kind}/mean"] = math.fsum(sums[key] for key in layer_keys) / len(layer_keys)
    return out

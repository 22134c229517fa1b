"""Perplexity against context length, and loss against position.

Follows the Samba paper's validation protocol (Ren et al. 2024, arXiv 2406.07522, §3.1 Table 3 and
the official ``pretrain.py`` ``validate``; samba-facts.md §2.3 and §5): perplexity at length L is
``exp`` of the mean cross-entropy over the **whole prefix** of length L, i.e. over every target
position 1..L of the first L+1 tokens of each evaluation row, not only over the tokens past the
training length. A model trained at 4096 is evaluated at 4096, 8192, ... from the same rows.

All lengths come from one forward pass at the longest length: the model is causal, so the logits
at positions < L of a forward over L_max tokens are those of a forward over the first L tokens, and
the loss over a prefix of the longer forward equals the loss of the shorter forward (up to float
rounding). The mean is token-weighted over all rows (targets equal to -100 are ignored), which
equals the official mean over equal-sized batches when nothing is ignored. A -100 marks padding:
as an input it is fed as token 0, which (the model being causal) changes only later positions, so
padding must be a suffix of its row or targets after it must be -100 as well. Cross-entropy is taken
in float32 from the logits in whatever precision the model produces; no MLflow or Ray here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["position_losses", "ppl_at_lengths", "loss_by_position", "ppl_metrics"]

IGNORE_INDEX = -100


def _exp(x: float) -> float:
    if math.isnan(x):
        return math.nan
    return math.exp(x) if x < 709.0 else math.inf


def _check_tokens(tokens: Tensor, where: str) -> int:
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise ValueError(
            f"{where}: tokens must be (N, L_max + 1) token ids with L_max >= 1; got shape {tuple(tokens.shape)}"
        )
    if tokens.is_floating_point() or tokens.is_complex():
        raise ValueError(f"{where}: tokens must be integer token ids; got dtype {tokens.dtype}")
    return tokens.shape[1] - 1


@torch.no_grad()
def position_losses(
    model: nn.Module, tokens: Tensor, length: int | None = None, batch_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Summed cross-entropy and target count at every position, over all rows.

    Args:
        model: a causal LM mapping (b, L) token ids to (b, L, V) logits.
        tokens: (N, L_max + 1) token ids; inputs are ``tokens[:, :L]``, targets ``tokens[:, 1:L+1]``;
            targets of -100 are ignored.
        length: L, the number of input tokens per row; None = L_max.
        batch_size: rows per forward; None = all rows at once.

    Returns:
        ``(loss_sum, count)``, both float64 of shape (L,) on the CPU: entry ``t`` covers the target
        ``tokens[:, t+1]`` predicted from the first ``t+1`` tokens.
    """
    l_max = _check_tokens(tokens, "position_losses")
    L = l_max if length is None else length
    if isinstance(L, bool) or not isinstance(L, int) or not 1 <= L <= l_max:
        raise ValueError(
            f"position_losses: length must be an int in [1, {l_max}] (tokens hold {l_max + 1} per row); got {L!r}"
        )
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"position_losses: batch_size must be a positive int or None; got {batch_size!r}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else tokens.device
    N = tokens.shape[0]
    step = N if batch_size is None else batch_size
    loss_sum = torch.zeros(L, dtype=torch.float64)
    count = torch.zeros(L, dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, N, step):
            rows = tokens[start : start + step, : L + 1].to(device)  # (b, L + 1)
            inputs, targets = rows[:, :-1], rows[:, 1:]  # (b, L) each
            inputs = inputs.masked_fill(inputs == IGNORE_INDEX, 0)
            logits = model(inputs)  # (b, L, V)
            ce = F.cross_entropy(
                logits.float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
            )  # (b, L), zero where ignored
            loss_sum += ce.double().sum(0).cpu()
            count += (targets != IGNORE_INDEX).double().sum(0).cpu()
    finally:
        model.train(was_training)
    return loss_sum, count


def _prefix_means(loss_sum: Tensor, count: Tensor, lengths: list[int]) -> dict[int, float]:
    cum_loss, cum_count = loss_sum.cumsum(0), count.cumsum(0)  # (L,)
    out = {}
    for L in lengths:
        n = float(cum_count[L - 1])
        out[L] = float(cum_loss[L - 1]) / n if n > 0 else math.nan
    return out


def _check_lengths(lengths: list[int], l_max: int, where: str) -> list[int]:
    if not lengths:
        raise ValueError(f"{where}: lengths must name at least one evaluation length")
    for L in lengths:
        if isinstance(L, bool) or not isinstance(L, int) or not 1 <= L <= l_max:
            raise ValueError(
                f"{where}: every length must be an int in [1, {l_max}] (tokens hold {l_max + 1} per row, "
                f"enough for L = {l_max}); got {L!r}. Pass longer rows or drop that length"
            )
    return list(dict.fromkeys(lengths))


def ppl_at_lengths(model: nn.Module, tokens: Tensor, lengths: list[int], batch_size: int) -> dict[int, float]:
    """Perplexity at each length L: exp(mean CE over all target positions 1..L of every row).

    Args:
        model: a causal LM mapping (b, L) token ids to (b, L, V) logits.
        tokens: (N, L_max + 1) token ids with ``L_max >= max(lengths)``; -100 targets are ignored.
        lengths: the evaluation lengths L.
        batch_size: rows per forward.

    Returns:
        L -> perplexity, from one forward per batch at ``max(lengths)`` (prefix means; see module doc).
    """
    l_max = _check_tokens(tokens, "ppl_at_lengths")
    lengths = _check_lengths(lengths, l_max, "ppl_at_lengths")
    loss_sum, count = position_losses(model, tokens, max(lengths), batch_size)
    return {L: _exp(m) for L, m in _prefix_means(loss_sum, count, lengths).items()}


def loss_by_position(
    model: nn.Module, tokens: Tensor, n_buckets: int, batch_size: int | None = None
) -> list[tuple[int, int, float]]:
    """Mean cross-entropy in contiguous buckets of target positions, for a loss-vs-position curve.

    Args:
        model: a causal LM mapping (b, L) token ids to (b, L, V) logits.
        tokens: (N, L + 1) token ids; -100 targets are ignored.
        n_buckets: number of buckets (at most L); bucket sizes differ by at most one.
        batch_size: rows per forward; None = all rows at once.

    Returns:
        ``(start, end, mean_loss)`` per bucket: the 0-based half-open range ``[start, end)`` of target
        indices (index ``t`` = the token predicted from the first ``t+1`` tokens). Buckets with no
        counted target give NaN. The count-weighted mean of the buckets is the overall mean loss.
    """
    L = _check_tokens(tokens, "loss_by_position")
    if isinstance(n_buckets, bool) or not isinstance(n_buckets, int) or not 1 <= n_buckets <= L:
        raise ValueError(f"loss_by_position: n_buckets must be an int in [1, {L}]; got {n_buckets!r}")
    loss_sum, count = position_losses(model, tokens, L, batch_size)
    edges = [round(i * L / n_buckets) for i in range(n_buckets + 1)]
    out = []
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        n = float(count[start:end].sum())
        out.append((start, end, float(loss_sum[start:end].sum()) / n if n > 0 else math.nan))
    return out


def ppl_metrics(
    model: nn.Module, tokens: Tensor, train_length: int, lengths: list[int], batch_size: int
) -> dict[str, float]:
    """Validation metrics under design.md's MLflow names, from one forward per batch.

    Args:
        model: a causal LM mapping (b, L) token ids to (b, L, V) logits.
        tokens: (N, L_max + 1) token ids with ``L_max >= max(lengths + [train_length])``.
        train_length: the training sequence length.
        lengths: evaluation lengths (``data.eval_lengths``); the training length is always added.
        batch_size: rows per forward.

    Returns:
        ``val/loss`` and ``val/ppl`` (mean CE and perplexity at ``train_length``) and
        ``val/ppl_len{L}`` for every L in ``lengths`` and ``train_length``.
    """
    l_max = _check_tokens(tokens, "ppl_metrics")
    all_lengths = _check_lengths([*lengths, train_length], l_max, "ppl_metrics")
    loss_sum, count = position_losses(model, tokens, max(all_lengths), batch_size)
    means = _prefix_means(loss_sum, count, all_lengths)
    out = {"val/loss": means[train_length], "val/ppl": _exp(means[train_length])}
    for L in sorted(all_lengths):
        out[f"val/ppl_len{L}"] = _exp(means[L])
    return out

"""Synthetic recall probes scored on a trained model: exact-match accuracy over answer positions.

Zoology's multi-query associative recall (MQAR) and the Samba paper's passkey retrieval (App. C) are
teacher-forced here: a sequence counts as right when the argmax at every answer position is the answer
token. The batches come from the caller (``sweeps.probes`` builds them from the data config), so this
module needs only torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["sequence_accuracy", "probe_metrics"]

Batch = tuple[Tensor, Tensor]


@torch.no_grad()
def sequence_accuracy(model: nn.Module, batches: Sequence[Batch], device: torch.device | str = "cpu") -> float:
    """Fraction of rows (with at least one answer position) whose every answer token is the argmax."""
    was_training = model.training
    model.eval()
    right = total = 0
    try:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            pred = model(x).argmax(-1)  # (B, L)
            mask = y != -100
            has = mask.any(-1)
            ok = ((pred == y) | ~mask).all(-1)
            right += int(ok[has].sum())
            total += int(has.sum())
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("sequence_accuracy: the probe batches have no answer positions")
    return right / total


def probe_metrics(model: nn.Module, sets: Mapping[str, Sequence[Batch]], device: torch.device | str = "cpu") -> dict[str, float]:
    """``probe/<name>/accuracy`` for every named set; ``<task>/...`` sub-sets also roll up into
    ``probe/<task>/accuracy`` (the mean over that task's sub-sets)."""
    out: dict[str, float] = {}
    by_task: dict[str, list[float]] = {}
    for name, batches in sets.items():
        acc = sequence_accuracy(model, batches, device)
        task = name.split("/", 1)[0]
        if "/" in name:
            out[f"probe/{name}/accuracy"] = acc
        by_task.setdefault(task, []).append(acc)
    for task, accs in by_task.items():
        out[f"probe/{task}/accuracy"] = sum(accs) / len(accs)
    return out

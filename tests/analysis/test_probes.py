"""Probe scoring: exact match over answer positions, per sub-set and rolled up per task."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from analysis.probes import probe_metrics, sequence_accuracy
from sweeps.data.config import DataConfig
from sweeps.probes import probe_sets

V = 259


class Oracle(nn.Module):
    """Predicts the given targets (argmax), optionally wrong on every answer in rows listed in ``wrong``."""

    def __init__(self, targets: torch.Tensor, wrong: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.targets, self.wrong = targets, wrong

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.targets.clamp_min(0).clone()
        for r in self.wrong:
            y[r] = (y[r] + 1) % V
        return torch.nn.functional.one_hot(y, V).float()


def test_sequence_accuracy_counts_rows_with_every_answer_right() -> None:
    sets = probe_sets(DataConfig(source="mqar", seq_len=64, eval_lengths=[64]), ["mqar"], batch_size=4, n_batches=1)
    x, y = sets["mqar"][0]
    assert sequence_accuracy(Oracle(y), [(x, y)]) == 1.0
    assert sequence_accuracy(Oracle(y, wrong=(0, 2)), [(x, y)]) == 0.5


def test_passkey_sets_cover_lengths_and_depths_and_roll_up() -> None:
    data = DataConfig(seq_len=128, eval_lengths=[128, 256], passkey_depths=[0.0, 0.5, 1.0])
    sets = probe_sets(data, ["passkey"], batch_size=2, n_batches=1)
    assert sorted(sets) == sorted(f"passkey/len{L}/depth{d}" for L in (128, 256) for d in (0, 50, 100))
    x, y = sets["passkey/len256/depth50"][0]
    assert x.shape == (2, 256) and ((y != -100).sum(-1) == 5).all()

    class PerSet(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for name, [(xs, ys)] in sets.items():
                if xs.shape == x.shape and torch.equal(xs, x):
                    return Oracle(ys, wrong=(0, 1) if name.endswith("depth0") else ())(x)
            raise AssertionError("unknown batch")

    m = probe_metrics(PerSet(), sets)
    assert m["probe/passkey/len128/depth0/accuracy"] == 0.0
    assert m["probe/passkey/len256/depth100/accuracy"] == 1.0
    assert m["probe/passkey/accuracy"] == pytest.approx(4 / 6)


def test_probe_batches_without_answers_are_an_error() -> None:
    x = torch.zeros(2, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="no answer positions"):
        sequence_accuracy(Oracle(x), [(x, torch.full_like(x, -100))])

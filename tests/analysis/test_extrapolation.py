"""Samba's headline at toy scale: full attention blows up past its training length, SWA does not.

A full-attention and a sliding-window model (same size, RoPE) are trained at T=64 tokens on the stdlib
corpus; at 4T the full-attention model's perplexity is much worse than at T, the SWA model's is not.
The numbers are printed (pytest -s) and recorded in docs/BENCHMARKS.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.config import load_config
from sweeps.train import Hooks, run_training

T = 64
BASE = [
    "model.d_model=96",
    "model.mixers.A.heads=4",
    f"data.seq_len={T}",
    f"data.eval_lengths=[{T},{2 * T},{4 * T}]",
    "data.max_bytes=2000000",
    "train.steps=800",
    "train.batch_size=8",
    "train.lr=3.0e-3",
    "train.eval_every=800",
    "train.eval_batches=4",
    "train.eval_batch_size=4",
    "train.entropy=false",
]


class Final(Hooks):
    metrics: dict[str, float] = {}

    def on_eval(self, metrics, step, final, checkpoint):  # type: ignore[no-untyped-def]
        self.metrics = metrics


def _ppl(pattern: str) -> dict[int, float]:
    hooks = Final()
    run_training(load_config(None, [*BASE, f"model.pattern={pattern}"]), hooks)
    return {L: hooks.metrics[f"val/ppl_len{L}"] for L in (T, 2 * T, 4 * T)}


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDLAB_HOME", str(tmp_path / "home"))


def test_full_attention_blows_up_past_the_training_length_and_swa_does_not() -> None:
    full = _ppl("(A[window=null]-F)*3")
    swa = _ppl(f"(A[window={T // 2}]-F)*3")
    print(f"\nppl at T={T}, 2T, 4T: full attention {full}; SWA (window {T // 2}) {swa}")
    assert full[4 * T] > 1.5 * full[T], full
    assert swa[4 * T] < 1.05 * swa[T], swa

"""Sweep progress on the terminal: one line per trial event instead of Ray's wide result tables.

A Ray Tune ``Callback`` (module-level so that it pickles into ``tuner.pkl`` for resume); it keeps only
display counters, so a restored sweep simply counts again.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from ray.tune import Callback

from sweeps.space import PATTERN_KEY

__all__ = ["SweepProgress"]


class SweepProgress(Callback):
    def __init__(self, total: int) -> None:
        self.total, self.t0, self.finished = total, time.perf_counter(), 0

    def _line(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.t0:5.0f}s] {text}", file=sys.stderr, flush=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(f"trial {trial.trial_id} started: {trial.config.get(PATTERN_KEY, '(base pattern)')}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        def f(key: str) -> str:
            v = result.get(key, math.nan)
            return f"{v:.3f}" if isinstance(v, float) and abs(v) < 1e4 else f"{v:.0f}"

        tps = result.get("perf/tokens_per_s", math.nan)
        self._line(
            f"trial {trial.trial_id} step {result.get('step')}: val/loss {f('val/loss')} "
            f"val/ppl {f('val/ppl')} tokens/s {tps:.0f}"
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished += 1
        self._line(f"trial {trial.trial_id} done ({self.finished}/{self.total})")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished += 1
        self._line(f"trial {trial.trial_id} failed ({self.finished}/{self.total}); its MLflow run has hybridlab.error")

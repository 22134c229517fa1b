"""``LayoutSearch``: Ray Tune's OptunaSearch over a ``search_space.SearchSpace``, with infeasible samples
told to Optuna as infeasible and duplicate samples answered from the trial that already ran.

Ray's OptunaSearch turns every sample into a trial. Here ``suggest`` asks Optuna until it gets a sample
worth training:
- an infeasible sample (budget not reachable, constraint violated, config rejected) gets the Optuna
  constraint ``feasible`` = 1 (``Trial.set_constraint``; Optuna's TPE and NSGA samplers steer away from
  infeasible regions, and ``best_trial``/``best_trials`` skip them) and is closed as PRUNED, never as a
  bad score;
- a sample whose canonical key equals a finished trial's is told that trial's values (user attribute
  ``duplicate_of``); one equal to a running trial waits and is told its values when it finishes.
Neither starts a Ray trial. Each such event is printed once and appended to ``events_path`` (JSON
lines), which the runner logs on the sweep's parent run. When ``max_attempts`` asks in a row give
nothing new, the space is exhausted and the searcher finishes the sweep early (recorded as an event).

Module-level and picklable by reference, so Tune's resume restores it (stack-notes.md §1).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search_space.space import SearchSpace

__all__ = ["LayoutSearch", "read_events"]

FEASIBLE = "feasible"


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """The events a ``LayoutSearch`` wrote (empty when none or no file)."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


class LayoutSearch(OptunaSearch):
    """OptunaSearch whose samples come from ``space.sample`` (see module docstring)."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        events_path: str,
        dedup: bool = True,
        max_attempts: int = 200,
        **kwargs: Any,
    ) -> None:
        super().__init__(space=space, **kwargs)
        self._layout_space = space
        self._events_path = str(events_path)
        self._dedup = dedup
        self._max_attempts = max_attempts
        self._trial_keys: dict[str, str] = {}
        self._trial_configs: dict[str, dict[str, Any]] = {}
        self._key_values: dict[str, Any] = {}  # key -> values told for the trial that ran it
        self._key_trial: dict[str, str] = {}  # key -> Ray trial id that runs/ran it
        self._waiting: dict[str, list[Any]] = {}  # key -> Optuna trials waiting for that result
        self._exhausted = False
        self._t0 = time.time()

    def _event(self, kind: str, **info: Any) -> None:
        record = {"time": time.time(), "kind": kind, **info}
        Path(self._events_path).parent.mkdir(parents=True, exist_ok=True)
        with open(self._events_path, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        detail = info.get("reason") or (f"same as trial {info.get('duplicate_of')}" if "duplicate_of" in info else "")
        what = info.get("pattern", "")
        print(f"[{time.time() - self._t0:5.0f}s] sample {kind}: {what} {detail}".rstrip(), file=sys.stderr, flush=True)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._exhausted:
            return Searcher.FINISHED
        if trial_id in self._trial_configs:
            return dict(self._trial_configs[trial_id])
        for _ in range(self._max_attempts):
            ot_trial = self._ot_study.ask()
            sample = self._layout_space.sample(ot_trial)
            pattern = sample.overrides.get("model.pattern") or sample.overrides.get("model.preset") or ""
            if sample.infeasible is not None:
                ot_trial.set_constraint(FEASIBLE, 1.0)
                ot_trial.set_user_attr("infeasible", sample.infeasible[:2000])
                self._ot_study.tell(ot_trial, state=_state("PRUNED"))
                self._event("infeasible", pattern=pattern, reason=sample.infeasible, params=sample.params,
                            optuna_trial=ot_trial.number)
                continue
            ot_trial.set_constraint(FEASIBLE, 0.0)
            ot_trial.set_user_attr("sample_key", sample.key)
            for k, v in sample.facts.items():
                if k in ("params", "flops_per_token", "attention_layers", "canonical"):
                    ot_trial.set_user_attr(k, v)
            if self._dedup and sample.key in self._key_trial:
                original = self._key_trial[sample.key]
                ot_trial.set_user_attr("duplicate_of", original)
                if sample.key in self._key_values:
                    self._tell_duplicate(ot_trial, self._key_values[sample.key])
                else:
                    self._waiting.setdefault(sample.key, []).append(ot_trial)
                self._event("duplicate", pattern=pattern, duplicate_of=original, params=sample.params,
                            optuna_trial=ot_trial.number)
                continue
            self._ot_trials[trial_id] = ot_trial
            self._trial_keys[trial_id] = sample.key
            self._key_trial[sample.key] = trial_id
            self._trial_configs[trial_id] = dict(sample.overrides)
            return dict(sample.overrides)
        self._exhausted = True
        self._event("exhausted", reason=f"{self._max_attempts} samples in a row were infeasible or duplicates")
        return Searcher.FINISHED

    def _values(self, result: dict | None) -> Any:
        if not result:
            return None
        if isinstance(self.metric, list):
            vals = [result.get(m) for m in self.metric]
            return None if any(v is None or not math.isfinite(float(v)) for v in vals) else [float(v) for v in vals]
        v = result.get(self.metric)
        return None if v is None or not math.isfinite(float(v)) else float(v)

    def _tell_duplicate(self, ot_trial: Any, values: Any) -> None:
        if values is None:
            self._ot_study.tell(ot_trial, state=_state("FAIL"))
        else:
            self._ot_study.tell(ot_trial, values)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        super().on_trial_complete(trial_id, result=result, error=error)
        key = self._trial_keys.get(trial_id)
        if key is None:
            return
        values = None if error else self._values(result)
        self._key_values[key] = values
        for waiting in self._waiting.pop(key, []):
            self._tell_duplicate(waiting, values)

    @property
    def exhausted(self) -> bool:
        return self._exhausted


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return getattr(TrialState, name)

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
A trial the scheduler stopped before its final evaluation (ASHA; its last result has ``final`` = 0) is
told to Optuna as PRUNED, with the intermediate values it reported, never with its partial metric as a
final value; its duplicates are PRUNED too.

Resume. Ray writes the experiment state (its trials) and the searcher state one after the other and
syncs them to storage file by file, so after a killed driver they can be from different moments: a
trial the experiment state knows may be missing from the searcher state, or the searcher may have
handed out samples (taking enqueued points off Optuna's queue) for trials Ray no longer knows. Every
sample therefore records its Ray trial id in the Optuna storage (user attribute ``ray_trial_id``,
written in the same transaction-backed store as the sample), and on restore the searcher rebuilds its
map from that store against the trials of the experiment state: samples of trials Ray kept are
reattached, samples of trials Ray lost are handed out again to the next new trials (event
``reissued``) before anything new is asked, so no sample is lost or trained twice. ``Limiter`` and
``Generator`` (the concurrency limit and Ray's trial counter) are pruned and recounted against the same
trial list.

Module-level and picklable by reference, so Tune's resume restores it (stack-notes.md §1).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from optuna.trial import FixedTrial, Trial, TrialState
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from search_space.space import SearchSpace

__all__ = ["LayoutSearch", "Limiter", "Generator", "read_events", "known_ray_trials"]

FEASIBLE = "feasible"
RAY_TRIAL = "ray_trial_id"
STOPPED = "stopped"  # the values of a sample whose trial the scheduler stopped early: told as PRUNED


def known_ray_trials(exp_dir: str | Path) -> set[str] | None:
    """Trial ids in the newest experiment state of a Ray Tune experiment folder (None if unreadable)."""
    states = sorted(Path(exp_dir).glob("experiment_state-*.json"))
    if not states:
        return None
    try:
        data = json.loads(states[-1].read_text())
        return {json.loads(entry[0])["trial_id"] for entry in data["trial_data"]}
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


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
        self._events_path = str(events_path)
        self._dedup = dedup
        self._max_attempts = max_attempts
        self._trial_keys: dict[str, str] = {}
        self._trial_configs: dict[str, dict[str, Any]] = {}
        self._key_values: dict[str, Any] = {}  # key -> values told for the trial that ran it
        self._key_trial: dict[str, str] = {}  # key -> Ray trial id that runs/ran it
        self._waiting: dict[str, list[Any]] = {}  # key -> Optuna trials waiting for that result
        self._exhausted = False
        self._reissue: list[int] = []  # Optuna trial numbers whose Ray trial was lost in a crash
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
        reissued = self._next_reissue(trial_id)
        if reissued is not None:
            return reissued
        for _ in range(self._max_attempts):
            ot_trial = self._ot_study.ask()
            sample = self._space.sample(ot_trial)
            pattern = sample.overrides.get("model.pattern") or sample.overrides.get("model.preset") or ""
            if sample.infeasible is not None:
                ot_trial.set_constraint(FEASIBLE, 1.0)
                ot_trial.set_user_attr("infeasible", sample.infeasible[:2000])
                self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
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
            ot_trial.set_user_attr(RAY_TRIAL, trial_id)
            self._register(trial_id, ot_trial, sample.key, sample.overrides)
            return dict(sample.overrides)
        self._exhausted = True
        self._event("exhausted", reason=f"{self._max_attempts} samples in a row were infeasible or duplicates")
        return Searcher.FINISHED

    def _register(self, trial_id: str, ot_trial: Any, key: str, overrides: dict[str, Any]) -> None:
        self._ot_trials[trial_id] = ot_trial
        self._trial_keys[trial_id] = key
        self._key_trial[key] = trial_id
        self._trial_configs[trial_id] = dict(overrides)

    def _resample(self, frozen: Any) -> Any:
        """The sample an Optuna trial's recorded parameters describe (same overrides, same key)."""
        return self._space.sample(FixedTrial(frozen.params))

    def _next_reissue(self, trial_id: str) -> dict[str, Any] | None:
        while self._reissue:
            frozen = self._ot_study.trials[self._reissue.pop(0)]
            try:
                sample = self._resample(frozen)
            except ValueError:  # stopped before all its parameters were drawn: nothing to hand out
                if frozen.state == TrialState.RUNNING:
                    self._ot_study.tell(frozen.number, state=TrialState.FAIL)
                continue
            if sample.key is None:
                if frozen.state == TrialState.RUNNING:  # stopped before it could be told infeasible
                    self._ot_study.tell(frozen.number, state=TrialState.FAIL)
                continue
            if frozen.state == TrialState.RUNNING:
                live = Trial(self._ot_study, frozen._trial_id)
                live.set_user_attr(RAY_TRIAL, trial_id)
            else:  # told already (it finished before the crash): train it again for its records only
                live = frozen
                self._completed_trials.add(trial_id)
            self._register(trial_id, live, sample.key, sample.overrides)
            self._event("reissued", pattern=sample.overrides.get("model.pattern", ""), params=frozen.params,
                        optuna_trial=frozen.number, reason=f"its Ray trial {frozen.user_attrs.get(RAY_TRIAL)} "
                        "was lost when the driver stopped")
            return dict(sample.overrides)
        return None

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        known = known_ray_trials(Path(self._events_path).parent)
        if known is None:
            self._event("resume-unchecked", reason="Ray's experiment state could not be read; the searcher "
                        "state is used as saved, so a sample handed out just before the stop may be lost")
        self._resync(known)

    def _resync(self, known: set[str] | None) -> None:
        """Rebuild the Ray trial -> sample map from the Optuna storage against Ray's restored trials."""
        if known is None:
            return
        self._reissue = []
        for trial_id in [t for t in self._ot_trials if t not in known]:
            self._ot_trials.pop(trial_id, None)
            self._trial_configs.pop(trial_id, None)
            key = self._trial_keys.pop(trial_id, None)
            if key is not None and self._key_trial.get(key) == trial_id:
                del self._key_trial[key]
        for frozen in self._ot_study.get_trials(deepcopy=False):
            ray_id = frozen.user_attrs.get(RAY_TRIAL)
            told = frozen.state in (TrialState.COMPLETE, TrialState.PRUNED)  # PRUNED with a Ray trial: stopped
            if not (told or frozen.state == TrialState.RUNNING) or "duplicate_of" in frozen.user_attrs:
                continue
            if ray_id is None and told:  # an infeasible sample (never a Ray trial), or told before ids existed
                continue
            if ray_id is None or ray_id not in known:
                # its Ray trial was lost, or the driver stopped while handing it out (after Optuna took it
                # off the queue, before it was tied to a trial): hand it out again
                self._reissue.append(frozen.number)
                continue
            if ray_id not in self._ot_trials:
                sample = self._resample(frozen)
                if sample.key is None:
                    continue
                live = Trial(self._ot_study, frozen._trial_id) if frozen.state == TrialState.RUNNING else frozen
                self._register(ray_id, live, sample.key, sample.overrides)
            if frozen.state == TrialState.COMPLETE:
                self._completed_trials.add(ray_id)
                self._key_values[self._trial_keys[ray_id]] = frozen.values if isinstance(self.metric, list) else frozen.value
            elif frozen.state == TrialState.PRUNED:
                self._completed_trials.add(ray_id)
                self._key_values[self._trial_keys[ray_id]] = STOPPED
        self._waiting = {}  # duplicates still waiting for their original's result, from the storage
        for frozen in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            key = frozen.user_attrs.get("sample_key")
            if "duplicate_of" not in frozen.user_attrs or RAY_TRIAL in frozen.user_attrs or key is None:
                continue
            live = Trial(self._ot_study, frozen._trial_id)
            if key in self._key_values:
                self._tell_duplicate(live, self._key_values[key])
            else:
                self._waiting.setdefault(key, []).append(live)

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
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)
        elif values == STOPPED:
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        else:
            self._ot_study.tell(ot_trial, values)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return  # a reissued trial whose sample Optuna already has a value for, or one Ray lost
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if not error and result and result.get("final") == 0.0:  # stopped before its final evaluation
            ot_trial = self._ot_trials[trial_id]
            value, step = self._values(result), result.get("training_iteration")
            if not isinstance(self.metric, list) and value is not None and step is not None:
                ot_trial.report(value, int(step))  # Ray passes the result it stopped on here, not to on_trial_result
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            values: Any = STOPPED
        else:
            super().on_trial_complete(trial_id, result=result, error=error)
            values = None if error else self._values(result)
        key = self._trial_keys.get(trial_id)
        if key is None:
            return
        self._key_values[key] = values
        for waiting in self._waiting.pop(key, []):
            self._tell_duplicate(waiting, values)

    @property
    def exhausted(self) -> bool:
        return self._exhausted


class Limiter(ConcurrencyLimiter):
    """Ray's ConcurrencyLimiter, made safe for a resume from mismatched state files: results of trials it
    does not hold as live still reach the searcher, and on restore it forgets trials Ray lost (which
    would otherwise count against the limit forever and stall the sweep)."""

    def __init__(self, searcher: Searcher, max_concurrent: int, exp_dir: str) -> None:
        super().__init__(searcher, max_concurrent=max_concurrent)
        self._exp_dir = exp_dir

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live_trials:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        super().on_trial_complete(trial_id, result=result, error=error)

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        known = known_ray_trials(self._exp_dir)
        if known is not None:
            self.live_trials = {t for t in self.live_trials if t in known}


class Generator(SearchGenerator):
    """Ray's SearchGenerator whose trial counter is recounted from the restored trials on resume, so a
    counter saved before the last trials were created does not make the sweep run extra trials."""

    def __init__(self, searcher: Searcher, exp_dir: str) -> None:
        super().__init__(searcher)
        self._exp_dir = exp_dir

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        known = known_ray_trials(self._exp_dir)
        if known is not None:
            self._counter = len(known)

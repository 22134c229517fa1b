"""LayoutSearch: infeasible samples are told to Optuna as infeasible (never trained, never a score),
duplicate canonical samples reuse the result of the trial that ran them, and an exhausted space ends
the sweep. The searcher is driven directly (suggest / on_trial_complete), as Ray Tune drives it."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from search_space.space import SearchSpace
from sweeps.searcher import LayoutSearch, read_events

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = {"model": {"pattern": "M-F", "d_model": 32, "mixers": {"A": {"heads": 2, "window": 16}}}, "data": {"seq_len": 32}}


def _searcher(tmp_path: Path, space: SearchSpace, **kw) -> LayoutSearch:  # type: ignore[no-untyped-def]
    kw.setdefault("metric", "val/loss")
    kw.setdefault("mode", "min")
    return LayoutSearch(space, events_path=str(tmp_path / "events.jsonl"),
                        sampler=optuna.samplers.RandomSampler(seed=0), **kw)


def test_infeasible_samples_become_constrained_pruned_trials_and_never_run(tmp_path: Path) -> None:
    space = SearchSpace(BASE, patterns=["M-F", "(A-F)*2"], constraints={"max_attention_layers": 1}, vocab_size=259)
    s = _searcher(tmp_path, space)
    configs = [s.suggest(f"t{i}") for i in range(3)]
    assert all(c["model.pattern"] == "M-F" for c in configs if c is not Searcher.FINISHED)
    study = s._ot_study
    infeasible = [t for t in study.trials if "infeasible" in t.user_attrs]
    assert infeasible, "the random sampler drew (A-F)*2 at least once in this seed"
    for t in infeasible:
        assert t.state == TrialState.PRUNED and t.values is None
        assert t.constraints == {"feasible": 1.0}  # Optuna's constrained samplers steer away from it
        assert "max_attention_layers" in t.user_attrs["infeasible"]
    events = read_events(tmp_path / "events.jsonl")
    assert {e["kind"] for e in events} >= {"infeasible"}
    assert all(e["pattern"] == "(A-F)*2" for e in events if e["kind"] == "infeasible")


def test_a_duplicate_of_a_finished_trial_is_answered_with_its_result(tmp_path: Path) -> None:
    space = SearchSpace(BASE, patterns=["(M-F)*2", "M-F-M-F", "A-F"], vocab_size=259)
    s = _searcher(tmp_path, space, points_to_evaluate=[{"model.pattern": "(M-F)*2"}, {"model.pattern": "M-F-M-F"},
                                                        {"model.pattern": "A-F"}])
    first = s.suggest("t0")
    assert first["model.pattern"] == "(M-F)*2"
    s.on_trial_complete("t0", {"val/loss": 2.5, "training_iteration": 1})
    second = s.suggest("t1")  # the enqueued M-F-M-F is the same model: answered, then A-F is drawn
    assert second["model.pattern"] == "A-F"
    dup = [t for t in s._ot_study.trials if t.user_attrs.get("duplicate_of") == "t0"]
    assert len(dup) == 1 and dup[0].state == TrialState.COMPLETE and dup[0].value == 2.5
    assert dup[0].params == {"model.pattern": "M-F-M-F"}
    assert [e["kind"] for e in read_events(tmp_path / "events.jsonl")] == ["duplicate"]


def test_a_duplicate_of_a_running_trial_waits_for_its_result(tmp_path: Path) -> None:
    space = SearchSpace(BASE, patterns=["(M-F)*2", "M-F-M-F", "A-F"], vocab_size=259)
    s = _searcher(tmp_path, space, points_to_evaluate=[{"model.pattern": "(M-F)*2"}, {"model.pattern": "M-F-M-F"},
                                                        {"model.pattern": "A-F"}])
    assert s.suggest("t0")["model.pattern"] == "(M-F)*2"
    assert s.suggest("t1")["model.pattern"] == "A-F"
    waiting = [t for t in s._ot_study.trials if t.user_attrs.get("duplicate_of") == "t0"]
    assert len(waiting) == 1 and waiting[0].state == TrialState.RUNNING
    s.on_trial_complete("t0", {"val/loss": 1.75})
    told = s._ot_study.trials[waiting[0].number]
    assert told.state == TrialState.COMPLETE and told.value == 1.75


def test_multi_objective_duplicates_get_every_value(tmp_path: Path) -> None:
    space = SearchSpace(BASE, patterns=["(M-F)*2", "M-F-M-F"], vocab_size=259)
    s = _searcher(tmp_path, space, metric=["val/ppl", "perf/tokens_per_s"], mode=["min", "max"], max_attempts=5,
                  points_to_evaluate=[{"model.pattern": "(M-F)*2"}, {"model.pattern": "M-F-M-F"}])
    s.suggest("t0")
    s.on_trial_complete("t0", {"val/ppl": 9.0, "perf/tokens_per_s": 1000.0})
    assert s.suggest("t1") is Searcher.FINISHED  # every remaining sample repeats t0
    dup = [t for t in s._ot_study.trials if t.user_attrs.get("duplicate_of") == "t0"]
    assert dup and all(t.values == [9.0, 1000.0] for t in dup)
    assert s._ot_study.trials[0].values == [9.0, 1000.0]


def test_an_exhausted_space_finishes_the_sweep_with_an_event(tmp_path: Path) -> None:
    space = SearchSpace(BASE, patterns=["M-F", "F-M-F"], vocab_size=259)
    s = _searcher(tmp_path, space, max_attempts=20)
    a, b = s.suggest("t0"), s.suggest("t1")
    assert {a["model.pattern"], b["model.pattern"]} == {"M-F", "F-M-F"}
    s.on_trial_complete("t0", {"val/loss": 3.0})
    s.on_trial_complete("t1", {"val/loss": 3.1})
    assert s.suggest("t2") is Searcher.FINISHED
    assert s.exhausted
    assert read_events(tmp_path / "events.jsonl")[-1]["kind"] == "exhausted"


def test_a_failed_trial_fails_its_waiting_duplicates(tmp_path: Path) -> None:
    space = SearchSpace(BASE, patterns=["(M-F)*2", "M-F-M-F", "A-F"], vocab_size=259)
    s = _searcher(tmp_path, space, points_to_evaluate=[{"model.pattern": "(M-F)*2"}, {"model.pattern": "M-F-M-F"},
                                                        {"model.pattern": "A-F"}])
    s.suggest("t0")
    s.suggest("t1")
    s.on_trial_complete("t0", None, error=True)
    dup = [t for t in s._ot_study.trials if t.user_attrs.get("duplicate_of") == "t0"]
    assert dup and all(t.state == TrialState.FAIL for t in dup)


def test_a_trial_stopped_before_its_final_evaluation_is_pruned_not_scored(tmp_path: Path) -> None:
    """ASHA stops a trial after a few evaluations: Optuna keeps those as intermediate values and closes the
    trial PRUNED (best_trial considers COMPLETE trials only, and TPE ranks pruned ones by how far they got),
    never COMPLETE with a partial loss; a trial that reached its final evaluation is COMPLETE with it."""
    space = SearchSpace(BASE, patterns=["M-F", "A-F"], vocab_size=259)
    s = _searcher(tmp_path, space, points_to_evaluate=[{"model.pattern": "M-F"}, {"model.pattern": "A-F"}])
    s.suggest("t0")
    s.suggest("t1")
    s.on_trial_complete("t0", {"val/loss": 4.0, "training_iteration": 1, "final": 0.0})  # as Ray does on a stop
    for i, loss in enumerate([4.5, 3.5], start=1):
        s.on_trial_result("t1", {"val/loss": loss, "training_iteration": i, "final": float(i == 2)})
    s.on_trial_complete("t1", {"val/loss": 3.5, "training_iteration": 2, "final": 1.0})
    stopped, finished = s._ot_study.trials
    assert stopped.state == TrialState.PRUNED and stopped.intermediate_values == {1: 4.0}  # Optuna keeps the last
    assert finished.state == TrialState.COMPLETE and finished.value == 3.5
    assert s._ot_study.best_trial.number == finished.number


def test_a_duplicate_of_a_stopped_trial_is_pruned_too(tmp_path: Path) -> None:
    space = SearchSpace(BASE, patterns=["(M-F)*2", "M-F-M-F", "A-F"], vocab_size=259)
    s = _searcher(tmp_path, space, points_to_evaluate=[{"model.pattern": "(M-F)*2"}, {"model.pattern": "M-F-M-F"},
                                                        {"model.pattern": "A-F"}])
    s.suggest("t0")
    s.suggest("t1")  # M-F-M-F waits for t0
    s.on_trial_complete("t0", {"val/loss": 4.0, "training_iteration": 1, "final": 0.0})
    dup = next(t for t in s._ot_study.trials if t.user_attrs.get("duplicate_of") == "t0")
    assert dup.state == TrialState.PRUNED and dup.value is None


def test_dedup_off_trains_every_sample(tmp_path: Path) -> None:
    space = SearchSpace(BASE, patterns=["(M-F)*2", "M-F-M-F"], vocab_size=259)
    s = _searcher(tmp_path, space, dedup=False, points_to_evaluate=[{"model.pattern": "(M-F)*2"},
                                                                     {"model.pattern": "M-F-M-F"}])
    assert s.suggest("t0")["model.pattern"] == "(M-F)*2"
    assert s.suggest("t1")["model.pattern"] == "M-F-M-F"


def _experiment_state(exp_dir: Path, trial_ids: list[str]) -> None:
    """The part of Ray's experiment_state-*.json the searcher reads on resume: the trials Ray restores."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    data = {"trial_data": [[json.dumps({"trial_id": t}), "{}"] for t in trial_ids]}
    (exp_dir / "experiment_state-2026-11-30_07-00-00.json").write_text(json.dumps(data))


PATTERNS = ["M-F", "A-F", "(M|A)-F", "G-F-R-F"]


def _resumable(exp_dir: Path, enqueue: bool = True) -> LayoutSearch:
    """A searcher on the sweep's Optuna storage; ``enqueue=False`` is the copy Ray unpickles on resume
    (its constructor, which enqueues the listed patterns, does not run again)."""
    space = SearchSpace(BASE, patterns=PATTERNS, vocab_size=259)
    exp_dir.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{exp_dir.parent / 'optuna.db'}")
    return LayoutSearch(space, events_path=str(exp_dir / "search_events.jsonl"), metric="val/loss", mode="min",
                        sampler=optuna.samplers.RandomSampler(seed=0), storage=storage, study_name="resume",
                        points_to_evaluate=[{"model.pattern": p} for p in PATTERNS] if enqueue else None)


def test_resume_hands_out_again_the_samples_of_trials_ray_lost(tmp_path: Path) -> None:
    exp_dir = tmp_path / "ray" / "resume"
    before = _resumable(exp_dir)
    assert before.suggest("t0")["model.pattern"] == "M-F"
    assert before.suggest("t1")["model.pattern"] == "A-F"
    before.save(str(tmp_path / "searcher.pkl"))  # the searcher state Ray saved last
    assert before.suggest("t2")["model.pattern"] == "(M|A)-F"  # handed out after that save ...
    before.on_trial_complete("t0", {"val/loss": 2.0})
    _experiment_state(exp_dir, ["t0", "t1"])  # ... and Ray's saved experiment lost trial t2

    after = _resumable(exp_dir, enqueue=False)
    after.restore(str(tmp_path / "searcher.pkl"))
    assert after.suggest("t3")["model.pattern"] == "(M|A)-F"  # t2's sample again, not a new one
    assert after.suggest("t4")["model.pattern"] == "G-F-R-F"  # then the queue goes on
    assert "reissued" in [e["kind"] for e in read_events(exp_dir / "search_events.jsonl")]
    after.on_trial_complete("t3", {"val/loss": 1.5})
    trials = {t.params["model.pattern"]: t for t in after._ot_study.trials}
    assert trials["(M|A)-F"].value == 1.5 and trials["(M|A)-F"].user_attrs["ray_trial_id"] == "t3"
    assert len(after._ot_study.trials) == 4  # nothing sampled twice


def test_resume_reattaches_trials_the_searcher_state_missed(tmp_path: Path) -> None:
    exp_dir = tmp_path / "ray" / "resume"
    before = _resumable(exp_dir)
    before.suggest("t0")
    before.save(str(tmp_path / "searcher.pkl"))  # older than the experiment state below
    before.suggest("t1")
    _experiment_state(exp_dir, ["t0", "t1"])

    after = _resumable(exp_dir, enqueue=False)
    after.restore(str(tmp_path / "searcher.pkl"))
    after.on_trial_complete("t1", {"val/loss": 3.0})  # Ray restored t1; its result reaches Optuna
    a_f = next(t for t in after._ot_study.trials if t.params["model.pattern"] == "A-F")
    assert a_f.state == TrialState.COMPLETE and a_f.value == 3.0
    assert after.suggest("t2")["model.pattern"] == "(M|A)-F"


def _on_storage(tmp_path: Path, patterns: list[str], enqueue: bool) -> LayoutSearch:
    """A searcher over ``patterns`` on an Optuna storage under ``tmp_path``, its Ray folder ``ray/resume``;
    ``enqueue=False`` is the copy Ray unpickles on resume."""
    exp_dir = tmp_path / "ray" / "resume"
    exp_dir.mkdir(parents=True, exist_ok=True)
    return LayoutSearch(SearchSpace(BASE, patterns=patterns, vocab_size=259),
                        events_path=str(exp_dir / "search_events.jsonl"), metric="val/loss", mode="min",
                        sampler=optuna.samplers.RandomSampler(seed=0),
                        storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}"),
                        study_name="dup", points_to_evaluate=[{"model.pattern": p} for p in patterns] if enqueue else None)


def test_resume_keeps_duplicates_waiting_for_their_original(tmp_path: Path) -> None:
    exp_dir = tmp_path / "ray" / "resume"
    patterns = ["(M-F)*2", "M-F-M-F", "A-F"]
    before = _on_storage(tmp_path, patterns, enqueue=True)
    before.save(str(tmp_path / "searcher.pkl"))
    before.suggest("t0")
    before.suggest("t1")  # M-F-M-F waits for t0 on the way to A-F
    _experiment_state(exp_dir, ["t0", "t1"])

    after = _on_storage(tmp_path, patterns, enqueue=False)
    after.restore(str(tmp_path / "searcher.pkl"))
    after.on_trial_complete("t0", {"val/loss": 2.25})
    dup = next(t for t in after._ot_study.trials if t.params["model.pattern"] == "M-F-M-F")
    assert dup.state == TrialState.COMPLETE and dup.value == 2.25


def test_resume_hands_out_a_sample_the_driver_was_stopped_in_the_middle_of(tmp_path: Path) -> None:
    exp_dir = tmp_path / "ray" / "resume"
    before = _resumable(exp_dir)
    before.suggest("t0")
    before.save(str(tmp_path / "searcher.pkl"))
    taken = before._ot_study.ask()  # the driver took A-F off Optuna's queue and was killed right there
    before._space.sample(taken)
    _experiment_state(exp_dir, ["t0"])

    after = _resumable(exp_dir, enqueue=False)
    after.restore(str(tmp_path / "searcher.pkl"))
    assert after.suggest("t1")["model.pattern"] == "A-F"
    assert after.suggest("t2")["model.pattern"] == "(M|A)-F"
    assert [t.params.get("model.pattern") for t in after._ot_study.trials].count("A-F") == 1


def test_resume_keeps_a_stopped_trial_stopped_and_answers_its_duplicates(tmp_path: Path) -> None:
    exp_dir = tmp_path / "ray" / "resume"
    patterns = ["(M-F)*2", "A-F", "M-F-M-F"]
    before = _on_storage(tmp_path, patterns, enqueue=True)
    before.save(str(tmp_path / "searcher.pkl"))  # saved before t0 was handed out and stopped
    before.suggest("t0")
    before.on_trial_complete("t0", {"val/loss": 4.0, "training_iteration": 1, "final": 0.0})
    before.suggest("t1")
    _experiment_state(exp_dir, ["t0", "t1"])

    after = _on_storage(tmp_path, patterns, enqueue=False)
    after.restore(str(tmp_path / "searcher.pkl"))
    assert "t0" in after._completed_trials
    assert after.suggest("t2") is Searcher.FINISHED  # M-F-M-F repeats the stopped t0: answered, not trained
    dup = next(t for t in after._ot_study.trials if t.params["model.pattern"] == "M-F-M-F")
    assert dup.state == TrialState.PRUNED and dup.user_attrs["duplicate_of"] == "t0"

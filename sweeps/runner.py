"""Ray Tune + Optuna sweeps logged to MLflow: one parent run per sweep, one nested child run per trial.

Wiring follows the checked end-to-end recipe of stack-notes.md §5 and avoids its traps: ``ray.tune``
APIs only inside the trainable; absolute Ray storage under HYBRIDLAB_HOME/ray; the MLflow URI set
before ``ray.init`` and again inside each trial; final metrics logged before the final
``tune.report`` (a stopped trial gets SystemExit inside it); MLflow run ids kept in checkpoints and
reused on resume; ``fit()`` returning after an interruption is detected by each trial's ``done``
flag; Optuna storage with one study per sweep name. ASHA-stopped trials are tagged ``pruned``, crashed
ones ``failed`` with their error, and the sweep goes on.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sweeps.config import ConfigLoadError, RunConfig, apply_dotted, from_plain, to_plain
from sweeps.paths import share_kernel_cache
from sweeps.space import PATTERN_KEY, PRESET_KEY, build_space
from sweeps.tracking import (
    ROLE_TAG,
    STATUS_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    MLflowHooks,
    client,
    ensure_experiment,
    finish_run,
    set_home,
    start_run,
    tracking_uri,
)
from sweeps.train import Checkpoint, Diverged, run_training
from sweeps.trial_exit import join_at_exit

__all__ = ["run_sweep", "SweepOutcome", "SweepExists", "trial_dirname", "trainable"]

STATE_FILE = "state.pt"
META_FILE = "meta.json"
EVENTS_FILE = "search_events.jsonl"  # LayoutSearch's log of samples that never became trials


class SweepExists(ConfigLoadError):
    """A sweep of this name already exists and --resume was not given."""


@dataclass
class SweepOutcome:
    name: str
    experiment_id: str
    parent_run_id: str
    n_trials: int
    n_done: int
    n_errors: int
    interrupted: bool
    wall_s: float
    unfinished: list[str] = field(default_factory=list)  # "trial_id (pattern)" of trials not done
    n_infeasible: int = 0  # samples told to Optuna as infeasible (never trained)
    n_duplicates: int = 0  # samples answered from an earlier trial with the same canonical model
    exhausted: bool = False  # the space ran out of new feasible samples before num_samples


def trial_dirname(trial: Any) -> str:
    """Short trial folder names (Ray's default embeds every config value); pickled by reference."""
    return str(trial.trial_id)


def _run_name(pattern: str, trial_id: str) -> str:
    short = pattern if len(pattern) <= 60 else pattern[:57] + "..."
    return f"{short} #{trial_id.rsplit('_', 1)[-1]}"


class _TuneHooks(MLflowHooks):
    """Log each evaluation to MLflow first, then report it (with a checkpoint) to Ray Tune."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_step = 0

    def on_eval(self, metrics: dict[str, float], step: int, final: bool, checkpoint: Checkpoint) -> None:
        from ray import tune

        super().on_eval(metrics, step, final, checkpoint)
        self.last_step = step
        report = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
        report["step"] = step
        report["final"] = float(final)  # 0: the scheduler may still stop it; LayoutSearch tells Optuna PRUNED
        with tempfile.TemporaryDirectory() as d:
            torch.save(checkpoint(), os.path.join(d, STATE_FILE))
            with open(os.path.join(d, META_FILE), "w") as f:
                json.dump({"mlflow_run_id": self.run_id, "step": step}, f)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(d))


def _process_start() -> float:
    """Wall-clock start of this (trial) process, from /proc; now where /proc is missing."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()


_trials_in_process = 0


def _trial_origin() -> float:
    """Where a trial's ``perf/startup_s`` starts: its process's start for the process's first trial, now for a
    later one in a reused process (``sweep.reuse_actors``), which first frees what the earlier trial left:
    its objects and cached GPU memory, and its compiled graphs (which would count against this trial's
    recompile limit)."""
    global _trials_in_process
    _trials_in_process += 1
    if _trials_in_process == 1:
        return _process_start()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    torch._dynamo.reset()
    return time.time()


def trainable(sampled: dict[str, Any], base: dict[str, Any], ml: dict[str, str]) -> None:
    """One Ray Tune trial: merge the sampled keys into the base config, train, log, report."""
    origin = _trial_origin()
    join_at_exit()  # Ray stops a trial without waiting for this thread; its process exit must (sweeps.trial_exit)
    from ray import tune

    logging.getLogger("ray.train").setLevel(logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    os.environ["HYBRIDLAB_HOME"] = ml["home"]
    home = Path(ml["home"])
    c = client(home)
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    resume_state, run_id = None, None
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            run_id = json.loads(Path(d, META_FILE).read_text())["mlflow_run_id"]
            resume_state = torch.load(Path(d, STATE_FILE), map_location="cpu", weights_only=False)
    if run_id is None:
        prev = c.search_runs(
            [ml["experiment_id"]], filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}'", max_results=1
        )
        run_id = prev[0].info.run_id if prev else None
    plain = apply_dotted(base, sampled)
    fresh = run_id is None
    if fresh:
        run_id = start_run(
            c,
            ml["experiment_id"],
            _run_name(str(plain["model"].get("preset") or plain["model"]["pattern"]), trial_id),
            {ROLE_TAG: "trial", SWEEP_TAG: ml["sweep"], TRIAL_TAG: trial_id, "hybridlab.status": "running"},
            parent_run_id=ml["parent_run_id"],
        )
    hooks = _TuneHooks(c, run_id, plain, log_config_params=fresh)
    status, error = "failed", None
    try:
        cfg = from_plain(plain)
        cfg.train.progress = "off"
        run_training(cfg, hooks, resume=resume_state, origin=origin)
        status = "ok"
    except SystemExit:
        status = "ok" if hooks.last_step >= plain["train"]["steps"] else "pruned"
        raise
    except Diverged as e:
        status, error = "diverged", str(e)
        raise
    except ConfigLoadError as e:
        status, error = "failed", f"infeasible config: {e}"
        raise
    except BaseException as e:
        status, error = "failed", "".join(traceback.format_exception_only(type(e), e)).strip()
        raise
    finally:
        finish_run(c, run_id, status, error)


def _find_parent(c: Any, exp_id: str) -> str | None:
    runs = c.search_runs([exp_id], filter_string=f"tags.`{ROLE_TAG}` = 'sweep'", max_results=1)
    return runs[0].info.run_id if runs else None


def _finished_in_mlflow(c: Any, exp_id: str, parent: str) -> set[str]:
    """Trial ids whose child run ended on its own (``ok``, ``failed``, ``diverged``).

    Ray's result for a trial restored on resume can come back without its last metrics (its
    ``done`` flag missing) although the trial finished; the child run's status tag, written by the
    trial itself when training returns or raises, is the ground truth. ``pruned`` is left out: a
    trial stopped by an interrupted driver is also tagged ``pruned``, so those rely on ``done``.
    """
    runs = c.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'", max_results=10000)
    return {
        r.data.tags[TRIAL_TAG]
        for r in runs
        if TRIAL_TAG in r.data.tags and r.data.tags.get("hybridlab.status") in ("ok", "failed", "diverged")
    }


def _reconcile(c: Any, exp_id: str, parent: str, trials: dict[str, str | None], steps: int) -> tuple[int, int]:
    """Bring the child runs of a complete sweep in line with Ray's trials (``trials``: id -> Ray's error, or
    None); returns (deleted, closed).

    A run of a trial Ray no longer knows (started just before a driver crash) is deleted. A run still tagged
    ``running`` is closed: a trial closes its own run when training returns, but a driver killed between the
    trial's last report and that moment leaves it open while Ray, on resume, knows the trial as finished and
    never runs it again; and a trial Ray could not start again on resume never reaches its own code (a checkpoint
    gone from storage no longer does this: ``sweeps.lost_checkpoints`` restarts such a trial). Such a run is
    ``failed`` with Ray's error when Ray has one, else ``ok`` when its final evaluation (at ``train.steps``) was
    logged, else ``pruned`` (stopped by the scheduler), the reason in ``hybridlab.error``.
    """
    deleted = closed = 0
    note = "closed by the sweep: its trial finished but the driver stopped before the trial closed its run"
    for run in c.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'", max_results=10000):
        tid = run.data.tags.get(TRIAL_TAG)
        if tid is not None and tid not in trials:
            c.delete_run(run.info.run_id)
            deleted += 1
        elif run.data.tags.get(STATUS_TAG) == "running":
            if trials.get(tid) is not None:
                finish_run(c, run.info.run_id, "failed", f"the trial failed in Ray: {trials[tid]}")
            else:
                final = any(m.step >= steps for m in c.get_metric_history(run.info.run_id, "val/loss"))
                finish_run(c, run.info.run_id, "ok" if final else "pruned", None if final else note)
            closed += 1
    return deleted, closed


def run_sweep(cfg: RunConfig, resume: bool = False, address: str | None = None, quiet: bool = False) -> SweepOutcome:
    """Run (or resume) the sweep ``cfg.sweep.name``; returns when every trial is done or on interruption.

    Raises:
        SweepExists: the sweep exists and ``resume`` is False (the message says how to continue or rename).
    """
    t0 = time.perf_counter()
    home = set_home(cfg.tracking.home)
    name = cfg.sweep.name
    storage = home / "ray"
    exp_dir = storage / name
    c = client(home)
    exp_id = ensure_experiment(c, cfg.tracking.experiment or name, home)
    parent = _find_parent(c, exp_id)

    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import optuna
    import ray
    from ray import tune

    can_restore = tune.Tuner.can_restore(str(exp_dir))
    if not resume and (can_restore or parent is not None):
        raise SweepExists(
            f"sweep {name!r} already exists under {home}; continue it with --resume, or start a new one "
            f"with sweep.name=<new name>"
        )
    if resume and not can_restore:
        raise SweepExists(f"--resume: no sweep {name!r} to resume under {storage}; run it without --resume first")
    if parent is None:
        parent = start_run(c, exp_id, name, {ROLE_TAG: "sweep", SWEEP_TAG: name, "hybridlab.status": "running"})
        from sweeps.tracking import log_config

        log_config(c, parent, to_plain(cfg))

    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri(home)
    kernel_env = share_kernel_cache(home)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    init_kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": not quiet}
    if address:
        init_kwargs["address"] = address
        init_kwargs["runtime_env"] = {"env_vars": kernel_env}  # local workers inherit os.environ
    else:
        init_kwargs.update(address="local", num_cpus=os.cpu_count(), object_store_memory=100 * 2**20)
        if cfg.sweep.gpus_per_trial > 0:
            init_kwargs["num_gpus"] = torch.cuda.device_count()
    ray.init(**init_kwargs)
    try:
        ml = {"home": str(home), "experiment_id": exp_id, "parent_run_id": parent, "sweep": name}
        plain = to_plain(cfg)
        resources = {"cpu": cfg.sweep.cpus_per_trial, "gpu": cfg.sweep.gpus_per_trial}
        wrapped = tune.with_resources(tune.with_parameters(trainable, base=plain, ml=ml), resources)
        t_warm = time.perf_counter()
        warmed = _prewarm(cfg, quiet)
        if warmed:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            c.log_batch(parent, metrics=[
                Metric("sweep/kernel_prewarm_s", time.perf_counter() - t_warm, now, 0),
                Metric("sweep/kernel_units_warmed", float(sum(r.get("units_run", 0) for r in warmed)), now, 0),
            ])
        if resume:
            tuner = tune.Tuner.restore(str(exp_dir), trainable=wrapped, resume_unfinished=True, resume_errored=False)
        else:
            tuner = _new_tuner(cfg, wrapped, home, storage, exp_id)
        results = tuner.fit()
        trials = {  # trial_dirname: folder = trial id
            Path(r.path).name: None if r.error is None else str(r.error).strip().splitlines()[-1][:500]
            for r in results
            if r.path
        }
        finished = _finished_in_mlflow(c, exp_id, parent)
        unfinished = [
            f"{Path(r.path or '?').name} ({r.config.get(PATTERN_KEY, cfg.model.pattern) if r.config else '?'})"
            for r in results
            if not (r.metrics.get("done") or r.error is not None or Path(r.path or "").name in finished)
        ]
        n_done = len(results) - len(unfinished)
        n_errors = len(results.errors)
        from sweeps.searcher import read_events

        events = read_events(exp_dir / EVENTS_FILE)
        kinds = Counter(e["kind"] for e in events)
        interrupted = (len(results) < cfg.sweep.num_samples and not kinds["exhausted"]) or bool(unfinished)
    finally:
        ray.shutdown()
    _log_search_events(c, parent, exp_dir / EVENTS_FILE, kinds)
    if not interrupted:
        _, closed = _reconcile(c, exp_id, parent, trials, cfg.train.steps)
        if closed:
            print(f"sweep {name}: closed {closed} trial run(s) the interrupted driver had left open", file=sys.stderr)
        finish_run(c, parent, "ok")
    return SweepOutcome(
        name, exp_id, parent, len(results), n_done, n_errors, interrupted, time.perf_counter() - t0, unfinished,
        n_infeasible=kinds["infeasible"], n_duplicates=kinds["duplicate"], exhausted=bool(kinds["exhausted"]),
    )


def _prewarm(cfg: RunConfig, quiet: bool) -> list[dict[str, Any]]:
    """Before any trial: on every GPU node, warm the kernels of the sweep's listed layouts (or its base config).

    ``_warm_workers`` Ray tasks per node share one GPU and run ``sweeps.warmup.prewarm``, each taking the kernel
    units the others do not hold; trials then find the shared kernel cache warm, and shapes met only by
    sampled values are warmed by the first trial under the same lock. Skipped for CPU sweeps
    (``sweep.gpus_per_trial: 0``), ``model.backend: reference`` without compile, and ``train.warm_kernels: false``.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from sweeps.warmup import prewarm

    if cfg.sweep.gpus_per_trial <= 0 or not cfg.train.warm_kernels:
        return []
    if cfg.model.backend == "reference" and not cfg.train.compile:
        return []
    plains = [plain for plain, _ in build_space(cfg).listed_layouts()] or [to_plain(cfg)]
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) >= 1]
    if not nodes:
        return []
    t0 = time.perf_counter()
    refs = []
    for n in nodes:
        workers = _warm_workers(len(plains), n["Resources"].get("CPU", 1))
        task = ray.remote(num_gpus=1 / workers, num_cpus=1)(prewarm)
        where = NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        refs += [task.options(scheduling_strategy=where).remote(plains, k, workers) for k in range(workers)]
    print(f"sweep {cfg.sweep.name}: warming the kernels of {len(plains)} layout(s) on {len(nodes)} GPU node(s), "
          f"{len(refs) // len(nodes)} worker(s) each", file=sys.stderr)
    records = [r for per_worker in ray.get(refs) for r in per_worker]
    runs = [r for r in records if r.get("units_run")]
    if not quiet:
        for r in runs:
            print(f"  {r['pattern']}: worker {r['worker']} ran {r['units_run']} of its {r['units']} kernel units "
                  f"in {r['seconds']:.1f} s", file=sys.stderr)
    print(f"sweep {cfg.sweep.name}: kernels warm after {time.perf_counter() - t0:.1f} s "
          f"({sum(r['units_run'] for r in runs)} kernel unit(s) run)", file=sys.stderr)
    return records


def _warm_workers(layouts: int, node_cpus: float) -> int:
    """Warm-up processes per GPU node: one per layout, at most one per two CPUs of the node and at most 8."""
    return max(1, min(layouts, int(node_cpus) // 2, 8))


def _log_search_events(c: Any, parent: str, path: Path, kinds: Counter[str]) -> None:
    """Samples that never became trials, on the sweep's parent run: counts and the event log."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    c.log_batch(parent, metrics=[
        Metric("sweep/infeasible_samples", float(kinds["infeasible"]), now, 0),
        Metric("sweep/duplicate_samples", float(kinds["duplicate"]), now, 0),
    ])
    if path.exists():
        c.log_artifact(parent, str(path))


def _objectives(cfg: RunConfig) -> tuple[str | list[str], str | list[str]]:
    s = cfg.sweep
    if s.objectives:
        return list(s.objectives), list(s.objectives.values())
    return s.metric, s.mode


def _new_tuner(cfg: RunConfig, wrapped: Any, home: Path, storage: Path, exp_id: str) -> Any:
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from sweeps.lost_checkpoints import RestartLostCheckpoints
    from sweeps.progress import SweepProgress
    from sweeps.searcher import Generator, LayoutSearch, Limiter

    s = cfg.sweep
    sampler = (
        optuna.samplers.TPESampler(seed=s.seed) if s.sampler == "tpe" else optuna.samplers.RandomSampler(seed=s.seed)
    )
    space = build_space(cfg)
    print(f"sweep {s.name}: search space", file=sys.stderr)
    for line in space.describe_dims():
        print(f"  {line}", file=sys.stderr)
    first: list[dict[str, Any]] | None = None
    if s.enqueue_patterns and s.patterns:
        first = [{PATTERN_KEY: p} for p in s.patterns]
    elif s.enqueue_patterns and s.presets:
        first = [{PRESET_KEY: label} for label in space.preset_labels]
    metric, mode = _objectives(cfg)
    searcher = LayoutSearch(
        space,
        events_path=str(storage / s.name / EVENTS_FILE),
        dedup=s.dedup,
        metric=metric,
        mode=mode,
        sampler=sampler,
        storage=optuna.storages.RDBStorage(f"sqlite:///{home / 'optuna.db'}"),
        study_name=s.name,
        points_to_evaluate=first,
    )
    n_evals = math.ceil(cfg.train.steps / cfg.train.eval_every)
    if s.scheduler == "asha" and n_evals > s.grace_period:
        scheduler = ASHAScheduler(
            time_attr="training_iteration", max_t=n_evals, grace_period=s.grace_period,
            reduction_factor=s.reduction_factor, metric=s.metric, mode=s.mode,
        )
    else:
        scheduler = FIFOScheduler()
    return tune.Tuner(
        wrapped,
        tune_config=tune.TuneConfig(
            search_alg=Generator(Limiter(searcher, s.max_concurrent, str(storage / s.name)), str(storage / s.name)),
            scheduler=scheduler,
            num_samples=s.num_samples,
            trial_dirname_creator=trial_dirname,
            reuse_actors=s.reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=s.name,
            storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[SweepProgress(s.num_samples), RestartLostCheckpoints(s.name, exp_id)],
            verbose=0,
        ),
    )

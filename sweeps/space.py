"""The sweep's search space from the config: ``search_space.SearchSpace`` over the run's base config.

``build_space`` compiles the ``sweep:`` keys (``patterns`` | ``presets`` | ``layouts``, ``space``,
``budget``, ``constraints``) into the define-by-run space the runner's ``LayoutSearch`` samples;
``validate_space`` checks it before Ray starts: every key, every listed pattern, and that the space holds
at least one feasible sample (so a sweep whose every sample breaks the budget or a constraint fails
at once with the reasons, not after Ray has started). ``validate_trial`` is the per-sample config check
the space calls (module-level so it pickles by reference for resume, stack-notes.md §1).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING, Any

from search_space.space import PATTERN_KEY, PRESET_KEY, SearchSpace, SpaceError

if TYPE_CHECKING:
    from sweeps.config import RunConfig

__all__ = ["build_space", "validate_space", "validate_trial", "vocab_for_counting", "PATTERN_KEY", "PRESET_KEY"]

PROBE_SAMPLES = 40


def validate_trial(plain: dict[str, Any]) -> None:
    """Everything a trial would check at start-up (``from_plain``), as a ``ValueError``."""
    from sweeps.config import from_plain

    from_plain(plain, check_sweep=False)


def vocab_for_counting(cfg: RunConfig) -> int:
    """The vocabulary the trials' models get: ``model.vocab_size`` or the tokenizer's."""
    if cfg.model.vocab_size:
        return int(cfg.model.vocab_size)
    from sweeps.data.tokenizer import get_tokenizer

    return int(get_tokenizer(cfg.data.tokenizer).vocab_size)


def build_space(cfg: RunConfig) -> SearchSpace:
    """The compiled search space of ``cfg.sweep`` (raises ``SpaceError`` for a bad spec)."""
    from sweeps.config import to_plain

    s = cfg.sweep
    base = to_plain(dataclasses.replace(cfg, sweep=type(s)()))
    return SearchSpace(
        base,
        patterns=list(s.patterns),
        presets=list(s.presets),
        layouts=dict(s.layouts) if s.layouts else None,
        space={k: dict(v) if isinstance(v, dict) else v for k, v in s.space.items()},
        budget=dict(s.budget) if s.budget else None,
        constraints=dict(s.constraints) if s.constraints else None,
        vocab_size=vocab_for_counting(cfg),
        seq_len=cfg.data.seq_len,
        validate=validate_trial,
    )


def validate_space(cfg: RunConfig) -> None:
    """Check the sweep's search space before Ray starts (raises ``ConfigLoadError``)."""
    import optuna

    from sweeps.config import ConfigLoadError, check_windows

    s = cfg.sweep
    for i, pattern in enumerate(s.patterns):
        try:
            check_windows(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pattern=pattern)))
        except ValueError as e:
            raise ConfigLoadError(f"sweep.patterns[{i}] {pattern!r}: {e}") from None
    _check_objectives(cfg)
    for key in s.space:
        _check_key(key)
    try:
        space = build_space(cfg)
    except SpaceError as e:
        raise ConfigLoadError(str(e)) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=s.seed))
    reasons: Counter[str] = Counter()
    for _ in range(PROBE_SAMPLES):
        trial = study.ask()
        sample = space.sample(trial)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        if sample.infeasible is None:
            return
        reasons[sample.infeasible.split(";")[0][:300]] += 1
    top = "\n".join(f"  {n}x {r}" for r, n in reasons.most_common(5))
    raise ConfigLoadError(
        f"sweep: none of {PROBE_SAMPLES} random samples of the search space is feasible; the most common "
        f"reasons:\n{top}\nWiden sweep.budget.tolerance, lower budget.multiple_of, relax sweep.constraints or "
        "change the space."
    )


def _check_key(key: str) -> None:
    """A non-mixer ``sweep.space`` key must name a config field (mixer keys are checked by the space)."""
    from omegaconf import OmegaConf

    from sweeps.config import ConfigLoadError, RunConfig

    if key.startswith("model.mixers."):
        return
    missing = object()
    if OmegaConf.select(OmegaConf.structured(RunConfig), key, default=missing) is missing:
        raise ConfigLoadError(
            f"sweep.space: {key!r} is not a config key; use dotted keys such as train.lr, model.d_model "
            "or model.mixers.A.window"
        )


def _check_objectives(cfg: RunConfig) -> None:
    from sweeps.config import ConfigLoadError

    s = cfg.sweep
    for metric, mode in s.objectives.items():
        if mode not in ("min", "max"):
            raise ConfigLoadError(f"sweep.objectives.{metric} must be min or max; got {mode!r}")
    if len(s.objectives) == 1:
        raise ConfigLoadError(
            "sweep.objectives: one objective is sweep.metric/sweep.mode; list two or more for a multi-objective sweep"
        )
    if s.objectives and s.scheduler == "asha" and s.metric not in s.objectives:
        raise ConfigLoadError(
            f"sweep.metric={s.metric!r} (what ASHA stops trials on) is not one of sweep.objectives "
            f"{list(s.objectives)}; set sweep.metric to one of them or use sweep.scheduler=fifo"
        )

"""The sweep's search space from the config: a list of patterns plus numeric ranges and choices.

``sweep.patterns`` becomes the categorical ``model.pattern``; every ``sweep.space`` entry maps a dotted
config key to ``{choices: [...]}`` or ``{low, high, log, type: int|float, step}``. ``SpaceFn`` is the
Optuna define-by-run function; it is a module-level class so Ray Tune can pickle it by reference and
restore the searcher on resume (stack-notes.md §1 "Fault tolerance and resume"). The layout-aware
space of ``search_space/`` replaces this for richer searches.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

if TYPE_CHECKING:
    import optuna

    from sweeps.config import RunConfig

__all__ = ["SpaceFn", "validate_space", "PATTERN_KEY"]

PATTERN_KEY = "model.pattern"


def _check_key(cfg: RunConfig, key: str) -> None:
    from blocks import registry
    from blocks.mixers.base import check_field
    from sweeps.config import ConfigLoadError

    parts = key.split(".")
    if parts[:2] == ["model", "mixers"] and len(parts) == 4:
        try:
            spec = registry.get(parts[2])
        except ValueError as e:
            raise ConfigLoadError(f"sweep.space.{key}: {e}") from None
        if parts[3] not in {f.name for f in dataclasses.fields(spec.config)}:
            check_field(spec.config, parts[3], None, f"sweep.space.{key}")
        return
    missing = object()
    if OmegaConf.select(OmegaConf.structured(type(cfg)), key, default=missing) is missing:
        raise ConfigLoadError(
            f"sweep.space: {key!r} is not a config key; use dotted keys such as train.lr, model.d_model "
            "or model.mixers.A.window"
        )


def validate_space(cfg: RunConfig) -> None:
    """Check every sweep pattern and space entry before Ray starts (raises ``ConfigLoadError``)."""
    from sweeps.config import ConfigLoadError, check_windows

    for i, pattern in enumerate(cfg.sweep.patterns):
        try:
            check_windows(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pattern=pattern)))
        except ValueError as e:
            raise ConfigLoadError(f"sweep.patterns[{i}] {pattern!r}: {e}") from None
    for key, spec in cfg.sweep.space.items():
        if key == PATTERN_KEY:
            raise ConfigLoadError("sweep.space: list layouts under sweep.patterns, not sweep.space.model.pattern")
        _check_key(cfg, key)
        if not isinstance(spec, dict):
            raise ConfigLoadError(f"sweep.space.{key} must be a mapping with choices or low/high; got {spec!r}")
        if "choices" in spec:
            if not isinstance(spec["choices"], list) or not spec["choices"]:
                raise ConfigLoadError(f"sweep.space.{key}.choices must be a non-empty list; got {spec['choices']!r}")
            extra = set(spec) - {"choices"}
        else:
            if "low" not in spec or "high" not in spec:
                raise ConfigLoadError(
                    f"sweep.space.{key} needs choices: [...] or low/high (optional log, type, step); got {spec!r}"
                )
            if not spec["low"] < spec["high"]:
                raise ConfigLoadError(f"sweep.space.{key}: low must be < high; got {spec['low']!r}, {spec['high']!r}")
            if spec.get("type", "float") not in ("int", "float"):
                raise ConfigLoadError(f"sweep.space.{key}.type must be int or float; got {spec.get('type')!r}")
            if spec.get("log") and spec["low"] <= 0:
                raise ConfigLoadError(f"sweep.space.{key}: a log range needs low > 0; got {spec['low']!r}")
            extra = set(spec) - {"low", "high", "log", "type", "step"}
        if extra:
            raise ConfigLoadError(f"sweep.space.{key}: unknown fields {sorted(extra)}")


class SpaceFn:
    """Optuna define-by-run function over ``patterns`` and ``space`` (see module docstring)."""

    def __init__(self, patterns: list[str], space: dict[str, dict[str, Any]]) -> None:
        self.patterns = list(patterns)
        self.space = {k: dict(v) for k, v in space.items()}

    def __call__(self, trial: optuna.Trial) -> None:
        if self.patterns:
            trial.suggest_categorical(PATTERN_KEY, self.patterns)
        for key, spec in self.space.items():
            if "choices" in spec:
                trial.suggest_categorical(key, spec["choices"])
            elif spec.get("type", "float") == "int":
                trial.suggest_int(key, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)),
                                  log=bool(spec.get("log", False)))
            else:
                trial.suggest_float(key, float(spec["low"]), float(spec["high"]), step=spec.get("step"),
                                    log=bool(spec.get("log", False)))
        return None

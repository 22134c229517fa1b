"""A sweep's search space compiled to an Optuna define-by-run function: layouts, conditional per-mixer
parameters, budget matching, constraints and the canonical identity of a sample.

The YAML keys (under ``sweep:``) are ``patterns`` (an explicit list) or ``presets`` (named presets,
each a name or ``{preset: NAME, <model keys>}``) or ``layouts`` (generated, see ``search_space.layouts``);
``space`` (dotted config key -> ``{choices: [...]}`` or ``{low, high, log, type, step}``), where a
``model.mixers.<X>.<field>`` entry is suggested only when mixer X occurs in the sampled layout;
``budget`` (``search_space.budget``) and ``constraints`` (``max_params``, ``max_flops_per_token``,
``max_attention_layers``, ``min_attention_layers``).

``SearchSpace.sample(trial)`` never raises for a bad sample: it returns a ``Sample`` that is either
feasible (dotted config overrides plus its identity ``key``) or infeasible with the reason, so that
the searcher can tell Optuna "infeasible" instead of a bad score (Optuna's constrained optimisation,
``Trial.set_constraint``). Two samples with the same ``key`` describe the same model and training run
(same resolved layers, widths and non-model settings), whatever Optuna parameters produced them.

Optuna is duck-typed here (``trial.suggest_*``); this package imports only ``blocks`` (design.md).
Parameter names: ``model.pattern`` / ``model.preset`` for the explicit lists, ``layout.*`` for
generated layouts, the dotted key for every ``space`` entry.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from blocks import registry
from blocks.config import ModelConfig
from blocks.pattern import parse
from blocks.summary import describe
from search_space.budget import Budget, BudgetInfeasible, match_budget
from search_space.layouts import LayoutInfeasible, LayoutSpace, attention_layers
from search_space.presets import apply_preset, get_preset

__all__ = [
    "PATTERN_KEY",
    "PRESET_KEY",
    "CONSTRAINT_KEYS",
    "Distribution",
    "SearchSpace",
    "Sample",
    "SpaceError",
    "Constraints",
    "set_dotted",
]

PATTERN_KEY = "model.pattern"
PRESET_KEY = "model.preset"
CONSTRAINT_KEYS = ("max_params", "max_flops_per_token", "max_attention_layers", "min_attention_layers")
_PRESET_SKIP = ("backend", "vocab_size", "preset")  # the sweep's own settings win over a preset's


class SpaceError(ValueError):
    """A search-space spec that cannot work; the message names the ``sweep.*`` key and the fix."""


def set_dotted(plain: dict[str, Any], key: str, value: Any) -> None:
    """Set ``plain["a"]["b"]["c"] = value`` for ``key="a.b.c"`` in place (missing levels are created)."""
    parts = key.split(".")
    node = plain
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


@dataclass(frozen=True)
class Distribution:
    """One ``sweep.space`` entry: categorical ``choices`` or a numeric ``low``..``high`` range."""

    key: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    type: str = "float"
    step: float | None = None

    @classmethod
    def from_dict(cls, key: str, spec: Any) -> Distribution:
        where = f"sweep.space.{key}"
        if not isinstance(spec, Mapping):
            raise SpaceError(f"{where} must be a mapping with choices or low/high; got {spec!r}")
        spec = dict(spec)
        if "choices" in spec:
            extra = set(spec) - {"choices"}
            choices = spec["choices"]
            if not isinstance(choices, list | tuple) or not choices:
                raise SpaceError(f"{where}.choices must be a non-empty list; got {choices!r}")
            if extra:
                raise SpaceError(f"{where}: unknown fields {sorted(extra)} beside choices")
            return cls(key, choices=tuple(choices))
        if "low" not in spec or "high" not in spec:
            raise SpaceError(f"{where} needs choices: [...] or low/high (optional log, type, step); got {spec!r}")
        extra = set(spec) - {"low", "high", "log", "type", "step"}
        if extra:
            raise SpaceError(f"{where}: unknown fields {sorted(extra)}; allowed: low, high, log, type, step")
        kind = spec.get("type", "float")
        if kind not in ("int", "float"):
            raise SpaceError(f"{where}.type must be int or float; got {kind!r}")
        low, high = spec["low"], spec["high"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)) or not low < high:
            raise SpaceError(f"{where}: low must be < high (both numbers); got {low!r}, {high!r}")
        if spec.get("log") and low <= 0:
            raise SpaceError(f"{where}: a log range needs low > 0; got {low!r}")
        if spec.get("log") and spec.get("step") is not None:
            raise SpaceError(f"{where}: give either log: true or a step, not both")
        return cls(key, low=low, high=high, log=bool(spec.get("log", False)), type=kind, step=spec.get("step"))

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)


@dataclass(frozen=True)
class Constraints:
    """Checked on every sample before it may run; a violation makes the sample infeasible."""

    max_params: float | None = None
    max_flops_per_token: float | None = None
    max_attention_layers: int | None = None
    min_attention_layers: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Constraints:
        d = dict(d or {})
        for key in d:
            if key not in CONSTRAINT_KEYS:
                close = difflib.get_close_matches(key, CONSTRAINT_KEYS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise SpaceError(f"sweep.constraints.{key}: unknown constraint{hint} Known: {', '.join(CONSTRAINT_KEYS)}")
            v = d[key]
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v < 0):
                raise SpaceError(f"sweep.constraints.{key} must be a number >= 0 or null; got {v!r}")
        lo, hi = d.get("min_attention_layers"), d.get("max_attention_layers")
        if lo is not None and hi is not None and lo > hi:
            raise SpaceError(f"sweep.constraints: min_attention_layers={lo} > max_attention_layers={hi}")
        return cls(**d)

    def violations(self, params: float, flops: float, n_attention: int) -> list[str]:
        out = []
        if self.max_params is not None and params > self.max_params:
            out.append(f"{params:,.0f} parameters > max_params {self.max_params:,.0f}")
        if self.max_flops_per_token is not None and flops > self.max_flops_per_token:
            out.append(f"{flops:,.0f} FLOPs/token > max_flops_per_token {self.max_flops_per_token:,.0f}")
        if self.max_attention_layers is not None and n_attention > self.max_attention_layers:
            out.append(f"{n_attention} attention layers > max_attention_layers {self.max_attention_layers}")
        if self.min_attention_layers is not None and n_attention < self.min_attention_layers:
            out.append(f"{n_attention} attention layers < min_attention_layers {self.min_attention_layers}")
        return out


@dataclass
class Sample:
    """One draw from the space: config ``overrides`` (dotted keys), or ``infeasible`` with the reason.

    ``key`` identifies the model and run a feasible sample describes (canonical resolved layers plus
    every non-layout override); ``facts`` holds what was measured on the way (canonical pattern,
    params, FLOPs/token, attention layers, the budget match).
    """

    overrides: dict[str, Any]
    params: dict[str, Any]
    key: str | None = None
    infeasible: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def _preset_entry(entry: Any, i: int) -> tuple[str, dict[str, Any]]:
    where = f"sweep.presets[{i}]"
    if isinstance(entry, str):
        name, extra = entry, {}
    elif isinstance(entry, Mapping) and isinstance(entry.get("preset"), str):
        extra = {k: v for k, v in entry.items() if k != "preset"}
        name = entry["preset"]
    else:
        raise SpaceError(f"{where} must be a preset name or {{preset: NAME, <model keys>}}; got {entry!r}")
    try:
        get_preset(name)
    except ValueError as e:
        raise SpaceError(f"{where}: {e}") from None
    unknown = set(extra) - {f.name for f in dataclasses.fields(ModelConfig)}
    if unknown:
        raise SpaceError(f"{where}: {sorted(unknown)} are not model keys (see design.md 'Model configuration')")
    return name, extra


def _preset_label(name: str, extra: dict[str, Any]) -> str:
    return name if not extra else name + " " + json.dumps(extra, sort_keys=True, default=str)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


class SearchSpace:
    """The compiled ``sweep:`` search space over a base config (a plain dict with a ``model`` section).

    ``vocab_size`` and ``seq_len`` are what parameter and FLOP counts use (the tokenizer's vocabulary
    and the training length). ``validate`` (optional, module-level so it pickles) is called with the
    trial's whole plain config and raises ``ValueError`` for anything else the platform rejects
    (``sweeps`` passes its config validation). Call it as a define-by-run function
    (``space(trial) -> overrides``; an infeasible sample raises ``ValueError``) or use ``sample``.
    """

    def __init__(
        self,
        base: Mapping[str, Any],
        *,
        patterns: list[str] | None = None,
        presets: list[Any] | None = None,
        layouts: Mapping[str, Any] | None = None,
        space: Mapping[str, Any] | None = None,
        budget: Mapping[str, Any] | None = None,
        constraints: Mapping[str, Any] | None = None,
        vocab_size: int = 259,
        seq_len: int | None = None,
        validate: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.base = copy.deepcopy(dict(base))
        given = [k for k, v in (("patterns", patterns), ("presets", presets), ("layouts", layouts)) if v]
        if len(given) > 1:
            raise SpaceError(f"sweep: give one of patterns, presets or layouts, not {' and '.join(given)}")
        self.patterns = list(patterns or [])
        for i, p in enumerate(self.patterns):
            try:
                parse(p)
            except ValueError as e:
                raise SpaceError(f"sweep.patterns[{i}]: {e}") from None
        self.presets = [_preset_entry(e, i) for i, e in enumerate(presets or [])]
        try:
            self.layouts = LayoutSpace.from_dict(dict(layouts)) if layouts else None
        except ValueError as e:
            raise SpaceError(str(e)) from None
        self.dists = [self._check_dist(Distribution.from_dict(k, v)) for k, v in (space or {}).items()]
        try:
            self.budget = Budget.from_dict(dict(budget)) if budget else None
        except ValueError as e:
            raise SpaceError(str(e)) from None
        self.constraints = Constraints.from_dict(constraints)
        if self.budget is not None:
            solved = {"d_model": ["model.d_model"], "mlp": ["model.mixers.F.hidden", "model.mixers.mlp.hidden"]}
            taken = [k for part in self.budget.solve.split("+") for k in solved[part]]
            for d in self.dists:
                if d.key in taken:
                    raise SpaceError(
                        f"sweep.space.{d.key}: budget.solve={self.budget.solve} sets this value to meet the "
                        f"budget; remove it from sweep.space or solve for something else"
                    )
        self.vocab_size = int(vocab_size)
        self.seq_len = int(seq_len or self.base.get("data", {}).get("seq_len") or 256)
        self.validate = validate

    @staticmethod
    def _check_dist(d: Distribution) -> Distribution:
        parts = d.key.split(".")
        if d.key in (PATTERN_KEY, PRESET_KEY):
            raise SpaceError(f"sweep.space.{d.key}: list layouts under sweep.patterns (or presets/layouts)")
        if parts[:2] == ["model", "mixers"]:
            if len(parts) != 4:
                raise SpaceError(f"sweep.space.{d.key}: mixer keys look like model.mixers.<symbol>.<field>")
            try:
                spec = registry.get(parts[2])
            except ValueError as e:
                raise SpaceError(f"sweep.space.{d.key}: {e}") from None
            fields = [f.name for f in dataclasses.fields(spec.config)]
            if parts[3] not in fields:
                close = difflib.get_close_matches(parts[3], fields, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise SpaceError(
                    f"sweep.space.{d.key}: {spec.symbol} ({spec.name}) has no field {parts[3]!r}{hint} "
                    f"Fields: {', '.join(fields)}"
                )
            return dataclasses.replace(d, key=f"model.mixers.{spec.symbol}.{parts[3]}")
        return d

    def _mixer_symbol(self, d: Distribution) -> str | None:
        parts = d.key.split(".")
        return registry.get(parts[2]).symbol if parts[:2] == ["model", "mixers"] else None

    def _layout(self, trial: Any, overrides: dict[str, Any]) -> None:
        if self.patterns:
            overrides[PATTERN_KEY] = trial.suggest_categorical(PATTERN_KEY, self.patterns)
        elif self.presets:
            labels = self.preset_labels
            label = trial.suggest_categorical(PRESET_KEY, labels)
            self._preset_overrides(labels.index(label), overrides)
        elif self.layouts is not None:
            overrides[PATTERN_KEY] = self.layouts.suggest(trial)

    def _preset_overrides(self, index: int, overrides: dict[str, Any]) -> None:
        name, extra = self.presets[index]
        model = apply_preset({"preset": name, **copy.deepcopy(extra)})
        for k, v in model.items():
            if k not in _PRESET_SKIP:
                _flatten(f"model.{k}", v, overrides)
        overrides[PRESET_KEY] = name  # a label for the record: the model above is already resolved

    def listed_layouts(self) -> list[tuple[dict[str, Any], Sample]]:
        """Each listed pattern or preset with every other key at its base value, the budget applied.

        Returns ``(plain config, sample)`` pairs, feasible ones only: the configs known before anything
        is sampled (``sweeps.warmup`` warms their kernels before trials start). Generated layouts list none.
        """
        points: list[dict[str, Any]] = []
        if self.patterns:
            points = [{PATTERN_KEY: p} for p in self.patterns]
        elif self.presets:
            for i in range(len(self.presets)):
                points.append({})
                self._preset_overrides(i, points[-1])
        out = []
        for overrides in points:
            plain = copy.deepcopy(self.base)
            for k, v in overrides.items():
                set_dotted(plain, k, v)
            sample = self._finish(plain, overrides, {})
            if sample.infeasible is None:
                out.append((plain, sample))
        return out

    def sample(self, trial: Any) -> Sample:
        """Draw one sample (suggesting only what its branch needs); see ``Sample``."""
        overrides: dict[str, Any] = {}
        try:
            self._layout(trial, overrides)
        except LayoutInfeasible as e:
            return Sample(overrides, dict(getattr(trial, "params", {})), infeasible=f"layout: {e}")
        plain = copy.deepcopy(self.base)
        for k, v in overrides.items():
            set_dotted(plain, k, v)
        try:
            present = set(parse(str(plain["model"]["pattern"])).counts())
        except ValueError as e:
            return Sample(overrides, dict(getattr(trial, "params", {})), infeasible=f"pattern: {e}")
        for d in self.dists:
            symbol = self._mixer_symbol(d)
            if symbol is not None and symbol not in present:
                continue
            overrides[d.key] = d.suggest(trial)
            set_dotted(plain, d.key, overrides[d.key])
        params = dict(getattr(trial, "params", {}))
        return self._finish(plain, overrides, params)

    def _finish(self, plain: dict[str, Any], overrides: dict[str, Any], params: dict[str, Any]) -> Sample:
        model = {k: v for k, v in plain["model"].items() if k != "preset"}
        facts: dict[str, Any] = {}
        if self.budget is not None:
            try:
                match = match_budget(model, self.budget, self.vocab_size, self.seq_len)
            except BudgetInfeasible as e:
                return Sample(overrides, params, infeasible=f"budget: {e}")
            except ValueError as e:
                return Sample(overrides, params, infeasible=f"model: {e}")
            facts["budget"] = {k: v for k, v in dataclasses.asdict(match).items() if k not in ("model", "mlp_key")}
            overrides["model.d_model"] = match.d_model
            if match.mlp_hidden is not None:
                overrides[f"model.mixers.{match.mlp_key}.hidden"] = match.mlp_hidden
            model = match.model
            plain["model"] = {**plain["model"], **model}
        try:
            info = describe(ModelConfig(**model), vocab_size=self.vocab_size, seq_len=self.seq_len)
        except (ValueError, TypeError) as e:
            return Sample(overrides, params, infeasible=f"model: {e}")
        n_attn = attention_layers(info["canonical"])
        facts.update(canonical=info["canonical"], compact=info["compact"], params=info["params"],
                     flops_per_token=info["flops_per_token"], attention_layers=n_attn)
        bad = self.constraints.violations(info["params"], info["flops_per_token"], n_attn)
        if bad:
            return Sample(overrides, params, infeasible="constraint: " + "; ".join(bad), facts=facts)
        if self.validate is not None:
            try:
                self.validate(plain)
            except ValueError as e:
                return Sample(overrides, params, infeasible=f"config: {e}", facts=facts)
        overrides.setdefault(PATTERN_KEY, info["compact"])
        return Sample(overrides, params, key=self._key(info, model, overrides), facts=facts)

    @staticmethod
    def _key(info: dict[str, Any], model: dict[str, Any], overrides: dict[str, Any]) -> str:
        """Resolved layers (symbol and full config of every sublayer) + model scalars + other overrides."""
        ident = {
            "layers": [[layer["symbol"], layer["params"]] for layer in info["layers"]],
            "model": {k: v for k, v in model.items() if k not in ("pattern", "mixers", "preset")},
            "other": {k: v for k, v in overrides.items() if not k.startswith("model.")},
        }
        text = json.dumps(ident, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __call__(self, trial: Any) -> dict[str, Any]:
        """Define-by-run form: the overrides of a feasible sample; ``ValueError`` for an infeasible one."""
        s = self.sample(trial)
        if s.infeasible is not None:
            raise ValueError(f"infeasible sample: {s.infeasible}")
        return s.overrides

    @property
    def preset_labels(self) -> list[str]:
        """The ``model.preset`` choices, in the order the config lists them."""
        return [_preset_label(n, x) for n, x in self.presets]

    def describe_dims(self) -> list[str]:
        """One line per dimension of the space, for the sweep's start-up summary."""
        lines = []
        if self.patterns:
            lines.append(f"{PATTERN_KEY}: {len(self.patterns)} patterns")
        if self.presets:
            lines.append(f"{PRESET_KEY}: {', '.join(_preset_label(n, x) for n, x in self.presets)}")
        if self.layouts is not None:
            lines.append(f"layouts: {len(self.layouts.enumerate())} distinct generated layouts")
        for d in self.dists:
            lines.append(f"{d.key}: {list(d.choices) if d.choices is not None else f'[{d.low}, {d.high}]'}")
        if self.budget is not None:
            target = self.budget.params if self.budget.params is not None else self.budget.flops_per_token
            what = "params" if self.budget.params is not None else "FLOPs/token"
            lines.append(f"budget: {what} {target:,.0f} ± {self.budget.tolerance:.1%} (solve {self.budget.solve})")
        limits = {k: v for k, v in dataclasses.asdict(self.constraints).items() if v is not None}
        if limits:
            lines.append("constraints: " + ", ".join(f"{k} {v:,}" for k, v in limits.items()))
        return lines

"""Budget matching: resize a sampled model so every trial has the same parameter count (or FLOPs/token).

A sweep's ``budget:`` section, e.g. ``{params: 2.0e6, tolerance: 0.02, solve: d_model}``, makes layout
comparisons fair (design.md: "budget matching (iso-params)"): each sampled ``model:`` section gets the
width that brings it to the target, within a relative tolerance, and the achieved count is recorded.
The counts are the real modules' (``blocks.summary.build_meta`` on the meta device), never a formula.

What is solved (``solve``), always in multiples of ``multiple_of``:

- ``d_model``: the residual width, in ``[multiple_of, 16384]``. A null ``mixers.F.hidden`` follows it
  (8/3·d rounded up to 64, so the count jumps where that rounding does); a set one stays fixed.
- ``mlp``: ``model.mixers.F.hidden`` (the SwiGLU inner width), in ``[multiple_of, 16 * d_model]``, at
  the given ``d_model``; ``F`` occurrences with an explicit ``hidden=`` in the pattern keep theirs.
- ``d_model+mlp``: the largest ``d_model`` whose model at the usual MLP width (8/3·d) is within the
  target, then the MLP width fills the rest (when even the narrowest such model is too big, the MLP
  starts from ``multiple_of``); this reaches a tight tolerance for any layout with ``F`` and keeps the
  model's shape normal. A layout without a free ``F`` solves ``d_model`` alone.

Both counts grow monotonically with either width, so each solve is a safeguarded interpolation search
(bisection when interpolation stalls) over the candidate multiples: a handful of meta-device builds,
never a linear scan, so it fits inside an Optuna define-by-run function. Candidates that make a mixer
config invalid (attention heads not dividing ``d_model``, ...) are skipped.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from blocks import registry
from blocks.config import ModelConfig, resolve_mixer_defaults
from blocks.mixers.base import ConfigError
from blocks.mixers.mlp import default_hidden
from blocks.pattern import parse
from blocks.summary import build_meta

__all__ = [
    "Budget",
    "BudgetError",
    "BudgetInfeasible",
    "BudgetMatch",
    "MAX_D_MODEL",
    "MAX_HIDDEN_RATIO",
    "METRICS",
    "SOLVES",
    "match_budget",
    "measure",
]

SOLVES = ("d_model", "mlp", "d_model+mlp")
METRICS = ("params", "flops_per_token")
MAX_D_MODEL = 16384
MAX_HIDDEN_RATIO = 16  # the MLP width is searched in [multiple_of, MAX_HIDDEN_RATIO * d_model]
_KEYS = ("params", "flops_per_token", "tolerance", "solve", "multiple_of")
_MODEL_KEYS = tuple(f.name for f in dataclasses.fields(ModelConfig))


class BudgetError(ValueError):
    """A malformed ``budget:`` section; the message names the key, the value and the fix."""


class BudgetInfeasible(ValueError):
    """This layout cannot reach the target within the tolerance with the chosen ``solve``.

    The message gives the nearest achievable value on each side and how to get closer (a smaller
    ``multiple_of``, another ``solve``, a wider ``tolerance``).
    """


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_target(value: Any, key: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise BudgetError(
            f"{where}: field {key!r} must be a positive number; got the string {value!r}. Write it with a "
            f"decimal point, e.g. {key}: 2.0e6 (YAML reads 2e6 without one as a string)"
        )
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise BudgetError(
            f"{where}: field {key!r} must be a positive finite number, e.g. 2.0e6; got {value!r}"
        )
    return float(value)


def _check_fields(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The budget fields validated and normalised (targets as float); raises ``BudgetError``."""
    params = _check_target(values.get("params"), "params", where)
    flops = _check_target(values.get("flops_per_token"), "flops_per_token", where)
    if (params is None) == (flops is None):
        got = "both" if params is not None else "neither"
        raise BudgetError(
            f"{where}: set exactly one of 'params' and 'flops_per_token' (the target the models are matched "
            f"to); got {got}. E.g. {{params: 2.0e6}} or {{flops_per_token: 4.0e6}}"
        )
    tolerance = values.get("tolerance", 0.02)
    if not _is_number(tolerance) or not math.isfinite(tolerance) or not 0 < tolerance < 1:
        raise BudgetError(
            f"{where}: field 'tolerance' must be a relative error in (0, 1), e.g. 0.02 for 2%; got {tolerance!r}"
        )
    solve = values.get("solve", "d_model")
    if solve not in SOLVES:
        match = difflib.get_close_matches(str(solve).lower().replace(" ", ""), SOLVES, n=1, cutoff=0.5)
        hint = f" Did you mean {match[0]!r}?" if match else ""
        raise BudgetError(f"{where}: field 'solve' must be one of {', '.join(SOLVES)}; got {solve!r}.{hint}")
    multiple_of = values.get("multiple_of", 64)
    if not isinstance(multiple_of, int) or isinstance(multiple_of, bool) or multiple_of < 1:
        raise BudgetError(
            f"{where}: field 'multiple_of' must be an int >= 1 (the granularity of the solved width, e.g. 64, "
            f"or 8 for toy models); got {multiple_of!r}"
        )
    if multiple_of > MAX_D_MODEL:
        raise BudgetError(f"{where}: field 'multiple_of' must be at most {MAX_D_MODEL}; got {multiple_of!r}")
    return {
        "params": params,
        "flops_per_token": flops,
        "tolerance": float(tolerance),
        "solve": solve,
        "multiple_of": multiple_of,
    }


@dataclass(frozen=True)
class Budget:
    """A sweep's ``budget:`` section: the common size every trial is resized to.

    Args:
        params: target total parameter count (``HybridLM.num_params``, embeddings included, a tied
            LM head counted once).
        flops_per_token: target forward FLOPs per token at the sweep's ``seq_len``. Exactly one of
            ``params`` and ``flops_per_token`` is set.
        tolerance: largest accepted relative error ``|achieved / target - 1|``.
        solve: ``d_model``, ``mlp`` (``model.mixers.F.hidden``) or ``d_model+mlp``.
        multiple_of: granularity of the solved width(s).

    Raises:
        BudgetError: a field is missing, of the wrong type or out of range.
    """

    params: float | None = None
    flops_per_token: float | None = None
    tolerance: float = 0.02
    solve: str = "d_model"
    multiple_of: int = 64

    def __post_init__(self) -> None:
        checked = _check_fields(dataclasses.asdict(self), "Budget")
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "sweep.budget") -> Budget:
        """The budget a ``budget:`` mapping describes, every key and value checked.

        Args:
            d: e.g. ``{"params": 2.0e6, "tolerance": 0.02, "solve": "d_model"}``.
            where: the config location used in error messages.

        Raises:
            BudgetError: ``d`` is not a mapping, has an unknown key, or a bad value.
        """
        if not isinstance(d, Mapping):
            raise BudgetError(
                f"{where} must be a mapping such as {{params: 2.0e6, tolerance: 0.02, solve: d_model}}; got {d!r}"
            )
        for key in d:
            if key not in _KEYS:
                match = difflib.get_close_matches(str(key), _KEYS, n=1, cutoff=0.5)
                hint = f" Did you mean {match[0]!r}?" if match else ""
                raise BudgetError(f"{where}: unknown key {key!r}; valid keys: {', '.join(_KEYS)}.{hint}")
        return cls(**_check_fields(d, where))

    @property
    def metric(self) -> str:
        """``params`` or ``flops_per_token``: the quantity being matched."""
        return "params" if self.params is not None else "flops_per_token"

    @property
    def target(self) -> float:
        """The target value of ``metric``."""
        value = self.params if self.params is not None else self.flops_per_token
        assert value is not None  # __post_init__ guarantees exactly one target
        return value


@dataclass(frozen=True)
class BudgetMatch:
    """The result of ``match_budget``.

    Attributes:
        model: a copy of the input ``model:`` section with the solved value(s) written in
            (``d_model`` and/or ``mixers.F.hidden``).
        target: the budget's target value.
        achieved: the model's exact ``metric`` (equal to ``blocks.summary.describe(...)[metric]``).
        rel_error: signed, ``achieved / target - 1``; ``|rel_error| <= tolerance``.
        metric: ``params`` or ``flops_per_token``.
        d_model: the model's residual width.
        mlp_hidden: ``model.mixers.F.hidden`` of the returned model (the solved width for ``mlp`` and
            ``d_model+mlp``); None means the 8/3·d default.
        mlp_key: the key of ``model.mixers`` that configures the MLP (``F`` or ``mlp``).
    """

    model: dict[str, Any]
    target: float
    achieved: float
    rel_error: float
    metric: str
    d_model: int
    mlp_hidden: int | None
    mlp_key: str = "F"


def _model_config(model: Mapping[str, Any]) -> ModelConfig:
    unknown = [k for k in model if k not in _MODEL_KEYS]
    if unknown:
        raise ConfigError(f"model: unknown key {unknown[0]!r}; valid keys: {', '.join(_MODEL_KEYS)}")
    if model.get("preset") is not None:
        raise ConfigError(
            f"model.preset={model['preset']!r}: budget matching needs the resolved model section; apply the "
            f"preset first (search_space.presets.apply_preset)"
        )
    fields = {k: v for k, v in model.items() if k != "preset"}
    if fields.get("mixers") is None:
        fields["mixers"] = {}
    return ModelConfig(**fields)


def measure(model: Mapping[str, Any], vocab_size: int, seq_len: int) -> dict[str, float]:
    """Exact ``{"params": ..., "flops_per_token": ...}`` of a ``model:`` section, built on the meta device.

    The same numbers as ``blocks.summary.describe`` (``params`` counts a tied LM head once;
    ``flops_per_token`` is the forward pass at ``seq_len``, LM head included).

    Raises:
        PatternError, ConfigError: the section does not describe a valid model.
    """
    lm = build_meta(_model_config(model), vocab_size)
    return {"params": float(lm.num_params()), "flops_per_token": float(lm.flops_per_token(seq_len))}


def _mlp_key(mixers: Mapping[str, Any], symbol: str) -> str:
    """The key of ``mixers`` that configures ``symbol`` (``F`` or ``mlp``), or ``symbol`` if none does."""
    for key in mixers:
        try:
            if registry.get(key).symbol == symbol:
                return key
        except (registry.RegistryError, TypeError):
            continue
    return symbol


def _with(
    base: ModelConfig, mlp_key: str, d_model: int | None = None, hidden: int | None = None
) -> ModelConfig:
    if hidden is None:
        return dataclasses.replace(base, d_model=d_model if d_model is not None else base.d_model)
    entry = dict(base.mixers.get(mlp_key) or {})
    entry["hidden"] = hidden
    return dataclasses.replace(
        base,
        d_model=d_model if d_model is not None else base.d_model,
        mixers={**base.mixers, mlp_key: entry},
    )


class _GridSearch:
    """The candidates ``step, 2*step, ..., n*step`` of a width whose metric grows monotonically with it.

    ``run`` finds the largest valid candidate at or below the target and the smallest above it. It
    extrapolates until the target is bracketed (with a stride that at least doubles each miss), then
    interpolates inside the bracket, bisecting whenever two steps in a row fail to halve it. The model
    of the metric is ``power``: 2 fits a power law in log-log space, first assuming ``metric ~ width**2``
    (``d_model``: matmuls grow with its square), 1 a straight line, which is exact for the MLP width
    (the metric is affine in it), so that solve lands in about four evaluations. Invalid candidates
    (``fn`` returns None) are skipped by probing outward.
    """

    def __init__(
        self, step: int, n: int, fn: Callable[[int], float | None], target: float, power: int
    ) -> None:
        self.step, self.n, self.fn, self.target, self.power = step, n, fn, target, power
        self.cache: dict[int, float | None] = {}

    def width(self, i: int) -> int:
        return (i + 1) * self.step

    def value(self, i: int) -> float | None:
        if i not in self.cache:
            self.cache[i] = self.fn(self.width(i))
        return self.cache[i]

    def known(self, i: int) -> float:
        """The value of a candidate already found valid."""
        value = self.value(i)
        if value is None:
            raise RuntimeError(
                f"budget search: candidate {self.width(i)} is invalid; this is a bug in hybridlab"
            )
        return value

    def valid_near(self, i: int, lo: int, hi: int) -> int | None:
        """The valid index nearest ``i`` within ``[lo, hi]`` (ties go up), or None."""
        if lo > hi:
            return None
        i = min(max(i, lo), hi)
        for k in range(max(i - lo, hi - i) + 1):
            for j in (i + k, i - k) if k else (i,):
                if lo <= j <= hi and self.value(j) is not None:
                    return j
        return None

    def guess(self, i: int, j: int) -> float:
        """Fractional index where the model through candidates ``i`` and ``j`` meets the target (nan if flat)."""
        fi, fj, t = self.known(i), self.known(j), self.target
        xi, xj = float(self.width(i)), float(self.width(j))
        if i == j or fi == fj:
            return math.nan
        if self.power == 1:
            x = xi + (t - fi) * (xj - xi) / (fj - fi)
        else:
            lx = math.log(xi) + (math.log(t / fi)) * math.log(xj / xi) / math.log(fj / fi)
            x = math.exp(min(lx, 40.0))
        return x / self.step - 1

    def first_guess(self, i: int) -> float:
        """Where to look after one evaluation: the power law for ``power`` 2, the next candidate for 1."""
        if self.power == 1:
            return i + (1 if self.known(i) <= self.target else -1)
        return self.width(i) * math.sqrt(self.target / self.known(i)) / self.step - 1

    def run(self, start: int) -> tuple[int | None, int | None]:
        """``(below, above)``: valid indices on each side of the target with no valid index between them.

        ``below`` is None when even the smallest valid candidate exceeds the target, ``above`` when the
        largest does not reach it; both are None when no candidate is valid.
        """
        first = self.valid_near(start, 0, self.n - 1)
        if first is None:
            return None, None
        lo, hi = (first, None) if self.known(first) <= self.target else (None, first)
        prev, last, stride = -1, first, 1
        while lo is None or hi is None:  # bracket the target
            g = self.first_guess(last) if prev < 0 else self.guess(prev, last)
            if hi is None:
                assert lo is not None
                want = max(lo + stride, round(g) if math.isfinite(g) else 0)
                nxt = self.valid_near(min(want, self.n - 1), lo + 1, self.n - 1)
            else:
                want = min(hi - stride, round(g) if math.isfinite(g) else self.n)
                nxt = self.valid_near(max(want, 0), 0, hi - 1)
            if nxt is None:
                return lo, hi
            if self.known(nxt) <= self.target:
                lo = nxt
            else:
                hi = nxt
            prev, last, stride = last, nxt, 2 * stride
        stalls = 0
        while hi - lo > 1:  # shrink the bracket
            g = self.guess(lo, hi)
            want = (lo + hi) // 2 if stalls >= 2 or not math.isfinite(g) else round(g)
            before = hi - lo
            nxt = self.valid_near(min(max(want, lo + 1), hi - 1), lo + 1, hi - 1)
            if nxt is None:
                break
            if self.known(nxt) <= self.target:
                lo = nxt
            else:
                hi = nxt
            stalls = 0 if 2 * (hi - lo) <= before or stalls >= 2 else stalls + 1
        return lo, hi


class _Problem:
    """One ``match_budget`` call: the model, the metric and a cache of every evaluated configuration."""

    def __init__(self, model: Mapping[str, Any], budget: Budget, vocab_size: int, seq_len: int) -> None:
        self.budget = budget
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.base = _model_config(model)
        self.pattern = parse(self.base.pattern)  # width-independent errors surface here, once
        resolve_mixer_defaults(self.base.mixers, d_model=None)
        self.mlp_symbol = registry.get("mlp").symbol
        self.mlp_key = _mlp_key(self.base.mixers, self.mlp_symbol)
        self.first_error: str | None = None
        self.cache: dict[tuple[int, int | None], float | None] = {}

    def value(self, d_model: int, hidden: int | None) -> float | None:
        """The metric at this width (and ``mixers.F.hidden`` unless None); None if the config is invalid."""
        key = (d_model, hidden)
        if key not in self.cache:
            try:
                lm = build_meta(_with(self.base, self.mlp_key, d_model, hidden), self.vocab_size)
            except ValueError as e:  # ConfigError: this width makes a mixer config impossible
                self.first_error = self.first_error or str(e)
                self.cache[key] = None
            else:
                metric = (
                    lm.num_params() if self.budget.metric == "params" else lm.flops_per_token(self.seq_len)
                )
                self.cache[key] = float(metric)
        return self.cache[key]

    def has_free_mlp(self) -> bool:
        return any(
            tok.symbol == self.mlp_symbol and "hidden" not in tok.params_dict()
            for layer in self.pattern.layers
            for tok in layer.branches
        )

    def solve_d_model(self, hidden: int | None) -> tuple[_GridSearch, int | None, int | None]:
        """Search ``d_model`` (with ``mixers.F.hidden`` set to ``hidden`` unless None)."""
        m = self.budget.multiple_of
        search = _GridSearch(
            m,
            MAX_D_MODEL // m,
            lambda d: self.value(d, hidden),
            self.budget.target,
            power=2,
        )
        below, above = search.run(round(self.base.d_model / m) - 1)
        return search, below, above

    def solve_hidden(
        self, d_model: int, start: int | None = None
    ) -> tuple[_GridSearch, int | None, int | None]:
        """Search ``mixers.F.hidden`` at ``d_model`` from ``start`` (default: its current or default width)."""
        m = self.budget.multiple_of
        current = start or (self.base.mixers.get(self.mlp_key) or {}).get("hidden") or default_hidden(d_model)
        search = _GridSearch(
            m,
            max(1, MAX_HIDDEN_RATIO * d_model // m),
            lambda h: self.value(d_model, h),
            self.budget.target,
            power=1,
        )
        below, above = search.run(round(current / m) - 1)
        return search, below, above


def _fmt(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:.4g}"


def _side(search: _GridSearch, i: int | None, name: str, target: float, side: str) -> str:
    if i is None:
        edge = "smallest" if side == "below" else "largest"
        return f"{side}: none (even the {edge} valid {name} is {'above' if side == 'below' else 'below'})"
    v = search.known(i)
    return f"{side}: {_fmt(v)} ({v / target - 1:+.2%}) at {name}={search.width(i)}"


def _infeasible(
    problem: _Problem, search: _GridSearch, below: int | None, above: int | None, name: str, context: str = ""
) -> BudgetInfeasible:
    b = problem.budget
    target, m = b.target, b.multiple_of
    head = (
        f"budget {b.metric}={_fmt(target)} (tolerance {b.tolerance:g}, solve: {b.solve}, multiple_of: {m}) "
        f"is out of reach for pattern {problem.base.pattern!r}{context}"
    )
    if below is None and above is None:
        return BudgetInfeasible(
            f"{head}: no {name} in multiples of {m} up to {search.width(search.n - 1)} gives a valid model "
            f"(first error: {problem.first_error}). Fix the mixer config or use another multiple_of"
        )
    fixes = []
    if below is not None and above is not None:  # the target falls between two neighbouring candidates
        if m > 1:
            fixes.append(f"a smaller multiple_of than {m}")
        if b.solve != "d_model+mlp" and problem.has_free_mlp():
            fixes.append("solve: d_model+mlp")
    elif below is None:
        fixes.append("a larger target")
        if m > 1:
            fixes.append(f"a smaller multiple_of than {m}")
        if b.solve == "mlp":
            fixes.append("solve: d_model")
    else:
        fixes.append("a smaller target")
        if b.solve == "mlp":
            fixes.append("solve: d_model or d_model+mlp")
    nearest = min(abs(search.known(i) / target - 1) for i in (below, above) if i is not None)
    if nearest < 1:
        fixes.append(f"a tolerance of at least {math.ceil(nearest * 1e4) / 1e4:g}")
    return BudgetInfeasible(
        f"{head}. Nearest achievable {_side(search, below, name, target, 'below')}; "
        f"{_side(search, above, name, target, 'above')}. Fix: {'; or '.join(fixes)}"
    )


def _pick(
    problem: _Problem, search: _GridSearch, below: int | None, above: int | None, name: str, context: str = ""
) -> int:
    """The width of the candidate nearest the target; raises ``BudgetInfeasible`` beyond the tolerance."""
    candidates = [i for i in (below, above) if i is not None]
    target = problem.budget.target
    if candidates:
        best = min(candidates, key=lambda i: abs(search.known(i) / target - 1))
        if abs(search.known(best) / target - 1) <= problem.budget.tolerance:
            return search.width(best)
    raise _infeasible(problem, search, below, above, name, context)


def match_budget(model: Mapping[str, Any], budget: Budget, vocab_size: int, seq_len: int) -> BudgetMatch:
    """Resize ``model`` so that its ``budget.metric`` is within ``budget.tolerance`` of the target.

    Of the two candidates nearest the target (one on each side) the one with the smaller relative
    error is taken.

    Args:
        model: the plain ``model:`` section (keys of ``blocks.config.ModelConfig``; ``preset`` only if
            null: resolve presets first with ``search_space.presets.apply_preset``). Not modified.
        budget: the target and what to solve.
        vocab_size: the tokenizer's vocabulary (used when ``model.vocab_size`` is null).
        seq_len: the training length, at which FLOPs/token are counted.

    Returns:
        the resized copy of ``model`` with its exact achieved value.

    Raises:
        BudgetInfeasible: no candidate width is within the tolerance (the message gives the nearest
            achievable values on each side and the fixes), or ``solve`` needs an ``F`` the layout lacks.
        PatternError, ConfigError: the section itself is invalid at every width.
    """
    problem = _Problem(model, budget, vocab_size, seq_len)
    solve, m = budget.solve, budget.multiple_of
    if solve == "d_model+mlp" and not problem.has_free_mlp():
        solve = "d_model"  # a layout without a free MLP (Mamba-only, ...) has only its width to solve
    hidden: int | None = None
    if solve == "mlp" and not problem.has_free_mlp():
        # nothing to solve: a layout without a free MLP (Mamba-only, ...) may still be the right size
        as_is = measure(model, vocab_size, seq_len)[budget.metric]
        if abs(as_is / budget.target - 1) > budget.tolerance:
            raise BudgetInfeasible(
                f"pattern {problem.base.pattern!r}: solve: {solve} needs an F sublayer without an explicit "
                f"hidden=; use solve: d_model ({budget.metric}={_fmt(as_is)} as it is, "
                f"{as_is / budget.target - 1:+.1%} off the target)"
            )
        return _match(model, budget, as_is)
    if solve == "d_model":
        d_model = _pick(problem, *problem.solve_d_model(None), "d_model")
    else:
        d_model = problem.base.d_model
        start = None
        if solve == "d_model+mlp":
            # the widest d_model at the usual MLP width (8/3 d) that stays under the target, then the MLP
            # width fills the rest: models keep a normal shape; only when even the narrowest such model
            # is too big does the MLP start from its smallest width
            search, below, above = problem.solve_d_model(None)
            if below is None:
                search, below, above = problem.solve_d_model(m)
                start = m
            if below is None:  # even the narrowest model exceeds the target
                raise _infeasible(problem, search, None, above, "d_model", f" (with F hidden={m})")
            d_model = search.width(below)
        hidden = _pick(problem, *problem.solve_hidden(d_model, start), "hidden", f" at d_model={d_model}")

    out = copy.deepcopy(dict(model))
    out["d_model"] = d_model
    if hidden is not None:
        mixers = out.get("mixers") or {}
        mixers[problem.mlp_key] = {**(mixers.get(problem.mlp_key) or {}), "hidden": hidden}
        out["mixers"] = mixers
    return _match(out, budget, measure(out, vocab_size, seq_len)[budget.metric])


def _match(model: Mapping[str, Any], budget: Budget, achieved: float) -> BudgetMatch:
    mixers = model.get("mixers") or {}
    key = _mlp_key(mixers, registry.get("mlp").symbol)
    return BudgetMatch(
        model=copy.deepcopy(dict(model)),
        target=budget.target,
        achieved=achieved,
        rel_error=achieved / budget.target - 1,
        metric=budget.metric,
        d_model=int(model["d_model"]),
        mlp_hidden=(mixers.get(key) or {}).get("hidden"),
        mlp_key=key,
    )

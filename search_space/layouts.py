"""Generated layouts: a sweep's ``sweep.layouts:`` mapping compiled into an Optuna define-by-run space.

A layout is written as a pattern (``shared/docs/design.md`` "Pattern grammar"); this module generates
patterns from a few architectural knobs instead of listing them (an explicit list stays under
``sweep.patterns``, ``sweeps/space.py``):

- ``depth``: the number of token-mixing sublayers (attention or recurrent; MLP sublayers not counted);
- ``mlp``: whether a SwiGLU MLP ``F`` follows every mixing sublayer;
- ``recurrent``: which recurrent mixer fills the non-attention positions (``M``, ``G`` or ``R``);
- either ``attention_fraction`` with a ``placement`` of the attention sublayers (``even``, ``first``,
  ``last``), or ``placement: every_k`` with ``every_k``, or a ``motif`` over mixing symbols repeated to
  ``depth``.

Rules (1-based mixing positions ``1..depth``):

- ``attention_fraction`` f gives ``n_a = round(f * depth)`` attention sublayers, rounded half up on the
  decimal value of f (so 0.5 of 5 is 3, not Python's banker's 2), at least 1 when f > 0, at most depth;
- ``even`` puts them at ``floor(i * depth / n_a)`` for ``i = 1..n_a``, so attention ends each period as in
  Samba, ``(M-F-A-F)*N`` (samba-facts.md §1.2); ``first``/``last``: the first/last ``n_a`` positions;
- ``every_k`` k puts them at ``k, 2k, ...`` (the fraction is derived); ``k > depth`` is infeasible;
- a ``motif`` such as ``X-A`` or ``X-X-A`` uses ``X`` for the recurrent mixer and may name ``A``, ``M``,
  ``G``, ``R`` directly (no ``F``: MLPs come from ``mlp``); ``depth`` must be a multiple of its length.

Every generated layout is returned in compact form (``blocks.pattern``'s ``Pattern.compact``) and parses
back to itself. Symbols come from ``blocks.registry``. Optuna is not imported here: ``LayoutSpace.suggest``
takes any object with Optuna's ``suggest_categorical(name, choices)``.

>>> generate(LayoutChoice(depth=8, recurrent="M", mlp=True, attention_fraction=0.5))
'(M-F-A-F)*4'
>>> generate(LayoutChoice(depth=6, recurrent="G", mlp=True, motif="X-X-A"))
'((G-F)*2-A-F)*2'
>>> space = LayoutSpace.from_dict({"depth": 8, "attention_fraction": [0.25, 0.5], "placement": ["even", "last"]})
>>> space.enumerate()
['((M-F)*3-A-F)*2', '(M-F-A-F)*4', '(M-F)*6-(A-F)*2', '(M-F)*4-(A-F)*4']
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

from blocks import registry
from blocks.pattern import MAX_LAYERS, parse

__all__ = [
    "PLACEMENTS",
    "RECURRENT",
    "PARAMS",
    "LayoutSpecError",
    "LayoutInfeasible",
    "LayoutChoice",
    "LayoutSpace",
    "TrialLike",
    "generate",
    "attention_layers",
]

PLACEMENTS = ("even", "first", "last", "every_k")
"""Where the attention sublayers go among the mixing sublayers (see the module docstring)."""

RECURRENT = ("M", "G", "R")
"""The recurrent mixers a generated layout may use: Mamba, GLA, RetNet (registry symbols)."""

PARAMS = (
    "layout.depth",
    "layout.mlp",
    "layout.motif",
    "layout.placement",
    "layout.attention_fraction",
    "layout.every_k",
    "layout.recurrent",
)
"""Optuna parameter names ``LayoutSpace.suggest`` may use, in the order it suggests them."""

_ATTENTION = "A"  # the attention mixer's registry symbol
_MLP = "F"  # the MLP's registry symbol
_X = "X"  # the motif placeholder for the recurrent mixer
_MAX_DEPTH = MAX_LAYERS // 2  # depth mixing sublayers plus as many MLPs must fit in a Pattern
_KEYS = (
    "depth",
    "recurrent",
    "mlp",
    "attention_fraction",
    "placement",
    "every_k",
    "motif",
    "max_attention_layers",
    "min_attention_layers",
)


class LayoutSpecError(ValueError):
    """A bad layout specification (YAML ``sweep.layouts`` or a ``LayoutChoice`` field).

    Attributes:
        key: the full key, e.g. ``"sweep.layouts.placement"``.
        value: the offending value.
        allowed: what would have been valid.
        suggestion: a close valid spelling, or None.
    """

    def __init__(self, key: str, value: Any, allowed: str, suggestion: str | None = None) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        self.suggestion = suggestion
        hint = f" Did you mean {suggestion!r}?" if suggestion is not None else ""
        super().__init__(f"{key}: got {value!r}; {allowed}.{hint}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.value, self.allowed, self.suggestion))


class LayoutInfeasible(ValueError):
    """A sampled combination that cannot be built (or breaks a constraint); the message says why."""


class TrialLike(Protocol):
    """What ``LayoutSpace.suggest`` needs of a trial: Optuna's ``suggest_categorical``."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


def _suggest_close(value: Any, valid: Sequence[str]) -> str | None:
    if not isinstance(value, str):
        return None
    close = difflib.get_close_matches(value, list(valid), n=1, cutoff=0.5)
    if close:
        return close[0]
    lowered = {v.lower(): v for v in valid}
    return lowered.get(value.lower())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_depth(value: Any, key: str) -> int:
    if not _is_int(value) or not 1 <= value <= _MAX_DEPTH:
        raise LayoutSpecError(key, value, f"a depth must be an int from 1 to {_MAX_DEPTH} (mixing sublayers)")
    return value


def _check_recurrent(value: Any, key: str) -> str:
    """The registry symbol of a recurrent mixer given by symbol (``M``) or registry name (``mamba``)."""
    allowed = f"a recurrent mixer must be one of {', '.join(RECURRENT)} (or its registry name)"
    if not isinstance(value, str):
        raise LayoutSpecError(key, value, allowed)
    try:
        symbol = registry.get(value).symbol
    except registry.RegistryError:
        raise LayoutSpecError(key, value, allowed, _suggest_close(value, RECURRENT)) from None
    if symbol not in RECURRENT:
        raise LayoutSpecError(key, value, allowed + f" ({symbol!r} is not a recurrent mixer)")
    return symbol


def _check_bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise LayoutSpecError(key, value, "mlp must be true or false")
    return value


def _check_fraction(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise LayoutSpecError(key, value, "an attention fraction must be a number in [0, 1]")
    return float(value)


def _check_placement(value: Any, key: str) -> str:
    if value not in PLACEMENTS:
        raise LayoutSpecError(
            key, value, f"placement must be one of {', '.join(PLACEMENTS)}", _suggest_close(value, PLACEMENTS)
        )
    return value


def _check_every_k(value: Any, key: str) -> int:
    if not _is_int(value) or value < 1:
        raise LayoutSpecError(key, value, "every_k must be an int >= 1 (attention at mixing layers k, 2k, ...)")
    return value


def _check_motif(value: Any, key: str) -> str:
    """``value`` with whitespace removed, e.g. ``"X - A"`` -> ``"X-A"``; symbols X, A, M, G, R only."""
    valid = (_X, _ATTENTION, *RECURRENT)
    allowed = (
        f"a motif is mixing symbols {', '.join(valid)} separated by '-', e.g. 'X-A' or 'X-X-A' "
        f"(X is the recurrent mixer; no {_MLP}: MLP sublayers come from mlp)"
    )
    if not isinstance(value, str):
        raise LayoutSpecError(key, value, allowed)
    tokens = [t.strip() for t in value.split("-")]
    for tok in tokens:
        if tok not in valid:
            if tok == _MLP or tok.lower() == "mlp":
                raise LayoutSpecError(key, value, f"{_MLP} is not allowed in a motif; set mlp: true instead")
            raise LayoutSpecError(
                key, value, allowed + f" (bad symbol {tok!r})", _suggest_close(tok, valid) if tok else None
            )
    return "-".join(tokens)


def _check_bound(value: Any, key: str) -> int | None:
    if value is not None and (not _is_int(value) or value < 0):
        raise LayoutSpecError(key, value, "an attention-layer bound must be null or an int >= 0")
    return value


@dataclass(frozen=True)
class LayoutChoice:
    """One sampled layout (field meanings and rules in the module docstring).

    Attributes:
        depth: token-mixing sublayers (A or recurrent); F sublayers not counted.
        recurrent: ``M``, ``G`` or ``R`` (a registry name such as ``mamba`` is normalised to its symbol).
        mlp: an ``F`` after every mixing sublayer.
        attention_fraction: the share of mixing sublayers that are ``A`` (ignored with a motif or every_k).
        placement: ``even``, ``first``, ``last`` or ``every_k`` (ignored with a motif).
        every_k: with placement ``every_k``, mixing layers k, 2k, ... (1-based) are ``A``; None otherwise.
        motif: e.g. ``X-A``, repeated to ``depth``; overrides fraction and placement.

    Raises:
        LayoutSpecError: a field of the wrong type or out of range (key ``LayoutChoice.<field>``).
    """

    depth: int
    recurrent: str
    mlp: bool
    attention_fraction: float = 0.0
    placement: str = "even"
    every_k: int | None = None
    motif: str | None = None

    def __post_init__(self) -> None:
        where = "LayoutChoice"
        _check_depth(self.depth, f"{where}.depth")
        object.__setattr__(self, "recurrent", _check_recurrent(self.recurrent, f"{where}.recurrent"))
        _check_bool(self.mlp, f"{where}.mlp")
        object.__setattr__(
            self, "attention_fraction", _check_fraction(self.attention_fraction, f"{where}.attention_fraction")
        )
        _check_placement(self.placement, f"{where}.placement")
        if self.every_k is not None:
            _check_every_k(self.every_k, f"{where}.every_k")
        if self.motif is None and (self.placement == "every_k") != (self.every_k is not None):
            raise LayoutSpecError(
                f"{where}.every_k", self.every_k, "every_k is set exactly when placement is 'every_k'"
            )
        if self.motif is not None:
            object.__setattr__(self, "motif", _check_motif(self.motif, f"{where}.motif"))

    def n_attention(self) -> int:
        """Attention sublayers of this layout (0 for a motif without A)."""
        return _mixing(self).count(_ATTENTION)


def _n_attention(fraction: float, depth: int) -> int:
    """``round(fraction * depth)`` half up on the decimal value of ``fraction``, >= 1 when fraction > 0."""
    exact = Fraction(repr(fraction)) * depth
    n = math.floor(exact + Fraction(1, 2))
    if fraction > 0:
        n = max(n, 1)
    return min(n, depth)


def _mixing(choice: LayoutChoice) -> list[str]:
    """The mixing symbols of ``choice`` in order, MLPs left out.

    Raises:
        LayoutInfeasible: depth not a multiple of the motif length, or every_k larger than depth.
    """
    depth, rec = choice.depth, choice.recurrent
    if choice.motif is not None:
        unit = [rec if s == _X else s for s in choice.motif.split("-")]
        if depth % len(unit):
            below = depth - depth % len(unit)
            nearest = f"{below} or {below + len(unit)}" if below else str(len(unit))
            raise LayoutInfeasible(
                f"depth {depth} is not a multiple of the length {len(unit)} of motif {choice.motif!r} "
                f"(nearest: {nearest})"
            )
        return unit * (depth // len(unit))
    if choice.placement == "every_k":
        k = choice.every_k
        assert k is not None  # LayoutChoice.__post_init__ guarantees it
        if k > depth:
            raise LayoutInfeasible(
                f"every_k {k} > depth {depth}: no attention layer would be placed "
                "(use attention_fraction 0 for a layout without attention)"
            )
        positions = set(range(k, depth + 1, k))
    else:
        n_a = _n_attention(choice.attention_fraction, depth)
        if n_a == 0:
            positions = set()
        elif choice.placement == "even":
            positions = {i * depth // n_a for i in range(1, n_a + 1)}
        elif choice.placement == "first":
            positions = set(range(1, n_a + 1))
        else:  # last
            positions = set(range(depth - n_a + 1, depth + 1))
    return [_ATTENTION if i in positions else rec for i in range(1, depth + 1)]


def generate(choice: LayoutChoice) -> str:
    """The compact pattern of ``choice``, e.g. ``(M-F-A-F)*4`` for depth 8, fraction 0.5, even, with MLP.

    Raises:
        LayoutInfeasible: the combination cannot be built (depth not a multiple of the motif length,
            every_k larger than depth).
    """
    sublayers: list[str] = []
    for symbol in _mixing(choice):
        sublayers.append(symbol)
        if choice.mlp:
            sublayers.append(_MLP)
    compact = parse("-".join(sublayers)).compact
    if parse(compact).compact != compact:  # pragma: no cover - a blocks.pattern bug
        raise AssertionError(f"generated pattern {compact!r} does not round-trip through blocks.pattern")
    return compact


def attention_layers(pattern: str) -> int:
    """Sublayers of ``pattern`` that contain an attention mixer (a parallel group counts once).

    Raises:
        PatternError: ``pattern`` does not parse.
    """
    return sum(any(t.symbol == _ATTENTION for t in layer.branches) for layer in parse(pattern).layers)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _check_list(values: Any, key: str, check: Any, required: bool) -> list[Any]:
    items = _as_list(values)
    scalar = len(items) == 1 and items[0] is values
    out = [check(v, key if scalar else f"{key}[{i}]") for i, v in enumerate(items)]
    if required and not out:
        raise LayoutSpecError(key, values, "give one value or a non-empty list of choices")
    seen: set[Any] = set()
    for v in out:
        if v in seen:
            raise LayoutSpecError(key, values, f"each choice at most once ({v!r} is repeated)")
        seen.add(v)
    return out


@dataclass(frozen=True)
class LayoutSpace:
    """The ``sweep.layouts:`` mapping: every field a list of choices (``from_dict`` turns scalars into lists).

    Branches: a layout is built from a ``motif`` or is *generated* from ``placement`` with
    ``attention_fraction`` (even/first/last) or ``every_k`` (every_k). The generated branch exists when
    ``attention_fraction`` or ``every_k`` is non-empty; ``placement`` then defaults to ``even`` (if a
    fraction is given) plus ``every_k`` (if every_k is given). An empty ``motif`` list means no motif; when
    both branches exist, ``layout.motif`` also offers None, meaning "generated".

    Attributes:
        depth: mixing-sublayer counts (required).
        recurrent: recurrent mixers (default ``["M"]``).
        mlp: with or without an F after each mixing sublayer (default ``[True]``).
        attention_fraction: fractions for placements even/first/last.
        placement: ``PLACEMENTS`` entries.
        every_k: periods for placement every_k.
        motif: motifs over X, A, M, G, R.
        max_attention_layers, min_attention_layers: bounds on attention sublayers of the result, or None.

    Raises:
        LayoutSpecError: an invalid field, a dead one (placement/every_k/fraction that no branch uses),
            or a space in which no combination can be built.
    """

    depth: list[int]
    recurrent: list[str] = field(default_factory=lambda: ["M"])
    mlp: list[bool] = field(default_factory=lambda: [True])
    attention_fraction: list[float] = field(default_factory=list)
    placement: list[str] = field(default_factory=list)
    every_k: list[int] = field(default_factory=list)
    motif: list[str] = field(default_factory=list)
    max_attention_layers: int | None = None
    min_attention_layers: int | None = None

    def __post_init__(self) -> None:
        values = _normalize({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, "LayoutSpace")
        for name, value in values.items():
            object.__setattr__(self, name, value)
        self._check_buildable("LayoutSpace")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "sweep.layouts") -> LayoutSpace:
        """Build and validate a space from its YAML mapping; errors name the key as ``{where}.{key}``.

        Raises:
            LayoutSpecError: an unknown key (with the closest valid key), a bad value, a missing depth, or a
                space with no buildable layout.
        """
        if not isinstance(d, Mapping):
            raise LayoutSpecError(where, d, f"a mapping with keys {', '.join(_KEYS)}")
        for key in d:
            if key not in _KEYS:
                raise LayoutSpecError(
                    f"{where}.{key}", d[key], f"unknown key; valid keys: {', '.join(_KEYS)}",
                    _suggest_close(key, _KEYS),
                )
        if "depth" not in d:
            raise LayoutSpecError(f"{where}.depth", None, "depth is required (mixing sublayers, e.g. [8, 12])")
        values = _normalize(dict(d), where)
        try:
            return cls(**values)
        except LayoutSpecError as e:  # only the buildability check is left to fail; name the key as given
            raise LayoutSpecError(e.key.replace("LayoutSpace", where, 1), e.value, e.allowed) from None

    def _generated(self) -> bool:
        return bool(self.attention_fraction or self.every_k)

    def _motif_choices(self) -> list[str | None]:
        return [*self.motif, None] if self._generated() else list(self.motif)

    def suggest(self, trial: TrialLike) -> str:
        """Suggest a layout on ``trial`` (define-by-run) and return its compact pattern.

        Parameters, in this order and only on the branch that needs them: ``layout.depth`` and
        ``layout.mlp`` always; ``layout.motif`` when ``motif`` is non-empty (None in its choices selects
        the generated branch when both exist); without a motif, ``layout.placement``, then
        ``layout.every_k`` when the placement is every_k, else ``layout.attention_fraction``; last
        ``layout.recurrent``, only when the layout built from the parameters so far has a position for the
        recurrent mixer (a motif with X; fewer attention layers than depth otherwise). Single-choice fields
        are suggested too, so every trial of a branch has the same parameter names.

        Raises:
            LayoutInfeasible: the sampled combination cannot be built or breaks min/max_attention_layers.
        """
        depth = trial.suggest_categorical("layout.depth", self.depth)
        mlp = trial.suggest_categorical("layout.mlp", self.mlp)
        motif: str | None = None
        if self.motif:
            motif = trial.suggest_categorical("layout.motif", self._motif_choices())
        placement, fraction, every_k = "even", 0.0, None
        if motif is None:
            placement = trial.suggest_categorical("layout.placement", self.placement)
            if placement == "every_k":
                every_k = trial.suggest_categorical("layout.every_k", self.every_k)
            else:
                fraction = trial.suggest_categorical("layout.attention_fraction", self.attention_fraction)
        # Build with a placeholder recurrent symbol to see whether the layout has a recurrent position.
        probe = LayoutChoice(depth, self.recurrent[0], mlp, fraction, placement, every_k, motif)
        recurrent = self.recurrent[0]
        if _has_recurrent(probe):
            recurrent = trial.suggest_categorical("layout.recurrent", self.recurrent)
        choice = dataclasses.replace(probe, recurrent=recurrent)
        self._check_bounds(choice)
        return generate(choice)

    def _check_bounds(self, choice: LayoutChoice) -> None:
        n_a = choice.n_attention()
        if self.max_attention_layers is not None and n_a > self.max_attention_layers:
            raise LayoutInfeasible(
                f"{_describe(choice)} has {n_a} attention layers; max_attention_layers is "
                f"{self.max_attention_layers}"
            )
        if self.min_attention_layers is not None and n_a < self.min_attention_layers:
            raise LayoutInfeasible(
                f"{_describe(choice)} has {n_a} attention layers; min_attention_layers is "
                f"{self.min_attention_layers}"
            )

    def _check_buildable(self, where: str) -> None:
        """Raise ``LayoutSpecError`` when no combination can be built within the bounds."""
        reasons: list[str] = []
        for choice in self.choices():
            try:
                self._check_bounds(choice)
                return
            except LayoutInfeasible as e:
                if len(reasons) < 3:
                    reasons.append(str(e))
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        raise LayoutSpecError(where, _summary(values), "no combination can be built: " + "; ".join(reasons))

    def choices(self) -> Iterator[LayoutChoice]:
        """Every combination ``suggest`` can sample, feasible or not, in a fixed order."""
        rec0 = self.recurrent[0]
        for depth, mlp in itertools.product(self.depth, self.mlp):
            branches: list[tuple[str | None, str, float, int | None]] = []
            for motif in self._motif_choices() if self.motif else [None]:
                if motif is not None:
                    branches.append((motif, "even", 0.0, None))
                    continue
                for placement in self.placement:
                    if placement == "every_k":
                        branches.extend((None, placement, 0.0, k) for k in self.every_k)
                    else:
                        branches.extend((None, placement, f, None) for f in self.attention_fraction)
            for motif, placement, fraction, every_k in branches:
                probe = LayoutChoice(depth, rec0, mlp, fraction, placement, every_k, motif)
                try:
                    recurrents = self.recurrent if _has_recurrent(probe) else [rec0]
                except LayoutInfeasible:
                    recurrents = [rec0]
                for rec in recurrents:
                    yield dataclasses.replace(probe, recurrent=rec)

    def enumerate(self) -> list[str]:
        """Every distinct compact pattern the space can produce, in ``choices`` order (deduplicated)."""
        out: dict[str, str] = {}
        for choice in self.choices():
            try:
                self._check_bounds(choice)
                pattern = generate(choice)
            except LayoutInfeasible:
                continue
            out.setdefault(parse(pattern).canonical, pattern)
        return list(out.values())


def _has_recurrent(choice: LayoutChoice) -> bool:
    """Whether the layout has a position the recurrent mixer fills (raises ``LayoutInfeasible``)."""
    if choice.motif is not None:
        _mixing(choice)  # raise on a depth that does not fit the motif, before suggesting more
        return _X in choice.motif.split("-")
    return _mixing(choice).count(_ATTENTION) < choice.depth


def _describe(choice: LayoutChoice) -> str:
    if choice.motif is not None:
        how = f"motif {choice.motif!r}"
    elif choice.placement == "every_k":
        how = f"every_k {choice.every_k}"
    else:
        how = f"attention_fraction {choice.attention_fraction} placed {choice.placement!r}"
    return f"depth {choice.depth} with {how} ({generate(choice)!r})"


def _normalize(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Checked field values of a ``LayoutSpace`` (lists, symbols normalised, placement defaulted)."""
    k = {name: f"{where}.{name}" for name in _KEYS}
    out: dict[str, Any] = {
        "depth": _check_list(raw.get("depth"), k["depth"], _check_depth, True),
        "recurrent": _check_list(raw.get("recurrent", ["M"]), k["recurrent"], _check_recurrent, True),
        "mlp": _check_list(raw.get("mlp", [True]), k["mlp"], _check_bool, True),
        "attention_fraction": _check_list(
            raw.get("attention_fraction", []), k["attention_fraction"], _check_fraction, False
        ),
        "placement": _check_list(raw.get("placement", []), k["placement"], _check_placement, False),
        "every_k": _check_list(raw.get("every_k", []), k["every_k"], _check_every_k, False),
        "motif": _check_list(raw.get("motif", []), k["motif"], _check_motif, False),
        "max_attention_layers": _check_bound(raw.get("max_attention_layers"), k["max_attention_layers"]),
        "min_attention_layers": _check_bound(raw.get("min_attention_layers"), k["min_attention_layers"]),
    }
    fractions, placements, ks = out["attention_fraction"], out["placement"], out["every_k"]
    generated = bool(fractions or ks)
    if not generated and placements:
        raise LayoutSpecError(
            k["placement"], placements, "placement is used only with attention_fraction or every_k; give one"
        )
    if not generated and not out["motif"]:
        raise LayoutSpecError(
            where,
            _summary(out),
            "these keys build no layout; give attention_fraction (with placement even/first/last), "
            "every_k (placement every_k) or motif",
        )
    if generated and not placements:
        placements = out["placement"] = (["even"] if fractions else []) + (["every_k"] if ks else [])
    if ks and "every_k" not in placements:
        raise LayoutSpecError(k["every_k"], ks, "every_k is used only with placement every_k; add it to placement")
    if "every_k" in placements and not ks:
        raise LayoutSpecError(k["every_k"], ks, "placement every_k needs every_k: one int or a list")
    by_fraction = [p for p in placements if p != "every_k"]
    if by_fraction and not fractions:
        raise LayoutSpecError(
            k["attention_fraction"], fractions, f"placement {by_fraction[0]} needs attention_fraction"
        )
    if fractions and not by_fraction:
        raise LayoutSpecError(
            k["attention_fraction"], fractions,
            "attention_fraction is unused with placement every_k only; add even, first or last to placement",
        )
    lo, hi = out["min_attention_layers"], out["max_attention_layers"]
    if lo is not None and hi is not None and lo > hi:
        raise LayoutSpecError(k["min_attention_layers"], lo, f"must be <= max_attention_layers ({hi})")
    return out


def _summary(values: dict[str, Any]) -> dict[str, Any]:
    """The fields of a space that are set (for error messages)."""
    return {name: v for name, v in values.items() if v not in (None, [])}

"""Tests of ``search_space.layouts``: generated layouts, their Optuna define-by-run space, spec errors.

Worked examples follow samba-facts.md §1.2 (Samba is ``(M-F-A-F)*N``: one SWA after each Mamba) and the
presets built from it; the rules tested are those of the module docstring.
"""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocks.pattern import PatternError, parse
from search_space import layouts as L
from search_space.layouts import (
    LayoutChoice,
    LayoutInfeasible,
    LayoutSpace,
    LayoutSpecError,
    attention_layers,
    generate,
)
from search_space.presets import get_preset

optuna.logging.set_verbosity(optuna.logging.WARNING)


def mixing(pattern: str) -> str:
    """The mixing symbols of ``pattern`` in order (MLP sublayers dropped), e.g. ``MAMA``."""
    return "".join(layer.symbols for layer in parse(pattern).layers if layer.symbols != "F")


# ---- generate: worked examples ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        # Samba: one SWA after each Mamba, an MLP after every mixer.
        (LayoutChoice(8, "M", True, 0.5, "even"), "(M-F-A-F)*4"),
        (LayoutChoice(12, "M", True, 0.5), "(M-F-A-F)*6"),
        (LayoutChoice(12, "G", True, 0.5), "(G-F-A-F)*6"),
        (LayoutChoice(12, "R", True, 0.5), "(R-F-A-F)*6"),
        # Mamba only (no MLP), SWA only (Llama-2-SWA).
        (LayoutChoice(60, "M", False, 0.0), "M*60"),
        (LayoutChoice(12, "M", True, 1.0), "(A-F)*12"),
        # even: attention ends each period.
        (LayoutChoice(8, "M", True, 0.25, "even"), "((M-F)*3-A-F)*2"),
        (LayoutChoice(8, "M", False, 0.25, "even"), "(M*3-A)*2"),
        # first/last: Table 5's full attention at Block 0 and Block 11 (window aside).
        (LayoutChoice(12, "M", True, 1 / 12, "first"), "A-F-(M-F)*11"),
        (LayoutChoice(12, "M", True, 1 / 12, "last"), "(M-F)*11-A-F"),
        (LayoutChoice(6, "G", True, 1 / 3, "first"), "(A-F)*2-(G-F)*4"),
        (LayoutChoice(6, "R", False, 0.5, "last"), "R*3-A*3"),
        # every_k: mixing layers k, 2k, ... are attention; a remainder stays recurrent.
        (LayoutChoice(6, "M", False, placement="every_k", every_k=3), "(M*2-A)*2"),
        (LayoutChoice(4, "G", True, placement="every_k", every_k=1), "(A-F)*4"),
        (LayoutChoice(7, "M", False, placement="every_k", every_k=3), "(M*2-A)*2-M"),
        # motifs: X is the recurrent mixer; other symbols stay as written; fraction/placement ignored.
        (LayoutChoice(6, "G", True, motif="X-X-A"), "((G-F)*2-A-F)*2"),
        (LayoutChoice(8, "M", False, motif="X-A"), "(M-A)*4"),
        (LayoutChoice(8, "R", True, 1.0, "last", motif="M-A-G-A"), "(M-F-A-F-G-F-A-F)*2"),
        (LayoutChoice(3, "M", True, motif="A-X-X"), "A-F-(M-F)*2"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_generate_examples(choice: LayoutChoice, expected: str) -> None:
    out = generate(choice)
    assert out == expected
    assert parse(out).compact == out


@pytest.mark.parametrize(
    ("preset", "choice"),
    [
        ("samba-421m", LayoutChoice(12, "M", True, 0.5)),
        ("samba-1.3b", LayoutChoice(18, "mamba", True, 0.5)),
        ("sliding-gla-438m", LayoutChoice(12, "gla", True, 0.5)),
        ("sliding-retnet-446m", LayoutChoice(12, "R", True, motif="X-A")),
        ("llama2-swa-438m", LayoutChoice(12, "M", True, 1.0)),
        ("mamba-432m", LayoutChoice(60, "M", False, 0.0)),
    ],
)
def test_generate_matches_paper_presets(preset: str, choice: LayoutChoice) -> None:
    assert parse(generate(choice)).canonical == parse(get_preset(preset).model.pattern).canonical


@pytest.mark.parametrize(
    ("depth", "fraction", "n_a"),
    [
        (8, 0.5, 4),
        (5, 0.5, 3),  # rounded half up, not to even
        (10, 0.35, 4),  # half up on the decimal value (0.35 * 10 is 3.4999... in binary)
        (10, 0.25, 3),
        (8, 0.01, 1),  # at least one when the fraction is positive
        (8, 0.0, 0),
        (8, 0.99, 8),
        (3, 1.0, 3),
        (1, 0.5, 1),
    ],
)
def test_attention_count_rounding(depth: int, fraction: float, n_a: int) -> None:
    for placement in ("even", "first", "last"):
        choice = LayoutChoice(depth, "M", True, fraction, placement)
        assert attention_layers(generate(choice)) == n_a == choice.n_attention()


def test_even_positions_end_each_period() -> None:
    assert mixing(generate(LayoutChoice(8, "M", False, 0.25))) == "MMMAMMMA"  # positions 4 and 8
    assert mixing(generate(LayoutChoice(8, "M", False, 0.5))) == "MAMAMAMA"
    assert mixing(generate(LayoutChoice(7, "M", False, 3 / 7))) == "MAMAMMA"  # floor(7/3)=2, floor(14/3)=4, 7


def test_attention_layers() -> None:
    assert attention_layers("(M-F-A-F)*6") == 6
    assert attention_layers("M*4") == 0
    assert attention_layers("(M|A)-F-A[window=64]-F") == 2  # a parallel group with an A counts once
    assert attention_layers("(A|A)-F") == 1
    with pytest.raises(PatternError):
        attention_layers("M-X")


# ---- generate: properties ----------------------------------------------------------------------------


@st.composite
def choices(draw: st.DrawFn) -> LayoutChoice:
    recurrent = draw(st.sampled_from(L.RECURRENT))
    mlp = draw(st.booleans())
    kind = draw(st.sampled_from(["fraction", "every_k", "motif"]))
    if kind == "motif":
        unit = draw(st.lists(st.sampled_from(["X", "A", "M", "G", "R"]), min_size=1, max_size=5))
        depth = len(unit) * draw(st.integers(1, 8))
        return LayoutChoice(depth, recurrent, mlp, motif="-".join(unit))
    depth = draw(st.integers(1, 40))
    if kind == "every_k":
        return LayoutChoice(depth, recurrent, mlp, placement="every_k", every_k=draw(st.integers(1, depth)))
    fraction = draw(st.sampled_from([0.0, 0.1, 0.125, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 0.9, 1.0]))
    return LayoutChoice(depth, recurrent, mlp, fraction, draw(st.sampled_from(["even", "first", "last"])))


@settings(max_examples=150, deadline=None)
@given(choices())
def test_generate_properties(choice: LayoutChoice) -> None:
    out = generate(choice)
    p = parse(out)
    assert p.compact == out  # compact and round-trips
    assert parse(p.canonical).compact == out
    seq = mixing(out)
    assert len(seq) == choice.depth
    syms = [layer.symbols for layer in p.layers]
    if choice.mlp:  # an F right after every mixing sublayer, and nowhere else
        assert syms[1::2] == ["F"] * choice.depth and "F" not in syms[0::2]
    else:
        assert "F" not in syms
    assert attention_layers(out) == seq.count("A") == choice.n_attention()
    if choice.motif is not None:
        unit = "".join(choice.recurrent if s == "X" else s for s in choice.motif.split("-"))
        assert seq == unit * (choice.depth // len(unit))
        return
    assert set(seq) <= {"A", choice.recurrent}
    positions = [i + 1 for i, s in enumerate(seq) if s == "A"]
    d = choice.depth
    if choice.placement == "every_k":
        assert positions == list(range(choice.every_k, d + 1, choice.every_k))
        return
    n_a = len(positions)
    assert (n_a >= 1) == (choice.attention_fraction > 0)
    assert abs(n_a - choice.attention_fraction * d) <= 0.5 + 1e-9 or n_a == 1
    if choice.placement == "even" and n_a:
        assert positions == [i * d // n_a for i in range(1, n_a + 1)]
    elif choice.placement == "first":
        assert positions == list(range(1, n_a + 1))
    elif choice.placement == "last":
        assert positions == list(range(d - n_a + 1, d + 1))


def test_generate_infeasible() -> None:
    with pytest.raises(LayoutInfeasible, match=r"depth 7 is not a multiple of the length 2 of motif 'X-A'"):
        generate(LayoutChoice(7, "M", True, motif="X-A"))
    with pytest.raises(LayoutInfeasible, match=r"every_k 9 > depth 8"):
        generate(LayoutChoice(8, "M", True, placement="every_k", every_k=9))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"depth": 0}, "LayoutChoice.depth"),
        ({"recurrent": "A"}, "LayoutChoice.recurrent"),
        ({"mlp": 1}, "LayoutChoice.mlp"),
        ({"attention_fraction": 1.01}, "LayoutChoice.attention_fraction"),
        ({"placement": "middle"}, "LayoutChoice.placement"),
        ({"placement": "every_k"}, "LayoutChoice.every_k"),  # every_k missing
        ({"every_k": 2}, "LayoutChoice.every_k"),  # every_k without its placement
        ({"motif": "X-F"}, "LayoutChoice.motif"),
    ],
)
def test_layout_choice_rejects(kwargs: dict, key: str) -> None:
    base = {"depth": 8, "recurrent": "M", "mlp": True, "attention_fraction": 0.5}
    with pytest.raises(LayoutSpecError) as e:
        LayoutChoice(**{**base, **kwargs})
    assert e.value.key == key


def test_layout_choice_normalises() -> None:
    c = LayoutChoice(8, "gla", True, 1, motif=" X - A ")
    assert (c.recurrent, c.attention_fraction, c.motif) == ("G", 1.0, "X-A")


# ---- LayoutSpace: from_dict and spec errors ---------------------------------------------------------


def test_from_dict_scalars_and_defaults() -> None:
    s = LayoutSpace.from_dict({"depth": 8, "attention_fraction": 0.5})
    assert s == LayoutSpace(depth=[8], recurrent=["M"], mlp=[True], attention_fraction=[0.5], placement=["even"])
    assert s.enumerate() == ["(M-F-A-F)*4"]
    s = LayoutSpace.from_dict({"depth": 8, "attention_fraction": 0.5, "every_k": [2, 4], "recurrent": "retnet"})
    assert s.placement == ["even", "every_k"] and s.recurrent == ["R"]
    assert LayoutSpace.from_dict({"depth": 8, "every_k": 4}).placement == ["every_k"]
    assert LayoutSpace.from_dict({"depth": 8, "motif": "X-A"}).placement == []


def test_layout_space_pickles() -> None:
    s = LayoutSpace.from_dict({"depth": [8, 12], "attention_fraction": [0.25, 0.5], "motif": ["X-A"]})
    assert pickle.loads(pickle.dumps(s)) == s
    e = LayoutSpecError("sweep.layouts.placement", "evn", "one of even", "even")
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.key, e2.value, e2.suggestion, str(e2)) == (e.key, e.value, e.suggestion, str(e))


GOOD = {"depth": [8], "attention_fraction": [0.5]}


@pytest.mark.parametrize(
    ("spec", "key", "value", "match"),
    [
        ({**GOOD, "attention_fractoin": 0.5}, "sweep.layouts.attention_fractoin", 0.5, "'attention_fraction'"),
        ({**GOOD, "placment": "even"}, "sweep.layouts.placment", "even", "'placement'"),
        ({**GOOD, "placement": "evenly"}, "sweep.layouts.placement", "evenly", "even, first, last, every_k"),
        ({**GOOD, "placement": ["even", "middle"]}, "sweep.layouts.placement[1]", "middle", "placement"),
        ({**GOOD, "attention_fraction": 1.5}, "sweep.layouts.attention_fraction", 1.5, r"\[0, 1\]"),
        ({**GOOD, "attention_fraction": [0.5, -0.1]}, "sweep.layouts.attention_fraction[1]", -0.1, r"\[0, 1\]"),
        ({**GOOD, "attention_fraction": "half"}, "sweep.layouts.attention_fraction", "half", r"\[0, 1\]"),
        ({**GOOD, "depth": 0}, "sweep.layouts.depth", 0, "int from 1"),
        ({**GOOD, "depth": [8, -2]}, "sweep.layouts.depth[1]", -2, "int from 1"),
        ({**GOOD, "depth": 8.0}, "sweep.layouts.depth", 8.0, "int from 1"),
        ({**GOOD, "depth": []}, "sweep.layouts.depth", [], "non-empty"),
        ({"attention_fraction": 0.5}, "sweep.layouts.depth", None, "required"),
        ({**GOOD, "recurrent": "A"}, "sweep.layouts.recurrent", "A", "not a recurrent mixer"),
        ({**GOOD, "recurrent": ["M", "F"]}, "sweep.layouts.recurrent[1]", "F", "M, G, R"),
        ({**GOOD, "recurrent": "X"}, "sweep.layouts.recurrent", "X", "M, G, R"),
        ({**GOOD, "recurrent": "mamba2"}, "sweep.layouts.recurrent", "mamba2", "M, G, R"),
        ({**GOOD, "mlp": "yes"}, "sweep.layouts.mlp", "yes", "true or false"),
        ({"depth": 8, "motif": "X-F-A"}, "sweep.layouts.motif", "X-F-A", "F is not allowed"),
        ({"depth": 8, "motif": ["X-A", "X-Q"]}, "sweep.layouts.motif[1]", "X-Q", "bad symbol 'Q'"),
        ({"depth": 8, "motif": "X--A"}, "sweep.layouts.motif", "X--A", "bad symbol ''"),
        ({"depth": 8, "motif": "X-a"}, "sweep.layouts.motif", "X-a", "Did you mean 'A'"),
        ({"depth": 8, "motif": "(X-A)*2"}, "sweep.layouts.motif", "(X-A)*2", "separated by '-'"),
        ({**GOOD, "every_k": 0, "placement": "every_k"}, "sweep.layouts.every_k", 0, "int >= 1"),
        ({**GOOD, "every_k": 3, "placement": "even"}, "sweep.layouts.every_k", [3], "only with placement every_k"),
        ({**GOOD, "placement": "every_k"}, "sweep.layouts.every_k", [], "needs every_k"),
        ({"depth": 8, "every_k": 2, "placement": ["every_k", "last"]}, "sweep.layouts.attention_fraction",
         [], "placement last needs attention_fraction"),
        ({**GOOD, "every_k": 2, "placement": "every_k"}, "sweep.layouts.attention_fraction", [0.5], "unused"),
        ({"depth": 8, "placement": "even"}, "sweep.layouts.placement", ["even"], "only with"),
        ({"depth": 8}, "sweep.layouts", {"depth": [8], "recurrent": ["M"], "mlp": [True]}, "no layout"),
        ({**GOOD, "attention_fraction": [0.5, 0.5]}, "sweep.layouts.attention_fraction", [0.5, 0.5], "once"),
        ({**GOOD, "max_attention_layers": -1}, "sweep.layouts.max_attention_layers", -1, ">= 0"),
        ({**GOOD, "min_attention_layers": 5, "max_attention_layers": 4}, "sweep.layouts.min_attention_layers",
         5, "<= max_attention_layers"),
        ({**GOOD, "max_attention_layers": 3}, "sweep.layouts", None, "no combination can be built"),
        ({"depth": 7, "motif": "X-A"}, "sweep.layouts", None, "not a multiple"),
    ],
)
def test_spec_errors(spec: dict, key: str, value: object, match: str) -> None:
    with pytest.raises(LayoutSpecError, match=match) as e:
        LayoutSpace.from_dict(spec)
    assert e.value.key == key
    assert str(e.value).startswith(key + ":")
    if value is not None:
        assert e.value.value == value


def test_spec_error_suggests_key_and_names_where() -> None:
    with pytest.raises(LayoutSpecError) as e:
        LayoutSpace.from_dict({"depth": 8, "attention_fraction": 0.5, "recurent": "G"}, where="sweep.layouts")
    assert e.value.suggestion == "recurrent"
    assert "Did you mean 'recurrent'?" in str(e.value)
    assert "valid keys: depth, recurrent" in str(e.value)
    with pytest.raises(LayoutSpecError) as e:
        LayoutSpace.from_dict({"depth": 8, "placement": "frist", "attention_fraction": 0.5}, where="x.layouts")
    assert (e.value.key, e.value.suggestion) == ("x.layouts.placement", "first")
    with pytest.raises(LayoutSpecError) as e:
        LayoutSpace.from_dict([8])  # type: ignore[arg-type]
    assert e.value.key == "sweep.layouts"
    with pytest.raises(LayoutSpecError) as e:
        LayoutSpace(depth=[8], attention_fraction=[2.0])  # direct construction is checked too
    assert e.value.key == "LayoutSpace.attention_fraction[0]"


# ---- LayoutSpace.suggest: conditional parameters -----------------------------------------------------

BOTH = LayoutSpace.from_dict(
    {
        "depth": [4, 6, 8],
        "recurrent": ["M", "G", "R"],
        "mlp": [True, False],
        "motif": ["X-A", "M-A", "X-X-A"],
        "attention_fraction": [0.0, 0.25, 0.5, 1.0],
        "placement": ["even", "first", "last", "every_k"],
        "every_k": [2, 3],
    }
)


def fixed(space: LayoutSpace, params: dict) -> tuple[str, set[str]]:
    trial = optuna.trial.FixedTrial(params)
    pattern = space.suggest(trial)
    assert set(trial.params) == set(params), "every given parameter is suggested, and nothing else"
    return pattern, set(trial.params)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        # motif branch: no placement/fraction/every_k; recurrent only if the motif has X
        ({"layout.depth": 8, "layout.mlp": True, "layout.motif": "X-A", "layout.recurrent": "G"}, "(G-F-A-F)*4"),
        ({"layout.depth": 8, "layout.mlp": False, "layout.motif": "M-A"}, "(M-A)*4"),
        # generated branch, fraction placements
        ({"layout.depth": 8, "layout.mlp": True, "layout.motif": None, "layout.placement": "even",
          "layout.attention_fraction": 0.5, "layout.recurrent": "M"}, "(M-F-A-F)*4"),
        ({"layout.depth": 4, "layout.mlp": True, "layout.motif": None, "layout.placement": "last",
          "layout.attention_fraction": 0.25, "layout.recurrent": "R"}, "(R-F)*3-A-F"),
        # all attention: no recurrent position, so no layout.recurrent
        ({"layout.depth": 4, "layout.mlp": True, "layout.motif": None, "layout.placement": "first",
          "layout.attention_fraction": 1.0}, "(A-F)*4"),
        # every_k: no attention_fraction
        ({"layout.depth": 6, "layout.mlp": False, "layout.motif": None, "layout.placement": "every_k",
          "layout.every_k": 3, "layout.recurrent": "G"}, "(G*2-A)*2"),
    ],
)
def test_suggest_fixed_trial_branches(params: dict, expected: str) -> None:
    pattern, _ = fixed(BOTH, params)
    assert pattern == expected


def test_suggest_fixed_trial_missing_or_unused_parameter() -> None:
    base = {"layout.depth": 6, "layout.mlp": False, "layout.motif": None, "layout.placement": "every_k"}
    with pytest.raises(ValueError, match="layout.every_k"):  # the branch needs it
        BOTH.suggest(optuna.trial.FixedTrial(base))
    trial = optuna.trial.FixedTrial({**base, "layout.every_k": 2, "layout.recurrent": "M",
                                     "layout.attention_fraction": 0.5})
    assert BOTH.suggest(trial) == "(M-A)*3"
    assert "layout.attention_fraction" not in trial.params  # given, but not asked for on this branch


def test_suggest_motif_only_and_generated_only_spaces() -> None:
    motif_only = LayoutSpace.from_dict({"depth": 6, "motif": ["X-X-A", "X-A"], "recurrent": ["M", "G"]})
    pattern, keys = fixed(motif_only, {"layout.depth": 6, "layout.mlp": True, "layout.motif": "X-X-A",
                                       "layout.recurrent": "M"})
    assert pattern == "((M-F)*2-A-F)*2"
    assert keys == {"layout.depth", "layout.mlp", "layout.motif", "layout.recurrent"}
    generated_only = LayoutSpace.from_dict({"depth": 8, "attention_fraction": [0.25, 0.5]})
    pattern, keys = fixed(generated_only, {"layout.depth": 8, "layout.mlp": True, "layout.placement": "even",
                                           "layout.attention_fraction": 0.25, "layout.recurrent": "M"})
    assert pattern == "((M-F)*3-A-F)*2"
    assert "layout.motif" not in keys


def test_suggest_raises_infeasible() -> None:
    space = LayoutSpace.from_dict({"depth": [6, 8], "motif": "X-X-X-A"})
    with pytest.raises(LayoutInfeasible, match="not a multiple"):
        space.suggest(optuna.trial.FixedTrial({"layout.depth": 6, "layout.mlp": True, "layout.motif": "X-X-X-A"}))
    space = LayoutSpace.from_dict({"depth": 8, "attention_fraction": [0.25, 0.5], "max_attention_layers": 2,
                                   "min_attention_layers": 1})
    params = {"layout.depth": 8, "layout.mlp": True, "layout.placement": "even", "layout.recurrent": "M"}
    with pytest.raises(LayoutInfeasible, match="4 attention layers; max_attention_layers is 2"):
        space.suggest(optuna.trial.FixedTrial({**params, "layout.attention_fraction": 0.5}))
    assert space.suggest(optuna.trial.FixedTrial({**params, "layout.attention_fraction": 0.25})) == (
        "((M-F)*3-A-F)*2"
    )
    assert space.enumerate() == ["((M-F)*3-A-F)*2"]


def expected_keys(params: dict) -> set[str]:
    """The parameter names the conditional rule asks for, given the values sampled."""
    keys = {"layout.depth", "layout.mlp", "layout.motif"}
    motif = params["layout.motif"]
    if motif is not None:
        has_recurrent = "X" in motif.split("-")
    else:
        keys.add("layout.placement")
        if params["layout.placement"] == "every_k":
            keys.add("layout.every_k")
            has_recurrent = params["layout.every_k"] > 1
        else:
            keys.add("layout.attention_fraction")
            has_recurrent = params["layout.attention_fraction"] < 1.0
    if has_recurrent:
        keys.add("layout.recurrent")
    return keys


@pytest.mark.parametrize(
    ("sampler", "n_trials"),
    [(optuna.samplers.RandomSampler(seed=0), 60), (optuna.samplers.TPESampler(seed=0, n_startup_trials=10), 30)],
    ids=["random", "tpe"],
)
def test_suggest_in_a_real_study(sampler: optuna.samplers.BaseSampler, n_trials: int) -> None:
    def objective(trial: optuna.Trial) -> float:
        try:
            pattern = BOTH.suggest(trial)
        except LayoutInfeasible as e:
            trial.set_user_attr("infeasible", str(e))
            raise optuna.TrialPruned() from e
        trial.set_user_attr("pattern", pattern)
        return float(attention_layers(pattern))

    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=n_trials)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) >= n_trials // 2
    for t in study.trials:
        assert set(t.params) <= set(L.PARAMS)
        if t.state == optuna.trial.TrialState.PRUNED:
            assert "not a multiple" in t.user_attrs["infeasible"]
            continue
        assert set(t.params) == expected_keys(t.params), t.params
        # the parameters alone rebuild the pattern
        assert BOTH.suggest(optuna.trial.FixedTrial(t.params)) == t.user_attrs["pattern"]
        assert t.user_attrs["pattern"] in ALL_BOTH
    branches = {
        "motif" if t.params["layout.motif"] is not None else t.params["layout.placement"] for t in done
    }
    if isinstance(sampler, optuna.samplers.RandomSampler):
        assert branches == {"motif", "even", "first", "last", "every_k"}


# ---- LayoutSpace.enumerate ---------------------------------------------------------------------------

ALL_BOTH = set(BOTH.enumerate())


def test_enumerate_broad_space() -> None:
    out = BOTH.enumerate()
    assert len(out) == len(set(out)) == len({parse(p).canonical for p in out})
    for pattern in out:
        p = parse(pattern)
        assert p.compact == pattern
        assert 4 <= len(mixing(pattern)) <= 8
        assert set(mixing(pattern)) <= {"M", "G", "R", "A"}
    assert {"(M-F-A-F)*2", "(G-A)*3", "M*8", "(A-F)*4", "(M-A)*2", "((R-F)*2-A-F)*2"} <= set(out)
    assert "(M-F-A-F)*3" in out and "(M-A)*4" in out and "(M*2-A)*2" in out
    # every_k 3 at depth 4 leaves a recurrent remainder: M-M-A-M
    assert "M*2-A-M" in out


@pytest.mark.parametrize(("lo", "hi"), [(None, 2), (2, None), (1, 3), (0, 0)])
def test_enumerate_respects_bounds(lo: int | None, hi: int | None) -> None:
    spec = {
        "depth": [4, 8, 12],
        "recurrent": ["M", "G"],
        "mlp": [True, False],
        "attention_fraction": [0.0, 0.1, 0.25, 0.5],
        "placement": ["even", "last", "every_k"],
        "every_k": [2, 4, 6],
        "motif": ["X-A", "X-X-X-A"],
        "min_attention_layers": lo,
        "max_attention_layers": hi,
    }
    out = LayoutSpace.from_dict(spec).enumerate()
    assert out
    for pattern in out:
        n_a = attention_layers(pattern)
        assert (lo is None or n_a >= lo) and (hi is None or n_a <= hi), pattern
    unbounded = set(LayoutSpace.from_dict({**spec, "min_attention_layers": None,
                                           "max_attention_layers": None}).enumerate())
    assert set(out) == {p for p in unbounded
                        if (lo is None or attention_layers(p) >= lo) and (hi is None or attention_layers(p) <= hi)}


def test_enumerate_is_what_suggest_produces() -> None:
    space = LayoutSpace.from_dict({"depth": [4, 6], "mlp": [True, False], "motif": ["X-A", "G-X-A"],
                                   "attention_fraction": [0.5, 1.0], "every_k": [3], "recurrent": ["M", "R"],
                                   "placement": ["first", "every_k"]})
    seen = set()
    for choice in space.choices():
        params = {"layout.depth": choice.depth, "layout.mlp": choice.mlp, "layout.motif": choice.motif,
                  "layout.placement": choice.placement, "layout.attention_fraction": choice.attention_fraction,
                  "layout.every_k": choice.every_k, "layout.recurrent": choice.recurrent}
        try:
            seen.add(space.suggest(optuna.trial.FixedTrial(params)))
        except LayoutInfeasible:
            continue
    assert seen == set(space.enumerate())


# ---- module hygiene ----------------------------------------------------------------------------------


def test_module_imports_only_stdlib_and_blocks() -> None:
    tree = ast.parse(Path(L.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "optuna" not in imported
    assert imported <= {"__future__", "blocks", "collections", "dataclasses", "difflib", "fractions",
                        "itertools", "math", "typing"}

"""Specification tests of ``search_space.budget``: iso-parameter / iso-FLOPs matching of sampled layouts.

The issue: ``budget: {params: 2.0e6, tolerance: 0.02, solve: d_model}`` (or ``solve: mlp``) resizes each
sampled model so that every trial has the same parameter count within the tolerance (d_model or the MLP
width in multiples of ``multiple_of``) and records the achieved count; the same for FLOPs per token.
Toy cases use the bytes tokenizer (vocabulary 260) and seq_len 128; one group mirrors the issue at the
430M scale (samba-421m, d_model 1536, multiples of 64).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from blocks.config import ModelConfig
from blocks.mixers.base import ConfigError
from blocks.mixers.mlp import default_hidden
from blocks.model import resolve_layout
from blocks.summary import describe
from search_space import budget as budget_module
from search_space.budget import Budget, BudgetError, BudgetInfeasible, BudgetMatch, match_budget, measure
from search_space.presets import apply_preset

VOCAB, SEQ = 260, 128
PARAMS, FLOPS = 2.0e6, 4.0e6  # toy targets: ~d_model 190 at the default MLP width
TINY_MIXERS: dict[str, dict[str, Any]] = {
    "M": {"expand": 2, "d_state": 16, "d_conv": 4, "dt_rank": "auto"},
    "A": {"heads": 4, "window": 64},
    "G": {"heads": 1},
    "R": {"heads": 2},
}
# Every layout family a sweep compares (the Samba paper's Table 3 at toy depth).
FAMILIES = {
    "samba": "(M-F-A-F)*2",
    "swa": "(A-F)*4",
    "mamba": "M*8",
    "sliding-gla": "(G-F-A-F)*2",
    "sliding-retnet": "(R-F-A-F)*2",
    "full-attention": "(A[window=null]-F)*4",
    "parallel": "((M|A)-F)*4",
    "mlp2-swa": "(F-F-A-F)*2",
}
WITH_F = [name for name, pattern in FAMILIES.items() if "F" in pattern]
TARGETS = [("params", PARAMS), ("flops_per_token", FLOPS)]


def tiny(pattern: str, **fields: Any) -> dict[str, Any]:
    return {"pattern": pattern, "d_model": 128, "mixers": copy.deepcopy(TINY_MIXERS), **fields}


def check(match: BudgetMatch, budget: Budget, vocab: int = VOCAB, seq_len: int = SEQ) -> dict[str, Any]:
    """The contract every successful match meets; returns the ``describe`` of the returned model."""
    info = describe(ModelConfig(**match.model), vocab_size=vocab, seq_len=seq_len)  # builds: heads divide d
    assert match.metric == budget.metric and match.target == budget.target
    assert match.achieved == info[budget.metric], "the recorded count must be the real modules' count"
    assert match.rel_error == pytest.approx(match.achieved / budget.target - 1)
    assert abs(match.rel_error) <= budget.tolerance
    assert match.d_model == match.model["d_model"] == info["d_model"]
    assert match.d_model % budget.multiple_of == 0
    for layer in resolve_layout(ModelConfig(**match.model))[1]:
        for symbol, cfg in layer.branches:
            if symbol == "A" and cfg.head_dim is None:
                assert match.d_model % cfg.heads == 0 and (match.d_model // cfg.heads) % 2 == 0
    if budget.solve != "d_model":
        assert match.mlp_hidden is not None and match.mlp_hidden % budget.multiple_of == 0
        assert match.model["mixers"]["F"]["hidden"] == match.mlp_hidden
    return info


# ---- hitting the target -------------------------------------------------------------------------------


@pytest.mark.parametrize("solve", ["mlp", "d_model+mlp"])
@pytest.mark.parametrize("metric,target", TARGETS)
@pytest.mark.parametrize("family", WITH_F)
def test_mlp_solves_hit_a_two_percent_target_for_every_family_with_f(
    family: str, metric: str, target: float, solve: str
) -> None:
    budget = Budget(**{metric: target}, tolerance=0.02, solve=solve, multiple_of=8)
    match = match_budget(tiny(FAMILIES[family]), budget, VOCAB, SEQ)
    check(match, budget)
    if solve == "mlp":
        assert match.d_model == 128, "solve: mlp keeps the sampled d_model"


@pytest.mark.parametrize("metric,target", TARGETS)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_d_model_solve_hits_the_target_for_every_family(family: str, metric: str, target: float) -> None:
    # One d_model step of 8 near d=190 moves the count by ~4%, and the default MLP width (8/3·d rounded
    # up to 64) jumps with it, so a d_model-only solve at toy scale needs a looser tolerance than 2%.
    budget = Budget(**{metric: target}, tolerance=0.08, solve="d_model", multiple_of=8)
    match = match_budget(tiny(FAMILIES[family]), budget, VOCAB, SEQ)
    check(match, budget)
    assert match.mlp_hidden is None and match.model["mixers"] == TINY_MIXERS, "only d_model was solved"


def test_d_model_solve_with_a_fixed_mlp_width_hits_two_percent() -> None:
    model = tiny("(M-F-A-F)*2")
    model["mixers"]["F"] = {"hidden": 512}
    budget = Budget(params=PARAMS, tolerance=0.02, solve="d_model", multiple_of=8)
    match = match_budget(model, budget, VOCAB, SEQ)
    check(match, budget)
    assert match.model["mixers"]["F"] == {"hidden": 512} and match.mlp_hidden == 512


def test_d_model_plus_mlp_reaches_a_tolerance_d_model_alone_cannot() -> None:
    model = tiny("(A-F)*4")
    tight = Budget(params=PARAMS, tolerance=0.01, solve="d_model", multiple_of=8)
    with pytest.raises(BudgetInfeasible):
        match_budget(model, tight, VOCAB, SEQ)
    both = Budget(params=PARAMS, tolerance=0.01, solve="d_model+mlp", multiple_of=8)
    match = match_budget(model, both, VOCAB, SEQ)
    check(match, both)
    # its d_model is the largest whose model at the usual MLP width (8/3 d) stays within the target,
    # so the solved MLP keeps a normal shape (at least that default width, give or take one step)
    wider = copy.deepcopy(match.model)
    wider["d_model"] += 8
    wider["mixers"]["F"] = {"hidden": None}
    assert measure(wider, VOCAB, SEQ)["params"] > PARAMS
    assert match.mlp_hidden >= default_hidden(match.d_model) - 8


def test_every_trial_of_a_sweep_lands_on_the_same_budget() -> None:
    budget = Budget.from_dict({"params": 2.0e6, "tolerance": 0.02, "solve": "mlp", "multiple_of": 8})
    achieved = [match_budget(tiny(FAMILIES[f]), budget, VOCAB, SEQ).achieved for f in WITH_F]
    assert max(achieved) / min(achieved) - 1 <= 2 * budget.tolerance


def test_flops_are_counted_at_the_given_seq_len() -> None:
    # full attention's FLOPs/token grow with the context, so a longer seq_len leaves room for less width
    budget = Budget(flops_per_token=FLOPS, tolerance=0.02, solve="mlp", multiple_of=8)
    model = tiny("(A[window=null]-F)*4")
    short = match_budget(model, budget, VOCAB, 128)
    long = match_budget(model, budget, VOCAB, 1024)
    check(long, budget, seq_len=1024)
    assert long.mlp_hidden < short.mlp_hidden


def test_attention_heads_keep_dividing_d_model() -> None:
    # 12 heads with an even head size: only multiples of 24 are valid; the others are skipped, not fatal
    model = tiny("(M-F-A-F)*2")
    model["mixers"]["A"] = {"heads": 12, "window": 64}
    for solve, tol in (("d_model", 0.08), ("d_model+mlp", 0.02)):
        budget = Budget(params=PARAMS, tolerance=tol, solve=solve, multiple_of=8)
        match = match_budget(model, budget, VOCAB, SEQ)
        check(match, budget)
        assert match.d_model % 24 == 0


# ---- what is written back -----------------------------------------------------------------------------


def test_solve_mlp_keeps_explicit_per_occurrence_widths() -> None:
    budget = Budget(params=PARAMS, tolerance=0.02, solve="mlp", multiple_of=8)
    match = match_budget(tiny("(F[hidden=128]-F-A-F)*2"), budget, VOCAB, SEQ)
    info = check(match, budget)
    widths = [layer["params"]["hidden"] for layer in info["layers"] if layer["symbol"] == "F"]
    assert widths == [128, match.mlp_hidden, match.mlp_hidden] * 2
    assert match.mlp_hidden != 128


def test_solve_mlp_writes_into_the_existing_mixers_entry_and_keeps_the_rest() -> None:
    model = tiny("(M-F-A-F)*2", tie_embeddings=False, init="normal", preset=None)
    model["mixers"]["mlp"] = {"hidden": None}  # the registry name instead of the symbol
    before = copy.deepcopy(model)
    match = match_budget(model, Budget(params=PARAMS, solve="mlp", multiple_of=8), VOCAB, SEQ)
    assert model == before, "the input section is not modified"
    assert "F" not in match.model["mixers"] and match.model["mixers"]["mlp"] == {"hidden": match.mlp_hidden}
    rest = {k: v for k, v in match.model.items() if k not in ("mixers", "d_model")}
    assert rest == {k: v for k, v in before.items() if k not in ("mixers", "d_model")}
    assert {k: v for k, v in match.model["mixers"].items() if k != "mlp"} == TINY_MIXERS
    assert abs(match.rel_error) <= 0.02


def test_measure_is_describe() -> None:
    model = tiny("((M|A)-F)*4", d_model=96)
    info = describe(ModelConfig(**model), vocab_size=VOCAB, seq_len=SEQ)
    assert measure(model, VOCAB, SEQ) == {
        "params": info["params"],
        "flops_per_token": info["flops_per_token"],
    }


def test_an_unresolved_preset_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="apply_preset"):
        match_budget({"preset": "tiny-samba"}, Budget(params=PARAMS), VOCAB, SEQ)


# ---- the 430M scale of the issue (multiples of 64) ----------------------------------------------------


@pytest.fixture(scope="module")
def samba421() -> tuple[dict[str, Any], dict[str, float]]:
    model = apply_preset({"preset": "samba-421m"})
    return model, measure(model, 32000, 4096)


@pytest.mark.parametrize("metric", ["params", "flops_per_token"])
@pytest.mark.parametrize("solve,expected", [("d_model", 1536), ("mlp", 4096)])
def test_samba_421m_matched_to_its_own_count_is_itself(
    samba421: tuple[dict[str, Any], dict[str, float]], metric: str, solve: str, expected: int
) -> None:
    model, exact = samba421
    budget = Budget(**{metric: exact[metric]}, tolerance=0.02, solve=solve, multiple_of=64)
    match = match_budget(model, budget, 32000, 4096)
    assert match.achieved == exact[metric] and match.rel_error == 0.0
    assert (match.d_model, match.model["mixers"]["F"]["hidden"]) == (1536, 4096)
    assert (match.d_model if solve == "d_model" else match.mlp_hidden) == expected


@pytest.mark.parametrize("solve", ["mlp", "d_model+mlp"])
def test_samba_421m_at_400m_params_in_multiples_of_64(
    samba421: tuple[dict[str, Any], dict[str, float]], solve: str
) -> None:
    budget = Budget.from_dict({"params": 4.0e8, "tolerance": 0.02, "solve": solve, "multiple_of": 64})
    match = match_budget(samba421[0], budget, 32000, 4096)
    check(match, budget, vocab=32000, seq_len=4096)
    assert match.d_model % 192 == 0, "12 heads of even size and multiples of 64"


def test_samba_421m_d_model_alone_skips_widths_12_heads_do_not_divide(
    samba421: tuple[dict[str, Any], dict[str, float]],
) -> None:
    budget = Budget(params=4.0e8, tolerance=0.02, solve="d_model", multiple_of=64)
    with pytest.raises(BudgetInfeasible) as e:
        match_budget(samba421[0], budget, 32000, 4096)
    message = str(e.value)
    # 1408 and 1472 are multiples of 64 between them, but 12 heads do not divide them
    assert "at d_model=1344" in message and "at d_model=1536" in message
    assert "solve: d_model+mlp" in message


def test_matching_costs_a_handful_of_builds(
    samba421: tuple[dict[str, Any], dict[str, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a search, not a scan: 2048 d_model candidates at multiple_of 8, and the 421M model stays cheap
    builds = []
    real = budget_module.build_meta
    monkeypatch.setattr(budget_module, "build_meta", lambda *a, **k: builds.append(1) or real(*a, **k))
    for solve in ("d_model", "mlp", "d_model+mlp"):
        builds.clear()
        match_budget(tiny("(M-F-A-F)*2"), Budget(params=PARAMS, solve=solve, multiple_of=8), VOCAB, SEQ)
        assert len(builds) <= 16, (solve, len(builds))
    builds.clear()
    match_budget(samba421[0], Budget(params=4.0e8, solve="d_model+mlp", multiple_of=64), 32000, 4096)
    assert len(builds) <= 20


# ---- infeasible targets -------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["M*8", "(M-F[hidden=64])*2"])
def test_solving_the_mlp_needs_a_free_f(pattern: str) -> None:
    with pytest.raises(
        BudgetInfeasible,
        match=r"solve: mlp needs an F sublayer without an explicit hidden=; use solve: d_model",
    ):
        match_budget(tiny(pattern), Budget(params=PARAMS, solve="mlp", multiple_of=8), VOCAB, SEQ)


def test_a_layout_without_a_free_f_that_already_fits_is_kept_as_it_is() -> None:
    model = tiny("M*8")
    size = measure(model, VOCAB, SEQ)["params"]
    budget = Budget(params=size * 1.01, tolerance=0.02, solve="mlp", multiple_of=8)
    match = match_budget(model, budget, VOCAB, SEQ)
    assert match.model == model and match.achieved == size and match.mlp_hidden is None
    assert match.rel_error == pytest.approx(1 / 1.01 - 1)


@pytest.mark.parametrize("pattern", ["M*8", "(M-F[hidden=64])*2"])
def test_d_model_plus_mlp_without_a_free_f_solves_d_model_alone(pattern: str) -> None:
    both = Budget(params=PARAMS, tolerance=0.05, solve="d_model+mlp", multiple_of=4)
    alone = Budget(params=PARAMS, tolerance=0.05, solve="d_model", multiple_of=4)
    match = match_budget(tiny(pattern), both, VOCAB, SEQ)
    check(match, alone)
    assert match.model == match_budget(tiny(pattern), alone, VOCAB, SEQ).model


def test_between_two_candidates_the_message_gives_both_sides_and_the_fixes() -> None:
    model = tiny("(A-F)*4")
    budget = Budget(params=PARAMS, tolerance=0.02, solve="d_model", multiple_of=8)
    with pytest.raises(BudgetInfeasible) as e:
        match_budget(model, budget, VOCAB, SEQ)
    message = str(e.value)
    below = re.search(r"below: ([\d,]+) \(-[\d.]+%\) at d_model=(\d+)", message)
    above = re.search(r"above: ([\d,]+) \(\+[\d.]+%\) at d_model=(\d+)", message)
    assert below and above, message
    assert int(above.group(2)) - int(below.group(2)) == 8
    for side in (below, above):
        assert (
            int(side.group(1).replace(",", ""))
            == measure({**model, "d_model": int(side.group(2))}, VOCAB, SEQ)["params"]
        )
    assert "a smaller multiple_of than 8" in message and "solve: d_model+mlp" in message
    tolerance = float(re.search(r"a tolerance of at least ([\d.]+)", message).group(1))  # type: ignore[union-attr]
    match = match_budget(model, Budget(params=PARAMS, tolerance=tolerance, multiple_of=8), VOCAB, SEQ)
    assert match.d_model in (int(below.group(2)), int(above.group(2))), "the suggested tolerance is enough"


def test_a_target_below_the_smallest_model() -> None:
    with pytest.raises(
        BudgetInfeasible, match=r"below: none .*above: [\d,]+ .* at d_model=8\..*a larger target"
    ):
        match_budget(tiny("(M-F-A-F)*2"), Budget(params=1.0e3, multiple_of=8), VOCAB, SEQ)


def test_a_target_beyond_the_widest_mlp() -> None:
    with pytest.raises(
        BudgetInfeasible, match=r"at d_model=128\. .*above: none .*solve: d_model or d_model\+mlp"
    ):
        match_budget(tiny("(M-F-A-F)*2"), Budget(params=1.0e9, solve="mlp", multiple_of=8), VOCAB, SEQ)


def test_no_valid_width_at_all_reports_the_mixer_error() -> None:
    model = tiny("A-F")
    model["mixers"]["A"] = {"heads": 40000}
    with pytest.raises(
        BudgetInfeasible, match=r"no d_model in multiples of 64 .* valid model .*'heads'=40000"
    ):
        match_budget(model, Budget(params=PARAMS), VOCAB, SEQ)


# ---- the budget spec ----------------------------------------------------------------------------------


def test_from_dict_defaults_and_normalisation() -> None:
    b = Budget.from_dict({"params": 2000000})
    assert b == Budget(params=2.0e6, tolerance=0.02, solve="d_model", multiple_of=64)
    assert isinstance(b.params, float) and (b.metric, b.target) == ("params", 2.0e6)
    f = Budget.from_dict(
        {"flops_per_token": 4.0e6, "solve": "d_model+mlp", "multiple_of": 8, "tolerance": 0.01}
    )
    assert (f.metric, f.target, f.solve, f.multiple_of, f.tolerance) == (
        "flops_per_token",
        4.0e6,
        "d_model+mlp",
        8,
        0.01,
    )


@pytest.mark.parametrize(
    "spec,message",
    [
        (
            {"params": 2.0e6, "tolerence": 0.02},
            r"unknown key 'tolerence'; valid keys: .*Did you mean 'tolerance'",
        ),
        ({"params": 2.0e6, "flops": 1.0e6}, r"unknown key 'flops'.*flops_per_token"),
        (
            {"params": 2.0e6, "flops_per_token": 4.0e6},
            r"set exactly one of 'params' and 'flops_per_token'.*got both",
        ),
        ({"tolerance": 0.02}, r"set exactly one of 'params' and 'flops_per_token'.*got neither"),
        ({}, r"set exactly one.*got neither"),
        ({"params": 2.0e6, "tolerance": 0}, r"field 'tolerance' must be a relative error in \(0, 1\).*got 0"),
        ({"params": 2.0e6, "tolerance": -0.02}, r"field 'tolerance'"),
        ({"params": 2.0e6, "tolerance": 2}, r"field 'tolerance'"),
        ({"params": 2.0e6, "tolerance": True}, r"field 'tolerance'"),
        (
            {"params": 2.0e6, "solve": "width"},
            r"field 'solve' must be one of d_model, mlp, d_model\+mlp; got 'width'",
        ),
        ({"params": 2.0e6, "solve": "d_model+MLP"}, r"field 'solve'.*Did you mean 'd_model\+mlp'"),
        ({"params": 2.0e6, "multiple_of": 0}, r"field 'multiple_of' must be an int >= 1"),
        ({"params": 2.0e6, "multiple_of": -64}, r"field 'multiple_of'"),
        ({"params": 2.0e6, "multiple_of": 6.4}, r"field 'multiple_of'"),
        ({"params": 2.0e6, "multiple_of": True}, r"field 'multiple_of'"),
        ({"params": "2e6"}, r"field 'params' .*string '2e6'.*params: 2.0e6"),
        ({"params": -1.0}, r"field 'params' must be a positive finite number"),
        ({"flops_per_token": float("inf")}, r"field 'flops_per_token' must be a positive finite number"),
    ],
)
def test_bad_specs_name_the_key_and_the_fix(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(BudgetError, match=r"^sweep\.budget: " + message):
        Budget.from_dict(spec)


def test_bad_specs_elsewhere() -> None:
    with pytest.raises(BudgetError, match=r"^sweeps/configs/x\.yaml:budget must be a mapping"):
        Budget.from_dict([2.0e6], where="sweeps/configs/x.yaml:budget")  # type: ignore[arg-type]
    with pytest.raises(BudgetError, match=r"^Budget: field 'solve'"):
        Budget(params=2.0e6, solve="depth")
    assert issubclass(BudgetError, ValueError) and issubclass(BudgetInfeasible, ValueError)

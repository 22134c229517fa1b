"""The compiled search space: conditional per-mixer parameters, presets, budget matching, constraints,
infeasible samples and the canonical identity that makes duplicate samples one trial."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import FixedTrial

from blocks.config import ModelConfig
from blocks.summary import describe
from search_space.space import SearchSpace, SpaceError

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = {
    "model": {"pattern": "M-F", "d_model": 64, "mixers": {"A": {"heads": 2, "window": 32}}},
    "data": {"seq_len": 64},
    "train": {"lr": 1e-3},
}
VOCAB = 259


def _space(**kw) -> SearchSpace:  # type: ignore[no-untyped-def]
    return SearchSpace(BASE, vocab_size=VOCAB, seq_len=64, **kw)


def _count(overrides: dict, base: dict = BASE) -> int:
    model = {**base["model"], "pattern": overrides["model.pattern"]}
    model["d_model"] = overrides.get("model.d_model", model["d_model"])
    mixers = {k: dict(v) for k, v in model.get("mixers", {}).items()}
    for key, value in overrides.items():
        parts = key.split(".")
        if parts[:2] == ["model", "mixers"]:
            mixers.setdefault(parts[2], {})[parts[3]] = value
    model["mixers"] = mixers
    return describe(ModelConfig(**model), vocab_size=VOCAB, seq_len=64)["params"]


def test_mixer_parameters_are_suggested_only_when_the_mixer_is_in_the_layout() -> None:
    space = _space(
        patterns=["M-F", "A-F"],
        space={"model.mixers.A.window": {"choices": [16, 32]}, "model.mixers.M.d_state": {"choices": [8, 16]},
               "train.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
    )
    s = space.sample(FixedTrial({"model.pattern": "M-F", "model.mixers.M.d_state": 8, "train.lr": 1e-3}))
    assert s.infeasible is None
    assert s.overrides == {"model.pattern": "M-F", "model.mixers.M.d_state": 8, "train.lr": 1e-3}
    s = space.sample(FixedTrial({"model.pattern": "A-F", "model.mixers.A.window": 16, "train.lr": 1e-3}))
    assert "model.mixers.M.d_state" not in s.overrides and s.overrides["model.mixers.A.window"] == 16
    # FixedTrial raises when asked for a value it was not given: a suggestion outside the branch fails here
    with pytest.raises(ValueError):
        space.sample(FixedTrial({"model.pattern": "A-F", "train.lr": 1e-3}))

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(25):
        trial = study.ask()
        sample = space.sample(trial)
        study.tell(trial, 0.0)
        keys = set(study.trials[-1].params)
        pattern = sample.overrides["model.pattern"]
        seen.add(pattern)
        assert ("model.mixers.A.window" in keys) == ("A" in pattern)
        assert ("model.mixers.M.d_state" in keys) == ("M" in pattern)
        assert "train.lr" in keys
    assert seen == {"M-F", "A-F"}


def test_mixer_keys_by_registry_name_are_the_symbol_keys() -> None:
    space = _space(patterns=["A-F"], space={"model.mixers.swa.window": {"choices": [16]}})
    s = space.sample(FixedTrial({"model.pattern": "A-F", "model.mixers.A.window": 16}))
    assert s.overrides["model.mixers.A.window"] == 16


def test_generated_layouts_sample_valid_patterns() -> None:
    space = _space(layouts={"depth": [2, 4], "recurrent": ["M", "G"], "attention_fraction": [0.0, 0.5], "mlp": [True, False]},
                   space={"model.mixers.G.heads": {"choices": [1, 2]}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        s = space.sample(trial)
        study.tell(trial, 0.0)
        assert s.infeasible is None, s.infeasible
        assert ("model.mixers.G.heads" in study.trials[-1].params) == ("G" in s.overrides["model.pattern"])


def test_budget_matching_resizes_every_sample_to_the_target() -> None:
    target = 400_000
    space = _space(
        patterns=["(M-F)*2", "(A-F)*2", "(M-F-A-F)*2", "(G-F-R-F)*2"],
        budget={"params": target, "tolerance": 0.03, "solve": "d_model+mlp", "multiple_of": 16},
    )
    for pattern in space.patterns:
        s = space.sample(FixedTrial({"model.pattern": pattern}))
        assert s.infeasible is None, (pattern, s.infeasible)
        achieved = _count(s.overrides)
        assert abs(achieved - target) / target <= 0.03, (pattern, achieved)
        assert s.facts["budget"]["achieved"] == achieved == s.facts["params"]


def test_a_budget_no_layout_can_meet_is_an_infeasible_sample_with_the_reason() -> None:
    space = _space(patterns=["M"], budget={"params": 123_457, "tolerance": 0.0001, "solve": "mlp"})
    s = space.sample(FixedTrial({"model.pattern": "M"}))
    assert s.key is None and s.infeasible.startswith("budget:") and "mlp" in s.infeasible


def test_constraints_make_samples_infeasible_before_they_run() -> None:
    space = _space(patterns=["M-F", "(A-F)*3"], constraints={"max_attention_layers": 2, "max_params": 10**6})
    assert space.sample(FixedTrial({"model.pattern": "M-F"})).infeasible is None
    s = space.sample(FixedTrial({"model.pattern": "(A-F)*3"}))
    assert "3 attention layers > max_attention_layers 2" in s.infeasible
    # divisibility: 3 heads do not divide d_model 64
    space = _space(patterns=["A-F"], space={"model.mixers.A.heads": {"choices": [3]}})
    s = space.sample(FixedTrial({"model.pattern": "A-F", "model.mixers.A.heads": 3}))
    assert s.infeasible is not None and "heads" in s.infeasible


def test_the_platform_validation_hook_rejects_samples() -> None:
    def too_long_window(plain: dict) -> None:
        if plain["model"]["mixers"]["A"]["window"] > plain["data"]["seq_len"]:
            raise ValueError("window longer than the sequence")

    space = _space(patterns=["A-F"], space={"model.mixers.A.window": {"choices": [32, 128]}}, validate=too_long_window)
    assert space.sample(FixedTrial({"model.pattern": "A-F", "model.mixers.A.window": 32})).infeasible is None
    s = space.sample(FixedTrial({"model.pattern": "A-F", "model.mixers.A.window": 128}))
    assert s.infeasible == "config: window longer than the sequence"


def test_samples_of_the_same_canonical_model_share_a_key() -> None:
    space = _space(
        patterns=["(M-F)*2", "M-F-M-F", "(M-F-A-F)*1", "mamba-mlp-swa-mlp"],
        space={"model.mixers.A.window": {"choices": [16, 32]}},
    )
    k1 = space.sample(FixedTrial({"model.pattern": "(M-F)*2"})).key
    k2 = space.sample(FixedTrial({"model.pattern": "M-F-M-F"})).key
    assert k1 == k2
    a = space.sample(FixedTrial({"model.pattern": "(M-F-A-F)*1", "model.mixers.A.window": 32})).key
    b = space.sample(FixedTrial({"model.pattern": "mamba-mlp-swa-mlp", "model.mixers.A.window": 32})).key
    c = space.sample(FixedTrial({"model.pattern": "(M-F-A-F)*1", "model.mixers.A.window": 16})).key
    assert a == b != c
    # a window equal to the base's default (32) written per occurrence is the same model
    d = SearchSpace(BASE, patterns=["M-F-A[window=32]-F"], vocab_size=VOCAB).sample(
        FixedTrial({"model.pattern": "M-F-A[window=32]-F"})).key
    assert d == a


def test_generated_layouts_that_coincide_share_a_key() -> None:
    space = _space(layouts={"depth": 2, "recurrent": ["M", "G"], "attention_fraction": [1.0], "mlp": True})
    keys = set()
    for rec in ("M", "G"):
        params = {"layout.depth": 2, "layout.recurrent": rec, "layout.mlp": True, "layout.attention_fraction": 1.0,
                  "layout.placement": "even"}
        trial = FixedTrial(params)
        try:
            s = space.sample(trial)
        except ValueError:  # the generator does not ask for a recurrent mixer when every layer is attention
            s = space.sample(FixedTrial({k: v for k, v in params.items() if k != "layout.recurrent"}))
        keys.add(s.key)
    assert len(keys) == 1


def test_presets_are_sampled_with_their_own_model_and_matched_to_one_budget() -> None:
    space = SearchSpace(
        {"model": {"pattern": "M", "d_model": 128, "backend": "reference", "mixers": {}}, "data": {"seq_len": 128}},
        presets=["tiny-samba", "tiny-llama2-swa", {"preset": "tiny-mamba", "init": "normal"}],
        budget={"params": 755_000, "tolerance": 0.02, "solve": "mlp", "multiple_of": 8},
        vocab_size=VOCAB, seq_len=128,
    )
    assert space.preset_labels[2] == 'tiny-mamba {"init": "normal"}'
    for label in space.preset_labels:
        s = space.sample(FixedTrial({"model.preset": label}))
        assert s.infeasible is None, (label, s.infeasible)
        assert abs(s.facts["params"] - 755_000) / 755_000 <= 0.02
        assert "model.backend" not in s.overrides  # the sweep's backend wins over the preset's
    s = space.sample(FixedTrial({"model.preset": "tiny-llama2-swa"}))
    assert s.overrides["model.pattern"] == "(A-F)*12" and s.overrides["model.tie_embeddings"] is False
    assert s.overrides["model.preset"] == "tiny-llama2-swa"  # kept as the trial's label
    nope = space.sample(FixedTrial({"model.preset": "tiny-samba"})).key
    assert nope != SearchSpace(
        {"model": {"pattern": "M", "d_model": 128, "mixers": {}}, "data": {"seq_len": 128}}, presets=["tiny-samba-nope"],
        budget={"params": 755_000, "tolerance": 0.02, "solve": "mlp", "multiple_of": 8}, vocab_size=VOCAB, seq_len=128,
    ).sample(FixedTrial({"model.preset": "tiny-samba-nope"})).key  # same pattern, RoPE off: another model


def test_listed_layouts_are_the_configs_known_before_sampling() -> None:
    """Each listed pattern (or preset) at the base values, budget applied: what a sweep warms first."""
    space = _space(
        patterns=["(M-F)*2", "(A-F)*2"],
        space={"model.mixers.A.window": {"choices": [8, 16]}},
        budget={"params": 400_000, "tolerance": 0.03, "solve": "d_model+mlp", "multiple_of": 16},
    )
    listed = space.listed_layouts()
    assert [plain["model"]["pattern"] for plain, _ in listed] == ["(M-F)*2", "(A-F)*2"]
    for plain, sample in listed:
        assert plain["model"]["d_model"] == sample.overrides["model.d_model"] != BASE["model"]["d_model"]
        assert plain["model"]["mixers"]["A"]["window"] == 32  # sampled keys keep their base values
        assert abs(sample.facts["params"] - 400_000) / 400_000 <= 0.03
    presets = SearchSpace(
        {"model": {"pattern": "M", "d_model": 128, "mixers": {}}, "data": {"seq_len": 128}},
        presets=["tiny-samba", "tiny-mamba"], vocab_size=VOCAB, seq_len=128,
    ).listed_layouts()
    assert [plain["model"]["preset"] for plain, _ in presets] == ["tiny-samba", "tiny-mamba"]
    generated = {"depth": 2, "attention_fraction": [0.5]}
    assert SearchSpace(BASE, layouts=generated, vocab_size=VOCAB, seq_len=64).listed_layouts() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patterns": ["M"], "layouts": {"depth": 2}}, "one of patterns, presets or layouts"),
        ({"patterns": ["M-Q"]}, "sweep.patterns[0]"),
        ({"presets": ["tiny-sambaa"]}, "tiny-samba"),
        ({"space": {"model.mixers.A.windw": {"choices": [1]}}}, "did you mean 'window'"),
        ({"space": {"train.lr": {"low": 1, "high": 0}}}, "low must be < high"),
        ({"space": {"model.pattern": {"choices": ["M"]}}}, "sweep.patterns"),
        ({"space": {"model.d_model": {"choices": [64]}}, "budget": {"params": 1e5, "solve": "d_model"}}, "budget.solve"),
        ({"constraints": {"max_param": 5}}, "did you mean 'max_params'"),
        ({"budget": {"params": 1e5, "solve": "depth"}}, "solve"),
        ({"layouts": {"depth": 2, "placement": "middle"}}, "placement"),
    ],
)
def test_bad_specs_name_the_key_and_the_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(SpaceError) as e:
        _space(**kwargs)
    assert message in str(e.value)


def test_the_start_up_summary_names_every_dimension() -> None:
    space = _space(layouts={"depth": [2, 4], "attention_fraction": [0.0, 0.5]},
                   space={"model.mixers.A.window": {"choices": [16, 32]}},
                   budget={"params": 2e5, "tolerance": 0.05, "solve": "mlp", "multiple_of": 8},
                   constraints={"max_attention_layers": 1})
    lines = space.describe_dims()
    assert lines[0].startswith("layouts: ") and lines[0].endswith("distinct generated layouts")
    assert "model.mixers.A.window: [16, 32]" in lines
    assert "budget: params 200,000 ± 5.0% (solve mlp)" in lines
    assert "constraints: max_attention_layers 1" in lines


def test_the_space_is_an_optuna_define_by_run_function() -> None:
    space = _space(patterns=["M-F", "(A-F)*3"], constraints={"max_attention_layers": 2})
    assert space(FixedTrial({"model.pattern": "M-F"}))["model.pattern"] == "M-F"
    with pytest.raises(ValueError, match="infeasible sample: constraint: 3 attention layers"):
        space(FixedTrial({"model.pattern": "(A-F)*3"}))

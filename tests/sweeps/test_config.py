"""Config loading and validation: every mistake fails before Ray starts, naming the key and the fix."""

from __future__ import annotations

import pytest

from sweeps.config import ConfigLoadError, RunConfig, from_plain, load_config, packaged_config, to_plain


def test_packaged_configs_load() -> None:
    layouts = {"quickstart": "patterns", "samba_ablation": "presets", "layout_search": "layouts", "gpu_pack": "patterns"}
    for name, source in layouts.items():
        cfg = load_config(name)  # validates the search space too, feasibility included
        assert isinstance(cfg, RunConfig)
        assert getattr(cfg.sweep, source), (name, source)
    assert load_config("samba_ablation").sweep.budget["params"] == 754700
    assert load_config("layout_search").sweep.objectives == {"val/ppl": "min", "perf/tokens_per_s": "max"}
    assert packaged_config("quickstart").name == "quickstart.yaml"
    packed = load_config("gpu_pack").sweep
    assert (packed.gpus_per_trial, packed.max_concurrent, len(set(packed.patterns))) == (0.25, 4, 12)


def test_overrides_apply_on_top_of_the_file() -> None:
    cfg = load_config("quickstart", ["train.steps=7", "model.mixers.A.window=32", "data.eval_lengths=[128,256]"])
    assert cfg.train.steps == 7
    assert cfg.model.mixers["A"]["window"] == 32
    assert cfg.data.eval_lengths == [128, 256]


def test_round_trip_through_plain_dicts() -> None:
    cfg = load_config("quickstart")
    assert from_plain(to_plain(cfg)) == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.stpes=3"], r"unknown config key 'train.stpes'. Did you mean 'steps'\?"),
        (["model.d_model=abc"], r"model.d_model: Value 'abc'"),
        (["train.steps"], r"key=value"),
        (["model.pattern=M-A[heads=3]", "model.d_model=64"], r"pattern layer 1 \(A\), d_model=64.*heads"),
        (["model.pattern=M-X"], r"unknown mixer 'X'"),
        (["model.mixers.A.windw=3"], r"unknown key 'windw'.*Did you mean 'window'"),
        (["model.mixers.A.window=4096"], r"window=4096 is longer than the longest evaluation length 512"),
        (["data.eval_lengths=[64,128]"], r"data.eval_lengths must be all >= seq_len \(128\)"),
        (["data.source=stdlb"], r"Did you mean 'stdlib'"),
        (["train.precision=fp16"], r"train.precision must be auto, fp32 or bf16"),
        (["sweep.patterns=[M-F,(A-F]"], r"sweep.patterns\[1\]"),
        (['sweep.patterns=["M-F","A[window=1024]-F"]'], r"sweep.patterns\[1\].*window=1024 is longer"),
        (["sweep.patterns=[M-F,A[window=1024]-F]"], r"could not parse .* quote values"),
        (["sweep.space={train.lrr: {low: 0.001, high: 0.01}}"], r"'train.lrr' is not a config key"),
        (["sweep.space={train.lr: {low: 0.01, high: 0.001}}"], r"low must be < high"),
        (["sweep.cpus_per_trial=0"], r"sweep.cpus_per_trial must be > 0"),
        (["sweep.name=a b"], r"sweep.name must be letters"),
        (["train.loss_chunk=0"], r"train.loss_chunk must be an int >= 1 or null"),
    ],
)
def test_mistakes_are_reported_with_key_and_fix(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigLoadError, match=message):
        load_config("quickstart", overrides)


def test_unknown_config_file() -> None:
    with pytest.raises(ConfigLoadError, match="neither a file nor a packaged config"):
        load_config("no_such_config")

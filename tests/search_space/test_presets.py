"""Tests of ``search_space.presets`` against samba-facts.md §1.2 (layer orders) and §2.2 (parameter counts)."""

from __future__ import annotations

import copy

import pytest
import torch

from blocks.config import ModelConfig
from blocks.mixers.base import ConfigError
from blocks.model import HybridLM, resolve_layout
from blocks.summary import describe
from search_space import presets as P

# samba-facts §2.2: exact count of the official config (millions) and whether it ties the embedding.
# Mamba-SWA-MLP's labels are "400M" and "1.3B"; the official configs have 395.0M and 1239.4M.
PAPER = {
    "samba-421m": (421.8, True),
    "samba-nope-421m": (421.8, True),
    "llama2-438m": (438.1, False),
    "llama2-swa-438m": (438.1, False),
    "mamba-432m": (432.8, True),
    "sliding-gla-438m": (438.3, False),
    "sliding-retnet-446m": (445.6, True),
    "mamba-swa-mlp-400m": (395.0, True),
    "mlp2-swa-mlp-417m": (417.2, True),
    "samba-1.3b": (1330.2, True),
    "samba-nope-1.3b": (1330.2, True),
    "llama2-1.3b": (1347.8, True),
    "llama2-swa-1.3b": (1347.8, True),
    "mamba-1.3b": (1334.7, True),
    "sliding-gla-1.2b": (1220.9, True),
    "sliding-retnet-1.4b": (1411.5, True),
    "mamba-swa-mlp-1.3b": (1239.4, True),
    "mlp2-swa-mlp-1.3b": (1316.0, True),
    "mamba-mlp-full11-449m": (449.2, True),
    "mamba-mlp-full5-449m": (449.2, True),
    "mamba-mlp-full0-449m": (449.2, True),
    "mamba-mlp-full1-5-443m": (443.7, True),
    "llama2-swa-gqa2-419m": (419.2, False),
    "llama2-swa-mqa6-419m": (419.2, False),
    "llama2-swa-mqa-414m": (414.5, False),
    "llama2-swa-gqa4-428m": (428.6, False),
    "samba-gqa2-426m": (426.5, True),
    "samba-mqa6-426m": (426.5, True),
    "samba-mqa-424m": (424.2, True),
    "samba-gqa4-431m": (431.2, True),
}

# Table 5: the Blocks (of 12 mixer+MLP Blocks) whose mixer is full attention.
FULL_ATTENTION_BLOCKS = {
    "mamba-mlp-full11-449m": [11],
    "mamba-mlp-full5-449m": [5],
    "mamba-mlp-full0-449m": [0],
    "mamba-mlp-full1-5-443m": [1, 5],
}

# Table 6: (query heads, KV heads).
HEADS = {"gqa2": (12, 2), "mqa6": (6, 1), "mqa": (12, 1), "gqa4": (12, 4)}

TINY_VOCAB = 259


def _paper_arch(name: str) -> str:
    return P.PRESETS[name].architecture


@pytest.fixture(scope="module")
def rows() -> dict[str, dict]:
    return {row["name"]: row for row in P.presets_table()}


def _symbols(cfg: ModelConfig) -> list[str]:
    return [layer.symbols for layer in resolve_layout(cfg)[1]]


def test_every_paper_preset_is_present_and_named_by_architecture_and_size() -> None:
    paper = {n for n, p in P.PRESETS.items() if p.scale != "tiny"}
    assert paper == set(PAPER)
    for name, preset in P.PRESETS.items():
        assert preset.name == name
        if preset.scale == "tiny":
            assert name == f"tiny-{preset.architecture}"
            assert preset.paper_params is None and preset.model.vocab_size is None
        else:
            assert name.startswith(f"{preset.architecture}-") and preset.scale in ("430m", "1.3b")
            assert preset.model.vocab_size == 32000
            assert preset.source.startswith("Samba paper Table") and "microsoft/Samba config" in preset.source
            assert preset.paper_label and name.endswith(preset.paper_label.lower())
    assert {p.architecture for p in P.PRESETS.values() if p.scale == "tiny"} == {
        p.architecture for p in P.PRESETS.values() if p.scale != "tiny"
    }
    assert P.preset_names() == list(P.PRESETS)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_parameter_count_within_one_percent(name: str, rows: dict[str, dict]) -> None:
    expected_m, _ = PAPER[name]
    row = rows[name]
    assert row["paper_params"] == pytest.approx(expected_m * 1e6)
    assert row["params"] == pytest.approx(expected_m * 1e6, rel=0.01), f"{name}: {row['params'] / 1e6:.1f}M"
    assert round(row["params"] / 1e6, 1) == expected_m, "the modules' count should round to §2.2's figure"
    assert row["deviation"] == pytest.approx(row["params"] / (expected_m * 1e6) - 1)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_tie_and_init_follow_the_official_config(name: str) -> None:
    cfg = P.PRESETS[name].model
    assert cfg.tie_embeddings is PAPER[name][1]
    assert cfg.init == ("mamba" if cfg.tie_embeddings else "normal")


def test_layer_orders_and_mixer_settings() -> None:
    def layers(name: str):
        return resolve_layout(P.PRESETS[name].model)[1]

    assert _symbols(P.PRESETS["samba-421m"].model) == ["M", "F", "A", "F"] * 6
    assert _symbols(P.PRESETS["samba-1.3b"].model) == ["M", "F", "A", "F"] * 9
    assert _symbols(P.PRESETS["mamba-432m"].model) == ["M"] * 60
    assert _symbols(P.PRESETS["mamba-1.3b"].model) == ["M"] * 48
    assert _symbols(P.PRESETS["llama2-1.3b"].model) == ["A", "F"] * 20
    assert _symbols(P.PRESETS["mamba-swa-mlp-400m"].model) == ["M", "A", "F"] * 8
    assert _symbols(P.PRESETS["mamba-swa-mlp-1.3b"].model) == ["M", "A", "F"] * 12
    assert _symbols(P.PRESETS["sliding-gla-1.2b"].model) == ["G", "F", "A", "F"] * 9
    assert _symbols(P.PRESETS["sliding-retnet-446m"].model) == ["R", "F", "A", "F"] * 6

    for name in PAPER:
        for layer in layers(name):
            symbol, conf = layer.branches[0]
            if symbol == "A":
                scale_heads = 12 if P.PRESETS[name].scale == "430m" else 18
                variant = name.split("-")[-2]
                heads, kv = HEADS.get(variant, (scale_heads, None))
                assert (conf.heads, conf.kv_heads) == (heads, kv), name
                assert conf.rope is ("nope" not in name), name
                full = (
                    name.startswith("llama2-") and "swa" not in name
                    or layer.index // 2 in FULL_ATTENTION_BLOCKS.get(name, [])
                )
                assert conf.window == (None if full else 2048), (name, layer.index)
            if symbol == "G":
                assert (conf.heads, conf.key_expand, conf.value_expand) == (P.PRESETS[name].model.d_model // 384, 0.5, 1.0)
            if symbol == "R":
                assert (conf.heads, conf.key_expand, conf.value_expand) == ((12 if "446m" in name else 18) // 2, 1.0, 2.0)

    mlp2 = layers("mlp2-swa-mlp-417m")
    assert [layer.branches[0][1].hidden for layer in mlp2 if layer.symbols == "F"][:3] == [3072, 4096, 4096]
    assert {layer.branches[0][1].hidden for layer in layers("samba-gqa4-431m") if layer.symbols == "F"} == {4608}
    for name, blocks in FULL_ATTENTION_BLOCKS.items():
        symbols = _symbols(P.PRESETS[name].model)
        assert symbols[1::2] == ["F"] * 12
        assert [i for i, s in enumerate(symbols[0::2]) if s == "A"] == blocks


def test_tiny_presets_keep_the_paper_layer_order() -> None:
    for preset in P.PRESETS.values():
        if preset.scale != "tiny" or preset.architecture == "mamba":
            continue
        paper = next(p for p in P.PRESETS.values() if p.scale == "430m" and p.architecture == preset.architecture)
        assert _symbols(preset.model) == _symbols(paper.model), preset.name
        assert preset.model.tie_embeddings is paper.model.tie_embeddings, preset.name
    assert _symbols(P.PRESETS["tiny-mamba"].model) == ["M"] * 23


def test_tiny_presets_build_and_run_on_cpu(rows: dict[str, dict]) -> None:
    tiny = [p for p in P.PRESETS.values() if p.scale == "tiny"]
    assert len(tiny) == len({p.architecture for p in P.PRESETS.values()})
    idx = torch.randint(0, TINY_VOCAB, (2, 32))
    for preset in tiny:
        model = HybridLM(preset.model, vocab_size=TINY_VOCAB)
        assert model.num_params() < 2_000_000, preset.name
        assert model.num_params() == rows[preset.name]["params"], preset.name
        model.set_backend("reference", "cpu")
        with torch.no_grad():
            logits = model(idx)
        assert logits.shape == (2, 32, TINY_VOCAB), preset.name
        assert torch.isfinite(logits).all(), preset.name


def test_presets_table_rows_and_format(rows: dict[str, dict]) -> None:
    assert list(rows) == P.preset_names()
    keys = {"name", "pattern", "d_model", "params", "paper_params", "source", "tie_embeddings"}
    for row in rows.values():
        assert keys <= set(row)
    assert rows["samba-421m"]["n_layers"] == 24
    assert rows["tiny-samba"]["vocab_size"] == TINY_VOCAB
    assert rows["llama2-438m"]["non_embedding_params"] == rows["llama2-438m"]["params"] - 2 * 32000 * 1536
    assert P.presets_table(vocab_size=512)[-1]["vocab_size"] == 512
    text = P.format_presets_table(list(rows.values()))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["name", "params", "paper"]
    for name in rows:
        assert any(line.startswith(name + " ") for line in lines), name
    assert "395.0M (400M)" in text and "1239.4M (1.3B)" in text


def test_apply_preset_merges_user_keys_on_top() -> None:
    section = {
        "preset": "samba-421m",
        "d_model": 768,
        "vocab_size": None,
        "mixers": {"swa": {"window": 1024}, "F": None, "G": {"heads": 2}},
    }
    before = copy.deepcopy(section)
    merged = P.apply_preset(section)
    assert section == before
    assert "preset" not in merged
    assert merged["pattern"] == "(M-F-A-F)*6" and merged["d_model"] == 768 and merged["vocab_size"] is None
    assert merged["tie_embeddings"] is True and merged["init"] == "mamba"
    assert merged["mixers"]["A"] == {**P.PRESETS["samba-421m"].model.mixers["A"], "window": 1024}
    assert "swa" not in merged["mixers"]
    assert merged["mixers"]["F"] == {"hidden": 4096}
    assert merged["mixers"]["G"] == {"heads": 2}
    assert merged["mixers"]["M"] == P.PRESETS["samba-421m"].model.mixers["M"]
    merged["mixers"]["A"]["heads"] = 1
    assert P.PRESETS["samba-421m"].model.mixers["A"]["heads"] == 12
    assert describe(ModelConfig(**merged), vocab_size=TINY_VOCAB)["params"] > 0


def test_apply_preset_without_preset_and_bad_mixers() -> None:
    assert P.apply_preset({"pattern": "M-F", "d_model": 64}) == {"pattern": "M-F", "d_model": 64}
    assert P.apply_preset({"preset": None, "d_model": 64}) == {"d_model": 64}
    plain = P.apply_preset({"preset": "tiny-llama2"})
    assert ModelConfig(**plain) == P.get_preset("tiny-llama2").model
    with pytest.raises(ConfigError, match="both configure mixer A"):
        P.apply_preset({"preset": "tiny-samba", "mixers": {"A": {"window": 8}, "swa": {"heads": 2}}})
    with pytest.raises(ValueError, match="unknown preset"):
        P.apply_preset({"preset": "samba-42m"})


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("samba-420m", "samba-421m"), ("Samba_421M", "samba-421m"), ("tiny-samb", "tiny-samba"), ("llama2-swa", "llama2-swa")],
)
def test_unknown_preset_suggests_close_names(name: str, suggestion: str) -> None:
    with pytest.raises(ValueError) as err:
        P.get_preset(name)
    message = str(err.value)
    assert f"unknown preset {name!r}" in message
    assert suggestion in message and "hybridlab presets" in message


def test_get_preset_returns_a_copy() -> None:
    preset = P.get_preset("samba-421m")
    preset.model.mixers["A"]["window"] = 1
    preset.model.d_model = 8
    assert P.PRESETS["samba-421m"].model.mixers["A"]["window"] == 2048
    assert P.PRESETS["samba-421m"].model.d_model == 1536

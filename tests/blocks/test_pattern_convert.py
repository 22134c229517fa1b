"""Converters to and from Megatron-LM's hybrid_override_pattern and fla's hybrid config, and their errors."""

from __future__ import annotations

import doctest

import pytest

import blocks.pattern_convert as convert_module
from blocks.pattern import parse
from blocks.pattern_convert import (
    PatternConversionError,
    from_fla,
    from_megatron,
    to_fla,
    to_megatron,
)

# --- Megatron -----------------------------------------------------------------------------------


def test_samba_to_megatron() -> None:
    s = to_megatron(parse("(M-F-A-F)*6"))
    assert s == "M-*-" * 6
    assert len(s) == 24


@pytest.mark.parametrize(
    ("megatron", "hybridlab"),
    [
        ("M*-", "M-A-F"),
        ("M-*-M-*-", "(M-F-A-F)*2"),
        ("MMMM", "M*4"),
        ("-", "F"),
        ("*-" * 12, "(A-F)*12"),
        ("M*M-M*M-", "(M-A-M-F)*2"),
    ],
)
def test_megatron_dash_is_mlp_not_a_separator(megatron: str, hybridlab: str) -> None:
    p = from_megatron(megatron)
    assert p == parse(hybridlab)
    assert p.n_layers == len(megatron)
    assert to_megatron(p) == megatron


@pytest.mark.parametrize(
    "text", ["M", "F", "A", "(M-F-A-F)*6", "M*11-A-F", "((M-F)*2-A-F)*3", "mamba-swa-mlp"]
)
def test_megatron_roundtrip(text: str) -> None:
    p = parse(text)
    assert from_megatron(to_megatron(p)) == p


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("M-(M|A)-F", r"pattern layer 1, \(M\|A\), is a parallel group"),
        (
            "M-F-G-F",
            r"pattern layer 2 \(G\) is gla; .*only has Mamba \('M'\), attention \('\*'\) and MLP \('-'\)",
        ),
        ("R", r"pattern layer 0 \(R\) is retnet"),
        ("M-F-A[window=512]-F", r"pattern layer 2 \(A\[window=512\]\) sets window for this layer only"),
        ("M[d_state=8]", r"pattern layer 0 \(M\[d_state=8\]\) sets d_state"),
    ],
)
def test_to_megatron_errors(text: str, match: str) -> None:
    with pytest.raises(PatternConversionError, match=match):
        to_megatron(parse(text))


@pytest.mark.parametrize(
    ("s", "match"),
    [
        ("", "is empty"),
        ("M*E-", r"layer 2 of 'M\*E-' is a mixture-of-experts"),
        ("M*M*/MM/MM", r"layer 4 of .* multi-token-prediction separator"),
        ("M*x", r"layer 2 of 'M\*x' is 'x', which is not a Megatron layer symbol"),
        ("M *", r"layer 1 of 'M \*' is ' '"),
        ("M" * 10001, "at most 10000"),
    ],
)
def test_from_megatron_errors(s: str, match: str) -> None:
    with pytest.raises(PatternConversionError, match=match):
        from_megatron(s)


def test_from_megatron_rejects_non_str() -> None:
    with pytest.raises(PatternConversionError, match="expected a str"):
        from_megatron(None)  # type: ignore[arg-type]


def test_conversion_error_is_a_value_error() -> None:
    assert issubclass(PatternConversionError, ValueError)


# --- fla ----------------------------------------------------------------------------------------


def test_samba_to_fla() -> None:
    cfg = to_fla(parse("(M-F-A-F)*6"))
    assert cfg["mixer"] == "mamba"
    assert cfg["num_hidden_layers"] == 12
    assert cfg["attn"]["layers"] == [1, 3, 5, 7, 9, 11]
    assert cfg["attn"] == {
        "layers": [1, 3, 5, 7, 9, 11],
        "num_heads": 4,
        "num_kv_heads": 4,
        "window_size": 128,
        "rope_theta": 10000.0,
    }
    assert from_fla(cfg) == parse("(M-F-A-F)*6")


def test_to_fla_takes_pattern_params_over_model_mixers() -> None:
    p = parse("(M-F-A[window=2048]-F)*6")
    cfg = to_fla(p, mixers={"A": {"heads": 12, "kv_heads": 4, "window": 512}})
    assert cfg["attn"] == {
        "layers": [1, 3, 5, 7, 9, 11],
        "num_heads": 12,
        "num_kv_heads": 4,
        "window_size": 2048,
        "rope_theta": 10000.0,
    }
    assert from_fla(cfg, mixers={"swa": {"heads": 12, "kv_heads": 4, "window": 512}}) == p


@pytest.mark.parametrize(
    ("text", "mixer", "n", "layers"),
    [
        ("(G-F-A-F)*6", "gla", 12, [1, 3, 5, 7, 9, 11]),
        ("(R-F-A-F)*6", "retnet", 12, [1, 3, 5, 7, 9, 11]),
        ("(M-F)*11-A[window=null]-F", "mamba", 12, [11]),
        ("A[window=null]-F-(M-F)*11", "mamba", 12, [0]),
        ("(mamba-mlp)*4", "mamba", 4, None),
    ],
)
def test_fla_layouts_and_roundtrip(text: str, mixer: str, n: int, layers: list[int] | None) -> None:
    p = parse(text)
    cfg = to_fla(p)
    assert (cfg["mixer"], cfg["num_hidden_layers"]) == (mixer, n)
    assert (cfg["attn"] or {}).get("layers") == layers
    assert from_fla(cfg) == p


@pytest.mark.parametrize(
    "text",
    [
        "(M-F-A[window=2048]-F)*6",
        "(G-F-A[heads=8,kv_heads=2,window=null]-F)*3",
        "M-F-A[rope_base=500000.0]-F",
        "(A[heads=16]-F-M-F)*2",
        "(R-F)*4",
    ],
)
def test_fla_roundtrip(text: str) -> None:
    p = parse(text)
    assert from_fla(to_fla(p)) == p


def test_fla_roundtrip_drops_params_that_restate_the_defaults() -> None:
    p = parse("A[window=128,kv_heads=4]-F-M-F")
    assert from_fla(to_fla(p)) == parse("A-F-M-F")


def test_to_fla_all_attention_needs_base() -> None:
    p = parse("(A-F)*2")
    with pytest.raises(PatternConversionError, match="every layer is attention.*pass base="):
        to_fla(p)
    cfg = to_fla(p, base="gla")
    assert cfg["mixer"] == "gla" and cfg["attn"]["layers"] == [0, 1]
    assert from_fla(cfg) == p


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("(M|A)-F", {}, r"pattern layer 0, \(M\|A\), is a parallel group"),
        ("M-A-F", {}, "3 sublayers; an fla layer is a mixer followed by an MLP"),
        ("M-F-F-M", {}, r"pattern layer 2 \(F\) is an MLP where fla layer 1 needs its mixer"),
        ("M-A-F-F", {}, r"pattern layer 1 \(A\) should be F"),
        ("M-F-G-F", {}, r"pattern layer 2 \(G\) differs from the base mixer M of pattern layer 0"),
        ("M-F-A[window=64]-F-A[window=32]-F", {}, r"pattern layer 4 .* differ from pattern layer 2"),
        ("M-F-A-F-A[window=32]-F", {}, r"pattern layer 4 .* differ from pattern layer 2"),
        ("M[d_state=8]-F", {}, r"pattern layer 0 \(M\[d_state=8\]\) sets params for this layer only"),
        ("M-F[hidden=64]", {}, r"pattern layer 1 \(F\[hidden=64\]\) sets MLP params"),
        ("M-F-A[rope=false]-F", {}, r"pattern layer 2 .*rope=false \(NoPE\) cannot be expressed"),
        ("M-F-A[head_dim=32]-F", {}, r"head_dim=32 cannot be expressed"),
        ("M-F-A-F", {"mixers": {"A": {"rope": False}}}, "rope=false"),
        ("M-F-A-F", {"mixers": {"Q": {}}}, "model.mixers"),
        ("M-F", {"base": "gla"}, "base='gla' but the pattern's base mixer is 'mamba'"),
        ("(A-F)*2", {"base": "swa"}, "base must be a non-attention, non-MLP mixer"),
        ("(A-F)*2", {"base": "nope"}, "unknown mixer 'nope'"),
    ],
)
def test_to_fla_errors(text: str, kwargs: dict, match: str) -> None:
    with pytest.raises(PatternConversionError, match=match):
        to_fla(parse(text), **kwargs)


def test_from_fla_takes_fla_defaults_for_missing_attn_keys() -> None:
    p = from_fla({"mixer": "gla", "num_hidden_layers": 2, "attn": {"layers": [1], "num_heads": 8}})
    assert p == parse("G-F-A[heads=8,window=null]-F")


def test_from_fla_accepts_model_type_and_ignores_model_settings() -> None:
    cfg = {
        "model_type": "retnet",
        "hidden_size": 2048,
        "num_hidden_layers": 3,
        "attn": None,
        "vocab_size": 32000,
    }
    assert from_fla(cfg) == parse("(R-F)*3")


def test_from_fla_writes_what_the_model_defaults_would_get_wrong() -> None:
    cfg = {
        "mixer": "mamba",
        "num_hidden_layers": 2,
        "attn": {"layers": [0], "num_heads": 4, "window_size": 64},
    }
    assert from_fla(cfg, mixers={"A": {"rope": False, "head_dim": 16}}) == parse(
        "A[head_dim=null,rope=true,window=64]-F-M-F"
    )


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ([1, 2], "expected a mapping"),
        ({"num_hidden_layers": 2}, "'mixer' must name the base mixer"),
        ({"mixer": "mamba2", "num_hidden_layers": 2}, "unknown mixer 'mamba2'"),
        ({"mixer": "swa", "num_hidden_layers": 2}, "cannot be fla's base mixer"),
        ({"mixer": "gla", "num_hidden_layers": 0}, "num_hidden_layers must be a positive int"),
        ({"mixer": "gla", "num_hidden_layers": True}, "num_hidden_layers must be a positive int"),
        ({"mixer": "gla", "num_hidden_layers": 6000}, "12000 sublayers"),
        ({"mixer": "gla", "num_hidden_layers": 2, "attn": [1]}, "attn must be a mapping"),
        ({"mixer": "gla", "num_hidden_layers": 2, "attn": {"num_heads": 4}}, "attn.layers must be a list"),
        (
            {"mixer": "gla", "num_hidden_layers": 2, "attn": {"layers": [2], "num_heads": 4}},
            r"entry 2 .*\[0, 2\)",
        ),
        (
            {"mixer": "gla", "num_hidden_layers": 2, "attn": {"layers": [1, 1], "num_heads": 4}},
            "layer 1 twice",
        ),
        ({"mixer": "gla", "num_hidden_layers": 2, "attn": {"layers": [1]}}, "num_heads is required"),
        (
            {
                "mixer": "gla",
                "num_hidden_layers": 2,
                "attn": {"layers": [1], "num_heads": 4, "num_kv_heads": 3},
            },
            "'kv_heads'=3 must divide heads=4",
        ),
        (
            {"mixer": "gla", "num_hidden_layers": 2, "attn": {"layers": [1], "num_heads": "4"}},
            r"attn.num_heads: field 'heads' must be int",
        ),
        (
            {
                "mixer": "gla",
                "num_hidden_layers": 2,
                "attn": {"layers": [1], "num_heads": 4, "qkv_bias": True},
            },
            "qkv_bias=True",
        ),
        (
            {
                "mixer": "gla",
                "num_hidden_layers": 2,
                "attn": {"layers": [1], "num_heads": 4, "rope_theta": None},
            },
            "rope_theta must be a finite number",
        ),
        (
            {"mixer": "gla", "num_hidden_layers": 2, "attn": {"layers": [1], "num_heads": 4, "alibi": True}},
            "alibi have no hybridlab counterpart",
        ),
    ],
)
def test_from_fla_errors(cfg: object, match: str) -> None:
    with pytest.raises(PatternConversionError, match=match):
        from_fla(cfg)  # type: ignore[arg-type]


def test_doctests() -> None:
    result = doctest.testmod(convert_module)
    assert result.attempted >= 4 and result.failed == 0

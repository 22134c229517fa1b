"""The pattern language (design.md "Pattern grammar"): every grammar feature, canonical and compact
forms, round trips, layout hashes, and each error with its column, caret line and suggestion."""

from __future__ import annotations

import doctest
import hashlib
import pickle

import pytest

import blocks.pattern as pattern_module
from blocks import registry
from blocks.pattern import (
    MAX_DEPTH,
    MAX_LAYERS,
    Layer,
    Pattern,
    PatternError,
    Token,
    format_pattern,
    parse,
    tile,
)


def caret(e: PatternError) -> tuple[str, int]:
    """The displayed pattern line and the caret's index in it, read back from ``str(e)``."""
    lines = str(e).splitlines()
    shown, marks = lines[1], lines[2]
    assert shown.startswith("  ") and marks.startswith("  ") and marks.strip() == "^"
    return shown[2:], marks.index("^") - 2


def error_of(text: str) -> PatternError:
    with pytest.raises(PatternError) as info:
        parse(text)
    return info.value


def roundtrips(p: Pattern) -> None:
    for compact in (True, False):
        assert parse(format_pattern(p, compact=compact)) == p


# --- grammar features -------------------------------------------------------------------------


@pytest.mark.parametrize("spec", registry.specs(), ids=lambda s: s.symbol)
def test_every_symbol_and_its_name_parse_to_the_symbol(spec: registry.MixerSpec) -> None:
    by_symbol, by_name = parse(spec.symbol), parse(spec.name)
    assert by_symbol == by_name
    assert by_name.canonical == spec.symbol
    assert by_name.layers == (Layer((Token(spec.symbol),)),)


def test_sequence_of_names_and_symbols() -> None:
    p = parse("mamba-F-swa-mlp")
    assert p.canonical == "M-F-A-F"
    assert [layer.symbols for layer in p.layers] == ["M", "F", "A", "F"]


@pytest.mark.parametrize(
    ("text", "key", "value", "kind"),
    [
        ("A[window=512]", "window", 512, int),
        ("A[window=512.0]", "window", 512, int),
        ("A[window=null]", "window", None, type(None)),
        ("A[rope=false]", "rope", False, bool),
        ("A[rope=true]", "rope", True, bool),
        ("A[rope_base=5e5]", "rope_base", 500000.0, float),
        ("A[rope_base=0.5]", "rope_base", 0.5, float),
        ("A[rope_base=12]", "rope_base", 12.0, float),
        ("A[rope_base=+1.5E3]", "rope_base", 1500.0, float),
        ("M[dt_min=1e-3]", "dt_min", 1e-3, float),
        ("M[dt_min=2.0e-3]", "dt_min", 2.0e-3, float),
        ("M[dt_min=.25]", "dt_min", 0.25, float),
        ("M[dt_rank=auto]", "dt_rank", "auto", str),
        ("M[dt_rank=8]", "dt_rank", 8, int),
        ("F[hidden=256]", "hidden", 256, int),
        ("G[gate_rank=8]", "gate_rank", 8, int),
        ("G[key_expand=1]", "key_expand", 1.0, float),
        ("R[heads=null]", "heads", None, type(None)),
        ("R[value_expand=0.5]", "value_expand", 0.5, float),
    ],
)
def test_param_values_of_each_type(text: str, key: str, value: object, kind: type) -> None:
    p = parse(text)
    got = p.layers[0].branches[0].params_dict()[key]
    assert got == value and type(got) is kind
    roundtrips(p)


def test_params_are_sorted_and_order_does_not_matter() -> None:
    a = parse("A[window=64,heads=8,rope=false]")
    b = parse("A[ rope = false , heads=8, window = 64 ]")
    assert a == b
    assert a.layers[0].branches[0].params == (("heads", 8), ("rope", False), ("window", 64))
    assert a.canonical == "A[heads=8,rope=false,window=64]"


def test_repetition_and_nested_repetition_expand() -> None:
    assert parse("M*3").canonical == "M-M-M"
    assert parse("(M-F)*2").canonical == "M-F-M-F"
    nested = parse("((M-F)*2-A-F)*3")
    assert nested.n_layers == 18
    assert nested.canonical == "-".join(["M-F-M-F-A-F"] * 3)
    assert parse("(((M)*2)*3)*4").canonical == "-".join(["M"] * 24)
    assert parse("(M)").canonical == "M"


def test_parallel_groups() -> None:
    p = parse("(M|A[window=64])-F")
    first = p.layers[0]
    assert first.parallel and first.symbols == "M|A"
    assert first.branches == (Token("M"), Token("A", (("window", 64),)))
    assert not p.layers[1].parallel
    assert p.canonical == "(M|A[window=64])-F"
    assert parse("(mamba | swa | gla)").layers[0].symbols == "M|A|G"
    assert parse("(M|A)*2").canonical == "(M|A)-(M|A)"
    assert parse("((M|A)-F)*2").canonical == "(M|A)-F-(M|A)-F"
    assert parse("(M|A)") != parse("(A|M)")


def test_whitespace_is_ignored_everywhere() -> None:
    spaced = " ( ( M - F ) * 2 -\tA [ window = 2048 , heads = 8 ] -\nF ) * 3 - ( M | A ) "
    dense = "((M-F)*2-A[window=2048,heads=8]-F)*3-(M|A)"
    assert parse(spaced) == parse(dense)


def test_counts_n_layers_str_and_repr() -> None:
    p = parse("(M-F-A-F)*6-(M|A)")
    assert p.n_layers == 25
    assert p.counts() == {"M": 7, "F": 12, "A": 7}
    assert str(p) == p.compact == "(M-F-A-F)*6-(M|A)"
    assert "(M-F-A-F)*6" in repr(p)


def test_token_normalises_param_order_and_pattern_rejects_empty_structures() -> None:
    assert Token("A", (("window", 1), ("heads", 2))) == Token("A", (("heads", 2), ("window", 1)))
    with pytest.raises(ValueError):
        Pattern(())
    with pytest.raises(ValueError):
        Layer(())
    with pytest.raises(ValueError):
        Pattern(tuple([Layer((Token("M"),))] * (MAX_LAYERS + 1)))


# --- canonical and compact forms ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical", "compact"),
    [
        ("M-F-A-F-M-F-A-F", "M-F-A-F-M-F-A-F", "(M-F-A-F)*2"),
        ("M-M-M", "M-M-M", "M*3"),
        ("M-M", "M-M", "M*2"),
        ("M-F-M-F", "M-F-M-F", "(M-F)*2"),
        ("M-F-A", "M-F-A", "M-F-A"),
        ("A[window=512]-F", "A[window=512]-F", "A[window=512]-F"),
        ("(M-F)*2-A-F-(M-F)*2-A-F", "M-F-M-F-A-F-M-F-M-F-A-F", "((M-F)*2-A-F)*2"),
        ("M-F-M-F-M-F-A-F", "M-F-M-F-M-F-A-F", "(M-F)*3-A-F"),
        ("(M|A)-(M|A)-F", "(M|A)-(M|A)-F", "(M|A)*2-F"),
        ("mamba*12", "-".join("M" * 12), "M*12"),
        ("A[heads=8, window=64]*2", "A[heads=8,window=64]-A[heads=8,window=64]", "A[heads=8,window=64]*2"),
    ],
)
def test_canonical_and_compact_examples(text: str, canonical: str, compact: str) -> None:
    p = parse(text)
    assert p.canonical == format_pattern(p, compact=False) == canonical
    assert p.compact == format_pattern(p) == compact
    roundtrips(p)


# samba-facts.md §1.2, written in hybridlab's language (F' = F[hidden=2d], A(full) = A[window=null]).
SAMBA = {
    "Samba 421M": ("(M-F-A[window=2048]-F)*6", 24),
    "Samba 1.3B": ("(M-F-A[window=2048]-F)*9", 36),
    "Llama-2": ("(A[window=null]-F)*12", 24),
    "Llama-2-SWA": ("(A[window=2048]-F)*12", 24),
    "Mamba": ("M*60", 60),
    "Sliding GLA": ("(G-F-A[window=2048]-F)*6", 24),
    "Sliding RetNet": ("(R-F-A[window=2048]-F)*6", 24),
    "Mamba-SWA-MLP": ("(M-A[window=2048]-F)*8", 24),
    "MLP2-SWA-MLP": ("(F[hidden=3072]-F-A[window=2048]-F)*6", 24),
    "Samba-NoPE": ("(M-F-A[rope=false,window=2048]-F)*6", 24),
    "full attention at Block 11": ("(M-F)*11-A[window=null]-F", 24),
    "full attention at Block 5": ("(M-F)*5-A[window=null]-F-(M-F)*6", 24),
    "full attention at Block 0": ("A[window=null]-F-(M-F)*11", 24),
    "full attention at Blocks 1 and 5": ("M-F-A[window=null]-F-(M-F)*3-A[window=null]-F-(M-F)*6", 24),
    "Samba GQA": ("(M-F-A[heads=12,kv_heads=4,window=2048]-F)*6", 24),
    "Samba 3.8B": ("(M-F-A[window=2048]-F)*16", 64),
}

FOLDS_FURTHER = {"full attention at Blocks 1 and 5": "(M-F-A[window=null]-F-(M-F)*2)*2-(M-F)*4"}


@pytest.mark.parametrize("name", list(SAMBA))
def test_samba_patterns(name: str) -> None:
    text, n = SAMBA[name]
    p = parse(text)
    assert p.n_layers == n
    assert p.compact == FOLDS_FURTHER.get(name, text)
    roundtrips(p)


def test_samba_421m_layout() -> None:
    p = parse("(M-F-A[window=2048]-F)*6")
    assert p.canonical == "-".join(["M-F-A[window=2048]-F"] * 6)
    assert p.counts() == {"M": 6, "F": 12, "A": 6}
    assert [layer.symbols for layer in p.layers[:4]] == ["M", "F", "A", "F"]


ROUNDTRIP = [
    "M",
    "(M|A)",
    "M-F-A-F",
    "(M-F-A-F)*6",
    "((M-F)*2-A-F)*3",
    "(((M-A)*2-F)*2-G)*2-R",
    "A[window=null]-A[window=1]-A[window=2]",
    "M[dt_min=1e-3,dt_max=0.25]-F[hidden=1]",
    "A[rope_base=1e300]-A[rope_base=5e-324]-A[rope_base=123456.789]",
    "A[rope_base=1e16]",
    "(M|A[window=8]|F)*3-(G|R)",
    "M*9999-A",
    "(M-F-A-F)*2500",
    "M-A-M-M-A-M-A-M-M-A-M-M-A-M-A-M-M-A-M-A-M-M-A-M-M-A",
]


@pytest.mark.parametrize("text", ROUNDTRIP)
def test_roundtrip_both_forms(text: str) -> None:
    p = parse(text)
    roundtrips(p)
    assert parse(p.canonical).canonical == p.canonical
    assert parse(p.compact).compact == p.compact
    assert len(p.compact) <= len(p.canonical)


def test_compact_of_a_long_aperiodic_layout_still_roundtrips() -> None:
    import random

    rng = random.Random(0)
    layers = tuple(Layer((Token(rng.choice("MAF")),)) for _ in range(MAX_LAYERS))
    p = Pattern(layers)
    roundtrips(p)
    assert len(p.compact) < len(p.canonical)


def test_format_pattern_raises_for_unwritable_hand_built_values() -> None:
    p = Pattern((Layer((Token("A", (("window", "two words"),)),)),))
    with pytest.raises(ValueError, match="cannot be written"):
        format_pattern(p)


# --- layout hash --------------------------------------------------------------------------------


def test_layout_hash_is_sha256_of_canonical() -> None:
    p = parse("(M-F-A-F)*6")
    assert p.layout_hash == hashlib.sha256(p.canonical.encode()).hexdigest()[:12]
    assert len(p.layout_hash) == 12 and int(p.layout_hash, 16) >= 0
    # pinned: a change to the canonical form changes every logged layout_hash
    assert p.layout_hash == hashlib.sha256(("M-F-A-F-" * 6)[:-1].encode()).hexdigest()[:12]


@pytest.mark.parametrize(
    "spellings",
    [
        [
            "(M-F-A-F)*2",
            "M-F-A-F-M-F-A-F",
            "mamba-mlp-swa-mlp-(M-F-A-F)",
            " ( M - F - A - F ) * 2 ",
            "((M-F-A-F))*2",
        ],
        ["A[heads=8,window=64]", "A[window=64,heads=8]", "swa[ window = 64.0 , heads = 8 ]"],
        ["(M|A)*2-F", "(mamba|swa)-(M|A)-mlp"],
        ["M*4", "(M*2)*2", "M-M-M-M", "(M-M)*2"],
    ],
)
def test_layout_hash_equal_for_equal_layouts(spellings: list[str]) -> None:
    parsed = [parse(s) for s in spellings]
    assert all(p == parsed[0] for p in parsed)
    assert len({p.layout_hash for p in parsed}) == 1
    assert len({hash(p) for p in parsed}) == 1


def test_layout_hash_differs_for_different_layouts() -> None:
    texts = ["M-F", "F-M", "M-F-M-F", "(M|F)", "(F|M)", "M[d_state=8]-F", "A[window=64]", "A[window=65]"]
    assert len({parse(t).layout_hash for t in texts}) == len(texts)


# --- tile ---------------------------------------------------------------------------------------


def test_tile() -> None:
    assert tile("M-A", 12) == parse("(M-A)*12")
    assert tile(parse("M-F-A-F"), 6) == parse("(M-F-A-F)*6")
    assert tile("M", 1) == parse("M")
    with pytest.raises(ValueError, match="n must be >= 1"):
        tile("M", 0)
    with pytest.raises(TypeError):
        tile("M", 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most 10000"):
        tile("M-F", 5001)
    with pytest.raises(PatternError):
        tile("M-", 2)


# --- errors -------------------------------------------------------------------------------------

# (text, column, fragment of the first line, character under the caret or "" for end of input)
ERRORS = [
    ("", 0, "the pattern is empty", ""),
    ("   ", 3, "the pattern is empty", ""),
    ("M-", 2, "ends with '-'", ""),
    ("M-F-", 4, "ends with '-'", ""),
    ("-M", 0, "'-' where a sublayer is expected", "-"),
    ("M--F", 2, "'-' where a sublayer is expected", "-"),
    ("X", 0, "unknown mixer 'X'", "X"),
    ("M-F-X-F", 4, "unknown mixer 'X'", "X"),
    ("M-Mamba", 2, "unknown mixer 'Mamba'", "M"),
    ("()", 1, "empty group", ")"),
    ("M-()", 3, "empty group", ")"),
    ("M*0", 2, "repetition count 0", "0"),
    ("(M-F)*0", 6, "repetition count 0", "0"),
    ("M*-1", 2, "positive integer", "-"),
    ("M*", 2, "missing repetition count", ""),
    ("M*x", 2, "missing repetition count", "x"),
    ("M*2*3", 3, "cannot be repeated again", "*"),
    ("(M-F", 4, "unclosed '(' at column 0", ""),
    ("((M-F)*2", 8, "unclosed '(' at column 0", ""),
    ("M-F)", 3, "unmatched ')'", ")"),
    ("(M-F))*2", 5, "unmatched ')'", ")"),
    ("M F", 2, "missing '-' before 'F'", "F"),
    ("M(F)", 1, "missing '-' before '('", "("),
    ("(M-A|F)", 4, "'|' inside a sequence group", "|"),
    ("(M*2|A)", 4, "'|' inside a sequence group", "|"),
    ("M|A", 1, "'|' outside a parallel group", "|"),
    ("(M|A-F)", 4, "'-' inside a parallel group", "-"),
    ("(M|A*2)", 4, "'*' inside a parallel group", "*"),
    ("(M|)", 3, "')' where a parallel branch is expected", ")"),
    ("(M|(A))", 3, "'(' where a parallel branch is expected", "("),
    ("(M|A", 4, "unclosed '(' at column 0", ""),
    ("3", 0, "a number where a sublayer is expected", "3"),
    ("M-#", 2, "unexpected character '#'", "#"),
    ("M-F!", 3, "unexpected character '!'", "!"),
    ("A[", 2, "the end of the pattern where a key is expected", ""),
    ("A[]", 2, "empty parameter list", "]"),
    ("A[window=1,]", 11, "']' where a key is expected", "]"),
    ("A[window]", 8, "']' after key 'window'", "]"),
    ("A[window=]", 9, "where the value of 'window' is expected", "]"),
    ("A[window=1", 10, "unclosed '[' at column 1", ""),
    ("A[window=1;heads=2]", 10, "unexpected character ';' in parameters", ";"),
    ("A[windw=512]", 2, "unknown key 'windw' for A (swa)", "w"),
    ("F[window=512]", 2, "unknown key 'window' for F (mlp)", "w"),
    ("A[window=512,window=64]", 13, "duplicate key 'window' (first given at column 2)", "w"),
    ("A[window=abc]", 9, "field 'window' must be int or null; got 'abc'", "a"),
    ("A[window=1.5]", 9, "field 'window' must be int or null; got 1.5", "1"),
    ("A[rope=1]", 7, "field 'rope' must be bool", "1"),
    ("A[rope=True]", 7, "field 'rope' must be bool", "T"),
    ("A[window=1.2.3]", 9, "invalid value '1.2.3'", "1"),
    ("A[window=1e999]", 9, "overflows a float", "1"),
    ("A[window=0]", 2, "field 'window' must be a positive int", "w"),
    ("A[window=-5]", 2, "field 'window' must be a positive int", "w"),
    ("M-F-A[heads=4,kv_heads=3]", 14, "'kv_heads'=3 must divide heads=4", "k"),
    ("M[expand=0]", 2, "field 'expand' must be >= 1", "e"),
    ("G[key_expand=0]", 2, "field 'key_expand' must be a positive number", "k"),
    ("R[heads=0]", 2, "field 'heads' must be a positive int or null", "h"),
    ("M2", 0, "unknown mixer 'M2'", "M"),
    ("M*100001", 2, "pattern expands to 100001 sublayers; at most 10000", "1"),
    ("(M-F)*5001", 6, "pattern expands to 10002 sublayers; at most 10000", "5"),
    ("M*9999-A-F", 9, "pattern expands to 10001 sublayers; at most 10000", "F"),
    ("((M*100)*100)*100", 14, "pattern expands to 1000000 sublayers", "1"),
    ("M*99999999999999999999", 2, "repetition count 999", "9"),
]


@pytest.mark.parametrize(
    ("text", "column", "fragment", "under"), ERRORS, ids=[e[0] or "<empty>" for e in ERRORS]
)
def test_error_column_and_caret(text: str, column: int, fragment: str, under: str) -> None:
    e = error_of(text)
    assert isinstance(e, ValueError)
    assert e.pattern == text
    assert e.column == column, str(e)
    first = str(e).splitlines()[0]
    assert first.startswith(f"invalid pattern at column {column}: ")
    assert fragment in first, str(e)
    shown, at = caret(e)
    assert at == column
    assert shown[at : at + 1] == under
    assert e.expected and f"expected {e.expected}" in str(e)
    assert "valid mixers: M (mamba), A (swa), G (gla), R (retnet), F (mlp)" in str(e)


def test_every_line_of_the_message() -> None:
    e = error_of("M-F-A[windw=512]-F")
    assert str(e).splitlines() == [
        "invalid pattern at column 6: unknown key 'windw' for A (swa)",
        "  M-F-A[windw=512]-F",
        "        ^",
        "expected a key of A (swa): heads, kv_heads, window, rope, rope_base, head_dim",
        "valid mixers: M (mamba), A (swa), G (gla), R (retnet), F (mlp)",
        "did you mean 'window'?",
    ]
    assert (e.pattern, e.column, e.suggestion) == ("M-F-A[windw=512]-F", 6, "window")


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("Mamba", "mamba"),
        ("M-F-SWA", "swa"),
        ("mambo", "mamba"),
        ("m", "M"),
        ("A[windw=64]", "window"),
        ("A[head=8]", "heads"),
        ("M[dstate=8]", "d_state"),
        ("A[rope=True]", "true"),
        ("A[window=None]", "null"),
        ("M3", "M*3"),
        ("M*-M*-", "(M-A-F)*2"),
    ],
)
def test_suggestions(text: str, suggestion: str) -> None:
    e = error_of(text)
    assert e.suggestion == suggestion
    assert str(e).splitlines()[-1] == f"did you mean {suggestion!r}?"


def test_unknown_symbol_without_a_close_match_lists_the_valid_ones() -> None:
    e = error_of("M-X")
    assert e.suggestion is None
    assert "did you mean" not in str(e)
    assert "valid mixers: M (mamba), A (swa), G (gla), R (retnet), F (mlp)" in str(e)


def test_megatron_pattern_is_recognised() -> None:
    e = error_of("M*-M*-M*-")
    assert "Megatron" in e.expected and e.suggestion == "(M-A-F)*3"


def test_cross_field_checks_against_defaults_are_left_to_the_model() -> None:
    # kv_heads=3 is fine when model.mixers.A.heads is 6 or 12; it is checked when the layout is resolved
    assert parse("A[kv_heads=3]").layers[0].branches[0].params_dict() == {"kv_heads": 3}
    assert parse("M[dt_max=0.0005]").n_layers == 1
    error_of("A[heads=4,kv_heads=3]")


def test_non_string_input() -> None:
    for bad in (None, 3, b"M-F", ["M"]):
        with pytest.raises(PatternError) as info:
            parse(bad)  # type: ignore[arg-type]
        assert info.value.column == 0 and "must be a str" in str(info.value)


def test_nesting_limit_and_no_recursion_error() -> None:
    ok = "(" * MAX_DEPTH + "M" + ")" * MAX_DEPTH
    assert parse(ok).canonical == "M"
    e = error_of("(" * (MAX_DEPTH + 1) + "M" + ")" * (MAX_DEPTH + 1))
    assert e.column == MAX_DEPTH and f"nested more than {MAX_DEPTH} deep" in str(e)
    deep = "(" * 100000 + "M" + ")" * 100000
    assert error_of(deep).column == MAX_DEPTH
    assert error_of("(M|" * 5000).column == 3


def test_layer_limit_is_inclusive() -> None:
    assert parse(f"M*{MAX_LAYERS}").n_layers == MAX_LAYERS
    assert parse("(M-F)*5000").n_layers == MAX_LAYERS
    assert "at most 10000" in str(error_of(f"M*{MAX_LAYERS}-F"))


def test_long_pattern_caret_is_still_under_the_column() -> None:
    text = "M-" * 400 + "X-" + "F-" * 400 + "F"
    e = error_of(text)
    shown, at = caret(e)
    assert e.column == 800 and shown[at] == "X"
    assert shown.startswith("...") and shown.endswith("...") and len(shown) < 120


def test_control_characters_keep_the_caret_aligned() -> None:
    e = error_of("M-\tF-\x00")
    shown, at = caret(e)
    assert e.column == 5 and at == 5 and shown == "M- F-?"


def test_pattern_error_pickles() -> None:
    e = error_of("A[windw=1]")
    back = pickle.loads(pickle.dumps(e))
    assert isinstance(back, PatternError)
    assert (back.pattern, back.column, back.expected, back.suggestion, str(back)) == (
        e.pattern,
        e.column,
        e.expected,
        e.suggestion,
        str(e),
    )


def test_doctests() -> None:
    result = doctest.testmod(pattern_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 7 and result.failed == 0

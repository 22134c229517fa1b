"""Property tests of ``parse``: any string gives a Pattern or a PatternError with an in-range column,
and generated valid patterns parse to the layout they describe and round-trip through both forms.

5,000 examples in all: 2,500 random printable strings, 1,500 near-valid mutations of valid
patterns and 1,000 patterns drawn from the grammar in design.md.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blocks import registry
from blocks.pattern import MAX_LAYERS, Pattern, PatternError, format_pattern, parse

FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_any(text: str) -> Pattern | None:
    try:
        p = parse(text)
    except PatternError as e:
        assert 0 <= e.column <= len(text)
        assert e.pattern == text
        assert "internal error" not in e.reason, str(e)
        lines = str(e).splitlines()
        assert lines[0].startswith(f"invalid pattern at column {e.column}: ")
        assert lines[2].strip() == "^"
        return None
    assert isinstance(p, Pattern) and 1 <= p.n_layers <= MAX_LAYERS
    for compact in (True, False):
        assert parse(format_pattern(p, compact=compact)) == p
    return p


def check_error(text: str) -> PatternError:
    try:
        parse(text)
    except PatternError as e:
        return e
    raise AssertionError(f"{text!r} parsed")


@settings(FUZZ, max_examples=2500)
@given(st.text(alphabet=string.printable, max_size=60))
def test_random_printable_strings(text: str) -> None:
    check_any(text)


SEEDS = [
    "(M-F-A[window=2048]-F)*6",
    "((M-F)*2-A-F)*3",
    "(M|A[window=64])*2-F",
    "mamba-mlp-swa[heads=8,kv_heads=2]-mlp",
    "A[rope=false,rope_base=1e4,window=null]",
    "M[dt_rank=auto,dt_min=1e-3]-F[hidden=64]",
    "(G-F-A-F)*6-(R|M)",
]
NEAR = "MAFGR()[]|-*=,.0123456789 eEwindowheadsnullrope_trufalsamb+"


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        i = draw(st.integers(0, len(text)))
        c = draw(st.sampled_from(NEAR))
        if op == "insert":
            text = text[:i] + c + text[i:]
        elif op == "delete" and text:
            i = min(i, len(text) - 1)
            text = text[:i] + text[i + 1 :]
        elif text:
            i = min(i, len(text) - 1)
            text = text[:i] + c + text[i + 1 :]
    return text


@settings(FUZZ, max_examples=1500)
@given(mutated())
def test_near_valid_mutations(text: str) -> None:
    check_any(text)


# --- a generator of valid patterns, each with the canonical form it must parse to ---------------

PARAMS = {
    "A": {
        "window": st.one_of(st.none(), st.integers(1, 100000)),
        "heads": st.sampled_from([1, 2, 4, 8, 16]),
        "kv_heads": st.sampled_from([None, 1]),
        "rope": st.booleans(),
        "rope_base": st.floats(1e-3, 1e12, allow_nan=False, allow_infinity=False),
    },
    "M": {
        "d_state": st.integers(1, 256),
        "expand": st.integers(1, 4),
        "dt_rank": st.one_of(st.just("auto"), st.integers(1, 512)),
    },
    "F": {"hidden": st.one_of(st.none(), st.integers(1, 100000))},
    "G": {
        "heads": st.one_of(st.none(), st.integers(1, 16)),
        "gate_rank": st.integers(1, 64),
        "key_expand": st.floats(0.01, 4.0),
    },
    "R": {"heads": st.one_of(st.none(), st.integers(1, 16)), "value_expand": st.floats(0.01, 4.0)},
}


def write_value(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)


@dataclass
class Gen:
    text: str
    layers: list[str]
    atom: bool = True


@st.composite
def ws(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["", "", "", " ", "  ", "\t", "\n"]))


SPELLINGS = [(spec.symbol, spelled) for spec in registry.specs() for spelled in (spec.symbol, spec.name)]


@st.composite
def token(draw: st.DrawFn) -> Gen:
    symbol, spelled = draw(st.sampled_from(SPELLINGS))
    fields = PARAMS.get(symbol)
    values = draw(st.fixed_dictionaries({}, optional=fields)) if fields else {}
    if not values:
        return Gen(spelled, [symbol])
    pad = draw(ws())
    written = ",".join(f"{pad}{k}{pad}={pad}{write_value(v)}" for k, v in values.items())
    canonical = ",".join(f"{k}={write_value(values[k])}" for k in sorted(values))
    return Gen(f"{spelled}{pad}[{written}{pad}]", [f"{symbol}[{canonical}]"])


@st.composite
def parallel(draw: st.DrawFn) -> Gen:
    branches = draw(st.lists(token(), min_size=2, max_size=3))
    inner = f"{draw(ws())}|".join(b.text for b in branches)
    return Gen(f"({inner})", ["(" + "|".join(b.layers[0] for b in branches) + ")"])


def group(parts: list[Gen], sep: str) -> Gen:
    return Gen(f"({sep.join(p.text for p in parts)})", [x for p in parts for x in p.layers])


def repeat(g: Gen, k: int) -> Gen:
    return Gen(f"{g.text if g.atom else f'({g.text})'}*{k}", g.layers * k, atom=False)


def nested(leaf: st.SearchStrategy[Gen]) -> st.SearchStrategy[Gen]:
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.builds(
                group, st.lists(children, min_size=1, max_size=4), st.sampled_from(["-", " - ", "-\n"])
            ),
            st.builds(repeat, children, st.integers(1, 4)),
        ),
        max_leaves=8,
    )


@st.composite
def valid_pattern(draw: st.DrawFn) -> Gen:
    parts = draw(st.lists(nested(st.one_of(token(), token(), parallel())), min_size=1, max_size=3))
    return Gen(" - ".join(p.text for p in parts), [x for p in parts for x in p.layers])


@settings(FUZZ, max_examples=1000)
@given(valid_pattern())
def test_generated_patterns_parse_to_their_layout_and_roundtrip(g: Gen) -> None:
    if len(g.layers) > MAX_LAYERS:
        assert "at most 10000" in str(check_error(g.text))
        return
    p = parse(g.text)
    assert p.canonical == "-".join(g.layers)
    assert p.n_layers == len(g.layers)
    assert parse(p.canonical) == p
    assert parse(p.compact) == p
    assert parse(p.compact).compact == p.compact
    assert len(p.compact) <= len(p.canonical)
    assert p.layout_hash == parse(p.compact).layout_hash

"""The layer-pattern language: ``parse``, canonical and compact forms, ``tile``.

Follows the grammar and symbol table fixed in ``shared/docs/design.md`` ("Pattern grammar", "Mixer
symbols") and conventions.md §2.6 (one symbol table, errors that show the column and the valid
symbols, ``format_pattern`` as the exact inverse of ``parse``)::

    pattern := seq
    seq     := item ( '-' item )*
    item    := atom ( '*' INT )?
    atom    := token | '(' seq ')' | '(' token ( '|' token )+ ')'
    token   := ( SYMBOL | NAME ) params?
    params  := '[' key '=' value ( ',' key '=' value )* ']'

Every token is one pre-norm residual sublayer; ``(M|A)`` is one sublayer whose branches are averaged.
``-`` separates sublayers and is never a mixer (in Megatron-LM's ``hybrid_override_pattern`` it means
MLP; ``blocks.pattern_convert`` converts between the two). Symbols and names come from
``blocks.registry``; parameter keys and values are checked against each mixer's config dataclass.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NoReturn

from blocks import registry
from blocks.mixers.base import ConfigError, check_field, field_names

__all__ = [
    "MAX_DEPTH",
    "MAX_LAYERS",
    "Layer",
    "Pattern",
    "PatternError",
    "Token",
    "format_pattern",
    "parse",
    "tile",
]

MAX_LAYERS = 10000
MAX_DEPTH = 64

_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYWORDS = {"true": True, "false": False, "null": None}
_MAX_NUMBER_CHARS = 400
_MAX_COUNT_DIGITS = 12
_IDENT_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_IDENT_CHARS = _IDENT_START | frozenset("0123456789")
_VALUE_CHARS = _IDENT_CHARS | frozenset(".+-")
_DIGITS = frozenset("0123456789")
_WHITESPACE = frozenset(" \t\n\r\f\v")
_SHOW = 100
_SUBLAYER = "a mixer symbol or name, or '('"


class PatternError(ValueError):
    """A malformed pattern. ``str(e)`` shows what was wrong, the pattern with a caret under
    ``column``, what was expected, the valid mixers and, where one is close, a suggestion.

    Attributes:
        pattern: the text that was parsed.
        column: 0-based index into ``pattern`` (``len(pattern)`` for errors at the end).
        expected: what would have been valid at ``column``.
        suggestion: a close valid spelling, or None.
        reason: the one-line description of what was wrong.
    """

    def __init__(
        self, reason: str, pattern: str, column: int, expected: str, suggestion: str | None = None
    ) -> None:
        self.reason = reason
        self.pattern = pattern
        self.column = max(0, min(column, len(pattern)))
        self.expected = expected
        self.suggestion = suggestion
        super().__init__(self._render())

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.pattern, self.column, self.expected, self.suggestion))

    def _render(self) -> str:
        shown, caret = _excerpt(self.pattern, self.column)
        lines = [
            f"invalid pattern at column {self.column}: {self.reason}",
            f"  {shown}",
            f"  {' ' * caret}^",
            f"expected {self.expected}",
            f"valid mixers: {_valid_mixers()}",
        ]
        if self.suggestion is not None:
            lines.append(f"did you mean {self.suggestion!r}?")
        return "\n".join(lines)


def _excerpt(text: str, column: int) -> tuple[str, int]:
    """The pattern as one printable line (at most ~_SHOW chars around ``column``) and the caret offset."""
    shown = "".join(c if c.isprintable() else (" " if c in _WHITESPACE else "?") for c in text)
    if len(shown) <= _SHOW:
        return shown, column
    start = max(0, column - _SHOW // 2)
    end = min(len(shown), start + _SHOW)
    start = max(0, end - _SHOW)
    prefix = "..." if start > 0 else ""
    suffix = "..." if end < len(shown) else ""
    return prefix + shown[start:end] + suffix, len(prefix) + column - start


def _valid_mixers() -> str:
    try:
        return ", ".join(f"{s.symbol} ({s.name})" for s in registry.specs())
    except Exception as e:  # the message must render even while the registry is broken
        return f"(mixer registry failed to load: {type(e).__name__}: {e})"


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"pattern parameter value {value!r} is not finite and cannot be written")
        return repr(value)
    if isinstance(value, str) and _WORD_RE.fullmatch(value) and value not in _KEYWORDS:
        return value
    raise ValueError(
        f"pattern parameter value {value!r} cannot be written in a pattern (int, finite float, "
        f"true/false, null or a bare word [A-Za-z_][A-Za-z0-9_]* only)"
    )


@dataclass(frozen=True)
class Token:
    """One mixer occurrence: a canonical registry symbol and its ``[key=value]`` overrides.

    ``params`` is kept sorted by key, so tokens that differ only in the order they were written in
    compare (and hash) equal.
    """

    symbol: str
    params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(sorted(tuple(self.params), key=lambda kv: kv[0])))

    def params_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def __str__(self) -> str:
        if not self.params:
            return self.symbol
        return self.symbol + "[" + ",".join(f"{k}={_format_value(v)}" for k, v in self.params) + "]"


@dataclass(frozen=True)
class Layer:
    """One pre-norm residual sublayer: one branch, or a parallel group whose outputs are averaged."""

    branches: tuple[Token, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "branches", tuple(self.branches))
        if not self.branches or not all(isinstance(b, Token) for b in self.branches):
            raise ValueError(f"Layer needs one or more Tokens; got {self.branches!r}")

    @property
    def parallel(self) -> bool:
        return len(self.branches) > 1

    @property
    def symbols(self) -> str:
        return "|".join(b.symbol for b in self.branches)

    def __str__(self) -> str:
        if len(self.branches) == 1:
            return str(self.branches[0])
        return "(" + "|".join(str(b) for b in self.branches) + ")"


@dataclass(frozen=True, repr=False)
class Pattern:
    """A parsed layout: the flat sequence of sublayers, repetition expanded.

    ``canonical`` writes every layer (``M-F-A[window=512]-F``); ``compact`` folds repetition back
    (``(M-F-A-F)*6``); both parse back to an equal ``Pattern``.
    """

    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("a Pattern needs at least one layer")
        if len(self.layers) > MAX_LAYERS:
            raise ValueError(f"a Pattern holds at most {MAX_LAYERS} sublayers; got {len(self.layers)}")
        if not all(isinstance(layer, Layer) for layer in self.layers):
            raise ValueError("Pattern.layers must hold Layer objects")

    @cached_property
    def canonical(self) -> str:
        return "-".join(str(layer) for layer in self.layers)

    @cached_property
    def compact(self) -> str:
        return _Compactor(self.layers).encode()

    @property
    def layout_hash(self) -> str:
        return hashlib.sha256(self.canonical.encode()).hexdigest()[:12]

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def counts(self) -> dict[str, int]:
        """Occurrences of each symbol (every branch of a parallel group counts), in order of first use."""
        out: dict[str, int] = {}
        for layer in self.layers:
            for tok in layer.branches:
                out[tok.symbol] = out.get(tok.symbol, 0) + 1
        return out

    def __str__(self) -> str:
        return self.compact

    def __repr__(self) -> str:
        return f"<Pattern {self.compact!r}: {self.n_layers} sublayers>"


def format_pattern(p: Pattern, compact: bool = True) -> str:
    """``p`` as text: the compact form (repetition folded) or the canonical form (every layer written)."""
    return p.compact if compact else p.canonical


def tile(unit: str | Pattern, n: int) -> Pattern:
    """``unit`` repeated ``n`` times, e.g. ``tile("M-A", 12)`` (an explicit replacement for implicit tiling).

    Raises:
        PatternError: ``unit`` is a string that does not parse.
        TypeError, ValueError: ``n`` is not a positive int, or the result exceeds ``MAX_LAYERS``.
    """
    p = parse(unit) if isinstance(unit, str) else unit
    if not isinstance(p, Pattern):
        raise TypeError(f"tile: unit must be a pattern string or a Pattern; got {type(unit).__name__}")
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"tile: n must be an int; got {n!r}")
    if n < 1:
        raise ValueError(f"tile: n must be >= 1; got {n}")
    if p.n_layers * n > MAX_LAYERS:
        raise ValueError(f"tile: {p.compact!r} * {n} = {p.n_layers * n} sublayers; at most {MAX_LAYERS}")
    return Pattern(p.layers * n)


def parse(text: str) -> Pattern:
    """Parse a layer pattern (grammar in the module docstring).

    Symbols (``M``) and registry names (``mamba``) are accepted and normalised to symbols; params are
    checked against the mixer's config (unknown keys, wrong types and out-of-range values are errors)
    and sorted by key. Whitespace is ignored.

    Raises:
        PatternError: for any malformed input (and for non-``str`` input), with the 0-based column.

    >>> p = parse("(M-F-A[window=2048]-F)*6")
    >>> p.n_layers, p.counts()
    (24, {'M': 6, 'F': 12, 'A': 6})
    >>> parse("mamba - mlp - mamba - mlp").canonical
    'M-F-M-F'
    >>> parse("M-F-A-F-M-F-A-F").compact
    '(M-F-A-F)*2'
    >>> parse("((M-F)*2-A[window=512]-F)*3").compact
    '((M-F)*2-A[window=512]-F)*3'
    >>> parse("(M|A)*2-F").canonical
    '(M|A)-(M|A)-F'
    >>> parse("A[window=null, heads=8]").layers[0].branches[0].params_dict()
    {'heads': 8, 'window': None}
    >>> parse("M-F-X")
    Traceback (most recent call last):
        ...
    blocks.pattern.PatternError: invalid pattern at column 4: unknown mixer 'X'
      M-F-X
          ^
    expected a mixer symbol or name
    valid mixers: M (mamba), A (swa), G (gla), R (retnet), F (mlp)
    """
    if not isinstance(text, str):
        raise PatternError(
            f"a pattern must be a str; got {type(text).__name__}",
            "",
            0,
            "a pattern string such as '(M-F-A-F)*6'",
        )
    try:
        return _Parser(text).parse()
    except PatternError:
        raise
    except Exception as e:  # the contract: PatternError for any input; the cause stays chained
        raise PatternError(
            f"internal error while parsing ({type(e).__name__}: {e}); this is a bug in hybridlab",
            text,
            0,
            "a valid pattern",
        ) from e


@dataclass
class _Item:
    node: Layer | list[_Item]
    count: int
    start: int
    count_col: int
    size: int


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.pos = 0
        self.table: dict[str, registry.MixerSpec] = {}
        for spec in registry.specs():
            self.table[spec.symbol] = spec
            self.table[spec.name] = spec

    def error(self, reason: str, column: int, expected: str, suggestion: str | None = None) -> PatternError:
        return PatternError(reason, self.text, column, expected, suggestion)

    def skip_ws(self) -> None:
        while self.pos < self.n and self.text[self.pos] in _WHITESPACE:
            self.pos += 1

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.pos] if self.pos < self.n else ""

    def describe(self, c: str) -> str:
        return "the end of the pattern" if c == "" else repr(c)

    def parse(self) -> Pattern:
        items = self.parse_seq(0, [])
        c = self.peek()
        if c != "":
            self.unexpected(c, in_group=False)
        total = sum(it.size for it in items)
        if total > MAX_LAYERS:
            raise self.error(
                f"pattern expands to {total} sublayers; at most {MAX_LAYERS}",
                self.culprit(items),
                f"at most {MAX_LAYERS} sublayers in all (lower a repetition count)",
            )
        out: list[Layer] = []
        self.expand(items, out)
        return Pattern(tuple(out))

    def unexpected(self, c: str, in_group: bool) -> NoReturn:
        col = self.pos
        follow = "'-', ')' or the end of the pattern" if in_group else "'-' or the end of the pattern"
        if c == ")":
            raise self.error("unmatched ')'", col, follow)
        if c == "|":
            raise self.error(
                "'|' outside a parallel group",
                col,
                f"{follow}; '|' only separates the single tokens of a parallel group such as (M|A)",
            )
        if c == "*":
            raise self.error(
                "a repetition cannot be repeated again",
                col,
                f"{follow}; wrap the item in parentheses to repeat it again, e.g. (M*2)*3",
            )
        if c in _IDENT_START or c == "(":
            raise self.error(f"missing '-' before {c!r}", col, f"'-' between sublayers; {follow}")
        self.fail(f"unexpected character {c!r}", col, follow)

    def fail(self, reason: str, col: int, expected: str) -> NoReturn:
        """Raise, adding the hybridlab spelling when the text reads as a Megatron hybrid pattern."""
        hint = self.megatron_hint()
        if hint is not None:
            expected += (
                "; this looks like a Megatron-LM hybrid_override_pattern ('*' attention, '-' MLP), "
                "which blocks.pattern_convert.from_megatron converts"
            )
        raise self.error(reason, col, expected, hint)

    def megatron_hint(self) -> str | None:
        text = self.text.strip()
        if len(text) < 2 or not set(text) <= {"M", "*", "-"} or "*" not in text:
            return None
        names = {"M": "mamba", "*": "swa", "-": "mlp"}
        try:
            symbols = [registry.get(names[c]).symbol for c in text]
            return Pattern(tuple(Layer((Token(s),)) for s in symbols)).compact
        except Exception:
            return None

    def parse_seq(self, depth: int, items: list[_Item]) -> list[_Item]:
        if not items:
            items.append(self.parse_item(depth))
        while self.peek() == "-":
            self.pos += 1
            items.append(self.parse_item(depth))
        return items

    def parse_item(self, depth: int, atom: tuple[Layer | list[_Item], int] | None = None) -> _Item:
        if atom is None:
            atom = self.parse_atom(depth)
        node, start = atom
        inner = 1 if isinstance(node, Layer) else sum(it.size for it in node)
        if self.peek() != "*":
            return _Item(node, 1, start, start, inner)
        star = self.pos
        self.pos += 1
        self.skip_ws()
        col = self.pos
        while self.pos < self.n and self.text[self.pos] in _DIGITS:
            self.pos += 1
        digits = self.text[col : self.pos]
        if not digits:
            found = self.text[col] if col < self.n else ""
            reason = (
                "a repetition count must be a positive integer"
                if found in ("-", "+")
                else f"missing repetition count after '*' at column {star}"
            )
            self.fail(reason, col, "a positive integer repetition count, e.g. M*3")
        if len(digits) > _MAX_COUNT_DIGITS:
            raise self.error(
                f"repetition count {digits[:20]}... is too large",
                col,
                f"a repetition count that keeps the pattern at most {MAX_LAYERS} sublayers",
            )
        count = int(digits)
        if count == 0:
            raise self.error("repetition count 0: an item must appear at least once", col, "a count >= 1")
        return _Item(node, count, start, col, inner * count)

    def parse_atom(self, depth: int) -> tuple[Layer | list[_Item], int]:
        c = self.peek()
        start = self.pos
        if c in _IDENT_START:
            return Layer((self.parse_token(),)), start
        if c == "(":
            return self.parse_group(depth), start
        if c == "":
            what = (
                "the pattern is empty"
                if not self.text.strip()
                else "the pattern ends where a sublayer is expected"
            )
            if self.text.rstrip().endswith("-"):
                what = "the pattern ends with '-'"
            self.fail(what, start, _SUBLAYER)
        if c in _DIGITS:
            self.fail(
                f"a number where a sublayer is expected ({c!r})",
                start,
                f"{_SUBLAYER}; counts go after '*', as in M*3",
            )
        if c == ")":
            self.fail("')' where a sublayer is expected", start, _SUBLAYER)
        if c == "-":
            self.fail("'-' where a sublayer is expected (two separators in a row?)", start, _SUBLAYER)
        self.fail(f"unexpected character {c!r}", start, _SUBLAYER)

    def parse_group(self, depth: int) -> Layer | list[_Item]:
        open_col = self.pos
        if depth + 1 > MAX_DEPTH:
            raise self.error(
                f"groups nested more than {MAX_DEPTH} deep", open_col, f"at most {MAX_DEPTH} nested groups"
            )
        self.pos += 1
        c = self.peek()
        if c == ")":
            raise self.error("empty group '()'", self.pos, "a sublayer inside the parentheses")
        if c in _IDENT_START:
            tok_start = self.pos
            first = self.parse_token()
            if self.peek() == "|":
                return self.parse_parallel(first, open_col)
            items = [self.parse_item(depth + 1, (Layer((first,)), tok_start))]
            items = self.parse_seq(depth + 1, items)
        else:
            items = self.parse_seq(depth + 1, [])
        c = self.peek()
        if c == ")":
            self.pos += 1
            return items
        if c == "":
            raise self.error(
                f"unclosed '(' at column {open_col}", self.pos, f"')' to close the '(' at column {open_col}"
            )
        if c == "|":
            raise self.error(
                "'|' inside a sequence group",
                self.pos,
                "'-' or ')'; a parallel group holds single tokens separated by '|', such as (M|A), "
                "with no '-' or '*' inside",
            )
        self.unexpected(c, in_group=True)

    def parse_parallel(self, first: Token, open_col: int) -> Layer:
        branches = [first]
        while self.peek() == "|":
            self.pos += 1
            c = self.peek()
            if c not in _IDENT_START:
                raise self.error(
                    f"{self.describe(c)} where a parallel branch is expected",
                    self.pos,
                    "a mixer token after '|' (branches are single tokens such as M or A[window=64])",
                )
            branches.append(self.parse_token())
        c = self.peek()
        if c == ")":
            self.pos += 1
            return Layer(tuple(branches))
        if c == "":
            raise self.error(
                f"unclosed '(' at column {open_col}",
                self.pos,
                f"'|' or ')' to close the '(' at column {open_col}",
            )
        if c in ("-", "*", "("):
            raise self.error(
                f"{c!r} inside a parallel group",
                self.pos,
                "'|' or ')'; parallel branches are single tokens: write (M|A) or repeat the whole group, (M|A)*2",
            )
        raise self.error(f"unexpected character {c!r} in a parallel group", self.pos, "'|' or ')'")

    def parse_token(self) -> Token:
        start = self.pos
        while self.pos < self.n and self.text[self.pos] in _IDENT_CHARS:
            self.pos += 1
        word = self.text[start : self.pos]
        spec = self.table.get(word)
        if spec is None:
            raise self.error(
                f"unknown mixer {word!r}", start, "a mixer symbol or name", self.suggest_mixer(word)
            )
        params: tuple[tuple[str, Any], ...] = ()
        if self.peek() == "[":
            params = self.parse_params(spec)
        return Token(spec.symbol, params)

    def suggest_mixer(self, word: str) -> str | None:
        m = re.fullmatch(r"([A-Za-z_]+?)([0-9]+)", word)
        if m and m.group(1) in self.table and int(m.group(2)) > 0:
            return f"{m.group(1)}*{int(m.group(2))}"
        try:
            return registry.closest(word)
        except Exception:
            return None

    def parse_params(self, spec: registry.MixerSpec) -> tuple[tuple[str, Any], ...]:
        open_col = self.pos
        self.pos += 1
        where = f"{spec.symbol} ({spec.name})"
        keys = field_names(spec.config)
        values: dict[str, Any] = {}
        key_cols: dict[str, int] = {}
        while True:
            c = self.peek()
            key_col = self.pos
            if c not in _IDENT_START:
                reason = (
                    "empty parameter list '[]'"
                    if c == "]" and not values
                    else f"{self.describe(c)} where a key is expected"
                )
                raise self.error(reason, key_col, f"key=value, with a key of {where}: {', '.join(keys)}")
            while self.pos < self.n and self.text[self.pos] in _IDENT_CHARS:
                self.pos += 1
            key = self.text[key_col : self.pos]
            if key not in keys:
                close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
                raise self.error(
                    f"unknown key {key!r} for {where}",
                    key_col,
                    f"a key of {where}: {', '.join(keys)}",
                    close[0] if close else None,
                )
            if key in values:
                raise self.error(
                    f"duplicate key {key!r} (first given at column {key_cols[key]})",
                    key_col,
                    "each key at most once per token",
                )
            if self.peek() != "=":
                raise self.error(
                    f"{self.describe(self.peek())} after key {key!r}",
                    self.pos,
                    f"'=' and a value, as in {key}=VALUE",
                )
            self.pos += 1
            self.skip_ws()
            value_col = self.pos
            value = self.parse_value(key)
            try:
                values[key] = check_field(spec.config, key, value, where)
            except ConfigError as e:
                hint = value.lower() if isinstance(value, str) and value.lower() in _KEYWORDS else None
                if isinstance(value, str) and value == "None":
                    hint = "null"
                raise self.error(str(e), value_col, f"a value of the type of {key!r}", hint) from None
            key_cols[key] = key_col
            c = self.peek()
            if c == ",":
                self.pos += 1
                continue
            if c == "]":
                self.pos += 1
                break
            if c == "":
                raise self.error(
                    f"unclosed '[' at column {open_col}",
                    self.pos,
                    f"',' or ']' to close the '[' at column {open_col}",
                )
            raise self.error(f"unexpected character {c!r} in parameters", self.pos, "',' or ']'")
        self.check_ranges(spec, values, key_cols, open_col)
        return tuple(sorted(values.items()))

    def parse_value(self, key: str) -> Any:
        start = self.pos
        while self.pos < self.n and self.text[self.pos] in _VALUE_CHARS:
            self.pos += 1
        raw = self.text[start : self.pos]
        expected = "an int, a float, true, false, null or a bare word"
        if not raw:
            found = self.text[start] if start < self.n else ""
            raise self.error(
                f"{self.describe(found)} where the value of {key!r} is expected", start, expected
            )
        if len(raw) > _MAX_NUMBER_CHARS:
            raise self.error(
                f"value of {key!r} is {len(raw)} characters long",
                start,
                f"{expected} of at most {_MAX_NUMBER_CHARS} characters",
            )
        if raw in _KEYWORDS:
            return _KEYWORDS[raw]
        if _INT_RE.fullmatch(raw):
            return int(raw)
        if _FLOAT_RE.fullmatch(raw):
            value = float(raw)
            if not math.isfinite(value):
                raise self.error(f"value {raw!r} of {key!r} overflows a float", start, "a finite number")
            return value
        if _WORD_RE.fullmatch(raw):
            return raw
        raise self.error(f"invalid value {raw!r} for {key!r}", start, expected)

    def check_ranges(
        self, spec: registry.MixerSpec, values: dict[str, Any], key_cols: dict[str, int], open_col: int
    ) -> None:
        """Run the config's width-independent ``validate(None)`` on its defaults with ``values`` applied.

        An error that names a field not given here (a cross-field check against a default, e.g.
        ``kv_heads`` must divide the default ``heads``) is left to the model, whose ``mixers``
        defaults may make it valid; it is checked again when the layout is resolved.
        """
        if not values:
            return
        try:
            config = dataclasses.replace(spec.config(), **values)
            config.validate(None)
        except ConfigError as e:
            message = str(e)
            others = [k for k in field_names(spec.config) if k not in values]
            if any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(k)}(?![A-Za-z0-9_])", message) for k in others):
                return
            named = [k for k in values if re.search(rf"'{re.escape(k)}'", message)]
            col = key_cols[named[0]] if named else open_col
            raise self.error(message, col, f"values within the ranges of {spec.name}'s config") from None

    def culprit(self, items: list[_Item]) -> int:
        """The column of the repetition (or item) that takes the expansion past ``MAX_LAYERS``."""
        running = 0
        for it in items:
            running += it.size
            if running <= MAX_LAYERS:
                continue
            inner = it.size // it.count
            if inner > MAX_LAYERS and isinstance(it.node, list):
                return self.culprit(it.node)
            return it.count_col
        return 0

    def expand(self, items: list[_Item], out: list[Layer]) -> None:
        for it in items:
            if isinstance(it.node, Layer):
                out.extend([it.node] * it.count)
                continue
            start = len(out)
            self.expand(it.node, out)
            unit = out[start:]
            out.extend(unit * (it.count - 1))


class _Compactor:
    """The shortest text for a layer sequence with repetition folded.

    Layers become characters of a string ``s``; ``encode`` is a dynamic programme over end positions
    where an item ending at ``j`` is one layer or a primitive unit repeated ``k >= 2`` times (a
    non-primitive unit ``v^m`` is never shorter than ``v*(m*k)``). Units are encoded recursively and
    memoised by content. Cost is (characters, layers written), so ties fold; among equal costs a run
    ending at ``j`` beats a single layer there, which keeps runs in phase with what precedes them
    (``A-F-(M-F)*6`` rather than ``A-(F-M)*6-F``). Sequences longer than
    ``EXACT`` layers are first reduced to their primitive root; an aperiodic one is folded greedily.
    """

    EXACT = 300

    def __init__(self, layers: tuple[Layer, ...]) -> None:
        ids: dict[Layer, int] = {}
        self.atoms: list[str] = []
        chars = []
        for layer in layers:
            if layer not in ids:
                ids[layer] = len(ids)
                self.atoms.append(str(layer))
            chars.append(chr(0x100 + ids[layer]))
        self.s = "".join(chars)
        self.memo: dict[str, tuple[tuple[int, int], str]] = {}
        self.primitive_memo: dict[str, bool] = {}

    def encode(self) -> str:
        return self.seq(self.s)[1]

    def primitive(self, u: str) -> bool:
        hit = self.primitive_memo.get(u)
        if hit is None:
            hit = self.primitive_memo[u] = (u + u).find(u, 1) == len(u)
        return hit

    def unit_atom(self, u: str) -> tuple[tuple[int, int], str]:
        if len(u) == 1:
            a = self.atoms[ord(u) - 0x100]
            return (len(a), 1), a
        (chars, written), text = self.seq(u)
        return (chars + 2, written), f"({text})"

    def item(self, u: str, k: int) -> tuple[tuple[int, int], str]:
        (chars, written), text = self.unit_atom(u)
        if k == 1:
            return (chars, written), text
        suffix = f"*{k}"
        return (chars + len(suffix), written), text + suffix

    def seq(self, s: str) -> tuple[tuple[int, int], str]:
        hit = self.memo.get(s)
        if hit is not None:
            return hit
        n = len(s)
        if n <= self.EXACT:
            result = self.exact(s)
        else:
            period = (s + s).find(s, 1)
            if period < n:
                result = self.item(s[:period], n // period)
            else:
                result = self.greedy(s)
        self.memo[s] = result
        return result

    def exact(self, s: str) -> tuple[tuple[int, int], str]:
        n = len(s)
        best: list[tuple[int, int]] = [(0, 0)] * (n + 1)
        back: list[tuple[int, int, str]] = [(0, 0, "")] * (n + 1)
        for j in range(1, n + 1):
            (c0, w0), a = self.unit_atom(s[j - 1])
            pc, pw = best[j - 1]
            top = (pc + c0 + (j > 1), pw + w0)
            choice = (j - 1, 1, s[j - 1])
            for size in range(1, j // 2 + 1):
                u = s[j - size : j]
                if s[j - 2 * size : j - size] != u or not self.primitive(u):
                    continue
                (uc, uw), _ = self.unit_atom(u)
                k, i = 2, j - 2 * size
                while True:
                    pc, pw = best[i]
                    cost = (pc + (i > 0) + uc + 1 + len(str(k)), pw + uw)
                    if cost <= top:
                        top, choice = cost, (i, k, u)
                    if i - size >= 0 and s[i - size : i] == u:
                        k, i = k + 1, i - size
                    else:
                        break
            best[j] = top
            back[j] = choice
        parts = []
        j = n
        while j > 0:
            i, k, u = back[j]
            parts.append(self.item(u, k)[1])
            j = i
        return best[n], "-".join(reversed(parts))

    def greedy(self, s: str) -> tuple[tuple[int, int], str]:
        n = len(s)
        limit = self.EXACT // 2
        parts: list[str] = []
        chars = written = 0
        i = 0
        while i < n:
            best_cover, best = 1, (s[i], 1)
            for size in range(1, min(limit, (n - i) // 2) + 1):
                u = s[i : i + size]
                k = 1
                while s[i + k * size : i + (k + 1) * size] == u:
                    k += 1
                if k >= 2 and k * size > best_cover and self.primitive(u):
                    best_cover, best = k * size, (u, k)
            (c, w), text = self.item(*best)
            parts.append(text)
            chars += c + (i > 0)
            written += w
            i += best_cover
        return (chars, written), "-".join(parts)

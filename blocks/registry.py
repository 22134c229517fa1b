"""The mixer registry: one table mapping pattern symbols and names to mixer classes.

Each mixer registers its symbol (``M``), registry name (``mamba``), typed config dataclass and
``nn.Module`` class exactly once (``blocks/mixers/__init__.py`` holds one line per mixer).
Nothing outside this table dispatches on mixer types (conventions.md §2.2, anti-pattern 1).
Duplicate symbols or names are rejected when they are registered, i.e. at import.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from blocks.mixers.base import Mixer, MixerConfig

__all__ = ["MixerSpec", "RegistryError", "register", "get", "specs", "symbols", "names", "closest"]


class RegistryError(ValueError):
    """An unknown or duplicate mixer symbol or name."""


@dataclass(frozen=True)
class MixerSpec:
    """One registry entry.

    Attributes:
        symbol: one upper-case letter used in patterns (``M``).
        name: the long registry name, also accepted in patterns (``mamba``).
        config: the mixer's config dataclass (fields are the keys allowed in ``M[key=value]``).
        module: the ``Mixer`` subclass, constructed as ``module(d_model, config)``.
        summary: one line for listings.
    """

    symbol: str
    name: str
    config: type[MixerConfig]
    module: type[Mixer]
    summary: str = ""


_BY_SYMBOL: dict[str, MixerSpec] = {}
_BY_NAME: dict[str, MixerSpec] = {}


def register(spec: MixerSpec) -> MixerSpec:
    """Add ``spec`` to the registry; a symbol or name that is already taken raises ``RegistryError``."""
    if len(spec.symbol) != 1 or not spec.symbol.isupper():
        raise RegistryError(
            f"registry: symbol {spec.symbol!r} of mixer {spec.name!r} must be one upper-case letter"
        )
    if not spec.name.isidentifier() or spec.name != spec.name.lower():
        raise RegistryError(f"registry: name {spec.name!r} must be a lower-case identifier")
    if spec.symbol in _BY_SYMBOL:
        raise RegistryError(
            f"registry: symbol {spec.symbol!r} is already registered to mixer "
            f"{_BY_SYMBOL[spec.symbol].name!r}; pick another letter for {spec.name!r}"
        )
    if spec.name in _BY_NAME:
        raise RegistryError(
            f"registry: name {spec.name!r} is already registered (symbol {_BY_NAME[spec.name].symbol!r})"
        )
    _BY_SYMBOL[spec.symbol] = spec
    _BY_NAME[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    import blocks.mixers  # noqa: F401  (registers the built-in mixers)


def specs() -> tuple[MixerSpec, ...]:
    """All registered mixers in registration order."""
    _ensure_loaded()
    return tuple(_BY_SYMBOL.values())


def symbols() -> tuple[str, ...]:
    """All registered symbols in registration order."""
    return tuple(s.symbol for s in specs())


def names() -> tuple[str, ...]:
    """All registered names in registration order."""
    return tuple(s.name for s in specs())


def closest(key: str) -> str | None:
    """The registered symbol or name closest to ``key`` (case-insensitive), or None."""
    _ensure_loaded()
    candidates = list(_BY_SYMBOL) + list(_BY_NAME)
    lowered = {c.lower(): c for c in candidates}
    if key.lower() in lowered:
        return lowered[key.lower()]
    match = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[match[0]] if match else None


def get(key: str) -> MixerSpec:
    """Look a mixer up by symbol (``M``) or name (``mamba``).

    Raises:
        RegistryError: unknown key; the message lists the valid symbols and names and the closest match.
    """
    _ensure_loaded()
    if key in _BY_SYMBOL:
        return _BY_SYMBOL[key]
    if key in _BY_NAME:
        return _BY_NAME[key]
    valid = ", ".join(f"{s.symbol} ({s.name})" for s in _BY_SYMBOL.values())
    hint = closest(key)
    suggestion = f" Did you mean {hint!r}?" if hint else ""
    raise RegistryError(f"unknown mixer {key!r}; valid mixers: {valid}.{suggestion}")

"""The registry: the five built-in mixers, lookups by symbol and name, and its errors."""

from __future__ import annotations

import pytest

from blocks import registry
from blocks.mixers.mlp import MLP, MLPConfig


def test_builtin_mixers_are_registered_in_order() -> None:
    assert registry.symbols() == ("M", "A", "G", "R", "F")
    assert registry.names() == ("mamba", "swa", "gla", "retnet", "mlp")


@pytest.mark.parametrize("key", ["F", "mlp"])
def test_lookup_by_symbol_or_name(key: str) -> None:
    spec = registry.get(key)
    assert spec.module is MLP and spec.config is MLPConfig


def test_unknown_mixer_lists_valid_ones_and_the_closest() -> None:
    with pytest.raises(registry.RegistryError) as e:
        registry.get("mambo")
    msg = str(e.value)
    assert "'mambo'" in msg and "M (mamba)" in msg and "F (mlp)" in msg
    assert "Did you mean 'mamba'?" in msg


def test_duplicate_symbol_or_name_is_rejected() -> None:
    registry.specs()
    with pytest.raises(registry.RegistryError, match="symbol 'F' is already registered to mixer 'mlp'"):
        registry.register(registry.MixerSpec("F", "feedforward", MLPConfig, MLP))
    with pytest.raises(registry.RegistryError, match="name 'mlp' is already registered"):
        registry.register(registry.MixerSpec("Q", "mlp", MLPConfig, MLP))
    assert registry.symbols() == ("M", "A", "G", "R", "F")


def test_symbols_must_be_one_upper_case_letter() -> None:
    with pytest.raises(registry.RegistryError, match="one upper-case letter"):
        registry.register(registry.MixerSpec("mm", "other", MLPConfig, MLP))

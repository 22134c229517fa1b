"""``ModelConfig``: the ``model:`` section of a hybridlab config (keys fixed by design.md).

A plain dataclass of primitives and string-keyed dicts so that OmegaConf can use it as a structured
(closed) config, after torchtitan's typed configs. Per-mixer defaults live in ``mixers`` keyed by
symbol or registry name and are checked against the registry's config classes by
``resolve_mixer_defaults``; derived values (vocab from the tokenizer, heads from d_model) never get
written back, so the logged config is the one that ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from blocks import registry
from blocks.mixers.base import ConfigError, MixerConfig, apply_overrides

__all__ = ["ModelConfig", "INITS", "resolve_mixer_defaults", "validate_model_config"]

INITS = ("mamba", "normal")


@dataclass
class ModelConfig:
    """Args:
    pattern: the layer pattern, e.g. ``"(M-F-A-F)*2"`` (grammar in design.md).
    d_model: residual width.
    vocab_size: null takes it from the tokenizer.
    tie_embeddings: share the embedding and LM-head weights.
    norm_eps: RMSNorm epsilon.
    init: ``mamba`` (official Samba init: N(0, 0.02) embeddings, residual output projections
        divided by sqrt(number of sublayers)) or ``normal`` (TinyLlama/GPT-NeoX init).
    backend: ``auto | reference | kernel``.
    mixers: per-symbol default configs, e.g. ``{"A": {"window": 512}}``; ``[..]`` in the
        pattern overrides them per occurrence.
    preset: a named preset to start from (resolved by search_space before building).
    """

    pattern: str = "(M-F-A-F)*2"
    d_model: int = 128
    vocab_size: int | None = None
    tie_embeddings: bool = True
    norm_eps: float = 1.0e-5
    init: str = "mamba"
    backend: str = "auto"
    mixers: dict[str, dict[str, Any]] = field(default_factory=dict)
    preset: str | None = None


def resolve_mixer_defaults(
    mixers: dict[str, dict[str, Any]] | None, d_model: int | None = None
) -> dict[str, MixerConfig]:
    """The default config of every registered mixer with the model-level ``mixers`` overrides applied.

    Keys may be symbols (``A``) or registry names (``swa``); unknown keys and fields raise
    ``ConfigError`` naming ``model.mixers.<key>``.
    """
    out = {spec.symbol: spec.config() for spec in registry.specs()}
    seen: dict[str, str] = {}
    for key, overrides in (mixers or {}).items():
        try:
            spec = registry.get(key)
        except registry.RegistryError as e:
            raise ConfigError(f"model.mixers.{key}: {e}") from None
        if spec.symbol in seen:
            raise ConfigError(
                f"model.mixers: {key!r} and {seen[spec.symbol]!r} both configure mixer {spec.symbol} "
                f"({spec.name}); keep one of them"
            )
        seen[spec.symbol] = key
        if overrides is None:
            continue
        if not isinstance(overrides, dict):
            raise ConfigError(
                f"model.mixers.{key} must be a mapping of config fields; got {overrides!r}"
            )
        out[spec.symbol] = apply_overrides(out[spec.symbol], dict(overrides), f"model.mixers.{key}")
    if d_model is not None:
        for cfg in out.values():
            cfg.validate(None)
    return out


def validate_model_config(cfg: ModelConfig) -> None:
    """Check the scalar fields (the pattern and mixers are checked when the layout is resolved)."""
    if cfg.d_model < 1:
        raise ConfigError(f"model.d_model must be a positive int; got {cfg.d_model!r}")
    if cfg.vocab_size is not None and cfg.vocab_size < 2:
        raise ConfigError(f"model.vocab_size must be >= 2 or null (from the tokenizer); got {cfg.vocab_size!r}")
    if cfg.init not in INITS:
        raise ConfigError(f"model.init must be one of {', '.join(INITS)}; got {cfg.init!r}")
    if cfg.backend not in ("auto", "reference", "kernel"):
        raise ConfigError(f"model.backend must be auto, reference or kernel; got {cfg.backend!r}")
    if cfg.norm_eps <= 0:
        raise ConfigError(f"model.norm_eps must be > 0; got {cfg.norm_eps!r}")

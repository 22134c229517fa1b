"""hybridlab's model package: the mixer registry, the five mixers, the pattern DSL and HybridLM.

Imports only torch and einops; GPU kernel packages are imported lazily behind the backend switch.
"""

from blocks.config import ModelConfig
from blocks.diagnostics import capture
from blocks.mixers.base import ConfigError, Mixer, MixerConfig
from blocks.model import HybridBlock, HybridLM, resolve_layout
from blocks.pattern import Pattern, PatternError, parse
from blocks.registry import MixerSpec, RegistryError

__all__ = [
    "ConfigError",
    "HybridBlock",
    "HybridLM",
    "Mixer",
    "MixerConfig",
    "MixerSpec",
    "ModelConfig",
    "Pattern",
    "PatternError",
    "RegistryError",
    "capture",
    "parse",
    "resolve_layout",
]

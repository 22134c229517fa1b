"""The built-in mixers, one registry line each. A new mixer adds its own module and one line here."""

from blocks.mixers.gla import GLA, GLAConfig
from blocks.mixers.mamba import Mamba, MambaConfig
from blocks.mixers.mlp import MLP, MLPConfig
from blocks.mixers.retnet import RetNet, RetNetConfig
from blocks.mixers.swa import SWA, SWAConfig
from blocks.registry import MixerSpec, register

register(MixerSpec("M", "mamba", MambaConfig, Mamba, "Mamba-1 selective SSM"))
register(MixerSpec("A", "swa", SWAConfig, SWA, "causal (sliding-window) attention, RoPE, GQA"))
register(MixerSpec("G", "gla", GLAConfig, GLA, "gated linear attention"))
register(MixerSpec("R", "retnet", RetNetConfig, RetNet, "multi-scale retention"))
register(MixerSpec("F", "mlp", MLPConfig, MLP, "SwiGLU MLP"))

"""The mixer contract: the base config and module every registered mixer derives from.

A mixer is one self-contained ``nn.Module`` that owns all of its parameters, maps ``(B, T, D)`` to
``(B, T, D)`` and runs on two paths with one state_dict: ``reference`` (pure PyTorch, CPU and GPU)
and ``kernel`` (GPU packages, imported lazily). It follows the block/mixer split of mamba_ssm
(``modules/block.py``) and fla's kernel/reference split (``ops/<op>/naive.py``); see
``shared/docs/conventions.md`` §2.1-2.5.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from torch import Tensor, nn

__all__ = ["MixerConfig", "Mixer", "ConfigError", "apply_overrides", "check_field", "field_names", "linear_flops"]


class ConfigError(ValueError):
    """A mixer config field has an unknown name, a value of the wrong type, or an impossible value."""


@dataclasses.dataclass(kw_only=True)
class MixerConfig:
    """Base of every mixer config. Subclasses add typed fields with defaults.

    Field types may be ``int``, ``float``, ``bool``, ``str``, a ``Literal`` of strings or ints, and
    unions of those with ``None``. Derived values (heads from d_model, ...) are properties of the
    module, never written back into the config, so the logged config is the one that ran.
    """

    def validate(self, d_model: int | None = None) -> None:
        """Raise ``ConfigError`` naming the field and the fix when this config is impossible.

        With ``d_model=None`` only width-independent checks run (ranges, enumerations); with a width,
        divisibility and derived sizes are checked too.
        """

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_names(config_cls: type[MixerConfig]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(config_cls))


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits annotation ``tp``; returns (ok, value converted where lossless)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True, value
    if origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(tp):
            ok, v = _type_ok(value, arg)
            if ok:
                return True, v
        return False, value
    if origin is Literal:  # compare types too: True == 1 must not match Literal[1]
        return any(value == a and type(value) is type(a) for a in typing.get_args(tp)), value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, int):
            return True, value
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return False, value
    if tp is float:
        if isinstance(value, bool):
            return False, value
        return isinstance(value, (int, float)), float(value) if isinstance(value, (int, float)) else value
    if tp is str:
        return isinstance(value, str), value
    return isinstance(value, tp), value


def describe_type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(describe_type(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def check_field(config_cls: type[MixerConfig], key: str, value: Any, where: str) -> Any:
    """Check one ``key=value`` against ``config_cls``; return the value converted to the field's type.

    Raises:
        ConfigError: unknown key (with the valid keys and the closest one) or a value of the wrong type.
    """
    hints = typing.get_type_hints(config_cls)
    valid = field_names(config_cls)
    if key not in valid:
        match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        hint = f" Did you mean {match[0]!r}?" if match else ""
        raise ConfigError(f"{where}: unknown key {key!r}; valid keys: {', '.join(valid)}.{hint}")
    ok, converted = _type_ok(value, hints[key])
    if not ok:
        raise ConfigError(
            f"{where}: field {key!r} must be {describe_type(hints[key])}; got {value!r}"
        )
    return converted


def apply_overrides(
    config: MixerConfig, overrides: Mapping[str, Any], where: str, d_model: int | None = None
) -> MixerConfig:
    """A copy of ``config`` with ``overrides`` applied, every key and value checked.

    Args:
        config: the base config (defaults, or the model-level ``mixers`` entry).
        overrides: key/value pairs, e.g. from ``A[window=512]`` or YAML.
        where: the location for error messages (``"model.mixers.A"``, ``"layer 3 (A)"``).
        d_model: when given, the result is also validated for this width.
    """
    cls = type(config)
    checked = {k: check_field(cls, k, v, where) for k, v in overrides.items()}
    out = dataclasses.replace(config, **checked)
    if d_model is not None:
        out.validate(d_model)
    return out


class Mixer(nn.Module):
    """Base class of all mixers: ``(B, T, D) -> (B, T, D)``, causal, owning its parameters.

    Subclasses set ``Config`` and implement ``forward`` (dispatching on ``self.backend``),
    ``naive_forward`` (a plain per-token recurrence or explicit masked softmax, the ground truth the
    reference path is tested against), ``state_size`` and ``flops``.
    """

    Config: ClassVar[type[MixerConfig]]

    def __init__(self, d_model: int, config: MixerConfig) -> None:
        super().__init__()
        if not isinstance(config, self.Config):
            raise TypeError(
                f"{type(self).__name__} takes a {self.Config.__name__}; got {type(config).__name__}"
            )
        config.validate(d_model)
        self.d_model = d_model
        self.config = config
        self.backend: str = "reference"
        self.diagnostics: Any = None  # a blocks.diagnostics.Capture while capturing, else None
        self.layer_index: int | None = None
        self.branch_index: int = 0
        self.symbol: str = ""

    @classmethod
    def kernel_status(cls) -> str | None:
        """None when this mixer's kernel path can run here; otherwise why not and how to fix it."""
        return f"{cls.__name__} has no kernel path"

    def set_backend(self, backend: Literal["reference", "kernel"]) -> None:
        """Select the path used by ``forward``; ``kernel`` must have been checked with ``kernel_status``."""
        if backend not in ("reference", "kernel"):
            raise ValueError(f"{type(self).__name__}: backend must be 'reference' or 'kernel'; got {backend!r}")
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def naive_forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The slow ground truth: a per-token recurrence (M, G, R), an explicit masked softmax (A)."""
        raise NotImplementedError

    def state_size(self, seq_len: int) -> int:
        """Elements of recurrent state or KV cache one sequence of ``seq_len`` tokens needs at inference."""
        raise NotImplementedError

    def flops(self, seq_len: int) -> int:
        """Forward FLOPs per token (2 per multiply-add), averaged over a sequence of ``seq_len`` tokens."""
        raise NotImplementedError

    def output_projections(self) -> list[nn.Module]:
        """The projections writing into the residual stream (rescaled by ``init: mamba``)."""
        return []

    def kernel_route(self) -> str | None:
        """On the kernel path, which of several implementations it runs here when that depends on what is
        installed (recorded per run as the tag ``hybridlab.kernel_route.<symbol>``); None when there is no
        choice."""
        return None

    def record(self, name: str, value: Tensor) -> None:
        """Hand a diagnostic tensor to the active capture; call only under ``if self.diagnostics``."""
        self.diagnostics.add(self, name, value)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, backend={self.backend}"


def linear_flops(*layers: nn.Linear) -> int:
    """FLOPs per token of applying the given linear layers (2 per weight element, plus the bias)."""
    total = 0
    for layer in layers:
        total += 2 * layer.in_features * layer.out_features
        if layer.bias is not None:
            total += layer.out_features
    return total


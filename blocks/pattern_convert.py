"""Converters between hybridlab patterns and two other layouts: Megatron-LM's and fla's hybrid configs.

**Megatron-LM** (``megatron/core/ssm/mamba_hybrid_layer_allocation.py``, ``Symbols`` and
``_allocate_override``): ``hybrid_override_pattern`` is one character per layer, ``M`` Mamba,
``*`` attention, ``-`` MLP (``E`` MoE and the ``/`` multi-token-prediction separator have no
hybridlab counterpart). **In Megatron ``-`` is an MLP layer; in a hybridlab pattern ``-`` only
separates sublayers and the MLP is ``F``.** So Samba's ``(M-F-A-F)*6`` is Megatron ``M-*-`` six times,
24 characters, and Megatron ``M*-`` is hybridlab ``M-A-F``, not three layers of anything else.

**fla** (flash-linear-attention, ``fla/models/<mixer>/configuration_<mixer>.py``, the ``attn`` argument):
every fla layer is one base mixer (``mamba``, ``gla``, ``retnet``, ...) followed by an MLP, and
``attn = {"layers": [...], "num_heads": H, "num_kv_heads": KV, "window_size": W, "rope_theta": T}``
lists the layers whose mixer is replaced by attention, all sharing those settings. So an fla config
holds exactly the layouts ``(X-F)*n`` where every ``X`` is the base mixer or attention.

Both are layout conversions, not weight conversions: Megatron's ``M`` is Mamba-2 while hybridlab's is
Mamba-1, and Megatron's ``*`` is full attention unless ``--window-size`` is set, while hybridlab's
``A`` takes its window from ``model.mixers.A`` (default 128). Per-layer settings a format cannot hold
raise ``PatternConversionError`` naming the layer, never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from blocks import registry
from blocks.config import resolve_mixer_defaults
from blocks.mixers.base import ConfigError, check_field
from blocks.pattern import MAX_LAYERS, Layer, Pattern, Token

__all__ = [
    "MEGATRON_SYMBOLS",
    "PatternConversionError",
    "from_fla",
    "from_megatron",
    "to_fla",
    "to_megatron",
]

MEGATRON_SYMBOLS: dict[str, str] = {"M": "mamba", "*": "swa", "-": "mlp"}
_MEGATRON_UNSUPPORTED = {
    "E": "a mixture-of-experts MLP layer ('E'), which hybridlab has no mixer for",
    "/": "the multi-token-prediction separator ('/'); convert the main decoder pattern before it only",
}
_ATTN = "swa"
_MLP = "mlp"
_FLA_ATTN_KEYS = {
    "num_heads": "heads",
    "num_kv_heads": "kv_heads",
    "window_size": "window",
    "rope_theta": "rope_base",
}
_FLA_FIXED = {"qkv_bias": False}


class PatternConversionError(ValueError):
    """A layout the target format cannot represent; the message says why and at which layer."""


def _symbol(name: str) -> str:
    return registry.get(name).symbol


def _where(p: Pattern, i: int) -> str:
    layer = p.layers[i]
    return f"pattern layer {i}, {layer}," if layer.parallel else f"pattern layer {i} ({layer})"


def to_megatron(p: Pattern) -> str:
    """``p`` as a Megatron-LM ``hybrid_override_pattern`` (one char per layer: ``M`` ``*`` ``-``).

    >>> from blocks.pattern import parse
    >>> to_megatron(parse("(M-F-A-F)*2"))
    'M-*-M-*-'

    Raises:
        PatternConversionError: a parallel group, a mixer Megatron's hybrid stack lacks (G, R), or a
            token with ``[..]`` params (Megatron's pattern has no per-layer settings).
    """
    to_char = {_symbol(name): char for char, name in MEGATRON_SYMBOLS.items()}
    out = []
    for i, layer in enumerate(p.layers):
        if layer.parallel:
            raise PatternConversionError(
                f"to_megatron: {_where(p, i)} is a parallel group; Megatron's hybrid_override_pattern "
                f"has one mixer per layer"
            )
        tok = layer.branches[0]
        if tok.symbol not in to_char:
            spec = registry.get(tok.symbol)
            raise PatternConversionError(
                f"to_megatron: {_where(p, i)} is {spec.name}; Megatron's hybrid_override_pattern only "
                f"has Mamba ('M'), attention ('*') and MLP ('-') layers"
            )
        if tok.params:
            raise PatternConversionError(
                f"to_megatron: {_where(p, i)} sets {', '.join(k for k, _ in tok.params)} for this layer only; "
                f"Megatron's hybrid_override_pattern has no per-layer settings, so set them model-wide "
                f"in the Megatron config and drop the [..] here"
            )
        out.append(to_char[tok.symbol])
    return "".join(out)


def from_megatron(s: str) -> Pattern:
    """A Megatron-LM ``hybrid_override_pattern`` as a hybridlab ``Pattern``.

    Megatron's ``-`` is an MLP layer (``F``), not a separator:

    >>> from_megatron("M*-M*-").compact
    '(M-A-F)*2'

    Raises:
        PatternConversionError: not a str, empty, longer than ``MAX_LAYERS``, or a character other
            than ``M``, ``*``, ``-`` (``E`` MoE and ``/`` MTP are named).
    """
    if not isinstance(s, str):
        raise PatternConversionError(f"from_megatron: expected a str; got {type(s).__name__}")
    if not s:
        raise PatternConversionError("from_megatron: the hybrid_override_pattern is empty")
    if len(s) > MAX_LAYERS:
        raise PatternConversionError(f"from_megatron: {len(s)} layers; hybridlab allows at most {MAX_LAYERS}")
    layers = []
    for i, char in enumerate(s):
        name = MEGATRON_SYMBOLS.get(char)
        if name is None:
            what = _MEGATRON_UNSUPPORTED.get(char, f"{char!r}, which is not a Megatron layer symbol")
            raise PatternConversionError(
                f"from_megatron: layer {i} of {s!r} is {what}; hybridlab converts 'M' (Mamba), "
                f"'*' (attention) and '-' (MLP)"
            )
        layers.append(Layer((Token(_symbol(name)),)))
    return Pattern(tuple(layers))


def _attn_base(mixers: Mapping[str, Any] | None, caller: str) -> dict[str, Any]:
    try:
        config = resolve_mixer_defaults(dict(mixers) if mixers is not None else None)[_symbol(_ATTN)]
    except ConfigError as e:
        raise PatternConversionError(f"{caller}: {e}") from None
    return config.to_dict()


def _effective_kv(settings: Mapping[str, Any]) -> Any:
    return settings["heads"] if settings.get("kv_heads") is None else settings["kv_heads"]


def to_fla(p: Pattern, *, mixers: Mapping[str, Any] | None = None, base: str | None = None) -> dict[str, Any]:
    """``p`` as fla's hybrid layout: ``{"mixer", "num_hidden_layers", "attn"}``.

    Args:
        p: a layout of ``(X-F)*n`` pairs, every ``X`` the same base mixer or attention (``A``).
        mixers: the model-level ``model.mixers`` defaults (keyed by symbol or name); the ``attn`` values
            are the attention config they resolve to with the pattern's ``A[..]`` params applied, so
            pass the model's mixers to get the values the hybridlab model would use.
        base: the base mixer's registry name, needed only when every layer is attention.

    Returns:
        ``mixer`` (base registry name), ``num_hidden_layers`` (fla layers, one mixer + MLP each) and
        ``attn``: ``{"layers", "num_heads", "num_kv_heads", "window_size", "rope_theta"}`` or None.

    >>> from blocks.pattern import parse
    >>> to_fla(parse("(M-F-A[window=2048]-F)*2"))["attn"]
    {'layers': [1, 3], 'num_heads': 4, 'num_kv_heads': 4, 'window_size': 2048, 'rope_theta': 10000.0}

    Raises:
        PatternConversionError: a parallel group; a layout that is not (X-F) pairs; two different base
            mixers; attention layers with differing params; params on the base mixer or the MLP; an
            attention setting fla's ``attn`` cannot hold (``rope=false``, ``head_dim``).
    """
    attn_sym, mlp_sym = _symbol(_ATTN), _symbol(_MLP)
    if p.n_layers % 2:
        raise PatternConversionError(
            f"to_fla: {p.n_layers} sublayers; an fla layer is a mixer followed by an MLP, so the pattern "
            f"must be (X-F) pairs with an even number of sublayers"
        )
    base_sym: str | None = None
    base_at = -1
    attn_layers: list[int] = []
    attn_params: tuple[tuple[str, Any], ...] | None = None
    attn_at = -1
    for i, layer in enumerate(p.layers):
        if layer.parallel:
            raise PatternConversionError(
                f"to_fla: {_where(p, i)} is a parallel group; fla layers have one mixer each"
            )
        tok = layer.branches[0]
        if i % 2:
            if tok.symbol != mlp_sym:
                raise PatternConversionError(
                    f"to_fla: {_where(p, i)} should be {mlp_sym}: every fla layer is a mixer followed by an "
                    f"MLP, so odd sublayers must be {mlp_sym}"
                )
            if tok.params:
                raise PatternConversionError(
                    f"to_fla: {_where(p, i)} sets MLP params for this layer only; fla's hybrid config has "
                    f"one MLP setting for all layers (intermediate_size), so set them in model.mixers.{mlp_sym}"
                )
            continue
        if tok.symbol == mlp_sym:
            raise PatternConversionError(
                f"to_fla: {_where(p, i)} is an MLP where fla layer {i // 2} needs its mixer; "
                f"the pattern must be (X-F) pairs"
            )
        if tok.symbol == attn_sym:
            if attn_params is None:
                attn_params, attn_at = tok.params, i
            elif tok.params != attn_params:
                raise PatternConversionError(
                    f"to_fla: {_where(p, i)} has params that differ from {_where(p, attn_at)}; fla's attn "
                    f"dict holds one setting for all attention layers"
                )
            attn_layers.append(i // 2)
            continue
        if base_sym is None:
            base_sym, base_at = tok.symbol, i
        elif tok.symbol != base_sym:
            raise PatternConversionError(
                f"to_fla: {_where(p, i)} differs from the base mixer {base_sym} of {_where(p, base_at)}; "
                f"an fla config has one base mixer (plus attention layers)"
            )
        if tok.params:
            raise PatternConversionError(
                f"to_fla: {_where(p, i)} sets params for this layer only; fla's hybrid config has "
                f"one setting for all base-mixer layers, so set them in model.mixers.{tok.symbol}"
            )
    if base_sym is None:
        if base is None:
            raise PatternConversionError(
                "to_fla: every layer is attention, so the base mixer is undetermined; pass base= "
                "(e.g. base='gla'), or build it as fla's plain transformer"
            )
        try:
            spec = registry.get(base)
        except registry.RegistryError as e:
            raise PatternConversionError(f"to_fla: base: {e}") from None
        if spec.symbol in (attn_sym, mlp_sym):
            raise PatternConversionError(f"to_fla: base must be a non-attention, non-MLP mixer; got {base!r}")
        base_sym = spec.symbol
    elif base is not None and base not in (base_sym, registry.get(base_sym).name):
        raise PatternConversionError(
            f"to_fla: base={base!r} but the pattern's base mixer is {registry.get(base_sym).name!r}"
        )
    out: dict[str, Any] = {
        "mixer": registry.get(base_sym).name,
        "num_hidden_layers": p.n_layers // 2,
        "attn": None,
    }
    if attn_layers:
        settings = _attn_base(mixers, "to_fla")
        settings.update(dict(attn_params or ()))
        where = _where(p, attn_at)
        if not settings.get("rope", True):
            raise PatternConversionError(
                f"to_fla: {where}: rope=false (NoPE) cannot be expressed; fla's attention always applies RoPE"
            )
        if settings.get("head_dim") is not None:
            raise PatternConversionError(
                f"to_fla: {where}: head_dim={settings['head_dim']} cannot be expressed; fla's attention "
                f"uses hidden_size // num_heads"
            )
        out["attn"] = {
            "layers": attn_layers,
            "num_heads": settings["heads"],
            "num_kv_heads": _effective_kv(settings),
            "window_size": settings["window"],
            "rope_theta": float(settings["rope_base"]),
        }
    return out


def from_fla(cfg: Mapping[str, Any], *, mixers: Mapping[str, Any] | None = None) -> Pattern:
    """fla's hybrid layout as a ``Pattern`` of ``(X-F)`` pairs.

    Args:
        cfg: ``{"mixer" (or fla's "model_type"), "num_hidden_layers", "attn"}``; other keys of a full
            fla config (``hidden_size``, ...) are model settings and are ignored here.
        mixers: the model-level ``model.mixers`` defaults the result will be used with; attention
            settings equal to what they resolve to are left out of the ``A[..]`` params, those that
            differ are written on every attention layer. Missing ``attn`` keys take fla's defaults
            (``num_kv_heads`` = ``num_heads``, ``window_size`` None = full attention, ``rope_theta``
            10000).

    ``from_fla(to_fla(p, mixers=m), mixers=m) == p`` for every ``p`` that ``to_fla`` accepts whose
    ``A[..]`` params do not restate the defaults (those come back without the redundant params).

    >>> from_fla({"mixer": "mamba", "num_hidden_layers": 4, "attn": {"layers": [1, 3], "num_heads": 4,
    ...           "window_size": 2048}}).compact
    '(M-F-A[window=2048]-F)*2'

    Raises:
        PatternConversionError: a missing or malformed key, an unknown mixer, attention layer
            indices out of range or repeated, or attention settings hybridlab cannot take.
    """
    if not isinstance(cfg, Mapping):
        raise PatternConversionError(f"from_fla: expected a mapping; got {type(cfg).__name__}")
    name = cfg.get("mixer", cfg.get("model_type"))
    if not isinstance(name, str):
        raise PatternConversionError(f"from_fla: 'mixer' must name the base mixer (e.g. 'gla'); got {name!r}")
    try:
        spec = registry.get(name)
    except registry.RegistryError as e:
        raise PatternConversionError(f"from_fla: mixer: {e}") from None
    attn_sym, mlp_sym = _symbol(_ATTN), _symbol(_MLP)
    if spec.symbol in (attn_sym, mlp_sym):
        raise PatternConversionError(
            f"from_fla: mixer {name!r} cannot be fla's base mixer; name the linear-attention or SSM mixer "
            f"and list attention layers in attn.layers"
        )
    n = cfg.get("num_hidden_layers")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PatternConversionError(f"from_fla: num_hidden_layers must be a positive int; got {n!r}")
    if 2 * n > MAX_LAYERS:
        raise PatternConversionError(
            f"from_fla: {n} fla layers are {2 * n} sublayers; hybridlab allows at most {MAX_LAYERS}"
        )
    attn = cfg.get("attn")
    attn_tok: Token | None = None
    attn_at: set[int] = set()
    if attn is not None:
        if not isinstance(attn, Mapping):
            raise PatternConversionError(
                f"from_fla: attn must be a mapping or None; got {type(attn).__name__}"
            )
        attn_at = _fla_layers(attn.get("layers"), n)
        attn_tok = Token(attn_sym, _fla_attn_params(attn, mixers))
    base = Layer((Token(spec.symbol),))
    mlp = Layer((Token(mlp_sym),))
    layers: list[Layer] = []
    for i in range(n):
        layers.append(Layer((attn_tok,)) if attn_tok is not None and i in attn_at else base)
        layers.append(mlp)
    return Pattern(tuple(layers))


def _fla_layers(value: Any, n: int) -> set[int]:
    if not isinstance(value, (list, tuple)):
        raise PatternConversionError(f"from_fla: attn.layers must be a list of layer indices; got {value!r}")
    seen: set[int] = set()
    for idx in value:
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < n:
            raise PatternConversionError(
                f"from_fla: attn.layers entry {idx!r} is not a layer index in [0, {n}) (num_hidden_layers={n})"
            )
        if idx in seen:
            raise PatternConversionError(f"from_fla: attn.layers lists layer {idx} twice")
        seen.add(idx)
    return seen


def _fla_attn_params(
    attn: Mapping[str, Any], mixers: Mapping[str, Any] | None
) -> tuple[tuple[str, Any], ...]:
    known = {"layers", *_FLA_ATTN_KEYS, *_FLA_FIXED}
    unknown = sorted(str(k) for k in attn if k not in known)
    if unknown:
        raise PatternConversionError(
            f"from_fla: attn key(s) {', '.join(unknown)} have no hybridlab counterpart; "
            f"known: {', '.join(sorted(known))}"
        )
    for key, required in _FLA_FIXED.items():
        if key in attn and attn[key] != required:
            raise PatternConversionError(
                f"from_fla: attn.{key}={attn[key]!r}; hybridlab's attention has {key}={required!r} only"
            )
    if "num_heads" not in attn:
        raise PatternConversionError("from_fla: attn.num_heads is required (fla requires it too)")
    heads = attn["num_heads"]
    rope_theta = attn.get("rope_theta", 10000.0)
    if (
        isinstance(rope_theta, bool)
        or not isinstance(rope_theta, (int, float))
        or not math.isfinite(rope_theta)
    ):
        raise PatternConversionError(f"from_fla: attn.rope_theta must be a finite number; got {rope_theta!r}")
    wanted = {
        "heads": heads,
        "kv_heads": attn.get("num_kv_heads", heads),
        "window": attn.get("window_size"),
        "rope_base": float(rope_theta),
    }
    spec = registry.get(_ATTN)
    checked: dict[str, Any] = {}
    for key, value in wanted.items():
        fla_key = next(k for k, v in _FLA_ATTN_KEYS.items() if v == key)
        try:
            checked[key] = check_field(spec.config, key, value, f"from_fla: attn.{fla_key}")
        except ConfigError as e:
            raise PatternConversionError(str(e)) from None
    try:
        spec.config(**checked).validate(None)
    except ConfigError as e:
        raise PatternConversionError(f"from_fla: attn: {e}") from None
    defaults = _attn_base(mixers, "from_fla")
    params = {k: v for k, v in checked.items() if k != "kv_heads" and v != defaults[k]}
    if _effective_kv(checked) != _effective_kv({**defaults, **params}):
        params["kv_heads"] = checked["kv_heads"]
    if not defaults["rope"]:
        params["rope"] = True
    if defaults["head_dim"] is not None:
        params["head_dim"] = None
    return tuple(sorted(params.items()))

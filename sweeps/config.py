"""Structured run configs: ``model``, ``data``, ``train``, ``sweep``, ``tracking`` (names fixed by design.md).

OmegaConf structured configs are closed (a typo'd key or a wrong type raises), after torchtitan's
typed configs and conventions.md §2.7-2.8. ``load_config`` merges the packaged or user YAML and
``key=value`` overrides onto the schema, resolves a ``model.preset``, and runs every cross-field check
(heads dividing d_model, windows vs evaluation lengths, evaluation lengths vs training length, the
sweep's patterns and search space) before anything expensive starts.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from blocks.config import ModelConfig
from blocks.mixers.base import ConfigError
from blocks.model import resolve_layout
from sweeps.data.config import DataConfig
from sweeps.data.config import validate as validate_data

__all__ = [
    "TrainConfig",
    "SweepConfig",
    "TrackingConfig",
    "RunConfig",
    "ConfigLoadError",
    "load_config",
    "packaged_config",
    "to_plain",
    "from_plain",
    "apply_dotted",
    "validate_run_config",
]


@dataclass
class TrainConfig:
    """The training loop: AdamW (beta1, beta2), warmup then cosine to ``lr * min_lr_ratio``."""

    steps: int = 200
    batch_size: int = 8
    lr: float = 1.0e-3
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    grad_accum: int = 1
    warmup: float = 0.05  # fraction of steps
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False  # torch.compile the sublayers around the mixers' ops (HybridLM.compile_sublayers)
    loss_chunk: int | None = None  # eager: LM head + loss this many tokens at a time (blocks.loss); null: all at once
    warm_kernels: bool = True  # on CUDA: run each kernel shape once per cache under a lock first (sweeps.warmup)
    threads: int | None = None  # torch CPU threads; null: what the process was given
    eval_every: int = 50
    eval_batches: int = 2
    eval_batch_size: int = 4
    log_every: int = 10
    entropy: bool = True
    entropy_batch_size: int = 2
    entropy_last: int | None = None
    probes: list[str] = field(default_factory=list)
    progress: str = "auto"  # auto | on | off


@dataclass
class SweepConfig:
    """A Ray Tune + Optuna sweep over a search space (``search_space.space`` documents the keys).

    Layouts come from one of ``patterns`` (a list), ``presets`` (names or ``{preset: NAME, ...}``) or
    ``layouts`` (generated); ``space`` maps dotted keys to ranges (mixer keys are conditional on the
    mixer being in the layout); ``budget`` resizes every sample to one parameter or FLOP count;
    ``constraints`` make samples infeasible; ``objectives`` (``{metric: min|max}``, two or more) make the
    sweep multi-objective, while ``metric``/``mode`` stay what ASHA stops trials on; ``dedup`` answers
    a sample that repeats an earlier trial's canonical model from that trial instead of training again.
    """

    name: str = "quickstart"
    num_samples: int = 8
    max_concurrent: int = 2
    metric: str = "val/loss"
    mode: str = "min"
    patterns: list[str] = field(default_factory=list)
    presets: list[Any] = field(default_factory=list)
    layouts: dict[str, Any] = field(default_factory=dict)
    enqueue_patterns: bool = True  # try every listed pattern (or preset) once before the sampler takes over
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    constraints: dict[str, Any] = field(default_factory=dict)
    objectives: dict[str, str] = field(default_factory=dict)
    dedup: bool = True
    scheduler: str = "asha"  # asha | fifo
    grace_period: int = 1  # evaluations before ASHA may stop a trial
    reduction_factor: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    sampler: str = "tpe"  # tpe | random
    seed: int = 0
    max_failures: int = 0
    reuse_actors: bool = False  # run later trials in a finished trial's process (skips process start and imports)


@dataclass
class TrackingConfig:
    """Where runs go: ``home`` (null: $HYBRIDLAB_HOME or ./runs, made absolute); MLflow experiment name."""

    home: str | None = None
    experiment: str | None = None  # null: the sweep name for sweeps, "train" for single runs
    run_name: str | None = None


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigLoadError(ConfigError):
    """A config file or override is unreadable, unknown, mistyped or impossible."""


def packaged_config(name: str) -> Path:
    """Path of a YAML shipped in ``sweeps/configs`` (``quickstart`` or ``quickstart.yaml``)."""
    fname = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    path = CONFIG_DIR / fname
    if not path.exists():
        shipped = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigLoadError(f"no packaged config {fname!r}; shipped configs: {', '.join(shipped)}")
    return path


def _find_config(path_or_name: str) -> Path:
    p = Path(path_or_name)
    if p.exists():
        return p
    try:
        return packaged_config(path_or_name)
    except ConfigLoadError as e:
        raise ConfigLoadError(f"config {path_or_name!r} is neither a file nor a packaged config ({e})") from None


def _suggest(key: str, node: Any) -> str:
    if not OmegaConf.is_dict(node):
        return ""
    match = difflib.get_close_matches(key, [str(k) for k in node.keys()], n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""


def _omegaconf_message(e: OmegaConfBaseException, schema: Any) -> str:
    key = getattr(e, "full_key", None) or ""
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    hint = ""
    if key and type(e).__name__ == "ConfigKeyError":
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(schema, parent) if parent else schema
        hint = _suggest(leaf, node)
        valid = ", ".join(str(k) for k in node.keys()) if OmegaConf.is_dict(node) else ""
        return f"unknown config key {key!r}.{hint} Valid keys{' under ' + parent if parent else ''}: {valid}"
    return f"{key or 'config'}: {first}"


def _apply_preset(raw: dict[str, Any]) -> dict[str, Any]:
    model = raw.get("model") or {}
    if isinstance(model, dict) and model.get("preset"):
        from search_space.presets import apply_preset

        raw = dict(raw)
        raw["model"] = apply_preset(dict(model))
    return raw


def load_config(path_or_name: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a run config: schema defaults < YAML file (or packaged name) < ``key=value`` overrides.

    Raises:
        ConfigLoadError: unknown keys (with the closest valid one), wrong types, impossible values.
    """
    schema = OmegaConf.structured(RunConfig)
    try:
        layers = []
        if path_or_name is not None:
            layers.append(OmegaConf.load(_find_config(path_or_name)))
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigLoadError(f"overrides must look like key=value (e.g. train.steps=100); got {bad}")
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        raw = OmegaConf.to_container(OmegaConf.merge(*layers), resolve=True) if layers else {}
        raw = _apply_preset(raw)
        merged = OmegaConf.merge(schema, OmegaConf.create(raw))
        cfg: RunConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigLoadError(_omegaconf_message(e, schema)) from None
    except yaml.YAMLError as e:
        raise ConfigLoadError(
            f"could not parse the config or an override as YAML ({str(e).splitlines()[0]}); quote values "
            "that contain brackets, e.g. 'sweep.patterns=[\"M-F\",\"A[window=64]-F\"]'"
        ) from None
    cfg.data.files = [os.path.abspath(os.path.expanduser(g)) for g in cfg.data.files]  # Ray trials run elsewhere
    validate_run_config(cfg)
    return cfg


def to_plain(cfg: RunConfig) -> dict[str, Any]:
    """The config as plain Python containers (safe to send to Ray and MLflow)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def from_plain(d: dict[str, Any], check_sweep: bool = False) -> RunConfig:
    """Rebuild a validated ``RunConfig`` from ``to_plain`` output (what a Ray trial receives).

    A trial checks its own model, data and training settings; the sweep's other patterns were checked
    by the driver (``check_sweep=True`` checks them again).
    """
    try:
        cfg: RunConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), d))
    except OmegaConfBaseException as e:
        raise ConfigLoadError(_omegaconf_message(e, OmegaConf.structured(RunConfig))) from None
    validate_run_config(cfg, check_sweep=check_sweep)
    return cfg


def apply_dotted(d: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of plain dict ``d`` with ``{"model.mixers.A.window": 64, ...}`` set."""
    out = OmegaConf.create(d)
    for key, value in updates.items():
        OmegaConf.update(out, key, value, merge=True, force_add=True)
    return OmegaConf.to_container(out, resolve=True)  # type: ignore[return-value]


def check_windows(cfg: RunConfig) -> None:
    """Resolve the layout and reject windows longer than the longest evaluation length."""
    _, layers = resolve_layout(cfg.model)
    longest = max(cfg.data.eval_lengths)
    for layer in layers:
        for symbol, conf in layer.branches:
            window = getattr(conf, "window", None)
            if window is not None and window > longest:
                raise ConfigLoadError(
                    f"pattern layer {layer.index} ({symbol}): window={window} is longer than the longest "
                    f"evaluation length {longest}, so it is full attention in disguise. Use window=null for "
                    f"full attention, or a window <= {longest} (e.g. model.mixers.A.window={cfg.data.seq_len // 2})"
                )


def validate_run_config(cfg: RunConfig, check_sweep: bool = True) -> None:
    """Every cross-field check, in the order a user would fix them; raises ``ConfigLoadError``."""
    try:
        validate_data(cfg.data)
    except ValueError as e:
        raise ConfigLoadError(str(e)) from None
    t = cfg.train
    checks = [
        (t.steps >= 1, "train.steps", "an int >= 1", t.steps),
        (t.batch_size >= 1, "train.batch_size", "an int >= 1", t.batch_size),
        (t.grad_accum >= 1, "train.grad_accum", "an int >= 1", t.grad_accum),
        (t.lr > 0, "train.lr", "> 0", t.lr),
        (0 <= t.warmup < 1, "train.warmup", "a fraction of steps in [0, 1)", t.warmup),
        (0 <= t.min_lr_ratio <= 1, "train.min_lr_ratio", "in [0, 1]", t.min_lr_ratio),
        (t.grad_clip >= 0, "train.grad_clip", ">= 0 (0 disables clipping)", t.grad_clip),
        (t.eval_every >= 1, "train.eval_every", "an int >= 1", t.eval_every),
        (t.eval_batches >= 1 and t.eval_batch_size >= 1, "train.eval_batches/eval_batch_size", ">= 1", (t.eval_batches, t.eval_batch_size)),
        (t.precision in ("auto", "fp32", "bf16"), "train.precision", "auto, fp32 or bf16", t.precision),
        (t.progress in ("auto", "on", "off"), "train.progress", "auto, on or off", t.progress),
        (t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"), "train.device", "auto, cpu, cuda or cuda:N", t.device),
        (t.threads is None or t.threads >= 1, "train.threads", "an int >= 1 or null", t.threads),
        (t.loss_chunk is None or t.loss_chunk >= 1, "train.loss_chunk", "an int >= 1 or null", t.loss_chunk),
        (set(t.probes) <= {"mqar", "passkey"}, "train.probes", "a list of mqar, passkey", t.probes),
    ]
    s = cfg.sweep
    checks += [
        (s.num_samples >= 1, "sweep.num_samples", "an int >= 1", s.num_samples),
        (s.max_concurrent >= 1, "sweep.max_concurrent", "an int >= 1", s.max_concurrent),
        (s.mode in ("min", "max"), "sweep.mode", "min or max", s.mode),
        (s.scheduler in ("asha", "fifo"), "sweep.scheduler", "asha or fifo", s.scheduler),
        (s.sampler in ("tpe", "random"), "sweep.sampler", "tpe or random", s.sampler),
        (s.cpus_per_trial > 0, "sweep.cpus_per_trial", "> 0 (Ray treats a missing CPU count as 0)", s.cpus_per_trial),
        (s.gpus_per_trial >= 0, "sweep.gpus_per_trial", ">= 0 (fractions share one GPU)", s.gpus_per_trial),
        (s.grace_period >= 1 and s.reduction_factor >= 2, "sweep.grace_period/reduction_factor", ">= 1 and >= 2", (s.grace_period, s.reduction_factor)),
        (bool(s.name) and all(c.isalnum() or c in "-_." for c in s.name), "sweep.name", "letters, digits, '-', '_', '.'", s.name),
    ]
    for ok, key, expected, value in checks:
        if not ok:
            raise ConfigLoadError(f"{key} must be {expected}; got {value!r}")
    try:
        check_windows(cfg)
    except ValueError as e:
        raise ConfigLoadError(f"model: {e}") from None
    if check_sweep:
        from sweeps.space import validate_space

        validate_space(cfg)

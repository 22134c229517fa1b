"""Leaderboards from MLflow: a sweep's child runs read into a typed table.

A sweep is an MLflow experiment with one parent run (tag ``hybridlab.role=sweep``) and one child run per
trial. Each run's metrics are the last value per key (MLflow keeps the value at the highest step, so
duplicate steps written around a resume collapse to one). ``hybridlab compare`` prints this table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.pareto import nondominated

__all__ = [
    "TrialRow",
    "SweepTable",
    "load_sweep",
    "latest_sweep",
    "format_leaderboard",
    "parse_objectives",
    "NoSuchSweep",
]

ROLE_TAG = "hybridlab.role"
STATUS_TAG = "hybridlab.status"


class NoSuchSweep(ValueError):
    """No sweep of that name (or none at all) in the MLflow store."""


@dataclass
class TrialRow:
    """One trial: identity, status, layout and its last metric values."""

    run_id: str
    run_name: str
    status: str
    pattern: str
    layout_hash: str
    seq_len: int
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    preset: str | None = None  # the named preset the trial's model came from, if any

    @property
    def name(self) -> str:
        """What a reader calls this trial's model: its preset's name, else its pattern."""
        return self.preset or self.pattern

    def metric(self, key: str) -> float:
        return self.metrics.get(key, math.nan)

    @property
    def repeat_key(self) -> str:
        """Trials with equal keys differ only in ``train.seed``: repeats of one configuration.

        Built from the layout hash and every logged ``model.``, ``data.`` and ``train.`` param except the
        seed and display-only settings, so two trials of one pattern with other windows or state sizes
        are not mistaken for seeds of one model.
        """
        skip = {"train.seed", "train.progress", "train.device", "train.threads"}
        parts = [self.layout_hash or self.pattern]
        parts += [f"{k}={v}" for k, v in sorted(self.params.items())
                  if k.startswith(("model.", "data.", "train.")) and k not in skip]
        return "\n".join(parts)

    @property
    def ppl_at(self) -> dict[int, float]:
        """Perplexity by evaluation length, from the ``val/ppl_len{L}`` metrics."""
        out = {}
        for k, v in self.metrics.items():
            if k.startswith("val/ppl_len"):
                out[int(k[len("val/ppl_len") :])] = v
        return dict(sorted(out.items()))


@dataclass
class SweepTable:
    """A sweep's trials; ``objectives`` (``{metric: "min" | "max"}``) are the sweep's own when it was
    multi-objective (read from its parent run's ``sweep.objectives.*`` params), else empty."""

    name: str
    experiment_id: str
    parent_run_id: str | None
    rows: list[TrialRow]
    objectives: dict[str, str] = field(default_factory=dict)

    def pareto(self, objectives: dict[str, str] | None = None) -> list[TrialRow]:
        """Finished (``ok``) trials no other finished trial beats on every objective.

        Pruned trials stopped early and failed ones have partial or no metrics, so they never compete.
        """
        obj = objectives or self.objectives
        if not obj:
            return []
        done = [r for r in self.rows if r.status == "ok"]
        idx = nondominated([[r.metric(m) for m in obj] for r in done], [mode == "max" for mode in obj.values()])
        return [done[i] for i in idx]

    def sorted(self, metric: str = "val/ppl", descending: bool = False) -> list[TrialRow]:
        def key(r: TrialRow) -> tuple[int, float]:
            v = r.metric(metric)
            return (1, 0.0) if math.isnan(v) else (0, -v if descending else v)

        return sorted(self.rows, key=key)

    def to_json(
        self, metric: str = "val/ppl", descending: bool = False, objectives: dict[str, str] | None = None
    ) -> dict[str, Any]:
        obj = objectives or self.objectives
        front = {r.run_id for r in self.pareto(obj)}
        return {
            "sweep": self.name,
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
            "sort": metric,
            "objectives": obj,
            "pareto_front": [r.run_id for r in self.rows if r.run_id in front],
            "trials": [
                {
                    "run_id": r.run_id,
                    "run_name": r.run_name,
                    "status": r.status,
                    "pattern": r.pattern,
                    "preset": r.preset,
                    "layout_hash": r.layout_hash,
                    "params": r.metric("model/params"),
                    "val/ppl": r.metric("val/ppl"),
                    "ppl_by_length": {str(k): v for k, v in r.ppl_at.items()},
                    "tokens_per_s": r.metric("perf/tokens_per_s"),
                    "metrics": {k: (None if math.isnan(v) else v) for k, v in r.metrics.items()},
                    "error": r.error,
                    "pareto": r.run_id in front,
                }
                for r in self.sorted(metric, descending)
            ],
        }


def _client(home: Path | None) -> Any:
    from analysis.store import client

    return client(home)


def latest_sweep(home: Path | None = None) -> str:
    """The name of the sweep whose parent run started last."""
    c = _client(home)
    exps = c.search_experiments()
    runs = c.search_runs(
        [e.experiment_id for e in exps], filter_string=f"tags.`{ROLE_TAG}` = 'sweep'",
        order_by=["attributes.start_time DESC"], max_results=1,
    ) if exps else []
    if not runs:
        raise NoSuchSweep("no sweep has been run yet under this HYBRIDLAB_HOME; start one with `hybridlab quickstart`")
    return c.get_experiment(runs[0].info.experiment_id).name


def load_sweep(name: str | None = None, home: Path | None = None) -> SweepTable:
    """The trials of sweep ``name`` (default: the latest sweep) with their last metric values."""
    c = _client(home)
    name = name or latest_sweep(home)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        names = sorted(e.name for e in c.search_experiments() if e.name != "Default")
        raise NoSuchSweep(f"no sweep {name!r}; sweeps here: {', '.join(names) or 'none'}")
    parents = c.search_runs([exp.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'sweep'", max_results=1)
    parent = parents[0].info.run_id if parents else None
    prefix = "sweep.objectives."
    objectives = {
        k[len(prefix):]: v for k, v in (parents[0].data.params.items() if parents else []) if k.startswith(prefix)
    }
    runs = c.search_runs([exp.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'trial'", max_results=10000)
    rows = []
    for run in runs:
        p, tags = run.data.params, run.data.tags
        rows.append(
            TrialRow(
                run_id=run.info.run_id,
                run_name=run.info.run_name or "",
                status=tags.get(STATUS_TAG, run.info.status.lower()),
                pattern=p.get("pattern") or (run.info.run_name or "?").split(" #")[0],
                layout_hash=p.get("layout_hash", ""),
                seq_len=int(p.get("data.seq_len", "0") or 0),
                metrics=dict(run.data.metrics),
                params=dict(p),
                error=tags.get("hybridlab.error"),
                preset=p.get("model.preset") if p.get("model.preset") not in (None, "", "null", "None") else None,
            )
        )
    return SweepTable(name, exp.experiment_id, parent, rows, objectives)


def format_number(v: float, digits: int = 2) -> str:
    """A table cell: ``-`` for NaN or non-numbers, K/M suffixes for large values."""
    if not isinstance(v, float | int) or math.isnan(v):
        return "-"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.1f}K"
    return f"{v:.{digits}f}"


def parse_objectives(text: str) -> dict[str, str]:
    """``"val/ppl:min,perf/tokens_per_s:max"`` -> ``{"val/ppl": "min", "perf/tokens_per_s": "max"}``."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        metric, sep, mode = part.rpartition(":")
        if not sep or not metric or mode not in ("min", "max"):
            raise ValueError(f"--pareto: {part!r} is not METRIC:min or METRIC:max (e.g. val/ppl:min,perf/tokens_per_s:max)")
        out[metric] = mode
    if len(out) < 2:
        raise ValueError(f"--pareto needs two or more objectives, e.g. val/ppl:min,perf/tokens_per_s:max; got {text!r}")
    return out


def format_leaderboard(
    table: SweepTable, metric: str = "val/ppl", descending: bool = False, objectives: dict[str, str] | None = None
) -> str:
    """The human leaderboard: pattern, params, val/ppl, ppl at 2x and 4x length, tokens/s, status.

    With ``objectives`` (default: the sweep's own), a ``pareto`` column marks the non-dominated finished
    trials with ``*`` and the front is listed under the table.
    """
    obj = objectives or table.objectives
    front = table.pareto(obj)
    on_front = {r.run_id for r in front}
    rows = table.sorted(metric, descending)
    seq = next((r.seq_len for r in rows if r.seq_len), 0)
    lens = [2 * seq, 4 * seq]
    header = ["#", "pattern", "params", "val/ppl", f"ppl@{lens[0]}", f"ppl@{lens[1]}", "tokens/s", "status"]
    presets = any(r.preset for r in rows)
    extra = [m for m in ([metric] + list(obj)) if m not in ("val/ppl", "perf/tokens_per_s", "model/params")]
    extra = list(dict.fromkeys(extra))
    for j, m in enumerate(extra):
        header.insert(4 + j, m)
    if obj:
        header.append("pareto")
    if presets:
        header.insert(1, "preset")
    lines = []
    for i, r in enumerate(rows, 1):
        cells = [
            str(i),
            r.pattern if len(r.pattern) <= 40 else r.pattern[:37] + "...",
            format_number(r.metric("model/params")),
            format_number(r.metric("val/ppl")),
            format_number(r.ppl_at.get(lens[0], math.nan)),
            format_number(r.ppl_at.get(lens[1], math.nan)),
            format_number(r.metric("perf/tokens_per_s"), 0),
            r.status,
        ]
        for j, m in enumerate(extra):
            cells.insert(4 + j, format_number(r.metric(m), 4))
        if obj:
            cells.append("*" if r.run_id in on_front else "")
        if presets:
            cells.insert(1, r.preset or "-")
        lines.append(cells)
    widths = [max(len(h), *(len(c[j]) for c in lines)) if lines else len(h) for j, h in enumerate(header)]
    out = [f"sweep {table.name}: {len(rows)} trials, sorted by {metric}"]
    out.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() for cells in lines]
    if obj:
        what = ", ".join(f"{m} {mode}" for m, mode in obj.items())
        out.append("")
        out.append(f"Pareto front ({what}; finished trials): {len(front)} of {sum(r.status == 'ok' for r in rows)}")
        first = next(iter(obj))
        for r in sorted(front, key=lambda r: r.metric(first), reverse=obj[first] == "max"):
            values = "  ".join(f"{m}={format_number(r.metric(m), 4 if abs(r.metric(m)) < 100 else 0)}" for m in obj)
            out.append(f"  {r.name}  {values}")
    return "\n".join(out)

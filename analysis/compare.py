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

__all__ = ["TrialRow", "SweepTable", "load_sweep", "latest_sweep", "format_leaderboard", "NoSuchSweep"]

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

    def metric(self, key: str) -> float:
        return self.metrics.get(key, math.nan)

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
    name: str
    experiment_id: str
    parent_run_id: str | None
    rows: list[TrialRow]

    def sorted(self, metric: str = "val/ppl", descending: bool = False) -> list[TrialRow]:
        def key(r: TrialRow) -> tuple[int, float]:
            v = r.metric(metric)
            return (1, 0.0) if math.isnan(v) else (0, -v if descending else v)

        return sorted(self.rows, key=key)

    def to_json(self, metric: str = "val/ppl", descending: bool = False) -> dict[str, Any]:
        return {
            "sweep": self.name,
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent_run_id,
            "sort": metric,
            "trials": [
                {
                    "run_id": r.run_id,
                    "run_name": r.run_name,
                    "status": r.status,
                    "pattern": r.pattern,
                    "layout_hash": r.layout_hash,
                    "params": r.metric("model/params"),
                    "val/ppl": r.metric("val/ppl"),
                    "ppl_by_length": {str(k): v for k, v in r.ppl_at.items()},
                    "tokens_per_s": r.metric("perf/tokens_per_s"),
                    "metrics": {k: (None if math.isnan(v) else v) for k, v in r.metrics.items()},
                    "error": r.error,
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
            )
        )
    return SweepTable(name, exp.experiment_id, parent, rows)


def format_number(v: float, digits: int = 2) -> str:
    """A table cell: ``-`` for NaN or non-numbers, K/M suffixes for large values."""
    if not isinstance(v, float | int) or math.isnan(v):
        return "-"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.1f}K"
    return f"{v:.{digits}f}"


def format_leaderboard(table: SweepTable, metric: str = "val/ppl", descending: bool = False) -> str:
    """The human leaderboard: pattern, params, val/ppl, ppl at 2x and 4x length, tokens/s, status."""
    rows = table.sorted(metric, descending)
    seq = next((r.seq_len for r in rows if r.seq_len), 0)
    lens = [2 * seq, 4 * seq]
    header = ["#", "pattern", "params", "val/ppl", f"ppl@{lens[0]}", f"ppl@{lens[1]}", "tokens/s", "status"]
    if metric not in ("val/ppl",):
        header.insert(4, metric)
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
        if metric not in ("val/ppl",):
            cells.insert(4, format_number(r.metric(metric), 4))
        lines.append(cells)
    widths = [max(len(h), *(len(c[j]) for c in lines)) if lines else len(h) for j, h in enumerate(header)]
    out = [f"sweep {table.name}: {len(rows)} trials, sorted by {metric}"]
    out.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in lines]
    return "\n".join(out)

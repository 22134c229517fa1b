"""Figures of a sweep: loss curves, perplexity vs length, per-layer entropy, quality vs throughput.

The figures follow the Samba paper's (Ren et al. 2024, arXiv 2406.07522; samba-facts.md): perplexity
against evaluation length (Fig. 1a / 2a, §3.3), attention and S6 selection entropy per layer (Fig. 5,
App. C / E, §4), and quality against speed. Metric names are design.md's "MLflow record"; rows are
``analysis.compare.TrialRow``. Trials that differ only in their seed are repeats of one configuration: their
values are averaged and the sample standard deviation over seeds is drawn as error bars. Trials that
a scheduler stopped early (status ``pruned``) are kept apart from finished ones, drawn hollow or dashed
and left out of the Pareto front, since their metrics come from fewer steps.

Figures are built with matplotlib's object API on an Agg canvas, so pyplot's global state and the
user's backend are never touched; every function returns a ``matplotlib.figure.Figure``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Annotation
from matplotlib.ticker import FixedLocator, NullLocator

from analysis.compare import TrialRow
from analysis.pareto import nondominated

__all__ = [
    "LayoutGroup",
    "group_by_layout",
    "layout_colors",
    "pareto_indices",
    "loss_curves",
    "ppl_vs_length",
    "entropy_heatmap",
    "quality_vs_throughput",
    "ENTROPY_KINDS",
]

ENTROPY_KINDS = {
    "attn": ("Attention entropy", "attention entropy H_a (nats)", "A"),
    "s6": ("S6 selection entropy", "S6 selection entropy (nats)", "M"),
    "gla": ("GLA forget entropy", "GLA forget entropy (nats)", "G"),
}
FINISHED = ("ok",)
MAX_LABEL = 30
_COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#ad494a", "#637939", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363", "#843c39",
]


def _short(text: str, n: int = MAX_LABEL) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _finite(v: float) -> bool:
    return not (math.isnan(v) or math.isinf(v))


@dataclass
class LayoutGroup:
    """Trials of one configuration up to the seed, with the same finished/pruned state: seeds to average."""

    key: str
    pattern: str
    finished: bool
    rows: list[TrialRow] = field(default_factory=list)
    variant: str = ""  # the settings that tell this group from others of the same pattern

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def label(self) -> str:
        text = _short(self.rows[0].name if self.rows else self.pattern) + (f" [{self.variant}]" if self.variant else "")
        notes = [f"{self.n} seeds"] if self.n > 1 else []
        if not self.finished:
            notes.append("pruned")
        return f"{text} ({', '.join(notes)})" if notes else text

    def values(self, key: str) -> list[float]:
        return [v for v in (r.metric(key) for r in self.rows) if _finite(v)]

    def mean_std(self, key: str) -> tuple[float, float]:
        """Mean over the seeds that have ``key`` and their sample standard deviation (0 for one seed)."""
        vs = self.values(key)
        if not vs:
            return math.nan, math.nan
        return statistics.fmean(vs), statistics.stdev(vs) if len(vs) > 1 else 0.0


def group_by_layout(rows: Sequence[TrialRow]) -> list[LayoutGroup]:
    """Rows grouped by configuration up to the seed (``TrialRow.repeat_key``) and finished state, first
    seen first. Groups of one pattern that differ in other settings are labelled with those settings."""
    groups: dict[tuple[str, bool], LayoutGroup] = {}
    for r in rows:
        finished = r.status in FINISHED
        g = groups.setdefault((r.repeat_key, finished), LayoutGroup(r.repeat_key, r.pattern, finished))
        g.rows.append(r)
    by_pattern: dict[str, list[LayoutGroup]] = {}
    for g in groups.values():
        by_pattern.setdefault(g.rows[0].name, []).append(g)
    for same in by_pattern.values():
        if len({g.rows[0].repeat_key for g in same}) < 2:
            continue
        keys = set().union(*(g.rows[0].params for g in same))
        differ = sorted(k for k in keys if len({g.rows[0].params.get(k) for g in same}) > 1 and k != "train.seed")
        for g in same:
            g.variant = ", ".join(f"{k.rsplit('.', 1)[-1]}={g.rows[0].params.get(k)}" for k in differ[:3])
    return list(groups.values())


def layout_colors(rows: Sequence[TrialRow]) -> dict[str, str]:
    """A color per configuration up to the seed (``TrialRow.repeat_key``, the ``LayoutGroup.key``), in
    order of first appearance, as the figures use them: seeds share a color, other settings do not."""
    out: dict[str, str] = {}
    for r in rows:
        key = r.repeat_key
        if key not in out:
            out[key] = _COLORS[len(out) % len(_COLORS)]
    return out


def pareto_indices(points: Sequence[tuple[float, float]], maximize_x: bool = True, minimize_y: bool = True) -> list[int]:
    """Indices of the non-dominated points, ordered by x; points with a NaN coordinate are never on it.

    A point dominates another when it is at least as good on both axes and better on one; equal
    points do not dominate each other, so both stay.
    """
    front = nondominated(points, [maximize_x, not minimize_y])
    return sorted(front, key=lambda i: (points[i][0], points[i][1]))


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _message(fig: Figure, title: str, text: str) -> Figure:
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11, color="#555555", transform=ax.transAxes)
    return fig


def _place_labels(fig: Figure, labels: list[Annotation], marker_px: float = 6.0, near_px: float = 16.0) -> None:
    """Move each label to the first of a few offsets where it stays inside its axes and covers no earlier label,
    no legend and no marker, keeping clear of other points so that a label sits nearest its own point.
    """
    if not labels:
        return
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    from matplotlib.transforms import Bbox

    centers = [ann.axes.transData.transform(ann.xy) if ann.axes else (math.nan, math.nan) for ann in labels]
    fixed = [legend.get_window_extent(renderer) for ax in {ann.axes for ann in labels if ann.axes}
             if (legend := ax.get_legend()) is not None]
    offsets = [(7, 5, "left", "bottom"), (7, -5, "left", "top"), (-7, 5, "right", "bottom"), (-7, -5, "right", "top"),
               (0, 11, "center", "bottom"), (0, -11, "center", "top"), (10, 16, "left", "bottom"),
               (10, -16, "left", "top"), (-10, 16, "right", "bottom"), (-10, -16, "right", "top")]
    placed: list[Bbox] = []
    for k, ann in enumerate(labels):
        obstacles = fixed + placed
        for j, (px, py) in enumerate(centers):
            r = marker_px if j == k else near_px
            if _finite(px) and _finite(py):
                obstacles.append(Bbox.from_extents(px - r, py - r, px + r, py + r))
        ax_box = ann.axes.get_window_extent(renderer) if ann.axes else None
        best, best_cost = offsets[0], math.inf
        for off in offsets:
            ann.xyann = off[:2]
            ann.set_horizontalalignment(off[2])
            ann.set_verticalalignment(off[3])
            box = ann.get_window_extent(renderer)
            cost = sum(_overlap(box, b) for b in obstacles)
            if ax_box is not None:
                cost += 4 * (box.width * box.height - _overlap(box, ax_box))
            if cost < best_cost:
                best, best_cost = off, cost
            if cost == 0:
                break
        ann.xyann = best[:2]
        ann.set_horizontalalignment(best[2])
        ann.set_verticalalignment(best[3])
        placed.append(ann.get_window_extent(renderer))


def _overlap(a: object, b: object) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)  # type: ignore[attr-defined]
    h = min(a.y1, b.y1) - max(a.y0, b.y0)  # type: ignore[attr-defined]
    return max(w, 0.0) * max(h, 0.0)


def loss_curves(
    histories: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
    keys: Sequence[str] = ("train/loss", "val/loss"),
    colors: Mapping[str, str] | None = None,
) -> Figure:
    """Loss against step, one panel per metric key, one line per trial (same style in every panel).

    Args:
        histories: trial label -> metric key -> ``[(step, value), ...]`` (one value per step, e.g.
            from ``analysis.report.metric_history``).
        keys: the metric keys, one panel each.
        colors: trial label -> color (e.g. one per layout, so seeds share it and are told apart by
            line style); default: one color per trial.
    """
    labels = [k for k, h in histories.items() if any(h.get(key) for key in keys)]
    styles: dict[str, tuple[str, str]] = {}
    uses: dict[str, int] = {}
    for i, label in enumerate(labels):
        color = (colors or {}).get(label) or _COLORS[i % len(_COLORS)]
        styles[label] = (color, ("-", "--", ":", "-.")[uses.get(color, 0) % 4])
        uses[color] = uses.get(color, 0) + 1
    fig = _new_figure(6.2 * len(keys), 4.6 + 0.25 * math.ceil(len(labels) / 3))
    if not labels:
        return _message(fig, "Loss curves", "no trial has logged " + " or ".join(keys))
    axes = fig.subplots(1, len(keys), sharex=True, sharey=True, squeeze=False)[0]
    handles = {}
    for ax, key in zip(axes, keys, strict=True):
        for label in labels:
            series = sorted(histories[label].get(key, []))
            if not series:
                continue
            steps, values = zip(*series, strict=True)
            (line,) = ax.plot(steps, values, color=styles[label][0], ls=styles[label][1], lw=1.6,
                              marker="o" if len(series) <= 12 else None, ms=3.5, label=_short(label, 44))
            handles.setdefault(label, line)
        ax.set_title(key)
        ax.set_xlabel("step (optimizer updates)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cross-entropy loss (nats/token)")
    fig.suptitle("Training and validation loss per trial", fontsize=13)
    fig.legend(list(handles.values()), [_short(k, 44) for k in handles], loc="outside lower center",
               ncols=min(3, len(handles)), fontsize=8.5, frameon=False)
    return fig


def ppl_vs_length(rows: Sequence[TrialRow]) -> Figure:
    """Validation perplexity at each evaluation length ``val/ppl_len{L}``, one line per layout, log-x.

    Seeds of a layout are averaged, with +-1 standard deviation as error bars; pruned layouts are dashed.
    The dotted vertical line marks the training length; the legend lists layouts from the highest
    perplexity at the longest length to the lowest, the order of the lines' right ends.
    """
    groups = [g for g in group_by_layout(rows) if any(r.ppl_at for r in g.rows)]
    fig = _new_figure(8.6, 5.4)
    if not groups:
        return _message(fig, "Perplexity vs evaluation length", "no trial has logged val/ppl_len{L} metrics")
    ax = fig.add_subplot()
    lengths = sorted({L for g in groups for r in g.rows for L in r.ppl_at})
    colors = layout_colors(rows)

    def last_ppl(g: LayoutGroup) -> float:
        vals = [m for L in lengths if _finite(m := g.mean_std(f"val/ppl_len{L}")[0])]
        return vals[-1] if vals else math.inf

    groups.sort(key=last_ppl, reverse=True)
    all_y = []
    for g in groups:
        xs, ys, es = [], [], []
        for L in lengths:
            m, s = g.mean_std(f"val/ppl_len{L}")
            if _finite(m):
                xs.append(L)
                ys.append(m)
                es.append(s)
        if not xs:
            continue
        all_y += ys
        ax.errorbar(xs, ys, yerr=es if g.n > 1 else None, color=colors[g.key], marker="o", ms=4.5,
                    lw=1.7, capsize=3.5, ls="-" if g.finished else "--", mfc="white" if not g.finished else None,
                    label=g.label)
    train_lengths = sorted({r.seq_len for g in groups for r in g.rows if r.seq_len})
    for j, T in enumerate(train_lengths):
        ax.axvline(T, color="#444444", ls=":", lw=1.2, label="training length" if j == 0 else None)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(lengths))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{L:,}" for L in lengths])
    if all_y and max(all_y) / max(min(all_y), 1e-9) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("evaluation length (tokens, log scale)")
    ax.set_ylabel("validation perplexity (lower is better)")
    ax.set_title("Perplexity vs evaluation length" + (" (mean \u00b1 std over seeds)" if any(g.n > 1 for g in groups) else ""))
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8.5, frameon=False)
    return fig


def _layer_symbols(pattern: str) -> list[str] | None:
    try:
        from blocks.pattern import parse

        return [layer.symbols for layer in parse(pattern).layers]
    except Exception:
        return None


def _layer_values(g: LayoutGroup, kind: str) -> dict[int, float]:
    prefix = f"entropy/{kind}/layer"
    layers = {int(k[len(prefix):]) for r in g.rows for k in r.metrics if k.startswith(prefix) and k[len(prefix):].isdigit()}
    return {i: g.mean_std(f"{prefix}{i}")[0] for i in sorted(layers)}


def entropy_heatmap(rows: Sequence[TrialRow], kind: str = "attn") -> Figure:
    """Per-layer entropy ``entropy/{kind}/layer{i}``: layers across, layouts down, mean over seeds.

    Cells of layers of another kind are blank and show that layer's mixer symbol; values are written
    in the cells while the grid is small enough to read them. ``kind`` is ``attn``, ``s6`` or ``gla``.
    """
    if kind not in ENTROPY_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ENTROPY_KINDS)}; got {kind!r}")
    title, unit, symbol = ENTROPY_KINDS[kind]
    groups = [(g, vals) for g in group_by_layout(rows) if (vals := _layer_values(g, kind))]
    if not groups:
        fig = _new_figure(7.5, 3.0)
        return _message(fig, f"{title} per layer", f"no layout in this sweep has {symbol} layers (no entropy/{kind}/layer* metrics)")
    symbols = {g.key: _layer_symbols(g.pattern) for g, _ in groups}
    n_layers = max(max(max(v) + 1 for _, v in groups), *(len(s) for s in symbols.values() if s))
    grid = [[math.nan] * n_layers for _ in groups]
    for r, (_, vals) in enumerate(groups):
        for i, v in vals.items():
            grid[r][i] = v
    annotate = n_layers <= 24 and len(groups) <= 24
    fig = _new_figure(min(3.2 + 0.62 * n_layers, 22) + 1.8, 1.6 + 0.42 * len(groups))
    ax = fig.add_subplot()
    data = np.ma.masked_invalid(np.array(grid, dtype=float))
    cmap = colormaps["viridis"].with_extremes(bad="#eeeeee")
    im = ax.imshow(data, cmap=cmap, aspect="auto", interpolation="nearest")
    cb = fig.colorbar(im, ax=ax, pad=0.01)
    cb.set_label(unit)
    if annotate:
        lo, hi = float(data.min()), float(data.max())
        digits = 3 if hi - lo < 0.05 else 2
        for r, (g, _) in enumerate(groups):
            syms = symbols[g.key] or []
            for c in range(n_layers):
                v = grid[r][c]
                if _finite(v):
                    light = hi > lo and (v - lo) / (hi - lo) < 0.55
                    ax.text(c, r, f"{v:.{digits}f}", ha="center", va="center", fontsize=8, color="white" if light else "black")
                elif c < len(syms):
                    ax.text(c, r, syms[c], ha="center", va="center", fontsize=8, color="#888888")
    ax.set_xticks(range(n_layers))
    ax.set_xticklabels([str(i) for i in range(n_layers)], fontsize=8 if n_layers <= 32 else 6)
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels([g.label for g, _ in groups], fontsize=9)
    ax.set_xlabel("sublayer index (grey letters: layers of other mixers)")
    seeds = ", mean over seeds" if any(g.n > 1 for g, _ in groups) else ""
    ax.set_title(f"{title} per layer (nats{seeds})")
    return fig


def quality_vs_throughput(
    rows: Sequence[TrialRow], x: str = "perf/tokens_per_s", y: str = "val/ppl"
) -> Figure:
    """Validation perplexity against training throughput per layout, with the Pareto front.

    The front (lowest perplexity for a throughput, highest throughput for a perplexity) is taken over
    the finished layouts' seed means, marked and joined by a line; points carry their patterns, error
    bars are +-1 standard deviation over seeds, pruned trials are hollow and never on the front.
    """
    groups = [g for g in group_by_layout(rows) if _finite(g.mean_std(x)[0]) and _finite(g.mean_std(y)[0])]
    fig = _new_figure(9.0, 6.0)
    if not groups:
        return _message(fig, "Quality vs throughput", f"no trial has both {x} and {y}")
    ax = fig.add_subplot()
    stats = [(g.mean_std(x), g.mean_std(y)) for g in groups]
    finished = [i for i, g in enumerate(groups) if g.finished]
    front = [finished[j] for j in pareto_indices([(stats[i][0][0], stats[i][1][0]) for i in finished])]
    on_front = set(front)
    kinds = {
        "front": dict(color="#d62728", marker="D", ms=7, mfc="#d62728", label="Pareto front"),
        "dominated": dict(color="#1f77b4", marker="o", ms=6.5, mfc="#1f77b4", label="dominated layout"),
        "pruned": dict(color="#7f7f7f", marker="o", ms=6.5, mfc="white", label="pruned trial (stopped early)"),
    }
    seen = set()
    labels = []
    for i, (g, ((mx, sx), (my, sy))) in enumerate(zip(groups, stats, strict=True)):
        kind = "front" if i in on_front else ("dominated" if g.finished else "pruned")
        style = dict(kinds[kind])
        if kind in seen:
            style.pop("label")
        seen.add(kind)
        ax.errorbar([mx], [my], xerr=[sx] if g.n > 1 else None, yerr=[sy] if g.n > 1 else None, ls="none",
                    capsize=3, elinewidth=1.1, mec=style["color"], zorder=3, **style)
        ann = ax.annotate(g.label, (mx, my), xytext=(7, 5), textcoords="offset points", fontsize=8.5,
                          color="#222222" if g.finished else "#666666", zorder=4)
        ann.set_in_layout(False)
        labels.append(ann)
    if len(front) > 1:
        ax.plot([stats[i][0][0] for i in front], [stats[i][1][0] for i in front], color="#d62728", lw=1.4,
                alpha=0.7, zorder=2)
    xs = [s[0][0] for s in stats]
    ys = [s[1][0] for s in stats]
    if min(xs) > 0 and max(xs) / min(xs) > 8:
        ax.set_xscale("log")
    if min(ys) > 0 and max(ys) / min(ys) > 8:
        ax.set_yscale("log")
    ax.margins(x=0.18, y=0.12)
    xname = "training throughput (tokens/s, higher is better)" if x == "perf/tokens_per_s" else x
    yname = "validation perplexity at training length (lower is better)" if y == "val/ppl" else y
    ax.set_xlabel(xname)
    ax.set_ylabel(yname)
    ax.set_title("Quality vs throughput" + (" (mean \u00b1 std over seeds)" if any(g.n > 1 for g in groups) else ""))
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    order = {k["label"]: j for j, k in enumerate(kinds.values())}
    pairs = sorted(zip(handles, names, strict=True), key=lambda hn: order.get(hn[1], 99))
    ax.legend([h for h, _ in pairs], [n for _, n in pairs], loc="best", fontsize=9)
    rank = [0 if i in on_front else 1 if g.finished else 2 for i, g in enumerate(groups)]
    _place_labels(fig, [labels[i] for i in sorted(range(len(labels)), key=lambda i: rank[i])])
    return fig

"""The sweep report of ``hybridlab report SWEEP``: figures, an HTML page, and both logged to MLflow.

Follows design.md ("CLI": plots and a report, logged as artifacts of the sweep's parent run; "MLflow
record" for the names) and the figures of the Samba paper that ``analysis.plots`` draws. Metric
histories are deduplicated by step keeping the last value written, because a resumed trial logs the
steps between its last checkpoint and the interruption again (stack-notes.md, summary item 9).

``report.html`` embeds the PNGs as data URIs, so it also renders inside MLflow's artifact viewer,
and links each PNG file beside it by name.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from analysis import plots
from analysis.compare import SweepTable, TrialRow, format_number, load_sweep

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

__all__ = [
    "metric_history",
    "pareto_front",
    "pareto_front_by_layout",
    "trial_histories",
    "write_report",
    "REPORT_FILES",
    "ARTIFACT_DIR",
]

log = logging.getLogger(__name__)

ARTIFACT_DIR = "report"
REPORT_FILES = ("loss_curves.png", "ppl_vs_length.png", "entropy_attn.png", "entropy_s6.png", "pareto.png")
LOSS_KEYS = ("train/loss", "val/loss")


def metric_history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    """``[(step, value), ...]`` of one metric, ascending by step, one value per step: the last one written.

    "Last" is by timestamp, then by the order MLflow returns values written in the same millisecond.
    """
    last: dict[int, float] = {}
    for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)):
        last[int(m.step)] = float(m.value)
    return sorted(last.items())


def pareto_front(rows: Sequence[TrialRow], x: str = "perf/tokens_per_s", y: str = "val/ppl") -> list[TrialRow]:
    """The rows no other row beats on both ``x`` (higher is better) and ``y`` (lower is better), by ascending ``x``.

    Rows missing either metric are never on the front; rows are taken as given (filter out pruned or
    failed trials first if they should not compete).
    """
    idx = plots.pareto_indices([(r.metric(x), r.metric(y)) for r in rows])
    return [rows[i] for i in idx]


def _trial_label(r: TrialRow, taken: set[str] | dict[str, object]) -> str:
    label = r.run_name or r.pattern
    return f"{label} ({r.run_id[:8]})" if label in taken else label


def trial_histories(
    client: MlflowClient, rows: Sequence[TrialRow], keys: Sequence[str] = LOSS_KEYS
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Trial label (run name, else pattern) -> metric key -> deduplicated history, for ``plots.loss_curves``."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for r in rows:
        out[_trial_label(r, out)] = {k: metric_history(client, r.run_id, k) for k in keys}
    return out


def _trial_colors(rows: Sequence[TrialRow]) -> dict[str, str]:
    by_layout = plots.layout_colors(rows)
    out: dict[str, str] = {}
    for r in rows:
        out[_trial_label(r, out)] = by_layout[r.repeat_key]
    return out


@dataclass
class _Section:
    file: str
    title: str
    caption: str
    figure: Figure


_fmt = format_number


def _pm(mean: float, std: float, n: int, digits: int = 2) -> str:
    if math.isnan(mean):
        return "-"
    return _fmt(mean, digits) + (f" \u00b1 {_fmt(std, digits)}" if n > 1 else "")


def _sections(rows: list[TrialRow], histories: dict[str, dict[str, list[tuple[int, float]]]]) -> list[_Section]:
    finished = [r for r in rows if r.status in plots.FINISHED]
    front = pareto_front_by_layout(rows)
    seq = sorted({r.seq_len for r in rows if r.seq_len})
    seq_text = ", ".join(str(s) for s in seq) or "?"
    n_multi = sum(1 for g in plots.group_by_layout(rows) if g.n > 1)
    seeds = (f" {n_multi} layout(s) ran with several seeds: their lines and points are the mean, error bars "
             "one standard deviation." if n_multi else "")
    pruned = len(rows) - len(finished)
    pruned_text = (f" {pruned} trial(s) were stopped early by the scheduler (pruned): drawn dashed or hollow, "
                   "their numbers come from fewer steps." if pruned else "")
    front_text = ", ".join(html.escape(g) for g in front) or "none"
    return [
        _Section("loss_curves.png", "Loss curves", "Training loss (logged every few steps) and validation loss "
                 "(at each evaluation) per trial, in nats per token, by optimizer step. Values logged twice for one "
                 "step (after a resume) are shown once, the last written.", plots.loss_curves(histories, colors=_trial_colors(rows))),
        _Section("ppl_vs_length.png", "Perplexity vs evaluation length", f"Validation perplexity over the whole "
                 f"prefix of each evaluation length; the models were trained at {seq_text} tokens (dotted line). "
                 "Lines that stay flat or fall past it extrapolate; lines that rise do not." + seeds + pruned_text,
                 plots.ppl_vs_length(rows)),
        _Section("entropy_attn.png", "Attention entropy per layer", "Entropy of the attention distribution of each "
                 "attention layer, averaged over heads and query positions (Samba paper, App. C/E). Low: the layer "
                 "retrieves a few positions; high: it spreads over its window (at most ln(window)).",
                 plots.entropy_heatmap(rows, "attn")),
        _Section("entropy_s6.png", "S6 selection entropy per layer", "Entropy of each Mamba layer's step sizes "
                 "\u0394 normalised over time per channel, averaged over channels (Samba paper, App. C/E). Low: the "
                 "layer selects a few positions to write into its state; at most ln(sequence length).",
                 plots.entropy_heatmap(rows, "s6")),
        _Section("pareto.png", "Quality vs throughput", "Validation perplexity at the training length against "
                 "training throughput (tokens/s on the machine that ran each trial). The Pareto front over the "
                 f"finished layouts: {front_text}." + seeds + pruned_text, plots.quality_vs_throughput(rows)),
    ]


def pareto_front_by_layout(rows: Sequence[TrialRow], x: str = "perf/tokens_per_s", y: str = "val/ppl") -> list[str]:
    """Patterns of the finished layouts on the Pareto front of their seed means, as ``plots.quality_vs_throughput`` draws it."""
    groups = [g for g in plots.group_by_layout(rows) if g.finished]
    idx = plots.pareto_indices([(g.mean_std(x)[0], g.mean_std(y)[0]) for g in groups])
    return [groups[i].pattern for i in idx]


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1320px;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1.5em; } div.wide { overflow-x: auto; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
tr.pruned td { color: #777; } tr.failed td { color: #a33; }
figure { margin: 1.5em 0 2.5em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { max-width: 900px; color: #444; margin-top: 0.4em; } code { background: #f4f4f4; padding: 0 3px; }
"""


def _leaderboard(table: SweepTable, front: set[str], steps: dict[str, int]) -> str:
    """Every trial of the sweep (failed ones too, their error as a tooltip), best ``val/ppl`` first."""
    lengths = sorted({L for r in table.rows for L in r.ppl_at})
    head = ["#", "trial", "status", "steps", "params", "val/ppl", *(f"ppl@{L}" for L in lengths), "tokens/s",
            "attn H", "S6 H", "front"]
    left = {1, 2}
    out = ['<div class="wide"><table>',
           "<tr>" + "".join(f'<th class="l">{h}</th>' if j in left else f"<th>{h}</th>" for j, h in enumerate(head)) + "</tr>"]
    for i, r in enumerate(table.sorted("val/ppl"), 1):
        on = r.status in plots.FINISHED and r.pattern in front
        name = html.escape(r.run_name or r.pattern)
        if r.pattern not in (r.run_name or ""):
            name += f'<br><small>{html.escape(r.pattern)}</small>'
        cells = [str(i), name, html.escape(r.status), str(steps[r.run_id]) if r.run_id in steps else "-",
                 _fmt(r.metric("model/params")), _fmt(r.metric("val/ppl")),
                 *(_fmt(r.ppl_at.get(L, math.nan)) for L in lengths), _fmt(r.metric("perf/tokens_per_s"), 0),
                 _fmt(r.metric("entropy/attn/mean")), _fmt(r.metric("entropy/s6/mean")), "\u2605" if on else ""]
        title = f' title="{html.escape(r.error)}"' if r.error else ""
        out.append(f'<tr class="{html.escape(r.status)}"{title}>' + "".join(
            f'<td class="l">{c}</td>' if j in left else f"<td>{c}</td>" for j, c in enumerate(cells)) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def _layout_table(rows: list[TrialRow]) -> str:
    groups = [g for g in plots.group_by_layout(rows) if g.n > 1]
    if not groups:
        return ""
    lengths = sorted({L for r in rows for L in r.ppl_at})
    head = ["layout", "seeds", "val/ppl", *(f"ppl@{L}" for L in lengths), "tokens/s"]
    out = ["<h2>Layouts with several seeds (mean \u00b1 std)</h2>", "<table>",
           "<tr>" + "".join(f'<th class="l">{h}</th>' if j == 0 else f"<th>{h}</th>" for j, h in enumerate(head)) + "</tr>"]
    for g in groups:
        cells = [html.escape(g.label), str(g.n), _pm(*g.mean_std("val/ppl"), g.n),
                 *(_pm(*g.mean_std(f"val/ppl_len{L}"), g.n) for L in lengths), _pm(*g.mean_std("perf/tokens_per_s"), g.n, 0)]
        out.append("<tr>" + "".join(f'<td class="l">{c}</td>' if j == 0 else f"<td>{c}</td>" for j, c in enumerate(cells)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _html(
    table: SweepTable, rows: list[TrialRow], sections: list[_Section], out_dir: Path, front: set[str], steps: dict[str, int]
) -> str:
    counts: dict[str, int] = {}
    for r in table.rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>hybridlab report: {html.escape(table.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Sweep <code>{html.escape(table.name)}</code></h1>",
        f"<p>{len(table.rows)} trials ({html.escape(status)}); MLflow experiment {html.escape(table.experiment_id)}, "
        f"parent run <code>{html.escape(table.parent_run_id or '-')}</code>; generated {html.escape(when)}.</p>",
        "<h2>Leaderboard</h2>",
        "<p>Sorted by validation perplexity at the training length; <code>steps</code> is the last step logged "
        "(pruned trials stop early); <code>ppl@L</code> is perplexity over a prefix of "
        "L tokens; <code>attn H</code> and <code>S6 H</code> are the mean attention and S6 selection entropies (nats); "
        "\u2605 marks the Pareto front of perplexity against throughput.</p>",
        _leaderboard(table, front, steps),
        _layout_table(rows),
    ]
    for s in sections:
        data = base64.b64encode((out_dir / s.file).read_bytes()).decode("ascii")
        parts.append(
            f'<figure id="{s.file[:-4]}"><h2>{html.escape(s.title)}</h2>'
            f'<img src="data:image/png;base64,{data}" alt="{html.escape(s.title)}" data-file="{s.file}">'
            f'<figcaption>{s.caption} <a href="{s.file}">{s.file}</a></figcaption></figure>'
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(sweep: str | None, out_dir: Path, home: Path | None = None, log_to_mlflow: bool = True) -> Path:
    """Write the figures and ``report.html`` of ``sweep`` (default: the latest) into ``out_dir``.

    With ``log_to_mlflow`` every file is also logged under ``report/`` as an artifact of the sweep's
    parent run (a sweep without a parent run is written to disk only, with a warning).

    Returns:
        The path of ``report.html``.

    Raises:
        analysis.compare.NoSuchSweep: no such sweep under ``home``.
    """
    from analysis.store import client

    table = load_sweep(sweep, home)
    c = client(home)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for r in table.rows if r.metrics]
    histories = trial_histories(c, rows)
    steps = {r.run_id: max(s for h in hist.values() for s, _ in h)
             for r, hist in zip(rows, histories.values(), strict=True) if any(hist.values())}
    sections = _sections(rows, histories)
    for s in sections:
        s.figure.savefig(out_dir / s.file, dpi=110, bbox_inches="tight", pad_inches=0.15)
    front = set(pareto_front_by_layout(rows))
    page = out_dir / "report.html"
    page.write_text(_html(table, rows, sections, out_dir, front, steps), encoding="utf-8")
    if log_to_mlflow:
        if table.parent_run_id is None:
            log.warning("sweep %r has no parent run; the report was written to %s only", table.name, out_dir)
        else:
            for name in (*REPORT_FILES, page.name):
                c.log_artifact(table.parent_run_id, str(out_dir / name), ARTIFACT_DIR)
    return page

"""The sweep report (analysis/report.py) and its figures (analysis/plots.py).

The end-to-end test runs ``write_report`` on the small real sweep of ``conftest.small_sweep_home``
(design.md: ``hybridlab report`` logs plots and a report as artifacts of the sweep's parent run); the
rest check the Pareto front, metric-history deduplication (stack-notes.md summary item 9: duplicate
steps after a resume) and the figure contents on hand-made rows.
"""

from __future__ import annotations

import math
import re

import pytest

from analysis import plots
from analysis.compare import TrialRow
from analysis.report import ARTIFACT_DIR, REPORT_FILES, metric_history, pareto_front, write_report


def row(name: str, tps: float, ppl: float, layout: str | None = None, status: str = "ok", **metrics: float) -> TrialRow:
    return TrialRow(
        run_id=f"id-{name}", run_name=name, status=status, pattern=layout or name, layout_hash=layout or name,
        seq_len=32, metrics={"perf/tokens_per_s": tps, "val/ppl": ppl, **metrics},
    )


def test_write_report_makes_figures_html_and_parent_artifacts(small_sweep_home, tmp_path) -> None:
    from analysis.store import client

    s = small_sweep_home
    page = write_report(s.name, tmp_path / "report", home=s.home)

    assert page == tmp_path / "report" / "report.html"
    for name in REPORT_FILES:
        data = (page.parent / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        assert len(data) > 15_000, f"{name} is only {len(data)} bytes"
    text = page.read_text(encoding="utf-8")
    for name in REPORT_FILES:
        assert f'href="{name}"' in text and f'data-file="{name}"' in text, name
    assert text.count("data:image/png;base64,") == len(REPORT_FILES)
    for name in s.child_run_names:
        assert f"<td class=\"l\">{name}</td>" in text, name
    assert len(re.findall(r'<tr class="ok"', text)) == len(s.child_run_ids)
    assert "A-F (2 seeds)" in text and "\u00b1" in text
    assert "\u2605" in text

    names = {a.path for a in client(s.home).list_artifacts(s.parent_run_id, ARTIFACT_DIR)}
    assert names == {f"{ARTIFACT_DIR}/{n}" for n in (*REPORT_FILES, "report.html")}


def test_pareto_front_keeps_the_non_dominated_rows_by_throughput() -> None:
    a, a2 = row("a", 100, 10.0), row("a2", 100, 10.0)
    b = row("b", 200, 12.0)
    c = row("c", 150, 15.0)
    d = row("d", 300, 20.0)
    e = row("e", 250, 25.0)
    f = row("f", math.nan, 5.0)
    g = row("g", 300, 21.0)
    front = pareto_front([c, e, d, a, f, b, a2, g])
    assert [r.run_name for r in front] == ["a", "a2", "b", "d"]
    assert pareto_front([]) == []
    assert [r.run_name for r in pareto_front([b, c], x="val/ppl", y="perf/tokens_per_s")] == ["c"]


def test_metric_history_keeps_the_last_value_of_a_repeated_step(small_sweep_home) -> None:
    from mlflow.entities import Metric

    from analysis.store import client

    c = client(small_sweep_home.home)
    exp = c.get_experiment_by_name("dedup") or c.get_experiment(c.create_experiment(
        "dedup", artifact_location=(small_sweep_home.home / "artifacts" / "dedup").as_uri()))
    run_id = c.create_run(exp.experiment_id).info.run_id
    written = [(1, 1.0, 1000), (2, 2.0, 2000), (3, 3.0, 3000), (2, 7.0, 4000), (3, 8.0, 5000), (4, 4.0, 6000)]
    c.log_batch(run_id, metrics=[Metric("val/loss", v, ts, step) for step, v, ts in written])

    assert len(c.get_metric_history(run_id, "val/loss")) == len(written)
    assert metric_history(c, run_id, "val/loss") == [(1, 1.0), (2, 7.0), (3, 8.0), (4, 4.0)]
    assert metric_history(c, run_id, "train/loss") == []


def test_only_trials_that_differ_in_their_seed_are_repeats() -> None:
    def trial(name: str, seed: int, window: int) -> TrialRow:
        r = row(name, 100.0, 10.0 + seed, "L")
        r.params = {"train.seed": str(seed), "model.mixers.A.window": str(window), "train.lr": "0.003"}
        return r

    groups = plots.group_by_layout([trial("a", 0, 32), trial("b", 1, 32), trial("c", 0, 64)])
    assert [(g.n, g.label) for g in groups] == [(2, "L [window=32] (2 seeds)"), (1, "L [window=64]")]


def test_seeds_of_a_layout_are_averaged_with_std() -> None:
    rows = [row("s0", 100, 10.0, "L1", **{"val/ppl_len32": 10.0, "val/ppl_len64": 12.0}),
            row("s1", 140, 14.0, "L1", **{"val/ppl_len32": 14.0, "val/ppl_len64": 16.0}),
            row("p", 90, 30.0, "L2", status="pruned", **{"val/ppl_len32": 30.0})]
    groups = plots.group_by_layout(rows)
    assert [(g.key, g.n, g.finished) for g in groups] == [("L1", 2, True), ("L2", 1, False)]
    mean, std = groups[0].mean_std("val/ppl")
    assert mean == pytest.approx(12.0) and std == pytest.approx(math.sqrt(8.0))
    assert groups[0].label == "L1 (2 seeds)" and groups[1].label == "L2 (pruned)"

    ax = plots.ppl_vs_length(rows).axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel().startswith("evaluation length") and "std" in ax.get_title()
    fig = plots.quality_vs_throughput(rows)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["L1 (2 seeds)", "L2 (pruned)"]


def test_entropy_heatmap_leaves_other_layers_blank_and_checks_kind() -> None:
    rows = [row("a", 1, 1, "M-F-A-F", **{"entropy/attn/layer2": 1.5, "entropy/s6/layer0": 3.0}),
            row("b", 1, 1, "A-F", **{"entropy/attn/layer0": 2.5})]
    rows[0].pattern, rows[1].pattern = "M-F-A-F", "A-F"
    fig = plots.entropy_heatmap(rows, "attn")
    grid = fig.axes[0].images[0].get_array()
    assert grid.shape == (2, 4)
    assert grid[0, 2] == 1.5 and grid[1, 0] == 2.5
    assert grid.mask[0, 0] and grid.mask[0, 1] and grid.mask[1, 1] and grid.mask[1, 3]
    assert "nats" in fig.axes[1].get_ylabel()
    cells = {t.get_text() for t in fig.axes[0].texts}
    assert {"M", "F", "1.50", "2.50"} <= cells
    assert [t.get_text() for t in plots.entropy_heatmap(rows, "s6").axes[0].get_yticklabels()] == ["M-F-A-F"]
    with pytest.raises(ValueError, match="kind"):
        plots.entropy_heatmap(rows, "mamba")
    assert "no layout" in plots.entropy_heatmap(rows[1:], "s6").axes[0].texts[0].get_text()


def test_loss_curves_one_line_per_trial_and_panel() -> None:
    hist = {"t0": {"train/loss": [(1, 3.0), (2, 2.5)], "val/loss": [(2, 2.8)]},
            "t1": {"train/loss": [(1, 3.1), (2, 2.4)], "val/loss": []}}
    fig = plots.loss_curves(hist, colors={"t0": "#123456", "t1": "#123456"})
    train, val = fig.axes
    assert len(train.lines) == 2 and len(val.lines) == 1
    assert [ln.get_linestyle() for ln in train.lines] == ["-", "--"]
    assert train.get_ylabel() == "cross-entropy loss (nats/token)"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["t0", "t1"]

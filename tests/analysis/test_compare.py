"""Leaderboards: the Pareto front over any objectives, preset names beside patterns, objective parsing."""

from __future__ import annotations

import pytest

from analysis.compare import SweepTable, TrialRow, format_leaderboard, parse_objectives
from analysis.pareto import nondominated


def _row(name: str, ppl: float, tps: float, status: str = "ok", preset: str | None = None) -> TrialRow:
    return TrialRow(run_id=f"id-{name}", run_name=name, status=status, pattern=name, layout_hash=name, seq_len=64,
                    metrics={"val/ppl": ppl, "perf/tokens_per_s": tps, "model/params": 1000.0}, preset=preset)


def test_nondominated_over_any_number_of_objectives() -> None:
    points = [(1.0, 5.0, 3.0), (2.0, 6.0, 3.0), (1.0, 5.0, 2.0), (3.0, 3.0, 4.0), (float("nan"), 9.0, 9.0)]
    assert nondominated(points, [False, True, True]) == [0, 1, 3]  # min, max, max
    assert nondominated([(1.0, 1.0), (1.0, 1.0)], [False, False]) == [0, 1]  # equal points both stay


def test_the_pareto_front_counts_only_finished_trials() -> None:
    rows = [_row("slow-good", 5.0, 100.0), _row("fast-bad", 9.0, 900.0), _row("dominated", 9.5, 800.0),
            _row("pruned-best", 1.0, 2000.0, status="pruned")]
    table = SweepTable("s", "1", "p", rows, {"val/ppl": "min", "perf/tokens_per_s": "max"})
    assert [r.run_name for r in table.pareto()] == ["slow-good", "fast-bad"]
    doc = table.to_json()
    assert doc["pareto_front"] == ["id-slow-good", "id-fast-bad"]
    assert {t["run_name"]: t["pareto"] for t in doc["trials"]} == {
        "slow-good": True, "fast-bad": True, "dominated": False, "pruned-best": False}
    text = format_leaderboard(table)
    assert "Pareto front (val/ppl min, perf/tokens_per_s max; finished trials): 2 of 3" in text
    assert SweepTable("s", "1", "p", rows).pareto() == []  # a single-objective sweep has no front


def test_presets_get_their_own_column() -> None:
    table = SweepTable("s", "1", None, [_row("(M-F-A-F)*6", 5.0, 1.0, preset="tiny-samba"),
                                        _row("(M-F-A-F)*6", 6.0, 1.0, preset="tiny-samba-nope")])
    lines = format_leaderboard(table).splitlines()
    assert lines[1].split()[:3] == ["#", "preset", "pattern"]
    assert lines[3].split()[:3] == ["1", "tiny-samba", "(M-F-A-F)*6"]
    assert table.rows[1].name == "tiny-samba-nope"


def test_objectives_parse_from_the_command_line() -> None:
    assert parse_objectives("val/ppl:min, perf/tokens_per_s:max") == {"val/ppl": "min", "perf/tokens_per_s": "max"}
    for bad in ("val/ppl:min", "val/ppl:lowest,perf/tokens_per_s:max", "val/ppl,perf/tokens_per_s"):
        with pytest.raises(ValueError, match="--pareto"):
            parse_objectives(bad)

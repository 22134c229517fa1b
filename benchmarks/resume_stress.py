"""Kill a sweep's driver with SIGKILL at chosen moments, resume it, and check that every trial ran once.

The 4-trial sweep of ``tests/sweeps/test_sweep.py`` (patterns M-F, A-F, (M|A)-F, G-F-R-F, 2 at a time)
is started, killed ``delay`` seconds after its ``after``-th trial finished (MLflow status ``ok``), resumed
with ``--resume``, and the child runs are checked: four, one per pattern, all ``ok``. This is the race
that made Ray's experiment state and searcher state disagree (docs/BENCHMARKS.md §4).

    python benchmarks/resume_stress.py --points 1:0.1 2:0.1 1:0.6 2:0.6 1:1.2 2:1.2
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "sweeps")]
from test_sweep import _env, _write  # noqa: E402  (the test's sweep: one config for both)

PATTERNS = ["(M|A)-F", "A-F", "G-F-R-F", "M-F"]


def _finished(home: Path) -> int:
    try:
        with sqlite3.connect(home / "mlflow.db", timeout=1) as con:
            q = "select count(*) from tags where key = 'hybridlab.status' and value = 'ok'"
            return con.execute(q).fetchone()[0]
    except sqlite3.Error:
        return 0


def one(work: Path, after: int, delay: float) -> tuple[bool, str]:
    """Run, kill, resume once; returns (every trial exactly once and ok, what the store holds)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    home = work / "home"
    cfg = _write(work, "resume", steps=60, every=10, sched="fifo")
    env = _env(home)
    cmd = [sys.executable, "-m", "sweeps.cli", "sweep", str(cfg)]
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.time() + 300
    while driver.poll() is None and time.time() < deadline and _finished(home) < after:
        time.sleep(0.1)
    time.sleep(delay)
    if driver.poll() is None:
        os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(3)
    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    from analysis.store import client

    c = client(home)
    exp = c.get_experiment_by_name("resume")
    runs = c.search_runs([exp.experiment_id], filter_string="tags.`hybridlab.role` = 'trial'", max_results=100)
    got = sorted((r.data.params.get("pattern", "?"), r.data.tags.get("hybridlab.status", "?")) for r in runs)
    ok = resumed.returncode == 0 and [p for p, _ in got] == PATTERNS and all(s == "ok" for _, s in got)
    detail = f"rc={resumed.returncode} runs={got}"
    if not ok:
        detail += "\n" + _state(home) + "\n" + resumed.stderr[-3000:]
    return ok, detail


def _state(home: Path) -> str:
    """The Optuna trials (number, state, Ray trial id, pattern) and the searcher's events, for a failure."""
    lines = []
    with sqlite3.connect(home / "optuna.db") as con:
        q = ("select t.number, t.state, (select value_json from trial_user_attributes u where u.trial_id = t.trial_id "
             "and u.key = 'ray_trial_id'), (select param_value from trial_params p where p.trial_id = t.trial_id "
             "and p.param_name = 'model.pattern') from trials t")
        lines += [f"  optuna trial {row}" for row in con.execute(q)]
    events = home / "ray" / "resume" / "search_events.jsonl"
    lines += [f"  event {line}" for line in (events.read_text().splitlines() if events.exists() else [])]
    lines += [f"  {f.name}" for f in sorted((home / "ray" / "resume").glob("*state*"))]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", nargs="+", default=["1:0.1", "2:0.1", "1:0.6", "2:0.6", "1:1.2", "2:1.2"],
                    help="AFTER:DELAY pairs: kill DELAY s after the AFTER-th trial finished")
    args = ap.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, point in enumerate(args.points):
            after, delay = point.split(":")
            t0 = time.perf_counter()
            # a folder per point: MLflow caches its store per URI in this process, and a reused path whose
            # database was deleted would be read through the cached connection to the old file
            ok, what = one(Path(tmp) / f"run{i}", int(after), float(delay))
            failures += not ok
            print(f"kill {delay} s after trial {after} finished: {'ok' if ok else 'FAILED'} "
                  f"({time.perf_counter() - t0:.0f} s) {what}", flush=True)
    print(f"{len(args.points) - failures}/{len(args.points)} resumed with every trial exactly once")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

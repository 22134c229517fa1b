"""Summarise packed vs one-at-a-time GPU sweeps from MLflow and an nvidia-smi utilisation log.

    python benchmarks/gpu_sweep_summary.py --util gpu_util.csv --phases phases.txt pack_cold pack_warm serial_warm

For each sweep (an MLflow experiment under HYBRIDLAB_HOME): trials finished, wall time of the sweep's
parent run, trials per hour, mean GPU utilisation while it ran (``nvidia-smi --query-gpu=timestamp,
utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500``), and per trial the start-up time
(``perf/startup_s``: process start to the end of the first step), the kernel warm-up time
(``startup/kernel_warmup_s``), the kernel cache state (tag ``hybridlab.kernel_cache``) and the mean of
each start-up phase (``startup/<phase>_s``, a second table). ``phases.txt`` holds ``NAME START END`` lines
(Unix seconds) written around each sweep; the utilisation is averaged over that window. The *trial phase*
(from the end of the sweep's kernel pre-warm, the timestamp of ``sweep/kernel_prewarm_s`` on the parent run,
to the sweep's end; the whole sweep when nothing was pre-warmed) gets its own trials per hour and
utilisation. Prints Markdown tables and writes the numbers as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from sweeps.tracking import ROLE_TAG, client, set_home


def read_util(path: Path) -> list[tuple[float, float, float]]:
    """The samples of an nvidia-smi CSV log: (Unix time, utilisation %, memory MiB), unreadable lines skipped."""
    out = []
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            t = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
            out.append((t, float(parts[1]), float(parts[2])))
        except (ValueError, IndexError):
            continue
    return out


def _util(path: Path | None, start: float, end: float) -> tuple[float | None, float | None]:
    """Mean utilisation (%) and peak memory (MiB) of the samples in [start, end]."""
    if path is None or not path.exists():
        return None, None
    window = [(u, m) for t, u, m in read_util(path) if start <= t <= end]
    if not window:
        return None, None
    return statistics.fmean(u for u, _ in window), max(m for _, m in window)


def summarise(name: str, phases: dict[str, tuple[float, float]], util_log: Path | None) -> dict[str, Any]:
    c = client(set_home(None))
    exp = c.get_experiment_by_name(name)
    if exp is None:
        return {"sweep": name, "error": "no such experiment"}
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    parent = next((r for r in runs if r.data.tags.get(ROLE_TAG) == "sweep"), None)
    trials = [r for r in runs if r.data.tags.get(ROLE_TAG) == "trial"]
    done = [r for r in trials if r.info.status == "FINISHED"]
    start, end = phases.get(name, (None, None))
    if start is None and parent is not None:
        start, end = parent.info.start_time / 1000, (parent.info.end_time or parent.info.start_time) / 1000
    wall = (end - start) if start is not None else None
    util, mem = _util(util_log, start, end) if start is not None else (None, None)
    startup = [r.data.metrics["perf/startup_s"] for r in done if "perf/startup_s" in r.data.metrics]
    warm = [r.data.metrics["startup/kernel_warmup_s"] for r in done if "startup/kernel_warmup_s" in r.data.metrics]

    prewarm, trials_from = None, start  # the trial phase: from the end of the kernel pre-warm to the sweep's end
    if parent is not None and "sweep/kernel_prewarm_s" in parent.data.metrics:
        (m,) = c.get_metric_history(parent.info.run_id, "sweep/kernel_prewarm_s")
        prewarm, trials_from = m.value, m.timestamp / 1000
    phase = (end - trials_from) if start is not None else None
    phase_util, _ = _util(util_log, trials_from, end) if phase else (None, None)

    def stats(xs: list[float]) -> dict[str, float] | None:
        return {"mean": statistics.fmean(xs), "min": min(xs), "max": max(xs)} if xs else None

    return {
        "sweep": name,
        "trials": len(trials),
        "finished": len(done),
        "wall_s": wall,
        "trials_per_hour": (3600 * len(done) / wall) if wall else None,
        "gpu_util_mean_pct": util,
        "gpu_mem_peak_mib": mem,
        "kernel_prewarm_s": prewarm,
        "trial_phase_s": phase,
        "trial_phase_trials_per_hour": (3600 * len(done) / phase) if phase else None,
        "trial_phase_gpu_util_mean_pct": phase_util,
        "startup_s": stats(startup),
        "kernel_warmup_s": stats(warm),
        "startup_phases_s": {
            k[len("startup/") : -len("_s")]: statistics.fmean(xs)
            for k in sorted({k for r in done for k in r.data.metrics if k.startswith("startup/")})
            if (xs := [r.data.metrics[k] for r in done if k in r.data.metrics])
        },
        "kernel_cache": dict(Counter(r.data.tags.get("hybridlab.kernel_cache", "none") for r in done)),
        "tokens_per_s_mean": statistics.fmean(
            [r.data.metrics["perf/tokens_per_s"] for r in done if "perf/tokens_per_s" in r.data.metrics] or [0.0]
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweeps", nargs="+")
    ap.add_argument("--util", type=Path, help="nvidia-smi CSV log")
    ap.add_argument("--phases", type=Path, help="NAME START END lines")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    args = ap.parse_args()
    phases: dict[str, tuple[float, float]] = {}
    if args.phases and args.phases.exists():
        for line in args.phases.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                phases[parts[0]] = (float(parts[1]), float(parts[2]))
    rows = [summarise(name, phases, args.util) for name in args.sweeps]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))

    def f(x: Any, fmt: str = "{:.1f}") -> str:
        return "n/a" if x is None else fmt.format(x)

    print("| sweep | trials done | wall | kernel pre-warm | trials/hour | GPU util (mean) | trial phase | "
          "trials/hour in it | GPU util in it | peak GPU memory | start-up per trial (mean, min-max) | "
          "kernel warm-up per trial (mean) | kernel cache |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['sweep']} | {r['error']} |||||||||||")
            continue
        s, w = r["startup_s"] or {}, r["kernel_warmup_s"] or {}
        print(f"| {r['sweep']} | {r['finished']}/{r['trials']} | {f(r['wall_s'], '{:.0f} s')} | "
              f"{f(r['kernel_prewarm_s'], '{:.0f} s')} | "
              f"{f(r['trials_per_hour'], '{:.0f}')} | {f(r['gpu_util_mean_pct'], '{:.0f}%')} | "
              f"{f(r['trial_phase_s'], '{:.0f} s')} | {f(r['trial_phase_trials_per_hour'], '{:.0f}')} | "
              f"{f(r['trial_phase_gpu_util_mean_pct'], '{:.0f}%')} | "
              f"{f(r['gpu_mem_peak_mib'], '{:.0f} MiB')} | {f(s.get('mean'))} s ({f(s.get('min'))}-{f(s.get('max'))}) | "
              f"{f(w.get('mean'), '{:.2f} s')} | {r['kernel_cache']} |")
    print("\nStart-up per trial by phase (mean seconds; `perf/startup_s` = the phases plus the kernel warm-up):\n")
    names = sorted({k for r in rows if "error" not in r for k in r["startup_phases_s"]})
    print("| sweep | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for r in rows:
        if "error" not in r:
            print(f"| {r['sweep']} | " + " | ".join(f(r["startup_phases_s"].get(k), "{:.2f}") for k in names) + " |")


if __name__ == "__main__":
    main()

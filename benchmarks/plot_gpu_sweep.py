"""Plot GPU utilisation over time for the sweeps of ``benchmarks/gpu_sweep.sh`` runs, pre-warm and trial phases marked.

    python benchmarks/plot_gpu_sweep.py --out docs/images/gpu_sweep_util.png \
        RUN_DIR[:SWEEP=TRIAL_PHASE_S,...] ...

Each ``RUN_DIR`` holds one device call's ``gpu_util.csv`` (nvidia-smi, every 0.5 s), ``phases.txt`` (``NAME START
END``) and ``gpu_sweep.json`` (``benchmarks/gpu_sweep_summary.py``). A sweep's trial phase is the summary's
``trial_phase_s`` (the time after the kernel pre-warm); ``SWEEP=SECONDS`` after the directory gives it for runs
whose summary predates that field. One panel per sweep: utilisation and memory against seconds from the sweep's
start, the pre-warm shaded, titled with the run folder and the sweep's name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_sweep_summary import read_util  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="RUN_DIR[:SWEEP=TRIAL_PHASE_S,...]")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    panels = []
    for spec in args.runs:
        folder, _, extra = spec.partition(":")
        run = Path(folder)
        given = {k: float(v) for k, v in (kv.split("=") for kv in extra.split(",") if kv)}
        summary = {r["sweep"]: r for r in json.loads((run / "gpu_sweep.json").read_text()) if "error" not in r}
        samples = read_util(run / "gpu_util.csv")
        for line in (run / "phases.txt").read_text().splitlines():
            name, start, end = line.split()
            r = summary.get(name)
            if r is None or not r.get("finished"):
                continue
            phase = given.get(name, r.get("trial_phase_s"))
            rows = [(t - float(start), u, m) for t, u, m in samples if float(start) <= t <= float(end)]
            panels.append((f"{run.name}: {name}", r, float(end) - float(start), phase, rows))
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels)), sharex=True, squeeze=False)
    for ax, (name, r, wall, phase, rows) in zip(axes[:, 0], panels, strict=True):
        ax.plot([x for x, _, _ in rows], [u for _, u, _ in rows], lw=0.8, color="tab:blue", label="GPU util %")
        ax.set_ylim(0, 100)
        ax.set_ylabel("util %")
        mem = ax.twinx()
        mem.plot([x for x, _, _ in rows], [m / 1024 for _, _, m in rows], lw=0.8, color="tab:orange", label="memory GiB")
        mem.set_ylabel("GiB")
        if phase is not None:
            ax.axvspan(0, wall - phase, color="0.85", zorder=0)
            ax.text(2, 90, "driver and Ray start, kernel pre-warm", fontsize=8, va="top")
        per_hour = f"{r['finished'] * 3600 / phase:.0f} trials/h after the pre-warm" if phase else ""
        ax.set_title(f"{name}: {r['finished']} trials, {wall:.0f} s; {per_hour}", fontsize=9)
    axes[-1, 0].set_xlabel("seconds from the sweep's start")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

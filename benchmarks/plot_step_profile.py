"""Plot where a training step's GPU time goes, from ``benchmarks/profile_step.py`` outputs, against a tokens/s target.

    python benchmarks/plot_step_profile.py --out docs/images/samba_step_profile.png --target 150000 \
        "eager, batch 4=benchmarks/results/2026-11-30-h200-profile-samba-421m.txt" \
        "compiled, batch 8=benchmarks/results/2026-11-30-h200-profile-samba-421m-compiled-b8.txt"

Each profile's "Time by kind" table becomes one stacked bar, scaled to milliseconds per 16,384 tokens (a batch of
4 x 4096) so that batches compare; the GPU's idle time (the step under the profiler minus the summed kernel time)
is the last segment. A dashed line marks the time per 16,384 tokens that ``--target`` tokens/s allows. Profiles
written before ``profile_step.py`` skipped user annotations counted the GPU range of ``Optimizer.step#...`` as a
kernel; its row in the top-kernels table is subtracted from the optimizer here.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GROUPS = [  # (segment, regex matching the whole name of the profile_step.KINDS summed into it)
    ("matmuls", r"matmul.*"),
    ("Mamba scan + conv", r"mamba selective scan.*|convolution.*"),
    ("attention", r"attention.*"),
    ("inductor-fused elementwise", r"inductor-fused.*"),
    ("other elementwise, copies, reductions", r"other elementwise|copies.*|reductions"),
    ("cross-entropy", r"cross-entropy.*"),
    ("AdamW", r"optimizer.*"),
    ("other", r"other"),
]
TOKENS = 4 * 4096


def read_profile(path: Path) -> tuple[dict[str, float], float, int]:
    """(ms per step by group, ms of GPU idle per step, tokens per step) from one profile_step.py output."""
    text = path.read_text()
    batch, seq = (int(v) for v in re.search(r"batch (\d+) x (\d+)", text).groups())
    step, kernels = (float(v) for v in re.search(r"step \(CUDA events.*?\): ([\d.]+) ms; summed kernel time ([\d.]+)",
                                                  text).groups())
    kinds = {m[0]: float(m[1]) for m in re.findall(r"^\| ([^|]+?) \| ([\d.]+) \| [\d.]+% \| \d+ \|$", text, re.M)}
    annotation = sum(float(m) for m in re.findall(r"^\| ([\d.]+) \| [\d.]+% \| \d+ \| [^|]+ \| `Optimizer\.step#", text, re.M))
    groups = {name: sum(v for k, v in kinds.items() if re.fullmatch(pattern, k)) for name, pattern in GROUPS}
    if abs(sum(groups.values()) - sum(kinds.values())) > 1e-6:
        raise ValueError(f"{path}: a kind of {sorted(kinds)} is in none of the plot's groups; add it to GROUPS")
    groups["AdamW"] -= annotation
    kernels -= annotation
    return groups, max(step - kernels, 0.0), batch * seq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profiles", nargs="+", help="LABEL=PATH of a profile_step.py output")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--target", type=float, default=150000, help="tokens/s to mark")
    args = ap.parse_args()
    rows = []
    for spec in args.profiles:
        label, _, path = spec.partition("=")
        groups, idle, tokens = read_profile(Path(path))
        scale = TOKENS / tokens
        rows.append((label, {k: v * scale for k, v in groups.items()}, idle * scale))
    fig, ax = plt.subplots(figsize=(10, 2.0 + 0.8 * len(rows)))
    colors = plt.get_cmap("tab10").colors
    for i, (_, groups, idle) in enumerate(rows):
        left = 0.0
        for j, (name, _) in enumerate(GROUPS):
            ax.barh(i, groups[name], left=left, color=colors[j], label=name if i == 0 else None)
            left += groups[name]
        ax.barh(i, idle, left=left, color="0.85", hatch="//", label="GPU idle" if i == 0 else None)
        total = left + idle
        ax.text(total + 1, i, f"{total:.0f} ms = {TOKENS / total:.0f}K tokens/s", va="center", fontsize=8)
    goal = TOKENS / args.target * 1000
    ax.axvline(goal, color="k", ls="--", lw=1)
    ax.text(goal, -0.55, f" {args.target / 1000:.0f}K tokens/s", fontsize=8, va="bottom")
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_xlabel(f"GPU milliseconds per {TOKENS:,} tokens")
    ax.set_xlim(0, max(sum(g.values()) + idle for _, g, idle in rows) * 1.25)
    ax.set_ylim(len(rows) - 0.5, -0.8)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110, bbox_inches="tight")  # the legend sits below the axes
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

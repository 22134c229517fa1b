"""Non-dominated (Pareto) sets over any number of objectives, each minimised or maximised.

Used by ``hybridlab compare`` for multi-objective sweeps and by the quality-vs-throughput plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["nondominated"]


def nondominated(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[int]:
    """Indices of the points no other point dominates, in input order.

    A point dominates another when it is at least as good on every objective and better on one; equal
    points do not dominate each other, so both stay. Points with a NaN or infinite coordinate are never
    on the front (and dominate nothing).
    """
    signs = [1.0 if m else -1.0 for m in maximize]
    ok = [i for i, p in enumerate(points) if len(p) == len(signs) and all(math.isfinite(float(v)) for v in p)]
    score = {i: tuple(s * float(v) for s, v in zip(signs, points[i], strict=True)) for i in ok}

    def dominated(i: int) -> bool:
        a = score[i]
        return any(all(bv >= av for av, bv in zip(a, b, strict=True)) and b != a for j, b in score.items() if j != i)

    return [i for i in ok if not dominated(i)]

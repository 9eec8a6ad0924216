"""Exact hypervolume of a set of points (larger is better in every column): the volume
of the region between a reference point and the points, dominated by at least one.

Two objectives: a sort and a sweep. More: the hypervolume-by-slicing-objectives
recursion (sort by the last objective; each slab between consecutive values is the
(k − 1)-dimensional hypervolume of the points above it times the slab's thickness),
O(n^(k−1) log n) — exact, and fast for fronts of a few hundred points.
"""

from __future__ import annotations

import numpy as np


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by ``points`` (n × k) and bounded below by ``reference`` (k,);
    points not strictly above the reference in every column add nothing."""
    points = np.asarray(points, dtype=float).reshape(-1, len(reference))
    reference = np.asarray(reference, dtype=float)
    points = points[np.isfinite(points).all(axis=1) & (points > reference).all(axis=1)]
    return _hv(points, reference)


def _hv(points: np.ndarray, reference: np.ndarray) -> float:
    if len(points) == 0:
        return 0.0
    k = points.shape[1]
    if k == 1:
        return float(points[:, 0].max() - reference[0])
    if k == 2:
        order = np.argsort(-points[:, 0], kind="stable")
        volume, best_y = 0.0, reference[1]
        for x, y in points[order]:
            if y > best_y:
                volume += (x - reference[0]) * (y - best_y)
                best_y = y
        return float(volume)
    order = np.argsort(-points[:, -1], kind="stable")
    ordered = points[order]
    volume = 0.0
    for i in range(len(ordered)):
        top = ordered[i, -1]
        bottom = ordered[i + 1, -1] if i + 1 < len(ordered) else reference[-1]
        if top > bottom:
            volume += _hv(ordered[: i + 1, :-1], reference[:-1]) * (top - bottom)
    return float(volume)

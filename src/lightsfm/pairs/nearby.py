"""Pairs by GPS: each photo with its nearest photos by EXIF position, beside appearance.

Appearance misses pairs that look different but overlap (a facade in sun and in shade, a
drone's nadir view and its oblique one); where photos carry GPS, the nearest ones are
likely to overlap. Only where GPS can tell the photos apart: their spread must be several
times their accuracy (an object walked around within a few metres gains nothing, and
pairing it by GPS noise would only match random pairs).
"""

from __future__ import annotations

import numpy as np

from ..gps import GpsFix, enu_positions, informative


def pairs_nearby(fixes: dict[str, GpsFix], k: int) -> list[tuple[str, str]]:
    """Each photo with GPS and its ``k`` nearest by position (none when GPS is not
    informative, lightsfm.gps.informative); pairs once each, in name order."""
    if k <= 0 or not informative(fixes):
        return []
    names, xyz = enu_positions(fixes)
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=2)  # (a few thousand photos: fine in memory)
    np.fill_diagonal(d, np.inf)
    out = set()
    for i, row in enumerate(d):
        for j in np.argsort(row, kind="stable")[: min(k, len(names) - 1)]:
            out.add((names[min(i, j)], names[max(i, j)]))
    return sorted(out)

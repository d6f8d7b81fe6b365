"""Pairs by GPS: each photo with its nearest photos by EXIF position, beside appearance.

Appearance misses pairs that look different but overlap (a facade in sun and in shade, a
drone's nadir view and its oblique one); where photos carry GPS, the nearest ones are
likely to overlap. Only where GPS can tell the photos apart: their spread must be several
times their accuracy (an object walked around within a few metres gains nothing, and
pairing it by GPS noise would only match random pairs).
"""

from __future__ import annotations

import numpy as np

from ..gps import GpsFix, geodetic_to_enu, origin_of

DEFAULT_ACCURACY_M = 5.0  # a phone's GPS when EXIF states none
MIN_SPREAD = 5.0  # the photos' median distance from their middle, in accuracies


def positions(fixes: dict[str, GpsFix]) -> tuple[list[str], np.ndarray]:
    """Names and east-north-up metres (N, 3) about the photos' mean position; a photo
    without altitude is put at the others' median height."""
    names = sorted(fixes)
    o = origin_of(fixes)
    lla = np.array(
        [[f.latitude, f.longitude, f.altitude if f.altitude is not None else o[2]] for f in (fixes[n] for n in names)]
    )
    return names, geodetic_to_enu(lla, o)


def informative(fixes: dict[str, GpsFix]) -> bool:
    """Whether the photos' GPS spread is at least MIN_SPREAD times its accuracy."""
    if len(fixes) < 3:
        return False
    _, xyz = positions(fixes)
    spread = float(np.median(np.linalg.norm(xyz - np.median(xyz, axis=0), axis=1)))
    stated = [f.accuracy for f in fixes.values() if f.accuracy]
    accuracy = float(np.median(stated)) if stated else DEFAULT_ACCURACY_M
    return spread >= MIN_SPREAD * accuracy


def pairs_nearby(fixes: dict[str, GpsFix], k: int) -> list[tuple[str, str]]:
    """Each photo with GPS and its ``k`` nearest by position (none when GPS is not
    informative); pairs once each, in name order."""
    if k <= 0 or not informative(fixes):
        return []
    names, xyz = positions(fixes)
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=2)  # (a few thousand photos: fine in memory)
    np.fill_diagonal(d, np.inf)
    out = set()
    for i, row in enumerate(d):
        for j in np.argsort(row, kind="stable")[: min(k, len(names) - 1)]:
            out.add((names[min(i, j)], names[max(i, j)]))
    return sorted(out)

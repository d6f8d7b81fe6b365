"""Every unordered pair of images."""

from __future__ import annotations

from itertools import combinations


def pairs_exhaustive(names: list[str]) -> list[tuple[str, str]]:
    """All n·(n−1)/2 pairs, each once, in name order."""
    return list(combinations(sorted(names), 2))

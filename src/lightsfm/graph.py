"""Connected parts of a graph given by its edges (union-find)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable


def components(nodes: Iterable[Hashable], edges: Iterable[tuple[Hashable, Hashable]]) -> dict[Hashable, Hashable]:
    """Each node's part, named by one of its nodes; an edge's ends become nodes if they were not."""
    parent = {n: n for n in nodes}

    def root(n: Hashable) -> Hashable:
        parent.setdefault(n, n)
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in edges:
        parent[root(a)] = root(b)
    return {n: root(n) for n in list(parent)}

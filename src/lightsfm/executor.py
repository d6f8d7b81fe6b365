"""Where per-item work runs: the seam between a stage's loop and the machines it uses.

A stage hands ``map`` a task (a picklable callable that builds its model on first use,
so a worker loads it once, not once per item) and its work items; results come back in
the order of the items, whoever computed them. ``local`` runs them here, one after the
other, with a progress bar; other executors (a Ray cluster) run the same tasks elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from tqdm import tqdm

from .errors import LightsfmError


class Executor(Protocol):
    def map(self, task: Callable[[Any], Any], items: Iterable[Any], desc: str = "", unit: str = "item") -> Iterator:
        """``task(item)`` for every item, yielded in the order of ``items``."""
        ...


class LocalExecutor:
    """In this process, one item after the other (torch uses every core within an item);
    a progress bar when ``desc`` names the work."""

    def map(self, task: Callable[[Any], Any], items: Iterable[Any], desc: str = "", unit: str = "item") -> Iterator:
        items = list(items)
        # (a disable= of our own would override the user's TQDM_DISABLE)
        for item in tqdm(items, desc=desc, unit=unit) if items and desc else items:
            yield task(item)


def get(name: str = "local", **options: Any) -> Executor:
    """The executor called ``name`` (``local``)."""
    if name == "local":
        return LocalExecutor()
    raise LightsfmError(f"unknown executor {name!r}; one of local")

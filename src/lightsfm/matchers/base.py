"""What every matcher is.

A new matcher is one module in this package with one subclass of :class:`Matcher` (see
``mnn.py``); ``lightsfm.matchers.get(name)`` finds it by its module name. A matcher may
also say how a whole list of pairs is best matched (``plan``, e.g. the hybrid matcher
spends LightGlue where mutual nearest neighbours fall short); the matching stage
(``lightsfm.match``) writes what it yields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..geometry import count_inliers

if TYPE_CHECKING:
    from ..match import MatchTask

Features = dict[str, np.ndarray]
Matches = dict[str, np.ndarray]  # matches0 (N0,) int32: index into image 1 or -1; scores0 (N0,)
# run(task, items, desc) → results in item order: an executor's map (lightsfm.executor)
Run = Callable[..., Iterator[Any]]


class Matcher:
    name: ClassVar[str]
    default_conf: ClassVar[dict[str, Any]] = {}  # the matcher's own settings (matching.<key>)
    flags: ClassVar[dict[str, str | tuple[str, str]]] = {}  # command-line flags of some of them (lightsfm.cli)
    # Cheap per pair (milliseconds): the local executor runs one pair per core at once, each
    # on one torch thread, rather than one pair at a time on every core (lightsfm.executor).
    side_by_side: ClassVar[bool] = False

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "cpu", features: str = "aliked") -> None:
        self.conf = {**self.default_conf, **{k: v for k, v in (conf or {}).items() if k in self.default_conf}}
        self.device = device
        self.features = features  # the extractor that made the features (learned matchers are trained per extractor)
        self._init()

    def _init(self) -> None:
        """Builds the model, if any."""

    def __call__(self, feats0: Features, feats1: Features) -> Matches:
        raise NotImplementedError

    @classmethod
    def tag(cls, conf: dict[str, Any]) -> str:
        """The matcher's part of the matches file's name."""
        return cls.name

    @classmethod
    def plan(
        cls, conf: dict[str, Any], pairs: list[tuple[str, str]], task: MatchTask, run: Run, done: Iterable = ()
    ) -> Iterator[tuple[str, str, Matches]]:
        """(a, b, matches) of every pair. ``task`` matches one pair with any matcher;
        ``done``: (a, b, matches0) an interrupted run already wrote."""
        for a, b, out, _ in run(task.using(cls.name), pairs, desc="match", unit="pair"):
            yield a, b, out


def quick_inliers(f0: Features, f1: Features, matches0: np.ndarray, threshold: float) -> int:
    """Inliers of a quick fundamental-matrix RANSAC, the threshold in pixels of the
    extraction size (scaled to the photos' full size)."""
    th = threshold * max(float(f0.get("scale", 1.0)), float(f1.get("scale", 1.0)))
    return count_inliers(f0["keypoints"], f1["keypoints"], matches0, th)

"""Matching stage: local features of image pairs → ``matches-<features>-<matcher>.h5``.

Each pair (name0, name1) becomes the group ``quote(name0)/quote(name1)`` with
``matches0`` (N0,) int32, the index in image 1 of each keypoint of image 0 or -1, and
``scores0`` (N0,) float16. Pairs already in the file are skipped. The matcher is a plug-in
(``matching.name``, see lightsfm.matchers); its ``plan`` says which pairs to match how,
and the executor runs the work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import matchers
from .device import set_threads
from .executor import Executor, LocalExecutor
from .io import pair_to_key
from .matchers.base import Matcher, Matches, quick_inliers
from .store import FeatureReader, H5Store, read_matches

default_conf: dict[str, Any] = {"name": "hybrid"}  # each matcher adds its own settings
flags: dict[str, str | tuple[str, str]] = {
    "name": ("--matcher", "hybrid (mutual nearest neighbours, LightGlue on weak pairs), mnn or lightglue."),
}


def full_conf(conf: dict[str, Any] | None) -> dict[str, Any]:
    """The chosen matcher's settings (with those of the matchers it composes), ``conf`` on top."""
    conf = conf or {}
    name = conf.get("name", default_conf["name"])
    cls = matchers.get(name)
    defaults = {**default_conf, **cls.default_conf}
    for part in ("first", "second"):  # a composing matcher: its parts' settings too
        if part in defaults:
            defaults = {**matchers.get(conf.get(part, defaults[part])).default_conf, **defaults}
    return {**defaults, **{k: v for k, v in conf.items() if k in defaults}}


def match_path(output: Path, feature_file: Path, conf: dict[str, Any] | None = None) -> Path:
    """Matches depend on the features they were computed from: the name says which, and the matcher."""
    c = full_conf(conf)
    tag = Path(feature_file).stem.removeprefix("features-")
    return Path(output) / f"matches-{tag}-{matchers.get(c['name']).tag(c)}.h5"


class MatchTask:
    """One pair as a work item: (a, b) → (a, b, matches, quick-check inliers or None).

    Picklable; opens the features file and builds the matcher on first use, once per worker.
    """

    def __init__(
        self, feature_file: Path, matcher: str, conf: dict[str, Any], device: str = "cpu", check: float | None = None
    ) -> None:
        self.feature_file, self.matcher, self.conf, self.device, self.check = (
            Path(feature_file),
            matcher,
            conf,
            device,
            check,
        )
        self._feats: FeatureReader | None = None
        self._model: Matcher | None = None

    def using(self, matcher: str, check: float | None = None, overrides: dict[str, Any] | None = None) -> MatchTask:
        """The same pairs matched with another matcher (settings, quick check)."""
        return MatchTask(self.feature_file, matcher, {**self.conf, **(overrides or {})}, self.device, check)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_feats": None, "_model": None}

    @property
    def side_by_side(self) -> bool:
        """Pairs of a cheap matcher run one per core at once locally (lightsfm.executor)."""
        return matchers.get(self.matcher).side_by_side

    def features(self) -> FeatureReader:
        if self._feats is None:
            self._feats = FeatureReader(self.feature_file)
        return self._feats

    def __call__(self, pair: tuple[str, str]) -> tuple[str, str, Matches, int | None]:
        a, b = pair
        feats = self.features()
        if self._model is None:
            set_threads()
            self._model = matchers.get(self.matcher)(self.conf, self.device, feats.conf()["name"])
        f0, f1 = feats[a], feats[b]
        out = self._model(f0, f1)
        inliers = None if self.check is None else quick_inliers(f0, f1, out["matches0"], self.check)
        return a, b, out, inliers


def main(
    pairs: list[tuple[str, str]],
    feature_file: Path,
    output: Path,
    conf: dict[str, Any] | None = None,
    device: str = "cpu",
    executor: Executor | None = None,
) -> Path:
    """Matches every pair of ``pairs`` whose two images have features; returns the matches file."""
    conf = full_conf(conf)
    store = H5Store(match_path(output, feature_file, conf), conf, depth=2)
    done = store.keys()
    with FeatureReader(feature_file) as feats:
        usable = [(a, b) for a, b in pairs if a in feats and b in feats]
    todo = sorted(p for p in usable if pair_to_key(*p) not in done and pair_to_key(p[1], p[0]) not in done)
    if not todo:  # (sorted: image by image, so the feature cache hits)
        store.ensure()
        return store.path
    executor = executor or LocalExecutor()
    task = MatchTask(feature_file, conf["name"], conf, device)
    previous = read_matches(store.path, sorted(set(usable) - set(todo)))
    with store.writer() as out:
        for a, b, m in matchers.get(conf["name"]).plan(conf, todo, task, executor.map, previous):
            out.add(pair_to_key(a, b), m)
    return store.path

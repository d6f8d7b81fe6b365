"""Matching local features between image pairs → ``matches-<features>-<matcher>.h5``.

Each pair (name0, name1) becomes the group ``quote(name0)/quote(name1)`` with
``matches0`` (N0,) int32, the index in image 1 of each keypoint of image 0 or -1, and
``scores0`` (N0,) float16. Pairs already in the file are skipped. Matchers plug in
behind one interface: ``Matcher(conf, device)(feats0, feats1) -> {"matches0", "scores0"}``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from ..device import set_threads
from ..io import H5Appender, h5_conf, h5_keys, name_to_key, pair_to_key
from . import hybrid, lightglue, nearest_neighbor

logger = logging.getLogger(__name__)

MATCHERS = {"lightglue": lightglue, "mnn": nearest_neighbor, "mnn+lightglue": hybrid}
# Every matcher's settings, so that any of them can be set; the chosen model uses its own.
default_conf: dict[str, Any] = {**hybrid.default_conf}


def _module(conf: dict[str, Any]):
    model = conf.get("model", default_conf["model"])
    if model not in MATCHERS:
        raise ValueError(f"unknown matcher {model!r}; one of {', '.join(MATCHERS)}")
    return MATCHERS[model]


def full_conf(conf: dict[str, Any] | None) -> dict[str, Any]:
    """The matcher's defaults with ``conf`` merged on top (only the chosen matcher's keys)."""
    conf = conf or {}
    defaults = _module(conf).default_conf
    return {**defaults, **{k: v for k, v in conf.items() if k in defaults}}


def build(conf: dict[str, Any], device: str = "cpu"):
    """The matcher named by ``conf['model']``."""
    conf = full_conf(conf)
    if conf["model"] == "lightglue":
        return lightglue.LightGlueMatcher(conf, device)
    if conf["model"] == "mnn+lightglue":
        return hybrid.HybridMatcher(conf, device)
    return nearest_neighbor.MutualNNMatcher(conf, device)


def match_path(output: Path, feature_file: Path, conf: dict[str, Any] | None = None) -> Path:
    """Matches depend on the features they were computed from: the name says which, and the matcher."""
    tag = Path(feature_file).stem.removeprefix("features-")
    return Path(output) / f"matches-{tag}-{full_conf(conf)['model']}.h5"


class FeatureCache:
    """Reads each image's features once from features.h5 and keeps the most recent ones."""

    def __init__(self, path: Path, size: int = 64) -> None:
        self.file = h5py.File(path, "r")
        self.size = size
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def __getitem__(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._cache:
            if len(self._cache) >= self.size:
                self._cache.pop(next(iter(self._cache)))
            g = self.file[name_to_key(name)]
            self._cache[name] = {k: g[k][()] for k in ("keypoints", "descriptors", "image_size", "scores")}
            self._cache[name]["scale"] = float(g.attrs.get("scale", 1.0))
        return self._cache[name]

    def __contains__(self, name: str) -> bool:
        return name_to_key(name) in self.file

    def close(self) -> None:
        self.file.close()


def _done_matches(path: Path, pairs: list[tuple[str, str]], feats: FeatureCache) -> list:
    """(a, b, matches0) of the listed pairs already in the matches file."""
    if not path.exists():
        return []
    out = []
    with h5py.File(path, "r") as f:
        for a, b in pairs:
            for x, y in ((a, b), (b, a)):
                key = pair_to_key(x, y)
                if key in f and x in feats and y in feats:
                    out.append((x, y, f[key]["matches0"][()]))
    return out


def main(
    pairs: list[tuple[str, str]],
    feature_file: Path,
    output: Path,
    conf: dict[str, Any] | None = None,
    device: str = "cpu",
) -> Path:
    """Matches every pair of ``pairs`` whose two images have features; returns the matches file."""
    conf = full_conf(conf)
    path = match_path(output, feature_file, conf)
    conf_str = json.dumps(conf, sort_keys=True)
    if h5_conf(path) not in (None, conf_str):
        logger.warning("%s was written with other settings; recomputing it", path)
        path.unlink()
    done = h5_keys(path, depth=2)
    feats = FeatureCache(feature_file)
    todo = [(a, b) for a, b in pairs if pair_to_key(a, b) not in done and pair_to_key(b, a) not in done]
    todo = [(a, b) for a, b in todo if a in feats and b in feats]
    # Visit pairs image by image so the feature cache hits.
    todo.sort()
    try:
        if todo:
            set_threads()
            matcher = build(conf, device)
            with H5Appender(path, conf_str) as out:
                if isinstance(matcher, hybrid.HybridMatcher):
                    previous = _done_matches(path, pairs, feats)
                    matcher.match_all(todo, feats, lambda a, b, m: out.add(pair_to_key(a, b), m), previous)
                    logger.debug("LightGlue matched %d of %d pairs again", matcher.refined, len(todo))
                else:
                    for a, b in tqdm(todo, desc="match", unit="pair"):
                        out.add(pair_to_key(a, b), matcher(feats[a], feats[b]))
        elif not path.exists():
            H5Appender(path, conf_str).flush()  # an empty but valid file
    finally:
        feats.close()
    return path

"""Where features and matches live: HDF5 files, one group per image or per pair.

A store knows which keys it holds and the settings it was written with; a store written
with other settings is started afresh. Writing goes through ``io.H5Appender`` (crash-safe:
a killed run leaves the old or the new file, never a broken one).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .io import H5Appender, h5_conf, h5_keys, merge_parts, name_to_key, pair_to_key

logger = logging.getLogger(__name__)


class H5Store:
    """One HDF5 file of image (depth 1) or pair (depth 2) groups, written with ``conf``."""

    def __init__(self, path: Path, conf: dict[str, Any], depth: int = 1) -> None:
        self.path = Path(path)
        self.conf_str = json.dumps(conf, sort_keys=True)
        self.depth = depth
        merge_parts(self.path)  # what a killed run flushed but did not merge
        if h5_conf(self.path) not in (None, self.conf_str):
            logger.warning("%s was written with other settings; recomputing it", self.path)
            self.path.unlink()

    def keys(self) -> set[str]:
        return h5_keys(self.path, self.depth)

    def writer(self) -> H5Appender:
        """Context manager; ``add(key, data)`` per item, committed atomically."""
        return H5Appender(self.path, self.conf_str)

    def ensure(self) -> None:
        """Writes an empty but valid file if there is none (a stage with nothing to do)."""
        if not self.path.exists():
            H5Appender(self.path, self.conf_str).flush()


class FeatureReader:
    """Each image's features, read once from a features file, the most recent ones cached."""

    FIELDS = ("keypoints", "descriptors", "image_size", "scores")

    def __init__(self, path: Path, size: int = 64) -> None:
        self.file = h5py.File(path, "r")
        self.size = size
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def __getitem__(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._cache:
            if len(self._cache) >= self.size:
                self._cache.pop(next(iter(self._cache)))
            g = self.file[name_to_key(name)]
            self._cache[name] = {k: g[k][()] for k in self.FIELDS}
            self._cache[name]["scale"] = float(g.attrs.get("scale", 1.0))
        return self._cache[name]

    def __contains__(self, name: str) -> bool:
        return name_to_key(name) in self.file

    def conf(self) -> dict[str, Any]:
        """The settings the features were extracted with."""
        return json.loads(self.file.attrs["conf"])

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> FeatureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_matches(path: Path, pairs: list[tuple[str, str]]) -> list[tuple[str, str, np.ndarray]]:
    """(a, b, matches0) of the listed pairs already in a matches file, in either order."""
    if not Path(path).exists():
        return []
    out = []
    with h5py.File(path, "r") as f:
        for a, b in pairs:
            for x, y in ((a, b), (b, a)):
                key = pair_to_key(x, y)
                if key in f:
                    out.append((x, y, f[key]["matches0"][()]))
    return out

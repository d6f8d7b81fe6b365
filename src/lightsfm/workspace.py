"""The output folder of a run: where each stage's files are, the summary and the run's state.

Every module that reads or writes ``OUT/`` asks a Workspace for the path; the names are
written once, here. ``fingerprint`` is the one way a stage tells whether its inputs
changed since it last finished (``State`` keeps those fingerprints across runs).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .errors import LightsfmError
from .io import atomic_write_text

logger = logging.getLogger(__name__)


def fingerprint(*parts: Any) -> str:
    """A hash of a stage's inputs: files by name, size and mtime, settings by value."""
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, Path):
            st = p.stat()
            p = (str(p), st.st_size, st.st_mtime_ns)
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()


class State:
    """A small JSON file of what finished, replaced atomically on every change."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, **items: Any) -> None:
        self.data.update(items)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.data))


class Workspace:
    """``OUT/``: the files lightsfm writes there, by what they are."""

    # Names also written inside sparse/, beside the models they describe (see georef.py).
    MAPPER, GEOREF, ALIGN = "mapper.json", "georef.json", "align.json"

    def __init__(self, output: Path) -> None:
        self.output = Path(output)

    database = property(lambda self: self.output / "database.db")
    summary_file = property(lambda self: self.output / "summary.json")
    state_file = property(lambda self: self.output / "state.json")
    sparse = property(lambda self: self.output / "sparse")
    # A finished run's models are replaced (register, georef) by writing sparse.new.tmp in
    # full, then moving sparse aside to sparse.old (not *.tmp: killed between the two
    # renames, it is the only whole copy) and renaming the new folder into place.
    SPARSE_NEW, SPARSE_OLD = "sparse.new.tmp", "sparse.old"
    sparse_new = property(lambda self: self.output / self.SPARSE_NEW)
    sparse_old = property(lambda self: self.output / self.SPARSE_OLD)
    mapper = property(lambda self: self.sparse / self.MAPPER)  # which mapper made the models, their checks
    points = property(lambda self: self.output / "points.ply")
    report = property(lambda self: self.output / "report.html")
    georef = property(lambda self: self.output / self.GEOREF)
    align = property(lambda self: self.output / self.ALIGN)
    export = property(lambda self: self.output / "export")
    # dense/ is COLMAP's own workspace layout (images/, sparse/, stereo/) plus these
    dense = property(lambda self: self.output / "dense")
    dense_state_file = property(lambda self: self.dense / "state.json")
    dense_summary_file = property(lambda self: self.dense / "summary.json")
    fused = property(lambda self: self.dense / "fused.ply")
    mesh = property(lambda self: self.dense / "mesh.ply")

    @staticmethod
    def tmp(path: Path) -> Path:
        """Where ``path`` is written before it is renamed into place (``remove_temporaries``
        drops what a killed run left there)."""
        return path.with_name(path.name + ".tmp")

    def model(self, k: int = 0) -> Path:
        return self.sparse / str(k)

    def state(self) -> State:
        return State(self.state_file)

    def replace_models(self, new: bool = True) -> None:
        """Puts the models written in full to ``sparse_new`` in place of ``sparse`` (which
        may be missing); ``new=False``: only removes ``sparse``. Never a half-deleted folder."""
        shutil.rmtree(self.sparse_old, ignore_errors=True)
        if self.sparse.exists():
            os.replace(self.sparse, self.sparse_old)
        if new:
            os.replace(self.sparse_new, self.sparse)
        shutil.rmtree(self.sparse_old, ignore_errors=True)  # (left over: the next run drops it)

    def remove_temporaries(self) -> None:
        """Drops what a killed run left half-written (``*.tmp``); the files they were to
        replace are intact. A run killed between the two renames of ``replace_models`` gets
        its models back."""
        if self.sparse_old.is_dir() and not self.sparse.exists():
            os.replace(self.sparse_old, self.sparse)
            logger.warning("%s: restored the models a killed run had moved aside", self.sparse)
        shutil.rmtree(self.sparse_old, ignore_errors=True)
        for stale in self.output.glob("*.tmp"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()  # (sparse.tmp is a folder)

    def summary(self) -> dict[str, Any]:
        """The last run's summary; a one-line error when there is none or it cannot be read."""
        path = self.summary_file
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise LightsfmError(f"{path}: not found; run `lightsfm reconstruct` there first") from None
        except (OSError, ValueError) as e:
            raise LightsfmError(f"{path}: cannot be read ({e})") from None

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.summary_file, json.dumps(summary, indent=2, default=str))

    def image_dir(self, given: Path | None = None) -> Path:
        """The photos of the run: ``given``, else the folder its summary names."""
        if given is not None:
            return Path(given)
        if not self.summary_file.exists():
            raise LightsfmError(f"{self.summary_file}: not found, so neither is the photo folder; give the folder")
        folder = self.summary().get("image_dir")
        if not folder:
            raise LightsfmError(f"{self.summary_file}: names no photo folder; give the folder")
        return Path(folder)

"""Crash-safe files: every output is written to a temporary file and renamed into place.

HDF5 files are never modified where they lie. New entries are buffered and, every
``flush_every_s`` seconds, written to a copy of the file which then replaces it, so a
process killed at any moment leaves either the old or the new complete file.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from urllib.parse import quote, unquote

import h5py
import numpy as np


def name_to_key(name: str) -> str:
    """HDF5 key for an image name (reversible; '/' in nested names would create groups)."""
    return quote(name, safe="")


def key_to_name(key: str) -> str:
    return unquote(key)


def pair_to_key(name0: str, name1: str) -> str:
    return f"{name_to_key(name0)}/{name_to_key(name1)}"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def h5_keys(path: Path, depth: int = 1) -> set[str]:
    """Keys of groups at ``depth`` (1: images, 2: pairs as 'a/b'); empty when the file is absent."""
    if not path.exists():
        return set()
    out: set[str] = set()
    with h5py.File(path, "r") as f:
        if depth == 1:
            out.update(f.keys())
        else:
            for k0, g in f.items():
                out.update(f"{k0}/{k1}" for k1 in g.keys())
    return out


def h5_conf(path: Path) -> str | None:
    """The configuration string a file was written with, or None when absent."""
    if not path.exists():
        return None
    with h5py.File(path, "r") as f:
        return f.attrs.get("conf")


class H5Appender:
    """Buffers new groups and commits them atomically to an HDF5 file.

    Use as a context manager; whatever was added is committed on exit, also on
    KeyboardInterrupt, so an interrupted stage resumes where it stopped.
    """

    def __init__(self, path: Path, conf: str, flush_every_s: float = 20.0) -> None:
        self.path = Path(path)
        self.conf = conf
        self.flush_every_s = flush_every_s
        self._pending: dict[str, dict[str, np.ndarray | float | int | str]] = {}
        self._last = time.monotonic()

    def __enter__(self) -> H5Appender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def add(self, key: str, data: dict[str, np.ndarray | float | int | str]) -> None:
        self._pending[key] = data
        if time.monotonic() - self._last > self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        if not self._pending and self.path.exists():
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        if self.path.exists():
            shutil.copyfile(self.path, tmp)
        elif tmp.exists():
            tmp.unlink()
        with h5py.File(tmp, "a") as f:
            f.attrs["conf"] = self.conf
            for key, data in self._pending.items():
                if key in f:
                    del f[key]
                grp = f.create_group(key)
                for k, v in data.items():
                    if isinstance(v, np.ndarray):
                        grp.create_dataset(k, data=v)
                    else:
                        grp.attrs[k] = v
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._pending.clear()

"""Crash-safe files: every output is written to a temporary file and renamed into place.

HDF5 files are never modified where they lie. New entries are buffered and, every
``flush_every_s`` seconds, written as a small part file (``<file>.parts/<n>.h5``, itself
written to a temporary name and renamed); when the stage ends the parts are merged into a
copy of the file which then replaces it. A process killed at any moment leaves the old
file and complete parts, which the next run merges first. Each entry is written twice in
all (its part, then the merged file), whatever the number of flushes: no flush rewrites
what earlier flushes wrote.
"""

from __future__ import annotations

import errno
import fcntl
import io
import logging
import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, unquote

import h5py
import numpy as np

from .errors import LightsfmError

logger = logging.getLogger(__name__)

MIN_FREE_BYTES = 1 << 20  # less than this left after pycolmap wrote: it may have run out


def name_to_key(name: str) -> str:
    """HDF5 key for an image name (reversible; '/' in nested names would create groups)."""
    return quote(name, safe="")


def key_to_name(key: str) -> str:
    return unquote(key)


def pair_to_key(name0: str, name1: str) -> str:
    return f"{name_to_key(name0)}/{name_to_key(name1)}"


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Writes ``path`` through a temporary file renamed into place; on failure (a full disk)
    the old file stays as it was, no temporary is left, and the OSError names ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def incompletely_written(files: list[Path]) -> Path | None:
    """The first of the files pycolmap just wrote that cannot be trusted, or None.

    pycolmap (COLMAP's C++ streams) does not report a failed write: a full disk leaves a
    truncated file without a word, and reading one back can loop for ever. So a file that
    stopped at the file-size limit, or any file when the disk has no room left after the
    write (a write that ran out of room leaves the disk full), is not trusted.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    for f in files:
        if soft != resource.RLIM_INFINITY and Path(f).stat().st_size >= soft:
            return Path(f)
    for f in files:
        st = os.statvfs(Path(f).parent)
        if (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize < MIN_FREE_BYTES:
            return Path(f)
    return None


def check_written(files: list[Path]) -> None:
    """Raises OSError(ENOSPC) naming the file when ``incompletely_written`` finds one."""
    bad = incompletely_written(files)
    if bad is not None:
        raise OSError(errno.ENOSPC, "No space left on device", str(bad))


@contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``output/.lock`` while a run writes there.

    A second run on the same folder stops at once with one line instead of interleaving its
    writes with the first. The lock is flock(2): the OS drops it when the process ends, even
    when it is killed, so it is never left stuck (the file itself may stay; it means nothing).
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    fd = os.open(output / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise LightsfmError(
                f"{output}: another lightsfm run (pid {pid}) is writing to this output folder; "
                "wait for it to finish or choose another -o"
            ) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            logger.warning("%s: file locks unsupported here; not protected against a second run", output)
        try:  # who holds it, for the message above; best effort (the disk may be full)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


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


def parts_dir(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".parts")


def _write_groups(f: h5py.File, entries: dict[str, dict[str, np.ndarray | float | int | str]]) -> None:
    for key, data in entries.items():
        if key in f:
            del f[key]
        grp = f.create_group(key)
        for k, v in data.items():
            if isinstance(v, np.ndarray):
                grp.create_dataset(k, data=v)
            else:
                grp.attrs[k] = v


def _h5_bytes(fill, base: bytes = b"") -> memoryview:
    """An HDF5 file built in memory (from ``base``) by ``fill(file)``: a full disk then
    surfaces as a plain OSError when it is written out. (HDF5 writing to disk itself
    segfaulted on a failed write.)"""
    buf = io.BytesIO(base)
    with h5py.File(buf, "a") as f:
        fill(f)
    return buf.getbuffer()


def _merge_group(src: h5py.Group, dst: h5py.Group) -> None:
    """Copies the entries of ``src`` into ``dst``, replacing entries of the same key. An
    entry is a group of datasets (an image); a group of groups (the pairs of an image) is
    merged entry by entry, so the pairs already in ``dst`` stay."""
    for key, obj in src.items():
        nested = isinstance(obj, h5py.Group) and any(isinstance(c, h5py.Group) for c in obj.values())
        if nested and isinstance(dst.get(key), h5py.Group):
            _merge_group(obj, dst[key])
            continue
        if key in dst:
            del dst[key]
        src.copy(obj, dst, name=key)


def merge_parts(path: Path) -> None:
    """Merges the part files of ``path`` (see H5Appender) into it, atomically, then drops them."""
    path = Path(path)
    folder = parts_dir(path)
    parts = sorted(folder.glob("*.h5")) if folder.is_dir() else []
    if parts:

        def fill(f: h5py.File) -> None:
            for part in parts:
                with h5py.File(part, "r") as p:
                    f.attrs["conf"] = p.attrs["conf"]
                    _merge_group(p, f)

        atomic_write_bytes(path, _h5_bytes(fill, path.read_bytes() if path.exists() else b""))
    if folder.is_dir():
        for leftover in folder.iterdir():  # merged parts, and temporaries a kill left
            leftover.unlink()
        folder.rmdir()


class H5Appender:
    """Buffers new groups and commits them crash-safely to an HDF5 file.

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
        merge_parts(self.path)

    def add(self, key: str, data: dict[str, np.ndarray | float | int | str]) -> None:
        self._pending[key] = data
        if time.monotonic() - self._last > self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Writes what was added since the last flush as one part file."""
        self._last = time.monotonic()
        if not self._pending and self.path.exists():
            return

        def fill(f: h5py.File) -> None:
            f.attrs["conf"] = self.conf
            _write_groups(f, self._pending)

        if not self.path.exists() and not self._pending:  # an empty but valid file
            atomic_write_bytes(self.path, _h5_bytes(fill))
            return
        folder = parts_dir(self.path)
        folder.mkdir(exist_ok=True)
        number = 1 + max((int(p.stem) for p in folder.glob("*.h5") if p.stem.isdigit()), default=0)
        atomic_write_bytes(folder / f"{number:06d}.h5", _h5_bytes(fill))
        self._pending.clear()

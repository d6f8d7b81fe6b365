"""Runs that meet a hostile environment (issue 16): a second run on the same output folder,
a full disk. Each ends in one line, leaves no broken file, and a later run picks up."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

import h5py
import pytest

from conftest import TEMPLE

pytestmark = pytest.mark.data

FAST = ["--preset", "fast", "--max-keypoints", "512", "--no-report"]


def _cmd(images, out, *extra):
    return [sys.executable, "-m", "lightsfm.cli", "reconstruct", str(images), "-o", str(out), *FAST, *extra]


def _env():
    return {**os.environ, "TQDM_DISABLE": "1"}


def _run(images, out, fsize_limit: int | None = None):
    def limit():
        # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as a full disk
        # fails with ENOSPC (both end in the same one-line error)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, fsize_limit))

    return subprocess.run(
        _cmd(images, out),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
        preexec_fn=limit if fsize_limit else None,
    )


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    for i in range(1, 9):
        (d / f"templeSR{i:04d}.png").symlink_to(TEMPLE / f"templeSR{i:04d}.png")
    return d


def _no_broken_files(out):
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name], list(out.iterdir())
    for h5 in out.glob("*.h5"):
        with h5py.File(h5, "r") as f:
            for g in f.values():
                list(g.keys())


def test_second_run_on_the_same_folder_is_refused_and_a_killed_run_leaves_no_stuck_lock(images, tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(_cmd(images, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    try:
        deadline = time.monotonic() + 120
        while (
            not (out / ".lock").exists() or (out / ".lock").read_text().strip() != str(first.pid)
        ) and time.monotonic() < deadline:
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        t = time.monotonic()
        second = _run(images, out)
        assert time.monotonic() - t < 30  # at once: no waiting, no work (measured ~3 s, the imports)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"error: {out}: another lightsfm run (pid {first.pid}) is writing to this output folder; "
            "wait for it to finish or choose another -o"
        ]
        # a run on another folder meanwhile is not held up: it gets its own lock
        other = subprocess.Popen(
            _cmd(images, tmp_path / "other"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
        )
        lock = tmp_path / "other" / ".lock"
        while other.poll() is None and not (lock.exists() and lock.read_text().strip() == str(other.pid)):
            time.sleep(0.05)
        assert other.poll() is None, other.communicate()
        other.kill()
        other.wait()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # killed, the first run holds nothing: the next process takes the lock at once
    take = subprocess.run(
        [sys.executable, "-c", f"from lightsfm.io import output_lock\nwith output_lock({str(out)!r}): print('locked')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert take.stdout.strip() == "locked", take.stderr


def test_full_disk_ends_in_one_line_leaves_no_broken_file_and_resumes(images, tmp_path):
    out = tmp_path / "out"
    # 1. no room for the first features file (turn detection's cheap features, ~0.5 MB here)
    r = _run(images, out, fsize_limit=100_000)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}/orientation-features.h5"), r.stderr
    assert "cannot be written (File too large)" in lines[0] and "run again" in lines[0]
    _no_broken_files(out)
    assert not list(out.glob("*features*.h5")) and not (out / "orientation.json").exists()

    # 2. space freed: the same command finishes
    r = _run(images, out)
    assert r.returncode in (0, 3), r.stderr
    assert "images registered" in r.stdout

    # 3. no room for COLMAP's database (SQLite): one line, the finished features and matches intact
    (out / "database.db").unlink()
    (out / "state.json").unlink()
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*.h5")}
    r = _run(images, out, fsize_limit=60_000)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}/database.db: cannot be written"), r.stderr
    assert not list(out.glob("database.db*"))
    _no_broken_files(out)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.h5")} == kept

    # 4. and resumes from them
    r = _run(images, out)
    assert r.returncode in (0, 3), r.stderr
    assert "extract 0.0s" in r.stdout and "match 0.0s" in r.stdout


def test_a_model_that_cannot_be_written_completely_is_an_error(tmp_path):
    """pycolmap writes a truncated points3D.bin on a full disk without a word (and reading it
    back loops for ever): write_model says so instead."""
    code = f"""
import errno, resource, cv2, pycolmap
import numpy as np
from pathlib import Path
from lightsfm.mapping import write_model
rec = pycolmap.Reconstruction()
rec.add_camera(pycolmap.Camera(model="SIMPLE_PINHOLE", width=640, height=480, params=[500, 320, 240], camera_id=1))
for i in range(1, 200):
    rec.add_point3D(np.array([i, 0.0, 1.0]), pycolmap.Track(), np.zeros(3, np.uint8))
for name, limit in (("roomy", resource.RLIM_INFINITY), ("full", 2000)):
    d = Path({str(tmp_path)!r}) / name
    d.mkdir()
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        write_model(rec, d)
        print(name, "written")
    except OSError as e:
        print(name, "refused:", e.errno == errno.ENOSPC, e.filename)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = r.stdout.splitlines()
    assert lines[0] == "roomy written", r.stdout + r.stderr
    assert lines[1].startswith("full refused: True"), r.stdout + r.stderr
    assert lines[1].endswith(("full/points3D.bin", "full/points.ply")), lines[1]  # the files cut short

"""SIGKILL at random moments, then re-run: the run finishes, reuses finished work, reads no broken file."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import h5py
import pytest

from conftest import TEMPLE

pytestmark = pytest.mark.data


def _start(images, out):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lightsfm.cli",
            "reconstruct",
            str(images),
            "-o",
            str(out),
            "--max-keypoints",
            "512",
            "--no-report",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )


def test_sigkill_then_resume(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(1, 9):
        (images / f"templeSR{i:04d}.png").symlink_to(TEMPLE / f"templeSR{i:04d}.png")
    out = tmp_path / "out"
    rng = random.Random(0)
    for _ in range(4):  # killed somewhere in start-up, extraction, matching or mapping
        p = _start(images, out)
        time.sleep(rng.uniform(3.0, 12.0))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()
        for h5 in out.glob("*.h5"):  # whatever is there is complete and readable
            with h5py.File(h5, "r") as f:
                for g in f.values():
                    list(g.keys())
    p = _start(images, out)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode in (0, 3), stderr
    assert "images registered" in stdout
    assert not list(out.glob("*.tmp"))
    # a further run recomputes nothing
    mtimes = {f: f.stat().st_mtime_ns for f in out.glob("*.h5")}
    p = _start(images, out)
    stdout, _ = p.communicate(timeout=600)
    assert {f: f.stat().st_mtime_ns for f in out.glob("*.h5")} == mtimes
    assert "extract 0.0s" in stdout and "match 0.0s" in stdout

"""SIGKILL in every stage, then re-run: the run finishes with the result of an uninterrupted run,
reuses finished work and reads no broken file."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import DATA, TEMPLE

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


# What each stage leaves on disk while it runs: the kill waits for it, then a random moment.
STAGE_MARKERS = {
    "extract": "features-*.h5",
    "match": "matches-*.h5",
    "verify": "database.db.tmp",
    "map": "sparse.mapper",
}


def _poses(out):
    import pycolmap

    rec = pycolmap.Reconstruction(out / "sparse" / "0")
    return {im.name: im.cam_from_world() for im in rec.images.values() if im.has_pose}


def test_sigkill_in_every_stage_then_resume_gives_the_uninterrupted_result(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(1, 9):
        (images / f"templeSR{i:04d}.png").symlink_to(TEMPLE / f"templeSR{i:04d}.png")
    ref = tmp_path / "reference"
    p = _start(images, ref)
    _, stderr = p.communicate(timeout=600)
    assert p.returncode in (0, 3), stderr

    out = tmp_path / "out"
    rng = random.Random(0)
    killed_in = []
    for stage, marker in STAGE_MARKERS.items():
        p = _start(images, out)
        while p.poll() is None and not list(out.glob(marker)):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed_in.append(stage)
        p.wait()
        for h5 in out.glob("*.h5"):  # whatever is there is complete and readable
            with h5py.File(h5, "r") as f:
                for g in f.values():
                    list(g.keys())
    assert {"extract", "match"} <= set(killed_in), killed_in  # the others are quick; often hit too

    p = _start(images, out)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode in (0, 3), stderr
    assert "images registered" in stdout
    assert not list(out.glob("*.tmp")) and not list(out.glob("sparse.*"))
    # the same model as the run that was never interrupted: same images, same poses
    a, b = _poses(ref), _poses(out)
    assert set(a) == set(b)
    for name in a:
        assert np.allclose(a[name].matrix(), b[name].matrix(), atol=1e-9), name

    # a further run recomputes nothing
    mtimes = {f: f.stat().st_mtime_ns for f in out.glob("*.h5")}
    p = _start(images, out)
    stdout, _ = p.communicate(timeout=600)
    assert {f: f.stat().st_mtime_ns for f in out.glob("*.h5")} == mtimes
    assert "extract 0.0s" in stdout and "match 0.0s" in stdout

    # the dense stage: killed in each of its steps, resumed, the same depth maps and cloud
    ref_dense = _dense(ref)
    _, stderr = ref_dense.communicate(timeout=600)
    assert ref_dense.returncode == 0, stderr
    killed_in = []
    for step, marker in DENSE_MARKERS.items():
        p = _dense(out)
        while p.poll() is None and not list(out.glob(marker)):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.2))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed_in.append(step)
        p.wait()
    assert {"undistort", "depth"} <= set(killed_in), killed_in
    p = _dense(out)
    stdout, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr
    assert not list((out / "dense").rglob("*.tmp*")), list((out / "dense").rglob("*.tmp*"))
    for f in sorted((ref / "dense" / "stereo" / "depth_maps").glob("*.bin")):
        assert f.read_bytes() == (out / "dense" / "stereo" / "depth_maps" / f.name).read_bytes(), f.name
    assert _ply_points(out) == _ply_points(ref) > 0


# What each step of the dense stage leaves on disk while it runs.
DENSE_MARKERS = {
    "undistort": "dense/inputs",
    "depth": "dense/stereo/depth_maps/*.photometric.bin",
    "consistency": "dense/stereo/depth_maps/*.geometric.bin",
}


def _dense(out):
    return subprocess.Popen(
        [sys.executable, "-m", "lightsfm.cli", "dense", str(out), "--max-size", "240", "--num-depths", "24"]
        + ["--iterations", "1", "--mesher", "none"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )


def _ply_points(out):
    from lightsfm.dense import read_ply_points

    return len(read_ply_points(out / "dense" / "fused.ply")[0])


# Two small scenes in the IMC layout: 5 photos each, at most 400 px, with their ground-truth rows.
IMC_SCENES = {
    ("middlebury", "templeSparseRing"): [f"templeSR{i:04d}.png" for i in range(1, 6)],
    ("strecha", "fountain-P11"): [f"{i:04d}.jpg" for i in range(5)],
}


def _imc_data(root: Path) -> None:
    from PIL import Image

    rows = (DATA / "train_labels.csv").read_text().splitlines()
    keep = [rows[0]]
    for (ds, scene), names in IMC_SCENES.items():
        folder = root / ds / scene / "images"
        folder.mkdir(parents=True)
        for name in names:
            with Image.open(DATA / ds / scene / "images" / name) as im:
                im.thumbnail((400, 400))
                im.save(folder / name, quality=95)
            keep += [r for r in rows if r.split(",")[2] == f"{ds}/{scene}/images/{name}"]
    (root / "train_labels.csv").write_text("\n".join(keep) + "\n")


def _imc(data: Path, out: Path, toml: Path) -> subprocess.Popen:
    # its own process group: the kill takes the run and anything it started
    return subprocess.Popen(
        [sys.executable, "-m", "lightsfm.cli", "imc", str(data), "-o", str(out), "--preset", "fast"]
        + ["--config", str(toml)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
        start_new_session=True,
    )


def test_sigkill_during_the_second_imc_scene_then_resume(tmp_path):
    """imc killed (the whole process group) while its second scene runs: the re-run leaves the
    finished scene as it was and writes the submission of a run that was never interrupted."""
    from lightsfm.evaluate import is_placeholder, read_poses

    data = tmp_path / "data"
    _imc_data(data)
    toml = tmp_path / "quick.toml"  # quick: no turn detection (the photos are upright), 1024 keypoints
    toml.write_text("[features]\nmax_keypoints = 1024\nupright = false\n")
    ref = tmp_path / "reference"
    p = _imc(data, ref, toml)
    _, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr

    out = tmp_path / "out"
    first, second = (out / ds / scene for ds, scene in IMC_SCENES)
    p = _imc(data, out, toml)
    while p.poll() is None and not list(second.glob("features-*.h5")):
        time.sleep(0.005)
    time.sleep(random.Random(0).uniform(0.0, 0.3))
    assert p.poll() is None, "the run ended before it could be killed"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert (first / "summary.json").exists() and not (second / "summary.json").exists()
    assert not (out / "submission.csv").exists()
    # what extraction, matching and mapping wrote (a re-run rewrites the report and summary, takes
    # the lock, and the report's reading of database.db bumps SQLite's change counter)
    rewritten = {"report.html", "summary.json", ".lock", "database.db"}
    done = sorted(f for f in first.rglob("*") if f.is_file() and f.name not in rewritten)
    assert {"state.json", "points.ply", "images.bin"} <= {f.name for f in done}, done
    mtimes = {f: f.stat().st_mtime_ns for f in done}

    p = _imc(data, out, toml)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    # the finished scene is not redone: its files untouched, nothing extracted, matched, verified or mapped
    assert {f: f.stat().st_mtime_ns for f in done} == mtimes
    timings = json.loads((first / "summary.json").read_text())["timings_s"]
    # (a few ms of bookkeeping: opening the files to see that every item is done)
    assert timings["extract"] < 0.5 and timings["match"] < 0.5 and "verify" not in timings and "map" not in timings
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("sparse.*"))
    # the same submission as the run that was never interrupted: same images registered, same poses
    a, b = read_poses(ref / "submission.csv"), read_poses(out / "submission.csv")
    assert a.keys() == b.keys() == set(IMC_SCENES)
    for key in a:
        assert a[key].keys() == b[key].keys()
        assert {n for n, q in a[key].items() if not is_placeholder(q)} == {
            n for n, q in b[key].items() if not is_placeholder(q)
        }
        assert sum(not is_placeholder(q) for q in a[key].values()) >= 3, key
        for name, q in a[key].items():
            assert np.allclose(q.R, b[key][name].R, atol=1e-6) and np.allclose(q.t, b[key][name].t, atol=1e-6), name
    assert (ref / "submission.csv").read_bytes() == (out / "submission.csv").read_bytes()  # one mapping thread

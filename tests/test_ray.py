"""lightsfm on a real Ray cluster (no mocks): two one-CPU nodes on loopback, started here
with ``ray start`` and shared by every test of this file.

The same photos give bit-identical features, matches, verified geometries and poses under
``ray`` and ``local`` (at the same torch threads per item); a worker killed mid-run is
restarted and the result is unchanged; a run stopped under one executor resumes under the
other, redoing only what is missing; a dead address is a one-line error.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import ray  # a dev dependency: its absence must fail here, not skip

from conftest import DEMO
from lightsfm import colmap, executor, extract, pipeline, verify
from lightsfm.errors import LightsfmError
from lightsfm.images import read_infos
from lightsfm.io import name_to_key
from lightsfm.pairs import read_pairs

PHOTOS = sorted(p.name for p in DEMO.iterdir())[:4]
# Tiny and quick; turn detection on; every pair weak, so the hybrid's LightGlue waves run on
# the workers too. One torch thread per item in both executors: the same count, the same bits.
CONF = {
    "features": {"resize_max": 256, "max_keypoints": 256, "upright": True},
    "matching": {"weak_below": 10_000},
    "run": {"threads": 1},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ok, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > end:
            raise TimeoutError(f"Ray test cluster: {what} not ready after {timeout:.0f} s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster():
    """(address, executor joined to it): a head and a second node, one CPU each."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # short: Ray's socket paths under it must fit in 107 characters
    tmp = tempfile.mkdtemp(prefix="lsray", dir="/tmp")
    # No token: this process would need it in its environment before Ray was imported (Ray
    # reads the mode once); a cluster of the test's own, on a free port, for the test's time.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    common = ["--num-cpus", "1", "--temp-dir", tmp, "--disable-usage-stats", "--block"]
    procs: list[subprocess.Popen] = []

    def start(args: list[str], log: str) -> None:
        with open(Path(tmp) / log, "w") as out:  # (--block: stopping this process stops its node)
            procs.append(subprocess.Popen([ray_cli, "start", *args, *common], env=env, stdout=out, stderr=out))

    def answers() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"ray start failed: {(Path(tmp) / 'head.log').read_text()[-2000:]}") from None
            return False

    ex = None
    try:
        start(["--head", "--port", str(port), "--include-dashboard", "false"], "head.log")
        _wait("head", answers)
        start(["--address", address], "node.log")
        ex = executor.get("ray", address=address)
        _wait("second node", lambda: sum(n["Alive"] for n in ray.nodes()) == 2)
        assert ray.cluster_resources()["CPU"] == 2
        yield address, ex
    finally:
        if ex is not None:
            ex.close()
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The reference: the pipeline on this process (``local``), one thread per item."""
    out = tmp_path_factory.mktemp("local")
    return out, pipeline.reconstruct(DEMO, out, CONF, image_names=PHOTOS)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file by its path, and every attribute."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:

        def visit(name: str, obj) -> None:
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
            for k, v in obj.attrs.items():
                out[f"{name}@{k}"] = np.asarray(v)

        f.visititems(visit)
    return out


def _assert_same_h5(a: Path, b: Path) -> None:
    x, y = _arrays(a), _arrays(b)
    assert x.keys() == y.keys()
    for k in x:
        assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), k


def _assert_same_run(out_a: Path, res_a: pipeline.Result, out_b: Path, res_b: pipeline.Result) -> None:
    # turn detection: the same turns, and the same cheap inliers of every pair (for pre-matching)
    assert (out_a / "orientation.json").read_text() == (out_b / "orientation.json").read_text()
    for kind in ("features", "matches"):
        assert res_a.stats["files"][kind] == res_b.stats["files"][kind]  # the executor is in no file name
        _assert_same_h5(out_a / res_a.stats["files"][kind], out_b / res_b.stats["files"][kind])
    geoms_a = colmap.matches_and_inliers(out_a / "database.db")
    geoms_b = colmap.matches_and_inliers(out_b / "database.db")
    assert geoms_a.keys() == geoms_b.keys()
    for pair, (m, inl) in geoms_a.items():
        assert np.array_equal(m, geoms_b[pair][0]) and np.array_equal(inl, geoms_b[pair][1]), pair
    poses_a = colmap.camera_poses(res_a.models[0])
    poses_b = colmap.camera_poses(res_b.models[0])
    assert len(res_a.models) == len(res_b.models) and poses_a.keys() == poses_b.keys()
    for name, (r, c) in poses_a.items():
        assert np.array_equal(r, poses_b[name][0]) and np.array_equal(c, poses_b[name][1]), name


class _Counting:
    """An executor passed through, noting how many items each call was given."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []

    def map(self, task, items, desc="", unit="item"):
        items = list(items)
        self.calls.append((type(task).__name__, len(items)))
        return self.inner.map(task, items, desc, unit)

    def items(self, kind: str) -> int:
        return sum(n for k, n in self.calls if k == kind)


class _Stop(Exception):
    pass


class _StopAfter(_Counting):
    """Stops the run (as a kill or Ctrl-C would) after ``n`` results of a ``kind`` of task."""

    def __init__(self, inner, kind: str, n: int) -> None:
        super().__init__(inner)
        self.kind, self.left = kind, n

    def map(self, task, items, desc="", unit="item"):
        for result in super().map(task, items, desc, unit):
            if type(task).__name__ == self.kind:
                if self.left == 0:
                    raise _Stop
                self.left -= 1
            yield result


def test_ray_gives_the_same_bits_as_local(cluster, local_run, tmp_path):
    """``run.executor = ray`` (what --executor ray sets): the same features, matches,
    verified geometries, registered images and poses, to the bit."""
    address, ex = cluster
    ex.stop_workers()  # (the cluster's two CPUs go to the workers of the executor built here)
    out_l, res_l = local_run
    assert res_l.models and len(colmap.camera_poses(res_l.models[0])) >= 3  # a real model to compare
    conf = {**CONF, "run": {**CONF["run"], "executor": "ray", "ray_address": address}}
    res_r = pipeline.reconstruct(DEMO, tmp_path, conf, image_names=PHOTOS)
    _assert_same_run(out_l, res_l, tmp_path, res_r)


def test_colmap_verification_on_ray_gives_the_local_geometries(cluster, local_run, tmp_path):
    """COLMAP's estimator (planar and calibrated configurations, the cameras sent along) per
    pair on the workers: the same database as in this process."""
    _, ex = cluster
    out_l, res_l = local_run
    infos, _ = read_infos(DEMO, PHOTOS)
    pairs = read_pairs(out_l / res_l.stats["files"]["pairs"])
    files = [out_l / res_l.stats["files"][k] for k in ("features", "matches")]
    conf = {"method": "colmap"}
    stats = {}
    for name, run in (("local", executor.LocalExecutor(threads=1)), ("ray", ex)):
        stats[name] = verify.main(infos, pairs, *files, tmp_path / f"{name}.db", conf, run)
    assert stats["local"] == stats["ray"] and stats["local"]["verified"] > 0
    geoms_l, geoms_r = (colmap.matches_and_inliers(tmp_path / f"{n}.db") for n in ("local", "ray"))
    assert geoms_l.keys() == geoms_r.keys()
    for pair, (m, inl) in geoms_l.items():
        assert np.array_equal(m, geoms_r[pair][0]) and np.array_equal(inl, geoms_r[pair][1]), pair


def test_a_worker_killed_mid_run_is_restarted_and_the_result_is_unchanged(cluster, local_run):
    """SIGKILL of a worker's process after the first result: Ray restarts it and runs its
    unfinished batches again; the features are those of the local run, to the bit."""
    _, ex = cluster
    out_l, res_l = local_run
    pids = ex.pids()  # (asked before the run: a worker answers only between batches)

    class WithPid:  # (defined here, so Ray sends it by value) which process computed each item
        def __init__(self, task) -> None:
            self.task = task

        def __call__(self, item):
            return os.getpid(), self.task(item)

    task = WithPid(extract.ExtractTask(DEMO, CONF["features"]))
    photos = PHOTOS * 2  # (enough that the other worker still has work when the first result is in)
    results = []
    for result in ex.map(task, [(name, 0) for name in photos]):
        if not results:  # the worker that did not compute it: busy with its items
            victim = pids.index(result[0]) ^ 1
            os.kill(pids[victim], signal.SIGKILL)
        results.append(result)
    now = ex.pids()
    assert now[victim] != pids[victim] and now[victim ^ 1] == pids[victim ^ 1]  # restarted, in a new process
    assert now[victim] in {pid for pid, _ in results}  # which ran what the killed one had not finished
    with h5py.File(out_l / res_l.stats["files"]["features"], "r") as f:
        for (_, (name, feats)), expected in zip(results, photos, strict=True):
            assert name == expected
            group = f[name_to_key(name)]
            for k in ("keypoints", "scores", "descriptors", "image_size"):
                assert np.array_equal(group[k][()], feats[k]), (name, k)
            assert group.attrs["scale"] == feats["scale"] and group.attrs["rotation"] == feats["rotation"]


def test_a_run_stopped_under_ray_resumes_under_local(cluster, local_run, tmp_path):
    _, ex = cluster
    out_l, res_l = local_run
    with pytest.raises(_Stop):  # two photos extracted, then the run stops
        pipeline.reconstruct(DEMO, tmp_path, CONF, PHOTOS, executor=_StopAfter(ex, "ExtractTask", 2))
    again = _Counting(executor.LocalExecutor(threads=1))
    res = pipeline.reconstruct(DEMO, tmp_path, CONF, PHOTOS, executor=again)
    assert again.items("CheapTask") == 0  # turn detection had finished
    assert again.items("ExtractTask") == len(PHOTOS) - 2  # only the missing photos
    _assert_same_run(out_l, res_l, tmp_path, res)


def test_a_run_stopped_under_local_resumes_under_ray(cluster, local_run, tmp_path):
    _, ex = cluster
    out_l, res_l = local_run
    pairs = len(PHOTOS) * (len(PHOTOS) - 1) // 2
    # every photo, every pair's first pass (all weak) and LightGlue on two pairs, then it stops
    with pytest.raises(_Stop):
        stop = _StopAfter(executor.LocalExecutor(1), "MatchTask", pairs + 2)
        pipeline.reconstruct(DEMO, tmp_path, CONF, PHOTOS, executor=stop)
    again = _Counting(ex)
    res = pipeline.reconstruct(DEMO, tmp_path, CONF, PHOTOS, executor=again)
    assert again.items("CheapTask") == again.items("ExtractTask") == 0
    assert again.items("MatchTask") == 2 * (pairs - 2)  # the two finished pairs are not matched again
    _assert_same_run(out_l, res_l, tmp_path, res)


def test_a_dead_cluster_is_one_line_naming_the_address(tmp_path):
    from typer.testing import CliRunner

    from lightsfm import cli

    dead = f"127.0.0.1:{_free_port()}"
    t = time.monotonic()
    with pytest.raises(LightsfmError, match=dead) as e:
        executor.get("ray", address=dead)
    assert "\n" not in str(e.value) and time.monotonic() - t < 30
    result = CliRunner().invoke(
        cli.app, ["extract", str(DEMO), "-o", str(tmp_path / "out"), "--executor", "ray", "--ray-address", dead]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Ray cluster") and dead in lines[0], result.output


def test_the_local_executor_imports_no_ray():
    code = (
        "import sys; from lightsfm import cli, executor, pipeline; executor.from_conf(None); "
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

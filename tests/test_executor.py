"""The local executor: per-photo work side by side, the rest one item after the other."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DEMO
from lightsfm import config, executor, extract, verify

PHOTOS = sorted(p.name for p in DEMO.iterdir())[:4]


class _Where:
    """Records which thread, and which copy of the task, ran each item."""

    def __init__(self, side_by_side: bool) -> None:
        self.side_by_side = side_by_side

    def __call__(self, item: int) -> tuple[int, str, int, int]:
        time.sleep(0.05)  # long enough for the other worker to take the next item meanwhile
        if item == 99:
            raise ValueError("item 99 is bad")
        return item, threading.current_thread().name, id(self), torch.get_num_threads()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="side by side needs two cores")
def test_per_photo_tasks_run_side_by_side_in_order_each_thread_with_its_own_copy():
    before = torch.get_num_threads()
    out = list(executor.LocalExecutor().map(_Where(True), range(8)))
    assert [o[0] for o in out] == list(range(8))  # in item order, whoever finished first
    assert len({o[1] for o in out}) >= 2 and threading.current_thread().name not in {o[1] for o in out}
    assert len({o[2] for o in out}) == len({o[1] for o in out})  # one copy of the task per thread
    assert {o[3] for o in out} == {1}  # the cores shared out: one torch thread each
    assert torch.get_num_threads() == before  # and put back afterwards

    rest = list(executor.LocalExecutor().map(_Where(False), range(3)))
    assert {o[1] for o in rest} == {threading.current_thread().name}  # not per-photo: here, in order
    one = list(executor.LocalExecutor(workers=1).map(_Where(True), range(3)))
    assert {o[1] for o in one} == {threading.current_thread().name}


def test_an_item_that_raises_raises_its_own_error_here():
    with pytest.raises(ValueError, match="item 99 is bad"):
        list(executor.LocalExecutor(workers=2).map(_Where(True), [1, 2, 99, 3, 4, 5]))


def test_photos_extracted_side_by_side_equal_those_extracted_one_by_one_on_one_thread():
    conf = {**config.defaults()["features"], "resize_max": 320, "max_keypoints": 256}
    items = [(n, 0) for n in PHOTOS]
    task = extract.ExtractTask(DEMO, conf)
    apart = list(executor.LocalExecutor(threads=1, workers=2).map(task, items))
    alone = list(executor.LocalExecutor(threads=1, workers=1).map(task, items))
    assert [n for n, _ in apart] == PHOTOS
    for (_, a), (_, b) in zip(apart, alone, strict=True):
        for key in ("keypoints", "scores", "descriptors"):
            assert np.array_equal(a[key], b[key]), key


def test_the_run_settings_choose_the_workers():
    ex = executor.from_conf({"workers": 1, "threads": 2})
    assert (ex.workers, ex.threads) == (1, 2)
    assert executor.from_conf(None).workers == 0  # default: one per core


def test_cheap_pair_work_side_by_side_equals_one_pair_at_a_time(tmp_path):
    """Mutual nearest neighbours (with the quick check) and retrieval's cheap match check run
    one pair per core at once; LightGlue stays one pair at a time."""
    from lightsfm import match
    from lightsfm.pairs import retrieval

    conf = {**config.defaults()["features"], "resize_max": 320, "max_keypoints": 256, "upright": False}
    feature_file, _ = extract.main(DEMO, PHOTOS, tmp_path, conf)
    pairs = [(a, b) for i, a in enumerate(PHOTOS) for b in PHOTOS[i + 1 :]]
    mnn = match.MatchTask(feature_file, "mnn", config.defaults()["matching"], check=1.0)
    assert mnn.side_by_side and not mnn.using("lightglue").side_by_side
    apart = list(executor.LocalExecutor(threads=1, workers=2).map(mnn, pairs))
    alone = list(executor.LocalExecutor(threads=1, workers=1).map(mnn, pairs))
    for x, y in zip(apart, alone, strict=True):
        assert x[:2] == y[:2] and x[3] == y[3] and np.array_equal(x[2]["matches0"], y[2]["matches0"])
    check = retrieval.CheapCheck(feature_file, PHOTOS, 128)
    sim = np.ones((4, 4)) - np.eye(4)
    runs = [executor.LocalExecutor(threads=1, workers=w).map for w in (2, 1)]
    a, b = (retrieval.checked_inliers(sim, check, 3, 1, 8, run) for run in runs)
    assert np.array_equal(a, b) and (a[np.triu_indices(4, 1)] > -1).all()
    # verification too: each pair's RANSAC seeded on its own, the same inliers either way
    match_file = match.main(pairs, feature_file, tmp_path, {"name": "mnn"})
    ransac = verify.VerifyTask(feature_file, match_file, config.defaults()["verify"])
    assert ransac.side_by_side
    apart, alone = (list(executor.LocalExecutor(threads=1, workers=w).map(ransac, pairs)) for w in (2, 1))
    verified = 0
    for x, y in zip(apart, alone, strict=True):
        assert x[:2] == y[:2] and np.array_equal(x[2], y[2]) and (x[3] is None) == (y[3] is None)
        if x[3] is not None:
            assert np.array_equal(x[3].inlier_matches, y[3].inlier_matches)
            verified += 1
    assert verified > 0


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc (Linux)")
def test_freed_heap_is_handed_back_once_the_process_has_grown(monkeypatch):
    from lightsfm import device

    device.release_freed_memory()  # (earlier tests' freed heap: reused below, it would not show as growth)
    monkeypatch.setattr(device, "_rss_after_trim", device.rss_mb())
    # ~400 MB in 64 KB blocks (glibc's heap, below its mmap threshold); every 8th kept, so
    # the freed ones are holes the heap cannot shrink past
    blocks = [np.ones(8192) for _ in range(6400)]
    kept = blocks[::8]
    del blocks
    grown = device.rss_mb()
    assert grown > device._rss_after_trim + 300
    device.release_freed_memory_if_grown(10_000)  # grown, but less than asked: nothing to do
    assert device.rss_mb() > grown - 50
    device.release_freed_memory_if_grown(128)
    assert device.rss_mb() < grown - 200, "the freed blocks stayed resident"
    assert device._rss_after_trim == pytest.approx(device.rss_mb(), abs=20)
    before = device.rss_mb()
    device.release_freed_memory_if_grown(128)  # not grown since: nothing to do
    assert device._rss_after_trim <= before
    del kept


class _Denormal:
    """Products of denormal floats (1e-39 in float32): zeros where they are flushed. (Checked
    with numpy in the test's own thread: a flushed thread would read the products as zero too.)"""

    def __init__(self, side_by_side: bool) -> None:
        # (made here, unflushed: in a flushed thread, even writing 1e-39 gives zero)
        self.side_by_side, self.tiny = side_by_side, torch.full((1000,), 1e-39)

    def __call__(self, item: int) -> np.ndarray:
        return (self.tiny * 2).numpy()  # 1000: computed in the calling thread


def test_work_items_run_with_denormals_flushed_the_callers_thread_is_left_as_it_was():
    """LightGlue's attention runs ~1.4× faster with denormals flushed (lightsfm.device)."""
    assert (_Denormal(False)(0) > 0).all()  # here: IEEE arithmetic
    for out in executor.LocalExecutor(workers=1).map(_Denormal(False), range(3)):
        assert not out.any()
    for out in executor.LocalExecutor(workers=2).map(_Denormal(True), range(4)):
        assert not out.any()
    assert (_Denormal(False)(0) > 0).all()  # and again afterwards


def test_torchs_own_threads_flush_denormals_when_lightsfm_was_imported_first():
    code = (
        "import numpy as np, torch, lightsfm.device as d\n"
        "torch.set_num_threads(2)\n"
        "(torch.ones(1 << 20) * 2).sum()\n"  # torch's threads at work before anything is flushed
        "x = torch.full((1 << 20,), 1e-39)\n"
        "with d.denormals_flushed(): y = x * 2\n"
        "print(int((y.numpy() > 0).sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) == 0  # both threads that split the product flushed


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="glibc's malloc (Linux)")
def test_large_blocks_reuse_freed_heap_unless_told_to_keep_glibcs_defaults():
    """ALIKED's full-resolution maps are 38-75 MB: with glibc's defaults each got fresh pages
    (one page fault per 4 KB) every time; lightsfm.device keeps them in the heap for reuse."""
    code = (
        "import resource, torch, lightsfm.device\n"
        "def faults():\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(6): torch.ones(1 << 24).sum()\n"  # 64 MB blocks: the heap settles in a few
        "before = faults()\n"
        "for _ in range(5): torch.ones(1 << 24).sum()\n"
        "print(faults() - before)"
    )

    def faults(**env: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, **env}
        )
        return int(run.stdout)

    # 16384 pages a block. CI once saw one block of the five land on fresh pages (where the heap
    # grows is glibc's choice); with glibc's defaults all five do, every time.
    assert faults() < 2 * 16384
    assert faults(LIGHTSFM_MALLOC="system") > 5 * 16384 * 0.9  # each block on fresh pages

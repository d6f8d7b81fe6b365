"""Crash-safe HDF5 files: what finished before an interruption is kept, nothing is half-written."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import DEMO
from lightsfm import extract, images
from lightsfm.io import H5Appender, h5_keys, key_to_name, name_to_key, pair_to_key


def test_keys_round_trip_odd_names():
    for name in ["a/b c.jpg", "é/ü%.png", "x.y"]:
        assert key_to_name(name_to_key(name)) == name and "/" not in name_to_key(name)
    assert pair_to_key("a/b", "c").count("/") == 1


def test_appender_commits_on_exit_and_replaces_atomically(tmp_path):
    path = tmp_path / "f.h5"
    with H5Appender(path, "conf-1", flush_every_s=1e9) as out:
        out.add("a", {"x": np.arange(3), "s": 1.5})
        assert not path.exists()  # nothing visible until committed
    with h5py.File(path) as f:
        assert f.attrs["conf"] == "conf-1" and f["a/x"][()].tolist() == [0, 1, 2] and f["a"].attrs["s"] == 1.5
    with H5Appender(path, "conf-1") as out:
        out.add("b", {"x": np.zeros(2)})
    assert h5_keys(path) == {"a", "b"}
    assert not list(tmp_path.glob("*.tmp"))


def test_flushes_write_only_new_entries_and_a_killed_run_is_merged_next_time(tmp_path, monkeypatch):
    from lightsfm import io as lio
    from lightsfm.store import H5Store

    path = tmp_path / "f.h5"
    written: list[int] = []
    real = lio.atomic_write_bytes
    monkeypatch.setattr(lio, "atomic_write_bytes", lambda p, data: (written.append(len(data)), real(p, data))[1])
    out = H5Appender(path, '{"k": 1}', flush_every_s=1e9)
    for i in range(6):
        out.add(str(i), {"x": np.full(20_000, i, np.float32)})  # 80 kB each
        out.flush()
    # six flushes, each writing one entry: I/O grows with the entries, not with their square
    assert len(written) == 6 and max(written) < 2 * min(written)
    assert not path.exists() and len(list(lio.parts_dir(path).glob("*.h5"))) == 6
    # killed here (no __exit__): the next run's store merges the parts before reading
    store = H5Store(path, {"k": 1})
    assert store.keys() == {str(i) for i in range(6)} and not lio.parts_dir(path).exists()
    with h5py.File(path) as f:
        assert f["5/x"][0] == 5


def test_parts_of_pairs_merge_pair_by_pair(tmp_path):
    """Pairs are groups of groups (image / image): a later part with other pairs of the
    same image adds to them and replaces only the pair it holds again."""
    path = tmp_path / "m.h5"
    out = H5Appender(path, "c", flush_every_s=1e9)
    out.add(pair_to_key("a", "b"), {"m": np.array([1])})
    out.add(pair_to_key("a", "c"), {"m": np.array([2])})
    out.flush()
    out.add(pair_to_key("a", "d"), {"m": np.array([3])})
    out.add(pair_to_key("a", "c"), {"m": np.array([4])})
    out.__exit__(None, None, None)
    assert h5_keys(path, depth=2) == {"a/b", "a/c", "a/d"}
    with H5Appender(path, "c") as again:  # a later run adds to the merged file
        again.add(pair_to_key("a", "e"), {"m": np.array([5])})
    with h5py.File(path) as f:
        assert [f[f"a/{k}/m"][0] for k in "bcde"] == [1, 4, 3, 5]


def test_interrupted_extraction_keeps_finished_images_and_resumes(tmp_path, monkeypatch):
    names = ["100_7100.JPG", "100_7101.JPG", "100_7102.JPG"]
    conf = {"max_keypoints": 256, "resize_max": 480}
    real = images.load_image
    calls = []

    def interrupt_on_third(path, max_size=None):
        calls.append(path.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path, max_size)

    monkeypatch.setattr(extract, "load_image", interrupt_on_third)
    with pytest.raises(KeyboardInterrupt):
        extract.main(DEMO, names, tmp_path, conf)
    path = extract.feature_path(tmp_path, conf)
    assert {key_to_name(k) for k in h5_keys(path)} == set(names[:2])
    monkeypatch.setattr(extract, "load_image", real)
    calls.clear()
    monkeypatch.setattr(extract, "load_image", lambda p, m=None: (calls.append(p.name), real(p, m))[1])
    extract.main(DEMO, names, tmp_path, conf)
    assert calls == [names[2]]  # only the unfinished image was redone
    assert {key_to_name(k) for k in h5_keys(path)} == set(names)


def test_other_settings_start_a_new_file(tmp_path):
    a = extract.feature_path(tmp_path, {"max_keypoints": 256})
    b = extract.feature_path(tmp_path, {"max_keypoints": 512})
    assert a != b

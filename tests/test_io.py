"""Crash-safe HDF5 files: what finished before an interruption is kept, nothing is half-written."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import DEMO
from lightsfm import images
from lightsfm.features import aliked
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

    monkeypatch.setattr(aliked, "load_image", interrupt_on_third)
    with pytest.raises(KeyboardInterrupt):
        aliked.main(DEMO, names, tmp_path, conf)
    path = aliked.feature_path(tmp_path, conf)
    assert {key_to_name(k) for k in h5_keys(path)} == set(names[:2])
    monkeypatch.setattr(aliked, "load_image", real)
    calls.clear()
    monkeypatch.setattr(aliked, "load_image", lambda p, m=None: (calls.append(p.name), real(p, m))[1])
    aliked.main(DEMO, names, tmp_path, conf)
    assert calls == [names[2]]  # only the unfinished image was redone
    assert {key_to_name(k) for k in h5_keys(path)} == set(names)


def test_other_settings_start_a_new_file(tmp_path):
    a = aliked.feature_path(tmp_path, {"max_keypoints": 256})
    b = aliked.feature_path(tmp_path, {"max_keypoints": 512})
    assert a != b

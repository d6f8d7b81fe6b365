"""Bad settings, arguments and CSV files (issue 16): one-line errors naming the value, never a
traceback; property-based (hypothesis) over the settings parser and the CSV readers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightsfm import config
from lightsfm import evaluate as ev
from lightsfm.errors import LightsfmError

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DEFAULTS = config.defaults()


def _leaves(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and k != "pycolmap":
            out += _leaves(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


LEAVES = _leaves(DEFAULTS)
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _nested(path: str, value: object) -> dict:
    *parents, key = path.split(".")
    out: dict = {key: value}
    for p in reversed(parents):
        out = {p: out}
    return out


def _one_line(e: Exception) -> str:
    text = str(e)
    assert "\n" not in text and text, text
    return text


@FAST
@given(leaf=st.sampled_from(LEAVES), value=ANY_VALUE)
def test_any_value_for_any_setting_is_accepted_or_a_one_line_error_naming_it(leaf, value):
    path, default = leaf
    try:
        conf = config.load(overrides=_nested(path, value))
    except LightsfmError as e:
        assert _one_line(e).startswith(f"setting {path}"), (path, value, str(e))
        return
    config.validate(conf)  # what was accepted is valid: kind of the default, finite, in range
    got = conf
    for k in path.split("."):
        got = got[k]
    assert got == value


@FAST
@given(leaf=st.sampled_from([(p, d) for p, d in LEAVES if isinstance(d, int | float) and not isinstance(d, bool)]))
def test_negative_huge_and_nan_numbers_are_refused(leaf):
    path, default = leaf
    lo, hi = config.RANGES.get(path, (0, 1e9))
    for bad in (lo - 1, hi * 10 + 1, float("nan"), float("inf"), "12", True):
        with pytest.raises(LightsfmError, match=f"setting {path.replace('.', '[.]')} = "):
            config.load(overrides=_nested(path, bad))


@FAST
@given(text=st.text(max_size=200))
def test_any_toml_text_is_read_or_a_one_line_error_naming_the_file(tmp_path, text):
    f = tmp_path / "s.toml"
    f.write_text(text)
    try:
        config.load(file=f)
    except LightsfmError as e:
        assert _one_line(e).startswith(str(f)) or "unknown setting" in str(e)


@FAST
@given(data=st.binary(max_size=100))
def test_binary_toml_is_a_one_line_error(tmp_path, data):
    f = tmp_path / "b.toml"
    f.write_bytes(data)
    try:
        config.load(file=f)
    except LightsfmError as e:
        _one_line(e)


def test_bad_settings_name_the_value(tmp_path):
    with pytest.raises(LightsfmError, match="unknown preset 'turbo'"):
        config.load("turbo")
    with pytest.raises(LightsfmError, match=r"setting features.max_keypoints = -5: must be between 1 and 100000"):
        config.load(overrides={"features": {"max_keypoints": -5}})
    with pytest.raises(LightsfmError, match=r"setting features.resize_max = 1000000000000.0: must be a whole number"):
        config.load(overrides={"features": {"resize_max": 1e12}})
    with pytest.raises(LightsfmError, match=r"setting verify.camera_model = 'PINHOL': auto or a COLMAP camera model"):
        config.load(overrides={"verify": {"camera_model": "PINHOL"}})
    for overrides, why in [
        ({"verify": {"camera_params": "PINHOLE:1,2"}}, r"verify.camera_params = 'PINHOLE:1,2': PINHOLE takes 4 param"),
        ({"mapping": {"refine_intrinsics": "some"}}, r"mapping.refine_intrinsics = 'some': one of auto, none, focal"),
        ({"pairs": {"gps_neighbours": -1}}, r"pairs.gps_neighbours = -1: must be between 0 and 1000"),
        ({"features": {"masks": 3}}, r"features.masks = 3: must be a file path"),
    ]:
        with pytest.raises(LightsfmError, match=rf"^setting {why}"):
            config.load(overrides=overrides)
    f = tmp_path / "my.toml"
    f.write_text("features = 3\n")
    with pytest.raises(LightsfmError, match=f"{f}: setting features must be a table"):
        config.load(file=f)
    f.write_text("[mapping]\nmin_tri_angle = nan\n")
    with pytest.raises(LightsfmError, match=f"{f}: setting mapping.min_tri_angle = nan: must be finite"):
        config.load(file=f)
    f.write_text("[dense]\ndepth_range = [5, 1]\n")
    with pytest.raises(LightsfmError, match="depth_range = \\[5, 1\\]: \\[near, far\\]"):
        config.load(file=f)
    # valid odd values pass
    conf = config.load(overrides={"matching": {"depth_confidence": -1}, "verify": {"camera_model": "OPENCV"}})
    assert conf["matching"]["depth_confidence"] == -1


def test_python_api_checks_settings_like_the_cli(tmp_path):
    """pipeline.reconstruct with a bad value: the CLI's one-line error, before anything is written."""
    from conftest import DEMO
    from lightsfm import pipeline

    out = tmp_path / "out"
    with pytest.raises(LightsfmError, match=r"^setting features.max_keypoints = -5: must be between 1 and 100000$"):
        pipeline.reconstruct(DEMO, out, {"features": {"max_keypoints": -5}})
    with pytest.raises(LightsfmError, match=r"^setting mapping.min_tri_angle = nan: must be finite$"):
        pipeline.reconstruct(DEMO, out, {"mapping": {"min_tri_angle": float("nan")}})
    with pytest.raises(LightsfmError, match=r"^unknown setting 'featurez'"):
        pipeline.reconstruct(DEMO, out, {"featurez": {}})
    assert not out.exists()


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lightsfm.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
        timeout=120,
    )


def test_cli_bad_arguments_are_one_line(tmp_path):
    from conftest import DEMO

    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[features\n")
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"\xff\xfe\x00garbage")
    cases = [
        (["reconstruct", DEMO, "-o", tmp_path / "o", "--preset", "turbo"], "unknown preset 'turbo'"),
        (["reconstruct", DEMO, "-o", tmp_path / "o", "--max-keypoints", "-5"], "features.max_keypoints = -5"),
        (["reconstruct", DEMO, "-o", tmp_path / "o", "--config", bad_toml], f"{bad_toml}: cannot read config"),
        (["evaluate", labels, labels], f"{labels}: not a"),
    ]
    for args, expect in cases:
        r = _cli(*args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and expect in r.stderr, (args, r.stderr)


# ---- CSV readers ----------------------------------------------------------------------------

HEADER = "dataset,scene,image_path,rotation_matrix,translation_vector\n"
GOOD_ROW = "d,s,a.jpg,1;0;0;0;1;0;0;0;1,0;0;1\n"


def _write(tmp_path: Path, text: str | bytes, name: str = "x.csv") -> Path:
    f = tmp_path / name
    f.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    return f


@FAST
@given(text=st.text(max_size=300))
def test_any_poses_csv_text_is_read_or_a_one_line_error(tmp_path, text):
    f = _write(tmp_path, HEADER + text)
    try:
        poses = ev.read_poses(f)
    except LightsfmError as e:
        assert _one_line(e).startswith(str(f))
        return
    for scene in poses.values():  # what was read is usable by the metric
        for p in scene.values():
            assert p.R.shape == (3, 3) and np.all(np.isfinite(p.R)) and np.all(np.isfinite(p.t))


@FAST
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["d", "", "d,x"]),
            st.sampled_from(["s", ""]),
            st.sampled_from(["a.jpg", "b.jpg", ""]),
            st.sampled_from(["1;0;0;0;1;0;0;0;1", "1;0;0;0;1;0;0;0", "x", "2;0;0;0;2;0;0;0;2", "nan;0;0;0;1;0;0;0;1"]),
            st.sampled_from(["0;0;1", "0;0", "inf;0;0", ""]),
        ),
        max_size=5,
    ),
    drop=st.integers(0, 4),
)
def test_rows_with_missing_extra_or_garbled_fields(tmp_path, rows, drop):
    lines = [",".join(r[: 5 - (drop if i == 0 else 0)]) for i, r in enumerate(rows)]
    f = _write(tmp_path, HEADER + "\n".join(lines) + "\n")
    try:
        ev.read_poses(f)
    except LightsfmError as e:
        assert _one_line(e).startswith(f"{f}:")


def test_csv_errors_name_the_line_and_the_value(tmp_path):
    cases = {
        "missing field": HEADER + "d,s,a.jpg,1;0;0;0;1;0;0;0;1\n",
        "fields, the header has 5": HEADER + "d,s,a.jpg,1;0;0;0;1;0;0;0;1,0;0;1,extra\n",
        "not 9 ';'-separated numbers: 'abc'": HEADER + "d,s,a.jpg,abc,0;0;1\n",
        "not a rotation": HEADER + "d,s,a.jpg,2;0;0;0;2;0;0;0;2,0;0;1\n",
        "a.jpg again (first on line 2)": HEADER + GOOD_ROW + GOOD_ROW,
        "missing columns ['translation_vector']": "dataset,scene,image_path,rotation_matrix\n",
    }
    for expect, text in cases.items():
        with pytest.raises(LightsfmError, match=None) as e:
            ev.read_poses(_write(tmp_path, text))
        assert expect in str(e.value) and "\n" not in str(e.value), (expect, str(e.value))
    with pytest.raises(LightsfmError, match="not a text"):
        ev.read_poses(_write(tmp_path, b"\xff\xfe\x00\x01garbage"))
    with pytest.raises(LightsfmError, match="cannot be read"):
        ev.read_poses(tmp_path / "absent.csv")
    # submissions with rows missing or extra, against the ground truth: one line each
    gt = _write(tmp_path, HEADER + GOOD_ROW + "d,s,b.jpg,0;-1;0;1;0;0;0;0;1,1;0;1\n", "gt.csv")
    sub = _write(tmp_path, HEADER + GOOD_ROW, "sub.csv")
    with pytest.raises(LightsfmError, match="b.jpg is missing from the submission"):
        ev.evaluate(sub, gt)
    extra = _write(
        tmp_path, HEADER + GOOD_ROW + "d,s,b.jpg,0;-1;0;1;0;0;0;0;1,1;0;1\nd,s,c.jpg,1;0;0;0;1;0;0;0;1,0;0;0\n"
    )
    try:
        assert ev.evaluate(extra, gt)["scenes"]["d/s"]["registered"] == 2
    except LightsfmError as e:
        _one_line(e)


TH_HEADER = "dataset,scene,rotation_thresholds_deg,translation_thresholds\n"


@FAST
@given(text=st.text(max_size=200))
def test_any_thresholds_csv_is_read_or_a_one_line_error(tmp_path, text):
    f = _write(tmp_path, TH_HEADER + text, "th.csv")
    try:
        th = ev.read_thresholds(f)
    except LightsfmError as e:
        assert _one_line(e).startswith(str(f))
        return
    for rot, tr in th.values():
        assert len(rot) == len(tr) > 0 and np.all(rot > 0) and np.all(tr > 0)


def test_thresholds_errors(tmp_path):
    for row, expect in (
        ("d,s,1;2,0.1\n", "2 rotation but 1 translation"),
        ("d,s,1;x,0.1;0.2\n", "rotation_thresholds_deg is not ';'-separated positive numbers: '1;x'"),
        ("d,s,1;-2,0.1;0.2\n", "positive"),
        ("d,s,1;2\n", "translation_thresholds is not"),
    ):
        with pytest.raises(LightsfmError) as e:
            ev.read_thresholds(_write(tmp_path, TH_HEADER + row, "th.csv"))
        assert expect in str(e.value), (row, str(e.value))

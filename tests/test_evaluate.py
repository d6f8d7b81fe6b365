"""The IMC2023 metric on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest

from lightsfm import evaluate as ev
from lightsfm.errors import LightsfmError


def rot(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(deg)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


def random_scene(n=6, seed=0):
    rng = np.random.default_rng(seed)
    poses = {}
    for i in range(n):
        R = rot(rng.normal(size=3), rng.uniform(0, 180))
        poses[f"img{i}.jpg"] = ev.Pose(R, rng.normal(size=3) * 3)
    return poses


THR = (np.linspace(1, 10, 10), np.geomspace(0.2, 5, 10))


def test_ground_truth_against_itself_is_perfect():
    gt = random_scene()
    res = ev.evaluate_scene(gt, gt, THR)
    assert res["mAA"] == pytest.approx(1.0)
    assert res["auc5"] == pytest.approx(1.0, abs=1e-4)  # the ε floor of the Kaggle formula
    assert res["registered"] == 6


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_similarity_transform_is_perfect(seed):
    rng = np.random.default_rng(seed)
    gt = random_scene(seed=seed)
    # X' = s·Q·X + c  ⇒  R' = R·Qᵀ, t' = s·t − R'·c
    Q, c, s = rot(rng.normal(size=3), rng.uniform(0, 180)), rng.normal(size=3) * 10, rng.uniform(0.1, 10)
    pred = {k: ev.Pose(p.R @ Q.T, s * p.t - (p.R @ Q.T) @ c) for k, p in gt.items()}
    res = ev.evaluate_scene(gt, pred, THR)
    assert res["mAA"] == pytest.approx(1.0)


def test_known_rotation_perturbation_lands_between_thresholds():
    gt = {"a": ev.Pose(np.eye(3), np.zeros(3)), "b": ev.Pose(np.eye(3), np.array([1.0, 0, 0]))}
    # b rotated by 4.5° about the baseline axis, camera centre kept: dT direction unchanged.
    R = rot([1, 0, 0], 4.5)
    pred = {"a": gt["a"], "b": ev.Pose(R, R @ np.array([1.0, 0, 0]))}
    err_r, err_t, _ = ev.pose_errors(*ev.relative_pose(gt["a"], gt["b"]), *ev.relative_pose(pred["a"], pred["b"]))
    assert err_r == pytest.approx(4.5, abs=1e-6)
    assert err_t == pytest.approx(0.0, abs=1e-9)
    res = ev.evaluate_scene(gt, pred, (np.linspace(1, 10, 10), np.full(10, 0.1)))
    # thresholds 1..10°: 4.5° fails 1,2,3,4 and passes 5..10 → 6/10
    assert res["mAA"] == pytest.approx(0.6)
    assert res["mAA_t"] == pytest.approx(1.0)


def test_known_translation_perturbation():
    gt = {"a": ev.Pose(np.eye(3), np.zeros(3)), "b": ev.Pose(np.eye(3), np.array([1.0, 0, 0]))}
    d = np.radians(10.0)  # translation direction off by 10° → chord 2·sin(5°) ≈ 0.1743 for a unit baseline
    pred = {"a": gt["a"], "b": ev.Pose(np.eye(3), np.array([np.cos(d), np.sin(d), 0]) * 7.0)}
    res = ev.evaluate_scene(gt, pred, (np.full(5, 1.0), np.array([0.1, 0.15, 0.18, 0.2, 1.0])))
    assert res["mAA"] == pytest.approx(3 / 5)
    assert res["mAA_R"] == pytest.approx(1.0)


def test_placeholder_poses_give_expected_share():
    gt = random_scene(n=6)
    pred = dict(gt)
    for k in ["img4.jpg", "img5.jpg"]:
        pred[k] = ev.Pose(np.eye(3), np.zeros(3))
    res = ev.evaluate_scene(gt, pred, THR)
    # only pairs among the 4 good images (6 of 15) can be right
    assert res["mAA"] == pytest.approx(6 / 15)
    assert res["registered"] == 4


def test_missing_image_is_a_clear_error():
    gt = random_scene(n=3)
    pred = {k: v for k, v in gt.items() if k != "img1.jpg"}
    with pytest.raises(LightsfmError, match="img1.jpg is missing"):
        ev.evaluate_scene(gt, pred, THR, "ds/scene")


def test_csv_round_trip_and_thresholds(tmp_path):
    gt = {("heritage", "wall"): random_scene(n=4), ("urban", "x"): random_scene(n=3, seed=5)}
    ev.write_poses(tmp_path / "gt.csv", gt)
    res = ev.evaluate(tmp_path / "gt.csv", tmp_path / "gt.csv")
    assert res["final"] == pytest.approx(1.0)
    assert set(res["datasets"]) == {"heritage", "urban"}
    assert ev.default_thresholds("heritage", "wall")[0][0] == pytest.approx(0.2)
    assert ev.default_thresholds("haiper", "bike")[1][-1] == pytest.approx(0.5)
    (tmp_path / "th.csv").write_text(
        "dataset,scene,rotation_thresholds_deg,translation_thresholds\nurban,x,1;2,0.1;0.2\n"
    )
    assert ev.read_thresholds(tmp_path / "th.csv")[("urban", "x")][1].tolist() == [0.1, 0.2]


def test_bad_csv_value_names_the_line(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("image_path,dataset,scene,rotation_matrix,translation_vector\na.jpg,d,s,1;0;0,0;0;0\n")
    with pytest.raises(LightsfmError, match=r"s.csv:2"):
        ev.read_poses(p)

"""Fold checks on real scenes: a folded model is flagged, a correct one is not, a misplaced
photo is found and registered again where its matches say it is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pycolmap
import pytest

from conftest import DATA
from lightsfm import checks, colmap, config, evaluate, mapping, pipeline

pytestmark = pytest.mark.data

TEMPLE_IMAGES = DATA / "middlebury" / "templeSparseRing" / "images"
DINO_IMAGES = DATA / "middlebury" / "dinoSparseRing" / "images"
LABELS = DATA / "train_labels.csv"


@pytest.fixture(scope="module")
def folding_run(tmp_path_factory):
    """The temple matched as pre-matching at 10 cheap inliers did (the default until
    2026-12-01): 57 pairs, among them the false ones from which GLOMAP folds the ring. (At
    today's 25, 26 pairs, it does not fold; these tests need a model that does.)"""
    from lightsfm import imc

    out = tmp_path_factory.mktemp("fold")
    imc.main(DATA, out, {"pairs": {"prematch_min_inliers": 10}}, scenes=["middlebury/templeSparseRing"])
    return out / "middlebury" / "templeSparseRing"


@pytest.fixture(scope="module")
def database(folding_run):
    return folding_run / "database.db"


def share_over_30deg(rec: pycolmap.Reconstruction, scene: tuple[str, str]) -> float:
    """With the ground truth: share of the model's pairs more than 30 degrees off."""
    return _score([rec], scene)["pairs_over_30deg"]


def _score(models: list[pycolmap.Reconstruction], scene: tuple[str, str]) -> dict:
    gt = evaluate.read_poses(LABELS)[scene]
    names = [p.rsplit("/", 1)[1] for p in gt]
    poses = colmap.poses_from_models(models, names)
    placeholder = evaluate.Pose(np.eye(3), np.zeros(3))
    pred = {p: poses.get(n, placeholder) for p, n in zip(gt, names, strict=True)}
    return evaluate.evaluate_scene(gt, pred, evaluate.read_thresholds(DATA / "thresholds.csv")[scene])


def test_the_folded_global_temple_is_flagged_and_the_incremental_one_is_not(database, tmp_path):
    conf = config.defaults()["mapping"]
    evidence = colmap.verified_pairs(database)
    folded = colmap.global_mapping(database, TEMPLE_IMAGES, tmp_path / "g", colmap.global_options(conf))[0]
    correct = colmap.incremental_mapping(database, TEMPLE_IMAGES, tmp_path / "i", colmap.mapper_options(conf))[0]
    scene = ("middlebury", "templeSparseRing")
    # the ground truth agrees on which is which (the global mapper folds the symmetric ring) ...
    assert share_over_30deg(folded, scene) > 0.3 and share_over_30deg(correct, scene) == 0
    # ... and the checks tell them apart without it, although both register all 16 views
    assert folded.num_reg_images() == correct.num_reg_images() == 16
    assert checks.check_model(folded, evidence).suspect()
    found = checks.check_model(correct, evidence)
    assert not found.suspect() and not found.contradicted() and found.unexplained_share() < 0.01


def test_asking_for_the_global_mapper_on_the_temple_warns_and_auto_keeps_the_good_model(database, tmp_path):
    # from the guessed focal length (768 px) GLOMAP folds the ring; mapped again from the focal
    # length found (mapping.refocus_above, the default) it no longer does
    mapping.main(database, TEMPLE_IMAGES, tmp_path / "global", {"method": "global", "refocus_above": 0})
    record = mapping.read_mapper(tmp_path / "global")
    assert record["checks"]["global"]["suspect"] and "may be folded" in checks.warning(record)
    mapping.main(database, TEMPLE_IMAGES, tmp_path / "global-again", {"method": "global"})
    record = mapping.read_mapper(tmp_path / "global-again")
    assert record["refocused"] and not record["checks"]["global"]["suspect"]
    models = mapping.main(database, TEMPLE_IMAGES, tmp_path / "auto", {"method": "auto"})
    record = mapping.read_mapper(tmp_path / "auto")
    assert checks.warning(record) is None and models[0].num_reg_images() == 16
    # the full ring pins the principal point down: refined, near its calibration (302.3, 246.9)
    (pp,) = record["principal_points"][0]["cameras"].values()
    assert record["principal_points"][0]["refined"] and max(pp["sigma_px"]) < 6.4
    assert abs(pp["found"][0] - 302.3) < 8 and abs(pp["found"][1] - 246.9) < 8


def test_a_misplaced_photo_is_found_and_registered_again(database, tmp_path):
    conf = config.defaults()["mapping"]
    evidence = colmap.verified_pairs(database)
    rec = colmap.incremental_mapping(database, TEMPLE_IMAGES, tmp_path / "i", colmap.mapper_options(conf))[0]
    image = next(im for im in rec.images.values() if im.name == "templeSR0008.png")
    before = image.cam_from_world()
    # turn the photo by 90 degrees about its own centre: it now looks the wrong way
    turn = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)])), [0, 0, 0])
    centre = before.inverse().translation
    wrong = turn * before
    wrong = pycolmap.Rigid3d(wrong.rotation, -(wrong.rotation.matrix() @ centre))
    rec.frames[image.frame_id].rig_from_world = wrong
    found = checks.check_model(rec, evidence)
    assert found.misplaced() == ["templeSR0008.png"] and found.suspect()
    # the database's keypoints, read as arrays, are the model's: the same check
    assert checks.check_model(rec, evidence, keypoints=colmap.keypoints(database)).summary() == found.summary()
    fixed, after, repair = mapping._check_and_repair(rec, evidence, database, TEMPLE_IMAGES, tmp_path / "r", conf)
    assert repair == {"reregistered": ["templeSR0008.png"], "kept": "after"} and not after.suspect()
    again = next(im for im in fixed.images.values() if im.name == "templeSR0008.png").cam_from_world()
    dR = again.rotation.matrix() @ before.rotation.matrix().T
    assert np.degrees(np.arccos(np.clip((np.trace(dR) - 1) / 2, -1, 1))) < 1.0


def test_a_photo_whose_pose_its_points_contradict_is_unsupported(database, tmp_path):
    conf = config.defaults()["mapping"]
    evidence = colmap.verified_pairs(database)
    rec = colmap.incremental_mapping(database, TEMPLE_IMAGES, tmp_path / "i", colmap.mapper_options(conf))[0]
    found = checks.check_model(rec, evidence)
    assert not found.unsupported() and min(p.explained for p in found.photos) > 0.8
    by_name = {im.name: im for im in rec.images.values()}
    # templeSR0008 given the pose of templeSR0012, four views round the ring
    rec.frames[by_name["templeSR0008.png"].frame_id].rig_from_world = by_name["templeSR0012.png"].cam_from_world()
    found = checks.check_model(rec, evidence)
    (moved,) = [p for p in found.photos if p.name == "templeSR0008.png"]
    assert moved.correspondences >= 30 and moved.explained < 0.1
    assert found.unsupported() == ["templeSR0008.png"] and "templeSR0008.png" in found.misplaced()


def test_the_dino_with_its_calibration_given_keeps_every_view_in_place(tmp_path):
    """With the published calibration fixed, the global mapper joins the dino's two incremental
    models 122° off; joined again on the link it contradicted, dinoSR0013 (placed by the
    links taken out) is left out, and registered again from the whole database."""
    calibration = {"verify": {"camera_params": "PINHOLE:3310.4,3325.5,316.73,200.55"}}
    result = pipeline.reconstruct(DINO_IMAGES, tmp_path, calibration)
    assert result.models[0].num_reg_images() == 16 and not result.suspect()
    repairs = mapping.read_mapper(tmp_path)["repairs"]
    assert repairs["global_rejoin"]["registered"] == ["dinoSR0013.png"], repairs
    assert _score(result.models, ("middlebury", "dinoSparseRing"))["mAA"] >= 0.95


def test_the_dino_reconstructs_unfolded_end_to_end(tmp_path):
    """The dark dino: incremental mapping leaves it in two models ([1-6, 13-16], [7-13]); the
    global mapper joins them with 7-13 turned 122° (on the ambiguous link 0013-0014), against
    the link 0006-0007. Joined again on that link alone, one view is misplaced and the repair
    puts it back."""
    result = pipeline.reconstruct(DINO_IMAGES, tmp_path, config.defaults())
    assert not result.suspect()
    assert "global_rejoin" in mapping.read_mapper(tmp_path)["repairs"]
    # the dark dino cannot pin its principal point down (refined, it wandered 660-740 px off and
    # mAA fell to 0.08): the centre is kept
    decision = mapping.read_mapper(tmp_path)["principal_points"][0]
    assert not decision["refined"] and max(next(iter(decision["cameras"].values()))["sigma_px"]) > 6.4
    rec = result.models[0]
    assert rec.num_reg_images() == 16
    assert share_over_30deg(rec, ("middlebury", "dinoSparseRing")) <= 0.02
    assert _score(result.models, ("middlebury", "dinoSparseRing"))["mAA"] >= 0.85


def test_a_duplicate_photo_gets_the_pose_of_the_one_it_copies(temple_run):
    out, _, _ = temple_run
    models = mapping.load_models(out / "middlebury" / "templeSparseRing")
    names = ["templeSR0001.png", "copy of 0001.png"]
    poses = colmap.poses_from_models(models, names, {"copy of 0001.png": "templeSR0001.png"})
    assert set(poses) == set(names)
    assert np.array_equal(poses[names[0]].R, poses[names[1]].R) and np.array_equal(poses[names[0]].t, poses[names[1]].t)
    assert set(colmap.poses_from_models(models, names)) == {"templeSR0001.png"}


def test_the_cli_warns_and_exits_4_on_a_folded_model(folding_run, tmp_path):
    """The temple mapped by the global mapper only, from the guessed focal length: one line of
    warning naming the photos, exit 4."""
    work = tmp_path / "temple"
    shutil.copytree(folding_run, work, ignore=shutil.ignore_patterns("sparse", ".lock"))
    r = subprocess.run(
        [sys.executable, "-m", "lightsfm.cli", "reconstruct", str(TEMPLE_IMAGES), "-o", str(work)]
        + ["--mapper", "global", "--set", "mapping.refocus_above=0", "--prematch", "10", "--no-report"],
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
        timeout=600,
    )
    assert r.returncode == 4, r.stderr
    summary = json.loads((work / "summary.json").read_text())
    assert summary["suspect"] and "may be folded" in summary["warning"]
    # the warning names the photos of the pairs the model contradicts (and any it misplaced)
    found = mapping.read_mapper(work)["checks"]["global"]
    named = {n for a, b, *_ in found["contradicted"][:5] for n in (a, b)} | set(found["misplaced"][:10])
    assert "warning: this model may be folded" in r.stdout and named
    assert all(name in r.stdout for name in named), (named, r.stdout)


def _photo_support_by_definition(rec, evidence, max_error_px):
    """photo_support written out point by point (as it was before it was vectorised)."""
    out = []
    point_of = {}
    for i, im in rec.images.items():
        if im.has_pose:
            point_of[i] = [p.point3D_id if p.has_point3D() else -1 for p in im.points2D]
    found = {i: {} for i in point_of}
    for (id1, id2), matches in evidence.items():
        if id1 in point_of and id2 in point_of:
            for mine, other, a, b in ((id1, id2, 0, 1), (id2, id1, 1, 0)):
                for k, o in matches[:, [a, b]].tolist():
                    if point_of[other][o] >= 0:
                        found[mine].setdefault(k, point_of[other][o])
    for i, keys in found.items():
        image = rec.images[i]
        kept = [
            (k, pid)
            for k, pid in keys.items()
            if len({e.image_id for e in rec.points3D[pid].track.elements} - {i}) >= 2
        ]
        if not kept:
            continue
        errors = []
        for k, pid in kept:
            xy = image.project_point(rec.points3D[pid].xyz)
            errors.append(np.inf if xy is None else np.linalg.norm(xy - image.points2D[k].xy))
        out.append((image.name, len(kept), float(np.mean(np.array(errors) < max_error_px))))
    return out


def test_photo_support_and_point_colours_match_their_definitions(database):
    conf = config.defaults()["mapping"]
    evidence = colmap.verified_pairs(database)
    rec = colmap.incremental_mapping(database, TEMPLE_IMAGES, database.parent / "support", colmap.mapper_options(conf))[
        0
    ]
    by_name = {im.name: im for im in rec.images.values()}
    # one photo misplaced, so that not every share is 1
    rec.frames[by_name["templeSR0008.png"].frame_id].rig_from_world = by_name["templeSR0012.png"].cam_from_world()
    strong = {p: m for p, m in evidence.items() if len(m) >= 50}
    found = [(p.name, p.correspondences, p.explained) for p in checks.photo_support(rec, strong, 4.0)]
    expected = _photo_support_by_definition(rec, strong, 4.0)
    assert [f[:2] for f in found] == [e[:2] for e in expected]
    assert np.allclose([f[2] for f in found], [e[2] for e in expected]) and min(f[2] for f in found) < 0.1

    rng = np.random.default_rng(0)
    colors_of = {im.name: rng.integers(0, 256, (im.num_points2D(), 3)).astype(float) for im in rec.images.values()}
    seen = [(im, colmap.observations(im)) for im in rec.images.values() if im.has_pose]
    colmap.colorize(rec, [(pids, colors_of[im.name][idx]) for im, (idx, pids) in seen])
    for point in list(rec.points3D.values())[:300]:
        observed = [colors_of[rec.images[e.image_id].name][e.point2D_idx] for e in point.track.elements]
        assert point.color.tolist() == np.round(np.mean(observed, axis=0)).astype(np.uint8).tolist()


def test_point_colours_are_the_photos_pixels_and_a_vanished_photo_is_skipped(database, tmp_path, caplog):
    """mapping.point_colors, two photos decoded at once, gives each point the rounded mean
    of the pixels under its observations; a photo that cannot be read any more adds none."""
    from PIL import Image

    conf = config.defaults()["mapping"]
    rec = colmap.incremental_mapping(database, TEMPLE_IMAGES, tmp_path / "colours", colmap.mapper_options(conf))[0]
    photos = tmp_path / "photos"
    photos.mkdir()
    registered = sorted(im.name for im in rec.images.values() if im.has_pose)
    gone = registered[3]
    for name in registered:
        if name != gone:
            (photos / name).symlink_to(TEMPLE_IMAGES / name)
    pixels = {n: np.asarray(Image.open(TEMPLE_IMAGES / n).convert("RGB")).astype(float) for n in registered}
    mapping.point_colors(photos, rec)
    assert f"no colours from {photos / gone}" in caplog.text
    checked = 0
    for point in rec.points3D.values():
        observed = []
        for e in point.track.elements:
            image = rec.images[e.image_id]
            if image.name != gone:
                x, y = np.round(np.asarray(image.points2D[e.point2D_idx].xy) - 0.5).astype(int)
                observed.append(pixels[image.name][y, x])
        if observed:
            assert point.color.tolist() == np.round(np.mean(observed, axis=0)).astype(np.uint8).tolist()
            checked += 1
    assert checked > 1000

"""Mappers on a real verified database: incremental, global, and the choice between them."""

from __future__ import annotations

import numpy as np
import pycolmap
import pytest
from PIL import Image

from conftest import DATA, FOUNTAIN
from lightsfm import colmap, config, mapping, pipeline

pytestmark = pytest.mark.data

TEMPLE_IMAGES = DATA / "middlebury" / "templeSparseRing" / "images"


@pytest.fixture(scope="module")
def database(temple_run):
    out, _, _ = temple_run
    return out / "middlebury" / "templeSparseRing" / "database.db"


def test_best_keeps_the_model_that_explains_more_matches(database, tmp_path):
    runs = {
        method: mapping.main(database, TEMPLE_IMAGES, tmp_path / method, {"method": method})
        for method in ("incremental", "global", "best")
    }
    assert runs["global"] and runs["global"][0].num_reg_images() >= 3
    obs = {k: m[0].compute_num_observations() for k, m in runs.items()}
    assert obs["best"] == max(obs["incremental"], obs["global"])
    assert (tmp_path / "best" / "sparse" / "0" / "points.ply").is_file()
    # what was kept and what it was weighed against is written beside the models
    info = mapping.read_mapper(tmp_path / "best")
    assert info["method"] == "best" and set(info["observations"]) == {"incremental", "global"}
    assert info["observations"][info["kept"]] == obs["best"]
    assert set(mapping.read_mapper(tmp_path / "incremental")["observations"]) == {"incremental"}


def test_auto_tries_the_global_mapper_only_for_a_thin_model(database, tmp_path, monkeypatch):
    calls = []
    real = colmap.global_mapping

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(colmap, "global_mapping", counting)
    models = mapping.main(database, TEMPLE_IMAGES, tmp_path / "auto", {"method": "auto"})
    # all 16 temple views register with ~400 observations each: no reason to try again
    assert models[0].num_reg_images() == 16 and not calls
    assert mapping._thin(models, 16) is False
    # a model that leaves an image out, or none at all, is thin
    models[0].deregister_frame(next(iter(models[0].reg_frame_ids())))
    assert mapping._thin(models, 16) is True
    assert mapping._thin([], 16) is True


def test_unknown_method_is_an_error(database, tmp_path):
    with pytest.raises(ValueError, match="unknown mapping method"):
        mapping.main(database, TEMPLE_IMAGES, tmp_path, {"method": "magic"})


def test_summary_says_which_mapper_was_kept(tmp_path):
    from lightsfm import pipeline

    mapper = {"method": "auto", "kept": "global", "observations": {"incremental": 1393, "global": 2353}}
    result = pipeline.Result(tmp_path, [], 16, stats={"pairs": 34, "image_names": [], "mapper": mapper})
    text = pipeline.format_summary(result)
    assert "mapper: global, kept for explaining more matches (2353 observations; incremental 1393)" in text
    # one mapper run: nothing to say
    mapper = {"method": "auto", "kept": "incremental", "observations": {"incremental": 6699}}
    result = pipeline.Result(tmp_path, [], 16, stats={"pairs": 34, "image_names": [], "mapper": mapper})
    assert "mapper:" not in pipeline.format_summary(result)


def test_a_focal_guess_far_off_maps_again_from_the_focal_found(database, tmp_path):
    """The temple has no EXIF: its camera starts at 1.2 × 640 px, the first model finds about
    twice that, and the scene is mapped once more from it, on a copy of the database."""
    before = colmap.focal_lengths(database)
    ((guess, prior),) = before.values()
    assert guess == 768 and not prior
    models = mapping.main(database, TEMPLE_IMAGES, tmp_path / "again", {})
    info = mapping.read_mapper(tmp_path / "again")
    ((first, found),) = info["refocused"].values()
    assert first == 768 and 1400 < found < 1700
    assert info["first_pass"]["registered"] == 16 and models[0].num_reg_images() == 16
    assert 1400 < next(iter(models[0].cameras.values())).mean_focal_length() < 1700
    # the verified database is left as it was, and no copy is left behind
    assert colmap.focal_lengths(database) == before
    assert not list((tmp_path / "again").glob("*.db"))
    # off, or a guess already close: one pass
    mapping.main(database, TEMPLE_IMAGES, tmp_path / "once", {"refocus_above": 0})
    assert mapping.read_mapper(tmp_path / "once")["refocused"] == {}
    mapping.main(database, TEMPLE_IMAGES, tmp_path / "close", {"refocus_above": 1.5})
    assert mapping.read_mapper(tmp_path / "close")["first_pass"] is None


def test_linked_groups_are_the_verified_graphs_parts(database):
    evidence = colmap.verified_pairs(database)
    (group,) = mapping._linked_groups(database, evidence, 3)  # the temple ring: one group
    assert len(group) == 16
    names = colmap.image_names(database)
    ids = sorted(names)
    # cut the ring into two halves: two groups, largest first; too small ones left out
    half = set(ids[:10])
    cut = {p: m for p, m in evidence.items() if (p[0] in half) == (p[1] in half)}
    groups = mapping._linked_groups(database, cut, 3)
    sizes = [len(g) for g in groups]
    assert sizes[0] == 10 and len(sizes) >= 2 and sizes == sorted(sizes, reverse=True) and min(sizes) >= 3
    assert sorted(groups[0]) == sorted(names[i] for i in ids[:10])
    # each group is a part of the cut graph: no kept pair joins two of them
    where = {n: k for k, g in enumerate(groups) for n in g}
    joined = [(names[a], names[b]) for a, b in cut if names[a] in where and names[b] in where]
    assert joined and all(where[a] == where[b] for a, b in joined)
    assert mapping._linked_groups(database, cut, 7) == groups[:1]


def test_a_global_join_needs_a_pair_strong_enough_to_register_an_image(database, tmp_path):
    conf = dict(mapping.default_conf)
    (rec,) = colmap.incremental_mapping(database, TEMPLE_IMAGES, tmp_path / "i", colmap.mapper_options(conf))[:1]
    ids = sorted(im.image_id for im in rec.images.values() if im.has_pose)
    halves = []
    for keep in (set(ids[:8]), set(ids[8:])):  # the ring as two separate models
        part = pycolmap.Reconstruction(rec)
        for im in part.images.values():
            if im.has_pose and im.image_id not in keep:
                part.deregister_frame(im.frame_id)
        halves.append(part)
    evidence = colmap.verified_pairs(database)
    checks_conf = conf["checks"]
    assert mapping._join_supported(halves, rec, evidence, 30, checks_conf)  # neighbours on the ring: strong pairs
    first = set(ids[:8])
    weak = {p: m[:20] if (p[0] in first) != (p[1] in first) else m for p, m in evidence.items()}
    assert not mapping._join_supported(halves, rec, weak, 30, checks_conf)  # every pair across: 20 inliers at most
    assert mapping._join_supported([rec], rec, weak, 30, checks_conf)  # one model joins nothing
    # the same halves joined with the second one turned 120° about the ring's centre: its
    # strong links contradict the join
    centre = np.mean([rec.images[i].projection_center() for i in ids], axis=0)
    turn = pycolmap.Rotation3d(np.array([0.0, np.sin(np.pi / 3), 0.0, np.cos(np.pi / 3)]))  # (x, y, z, w)
    about_centre = pycolmap.Rigid3d(turn, centre - turn * centre)
    folded = pycolmap.Reconstruction(rec)
    for i in ids[8:]:
        frame = folded.frames[folded.images[i].frame_id]
        frame.rig_from_world = frame.rig_from_world * about_centre.inverse()
    assert not mapping._join_supported(halves, folded, evidence, 30, checks_conf)


def test_a_cropped_photo_gets_its_own_off_centre_principal_point(tmp_path):
    """A crop is a camera of its own photo; its principal point is where the crop put the
    lens's, far from the crop's centre, and one photo is enough to find it."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(11):
        name = f"{i:04d}.jpg"
        if i == 5:  # 1365 × 1024 from x = 146: the lens's centre (760.1 px) lands at x = 614
            Image.open(FOUNTAIN / name).crop((146, 0, 146 + 1365, 1024)).save(folder / name, quality=95)
        else:
            (folder / name).symlink_to(FOUNTAIN / name)
    conf = config.load(overrides={"features": {"max_keypoints": 1024}})
    result = pipeline.reconstruct(folder, tmp_path / "out", conf)
    rec = result.models[0]
    crop = next(im for im in rec.images.values() if im.name == "0005.jpg")
    assert crop.has_pose and sum(im.camera_id == crop.camera_id for im in rec.images.values()) == 1
    decision = mapping.read_mapper(tmp_path / "out")["principal_points"][0]
    assert decision["cameras"][str(crop.camera_id)]["views"] == 1 and decision["refined"]
    cam = rec.cameras[crop.camera_id]
    assert abs(cam.principal_point_x - 614.1) < 15  # the crop's centre, 682.5, is 68 px off

"""Incremental mapping with pycolmap → ``sparse/<k>/`` COLMAP models and ``points.ply``.

Models are numbered by size (``sparse/0`` has the most registered images); each holds
its coloured ``points.ply`` and ``OUT/points.ply`` is that of the largest.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import checks, colmap
from .errors import ImageError
from .executor import LocalExecutor
from .graph import components
from .images import load_image
from .io import check_written
from .workspace import Workspace

if TYPE_CHECKING:
    import pycolmap

logger = logging.getLogger(__name__)

default_conf: dict[str, Any] = {
    # incremental (COLMAP), global (GLOMAP: rotation averaging, then positions), best (both,
    # keeping the model that explains more verified matches), or auto: incremental, and
    # global too when the incremental model is thin or incomplete (see main).
    "method": "auto",
    "min_model_size": 3,
    "max_num_models": 2,
    "seed": 0,
    # One thread: the same inputs then give bit-identical models. With all cores the order of
    # bundle-adjustment updates varies: on the dino, identical runs differed by up to 0.02°
    # in relative rotation and 0.79° in translation direction, same mAA (the fountain came
    # out identical; benchmarks/results/2026-11-26-session3-repeatability.txt). All cores buy
    # no time at any scene size measured (8-119 photos, 2 cores: 0.93-1.18x the one-thread
    # mapping time, 1.03x in total; benchmarks/results/2026-12-01-mapping-threads.txt).
    "num_threads": 1,
    "refine_focal_length": True,
    "refine_principal_point": False,  # during incremental mapping (destabilises weak scenes)
    # One bundle adjustment of each finished model that also refines the principal points,
    # kept where its covariance pins them to this share of the long side (refine_principal_points).
    "final_principal_point": True,
    "principal_point_max_sigma": 0.01,
    # ... and only in models of this many registered photos (see refine_principal_points).
    "principal_point_min_photos": 8,
    "refine_extra_params": True,
    # auto: the three settings above and the final principal point as they are, except that
    # photos whose cameras are all known (verify.camera_params/cameras_file) keep them
    # (none); none, focal, all: refine no intrinsics, only focal lengths, or all of them.
    "refine_intrinsics": "auto",
    # Photos' GPS positions as priors in bundle adjustment (pycolmap's use_prior_position),
    # where the pipeline wrote them: GPS informative for the scene (lightsfm.gps.informative).
    "gps_priors": True,
    # A camera without a focal prior (no EXIF) starts at 1.2 × its long side, sometimes far
    # off (the Middlebury rings: 768 px against ~1550 and ~3200). Where the first model moved
    # a camera's focal length by more than this share, the scene is mapped once more starting
    # from the focal lengths found (0: never): dino 0.945 -> 0.979, temple 0.983 -> 0.977.
    # Mapping again changed mAA by at most 0.003 where the focal moved 21-49 % (Strecha,
    # tensorf_object80, scan65), so only larger moves pay for a second pass
    # (benchmarks/results/2026-11-30-refocus.txt).
    "refocus_above": 0.5,
    "init_min_tri_angle": 16.0,  # COLMAP's defaults; lower them for small baselines
    "init_min_num_inliers": 100,
    "abs_pose_min_num_inliers": 30,
    "min_tri_angle": 1.5,
    # Bundle-adjustment refinement rounds (COLMAP: 2 local, 5 global; each re-runs the
    # solver after filtering and re-triangulating). On ../shared/data 1 and 2 gave mean mAA
    # 0.923 vs 0.919 with mapping 20 % faster (6.0 vs 7.6 s over the five scenes).
    "ba_local_max_refinements": 1,
    "ba_global_max_refinements": 2,
    # Solver iterations per bundle adjustment (pycolmap's default, -1, ran as 50 global / 25
    # local would: same time, same mAA). 25 and 10, from the same matches on all eight
    # scenes: mapping 0.92x the time (51.6 s vs 56.0 s), no scene lower (entry-P10, the
    # temple and tensorf_object80 +0.004-0.005), worst leave-one-scene-out loss 0.000
    # (benchmarks/results/2026-12-01-mapping-iterations.txt).
    "ba_local_max_iterations": 10,
    "ba_global_max_iterations": 25,
    # Every bundle adjustment (the mapper's and the final principal-point one) stops once an
    # iteration lowers the cost by less than this share: Ceres' own default. COLMAP's 0 runs
    # each to its iteration limit: tensorf_object80's final adjustment took 26 iterations
    # (3.3-3.8 s) where 11 (1.5-1.7 s) left its principal point 0.02 px away, and its
    # incremental mapping 17.7-18.4 s instead of 15.8-16.3 s (the same 79 photos and points;
    # mold_gold_cape 30 s either way). From the same matches on all eight scenes, each scene's
    # mAA as at 0 but tensorf_object80's, 0.881 against 0.883
    # (benchmarks/results/2026-12-01-mapping-function-tolerance.txt).
    "ba_function_tolerance": 1e-6,
    # Incremental mapping adjusts the whole model again once it has grown by this factor in
    # photos or points (COLMAP: 1.1), and then leaves out points that other points already
    # cover (COLMAP's ba_global_ignore_redundant_points3D; off in COLMAP). Together, from
    # the same matches on all eight scenes: mapping 0.71x the time (58.0 s vs 81.8 s;
    # tensorf_object80 0.63x, mold_gold_cape 0.71x), each scene's mAA within 0.005; worst
    # leave-one-scene-out loss 0.004 (benchmarks/results/2026-12-01-mapping-global-ba.txt).
    "ba_global_growth": 1.25,
    "ba_global_skip_redundant_points": True,
    # Fold checks of each mapped model against the verified pairs (lightsfm.checks), and
    # rounds of re-registering the photos a model misplaced (-1: no checks at all).
    "checks": checks.default_conf,
    "repair_rounds": 2,
    "pycolmap": {},  # any other IncrementalPipelineOptions field, e.g. {"mapper.max_reg_trials": 5}
}
flags: dict[str, str | tuple[str, str]] = {
    "method": ("--mapper", "auto (default), incremental, global (GLOMAP) or best (both); see README."),
    "max_num_models": ("--max-models", "Models kept when the scene splits."),
    "min_model_size": "Images a model needs to be kept.",
    "init_min_tri_angle": "Initial pair min angle (deg).",
    "min_tri_angle": "Triangulation min angle (deg).",
    "refine_focal_length": ("--refine-focal/--fix-focal", "Refine focal in BA."),
    "refine_principal_point": (
        "--refine-principal-point/--fix-principal-point",
        "Refine principal points while mapping.",
    ),
    "final_principal_point": (
        "--final-principal-point/--no-final-principal-point",
        "A last bundle adjustment that also refines principal points (kept where observable).",
    ),
    "refine_extra_params": ("--refine-distortion/--fix-distortion", "Refine distortion in BA."),
    "init_min_num_inliers": ("--init-min-inliers", "Inliers the initial image pair needs."),
    "abs_pose_min_num_inliers": ("--abs-pose-min-inliers", "Inliers to register an image."),
    "seed": "Random seed of the mapper.",
    "refine_intrinsics": "auto (none where every camera is known), none, focal or all.",
    "gps_priors": ("--gps-priors/--no-gps-priors", "GPS positions as priors in mapping (where informative)."),
    "refocus_above": "Map again from the focal found when it moved more than this share (0: never).",
}

COLOR_MAX_SIZE = 1600  # colours are sampled on a copy this large, not the full photo


class ColourTask:
    """One photo as a work item: (name, pixel positions) → the RGB at each, sampled on a copy
    of the upright photo at most COLOR_MAX_SIZE pixels long, or the reason it cannot be read.
    Decoding leaves the GIL, so two photos decode at once: mold_gold_cape's 119 photos are
    coloured in 1.3 s instead of 2.3-3.0 s, the same colours."""

    side_by_side = True

    def __init__(self, image_dir: Path) -> None:
        self.image_dir = Path(image_dir)

    def __call__(self, item: tuple[str, np.ndarray]) -> np.ndarray | str:
        name, xy = item
        try:
            rgb, (w, _) = load_image(self.image_dir / name, COLOR_MAX_SIZE)
        except ImageError as e:
            return str(e)
        ij = np.round(xy * (rgb.shape[1] / w)).astype(int)
        ij[:, 0] = ij[:, 0].clip(0, rgb.shape[1] - 1)
        ij[:, 1] = ij[:, 1].clip(0, rgb.shape[0] - 1)
        return rgb[ij[:, 1], ij[:, 0]]


def point_colors(image_dir: Path, rec: pycolmap.Reconstruction) -> None:
    """Colours every 3D point from the upright photos it was seen in."""
    items, ids = [], []
    for image in rec.images.values():
        if image.has_pose:
            seen = image.get_observation_points2D()  # (only keypoints that see a point are coloured)
            xy = np.array([p.xy for p in seen]).reshape(-1, 2) - 0.5  # COLMAP → pixel centres
            items.append((image.name, xy))
            ids.append(np.fromiter((p.point3D_id for p in seen), np.int64, len(seen)))
    observed: list[tuple[np.ndarray, np.ndarray]] = []
    for point_ids, colours in zip(ids, LocalExecutor().map(ColourTask(image_dir), items, "colour", "img"), strict=True):
        if isinstance(colours, str):
            logger.warning("no colours from %s", colours)
        else:
            observed.append((point_ids, colours))
    colmap.colorize(rec, observed)


MAPPER_FILE = Workspace.MAPPER  # in sparse/: {"method", "kept", "observations" per mapper run}


def choose_model(runs: dict[str, list], found: dict[str, checks.ModelCheck] | None = None) -> str:
    """The mapper whose largest model passes the fold checks (lightsfm.checks) and explains
    the most verified matches (observations).

    A folded or broken model cannot triangulate the matches across its fold. On
    ../shared/data this picks the better of the two on 4 of 5 scenes (the temple, whose
    global model folds: 6 699 vs 4 375 observations, mAA 0.985 vs 0.197; the dino, where
    incremental mapping goes astray: 1 393 vs 2 353, 0.471 vs 0.823) and costs 0.007 mAA
    on Herz-Jesus (8 834 vs 8 678 observations, 0.993 vs 1.000). With the ``fast`` preset
    it picks the dino's global model (1 544 vs 991 observations), which scores lower
    (0.242 vs 0.296): the rule is a good bet, not a guarantee.
    """
    found = found or {}

    def key(k: str) -> tuple[bool, int]:
        if not runs[k]:
            return (False, -1)
        return (not (k in found and found[k].suspect()), runs[k][0].compute_num_observations())

    return max(runs, key=key)


MIN_OBSERVATIONS_FOR_PRINCIPAL_POINT = 300  # per registered image: below, a model is thin (see _thin)


def refine_principal_points(
    rec: pycolmap.Reconstruction, conf: dict[str, Any], guard: bool = True
) -> tuple[pycolmap.Reconstruction, dict[str, Any]]:
    """A last bundle adjustment that frees the principal points too, kept only where the
    model can tell them: returns the model to use and what was decided.

    Left out of incremental mapping, where it makes weakly textured scenes fall apart
    (dinoSparseRing 0.466 → 0.188 mAA). Once the model stands, the refined principal points
    are kept when the bundle adjustment's own covariance pins each to within
    ``principal_point_max_sigma`` of the image's long side and puts it more than two
    standard deviations from the centre (measured, benchmarks/principal_point.py: the full
    temple ring moves it to within 5 px of its calibration at sigmas of 2-3 px, 0.938 → 0.983
    mAA; on half rings and the dark dino it wanders up to 740 px off at sigmas of 20-630 px,
    and kept would cost up to 0.87 mAA). The covariance is enough for cameras of a single
    photo, as long as photos with different principal points do not share one: on an
    internet-style copy of fountain-P11 (benchmarks/internet.py) a shared camera of crops and
    whole frames once missed by 60 px (mAA 0.175); with each crop a camera of its own, the
    four one-photo crops' principal points came out 1-6 px (x) and 9 px (y) from where the
    calibration and the crop put them (the centre: 9-68 px off in x), and requiring 8 photos per
    camera, as the rule did then, cost 0.26-0.39 mAA on the internet-style copies of the
    three Strecha scenes (fountain 0.535 vs 0.818, Herz-Jesus 0.461 vs 0.725, entry 0.371 vs
    0.760; the temple 0.942 either way; benchmarks/results/2026-12-01-internet-min-views.txt).
    What needs photos is the model that pins a camera down, not the camera: the model needs
    ``principal_point_min_photos`` registered photos (8; Herz-Jesus, the smallest scene the
    refinement helped, has 8). Five fountain photos at 320 px refined on their own land
    their centres 8.8 cm from 2 cm GPS instead of under 5 cm (tests/test_georef.py).
    Otherwise the centre stays. ``guard=False`` keeps the refined ones whatever the
    covariance says (for measuring the guard).
    """
    if rec.num_reg_images() == 0:
        return rec, {"refined": False, "why": "no registered images"}
    # (at most as many solver iterations as mapping's whole-model adjustments: tensorf_object80's
    # took 3.6 s to converge (the same at a limit of 50); after 25, 2.4 s, its principal point
    # 0.001 px from there)
    trial, sigmas = colmap.bundle.adjust_with_principal_points(
        rec,
        conf["refine_focal_length"],
        conf["refine_extra_params"],
        conf.get("num_threads") or os.cpu_count() or 1,
        conf.get("ba_global_max_iterations"),
        conf["ba_function_tolerance"],
    )
    residual = trial.compute_mean_reprojection_error() if trial.num_points3D() else 1.0
    cameras, keep = {}, bool(sigmas) and len(sigmas) == len(trial.cameras)
    views_of = Counter(im.camera_id for im in trial.images.values() if im.has_pose)
    enough = trial.num_reg_images() >= conf["principal_point_min_photos"]
    for camera_id, cam in trial.cameras.items():
        centre = np.array([cam.width, cam.height]) / 2
        found = np.asarray([cam.principal_point_x, cam.principal_point_y])
        sigma = sigmas.get(camera_id, np.full(2, np.inf)) * residual
        views = views_of[camera_id]
        known = bool(np.all(sigma <= conf["principal_point_max_sigma"] * max(cam.width, cam.height)))
        known = known and enough
        off_centre = bool(np.any(np.abs(found - centre) > 2 * sigma))
        keep = (keep and known and off_centre) or not guard
        cameras[str(camera_id)] = {
            "found": found.round(2).tolist(),
            "centre": centre.tolist(),
            "sigma_px": np.round(sigma, 2).tolist(),
            "views": views,
        }
    why = "pinned down and off centre" if keep else "not pinned down, or not clearly off centre: left as they were"
    return (trial if keep else rec), {"refined": keep, "why": why, "cameras": cameras}


def _thin(models: list[pycolmap.Reconstruction], num_images: int) -> bool:
    """No model, images left out (of ``num_images``), or too few observations per image to
    trust it (the threshold of the principal-point refinement): then the global mapper gets
    a try too."""
    if not models:
        return True
    rec = models[0]
    return (
        rec.num_reg_images() < num_images
        or rec.compute_mean_observations_per_reg_image() < MIN_OBSERVATIONS_FOR_PRINCIPAL_POINT
    )


def _check_and_repair(
    rec: pycolmap.Reconstruction,
    evidence: dict,
    database: Path,
    image_dir: Path,
    work_dir: Path,
    conf: dict[str, Any],
    names: list[str] | None = None,
    priors: bool = False,
    keypoints: dict[int, np.ndarray] | None = None,
) -> tuple[pycolmap.Reconstruction, checks.ModelCheck, dict[str, Any]]:
    """Checks a model against the verified pairs; photos it misplaced are taken out and
    registered again from the rest of the model (kept when that explains the pairs better).
    ``keypoints``: the database's (``colmap.keypoints``), if at hand."""
    found = checks.check_model(rec, evidence, conf["checks"], keypoints)
    repair: dict[str, Any] = {}
    for _ in range(conf["repair_rounds"]):
        misplaced = found.misplaced()
        if not misplaced:
            break
        options = colmap.mapper_options(conf, names, priors)
        fixed = colmap.reregister(database, image_dir, rec, misplaced, work_dir, options)
        after = checks.check_model(fixed, evidence, conf["checks"], keypoints)
        # better: explains more of the strong pairs, or places more of the photos their own
        # points support at no cost to the pairs
        better = after.unexplained_share() < found.unexplained_share() or (
            len(after.misplaced()) < len(misplaced) and after.unexplained_share() <= found.unexplained_share()
        )
        worse = not better or fixed.num_reg_images() < rec.num_reg_images()
        repair.setdefault("reregistered", []).extend(misplaced)
        if worse:
            repair["kept"] = "before"  # the mapper could not place them better
            break
        rec, found, repair["kept"] = fixed, after, "after"
    if repair:
        logger.info("re-registered %s: %s", ", ".join(repair["reregistered"]), repair["kept"])
    return rec, found, repair


def _registered(models: list[pycolmap.Reconstruction]) -> int:
    return models[0].num_reg_images() if models else 0


def _refocus(
    models: list[pycolmap.Reconstruction], guessed: dict[int, tuple[float, bool]], above: float
) -> dict[int, tuple[float, float]]:
    """Cameras mapped without a focal prior whose focal length moved by more than ``above`` (a
    share of the guess) in the model holding most of their photos: camera id → (guess, found)."""
    if above <= 0:
        return {}
    out = {}
    for cam_id, (guess, prior) in guessed.items():
        holding = [m for m in models if cam_id in m.cameras]
        if prior or not holding:
            continue
        rec = max(holding, key=lambda m: sum(im.camera_id == cam_id and im.has_pose for im in m.images.values()))
        found = float(rec.cameras[cam_id].mean_focal_length())
        if abs(found / guess - 1) > above:
            out[cam_id] = (guess, found)
    return out


def intrinsics_conf(conf: dict[str, Any], cameras_known: bool) -> dict[str, Any]:
    """The mapping settings with ``refine_intrinsics`` applied to the refinement flags."""
    mode = conf["refine_intrinsics"]
    if mode == "auto":
        if not cameras_known:
            return conf
        mode = "none"
    return {
        **conf,
        "refine_focal_length": mode != "none",
        "refine_principal_point": mode == "all",
        "refine_extra_params": mode == "all",
        "final_principal_point": False,
    }


def _linked_groups(database: Path, evidence: dict, min_size: int) -> list[list[str]]:
    """Names of the photos in each group linked by verified pairs (directly or through
    others) with at least ``min_size`` photos, largest first."""
    names = colmap.image_names(database)
    part = components(names, evidence)
    groups: dict[int, list[str]] = {}
    for i, name in names.items():
        groups.setdefault(part[i], []).append(name)
    return sorted((sorted(g) for g in groups.values() if len(g) >= min_size), key=lambda g: (-len(g), g[0]))


def _map_part(
    database: Path,
    image_dir: Path,
    output: Path,
    conf: dict[str, Any],
    evidence: dict,
    names: list[str] | None,
    priors: bool = False,
    keypoints: dict[int, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Maps the photos ``names`` of the database (all when None): incremental, global too
    where ``auto`` calls for it, the better kept, then once more from the focal lengths
    found where they moved far (refocus). ``priors``: the database's position priors in
    bundle adjustment; ``keypoints``: its keypoints (``colmap.keypoints``), if at hand."""
    ws = Workspace(output)
    num_images = len(names) if names is not None else colmap.num_images(database)

    def map_once(db: Path) -> tuple[str, dict[str, list], dict[str, checks.ModelCheck], dict[str, dict]]:
        runs: dict[str, list[pycolmap.Reconstruction]] = {}
        found: dict[str, checks.ModelCheck] = {}
        repairs: dict[str, dict] = {}

        def run(method: str, source: Path = db) -> None:
            if method == "incremental":
                models = colmap.incremental_mapping(
                    source, image_dir, ws.sparse, colmap.mapper_options(conf, names, priors)
                )
            else:
                models = colmap.global_mapping(source, image_dir, ws.sparse, colmap.global_options(conf, names))
            models = models[: conf["max_num_models"]]
            if models and conf["repair_rounds"] >= 0:
                models[0], found[method], repair = _check_and_repair(
                    models[0], evidence, db, image_dir, output / "sparse.repair", conf, names, priors, keypoints
                )
                if repair:
                    repairs[method] = repair
            runs[method] = models

        def join_supported() -> bool:
            return _join_supported(
                runs["incremental"],
                runs["global"][0],
                evidence,
                conf["abs_pose_min_num_inliers"],
                conf["checks"],
                keypoints,
            )

        if conf["method"] != "global":
            run("incremental")
        if conf["method"] in ("global", "best") or (
            conf["method"] == "auto"
            and (_thin(runs["incremental"], num_images) or ("incremental" in found and found["incremental"].suspect()))
        ):
            run("global")
        chosen = choose_model(runs, found)
        if chosen == "global" and runs.get("incremental") and not join_supported():
            # The global model joins photos incremental mapping kept in separate models
            # against their links: on no pair as strong as one image registration needs (an
            # object turned over half-way, mold_gold_cape's first 79 photos: [42, 37], linked
            # by pairs of 21, 18 and 16 inliers, was joined 159 degrees off), or contradicting
            # one. Where it contradicts a link, the pairs it did follow may be ambiguous ones (two
            # narrow views of an object explain their matches under rotations far apart: the
            # dino's 0013-0014, 82 % at 122° off): joined again on the contradicted links
            # alone, the model is kept if it then explains every link. Separate models are
            # honest; a fold is not.
            again = _without_links(db, runs["incremental"], runs["global"][0], evidence, conf, output, keypoints)
            rejoined, added = False, []
            if again is not None:
                first_join = [dict(d) for d in (runs, found, repairs)]
                found.pop("global", None)
                repairs.pop("global", None)
                run("global", again)
                again.unlink(missing_ok=True)
                rejoined = bool(runs["global"]) and join_supported()
                if rejoined and runs["global"][0].num_reg_images() < first_join[0]["global"][0].num_reg_images():
                    # photos only the pairs taken out placed: registered from the whole database
                    # (the calibrated dino's 0013)
                    model = runs["global"][0]
                    more = colmap.reregister(
                        db, image_dir, model, [], output / "sparse.repair", colmap.mapper_options(conf, names, priors)
                    )
                    more_found = checks.check_model(more, evidence, conf["checks"], keypoints)
                    if more.num_reg_images() > model.num_reg_images() and not more_found.suspect():
                        runs["global"][0], found["global"] = more, more_found
                        had = {im.name for im in model.images.values() if im.has_pose}
                        added = sorted(im.name for im in more.images.values() if im.has_pose and im.name not in had)
                if not rejoined:  # the first join's runs, checks and repairs, as they were
                    for d, before in zip((runs, found, repairs), first_join, strict=True):
                        d.clear()
                        d.update(before)
            if rejoined:
                # (joined again on the links the first join contradicted; ``registered``: photos
                # registered afterwards from the whole database)
                repairs["global_rejoin"] = {"registered": added}
            else:
                logger.info("mapping: the global model joins separate models against their links; kept incremental")
                repairs["global_join"] = "unsupported: the incremental models kept"
                chosen = "incremental"
        if len(runs) > 1 and runs[chosen]:
            counts = {k: m[0].compute_num_observations() if m else 0 for k, m in runs.items()}
            logger.info("mapping: kept the %s model (observations: %s)", chosen, counts)
        return chosen, runs, found, repairs

    guessed = colmap.focal_lengths(database)
    chosen, runs, found, repairs = map_once(database)
    refocused, first_pass = _refocus(runs[chosen], guessed, conf["refocus_above"]), None
    # A second pass from the focal lengths the first one found, on a copy of the database; as
    # starting values, not priors (as priors the dino scored 0.713 over 8 settings, 0.746 not).
    if refocused:
        logger.info("mapping again from the focal lengths found: %s", refocused)
        first = (chosen, runs, found, repairs)
        again = output / "database.refocus.db"
        try:
            shutil.copyfile(database, again)
            colmap.set_focal_lengths(again, {c: (f, False) for c, (_, f) in refocused.items()})
            chosen, runs, found, repairs = map_once(again)
        finally:
            again.unlink(missing_ok=True)
        first_pass = {"kept": first[0], "registered": _registered(first[1][first[0]])}
        if _registered(runs[chosen]) < first_pass["registered"]:  # it placed fewer photos: keep the first
            chosen, runs, found, repairs = first
            first_pass["kept_first"] = True
    return {
        "images": num_images,
        "models": runs[chosen],
        "chosen": chosen,
        "runs": runs,
        "found": found,
        "repairs": repairs,
        "refocused": refocused,
        "first_pass": first_pass,
        "global_join_unsupported": "global_join" in repairs,
    }


def _sides(separate: list[pycolmap.Reconstruction], joined: pycolmap.Reconstruction) -> dict[int, int]:
    """Photo id → the first (largest) of the ``separate`` models that holds it, for the photos
    ``joined`` holds too."""
    held = {im.image_id for im in joined.images.values() if im.has_pose}
    side: dict[int, int] = {}
    for k, rec in enumerate(separate):
        for im in rec.images.values():
            if im.has_pose and im.image_id in held:
                side.setdefault(im.image_id, k)
    return side


def _links(
    separate: list[pycolmap.Reconstruction], joined: pycolmap.Reconstruction, evidence: dict, min_inliers: int
) -> dict[tuple[int, int], Any]:
    """The verified pairs of at least ``min_inliers`` inliers between photos of different
    ``separate`` models (``_sides``) that ``joined`` holds."""
    side = _sides(separate, joined)
    return {
        (a, b): m
        for (a, b), m in evidence.items()
        if len(m) >= min_inliers and a in side and b in side and side[a] != side[b]
    }


def _contradicted_links(
    separate: list[pycolmap.Reconstruction],
    joined: pycolmap.Reconstruction,
    evidence: dict,
    min_inliers: int,
    check_conf: dict[str, Any],
    keypoints: dict[int, np.ndarray] | None = None,
) -> set[tuple[str, str]]:
    """The links between the ``separate`` models (``_links``) that ``joined`` contradicts, by photo names."""
    found = checks.check_model(joined, _links(separate, joined, evidence, min_inliers), check_conf, keypoints)
    return {(p.image1, p.image2) for p in found.contradicted(every=True)}


def _join_supported(
    separate: list[pycolmap.Reconstruction],
    joined: pycolmap.Reconstruction,
    evidence: dict,
    min_inliers: int,
    check_conf: dict[str, Any],
    keypoints: dict[int, np.ndarray] | None = None,
) -> bool:
    """Whether the photos of the ``separate`` models that ``joined`` holds are linked, within
    ``joined``, by verified pairs of at least ``min_inliers`` inliers (each separate model's
    photos counted as linked already, and so is a photo two of them share), and ``joined``
    contradicts none of those between them (``_links``).

    (A contradicted link means the models were put together against their own matches: the
    dino ring with its true pair 0009-0012, as in the 309-photo mix, came out of incremental
    mapping as two honest models, [1-6, 13-16] and [7-13]; the global mapper joined them
    with 7-13 turned 122°, explaining none of the 39 inliers of the link 0006-0007.)"""
    held = {im.image_id for im in joined.images.values() if im.has_pose}
    edges, firsts = [], []
    for rec in separate:  # each separate model's photos: linked already
        ids = [im.image_id for im in rec.images.values() if im.has_pose and im.image_id in held]
        edges += [(ids[0], i) for i in ids[1:]]
        firsts += ids[:1]
    if _contradicted_links(separate, joined, evidence, min_inliers, check_conf, keypoints):
        return False
    edges += [(a, b) for (a, b), m in evidence.items() if a in held and b in held and len(m) >= min_inliers]
    part = components(held, edges)
    return len({part[i] for i in firsts}) <= 1


def _without_links(
    database: Path,
    separate: list[pycolmap.Reconstruction],
    joined: pycolmap.Reconstruction,
    evidence: dict,
    conf: dict[str, Any],
    output: Path,
    keypoints: dict[int, np.ndarray] | None = None,
) -> Path | None:
    """Where ``joined`` contradicts links between the ``separate`` models: a copy of the
    database in which those are the only pairs between them (None otherwise). If ``joined``
    went wrong on ambiguous links, the contradicted ones then place the models."""
    contradicted = _contradicted_links(
        separate, joined, evidence, conf["abs_pose_min_num_inliers"], conf["checks"], keypoints
    )
    if not contradicted:
        return None
    side, name = _sides(separate, joined), {i: im.name for i, im in joined.images.items()}
    others = [
        (a, b)
        for a, b in evidence
        if a in side and b in side and side[a] != side[b] and (name[a], name[b]) not in contradicted
    ]
    if not others:  # the same pairs: the same join
        return None
    copy = Path(output) / "database.join.db"
    shutil.copyfile(database, copy)
    colmap.delete_verified_pairs(copy, others)
    return copy


def main(
    database: Path, image_dir: Path, output: Path, conf: dict[str, Any] | None = None, cameras_known: bool = False
) -> list[pycolmap.Reconstruction]:
    """Maps the verified database into ``output/sparse/<k>``; returns the models, largest first.

    ``cameras_known``: every photo's intrinsics were given (``refine_intrinsics = auto`` then
    keeps them)."""
    conf = intrinsics_conf({**default_conf, **(conf or {})}, cameras_known)
    # (pycolmap's mapper finds no model when asked to use priors that are not there)
    priors = bool(conf["gps_priors"]) and colmap.num_position_priors(database) > 0
    output = Path(output)
    ws = Workspace(output)
    if conf["method"] not in ("auto", "incremental", "global", "best"):
        raise ValueError(f"unknown mapping method {conf['method']!r}; auto, incremental, global or best")
    evidence = colmap.verified_pairs(database)
    keypoints = colmap.keypoints(database)  # (for the fold checks)
    # Each group of photos linked by verified pairs is mapped on its own, with its own choice
    # of mapper and refocus: in a folder of several scenes the mapper chosen for the largest
    # one decided for all (the 309-photo mix split the dino ring in two models, 0.467,
    # where alone it maps whole, 0.989).
    parts = _linked_groups(database, evidence, conf["min_model_size"])
    mapped = [
        _map_part(database, image_dir, output, conf, evidence, names if len(parts) > 1 else None, priors, keypoints)
        for names in parts or [None]
    ]
    models = sorted((m for part in mapped for m in part["models"]), key=lambda r: -r.num_reg_images())
    models = models[: conf["max_num_models"] if len(parts) <= 1 else None]
    main_part = max(mapped, key=lambda part: _registered(part["models"]))
    chosen, runs, found, repairs = main_part["chosen"], main_part["runs"], main_part["found"], main_part["repairs"]
    refocused, first_pass = main_part["refocused"], main_part["first_pass"]
    counts = {k: m[0].compute_num_observations() if m else 0 for k, m in runs.items()}
    principal_points = []
    if conf["final_principal_point"]:
        for k, rec in enumerate(models):
            models[k], decision = refine_principal_points(rec, conf)
            principal_points.append(decision)
    sparse_tmp = ws.sparse_new
    shutil.rmtree(sparse_tmp, ignore_errors=True)
    for k, rec in enumerate(models):
        point_colors(image_dir, rec)
        d = sparse_tmp / str(k)
        d.mkdir(parents=True)
        write_model(rec, d)
    if models:  # which mapper made the models, what it was weighed against, and whether it holds
        record = {
            "method": conf["method"],
            "kept": chosen,
            "observations": counts,
            "checks": {k: c.summary() for k, c in found.items()},
            "repairs": repairs,
            "principal_points": principal_points,
            "refocused": {str(c): [round(f0, 1), round(f1, 1)] for c, (f0, f1) in refocused.items()},
            "first_pass": first_pass,
            "global_join_unsupported": main_part["global_join_unsupported"],
        }
        if len(mapped) > 1:  # the others: how each linked group was mapped
            record["parts"] = [
                {
                    "images": part["images"],
                    "kept": part["chosen"],
                    "registered": [m.num_reg_images() for m in part["models"]],
                    "refocused": {str(c): [round(f0, 1), round(f1, 1)] for c, (f0, f1) in part["refocused"].items()},
                    "global_join_unsupported": part["global_join_unsupported"],
                    "checks": {k: c.summary() for k, c in part["found"].items() if k == part["chosen"]},
                }
                for part in mapped
            ]
        (sparse_tmp / MAPPER_FILE).write_text(json.dumps(record, indent=1))
    ws.replace_models(new=bool(models))
    if models:
        shutil.copyfile(ws.model(0) / "points.ply", ws.tmp(ws.points))
        os.replace(ws.tmp(ws.points), ws.points)
    else:
        ws.points.unlink(missing_ok=True)  # not a previous run's cloud
    return models


def write_model(rec: pycolmap.Reconstruction, folder: Path) -> None:
    """``rec`` as COLMAP binary files and points.ply in ``folder``.

    pycolmap does not report a failed write (a full disk leaves a truncated images.bin and
    no error), so a write that may have run out of room is an OSError here, before the
    model is renamed into place.
    """
    rec.write(folder)
    rec.export_PLY(folder / "points.ply")
    check_written(sorted(Path(folder).iterdir()))


def read_mapper(output: Path) -> dict[str, Any]:
    """What ``sparse/mapper.json`` says (empty when absent: no model, or an older run)."""
    path = Workspace(output).mapper
    return json.loads(path.read_text()) if path.exists() else {}


def load_models(output: Path) -> list[pycolmap.Reconstruction]:
    """The models a previous run wrote under ``output/sparse``, largest first."""
    sparse = Workspace(output).sparse
    if not sparse.is_dir():
        return []
    dirs = sorted((d for d in sparse.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))
    return [colmap.read_model(d) for d in dirs]

"""Adding photos to a finished model: ``lightsfm register OUT NEW_PHOTOS/``.

The new photos go through the same stages as the model's (turn detection, extraction into
the same features file, matching into the same matches file), paired with their most
similar photos of the model (the run's own pairing) and with each other; then the
incremental mapper continues from the model with its poses held fixed, registers the new
photos, triangulates their points and refines only what is new. New photos share the
model's cameras where their EXIF says so (whose intrinsics then stay fixed too) and come
after the model's photos, whose image ids stay as they were. The grown model
replaces ``OUT/sparse/`` only once it is complete; a killed run leaves the old one.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from . import colmap, config, extract, mapping, match, orientation, pairs, verify
from .errors import LightsfmError
from .images import list_images, read_infos
from .io import output_lock
from .workspace import Workspace

logger = logging.getLogger(__name__)


def _photo_folder(ws: Workspace, old_dir: Path, old_names: list[str], new_dir: Path) -> tuple[Path, list[str]]:
    """One folder that holds the model's photos and the new ones, and the new ones' names.

    New photos in the model's own folder keep their names; from another folder they are
    linked into ``OUT/photos/<that folder's name>/`` beside links to the model's photos.
    A file the model already has (the same file, through any link) is not new.
    """
    known = {(old_dir / n).resolve() for n in old_names}
    if new_dir.resolve() == old_dir.resolve():
        return old_dir, [n for n in list_images(old_dir) if (old_dir / n).resolve() not in known]
    fresh = [n for n in list_images(new_dir) if (new_dir / n).resolve() not in known]
    top = {n.split("/")[0] for n in old_names}
    prefix = new_dir.resolve().name or "added"
    while prefix in top:
        prefix += "+"
    folder = ws.output / "photos"
    new_names = [f"{prefix}/{n}" for n in fresh]
    links = [(folder / n, (old_dir / n).resolve()) for n in old_names]
    links += [(folder / p, (new_dir / n).resolve()) for p, n in zip(new_names, fresh, strict=True)]
    for link, target in links:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and link.resolve() == target:
            continue
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    return folder, new_names


def main(
    output: Path, new_dir: Path, overrides: dict[str, Any] | None = None, refine_all: bool = False
) -> dict[str, Any]:
    """Registers the photos of ``new_dir`` into the model of the run in ``output``; returns
    what registered and why the others did not (also in summary.json's ``register``).

    The model's poses and cameras stay as they were, unless ``refine_all``: then one bundle
    adjustment of the whole grown model follows (old poses and intrinsics move, principal
    points as in mapping's final rule). A model mapped from few photos is less precise than
    one of all photos, and fixed poses keep it so: fountain-P11's first 7 photos score 0.929
    among themselves, against 0.986 in a model of all 11 (benchmarks/register.py)."""
    ws = Workspace(output)
    summary = ws.summary()
    if not Path(new_dir).is_dir():
        raise LightsfmError(f"{new_dir}: not a folder of photos")
    conf = config.merge(config.merge(config.defaults(), summary["conf"]), overrides or {})
    config.validate(conf)
    t0 = time.perf_counter()
    with output_lock(ws.output):
        ws.remove_temporaries()  # (first: a run killed while replacing the models left them aside)
        models = mapping.load_models(ws.output)
        if not models:
            raise LightsfmError(f"{ws.sparse}: no model to add photos to; run `lightsfm reconstruct` first")
        old_dir, old_names = Path(summary["image_dir"]), list(summary["image_names"])
        image_dir, new_names = _photo_folder(ws, old_dir, old_names, Path(new_dir))
        if not new_names:
            raise LightsfmError(f"{new_dir}: no photo that the model does not already have")
        old_infos, _ = read_infos(image_dir, old_names)
        new_infos, skipped = read_infos(image_dir, new_names)
        old_files = {i.name for i in old_infos}
        new_infos = [i for i in new_infos if i.name not in old_files]
        # the new photos after the model's: the model's image ids and cameras stay as they were
        infos = old_infos + new_infos
        names = [i.name for i in infos]
        device = conf["device"]
        rotations: dict[str, int] = {}
        if conf["features"]["upright"]:
            f = conf["features"]
            rotations, failed = orientation.main(image_dir, names, ws.output, device, None, f["masks"], f["cheap"])
            skipped.update({n: r for n, r in failed.items() if n in new_names})
        feature_file, failed = extract.main(image_dir, names, ws.output, conf["features"], device, rotations)
        skipped.update(failed)
        new = {i.name for i in new_infos} - set(skipped)
        infos = [i for i in infos if i.name not in skipped]
        names = [i.name for i in infos]
        _, candidates = pairs.main(names, ws.output, conf["pairs"], image_dir, feature_file, device)
        added_pairs = [p for p in candidates if p[0] in new or p[1] in new]
        pair_file = ws.output / summary["files"]["pairs"]
        old_pairs = pairs.read_pairs(pair_file)
        all_pairs = old_pairs + [p for p in added_pairs if p not in set(old_pairs)]
        pairs.write_pairs(pair_file, all_pairs)  # the next photos added pair against these too
        match_file = match.main(all_pairs, feature_file, ws.output, conf["matching"], device)
        vstats = verify.main(infos, all_pairs, feature_file, match_file, ws.database, conf["verify"])
        moved = colmap.cameras_moved(ws.database, models[0])
        if moved:
            raise LightsfmError(
                f"{ws.database}: the new photos put {moved[0]} (and {len(moved) - 1} more of the model's photos) "
                "on another camera than the model's (photos of one size without EXIF that the new ones link "
                "differently); run `lightsfm reconstruct` on all photos instead"
            )
        options = colmap.mapper_options(conf["mapping"])
        if {i.camera_key for i in new_infos} <= {i.camera_key for i in old_infos}:
            # every new photo is on one of the model's cameras: its intrinsics stay fixed too
            options.ba_refine_focal_length = options.ba_refine_principal_point = False
            options.ba_refine_extra_params = False
        grown = colmap.reregister(ws.database, image_dir, models[0], [], ws.output / "register.tmp", options)
        refined: dict[str, Any] | None = None
        if refine_all:
            known = verify.known_cameras(infos, conf["verify"])
            mconf = {**mapping.default_conf, **conf["mapping"]}
            mconf = mapping.intrinsics_conf(mconf, all(i.name in known for i in infos))
            threads = mconf.get("num_threads") or os.cpu_count() or 1
            grown = colmap.bundle.adjust(
                grown,
                mconf["refine_focal_length"],
                mconf["refine_extra_params"],
                threads,
                mconf["ba_function_tolerance"],
            )
            refined = {"principal_points": None}
            if mconf["final_principal_point"]:
                grown, refined["principal_points"] = mapping.refine_principal_points(grown, mconf)
        mapping.point_colors(image_dir, grown)
        models[0] = grown
        tmp = ws.sparse_new
        shutil.rmtree(tmp, ignore_errors=True)
        for k, rec in enumerate(models):
            (tmp / str(k)).mkdir(parents=True)
            mapping.write_model(rec, tmp / str(k))
        if ws.mapper.exists():
            shutil.copyfile(ws.mapper, tmp / ws.mapper.name)
        ws.replace_models()  # (killed between its renames: the next run puts the old models back)
        shutil.copyfile(ws.model(0) / "points.ply", ws.output / "points.ply.tmp")
        os.replace(ws.output / "points.ply.tmp", ws.points)
        registered = {im.name for im in grown.images.values() if im.has_pose}
        verified = {n: 0 for n in new}
        for a, b in vstats["inliers"]:
            for x in (a, b):
                if x in verified:
                    verified[x] += 1
        record = {
            "added": sorted(new | set(skipped)),
            "registered": sorted(new & registered),
            "not_registered": {
                n: f"too few verified matches with the model's photos ({verified[n]} verified pairs)"
                for n in sorted(new - registered)
            },
            "skipped": skipped,
            "pairs_matched": len(added_pairs),
            "refined_all": refined,
            "wall_s": round(time.perf_counter() - t0, 2),
        }
        posed = {im.name for m in models for im in m.images.values() if im.has_pose}
        summary.update(
            image_dir=str(image_dir.resolve()),
            image_names=names,
            images=summary["images"] + len(record["added"]),
            skipped={**summary.get("skipped", {}), **skipped},
            unregistered=[n for n in names if n not in posed],
            models=[colmap.summary(m) for m in models],
            register=record,
        )
        ws.write_summary(summary)
    logger.info("registered %d of %d new photos", len(record["registered"]), len(record["added"]))
    return record


def format_record(record: dict[str, Any]) -> str:
    lines = [f"registered {len(record['registered'])} of {len(record['added'])} new photos in {record['wall_s']:.1f}s"]
    lines += [f"  not registered {n}: {why}" for n, why in record["not_registered"].items()]
    lines += [f"  skipped {n}: {why}" for n, why in record["skipped"].items()]
    return "\n".join(lines)

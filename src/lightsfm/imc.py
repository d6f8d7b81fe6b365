"""Run lightsfm on data in the Image Matching Challenge 2023 layout → ``submission.csv``.

``DATA_DIR/train_labels.csv`` (or a sample submission) lists dataset, scene and
image_path of every image; each scene is reconstructed on its own. An image registered
in any model of its scene gets that model's pose (the largest model wins); the others
get R = I, t = 0, as in IMC submissions.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from . import executor, pipeline
from .colmap import poses_from_models
from .errors import LightsfmError
from .evaluate import Pose, placeholder, write_poses

logger = logging.getLogger(__name__)


def read_scene_lists(listing: Path) -> dict[tuple[str, str], list[str]]:
    """{(dataset, scene): [image_path, ...]} from a labels or sample-submission CSV."""
    scenes: dict[tuple[str, str], list[str]] = defaultdict(list)
    try:
        with open(listing, newline="") as f:
            for row in csv.DictReader(f):
                scenes[(row["dataset"], row["scene"])].append(row["image_path"])
    except (OSError, KeyError) as e:
        raise LightsfmError(f"{listing}: not an IMC labels/submission CSV ({e})") from None
    return dict(scenes)


def find_listing(data_dir: Path) -> Path:
    for name in ("train_labels.csv", "sample_submission.csv"):
        if (Path(data_dir) / name).is_file():
            return Path(data_dir) / name
    raise LightsfmError(f"{data_dir}: no train_labels.csv or sample_submission.csv")


def main(
    data_dir: Path,
    output: Path,
    conf: dict[str, Any] | None = None,
    listing: Path | None = None,
    scenes: list[str] | None = None,
    write_report: bool = True,
    thresholds: Path | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Reconstructs every listed scene; returns the submission path and per-scene run info."""
    data_dir, output = Path(data_dir), Path(output)
    listing = Path(listing) if listing else find_listing(data_dir)
    if thresholds is None and (data_dir / "thresholds.csv").is_file():
        thresholds = data_dir / "thresholds.csv"
    scene_lists = read_scene_lists(listing)
    if scenes:
        unknown = set(scenes) - {f"{d}/{s}" for d, s in scene_lists}
        if unknown:
            raise LightsfmError(f"{listing}: no scene {sorted(unknown)[0]}")
        scene_lists = {k: v for k, v in scene_lists.items() if f"{k[0]}/{k[1]}" in scenes}
    output.mkdir(parents=True, exist_ok=True)
    submission: dict[tuple[str, str], dict[str, Pose]] = {}
    runs: dict[str, Any] = {}
    # one executor for every scene: a Ray cluster is joined, and its workers started, once
    with executor.from_conf({**executor.default_conf, **(conf or {}).get("run", {})}) as ex:
        for (ds, scene), paths in scene_lists.items():
            image_dir = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
            names = [Path(p).relative_to(image_dir).as_posix() for p in paths]
            logger.info("scene %s/%s: %d images", ds, scene, len(names))
            t = time.perf_counter()
            try:
                result = pipeline.reconstruct(
                    data_dir / image_dir, output / ds / scene, conf, image_names=names, executor=ex
                )
                poses = poses_from_models(result.models, names, result.stats.get("duplicates"))
                runs[f"{ds}/{scene}"] = {**result.summary(), "wall_s": time.perf_counter() - t}
                if write_report and result.models:
                    from . import report

                    # Ground truth only comes with a labels file, not with a sample submission.
                    gt = listing if listing.name == "train_labels.csv" else None
                    report.main(
                        output / ds / scene, labels=gt, thresholds=thresholds if gt else None, scene_key=f"{ds}/{scene}"
                    )
            except LightsfmError as e:
                logger.warning("scene %s/%s failed: %s", ds, scene, e)
                poses = {}
                runs[f"{ds}/{scene}"] = {"error": str(e), "wall_s": time.perf_counter() - t}
            submission[(ds, scene)] = {p: poses.get(n, placeholder()) for p, n in zip(paths, names, strict=True)}
    path = output / "submission.csv"
    write_poses(path, submission)
    return path, runs

"""Does the final principal-point refinement explain the matches clearly better where it pays?

    python benchmarks/pp_gain.py RUNS [--radial] [--data ../shared/data]

RUNS holds finished runs as RUNS/<dataset>/<scene>/ (benchmark.py's OUT/lightsfm). For each
scene's model: the principal points are put back at the image centres and the model is
adjusted once with them held (the model before the refinement, near enough), then adjusted
once with them free (``colmap.bundle.adjust_with_principal_points``, what
``mapping.refine_principal_points`` tries). Printed: the mean reprojection error of each,
its relative drop, where the principal point went, and the mAA of each. An "explains the
matches clearly better" guard (issue #17) would keep the refinement only above some drop.

``--radial``: the same question for distortion. Each model whose camera has none
(SIMPLE_PINHOLE) is adjusted once as it is and once as SIMPLE_RADIAL with k1 freed from 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchmark as bm  # noqa: E402  (sets TQDM_DISABLE, imports cv2 before pycolmap)
import pycolmap  # noqa: E402
from loso_rules import scenes_of  # noqa: E402

from lightsfm import evaluate as ev  # noqa: E402
from lightsfm.colmap import bundle  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path)
    ap.add_argument("--radial", action="store_true", help="free a radial term instead")
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data")
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    labels = ev.read_poses(args.data / "train_labels.csv")
    thresholds = ev.read_thresholds(args.data / "thresholds.csv")
    for key, (_, names, paths, scene) in scenes_of(args.data).items():
        folder = args.runs / scene[0] / scene[1] / "sparse" / "0"
        if not folder.is_dir():
            continue
        rec = pycolmap.Reconstruction(str(folder))
        if args.radial and any(cam.model.name != "SIMPLE_PINHOLE" for cam in rec.cameras.values()):
            print(f"{key:34s} has distortion terms already ({next(iter(rec.cameras.values())).model.name})")
            continue
        (name0, rec0), (name1, rec1), what = radial(rec) if args.radial else principal_point(rec)
        errors = []
        for m in (rec0, rec1):
            m.update_point_3d_errors()
            errors.append(m.compute_mean_reprojection_error())
        maa = [bm.score([m], paths, names, labels[scene], thresholds.get(scene))["mAA"] for m in (rec0, rec1)]
        print(
            f"{key:34s} error {name0} {errors[0]:.4f} {name1} {errors[1]:.4f} px "
            f"(drop {100 * (errors[0] - errors[1]) / errors[0]:.2f} %), {what}, "
            f"mAA {name0} {maa[0]:.3f} {name1} {maa[1]:.3f}",
            flush=True,
        )


Compared = tuple[tuple[str, pycolmap.Reconstruction], tuple[str, pycolmap.Reconstruction], str]


def principal_point(rec: pycolmap.Reconstruction) -> Compared:
    """The model adjusted with its principal points at the centres, then with them freed."""
    centred = pycolmap.Reconstruction(rec)
    for cam in centred.cameras.values():
        cam.principal_point_x, cam.principal_point_y = cam.width / 2, cam.height / 2
    centred = bundle.adjust(centred, True, True, 2)
    refined, _ = bundle.adjust_with_principal_points(centred, True, True, 2)
    cam = next(iter(refined.cameras.values()))
    moved = f"{cam.principal_point_x - cam.width / 2:+.1f}, {cam.principal_point_y - cam.height / 2:+.1f} px"
    return ("centre", centred), ("refined", refined), f"principal point {moved} from the centre"


def radial(rec: pycolmap.Reconstruction) -> Compared:
    """The model adjusted as it is (SIMPLE_PINHOLE), then with a radial term (k1) freed."""
    pinhole = bundle.adjust(rec, True, True, 2)
    with_k1 = pycolmap.Reconstruction(rec)
    for cam in list(with_k1.cameras.values()):
        f, cx, cy = cam.params
        with_k1.cameras[cam.camera_id] = pycolmap.Camera(
            model="SIMPLE_RADIAL", width=cam.width, height=cam.height, params=[f, cx, cy, 0.0], camera_id=cam.camera_id
        )
    with_k1 = bundle.adjust(with_k1, True, True, 2)
    return ("pinhole", pinhole), ("radial", with_k1), f"k1 {next(iter(with_k1.cameras.values())).params[3]:+.4f}"


if __name__ == "__main__":
    main()

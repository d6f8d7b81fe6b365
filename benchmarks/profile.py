"""Where lightsfm's time goes: one scene under pyinstrument, summed by component.

    python benchmarks/profile.py [--scene strecha/fountain-P11] [--preset default] [--set k=v ...]
    PYTHONPATH=outputs/worktrees/<sha>/src python benchmarks/profile.py ...   # an earlier commit

Runs ``pipeline.reconstruct`` from an empty output folder (torch and the models already
imported, as in benchmark.py), prints the wall time of each component (the calls of the
functions listed in COMPONENTS; a component called inside another, e.g. image decoding
inside turn detection, counts as the outer one) and writes the full profile to
OUT/profile.html.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: E402,F401  (before pycolmap)
import pycolmap  # noqa: E402
from pyinstrument import Profiler  # noqa: E402

from lightsfm import config, imc, pipeline  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# component: function names (as pyinstrument reports them) whose time it is
COMPONENTS = {
    "turn detection + pre-matching": ["detect"],
    "ALIKED (main extraction)": ["AlikedExtractor.__call__"],
    "image decoding": ["load_image"],
    "LightGlue": ["LightGlueMatcher.__call__"],
    "mutual nearest neighbours": ["MutualNNMatcher.__call__"],
    "RANSAC (matching's quick check)": ["HybridMatcher._inliers"],
    "verification": ["main@verify.py"],
    "incremental mapping": ["incremental_mapping"],
    "final bundle adjustment": ["refine_principal_points"],
}


def _walk(frame, found: dict[str, float]) -> None:
    """Adds each frame of a component to it; the outermost component takes all its time."""
    names = {
        frame.function,
        f"{getattr(frame, 'class_name', None)}.{frame.function}",
        f"{frame.function}@{Path(frame.file_path or '').name}",
    }
    hit = next((c for c, fns in COMPONENTS.items() if names & set(fns)), None)
    if hit:
        found[hit] = found.get(hit, 0.0) + frame.time
        return
    for child in frame.children:
        _walk(child, found)


def main() -> None:
    from benchmark import parse_set

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--scene", default="strecha/fountain-P11")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "profile")
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 3

    conf = config.load(args.preset, overrides=parse_set(args.set))
    scenes = imc.read_scene_lists(args.data / "train_labels.csv")
    paths = scenes[tuple(args.scene.split("/"))]
    image_dir = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
    names = [Path(p).relative_to(image_dir).as_posix() for p in paths]
    out = args.out / args.scene
    shutil.rmtree(out, ignore_errors=True)

    profiler = Profiler(interval=0.002)
    profiler.start()
    t = time.perf_counter()
    pipeline.reconstruct(args.data / image_dir, out, conf, image_names=names)
    wall = time.perf_counter() - t
    profiler.stop()
    found: dict[str, float] = {}
    _walk(profiler.last_session.root_frame(), found)
    print(f"{args.scene}, preset {args.preset} {' '.join(args.set)}: {wall:.1f} s")
    for c in COMPONENTS:
        if c in found:
            print(f"  {c:34s} {found[c]:6.1f} s  {100 * found[c] / wall:4.0f} %")
    rest = wall - sum(found.values())
    print(f"  {'everything else':34s} {rest:6.1f} s  {100 * rest / wall:4.0f} %")
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.html").write_text(profiler.output_html())
    print(f"profile: {out / 'profile.html'}")


if __name__ == "__main__":
    main()

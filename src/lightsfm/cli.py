"""The ``lightsfm`` command: ``reconstruct`` runs everything; each stage is also a subcommand.

Exit status: 0 success, 1 failure, 2 bad usage, 3 partial success (a model was built but
some images were skipped or left unregistered), 4 the model failed its fold checks (it
contradicts verified pairs: it may be folded; see the summary's warning).
"""

from __future__ import annotations

import errno
import json
import logging
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from . import __version__, config
from .errors import LightsfmError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Photos → cameras and a sparse 3D model, offline on a CPU (ALIKED + LightGlue + pycolmap).",
)
logger = logging.getLogger("lightsfm")
EXIT_PARTIAL = 3
EXIT_SUSPECT = 4

# Options shared by several subcommands (None: keep the preset's value).
Output = Annotated[Path, typer.Option("--output", "-o", help="Output folder (created; reused to resume).")]
Preset = Annotated[str, typer.Option(help=f"Named settings: {', '.join(config.PRESETS)}.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="TOML file of settings (see README).")]
Device = Annotated[str | None, typer.Option(help="Torch device: cpu, cuda, cuda:1, mps.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs and full tracebacks.")]
Model = Annotated[str | None, typer.Option("--model", help="ALIKED variant: aliked-n16, -n16rot, -n32, -t16.")]
MaxKp = Annotated[int | None, typer.Option("--max-keypoints", help="Keypoints per image (ALIKED).")]
ResizeMax = Annotated[int | None, typer.Option("--resize-max", help="Long side (px) features are extracted at.")]
Upright = Annotated[bool | None, typer.Option("--upright/--no-upright", help="Detect photos turned by 90°/180°/270°.")]
DetTh = Annotated[float | None, typer.Option("--detection-threshold", help="ALIKED score threshold.")]
Strategy = Annotated[str | None, typer.Option("--pairing", help="exhaustive, retrieval or auto.")]
ExhMax = Annotated[int | None, typer.Option("--exhaustive-max", help="auto: exhaustive up to this many images.")]
TopK = Annotated[int | None, typer.Option("--topk", help="retrieval: at least this many neighbours per image.")]
Prematch = Annotated[
    int | None,
    typer.Option(help="Skip pairs with fewer cheap inliers (found by --upright's matching); 0 keeps all."),
]
SimTh = Annotated[float | None, typer.Option("--similarity-threshold", help="retrieval: also pair above this.")]
GlobalDesc = Annotated[str | None, typer.Option("--global-descriptor", help="retrieval: auto, dinov2 or vlad.")]
DinoModel = Annotated[str | None, typer.Option("--dinov2-model", help="vits14 or vitb14.")]
DinoWeights = Annotated[Path | None, typer.Option("--dinov2-weights", help="Official DINOv2 checkpoint (.pth).")]
MatcherOpt = Annotated[
    str | None,
    typer.Option(
        "--matcher",
        help="mnn+lightglue (default: mutual nearest neighbours, LightGlue on weak pairs), mnn or lightglue.",
    ),
]
DepthConf = Annotated[float | None, typer.Option("--depth-confidence", help="LightGlue early stop (-1 off).")]
WidthConf = Annotated[float | None, typer.Option("--width-confidence", help="LightGlue pruning (-1 off).")]
Verifier = Annotated[str | None, typer.Option("--verifier", help="RANSAC: magsac (OpenCV) or colmap.")]
RansacTh = Annotated[float | None, typer.Option("--ransac-threshold", help="Epipolar error (px at feature size).")]
MinInliers = Annotated[int | None, typer.Option("--min-inliers", help="Verified pairs need this many inliers.")]
CamMode = Annotated[str | None, typer.Option("--camera-mode", help="auto (shared per camera), single, per-image.")]
CamModel = Annotated[
    str | None,
    typer.Option("--camera-model", help="auto (SIMPLE_RADIAL with EXIF, SIMPLE_PINHOLE without) or a COLMAP model."),
]
MaxModels = Annotated[int | None, typer.Option("--max-models", help="Models kept when the scene splits.")]
MinModel = Annotated[int | None, typer.Option("--min-model-size", help="Images a model needs to be kept.")]
InitTri = Annotated[float | None, typer.Option("--init-min-tri-angle", help="Initial pair min angle (deg).")]
MinTri = Annotated[float | None, typer.Option("--min-tri-angle", help="Triangulation min angle (deg).")]
RefineFocal = Annotated[bool | None, typer.Option("--refine-focal/--fix-focal", help="Refine focal in BA.")]
RefinePP = Annotated[bool | None, typer.Option("--refine-principal-point/--fix-principal-point")]
Mapper = Annotated[
    str | None,
    typer.Option("--mapper", help="auto (default), incremental, global (GLOMAP) or best (both); see README."),
]
FinalPP = Annotated[
    bool | None,
    typer.Option(
        "--final-principal-point/--no-final-principal-point",
        help="A last bundle adjustment that also refines principal points (on).",
    ),
]
RefineExtra = Annotated[bool | None, typer.Option("--refine-distortion/--fix-distortion")]
NmsRadius = Annotated[int | None, typer.Option("--nms-radius", help="ALIKED non-maximum suppression radius (px).")]
FilterTh = Annotated[float | None, typer.Option("--filter-threshold", help="LightGlue match confidence threshold.")]
MinScore = Annotated[
    float | None, typer.Option("--min-match-score", help="Drop matches scored below this before RANSAC.")
]
RansacConf = Annotated[float | None, typer.Option("--ransac-confidence", help="RANSAC confidence.")]
RansacIters = Annotated[int | None, typer.Option("--ransac-iterations", help="RANSAC maximum iterations.")]
InitInliers = Annotated[int | None, typer.Option("--init-min-inliers", help="Inliers the initial image pair needs.")]
PoseInliers = Annotated[int | None, typer.Option("--abs-pose-min-inliers", help="Inliers to register an image.")]
Seed = Annotated[int | None, typer.Option("--seed", help="Random seed of the mapper.")]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s: %(message)s" if not verbose else "%(asctime)s %(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    import pycolmap

    # COLMAP's own lines only with -v: its errors (e.g. "Failed to create any sparse model") are
    # reported by lightsfm in one line of its own
    pycolmap.logging.minloglevel = 0 if verbose else 3


# Which setting each command-line flag sets: (section, key), or (key,) at the top level.
FLAGS: dict[str, tuple[str, ...]] = {
    "device": ("device",),
    "model": ("features", "model"),
    "max_keypoints": ("features", "max_keypoints"),
    "resize_max": ("features", "resize_max"),
    "detection_threshold": ("features", "detection_threshold"),
    "upright": ("features", "upright"),
    "pairing": ("pairs", "strategy"),
    "exhaustive_max": ("pairs", "exhaustive_max"),
    "topk": ("pairs", "topk"),
    "prematch_min_inliers": ("pairs", "prematch_min_inliers"),
    "similarity_threshold": ("pairs", "similarity_threshold"),
    "global_descriptor": ("pairs", "global_descriptor"),
    "dinov2_model": ("pairs", "dinov2_model"),
    "dinov2_weights": ("pairs", "dinov2_weights"),
    "matcher": ("matching", "model"),
    "depth_confidence": ("matching", "depth_confidence"),
    "width_confidence": ("matching", "width_confidence"),
    "verifier": ("verify", "method"),
    "ransac_threshold": ("verify", "threshold"),
    "min_inliers": ("verify", "min_inliers"),
    "camera_mode": ("verify", "camera_mode"),
    "camera_model": ("verify", "camera_model"),
    "max_models": ("mapping", "max_num_models"),
    "min_model_size": ("mapping", "min_model_size"),
    "init_min_tri_angle": ("mapping", "init_min_tri_angle"),
    "min_tri_angle": ("mapping", "min_tri_angle"),
    "refine_focal": ("mapping", "refine_focal_length"),
    "refine_principal_point": ("mapping", "refine_principal_point"),
    "final_principal_point": ("mapping", "final_principal_point"),
    "mapper": ("mapping", "method"),
    "refine_distortion": ("mapping", "refine_extra_params"),
    "seed": ("mapping", "seed"),
    "nms_radius": ("features", "nms_radius"),
    "filter_threshold": ("matching", "filter_threshold"),
    "min_match_score": ("verify", "min_match_score"),
    "ransac_confidence": ("verify", "confidence"),
    "ransac_iterations": ("verify", "max_iterations"),
    "init_min_inliers": ("mapping", "init_min_num_inliers"),
    "abs_pose_min_inliers": ("mapping", "abs_pose_min_num_inliers"),
}


def _overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Nested settings from a command's flag values (its locals()), leaving out flags not given."""
    out: dict[str, Any] = {}
    for name, value in flags.items():
        if name not in FLAGS or value is None:
            continue
        *section, key = FLAGS[name]
        target = out.setdefault(section[0], {}) if section else out
        target[key] = str(value) if isinstance(value, Path) else value
    return out


# What a full disk (or quota, or file-size limit) looks like from Python, h5py and pycolmap.
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DISK_FULL_TEXT = re.compile(
    r"No space left on device|Disk quota exceeded|File too large|database or disk is full|errno = (?:27|28|122)\b"
)


def _disk_full(e: BaseException) -> str | None:
    """One line for an error caused by a full disk, naming the file when known; None otherwise."""
    text = str(e)
    if getattr(e, "errno", None) not in _DISK_FULL_ERRNOS and not _DISK_FULL_TEXT.search(text):
        return None
    m = re.search(r"filename = '([^']*)'", text)
    where = getattr(e, "filename", None) or (m.group(1) if m else "writing the outputs")
    why = getattr(e, "strerror", None) or "no space left on the device"
    return f"{where}: cannot be written ({why}); nothing written is broken: free some space and run again to resume"


def _run(fn, verbose: bool) -> Any:
    """Runs a command body; errors become one line on stderr and an exit status."""
    _setup_logging(verbose)
    try:
        return fn()
    except typer.Exit:
        raise
    except LightsfmError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: finished work is saved; run the same command again to resume", err=True)
        raise typer.Exit(130) from None
    except Exception as e:
        if verbose:
            raise
        full = _disk_full(e)
        if full:
            typer.echo(f"error: {full}", err=True)
            raise typer.Exit(1) from None
        text = " ".join(str(e).split())  # one line, whatever the library put in it
        typer.echo(f"error: {type(e).__name__}: {text} (run with --verbose for the traceback)", err=True)
        raise typer.Exit(1) from None


def _conf(preset: str, config_file: Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    return config.load(preset, config_file, overrides)


@app.command()
def reconstruct(
    images: Annotated[Path, typer.Argument(help="Folder of photos (searched recursively).")],
    output: Output,
    preset: Preset = "default",
    config_file: ConfigFile = None,
    device: Device = None,
    model: Model = None,
    max_keypoints: MaxKp = None,
    resize_max: ResizeMax = None,
    detection_threshold: DetTh = None,
    upright: Upright = None,
    pairing: Strategy = None,
    exhaustive_max: ExhMax = None,
    topk: TopK = None,
    prematch_min_inliers: Prematch = None,
    similarity_threshold: SimTh = None,
    global_descriptor: GlobalDesc = None,
    dinov2_model: DinoModel = None,
    dinov2_weights: DinoWeights = None,
    matcher: MatcherOpt = None,
    depth_confidence: DepthConf = None,
    width_confidence: WidthConf = None,
    verifier: Verifier = None,
    ransac_threshold: RansacTh = None,
    min_inliers: MinInliers = None,
    camera_mode: CamMode = None,
    camera_model: CamModel = None,
    max_models: MaxModels = None,
    min_model_size: MinModel = None,
    init_min_tri_angle: InitTri = None,
    min_tri_angle: MinTri = None,
    refine_focal: RefineFocal = None,
    refine_principal_point: RefinePP = None,
    final_principal_point: FinalPP = None,
    mapper: Mapper = None,
    refine_distortion: RefineExtra = None,
    nms_radius: NmsRadius = None,
    filter_threshold: FilterTh = None,
    min_match_score: MinScore = None,
    ransac_confidence: RansacConf = None,
    ransac_iterations: RansacIters = None,
    init_min_inliers: InitInliers = None,
    abs_pose_min_inliers: PoseInliers = None,
    seed: Seed = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip writing OUT/report.html.")] = False,
    verbose: Verbose = False,
) -> None:
    """Photos → pairs → ALIKED → LightGlue → RANSAC → pycolmap: OUT/sparse/<k>/ and OUT/points.ply."""
    from . import pipeline

    overrides = _overrides(locals())

    def body() -> None:
        conf = _conf(preset, config_file, overrides)
        result = pipeline.reconstruct(images, output, conf)
        typer.echo(pipeline.format_summary(result))
        if result.models and not no_report:
            from . import report as report_stage

            typer.echo(f"report: {report_stage.main(output)}")
        if not result.models:
            typer.echo(f"error: {images}: no model could be built (too few verified matches)", err=True)
            raise typer.Exit(1)
        if result.suspect():  # a wrong model is worse news than a missing photo
            raise typer.Exit(EXIT_SUSPECT)
        if result.skipped or result.unregistered():
            raise typer.Exit(EXIT_PARTIAL)

    _run(body, verbose)


@app.command()
def extract(
    images: Annotated[Path, typer.Argument(help="Folder of photos.")],
    output: Output,
    preset: Preset = "default",
    config_file: ConfigFile = None,
    device: Device = None,
    model: Model = None,
    max_keypoints: MaxKp = None,
    resize_max: ResizeMax = None,
    detection_threshold: DetTh = None,
    upright: Upright = None,
    verbose: Verbose = False,
) -> None:
    """ALIKED keypoints and descriptors → OUT/features-<settings>.h5."""
    from .features import aliked
    from .images import list_images

    overrides = _overrides(locals())

    def body() -> None:
        conf = _conf(preset, config_file, overrides)
        Path(output).mkdir(parents=True, exist_ok=True)
        path, failed = aliked.main(images, list_images(images), output, conf["features"], conf["device"])
        for name, reason in failed.items():
            typer.echo(f"skipped {name}: {reason}", err=True)
        typer.echo(str(path))

    _run(body, verbose)


@app.command("pairs")
def pairs_cmd(
    images: Annotated[Path, typer.Argument(help="Folder of photos.")],
    output: Output,
    features: Annotated[Path | None, typer.Option(help="features .h5 (needed by VLAD retrieval).")] = None,
    preset: Preset = "default",
    config_file: ConfigFile = None,
    device: Device = None,
    pairing: Strategy = None,
    exhaustive_max: ExhMax = None,
    topk: TopK = None,
    prematch_min_inliers: Prematch = None,
    similarity_threshold: SimTh = None,
    global_descriptor: GlobalDesc = None,
    dinov2_model: DinoModel = None,
    dinov2_weights: DinoWeights = None,
    verbose: Verbose = False,
) -> None:
    """Image pairs to match → OUT/pairs-<strategy>.txt."""
    from . import pairs
    from .images import list_images

    overrides = _overrides(locals())

    def body() -> None:
        conf = _conf(preset, config_file, overrides)
        Path(output).mkdir(parents=True, exist_ok=True)
        path, found = pairs.main(list_images(images), output, conf["pairs"], images, features, conf["device"])
        typer.echo(f"{len(found)} pairs → {path}")

    _run(body, verbose)


@app.command()
def match(
    output: Output,
    pairs_file: Annotated[Path, typer.Option("--pairs", help="Pair list (pairs-*.txt).")],
    features: Annotated[Path, typer.Option(help="features .h5 from `lightsfm extract`.")],
    preset: Preset = "default",
    config_file: ConfigFile = None,
    device: Device = None,
    matcher: MatcherOpt = None,
    depth_confidence: DepthConf = None,
    width_confidence: WidthConf = None,
    verbose: Verbose = False,
) -> None:
    """Matches of the listed pairs (MNN, LightGlue on weak pairs; or --matcher) → OUT/matches-<feats>-<matcher>.h5."""
    from . import matching
    from .pairs import read_pairs

    overrides = _overrides(locals())

    def body() -> None:
        conf = _conf(preset, config_file, overrides)
        path = matching.main(read_pairs(pairs_file), features, output, conf["matching"], conf["device"])
        typer.echo(str(path))

    _run(body, verbose)


@app.command()
def verify(
    images: Annotated[Path, typer.Argument(help="Folder of photos (for sizes and EXIF).")],
    output: Output,
    pairs_file: Annotated[Path, typer.Option("--pairs", help="Pair list.")],
    features: Annotated[Path, typer.Option(help="features .h5.")],
    matches: Annotated[Path, typer.Option(help="matches .h5.")],
    preset: Preset = "default",
    config_file: ConfigFile = None,
    verifier: Verifier = None,
    ransac_threshold: RansacTh = None,
    min_inliers: MinInliers = None,
    camera_mode: CamMode = None,
    camera_model: CamModel = None,
    verbose: Verbose = False,
) -> None:
    """RANSAC verification → OUT/database.db (cameras, images, keypoints, matches, geometries)."""
    from . import verify as verify_stage
    from .images import list_images, read_infos
    from .pairs import read_pairs

    overrides = _overrides(locals())

    def body() -> None:
        conf = _conf(preset, config_file, overrides)
        infos, _ = read_infos(images, list_images(images))
        stats = verify_stage.main(
            infos, read_pairs(pairs_file), features, matches, Path(output) / "database.db", conf["verify"]
        )
        typer.echo(f"{stats['verified']}/{stats['pairs']} pairs verified → {Path(output) / 'database.db'}")

    _run(body, verbose)


@app.command("map")
def map_cmd(
    images: Annotated[Path, typer.Argument(help="Folder of photos.")],
    output: Output,
    preset: Preset = "default",
    config_file: ConfigFile = None,
    max_models: MaxModels = None,
    min_model_size: MinModel = None,
    init_min_tri_angle: InitTri = None,
    min_tri_angle: MinTri = None,
    refine_focal: RefineFocal = None,
    refine_principal_point: RefinePP = None,
    final_principal_point: FinalPP = None,
    mapper: Mapper = None,
    refine_distortion: RefineExtra = None,
    seed: Seed = None,
    verbose: Verbose = False,
) -> None:
    """Incremental mapping of OUT/database.db → OUT/sparse/<k>/ and OUT/points.ply."""
    from . import colmap, mapping

    overrides = _overrides(locals())

    def body() -> None:
        conf = _conf(preset, config_file, overrides)
        database = Path(output) / "database.db"
        if not database.exists():
            raise LightsfmError(f"{database}: not found; run `lightsfm verify` first")
        models = mapping.main(database, images, output, conf["mapping"])
        for k, m in enumerate(models):
            typer.echo(f"sparse/{k}: {colmap.summary(m)}")

    _run(body, verbose)


@app.command()
def imc(
    data: Annotated[Path, typer.Argument(help="IMC2023-layout folder with train_labels.csv.")],
    output: Output,
    scene: Annotated[list[str] | None, typer.Option(help="Only this dataset/scene (repeatable).")] = None,
    labels: Annotated[Path | None, typer.Option(help="Listing CSV (default: DATA/train_labels.csv).")] = None,
    preset: Preset = "default",
    config_file: ConfigFile = None,
    device: Device = None,
    verbose: Verbose = False,
) -> None:
    """Reconstruct every scene of an IMC-layout folder → OUT/submission.csv."""
    from . import imc as imc_stage

    overrides = _overrides(locals())

    def body() -> None:
        conf = _conf(preset, config_file, overrides)
        path, runs = imc_stage.main(data, output, conf, labels, scene)
        for name, r in runs.items():
            reg = (
                "error: " + r["error"]
                if "error" in r
                else (f"{r['models'][0]['registered'] if r['models'] else 0}/{r['images']} registered")
            )
            typer.echo(f"{name}: {reg} in {r['wall_s']:.1f}s")
        typer.echo(str(path))

    _run(body, verbose)


@app.command()
def evaluate(
    submission: Annotated[Path, typer.Argument(help="Submission CSV.")],
    labels: Annotated[Path, typer.Argument(help="Ground truth (train_labels.csv).")],
    thresholds: Annotated[Path | None, typer.Option(help="thresholds.csv; default: IMC2023 values.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the scores as JSON.")] = None,
    scene: Annotated[list[str] | None, typer.Option(help="Only this dataset/scene (repeatable).")] = None,
    verbose: Verbose = False,
) -> None:
    """IMC2023 mAA of a submission against ground truth, per scene, dataset and overall."""
    from . import evaluate as ev

    def body() -> None:
        result = ev.evaluate(submission, labels, thresholds, scene)
        typer.echo(ev.format_table(result))
        if json_out:
            ev.write_json(result, json_out)

    _run(body, verbose)


@app.command()
def dense(
    output: Annotated[Path, typer.Argument(help="Output folder of a run (with sparse/0).")],
    images: Annotated[Path | None, typer.Option(help="Photo folder (default: the one the run used).")] = None,
    preset: Preset = "default",
    config_file: ConfigFile = None,
    device: Device = None,
    max_size: Annotated[int | None, typer.Option(help="Long side (px) of the depth maps.")] = None,
    num_src: Annotated[int | None, typer.Option(help="Source views per depth map.")] = None,
    num_depths: Annotated[int | None, typer.Option(help="Planes in the sweep.")] = None,
    iterations: Annotated[int | None, typer.Option(help="Refinement rounds after the sweep.")] = None,
    depth_min: Annotated[float | None, typer.Option(help="Nearest depth (default: from the sparse points).")] = None,
    depth_max: Annotated[float | None, typer.Option(help="Farthest depth (with --depth-min).")] = None,
    mesher: Annotated[str | None, typer.Option(help="poisson or none.")] = None,
    backend: Annotated[str | None, typer.Option(help="torch, or colmap-cuda (pycolmap built with CUDA).")] = None,
    model_index: Annotated[int | None, typer.Option("--model", help="Which sparse model (0: largest).")] = None,
    verbose: Verbose = False,
) -> None:
    """Depth maps, fused point cloud and mesh: OUT/dense/{fused,mesh}.ply (CPU by default)."""
    from . import dense as dense_stage

    def body() -> None:
        d: dict[str, Any] = {}
        st: dict[str, Any] = {}
        for key, value in (
            ("max_image_size", max_size),
            ("num_src", num_src),
            ("mesher", mesher),
            ("backend", backend),
            ("model", model_index),
        ):
            if value is not None:
                d[key] = value
        for key, value in (("num_depths", num_depths), ("iterations", iterations)):
            if value is not None:
                st[key] = value
        if (depth_min is None) != (depth_max is None):
            raise LightsfmError("--depth-min and --depth-max go together")
        if depth_min is not None:
            d["depth_range"] = [depth_min, depth_max]
        if st:
            d["stereo"] = st
        overrides: dict[str, Any] = {"dense": d}
        if device is not None:
            overrides["device"] = device
        conf = _conf(preset, config_file, overrides)
        summary = dense_stage.main(output, conf["dense"], conf["device"], images)
        mesh = summary.get("mesh")
        typer.echo(
            f"{summary['images']} depth maps, {summary['fused_points']} fused points → {output / 'dense' / 'fused.ply'}"
            + (
                f"; mesh {mesh['vertices']} vertices, {mesh['faces']} faces → {output / 'dense' / 'mesh.ply'}"
                if mesh
                else ""
            )
        )
        if not summary["fused_points"]:
            raise LightsfmError(f"{output}: dense fusion produced no point")
        if (output / "report.html").exists():  # the report shows the depth maps and the cloud
            from . import report as report_stage

            typer.echo(f"report: {report_stage.main(output)}")
        for name, reason in summary["skipped"].items():
            typer.echo(f"skipped {name}: {reason}", err=True)
        if summary["skipped"]:  # a cloud, but without the photos that changed since the sparse run
            raise typer.Exit(EXIT_PARTIAL)

    _run(body, verbose)


@app.command()
def weights(
    check: Annotated[bool, typer.Option("--check", help="Load every packaged model once.")] = False,
    verbose: Verbose = False,
) -> None:
    """Where the weights are read from (nothing is ever downloaded)."""
    from . import weights as w

    def body() -> None:
        typer.echo(f"weights folder: {w.weights_dir()}")
        for name in w.FILES:
            typer.echo(f"  {name}: {w.weight_path(name)}")
        if check:
            from .features.aliked import AlikedExtractor
            from .matching.lightglue import LightGlueMatcher

            AlikedExtractor()
            LightGlueMatcher()
            typer.echo("ALIKED and LightGlue weights load: ok")

    _run(body, verbose)


@app.command()
def report(
    output: Annotated[Path, typer.Argument(help="Output folder of a run.")],
    pair: Annotated[list[str] | None, typer.Option(help="Also draw this pair, as 'a.jpg,b.jpg' (repeatable).")] = None,
    labels: Annotated[Path | None, typer.Option(help="Ground truth (train_labels.csv) to score against.")] = None,
    thresholds: Annotated[Path | None, typer.Option(help="thresholds.csv for the scores.")] = None,
    scene: Annotated[str | None, typer.Option(help="dataset/scene of the labels this run is.")] = None,
    verbose: Verbose = False,
) -> None:
    """Self-contained OUT/report.html: summary, keypoints, matches, 3D view (opens offline)."""
    from . import report as report_stage

    def body() -> None:
        pairs = []
        for p in pair or []:
            a, sep, b = p.partition(",")
            if not sep:
                raise LightsfmError(f"--pair {p!r}: expected two image names separated by a comma")
            pairs.append((a, b))
        typer.echo(str(report_stage.main(output, pairs, labels, thresholds, scene_key=scene)))

    _run(body, verbose)


@app.command()
def export(
    output: Annotated[Path, typer.Argument(help="Output folder of a run.")],
    fmt: Annotated[str, typer.Option("--format", help="colmap-txt, colmap-bin, ply, nerfstudio or imc-csv.")],
    to: Annotated[Path | None, typer.Option(help="Destination (default OUT/export/<format>).")] = None,
    verbose: Verbose = False,
) -> None:
    """The model in another format (COLMAP text/binary, PLY, nerfstudio, IMC CSV)."""
    from . import export as export_stage

    _run(lambda: typer.echo(str(export_stage.main(output, fmt, to))), verbose)


@app.command()
def view(
    output: Annotated[Path, typer.Argument(help="Output folder of a run.")],
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it local.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
    verbose: Verbose = False,
) -> None:
    """Live 3D viewer in the browser (viser), for exploring large models."""
    from . import view as view_stage

    _run(lambda: view_stage.main(output, host, port), verbose)


@app.command()
def version() -> None:
    """Versions of lightsfm and the libraries it runs on."""
    import kornia
    import pycolmap
    import torch

    typer.echo(
        json.dumps(
            {
                "lightsfm": __version__,
                "torch": torch.__version__,
                "kornia": kornia.__version__,
                "pycolmap": pycolmap.__version__,
            }
        )
    )


if __name__ == "__main__":
    app()

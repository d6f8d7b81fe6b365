"""The ``lightsfm`` command: ``reconstruct`` runs everything; each stage is also a subcommand.

Exit status: 0 success, 1 failure, 2 bad usage, 3 partial success (a model was built but
some images were skipped or left unregistered), 4 the model failed its fold checks (it
contradicts verified pairs: it may be folded; see the summary's warning).
"""

from __future__ import annotations

import errno
import functools
import inspect
import json
import logging
import re
import sys
import typing
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

# Options shared by several subcommands.
Output = Annotated[Path, typer.Option("--output", "-o", help="Output folder (created; reused to resume).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs and full tracebacks.")]


def with_settings(*sections: str):
    """Adds the command-line flags of these sections of the settings (as the stages declare
    them: config.flag_specs), ``--preset``, ``--config`` and ``--set``; the command gets the
    full, checked settings as ``conf``, merged once: defaults, preset, file, flags."""

    def decorate(fn):
        hints = typing.get_type_hints(fn, include_extras=True)  # (the annotations are strings here)
        params = [
            p.replace(annotation=hints[p.name]) for p in inspect.signature(fn).parameters.values() if p.name != "conf"
        ]
        known: dict[str, tuple[str, ...]] = {}
        extra = [
            inspect.Parameter(
                "preset",
                inspect.Parameter.KEYWORD_ONLY,
                default="default",
                annotation=Annotated[str, typer.Option(help=f"Named settings: {', '.join(config.PRESETS)}.")],
            ),
            inspect.Parameter(
                "config_file",
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[Path | None, typer.Option("--config", help="TOML file of settings (see README).")],
            ),
            inspect.Parameter(
                "set_",
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    list[str] | None,
                    typer.Option("--set", help="Any setting, as section.key=value (repeatable; TOML values)."),
                ],
            ),
        ]
        for section in sections:
            for path, decl, help_, default in config.flag_specs(section):
                name = "__".join(path)
                if name in known:
                    continue
                known[name] = path
                text = ".".join(path) in config.TEXT  # (a Path would turn ray://h:1 into ray:/h:1)
                kind = (
                    bool if isinstance(default, bool) else str if text else Path if default is None else type(default)
                )
                extra.append(
                    inspect.Parameter(
                        name,
                        inspect.Parameter.KEYWORD_ONLY,
                        default=None,
                        annotation=Annotated[kind | None, typer.Option(decl, help=help_)],
                    )
                )

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            preset, file, sets = kwargs.pop("preset"), kwargs.pop("config_file"), kwargs.pop("set_") or []
            overrides: dict[str, Any] = {}
            for name, path in known.items():
                value = kwargs.pop(name)
                if value is None:
                    continue
                target = overrides
                for k in path[:-1]:
                    target = target.setdefault(k, {})
                target[path[-1]] = str(value) if isinstance(value, Path) else value

            def conf(inputs: dict[str, Any] | None = None) -> dict[str, Any]:
                """The settings (called inside the command's error handling); ``inputs``:
                what the input needs, under the file and the flags."""
                merged = overrides
                for text in sets:
                    merged = _deep_update(merged, config.parse_assignment(text))
                return config.load(preset, file, merged, inputs)

            return fn(**kwargs, conf=conf)

        command.__signature__ = inspect.Signature(params + extra)  # what typer reads
        command.__annotations__ = {p.name: p.annotation for p in params + extra}
        return command

    return decorate


def _deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_update(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s: %(message)s" if not verbose else "%(asctime)s %(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    from . import colmap

    # COLMAP's own lines only with -v: its errors (e.g. "Failed to create any sparse model") are
    # reported by lightsfm in one line of its own
    colmap.set_verbose(verbose)


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


@app.command()
@with_settings("device", "features", "pairs", "matching", "verify", "mapping", "run")
def reconstruct(
    images: Annotated[
        Path, typer.Argument(help="Folder of photos (searched recursively), a video, or a folder of videos.")
    ],
    output: Output,
    frames: Annotated[int, typer.Option(help="Video: frames to keep per clip (the sharpest of each stretch).")] = 300,
    every: Annotated[float | None, typer.Option(help="Video: one frame per this many seconds instead.")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip writing OUT/report.html.")] = False,
    georef: Annotated[
        bool,
        typer.Option(
            "--georef/--no-georef",
            help="With GPS in 3+ registered photos: the model in metres, east-north-up (OUT/georef.json).",
        ),
    ] = True,
    verbose: Verbose = False,
    conf=None,
) -> None:
    """Photos → pairs → ALIKED → LightGlue → RANSAC → pycolmap: OUT/sparse/<k>/ and OUT/points.ply."""
    from . import pipeline

    def body() -> None:
        from . import video
        from .io import output_lock

        image_dir, inputs = images, {}
        if video.is_video(images) or (images.is_dir() and video.find_videos(images)):
            with output_lock(output):  # frames are written once, as every stage's files
                image_dir, inputs = video.prepare_input(images, output, frames, every)
        result = pipeline.reconstruct(image_dir, output, conf(inputs))
        typer.echo(pipeline.format_summary(result))
        if result.models and georef:
            _georeference(output)
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


def _georeference(output: Path) -> None:
    """The models put in east-north-up metres from the photos' GPS, when 3+ registered
    photos carry it; a photo folder without GPS is left as it is."""
    from . import georef as georef_stage
    from .workspace import Workspace

    try:
        rec = georef_stage.main(output, gps=True)
    except georef_stage.NotEnoughGpsError:
        return  # (no GPS, or too little: nothing to say)
    typer.echo(
        f"georeferenced: {rec['agreed']}/{rec['photos_with_gps']} photos agree with their GPS "
        f"(median {rec['median_residual_m']:.2f} m); outliers: {', '.join(rec['outliers']) or 'none'}; "
        f"origin in {Workspace(output).georef}"
    )


@app.command()
@with_settings("device", "features", "run")
def extract(
    images: Annotated[Path, typer.Argument(help="Folder of photos.")],
    output: Output,
    verbose: Verbose = False,
    conf=None,
) -> None:
    """Local features (ALIKED by default) → OUT/features-<settings>.h5."""
    from . import executor
    from . import extract as extract_stage
    from .images import list_images

    def body() -> None:
        c = conf()
        Path(output).mkdir(parents=True, exist_ok=True)
        with executor.from_conf(c["run"]) as ex:
            path, failed = extract_stage.main(
                images, list_images(images), output, c["features"], c["device"], executor=ex
            )
        for name, reason in failed.items():
            typer.echo(f"skipped {name}: {reason}", err=True)
        typer.echo(str(path))

    _run(body, verbose)


@app.command("pairs")
@with_settings("device", "pairs")
def pairs_cmd(
    images: Annotated[Path, typer.Argument(help="Folder of photos.")],
    output: Output,
    features: Annotated[Path | None, typer.Option(help="features .h5 (needed by VLAD retrieval).")] = None,
    verbose: Verbose = False,
    conf=None,
) -> None:
    """Image pairs to match → OUT/pairs-<strategy>.txt."""
    from . import pairs
    from .images import list_images

    def body() -> None:
        c = conf()
        Path(output).mkdir(parents=True, exist_ok=True)
        path, found = pairs.main(list_images(images), output, c["pairs"], images, features, c["device"])
        typer.echo(f"{len(found)} pairs → {path}")

    _run(body, verbose)


@app.command()
@with_settings("device", "matching", "run")
def match(
    output: Output,
    pairs_file: Annotated[Path, typer.Option("--pairs", help="Pair list (pairs-*.txt).")],
    features: Annotated[Path, typer.Option(help="features .h5 from `lightsfm extract`.")],
    verbose: Verbose = False,
    conf=None,
) -> None:
    """Matches of the listed pairs (MNN, LightGlue on weak pairs; or --matcher) → OUT/matches-<feats>-<matcher>.h5."""
    from . import executor
    from . import match as match_stage
    from .pairs import read_pairs

    def body() -> None:
        c = conf()
        with executor.from_conf(c["run"]) as ex:
            path = match_stage.main(read_pairs(pairs_file), features, output, c["matching"], c["device"], ex)
        typer.echo(str(path))

    _run(body, verbose)


@app.command()
@with_settings("verify", "run")
def verify(
    images: Annotated[Path, typer.Argument(help="Folder of photos (for sizes and EXIF).")],
    output: Output,
    pairs_file: Annotated[Path, typer.Option("--pairs", help="Pair list.")],
    features: Annotated[Path, typer.Option(help="features .h5.")],
    matches: Annotated[Path, typer.Option(help="matches .h5.")],
    verbose: Verbose = False,
    conf=None,
) -> None:
    """RANSAC verification → OUT/database.db (cameras, images, keypoints, matches, geometries)."""
    from . import executor
    from . import verify as verify_stage
    from .images import list_images, read_infos
    from .pairs import read_pairs
    from .workspace import Workspace

    def body() -> None:
        c = conf()
        infos, _ = read_infos(images, list_images(images))
        database = Workspace(output).database
        with executor.from_conf(c["run"]) as ex:
            stats = verify_stage.main(infos, read_pairs(pairs_file), features, matches, database, c["verify"], ex)
        typer.echo(f"{stats['verified']}/{stats['pairs']} pairs verified → {database}")

    _run(body, verbose)


@app.command("map")
@with_settings("mapping")
def map_cmd(
    images: Annotated[Path, typer.Argument(help="Folder of photos.")],
    output: Output,
    verbose: Verbose = False,
    conf=None,
) -> None:
    """Incremental mapping of OUT/database.db → OUT/sparse/<k>/ and OUT/points.ply."""
    from . import colmap, mapping
    from .workspace import Workspace

    def body() -> None:
        c = conf()
        database = Workspace(output).database
        if not database.exists():
            raise LightsfmError(f"{database}: not found; run `lightsfm verify` first")
        for k, m in enumerate(mapping.main(database, images, output, c["mapping"])):
            typer.echo(f"sparse/{k}: {colmap.summary(m)}")

    _run(body, verbose)


@app.command()
@with_settings("device", "features", "pairs", "matching", "verify", "mapping", "run")
def imc(
    data: Annotated[Path, typer.Argument(help="IMC2023-layout folder with train_labels.csv.")],
    output: Output,
    scene: Annotated[list[str] | None, typer.Option(help="Only this dataset/scene (repeatable).")] = None,
    labels: Annotated[Path | None, typer.Option(help="Listing CSV (default: DATA/train_labels.csv).")] = None,
    verbose: Verbose = False,
    conf=None,
) -> None:
    """Reconstruct every scene of an IMC-layout folder → OUT/submission.csv."""
    from . import imc as imc_stage

    def body() -> None:
        path, runs = imc_stage.main(data, output, conf(), labels, scene)
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
@with_settings("device", "dense")
def dense(
    output: Annotated[Path, typer.Argument(help="Output folder of a run (with sparse/0).")],
    images: Annotated[Path | None, typer.Option(help="Photo folder (default: the one the run used).")] = None,
    depth_min: Annotated[float | None, typer.Option(help="Nearest depth (default: from the sparse points).")] = None,
    depth_max: Annotated[float | None, typer.Option(help="Farthest depth (with --depth-min).")] = None,
    verbose: Verbose = False,
    conf=None,
) -> None:
    """Depth maps, fused point cloud and mesh: OUT/dense/{fused,mesh}.ply (CPU by default)."""
    from . import dense as dense_stage
    from .workspace import Workspace

    def body() -> None:
        if (depth_min is None) != (depth_max is None):
            raise LightsfmError("--depth-min and --depth-max go together")
        c = conf()
        if depth_min is not None:
            c["dense"]["depth_range"] = [depth_min, depth_max]
            config.validate(c)
        ws = Workspace(output)
        summary = dense_stage.main(output, c["dense"], c["device"], images)
        mesh = summary.get("mesh")
        typer.echo(
            f"{summary['images']} depth maps, {summary['fused_points']} fused points → {ws.fused}"
            + (f"; mesh {mesh['vertices']} vertices, {mesh['faces']} faces → {ws.mesh}" if mesh else "")
        )
        if not summary["fused_points"]:
            raise LightsfmError(f"{output}: dense fusion produced no point")
        if ws.report.exists():  # the report shows the depth maps and the cloud
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
            from . import extractors, matchers

            for name in extractors.available():
                extractors.get(name)()
                if f"lightglue-{name}" in w.FILES:
                    matchers.get("lightglue")(features=name)
            typer.echo(f"extractors ({', '.join(extractors.available())}) and the LightGlue weights load: ok")

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
    fmt: Annotated[str, typer.Option("--format", help="colmap-txt, colmap-bin, ply, nerfstudio, 3dgs or imc-csv.")],
    to: Annotated[Path | None, typer.Option(help="Destination (default OUT/export/<format>).")] = None,
    downscales: Annotated[
        str, typer.Option(help="3dgs/nerfstudio: also images_N at these factors (comma-separated; empty: none).")
    ] = "2,4,8",
    verbose: Verbose = False,
) -> None:
    """The model in another format (COLMAP text/binary, PLY, nerfstudio, 3DGS, IMC CSV)."""
    from . import export as export_stage

    def body() -> None:
        try:
            factors = tuple(int(f) for f in downscales.split(",") if f.strip())
        except ValueError:
            raise LightsfmError(f"--downscales {downscales!r}: whole numbers separated by commas") from None
        typer.echo(str(export_stage.main(output, fmt, to, factors)))

    _run(body, verbose)


@app.command("register")
def register_cmd(
    output: Annotated[Path, typer.Argument(help="Output folder of a finished run.")],
    images: Annotated[Path, typer.Argument(help="Folder of new photos (or the run's own folder, with photos added).")],
    refine_all: Annotated[
        bool,
        typer.Option(
            "--refine-all",
            help="Then bundle-adjust the whole grown model: old poses and cameras move too (a model of few "
            "photos gains the precision of all).",
        ),
    ] = False,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip rewriting OUT/report.html.")] = False,
    verbose: Verbose = False,
) -> None:
    """Adds new photos to the model: registered with the model's poses held fixed."""
    from . import register

    def body() -> None:
        record = register.main(output, images, refine_all=refine_all)
        typer.echo(register.format_record(record))
        if not no_report:
            from . import report as report_stage

            typer.echo(f"report: {report_stage.main(output)}")
        if record["not_registered"] or record["skipped"]:
            raise typer.Exit(EXIT_PARTIAL)

    _run(body, verbose)


@app.command()
def georef(
    output: Annotated[Path, typer.Argument(help="Output folder of a run.")],
    gps: Annotated[bool, typer.Option("--gps/--no-gps", help="Fit the model to the photos' EXIF GPS.")] = True,
    up: Annotated[
        str | None, typer.Option(help="auto: the cameras' average up becomes +z (also when GPS is too scarce).")
    ] = None,
    images: Annotated[Path | None, typer.Option(help="Photo folder (default: the one the run used).")] = None,
    origin: Annotated[str, typer.Option(help="mean or first: where east-north-up starts.")] = "mean",
    verbose: Verbose = False,
) -> None:
    """The model in metres, east-north-up about OUT/georef.json's origin (EXIF GPS), or levelled."""
    from . import georef as georef_stage
    from .workspace import Workspace

    def body() -> None:
        rec = georef_stage.main(output, gps=gps, up=up, image_dir=images, origin=origin)
        if rec["method"] == "gps":
            typer.echo(
                f"{rec['agreed']}/{rec['photos_with_gps']} photos agree with their GPS "
                f"(median {rec['median_residual_m']:.2f} m, max {rec['max_residual_m']:.2f} m); "
                f"outliers: {', '.join(rec['outliers']) or 'none'}; origin in {Workspace(output).georef}"
            )
        else:
            typer.echo(f"levelled: the cameras' average up is now +z ({Workspace(output).sparse})")

    _run(body, verbose)


@app.command()
def align(
    output: Annotated[Path, typer.Argument(help="Output folder of a run.")],
    to: Annotated[Path, typer.Option(help="A COLMAP model folder or a train_labels.csv.")],
    scene: Annotated[str | None, typer.Option(help="dataset/scene of the labels, when several fit.")] = None,
    verbose: Verbose = False,
) -> None:
    """The model moved onto another model or ground-truth poses (similarity), with residuals."""
    from . import georef as georef_stage
    from .workspace import Workspace

    def body() -> None:
        rec = georef_stage.align(output, to, scene)
        typer.echo(
            f"{rec['agreed']} photos agree; median residual {rec['median_residual']:.4g}, "
            f"outliers: {', '.join(rec['outliers']) or 'none'} → {Workspace(output).align}"
        )

    _run(body, verbose)


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
    import torch

    from . import colmap

    typer.echo(
        json.dumps(
            {
                "lightsfm": __version__,
                "torch": torch.__version__,
                "kornia": kornia.__version__,
                "pycolmap": colmap.version(),
            }
        )
    )


if __name__ == "__main__":
    app()

"""Settings: one nested dict of per-stage confs, merged from defaults, a preset, a TOML file
and command-line flags (in that order, later wins)."""

from __future__ import annotations

import copy
import math
import re
import tomllib
from pathlib import Path
from typing import Any

from . import dense, ensemble, executor, extract, extractors, mapping, match, matchers, pairs, verify
from .errors import LightsfmError


def _with_plugins(stage: dict[str, Any], confs: list[dict[str, Any]]) -> dict[str, Any]:
    """A stage's settings and every plug-in's of that stage, in one flat table.

    A key two plug-ins share must have one default: the table cannot hold two.
    """
    out = dict(stage)
    for conf in confs:
        for k, v in conf.items():
            if k in out and out[k] != v:
                raise AssertionError(f"setting {k!r} has two defaults ({out[k]!r}, {v!r}); rename one")
            out[k] = v
    return out


def defaults() -> dict[str, Any]:
    return copy.deepcopy(
        {
            "device": "cpu",
            "pairs": pairs.default_conf,
            "features": _with_plugins(
                extract.default_conf,
                [ensemble.default_conf] + [extractors.get(n).default_conf for n in extractors.available()],
            ),
            "matching": _with_plugins(match.default_conf, [matchers.get(n).default_conf for n in matchers.available()]),
            "verify": verify.default_conf,
            "mapping": mapping.default_conf,
            "dense": dense.default_conf,
            # where per-item work runs: never in a fingerprint (results do not depend on it)
            "run": executor.default_conf,
        }
    )


# Measured on ../shared/data with benchmarks/benchmark.py (README, "Presets").
PRESETS: dict[str, dict[str, Any]] = {
    # ALIKED (2048 keypoints), mutual nearest neighbours on every pair, LightGlue on the weak
    # pairs of images that have fewer than 4 strong ones (matching.hybrid).
    "default": {},
    # Mutual nearest neighbours only: no LightGlue.
    "fast": {"matching": {"name": "mnn"}},
    # The default at 1600 px instead of 1024. (More LightGlue, or 4096 keypoints, measured
    # lower mean mAA: 0.830 and 0.909 vs 0.934.)
    "accurate": {"features": extract.confs["aliked-n16-accurate"]},
    # (No "ensemble" preset: ALIKED + DISK, [features] ensemble = "disk", scored a mean 0.855
    # against the default's 0.949 on the five small scenes, at 1.3× its time; README.)
}


# Allowed values of the settings that name a choice.
CHOICES: dict[str, tuple[str, ...]] = {
    "features.model": ("aliked-n16", "aliked-n16rot", "aliked-n32", "aliked-t16"),
    "pairs.strategy": ("auto", "exhaustive", "retrieval", "sequential"),
    "pairs.global_descriptor": ("auto", "dinov2", "vlad"),
    "pairs.dinov2_model": ("vits14", "vitb14"),
    "features.name": tuple(extractors.available()),
    "features.cheap": ("aliked", "xfeat"),  # lightsfm.orientation.CHEAP
    "matching.name": tuple(matchers.available()),
    "matching.first": tuple(matchers.available()),
    "matching.second": tuple(matchers.available()),
    "matching.precision": ("auto", "mixed", "float32"),
    "verify.method": ("magsac", "colmap"),
    "verify.camera_mode": ("auto", "per-clip", "single", "per-image"),  # colmap.CAMERA_MODES (pycolmap: lazily)
    "mapping.method": ("auto", "incremental", "global", "best"),
    "mapping.refine_intrinsics": ("auto", "none", "focal", "all"),
    "dense.backend": ("torch", "colmap-cuda"),
    "dense.mesher": ("poisson", "none"),
    "run.executor": executor.NAMES,
}
# Settings that default to None but hold text, not a file path (the command line keeps them as typed).
TEXT: set[str] = {"run.ray_address", "verify.camera_params"}
# [low, high] of numeric settings; a number not listed must be finite, ≥ 0 and ≤ 1e9.
RANGES: dict[str, tuple[float, float]] = {
    "features.max_keypoints": (1, 100_000),
    "features.detection_threshold": (0, 1),
    "features.heatmap_threshold": (0, 1),
    "features.nms_radius": (0, 64),
    "features.resize_max": (64, 20_000),
    "pairs.topk": (1, 100_000),
    "pairs.gps_neighbours": (0, 1000),
    "pairs.overlap": (0, 100_000),
    "pairs.step_ratio": (0, 100),
    "pairs.loop_topk": (0, 100_000),
    "pairs.similarity_threshold": (-1, 1),
    "matching.min_similarity": (-1, 1),
    "matching.ratio": (0, 1),
    "matching.depth_confidence": (-1, 1),  # -1: off
    "matching.width_confidence": (-1, 1),
    "matching.filter_threshold": (0, 1),
    "matching.second_max_keypoints": (1, 100_000),
    "matching.max_keypoints": (0, 100_000),
    "matching.second_wave": (1, 100_000),
    "verify.threshold": (1e-3, 1000),
    "verify.confidence": (0, 1),
    "verify.max_iterations": (1, 10_000_000),
    "verify.min_inliers": (1, 1_000_000),
    "verify.min_match_score": (0, 1),
    "mapping.min_model_size": (2, 1_000_000),
    "mapping.max_num_models": (1, 1000),
    "mapping.seed": (0, 2**31 - 1),
    "mapping.num_threads": (0, 1024),  # 0: all cores
    "mapping.init_min_tri_angle": (0, 90),
    "mapping.min_tri_angle": (0, 90),
    "mapping.ba_local_max_refinements": (0, 100),
    "mapping.ba_global_max_refinements": (0, 100),
    "mapping.ba_local_max_iterations": (1, 1_000_000),
    "mapping.ba_global_max_iterations": (1, 1_000_000),
    "mapping.ba_global_growth": (1.001, 100),
    "mapping.ba_function_tolerance": (0, 1),
    "mapping.repair_rounds": (-1, 100),  # -1: no fold checks
    "mapping.principal_point_max_sigma": (0, 1),  # share of the long side
    "mapping.principal_point_min_photos": (1, 1_000_000),
    "mapping.checks.max_explained": (0, 1),
    "mapping.checks.max_unexplained_share": (0, 1),
    "mapping.checks.min_correspondences": (1, 1_000_000),
    "dense.max_image_size": (64, 20_000),
    "dense.num_src": (1, 100),
    "dense.view_selection_angle": (0, 90),
    "dense.stereo.num_depths": (2, 4096),
    "dense.stereo.window": (3, 63),
    "dense.fusion_max_normal_error": (0, 180),
    "dense.poisson_depth": (1, 16),
    "run.threads": (0, 1024),  # 0: every core locally, one per Ray worker
    "run.workers": (0, 1024),  # 0: one per core
}
_DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")


def _check(path: str, default: Any, value: Any) -> None:
    """Raises a one-line LightsfmError naming the setting and the value when ``value`` is
    not of the default's kind or out of its range."""

    if type(value) is type(default) and value == default:
        return  # the shipped defaults are trusted as they are

    def bad(why: str) -> LightsfmError:
        shown = repr(value)
        return LightsfmError(f"setting {path} = {shown[:60] + '…' if len(shown) > 60 else shown}: {why}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("must be true or false")
        return
    if isinstance(default, int | float):
        whole = isinstance(default, int)
        if isinstance(value, bool) or not isinstance(value, int | float) or (whole and not isinstance(value, int)):
            raise bad("must be a whole number" if whole else "must be a number")
        if not math.isfinite(value):
            raise bad("must be finite")
        lo, hi = RANGES.get(path, (0, 1e9))
        if not lo <= value <= hi:
            raise bad(f"must be between {lo:g} and {hi:g}")
        return
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("must be a string")
        if path in CHOICES and value not in CHOICES[path]:
            raise bad(f"one of {', '.join(CHOICES[path])}")
        if path == "device" and not _DEVICE.fullmatch(value):
            raise bad("cpu, cuda, cuda:<n> or mps")
        if path == "verify.camera_model" and value != "auto":
            from . import colmap

            if not colmap.is_camera_model(value):
                raise bad("auto or a COLMAP camera model (SIMPLE_RADIAL, PINHOLE, OPENCV, …)")
        return
    if path == "dense.depth_range" and value is not None:
        ok = isinstance(value, list | tuple) and len(value) == 2
        ok = ok and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in value)
        if not (ok and 0 < value[0] < value[1]):
            raise bad("[near, far] with 0 < near < far")
    elif path in TEXT and value is not None and not isinstance(value, str):
        raise bad("must be a string")
    elif path == "verify.camera_params" and value is not None:
        from . import colmap

        try:
            colmap.parse_camera(value)
        except ValueError as e:
            raise bad(str(e).split(": ", 1)[1]) from None
    elif default is None and value is not None and not isinstance(value, str):  # file paths
        raise bad("must be a file path (a string)")


def flag_specs(section: str) -> list[tuple[tuple[str, ...], str, str, Any]]:
    """The command-line flags of a section of the settings, as its stage and plug-ins declare
    them (``flags``): (path of the setting, flag, help, default) each."""
    sources: dict[str, list[dict]] = {
        "device": [{"device": "Torch device: cpu, cuda, cuda:1, mps."}],
        "features": [extract.flags, ensemble.flags] + [extractors.get(n).flags for n in extractors.available()],
        "matching": [match.flags] + [matchers.get(n).flags for n in matchers.available()],
        "pairs": [pairs.flags],
        "verify": [verify.flags],
        "mapping": [mapping.flags],
        "dense": [dense.flags],
        "run": [executor.flags],
    }
    table = defaults()
    out = []
    for flags in sources[section]:
        for key, spec in flags.items():
            path = tuple(key.split(".")) if section == "device" else (section, *key.split("."))
            default: Any = table
            for k in path:
                default = default[k]
            decl, help_ = spec if isinstance(spec, tuple) else ("--" + path[-1].replace("_", "-"), spec)
            choices = CHOICES.get(".".join(path))
            if choices:
                help_ += f" One of: {', '.join(choices)}."
            out.append((path, decl, help_, default))
    return out


def parse_assignment(text: str) -> dict[str, Any]:
    """``section.key=value`` (the value in TOML, or a bare string) → nested settings."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise LightsfmError(f"--set {text!r}: expected section.key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    out: dict[str, Any] = {}
    target = out
    *parents, last = key.strip().split(".")
    for k in parents:
        target = target.setdefault(k, {})
    target[last] = value
    return out


def validate(conf: dict[str, Any], defaults_: dict[str, Any] | None = None, prefix: str = "") -> None:
    """Checks every value of ``conf`` against the kind and range of its default."""
    defaults_ = defaults() if defaults_ is None else defaults_
    for k, v in conf.items():
        path = f"{prefix}{k}"
        if k not in defaults_:
            continue  # unknown keys are merge's error
        d = defaults_[k]
        if isinstance(d, dict):
            if not isinstance(v, dict):
                raise LightsfmError(f"setting {path} must be a table of settings, not {v!r:.60}")
            if k != "pycolmap":  # any pycolmap option: pycolmap checks them
                validate(v, d, f"{path}.")
        else:
            _check(path, d, v)


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of ``update`` onto a copy of ``base``; unknown keys are errors."""
    if not isinstance(update, dict):
        raise LightsfmError(f"settings must be a table, not {update!r:.60}")
    out = copy.deepcopy(base)
    for k, v in update.items():
        if k not in out:
            raise LightsfmError(f"unknown setting {k!r}; known: {', '.join(map(str, out))}")
        if isinstance(out[k], dict) and isinstance(v, dict) and k != "pycolmap":
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def load(
    preset: str = "default",
    file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    inputs: dict[str, Any] | None = None,
) -> dict:
    """The full settings for a run; a bad value is a one-line error naming it (and the file).

    Layers, later wins: defaults, the preset, what the input needs (``inputs``: e.g. a video
    pairs its frames sequentially), the TOML file, the flags (``overrides``).
    """
    if preset not in PRESETS:
        raise LightsfmError(f"unknown preset {preset!r}; one of {', '.join(PRESETS)}")
    conf = merge(merge(defaults(), PRESETS[preset]), inputs or {})
    if file is not None:
        try:
            conf = merge(conf, tomllib.loads(Path(file).read_text()))
            validate(conf)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise LightsfmError(f"{file}: cannot read config ({e})") from None
        except LightsfmError as e:
            raise LightsfmError(f"{file}: {e}") from None
    conf = merge(conf, overrides or {})
    validate(conf)
    return conf

"""Settings: one nested dict of per-stage confs, merged from defaults, a preset, a TOML file
and command-line flags (in that order, later wins)."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from . import dense, mapping, matching, pairs, verify
from .errors import LightsfmError
from .features import aliked


def defaults() -> dict[str, Any]:
    return copy.deepcopy(
        {
            "device": "cpu",
            "pairs": pairs.default_conf,
            "features": aliked.default_conf,
            "matching": matching.default_conf,
            "verify": verify.default_conf,
            "mapping": mapping.default_conf,
            "dense": dense.default_conf,
        }
    )


# Measured on ../shared/data with benchmarks/benchmark.py (README, "Presets").
PRESETS: dict[str, dict[str, Any]] = {
    # ALIKED (2048 keypoints), mutual nearest neighbours on every pair, LightGlue on the weak
    # pairs of images that have fewer than 2 strong ones (matching.hybrid).
    "default": {},
    # Mutual nearest neighbours only: no LightGlue.
    "fast": {"matching": {"model": "mnn"}},
    # The default at 1600 px instead of 1024. (More LightGlue, or 4096 keypoints, measured
    # lower mean mAA: 0.830 and 0.909 vs 0.934.)
    "accurate": {"features": aliked.confs["aliked-n16-accurate"]},
}


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of ``update`` onto a copy of ``base``; unknown keys are errors."""
    out = copy.deepcopy(base)
    for k, v in update.items():
        if k not in out:
            raise LightsfmError(f"unknown setting {k!r}; known: {', '.join(out)}")
        if isinstance(out[k], dict) and isinstance(v, dict) and k != "pycolmap":
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def load(preset: str = "default", file: Path | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """The full settings for a run."""
    if preset not in PRESETS:
        raise LightsfmError(f"unknown preset {preset!r}; one of {', '.join(PRESETS)}")
    conf = merge(defaults(), PRESETS[preset])
    if file is not None:
        try:
            conf = merge(conf, tomllib.loads(Path(file).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise LightsfmError(f"{file}: cannot read config ({e})") from None
    return merge(conf, overrides or {})

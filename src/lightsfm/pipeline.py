"""The whole pipeline: images → pairs → features → matches → verification → mapping.

Every stage reads and writes plain files under the output folder, skips what a previous
run finished, and is timed. ``reconstruct`` is what ``lightsfm reconstruct`` runs.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import checks, colmap, config, ensemble, extract, gps, mapping, match, orientation, pairs, verify
from .device import release_freed_memory
from .errors import LightsfmError
from .executor import Executor, from_conf
from .images import list_images, read_infos
from .io import output_lock
from .workspace import Workspace, fingerprint

if TYPE_CHECKING:
    import pycolmap


@dataclass
class Result:
    """What a run produced: the models (pycolmap, largest first) and a summary."""

    output: Path
    models: list[pycolmap.Reconstruction]
    num_images: int
    skipped: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def unregistered(self) -> list[str]:
        """Usable images that no model registered."""
        posed = {im.name for m in self.models for im in m.images.values() if im.has_pose}
        return [n for n in self.stats.get("image_names", []) if n not in posed]

    def suspect(self) -> bool:
        """Did the kept model fail its fold checks (lightsfm.checks)?"""
        return checks.warning(self.stats.get("mapper") or {}) is not None

    def summary(self) -> dict[str, Any]:
        return {
            "images": self.num_images,
            "skipped": self.skipped,
            "unregistered": self.unregistered(),
            "models": [colmap.summary(m) for m in self.models],
            # the kept model's fold checks failed (sparse/mapper.json has the details)
            "suspect": self.suspect(),
            "warning": checks.warning(self.stats.get("mapper") or {}),
            "timings_s": {k: round(v, 2) for k, v in self.timings.items()},
            **self.stats,
        }


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t


def reconstruct(
    image_dir: Path,
    output: Path,
    conf: dict[str, Any] | None = None,
    image_names: list[str] | None = None,
    executor: Executor | None = None,
) -> Result:
    """Reconstructs the images of ``image_dir`` (or just ``image_names``) into ``output``.

    Holds ``output/.lock`` meanwhile: a second run on the same folder is refused at once.
    A bad setting is a one-line LightsfmError naming it, as on the command line.
    ``executor``: where the per-image and per-pair work runs; by default the one the ``run``
    settings name, started here and stopped at the end.
    """
    conf = config.merge(config.defaults(), conf or {})
    config.validate(conf)  # before the lock: a bad setting leaves no output folder behind
    # (also before the lock: a cluster that cannot be reached leaves no output folder either)
    with nullcontext(executor) if executor is not None else from_conf(conf["run"]) as ex, output_lock(output):
        return _reconstruct(image_dir, Workspace(output), conf, image_names, ex)


def _reconstruct(
    image_dir: Path, ws: Workspace, conf: dict[str, Any], image_names: list[str] | None, executor: Executor
) -> Result:
    """``reconstruct`` under the lock, with the full, checked settings."""
    image_dir, output = Path(image_dir), ws.output
    output.mkdir(parents=True, exist_ok=True)
    ws.remove_temporaries()
    timer = _Timer()
    device = conf["device"]

    with timer("read"):
        # Sorted as a folder lists them: the order sets image ids and so the mapper's choices,
        # and one set of photos gives one model (the dino, listed in one shuffled order,
        # folded to mAA 0.358 against 0.989 sorted; benchmarks/results/2026-12-01-shuffle-*)
        names = sorted(image_names) if image_names is not None else list_images(image_dir)
        duplicates: dict[str, str] = {}
        infos, skipped = read_infos(image_dir, names, duplicates)
    names = [i.name for i in infos]
    known = verify.known_cameras(infos, conf["verify"])  # (a bad cameras file fails here, not after extraction)
    rotations: dict[str, int] = {}
    if conf["features"]["upright"]:
        with timer("orientation"):
            f = conf["features"]
            rotations, failed = orientation.main(image_dir, names, output, device, executor, f["masks"], f["cheap"])
        skipped.update(failed)
        names = [n for n in names if n not in failed]
        release_freed_memory()  # (the cheap features of every photo, before extraction's peak)
    others = ensemble.members(conf["features"])
    with timer("extract"):
        feature_file, failed = extract.main(image_dir, names, output, conf["features"], device, rotations, executor)
        extra_files = []
        for name in others:  # an ensemble: each extractor's own features
            path, more = extract.main(
                image_dir, names, output, {**conf["features"], "name": name}, device, rotations, executor
            )
            extra_files.append(path)
            failed.update(more)
    skipped.update(failed)
    infos = [i for i in infos if i.name in names and i.name not in failed]
    if len(infos) < 2:
        raise LightsfmError(
            f"{image_dir}: {len(infos)} usable image(s); a reconstruction needs at least 2"
            + (f" (skipped: {'; '.join(f'{k}: {v}' for k, v in skipped.items())})" if skipped else "")
        )
    names = [i.name for i in infos]
    with timer("pairs"):
        pair_file, pair_list = pairs.main(names, output, conf["pairs"], image_dir, feature_file, device)
    with timer("match"):
        match_file = match.main(pair_list, feature_file, output, conf["matching"], device, executor)
        if extra_files:
            match_files = [match.main(pair_list, f, output, conf["matching"], device, executor) for f in extra_files]
            feature_file, match_file = ensemble.main(
                [feature_file, *extra_files], [match_file, *match_files], pair_list, output
            )

    # Verification and mapping are cheap to redo but not per item: skip them when
    # nothing they read changed since they last finished.
    state = ws.state()
    database = ws.database
    key = fingerprint(names, feature_file, match_file, pair_file, conf["verify"], conf["mapping"])
    models = mapping.load_models(output) if state.get("map") == key and database.exists() else None
    stats: dict[str, Any] = {
        "pairs": len(pair_list),
        "image_dir": str(image_dir.resolve()),
        "image_names": names,
        "duplicates": duplicates,  # copy → the photo it repeats: same pose in the outputs
        "files": {"pairs": pair_file.name, "features": feature_file.name, "matches": match_file.name},
        "conf": conf,
    }
    if models:
        stats.update(state.get("map_stats", {}))
    else:
        with timer("verify"):
            priors = _gps_priors(image_dir, names) if conf["mapping"]["gps_priors"] else {}
            vstats = verify.main(infos, pair_list, feature_file, match_file, database, conf["verify"], executor, priors)
        stats["verified_pairs"] = vstats["verified"]
        with timer("map"):
            cameras_known = all(i.name in known for i in infos)
            models = mapping.main(database, image_dir, output, conf["mapping"], cameras_known)
        state.set(map=key, map_stats={"verified_pairs": vstats["verified"]})
    stats["mapper"] = mapping.read_mapper(output)
    result = Result(output, models, len(names) + len(skipped), skipped, timer.timings, stats)
    ws.write_summary(result.summary())
    return result


def _gps_priors(image_dir: Path, names: list[str]) -> dict[str, tuple[Any, float]]:
    """Position priors from the photos' EXIF GPS (local east-north-up metres about their
    mean, one-sigma accuracy), when GPS can tell them apart (lightsfm.gps.informative)."""
    fixes = gps.read_gps_folder(image_dir, names)
    if not gps.informative(fixes):
        return {}
    ordered, xyz = gps.enu_positions(fixes)
    return {n: (xyz[k], gps.accuracy_m(fixes[n])) for k, n in enumerate(ordered)}


def format_summary(result: Result) -> str:
    """Human-readable end-of-run summary."""
    s = result.summary()
    lines = [f"images: {s['images']} ({len(s['skipped'])} skipped)"]
    for name, reason in s["skipped"].items():
        lines.append(f"  skipped {name}: {reason}")
    for name in s["unregistered"]:
        lines.append(f"  not registered {name}: too few verified matches with the registered images")
    lines.append(f"pairs matched: {s['pairs']}, verified: {s.get('verified_pairs', '?')}")
    if not s["models"]:
        lines.append("no model could be built (too few verified matches between the images)")
    mapper = s.get("mapper") or {}
    if len(mapper.get("observations", {})) > 1:
        other = ", ".join(f"{k} {v}" for k, v in mapper["observations"].items() if k != mapper["kept"])
        lines.append(
            f"mapper: {mapper['kept']}, kept for explaining more matches "
            f"({mapper['observations'][mapper['kept']]} observations; {other})"
        )
    fold = checks.warning(mapper)
    if fold:
        lines.append(f"warning: {fold}")
    for k, m in enumerate(s["models"]):
        lines.append(
            f"model sparse/{k}: {m['registered']}/{s['images']} images registered, {m['points']} points, "
            f"mean track length {m['mean_track_length']:.2f}, "
            f"mean reprojection error {m['mean_reprojection_error']:.3f} px"
        )
    lines.append("time per stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in s["timings_s"].items()))
    lines.append(f"total: {sum(s['timings_s'].values()):.1f}s; outputs in {result.output}")
    return "\n".join(lines)

"""Videos as input: the sharpest frame of each stretch of a clip, written once as a JPEG.

``extract_frames`` decodes a clip with PyAV (FFmpeg's decoders: H.264, HEVC, VP9, AV1, …),
splits it into windows of consecutive frames (``target`` windows over the clip, or one
every ``every`` seconds), and keeps the frame of each window whose Laplacian has the
largest variance on a downscaled grey copy (motion blur and focus hunting make phone
frames far less sharp than their neighbours). Frames are named
``<clip stem>_<frame index in the clip, 6 digits>.jpg``, so names sort in time order and
map back to the clip. ``prepare_input`` turns a clip (or a folder of clips) into a folder
of frames and the settings that suit it (sequential pairing, one camera per clip).
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import LightsfmError, printable
from .io import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".3gp", ".mts", ".m2ts", ".ts", ".wmv", ".mpg"}
SHARPNESS_SIZE = 640  # long side of the grey copy the sharpness is measured on
JPEG_QUALITY = 95
FRAMES_DIR = "frames"  # under the output folder
# Bumped when the frames written for the same settings would differ (names, choice, encoding).
_VERSION = 1


def is_video(path: Path | str) -> bool:
    """Is ``path`` a file with a video extension (not looked into)?"""
    p = Path(path)
    return p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()


def frame_name(stem: str, index: int) -> str:
    """File name of frame ``index`` (0-based, in presentation order) of the clip ``stem``."""
    return f"{stem}_{index:06d}.jpg"


def _frame_pattern(stem: str) -> re.Pattern[str]:
    return re.compile(re.escape(stem) + r"_(\d{6,})\.jpg")


def manifest_path(clip: Path, out_dir: Path) -> Path:
    return Path(out_dir) / f"{Path(clip).stem}.frames.json"


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: high for crisp edges, low for blurred frames."""
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def _why(e: BaseException) -> str:
    """One line about a decoder's exception (FFmpeg's own reason, without errno and file name)."""
    text = " ".join(str(getattr(e, "strerror", None) or e).split())
    return printable(text[:200] if text else type(e).__name__)


def _open(clip: Path) -> Any:
    """The clip opened by PyAV, with its first video stream; one-line LightsfmError otherwise."""
    import av

    if not clip.is_file():
        raise LightsfmError(f"{printable(str(clip))}: video not found")
    try:
        container = av.open(str(clip))
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise LightsfmError(f"{printable(str(clip))}: cannot be read as a video ({_why(e)})") from None
    if not container.streams.video:
        container.close()
        raise LightsfmError(f"{printable(str(clip))}: no video stream in the file")
    return container


def _count_frames(clip: Path) -> int:
    """Frames in the clip: the container's count, else its packets counted (no decoding)."""
    import av

    with _open(clip) as container:
        stream = container.streams.video[0]
        if stream.frames > 0:
            return int(stream.frames)
        try:
            return sum(1 for p in container.demux(stream) if p.size)
        except av.FFmpegError as e:
            raise LightsfmError(f"{printable(str(clip))}: cannot be read as a video ({_why(e)})") from None


def _window_size(num_frames: int, fps: float, target: int, every: float | None) -> float:
    """Frames per window (≥ 1; fractional: windows then alternate between two lengths)."""
    if every is not None:
        return max(1.0, every * fps)
    return max(1.0, num_frames / target)


def _key(clip: Path, target: int, every: float | None) -> dict[str, Any]:
    st = clip.stat()
    return {
        "clip": str(clip.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "settings": {
            "target": target,
            "every": every,
            "sharpness_size": SHARPNESS_SIZE,
            "jpeg_quality": JPEG_QUALITY,
            "version": _VERSION,
        },
    }


def _existing(out_dir: Path, stem: str) -> dict[int, str]:
    """Frames of clip ``stem`` already in ``out_dir``, by frame index."""
    if not out_dir.is_dir():
        return {}
    pattern = _frame_pattern(stem)
    found = {}
    for p in out_dir.iterdir():
        m = pattern.fullmatch(p.name)
        if m:
            found[int(m.group(1))] = p.name
    return found


def extract_frames(clip: Path, out_dir: Path, target: int = 300, every: float | None = None) -> list[str]:
    """Writes the sharpest frame of each window of ``clip`` to ``out_dir``; returns their names.

    ``target``: about this many frames over the clip (a clip with fewer keeps every frame);
    ``every``: instead, one frame per ``every`` seconds. Resumable: frames already written
    for the same clip and settings are kept (``<stem>.frames.json`` records the clip's
    path, size and mtime and the settings); a changed clip or changed settings start over.
    A clip that cannot be decoded is a one-line LightsfmError naming it and the reason.
    """
    import av

    clip, out_dir = Path(clip), Path(out_dir)
    if target < 1:
        raise LightsfmError(f"frames per clip must be at least 1 (got {target})")
    if every is not None and not (math.isfinite(every) and every > 0):
        raise LightsfmError(f"seconds between frames must be positive (got {every})")
    if not clip.is_file():
        raise LightsfmError(f"{printable(str(clip))}: video not found")
    stem = clip.stem
    key = _key(clip, target, every)
    manifest = manifest_path(clip, out_dir)
    try:
        previous = json.loads(manifest.read_text()) if manifest.exists() else None
    except (OSError, ValueError):
        previous = None  # unreadable: start over
    existing = _existing(out_dir, stem)
    if previous and {k: previous.get(k) for k in key} == key:
        if previous.get("complete") and all((out_dir / n).is_file() for n in previous["frames"]):
            return list(previous["frames"])  # nothing to do: not even opened
    else:
        # another clip or other settings: its frames would mix with the new ones
        for name in existing.values():
            (out_dir / name).unlink()
        existing = {}
    num_frames = _count_frames(clip)  # before anything is written: an unreadable clip leaves nothing
    if num_frames == 0:
        raise LightsfmError(f"{printable(str(clip))}: no video frames in the file")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(manifest, json.dumps({**key, "complete": False}, indent=1))
    with _open(clip) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads: decoding is most of the time here
        fps = float(stream.average_rate or stream.guessed_rate or 30)
        size = _window_size(num_frames, fps, target, every)
        num_windows = max(1, math.ceil(num_frames / size))
        done = {int(i // size) for i in existing}  # one frame per window: a window with a file is done
        todo = set(range(num_windows)) - done
        written = dict(existing)
        best: tuple[float, int, Any] | None = None  # (sharpness, index, frame) of the current window
        window = -1
        decoded = 0

        def flush() -> None:
            if best is not None:
                written[best[1]] = _write(best[2], out_dir / frame_name(stem, best[1]))

        try:
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                w = int(index // size)
                if w != window:
                    flush()
                    best, window = None, w
                    if not todo or w > max(todo):
                        break  # every window left to do is behind (resuming), or more frames than counted
                if w not in todo:
                    continue
                scale = min(1.0, SHARPNESS_SIZE / max(frame.width, frame.height))
                gw, gh = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
                score = sharpness(frame.to_ndarray(format="gray", width=gw, height=gh))
                if best is None or score > best[0]:
                    best = (score, index, frame)
            else:
                if decoded < num_frames:
                    logger.warning("%s: ends at frame %d of the %d it declares (cut short?)", clip, decoded, num_frames)
            flush()
        except av.FFmpegError as e:
            if decoded == 0:
                raise LightsfmError(f"{printable(str(clip))}: cannot be decoded ({_why(e)})") from None
            # a damaged tail (a clip cut short while recording): keep the frames before it
            logger.warning("%s: decoding stopped at frame %d (%s); using the frames before it", clip, decoded, _why(e))
            flush()
    if not written:
        raise LightsfmError(f"{printable(str(clip))}: no video frames could be decoded")
    names = [written[i] for i in sorted(written)]
    atomic_write_text(manifest, json.dumps({**key, "complete": True, "frames": names}, indent=1))
    return names


def _write(frame: Any, path: Path) -> str:
    """One decoded frame, upright (the clip's display rotation applied), as a JPEG."""
    bgr = frame.to_ndarray(format="bgr24")
    # FFmpeg's convention: the display matrix turns the stored frame counterclockwise by
    # ``rotation`` degrees (phones record portrait clips as landscape frames plus -90°).
    k = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    if k:
        bgr = np.ascontiguousarray(np.rot90(bgr, k))
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise LightsfmError(f"{path}: the frame could not be encoded as JPEG")
    atomic_write_bytes(path, data.tobytes())
    return path.name


def find_videos(folder: Path) -> list[Path]:
    """Video files under ``folder`` (recursively), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if is_video(p))


def prepare_input(
    path: Path, output: Path, target: int = 300, every: float | None = None
) -> tuple[Path, dict[str, Any]]:
    """The image folder to reconstruct and the settings it needs.

    A clip, or a folder holding clips, has its frames extracted into ``output/frames/``;
    the settings returned then pair frames sequentially (plus loop closure by retrieval),
    skip the upright detection (a clip's frames share one orientation; detection matches
    every pair), and give all frames of a clip one camera. A folder of photos is returned
    as it is, with no settings.
    """
    path, output = Path(path), Path(output)
    if path.is_dir():
        clips = find_videos(path)
        if not clips:
            return path, {}
        from .images import IMAGE_EXTENSIONS

        photos = [p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
        if photos:
            logger.warning(
                "%s: holds videos and %d photo(s); using the videos' frames only (reconstruct the photos "
                "on their own, or put them in a folder of their own)",
                path,
                len(photos),
            )
    elif is_video(path):
        clips = [path]
    elif path.exists():
        raise LightsfmError(
            f"{printable(str(path))}: not a folder of photos or a video ({', '.join(sorted(VIDEO_EXTENSIONS))})"
        )
    else:
        raise LightsfmError(f"{printable(str(path))}: not found")
    stems: dict[str, Path] = {}
    for clip in clips:
        if clip.stem in stems:
            raise LightsfmError(
                f"{printable(str(clip))}: same name as {printable(str(stems[clip.stem]))}; their frames would "
                "share file names: rename one"
            )
        stems[clip.stem] = clip
    frames = output / FRAMES_DIR
    wanted: set[str] = set()
    for clip in clips:
        logger.info("extracting frames of %s", clip)
        names = extract_frames(clip, frames, target, every)
        wanted.update(names)
        logger.info("%s: %d frames", clip.name, len(names))
    # frames of clips no longer given (a folder whose clips changed) are not reconstructed
    for p in frames.iterdir():
        if p.suffix == ".jpg" and p.name not in wanted:
            p.unlink()
        elif p.name.endswith(".frames.json") and p.name[: -len(".frames.json")] not in stems:
            p.unlink()
    for leftover in frames.glob("*.tmp"):  # a frame being written when a run was killed
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    overrides: dict[str, Any] = {
        "pairs": {"strategy": "sequential"},
        "features": {"upright": False},
        # one clip: one camera, whatever sizes say; several: one per clip (frames carry no EXIF,
        # so clips of one size would otherwise share one, focal length and all)
        "verify": {"camera_mode": "single" if len(clips) == 1 else "per-clip"},
    }
    return frames, overrides

"""Is a model right? Checks of a finished model against the matches it was built from.

A model folded by symmetric structure (one side of an object mapped onto the other)
registers every photo at a small reprojection error: the mapper only keeps what agrees
with the model. The verified two-view geometries in the database do not: the correct
matches between photos on both sides of the fold were verified before mapping, and the
folded model cannot explain them. Each verified pair of registered photos is scored by the
share of its inlier matches that lie on the epipolar lines of the model's relative pose
(``explained``); a pair the model contradicts has many inliers and few explained.

A single misplaced photo can pass that test: epipolar lines constrain a match in one
direction only, and where a photo's matches cover a small part of it (an object on a dark
background) a pose far off can still put them near their lines. Its 3D points cannot: each
photo is also scored by the share of its 2D-3D correspondences (its matches to points the
other photos triangulated, seen by two photos besides it, through its strong pairs) that
its pose projects within ``max_error_px`` (``PhotoSupport``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .colmap import observations

if TYPE_CHECKING:
    import pycolmap

default_conf: dict[str, Any] = {
    "max_error_px": 4.0,  # epipolar (Sampson) error under the model's pose that still explains a match
    "min_inliers": 50,  # a pair this strong is evidence the model has to explain
    "max_explained": 0.5,  # a strong pair with less of its inliers explained contradicts the model
    # A model whose strong pairs leave more of their inliers unexplained is suspect.
    "max_unexplained_share": 0.05,
    # A photo with at least this many 2D-3D correspondences, less than ``max_explained`` of
    # them reprojected, is misplaced: the mapper's own bar for registering a photo
    # (``abs_pose_min_num_inliers``), so the correspondences could have placed it.
    "min_correspondences": 30,
}


@dataclass
class PairCheck:
    image1: str
    image2: str
    inliers: int
    explained: float  # share of the verified inliers the model's relative pose explains


@dataclass
class PhotoSupport:
    name: str
    correspondences: int  # its keypoints matched to points of the model seen by other photos
    explained: float  # share of them its pose reprojects within max_error_px


@dataclass
class ModelCheck:
    """How well one model explains the verified pairs between its registered photos."""

    pairs: list[PairCheck] = field(default_factory=list)
    photos: list[PhotoSupport] = field(default_factory=list)
    conf: dict[str, Any] = field(default_factory=lambda: dict(default_conf))

    def strong(self) -> list[PairCheck]:
        return [p for p in self.pairs if p.inliers >= self.conf["min_inliers"]]

    def contradicted(self, every: bool = False) -> list[PairCheck]:
        """The strong pairs (``every``: all pairs checked) with less than ``max_explained`` explained."""
        return [p for p in (self.pairs if every else self.strong()) if p.explained < self.conf["max_explained"]]

    def unexplained_share(self) -> float:
        """Share of the strong pairs' inlier matches that the model does not explain."""
        strong = self.strong()
        total = sum(p.inliers for p in strong)
        return sum(p.inliers * (1 - p.explained) for p in strong) / total if total else 0.0

    def unsupported(self) -> list[str]:
        """Photos whose pose reprojects less than ``max_explained`` of their (at least
        ``min_correspondences``) 2D-3D correspondences."""
        return sorted(
            p.name
            for p in self.photos
            if p.correspondences >= self.conf["min_correspondences"] and p.explained < self.conf["max_explained"]
        )

    def misplaced(self) -> list[str]:
        """Photos whose strong pairs the model contradicts more than it explains (by inliers):
        placed where their own matches say they are not; and the ``unsupported`` ones.
        Taken greedily, worst first, each one's pairs then set aside: a correct photo whose
        best pair is with a misplaced one is not blamed for it. A correct model of a
        symmetric scene contradicts its few wrong pairs, but each photo's correct pairs
        outweigh them."""
        pairs, out = self.strong(), self.unsupported()
        pairs = [p for p in pairs if p.image1 not in out and p.image2 not in out]
        while True:
            explained: dict[str, float] = defaultdict(float)
            unexplained: dict[str, float] = defaultdict(float)
            for p in pairs:
                for name in (p.image1, p.image2):
                    explained[name] += p.inliers * p.explained
                    unexplained[name] += p.inliers * (1 - p.explained)
            share = {n: unexplained[n] / (explained[n] + unexplained[n]) for n in unexplained if unexplained[n] > 0}
            worst = max(share, key=lambda n: (share[n], n), default=None)
            if worst is None or share[worst] <= 0.5:
                return sorted(out)
            out.append(worst)
            pairs = [p for p in pairs if worst not in (p.image1, p.image2)]

    def suspect(self) -> bool:
        """May the model be folded or hold misplaced photos?"""
        return bool(self.misplaced()) or self.unexplained_share() > self.conf["max_unexplained_share"]

    def summary(self) -> dict[str, Any]:
        bad = sorted(self.contradicted(), key=lambda p: -p.inliers)
        unsupported = set(self.unsupported())
        return {
            "suspect": self.suspect(),
            "misplaced": self.misplaced(),
            "unsupported": [
                [p.name, p.correspondences, round(p.explained, 3)] for p in self.photos if p.name in unsupported
            ],
            "strong_pairs": len(self.strong()),
            "contradicted_pairs": len(bad),
            "unexplained_share": round(self.unexplained_share(), 4),
            "contradicted": [[p.image1, p.image2, p.inliers, round(p.explained, 3)] for p in bad[:20]],
        }


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])


def keypoints_xy(rec: pycolmap.Reconstruction, image_id: int) -> np.ndarray:
    """All keypoints of an image, in pixels (N, 2)."""
    return np.array([p.xy for p in rec.images[image_id].points2D], dtype=np.float64).reshape(-1, 2)


def normalized_keypoints(rec: pycolmap.Reconstruction, image_id: int, xy: np.ndarray | None = None) -> np.ndarray:
    """All keypoints of an image (``xy``: its ``keypoints_xy``, if at hand) as undistorted,
    normalised camera coordinates (N, 2)."""
    image = rec.images[image_id]
    xy = keypoints_xy(rec, image_id) if xy is None else xy
    return np.asarray(rec.cameras[image.camera_id].cam_from_img(xy), dtype=np.float64).reshape(-1, 2)


def sampson_px(rec: pycolmap.Reconstruction, id1: int, id2: int, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Sampson epipolar error of matched normalised points ``x1`` ↔ ``x2`` (N, 2) under the
    model's relative pose of images ``id1`` and ``id2``, in pixels."""
    im1, im2 = rec.images[id1], rec.images[id2]
    rel = im2.cam_from_world() * im1.cam_from_world().inverse()
    t = np.asarray(rel.translation, dtype=np.float64)
    if np.linalg.norm(t) < 1e-12:  # same centre: no epipolar geometry to test
        return np.zeros(len(x1))
    E = _skew(t / np.linalg.norm(t)) @ np.asarray(rel.rotation.matrix(), dtype=np.float64)
    x1, x2 = np.c_[x1, np.ones(len(x1))], np.c_[x2, np.ones(len(x2))]
    Ex1, Etx2 = x1 @ E.T, x2 @ E
    num = np.einsum("ij,ij->i", x2, Ex1) ** 2
    den = Ex1[:, 0] ** 2 + Ex1[:, 1] ** 2 + Etx2[:, 0] ** 2 + Etx2[:, 1] ** 2
    err = np.sqrt(num / np.maximum(den, 1e-300))
    f = 0.5 * (rec.cameras[im1.camera_id].mean_focal_length() + rec.cameras[im2.camera_id].mean_focal_length())
    return err * f


def check_model(
    rec: pycolmap.Reconstruction,
    evidence: dict[tuple[int, int], np.ndarray],
    conf: dict[str, Any] | None = None,
    keypoints: dict[int, np.ndarray] | None = None,
) -> ModelCheck:
    """Scores every verified pair of photos that ``rec`` registered (see the module doc);
    ``evidence``: the verified inlier matches by image ids (``colmap.verified_pairs``);
    ``keypoints``: the images' ``keypoints_xy`` if at hand (``colmap.keypoints``)."""
    conf = {**default_conf, **(conf or {})}
    check = ModelCheck(conf=conf)
    posed = {i for i, im in rec.images.items() if im.has_pose}
    xy: dict[int, np.ndarray] = {}  # each image's keypoints read and converted once, not once per pair
    points: dict[int, np.ndarray] = {}
    for (id1, id2), matches in evidence.items():
        if id1 not in posed or id2 not in posed:
            continue
        for i in (id1, id2):
            if i not in points:
                xy[i] = keypoints[i] if keypoints is not None else keypoints_xy(rec, i)
                points[i] = normalized_keypoints(rec, i, xy[i])
        err = sampson_px(rec, id1, id2, points[id1][matches[:, 0]], points[id2][matches[:, 1]])
        check.pairs.append(
            PairCheck(
                rec.images[id1].name,
                rec.images[id2].name,
                len(matches),
                float(np.mean(err < conf["max_error_px"])),
            )
        )
    strong = {pair: m for pair, m in evidence.items() if len(m) >= conf["min_inliers"]}
    check.photos = photo_support(rec, strong, conf["max_error_px"], xy)
    return check


def photo_support(
    rec: pycolmap.Reconstruction,
    evidence: dict[tuple[int, int], np.ndarray],
    max_error_px: float,
    xy: dict[int, np.ndarray] | None = None,
) -> list[PhotoSupport]:
    """Each registered photo's 2D-3D correspondences through its verified matches (a keypoint
    matched to a keypoint of another registered photo that observes a 3D point seen by two
    photos besides it: a point it triangulated with one other agrees with its pose whatever
    the pose), and the share its pose reprojects within ``max_error_px``. ``xy``: images'
    ``keypoints_xy`` already read. (A keypoint matched to several points counts with the
    first, in the order of ``evidence``.)"""
    posed = [i for i, im in rec.images.items() if im.has_pose]
    point_of, own = {}, {}  # image id -> 3D point id of each keypoint (-1: none); the points it sees
    for i in posed:
        idx, pids = observations(rec.images[i])
        point_of[i] = np.full(rec.images[i].num_points2D(), -1, dtype=np.int64)
        point_of[i][idx] = pids
        own[i] = np.unique(pids)
    # how many photos see each point
    points, views = np.unique(np.concatenate([*own.values(), np.zeros(0, np.int64)]), return_counts=True)
    found: dict[int, list[np.ndarray]] = defaultdict(list)  # image -> [(keypoint, 3D point)], in evidence order
    for (id1, id2), matches in evidence.items():
        if id1 not in point_of or id2 not in point_of:
            continue
        for mine, other, col_mine, col_other in ((id1, id2, 0, 1), (id2, id1, 1, 0)):
            ids = point_of[other][matches[:, col_other]]
            found[mine].append(np.stack([matches[ids >= 0, col_mine], ids[ids >= 0]], axis=1))
    kept: dict[int, np.ndarray] = {}
    for i in posed:
        if not found[i]:
            continue
        pairs = np.concatenate(found[i])
        pairs = pairs[np.unique(pairs[:, 0], return_index=True)[1]]  # each keypoint's first point
        # photos besides this one that see the point: all that see it, less itself if it does
        besides = views[np.searchsorted(points, pairs[:, 1])] - np.isin(pairs[:, 1], own[i])
        if (besides >= 2).any():
            kept[i] = pairs[besides >= 2]
    needed = np.unique(np.concatenate([*kept.values(), np.zeros((0, 2), np.int64)])[:, 1])
    xyz_of = np.array([rec.points3D[pid].xyz for pid in needed.tolist()], dtype=np.float64).reshape(-1, 3)
    out = []
    for i, pairs in kept.items():
        image = rec.images[i]
        xyz = xyz_of[np.searchsorted(needed, pairs[:, 1])]
        kp = (xy[i] if xy and i in xy else keypoints_xy(rec, i))[pairs[:, 0]]
        in_cam = np.asarray(image.cam_from_world() * xyz, dtype=np.float64).reshape(-1, 3)
        ok = in_cam[:, 2] > 1e-9
        err = np.full(len(pairs), np.inf)
        if ok.any():
            proj = np.asarray(rec.cameras[image.camera_id].img_from_cam(in_cam[ok]), dtype=np.float64).reshape(-1, 2)
            err[ok] = np.linalg.norm(proj - kp[ok], axis=1)
        out.append(PhotoSupport(image.name, len(pairs), float(np.mean(err < max_error_px))))
    return out


def warning(mapper_record: dict[str, Any]) -> str | None:
    """A one-paragraph warning when a kept model failed its checks (from ``sparse/mapper.json``:
    the main model's, or that of another group of linked photos, ``parts``)."""
    for record in [mapper_record, *mapper_record.get("parts", [])]:
        found = record.get("checks", {}).get(record.get("kept", ""), {})
        if found.get("suspect"):
            break
    else:
        return None
    pairs = "; ".join(f"{a} - {b} ({n} inliers, {e:.0%} explained)" for a, b, n, e in found["contradicted"][:5])
    text = (
        f"this model may be folded or hold misplaced photos: it contradicts {found['contradicted_pairs']} of "
        f"{found['strong_pairs']} strongly matched pairs "
        f"({found['unexplained_share']:.1%} of their matches unexplained)"
    )
    if found["misplaced"]:
        text += f"; photos placed against their own matches: {', '.join(found['misplaced'][:10])}"
    return text + (f"; pairs: {pairs}" if pairs else "")

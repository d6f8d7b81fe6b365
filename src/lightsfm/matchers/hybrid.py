"""Mutual nearest neighbours first, LightGlue where they are not enough.

Most pairs of a well-shot scene match fine with mutual nearest neighbours (~100× cheaper
than LightGlue on a CPU); LightGlue earns its cost on the hard ones: wide baselines, little
texture, repeated structure. Each pair is matched with the ``first`` matcher and checked
with a quick MAGSAC++ fundamental matrix; a pair with fewer than ``weak_below`` surviving
matches is weak. Weak pairs, those with the most first-pass inliers first, are matched
again with the ``second`` matcher (on each image's ``second_max_keypoints`` strongest
keypoints) and its matches are kept, unless both images already have ``strong_enough``
strong pairs: then the pair adds little and keeps its first matches.
Both matchers are plug-ins named by the settings.

Which weak pairs get the second matcher depends on the strong pairs found before them, so
they go in waves of ``second_wave`` pairs (in a fixed order: most first-pass inliers,
then names): each wave's decisions use the strong pairs of the waves before it. The result
depends on the wave size, never on the order the pairs were listed in or on the executor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from .base import Features, Matcher, Matches, Run, quick_inliers

if TYPE_CHECKING:
    from ..match import MatchTask


class HybridMatcher(Matcher):
    name = "hybrid"
    default_conf: dict[str, Any] = {
        "first": "mnn",
        "second": "lightglue",
        "weak_below": 100,  # first-pass inliers under which a pair is matched again
        "second_max_keypoints": 512,
        # Strong pairs after which an image needs no second pass (0: no limit). 4, chosen by
        # leave-one-scene-out over the eight scenes with no held-out loss (0, 1, 2, 4; results
        # 2026-11-30-loso-after-refocus.md): against 2, the Middlebury rings 0.989 / 0.987 vs
        # 0.979 / 0.977, the rest equal; over five small scenes and scan65 145.3 s vs 146.7 s.
        "strong_enough": 4,
        "second_wave": 1,  # weak pairs decided together (1: each sees every pair before it)
        "check_threshold": 1.0,  # the quick check's epipolar threshold, in pixels of the extraction size
    }

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "cpu", features: str = "aliked") -> None:
        self.full = dict(conf or {})  # the composed matchers take their own settings from it
        super().__init__(conf, device, features)

    def _init(self) -> None:
        from . import get

        c = self.conf
        self.first = get(c["first"])(self.full, self.device, self.features)
        second = {**self.full, "max_keypoints": c["second_max_keypoints"]}
        self.second = get(c["second"])(second, self.device, self.features)

    def __call__(self, feats0: Features, feats1: Features) -> Matches:
        """One pair on its own (no budget): the first matcher, or the second when it is weak."""
        out = self.first(feats0, feats1)
        if quick_inliers(feats0, feats1, out["matches0"], self.conf["check_threshold"]) >= self.conf["weak_below"]:
            return out
        return self.second(feats0, feats1)

    @classmethod
    def plan(
        cls, conf: dict[str, Any], pairs: list[tuple[str, str]], task: MatchTask, run: Run, done: Iterable = ()
    ) -> Iterator[tuple[str, str, Matches]]:
        c = {**cls.default_conf, **{k: v for k, v in conf.items() if k in cls.default_conf}}
        below, enough, th = c["weak_below"], c["strong_enough"], c["check_threshold"]
        strong: Counter[str] = Counter()
        feats = task.features()
        for a, b, m in done:  # a resumed run decides as an uninterrupted one
            if quick_inliers(feats[a], feats[b], m, th) >= below:
                strong.update((a, b))
        weak = []
        first = task.using(c["first"], th)
        for a, b, out, inliers in run(first, pairs, desc=f"match ({c['first']})", unit="pair"):
            if inliers >= below:
                strong.update((a, b))
                yield a, b, out
            else:
                weak.append((-inliers, a, b, out))
        weak.sort(key=lambda w: w[:3])
        second = task.using(c["second"], th, {"max_keypoints": c["second_max_keypoints"]})
        with tqdm(total=len(weak), desc=f"match ({c['second']})", unit="pair") as bar:
            for i in range(0, len(weak), c["second_wave"]):
                wave = weak[i : i + c["second_wave"]]
                todo = [(a, b) for _, a, b, _ in wave if not (enough and strong[a] >= enough and strong[b] >= enough)]
                again = {(a, b): (out, n) for a, b, out, n in run(second, todo)}
                for _, a, b, out in wave:
                    if (a, b) in again:
                        out, n = again[(a, b)]
                        if n >= below:
                            strong.update((a, b))
                    yield a, b, out
                bar.update(len(wave))

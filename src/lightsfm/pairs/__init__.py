"""Which image pairs to match → ``pairs-<strategy>.txt`` (one 'name0 name1' per line).

Strategies: ``exhaustive`` (every pair), ``retrieval`` (global descriptors, see
:mod:`.retrieval`) and ``auto`` (exhaustive up to ``exhaustive_max`` images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from . import exhaustive, retrieval

default_conf: dict[str, Any] = {
    "strategy": "auto",  # exhaustive | retrieval | auto
    "exhaustive_max": 20,  # auto: exhaustive up to this many images
    **retrieval.default_conf,
}


def write_pairs(path: Path, pairs: list[tuple[str, str]]) -> None:
    """Writes 'a<TAB>b' lines (names may contain spaces); an unchanged file is left untouched."""
    text = "".join(f"{a}\t{b}\n" for a, b in pairs)
    if not (Path(path).exists() and Path(path).read_text() == text):
        atomic_write_text(Path(path), text)


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """Reads a pair list; lines are 'a<TAB>b' or, as in hloc/COLMAP, 'a b'."""
    pairs = []
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        a, b = line.split("\t") if "\t" in line else line.split()
        pairs.append((a, b))
    return pairs


def main(
    names: list[str],
    output: Path,
    conf: dict[str, Any] | None = None,
    image_dir: Path | None = None,
    feature_file: Path | None = None,
    device: str = "cpu",
) -> tuple[Path, list[tuple[str, str]]]:
    """Chooses the pairs of ``names`` to match and writes them to ``output/pairs-<strategy>.txt``."""
    conf = {**default_conf, **(conf or {})}
    strategy = conf["strategy"]
    if strategy == "auto":
        strategy = "exhaustive" if len(names) <= conf["exhaustive_max"] else "retrieval"
    if strategy == "exhaustive":
        pairs = exhaustive.pairs_exhaustive(names)
        path = Path(output) / "pairs-exhaustive.txt"
    elif strategy == "retrieval":
        pairs = retrieval.main(names, output, conf, image_dir=image_dir, feature_file=feature_file, device=device)
        path = Path(output) / f"pairs-{retrieval.conf_tag(conf)}.txt"
    else:
        raise ValueError(f"unknown pairing strategy {strategy!r} (exhaustive, retrieval, auto)")
    write_pairs(path, pairs)
    return path, pairs

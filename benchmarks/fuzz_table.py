"""The fuzz table of issue 16: mutation kind × format → files used / skipped, and tracebacks.

Builds tests/fuzz_corpus.py's corpus in a temporary folder, reads it as the pipeline does
(images.read_infos), decodes every file read as usable (images.load_image) and prints a
markdown table. Any exception other than ImageError is counted as a traceback (must be 0).

    .venv/bin/python benchmarks/fuzz_table.py [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fuzz_corpus import build  # noqa: I001

from lightsfm.errors import ImageError, printable
from lightsfm.images import list_images, load_image, read_infos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the per-file warnings are the table's rows
    sources = sorted((ROOT / "demo" / "sceaux-castle" / "images").glob("*.JPG"))
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        cases = build(root, sources, args.seed)
        t = time.perf_counter()
        tracebacks = 0
        try:
            infos, skipped = read_infos(root, list_images(root))
        except Exception:
            traceback.print_exc()
            infos, skipped, tracebacks = [], {}, tracebacks + 1
        used = {i.name for i in infos}
        for name in list(used):
            try:
                load_image(root / name, 512)
            except ImageError as e:  # read as usable, then not decodable: a bug in reading
                skipped[name] = f"LATE: {e.reason}"
                used.discard(name)
            except Exception:
                traceback.print_exc()
                tracebacks += 1
        elapsed = time.perf_counter() - t
    count: Counter = Counter()
    unexpected = []
    for name, case in cases.items():
        key = printable(name)
        outcome = "used" if key in used else "skipped" if key in skipped else "missing"
        count[(case.kind, case.fmt, outcome)] += 1
        if outcome == "missing" or (case.expect != "either" and outcome != case.expect):
            unexpected.append((key, case, outcome, skipped.get(key)))
    kinds = sorted({c.kind for c in cases.values()}, key=lambda k: list(c.kind for c in cases.values()).index(k))
    fmts = sorted({c.fmt for c in cases.values()})
    print("| kind | " + " | ".join(fmts) + " | used | skipped |")
    print("|---" * (len(fmts) + 3) + "|")
    for kind in kinds:
        cells = []
        for f in fmts:
            u, s = count[(kind, f, "used")], count[(kind, f, "skipped")]
            cells.append(f"{u}/{s}" if u or s else "")
        tu = sum(count[(kind, f, "used")] for f in fmts)
        ts = sum(count[(kind, f, "skipped")] for f in fmts)
        print(f"| {kind} | " + " | ".join(cells) + f" | {tu} | {ts} |")
    late = sum(1 for r in skipped.values() if r.startswith("LATE"))
    print(
        f"\ncells: used/skipped. {len(cases)} cases: {len(used)} used, {len(skipped)} skipped; {tracebacks} "
        f"tracebacks; {late} read as usable but not decodable; {len(unexpected)} against expectation; "
        f"read + decode {elapsed:.2f} s (seed {args.seed})"
    )
    for u in unexpected:
        print("unexpected:", u)
    reasons = Counter(r.split(" (")[0] for r in skipped.values())
    print("\nreasons:", "; ".join(f"{r}: {n}" for r, n in reasons.most_common()))


if __name__ == "__main__":
    main()

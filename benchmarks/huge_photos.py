"""Peak memory of reading huge photos (issue 16): a 12000×9000 JPEG and PNG, and
60000×60000 declared sizes (decompression bombs), each read in a fresh process the way the
pipeline reads it (images.read_info, then images.load_image at the feature size).

    .venv/bin/python benchmarks/huge_photos.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MAKE = """
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
# smooth random texture (a plain colour would compress to nothing and decode trivially)
small = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
im = Image.fromarray(small).resize((12000, 9000), Image.Resampling.BILINEAR)
im.save(sys.argv[1] + "/huge.jpg", quality=90)
im.save(sys.argv[1] + "/huge.png", compress_level=1)
"""

MEASURE = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from lightsfm.errors import ImageError
from lightsfm.images import read_info, load_image
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path = Path(sys.argv[1])
t = time.perf_counter()
out = {{"file": path.name, "size_mb": round(path.stat().st_size / 1e6, 1)}}
try:
    info = read_info(path.parent, path.name)
    rgb, size = load_image(path, int(sys.argv[2]))
    out.update(outcome="used", declared=f"{{size[0]}}x{{size[1]}}", decoded=f"{{rgb.shape[1]}}x{{rgb.shape[0]}}")
except ImageError as e:
    out.update(outcome="skipped", reason=e.reason)
out["seconds"] = round(time.perf_counter() - t, 2)
out["peak_rss_mb_after_imports"] = round(base / 1024)
out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps(out))
"""


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from fuzz_corpus import BOMBS, base_photos, encode

    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-c", MAKE, d], check=True)
        photos = base_photos(sorted((ROOT / "demo" / "sceaux-castle" / "images").glob("*.JPG")), 1)
        files = ["huge.jpg", "huge.png"]
        for fmt, bomb in BOMBS.items():
            from PIL import Image

            extra = {"exif": Image.Exif()} if fmt == "webp" else {}
            if fmt == "webp":
                extra["exif"][0x010F] = "x"
            name = f"bomb.{fmt}"
            (Path(d) / name).write_bytes(bomb(encode(photos[0], fmt, **extra)))
            files.append(name)
        for name in files:
            for size in (1024,):
                r = subprocess.run(
                    [sys.executable, "-c", MEASURE.format(tests=str(ROOT / "tests")), str(Path(d) / name), str(size)],
                    capture_output=True,
                    text=True,
                )
                print(r.stdout.strip() or r.stderr[-2000:])


if __name__ == "__main__":
    main()

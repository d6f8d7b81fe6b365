"""lightsfm: a folder of photos to cameras and a sparse 3D model, on a CPU."""

# cv2 must be imported before pycolmap: the other order crashes cv2.imwrite of PNG files
# (a zlib symbol clash). Importing it here makes every entry point safe.
import cv2  # noqa: F401

__version__ = "0.1.0"

"""Local features: ALIKED keypoints and descriptors → features.h5."""

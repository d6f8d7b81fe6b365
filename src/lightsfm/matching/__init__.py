"""Matching local features between image pairs → matches.h5."""

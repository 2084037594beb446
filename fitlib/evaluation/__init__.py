"""Scoring fits: metrics (MPJPE, PA-MPJPE, PVE, reprojection error), the methods a benchmark compares,
and the 3DPW benchmark runner."""

"""Threshold-free cluster enhancement (Smith & Nichols 2009), as nilearn computes it."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["tfce"]


def tfce(
    values: np.ndarray, structure: np.ndarray, *, E: float = 0.5, H: float = 2.0, dh="auto"
) -> np.ndarray:
    """Threshold-free cluster enhancement of the positive part of a map (Smith & Nichols 2009).

    Each voxel gets ``sum_h extent(h)**E * h**H`` over the thresholds ``h = dh, 2 dh, ...
    max``, where ``extent(h)`` is the size of the cluster (of voxels ``>= h``, connected by
    ``structure``) that holds it. As nilearn's TFCE (``permuted_ols(tfce=True)``) and
    fslmaths: the steps are not multiplied by ``dh``, and ``dh="auto"`` takes 100 steps
    up to the map's maximum; a number of steps outside [10, 1000] is clipped.

    Parameters
    ----------
    values : ndarray, 3D
        The map (NaN and values <= 0 are background).
    structure : ndarray (3, 3, 3) of bool
        Connectivity of voxels in a cluster.
    E, H : float
        Extent and height exponents.
    dh : "auto" or float
        Step between thresholds.

    Returns
    -------
    ndarray, 3D
        TFCE values (0 on background).
    """
    values = np.where(np.isfinite(values), values, 0.0)
    top = float(values.max()) if values.size else 0.0
    out = np.zeros(values.shape)
    if top <= 0:
        return out
    if isinstance(dh, str):
        if dh != "auto":
            raise ValueError(f"dh must be 'auto' or a positive number, got {dh!r}.")
        steps = 100
    else:
        if not dh > 0:
            raise ValueError(f"dh must be 'auto' or a positive number, got {dh!r}.")
        steps = round(top / dh)
    steps = min(max(steps, 10), 1000)
    for h in np.linspace(0.0, top, steps + 1)[1:]:
        labels, _ = ndimage.label(values >= h, structure=structure)
        extent = np.bincount(labels.ravel())
        extent[0] = 0
        out += (extent**E * h**H)[labels]
    return out

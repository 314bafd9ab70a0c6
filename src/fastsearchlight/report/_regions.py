"""The best-scoring regions of a map: clusters of high-scoring voxels, as a table."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from nibabel.affines import apply_affine
from scipy import ndimage

from ..stats import clusters_above
from ._maps import _load_3d

__all__ = ["TOP_REGION_COLUMNS", "top_regions"]

#: Columns of the frame returned by :func:`top_regions`, in order.
TOP_REGION_COLUMNS = [
    "cluster",
    "peak_score",
    "peak_x_mm",
    "peak_y_mm",
    "peak_z_mm",
    "peak_i",
    "peak_j",
    "peak_k",
    "n_voxels",
    "mean_score",
]

_TOP_REGION_DTYPES = {
    "cluster": "int64",
    "peak_score": "float64",
    "peak_x_mm": "float64",
    "peak_y_mm": "float64",
    "peak_z_mm": "float64",
    "peak_i": "int64",
    "peak_j": "int64",
    "peak_k": "int64",
    "n_voxels": "int64",
    "mean_score": "float64",
}


#: clusters of face-, edge- or corner-touching voxels
_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def _empty_regions() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _TOP_REGION_DTYPES.items()})


def top_regions(
    scores_img,
    *,
    chance: float | None,
    n: int | None = 10,
    min_voxels: int = 1,
    threshold: float | None = None,
) -> pd.DataFrame:
    """The best-scoring regions of a map: clusters of high-scoring voxels, best first.

    Voxels scoring at least ``threshold`` and strictly above ``chance`` are grouped into
    clusters of face-, edge- or corner-touching voxels (26-connectivity). Each cluster is
    described by its peak (highest-scoring voxel; the first in C order on ties), its size
    and its mean score. Clusters are sorted by peak score, then size.

    Parameters
    ----------
    scores_img : Niimg-like
        3D score map, 0 (or NaN) outside the searched voxels. A single slice is fine.
    chance : float or None
        Chance level; only voxels scoring above it are kept. None sets no such floor.
    n : int or None, default=10
        Number of clusters to return; None returns all.
    min_voxels : int, default=1
        Smallest cluster size kept.
    threshold : float or None, default=None
        Score a voxel needs. None uses ``max(chance, 95th percentile of the in-map scores)``,
        where in-map scores are the finite non-zero ones.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TOP_REGION_COLUMNS`: ``cluster`` (rank, from 1), ``peak_score``,
        ``peak_x_mm``, ``peak_y_mm``, ``peak_z_mm`` (world coordinates of the peak from the
        image affine), ``peak_i``, ``peak_j``, ``peak_k`` (its voxel indices),
        ``n_voxels`` and ``mean_score``. Empty, with the same columns, when no voxel passes.
        ``attrs["threshold"]`` holds the threshold used (None for a map with no in-map
        voxel).
    """
    if n is not None and (not isinstance(n, numbers.Integral) or n < 1):
        raise ValueError(f"n must be a positive integer or None, got {n!r}.")
    if not isinstance(min_voxels, numbers.Integral) or min_voxels < 1:
        raise ValueError(f"min_voxels must be a positive integer, got {min_voxels!r}.")
    img = _load_3d(scores_img, "scores_img")
    raw = np.asarray(img.dataobj, dtype=np.float64)
    in_map = np.isfinite(raw) & (raw != 0)
    data = np.where(in_map, raw, 0.0)

    frame = _empty_regions()
    frame.attrs["threshold"] = None
    if not in_map.any():
        return frame
    if threshold is None:
        threshold = float(np.percentile(data[in_map], 95))
        if chance is not None:
            threshold = max(threshold, float(chance))
    threshold = float(threshold)
    frame.attrs["threshold"] = threshold

    selected = in_map & (data >= threshold)
    if chance is not None:
        selected &= data > chance
    # the selected voxels (1.0) form the clusters, labelled as the permutation test does
    labels, sizes = clusters_above(selected.astype(np.float64), 1.0, _CONNECTIVITY)
    if sizes.size == 0:
        return frame
    frame = _region_rows(data, labels, sizes, img.affine, min_voxels, n)
    frame.attrs["threshold"] = threshold
    return frame


def _region_rows(data, labels, sizes, affine, min_voxels: int, n: int | None) -> pd.DataFrame:
    """One row per cluster of ``labels`` of at least ``min_voxels``, best first, ``n`` at most."""
    n_labels = sizes.size
    index = np.arange(1, n_labels + 1)
    peaks = np.asarray(ndimage.maximum(data, labels, index), dtype=np.float64)
    means = np.asarray(ndimage.mean(data, labels, index), dtype=np.float64)
    positions = np.array(ndimage.maximum_position(data, labels, index), dtype=np.int64)
    positions = positions.reshape(n_labels, 3)
    world = apply_affine(affine, positions)

    keep = sizes >= min_voxels
    order = np.lexsort((-sizes[keep], -peaks[keep]))
    if n is not None:
        order = order[:n]
    rows = {
        "cluster": np.arange(1, order.size + 1),
        "peak_score": peaks[keep][order],
        "peak_x_mm": world[keep][order, 0],
        "peak_y_mm": world[keep][order, 1],
        "peak_z_mm": world[keep][order, 2],
        "peak_i": positions[keep][order, 0],
        "peak_j": positions[keep][order, 1],
        "peak_k": positions[keep][order, 2],
        "n_voxels": sizes[keep][order],
        "mean_score": means[keep][order],
    }
    return pd.DataFrame(rows).astype(_TOP_REGION_DTYPES)

"""Threshold-free cluster enhancement (Smith & Nichols 2009), as nilearn computes it, and
the clusters it adds up: of a voxel grid (connected by a structuring element) or of any
graph (a mesh's vertices connected by its edges)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["label_clusters", "tfce"]


def label_clusters(above: np.ndarray, structure) -> tuple[np.ndarray, int]:
    """Connected clusters of the True elements of ``above``: labels (0: background), count.

    Parameters
    ----------
    above : ndarray of bool
        A 3D map on a grid, or one value per node of a graph.
    structure : ndarray (3, 3, 3) of bool or scipy.sparse matrix
        Connectivity of grid voxels (``scipy.ndimage.label``), or the graph's symmetric
        adjacency (n_nodes x n_nodes). Either way, clusters are numbered in the order of
        their first element (C order of the grid, node order of the graph).
    """
    from scipy import sparse

    if not sparse.issparse(structure):
        return ndimage.label(above, structure=structure)
    from scipy.sparse.csgraph import connected_components

    nodes = np.flatnonzero(above)
    labels = np.zeros(above.shape, dtype=np.int32)
    if nodes.size == 0:
        return labels, 0
    sub = sparse.csr_matrix(structure)[nodes][:, nodes]
    n, component = connected_components(sub, directed=False)
    labels[nodes] = component + 1
    return labels, int(n)


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
    values : ndarray, 3D, or (n_nodes,) with a graph
        The map (NaN and values <= 0 are background).
    structure : ndarray (3, 3, 3) of bool or scipy.sparse matrix
        Connectivity of voxels in a cluster, or a graph's adjacency (a mesh's edges; see
        :func:`label_clusters`).
    E, H : float
        Extent and height exponents.
    dh : "auto" or float
        Step between thresholds.

    Returns
    -------
    ndarray, of the shape of ``values``
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
        labels, _ = label_clusters(values >= h, structure)
        extent = np.bincount(labels.ravel())
        extent[0] = 0
        out += (extent**E * h**H)[labels]
    return out

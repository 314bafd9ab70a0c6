"""Threshold-free cluster enhancement (Smith & Nichols 2009), as nilearn computes it, and
the clusters it adds up: of a voxel grid (connected by a structuring element) or of any
graph (a mesh's vertices connected by its edges).

TFCE's clusters at every threshold come from one sweep (:func:`_tfce_sweep`, compiled):
the map's elements join a union-find forest from the highest value down, so the clusters
of each threshold are those of the one above with the new elements merged in, instead of
labelling the whole map afresh at each of its (about 100) thresholds.
"""

from __future__ import annotations

import numpy as np
from numba import njit
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
    nodes = np.flatnonzero(values > 0)  # the elements of some cluster at any threshold
    indptr, indices = _neighbours_among(nodes, values.shape, structure)
    heights = np.linspace(0.0, top, steps + 1)[1:]
    out.reshape(-1)[nodes] = _tfce_sweep(values.reshape(-1)[nodes], indptr, indices, heights, E, H)
    return out


def _neighbours_among(nodes: np.ndarray, shape: tuple, structure) -> tuple[np.ndarray, np.ndarray]:
    """The connections among ``nodes`` (flat indices into a map of ``shape``), as CSR
    arrays over their positions in ``nodes``: the graph's own edges, or on a grid the
    offsets of the structuring element."""
    from scipy import sparse

    n = nodes.size
    if sparse.issparse(structure):
        sub = sparse.csr_matrix(structure)[nodes][:, nodes]
        return sub.indptr.astype(np.int64), sub.indices.astype(np.int64)
    position = np.full(int(np.prod(shape)), -1, dtype=np.int64)
    position[nodes] = np.arange(n)
    ijk = np.stack(np.unravel_index(nodes, shape), axis=1)
    centre = np.array(structure.shape) // 2
    rows, cols = [], []
    for offset in np.argwhere(structure) - centre:
        if not offset.any():
            continue
        other = ijk + offset
        inside = np.all((other >= 0) & (other < np.array(shape)), axis=1)
        flat = np.ravel_multi_index(tuple(other[inside].T), shape)
        there = position[flat]
        keep = there >= 0
        rows.append(np.flatnonzero(inside)[keep])
        cols.append(there[keep])
    rows = np.concatenate(rows) if rows else np.empty(0, np.int64)
    cols = np.concatenate(cols) if cols else np.empty(0, np.int64)
    graph = sparse.csr_matrix((np.ones(rows.size, bool), (rows, cols)), shape=(n, n))
    return graph.indptr.astype(np.int64), graph.indices.astype(np.int64)


@njit(cache=True)
def _root(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@njit(cache=True)
def _tfce_sweep(values, indptr, indices, heights, E, H):
    """TFCE of positive ``values`` on a graph (CSR ``indptr``, ``indices``) at thresholds
    ``heights`` (increasing): each element's ``sum_h extent(h)**E * h**H`` over the
    thresholds it reaches, ``extent(h)`` the size of its cluster of elements ``>= h``. The
    elements join a union-find forest from the highest down; at each threshold every
    element reached adds its cluster's term."""
    n = values.shape[0]
    order = np.argsort(-values, kind="mergesort")
    parent = np.arange(n)
    size = np.zeros(n, dtype=np.int64)
    joined = np.zeros(n, dtype=np.bool_)
    out = np.zeros(n)
    reached = 0
    for t in range(heights.shape[0] - 1, -1, -1):
        h = heights[t]
        while reached < n and values[order[reached]] >= h:
            v = order[reached]
            joined[v] = True
            size[v] = 1
            for e in range(indptr[v], indptr[v + 1]):
                u = indices[e]
                if joined[u]:
                    a = _root(parent, v)
                    b = _root(parent, u)
                    if a != b:
                        if size[a] < size[b]:
                            a, b = b, a
                        parent[b] = a
                        size[a] += size[b]
            reached += 1
        weight = h**H
        for i in range(reached):
            v = order[i]
            out[v] += size[_root(parent, v)] ** E * weight
    return out

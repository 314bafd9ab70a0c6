"""Threshold-free cluster enhancement (Smith & Nichols 2009), as nilearn computes it, and
the clusters it adds up: of a voxel grid (connected by a structuring element) or of any
graph (a mesh's vertices connected by its edges).

TFCE's clusters at every threshold come from one sweep (:func:`_tfce_sweep`, compiled,
without the interpreter lock): the map's elements join a union-find forest from the highest
value down, so the clusters of each threshold are those of the one above with the new
elements merged in, instead of labelling the whole map afresh at each of its (about 100)
thresholds; a cluster's term is added once for each change of the cluster (a node of the
clusters' tree), not once per element and threshold. :class:`TfceGraph` holds the
elements' connections, found once for the many maps of a permutation test.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from scipy import ndimage

__all__ = ["TfceGraph", "label_clusters", "tfce"]


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

    See Also
    --------
    TfceGraph : the same for many maps of one space, its connections found once.
    """
    values = np.where(np.isfinite(values), values, 0.0)
    nodes = np.flatnonzero(values > 0)  # the elements of some cluster at any threshold
    out = np.zeros(values.shape)
    if nodes.size:
        graph = TfceGraph(*_neighbours_among(nodes, values.shape, structure))
        out.reshape(-1)[nodes] = graph(values.reshape(-1)[nodes], E=E, H=H, dh=dh)
    return out


class TfceGraph:
    """TFCE of many maps over the same elements, their connections found once.

    Parameters
    ----------
    indptr, indices : ndarray of int64
        The elements' connections as a CSR adjacency (symmetric, no self-loops): element
        ``i``'s neighbours are ``indices[indptr[i]:indptr[i + 1]]``.

    See Also
    --------
    TfceGraph.of_mask : the graph of a mask's voxels, or of a mesh's vertices.
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray) -> None:
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int64)

    @classmethod
    def of_mask(cls, mask: np.ndarray | None, structure) -> TfceGraph:
        """The graph of the True voxels of ``mask`` (in C order) connected by the
        structuring element ``structure``; with ``mask`` None, ``structure`` is the
        adjacency of the elements themselves (a mesh's vertices)."""
        if mask is None:
            n = structure.shape[0]
            return cls(*_neighbours_among(np.arange(n), (n,), structure))
        return cls(*_neighbours_among(np.flatnonzero(mask), mask.shape, structure))

    @property
    def n_elements(self) -> int:
        return self.indptr.shape[0] - 1

    def __call__(self, values: np.ndarray, *, E: float = 0.5, H: float = 2.0, dh="auto") -> np.ndarray:
        """TFCE of one value per element, as :func:`tfce` of the map they lay out."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.n_elements,):
            raise ValueError(f"values has shape {values.shape}, the graph has {self.n_elements} elements.")
        values = np.where(np.isfinite(values), values, 0.0)
        top = float(values.max()) if values.size else 0.0
        if top <= 0:
            return np.zeros(values.shape)
        if isinstance(dh, str):
            if dh != "auto":
                raise ValueError(f"dh must be 'auto' or a positive number, got {dh!r}.")
            steps = 100
        else:
            if not dh > 0:
                raise ValueError(f"dh must be 'auto' or a positive number, got {dh!r}.")
            steps = round(top / dh)
        steps = min(max(steps, 10), 1000)
        heights = np.linspace(0.0, top, steps + 1)[1:]
        return _tfce_sweep(values, self.indptr, self.indices, heights, E, H)


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


@njit(cache=True, nogil=True)
def _root(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def _tfce_sweep(values, indptr, indices, heights, E, H):
    """TFCE on a graph (CSR ``indptr``, ``indices``) at thresholds ``heights``
    (increasing, positive): each element's ``sum_h extent(h)**E * h**H`` over the
    thresholds it reaches, ``extent(h)`` the size of its cluster of elements ``>= h``.

    The positive elements join a union-find forest from the highest down. Each change of
    a cluster (an element joins it, clusters merge) starts a node of the clusters' tree,
    whose size holds until its cluster changes again; the node then adds
    ``size**E * sum(h**H)`` over the thresholds it lasted, and points to the node that
    follows it. An element's TFCE is the sum over the nodes from the one it joined to the
    last, taken from the last down: no pass over the elements at each threshold.
    """
    n = values.shape[0]
    out = np.zeros(n)
    positive = np.flatnonzero(values > 0)
    m = positive.shape[0]
    order = positive[np.argsort(-values[positive], kind="mergesort")]
    weight = heights**H
    parent = np.arange(n)
    size = np.zeros(n, dtype=np.int64)
    joined = np.zeros(n, dtype=np.bool_)
    node_of = np.empty(n, dtype=np.int64)  # the current tree node of a cluster's root
    leaf = np.empty(n, dtype=np.int64)  # the tree node an element joined
    up = np.full(m, -1, dtype=np.int64)  # the node that follows (-1: the last)
    start = np.empty(m, dtype=np.int64)  # the highest threshold a node lasted
    total = np.zeros(m)  # a node's own term, then the sum from it up
    n_nodes = 0
    reached = 0
    for t in range(heights.shape[0] - 1, -1, -1):
        h = heights[t]
        while reached < m and values[order[reached]] >= h:
            v = order[reached]
            node = n_nodes
            n_nodes += 1
            joined[v] = True
            size[v] = 1
            leaf[v] = node
            start[node] = t
            a = v  # the root of v's cluster
            for e in range(indptr[v], indptr[v + 1]):
                u = indices[e]
                if not joined[u]:
                    continue
                b = _root(parent, u)
                if a == b:
                    continue
                # the neighbour's cluster ends here: its node took thresholds t+1..start
                old = node_of[b]
                total[old] = _term(size[b], weight, t + 1, start[old], E)
                up[old] = node
                if size[a] < size[b]:
                    a, b = b, a
                parent[b] = a
                size[a] += size[b]
            node_of[a] = node
            reached += 1
    # the clusters still open took every threshold from their start down to the first
    for r in range(reached):
        v = order[r]
        if parent[v] == v:
            node = node_of[v]
            total[node] = _term(size[v], weight, 0, start[node], E)
    for i in range(n_nodes - 1, -1, -1):
        if up[i] >= 0:
            total[i] += total[up[i]]
    for r in range(reached):
        v = order[r]
        out[v] = total[leaf[v]]
    return out


@njit(cache=True, nogil=True)
def _term(extent, weight, lo, hi, E):
    """``extent**E * sum(weight[lo:hi + 1])``: a cluster tree node's term (0 if it lasted
    no threshold)."""
    if hi < lo:
        return 0.0
    acc = 0.0
    for k in range(lo, hi + 1):
        acc += weight[k]
    return extent**E * acc

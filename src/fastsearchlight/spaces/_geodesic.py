"""Geodesic discs of every vertex of a mesh: Dijkstra's shortest paths from each vertex,
stopped at the radius, in compiled code.

``scipy.sparse.csgraph.dijkstra(limit=radius)`` computes the same distances, but returns a
dense (seeds x vertices) array: on fsaverage5 (10,242 vertices a hemisphere) that is 10^8
distances to write and scan per hemisphere for ~40 vertices a disc. Here each search visits
only the vertices within the radius (and their neighbours), and writes only the disc.

Compiled with numba (``cache=True``): the first call after installation compiles and writes
the cache, later processes load it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["geodesic_discs"]


@njit(cache=True)
def _push(heap_d, heap_v, size, d, v):
    """Add ``(d, v)`` to the binary min-heap of the first ``size`` entries; the new size."""
    i = size
    while i > 0:
        parent = (i - 1) // 2
        if heap_d[parent] <= d:
            break
        heap_d[i] = heap_d[parent]
        heap_v[i] = heap_v[parent]
        i = parent
    heap_d[i] = d
    heap_v[i] = v
    return size + 1


@njit(cache=True)
def _pop(heap_d, heap_v, size):
    """Remove the smallest entry of the heap: its distance, its vertex and the new size."""
    d0, v0 = heap_d[0], heap_v[0]
    size -= 1
    d, v = heap_d[size], heap_v[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and heap_d[child + 1] < heap_d[child]:
            child += 1
        if heap_d[child] >= d:
            break
        heap_d[i] = heap_d[child]
        heap_v[i] = heap_v[child]
        i = child
    heap_d[i] = d
    heap_v[i] = v
    return d0, v0, size


@njit(cache=True, nogil=True)
def _discs(indptr, indices, weights, radius):
    """CSR arrays (indptr, indices) of the vertices within ``radius`` of each vertex."""
    n = len(indptr) - 1
    dist = np.full(n, np.inf)
    settled = np.zeros(n, dtype=np.bool_)
    reached = np.empty(n, dtype=np.int64)  # vertices given a distance, to reset
    heap_d = np.empty(len(indices) + 1)
    heap_v = np.empty(len(indices) + 1, dtype=np.int64)
    out_ptr = np.zeros(n + 1, dtype=np.int64)
    out = np.empty(max(16, 32 * n), dtype=np.int64)
    disc = np.empty(n, dtype=np.int64)
    for seed in range(n):
        dist[seed] = 0.0
        reached[0] = seed
        n_reached = 1
        size = _push(heap_d, heap_v, 0, 0.0, seed)
        k = 0
        while size > 0:
            d, u, size = _pop(heap_d, heap_v, size)
            if settled[u]:
                continue
            settled[u] = True
            disc[k] = u
            k += 1
            for e in range(indptr[u], indptr[u + 1]):
                w = indices[e]
                nd = d + weights[e]
                if nd <= radius and nd < dist[w]:
                    if dist[w] == np.inf:
                        reached[n_reached] = w
                        n_reached += 1
                    dist[w] = nd
                    size = _push(heap_d, heap_v, size, nd, w)
        for i in range(n_reached):
            dist[reached[i]] = np.inf
            settled[reached[i]] = False
        start = out_ptr[seed]
        if start + k > len(out):
            grown = np.empty(2 * len(out) + k, dtype=np.int64)
            grown[:start] = out[:start]
            out = grown
        out[start : start + k] = np.sort(disc[:k])
        out_ptr[seed + 1] = start + k
    return out_ptr, out[: out_ptr[n]]


def geodesic_discs(graph, radius: float):
    """Vertices within ``radius`` of each vertex along a weighted graph.

    Parameters
    ----------
    graph : scipy.sparse.csr_matrix (n_vertices, n_vertices)
        Symmetric, nonnegative edge lengths (the mesh's :func:`edge_graph`).
    radius : float
        Largest path length in a disc (paths of exactly ``radius`` included).

    Returns
    -------
    scipy.sparse.csr_matrix of bool (n_vertices, n_vertices)
        Row ``v``: the vertices within ``radius`` of ``v`` (itself included), column
        indices sorted; the rows of ``scipy.sparse.csgraph.dijkstra(graph, limit=radius)
        <= radius``.
    """
    from scipy import sparse

    graph = sparse.csr_matrix(graph)
    n = graph.shape[0]
    indptr, indices = _discs(
        graph.indptr.astype(np.int64),
        graph.indices.astype(np.int64),
        graph.data.astype(np.float64),
        float(radius),
    )
    return sparse.csr_matrix((np.ones(len(indices), dtype=bool), indices, indptr), shape=(n, n))

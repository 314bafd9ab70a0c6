"""Compiled loops over the rows of a matrix, four rows at a time.

A dot product or an axpy over one row costs a load (or a load and a store) per
multiply-add, so such loops are bound by their loads, not by the arithmetic. Taken four rows
at a time, each load of the vector they share serves four products: the svc kernels'
margins, refinement and ``K p`` (:mod:`._svm_kernel`, :mod:`._svm_gram_kernel`) and the
logistic regression's gradient and predictor changes (:mod:`._logistic_kernel`). Inlined
into their callers (numba, ``inline="always"``).

:func:`gather_samples` reads a sphere's samples from the voxel-major data the other way
round: eight voxels' rows at a time, each sample's eight entries written together (the svc,
LDA and ridge kernels).
"""

from __future__ import annotations

from numba import njit

__all__ = ["four_axpy", "four_dots", "gather_samples", "next_four"]

#: sums may be reordered (vectorised): the results stay exact to rounding
_FASTMATH = {"reassoc", "contract"}


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def four_dots(M, r0, r1, r2, r3, v, d):
    """The dot products of rows ``r0 .. r3`` of ``M`` with ``v`` (their first ``d``
    entries), in one loop: each load of ``v`` serves four products."""
    a0 = a1 = a2 = a3 = 0.0
    for k in range(d):
        vk = v[k]
        a0 += M[r0, k] * vk
        a1 += M[r1, k] * vk
        a2 += M[r2, k] * vk
        a3 += M[r3, k] * vk
    return a0, a1, a2, a3


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def next_four(selected, want, i, n):
    """The next four positions ``j`` from ``i`` (below ``n``) where ``selected[j] == want``,
    -1 for those missing at the end, and the position after the last one read: the loops
    that take rows four at a time (each load of the vector they multiply serves four)."""
    j0 = j1 = j2 = j3 = -1
    while i < n and j3 < 0:
        if selected[i] == want:
            if j0 < 0:
                j0 = i
            elif j1 < 0:
                j1 = i
            elif j2 < 0:
                j2 = i
            else:
                j3 = i
        i += 1
    return j0, j1, j2, j3, i


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def four_axpy(M, r0, r1, r2, r3, c0, c1, c2, c3, out, d):
    """``out[:d] += c0 M[r0] + c1 M[r1] + c2 M[r2] + c3 M[r3]`` (the first ``d`` entries of
    the rows), in one loop: each load and store of ``out`` serves four products."""
    for k in range(d):
        out[k] += c0 * M[r0, k] + c1 * M[r1, k] + c2 * M[r2, k] + c3 * M[r3, k]


@njit(cache=True, fastmath=_FASTMATH, inline="always")
def gather_samples(Xv, rows, order, out):
    """A sphere's samples ``out[i, j] = Xv[rows[j], order[i]]`` (``out`` (n, p), rows with
    contiguous entries; an empty ``order`` for the data's own order) from the voxel-major
    data ``Xv``: eight voxels' rows read together, each sample's eight entries written
    together (0.55 of the time of a voxel at a time at 123 voxels and 320 samples, 0.69 of a
    sample at a time at 76 and 216; blocks of 16 were slower)."""
    n, p = out.shape
    identity = order.shape[0] == 0
    for j0 in range(0, p, 8):
        width = min(8, p - j0)
        for i in range(n):
            src = i if identity else order[i]
            row = out[i, j0 : j0 + width]
            for k in range(width):
                row[k] = Xv[rows[j0 + k], src]

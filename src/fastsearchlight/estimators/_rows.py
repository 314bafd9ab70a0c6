"""Compiled loops over the rows of a matrix, four (or eight) rows at a time.

A dot product or an axpy over one row costs a load (or a load and a store) per
multiply-add, so such loops are bound by their loads, not by the arithmetic. Taken four rows
at a time, each load of the vector they share serves four products: the svc kernels'
margins, refinement and ``K p`` (:mod:`._svm_kernel`, :mod:`._svm_gram_kernel`) and the
logistic regression's gradient and predictor changes (:mod:`._logistic_kernel`, whose
products ``A v`` take eight rows at a time, :func:`eight_dots`). Inlined into their callers
(numba, ``inline="always"``).

:func:`row_products` takes the same idea to a product ``A B^T`` of two small matrices: four
rows of each at a time, sixteen dot products in one loop, so that each load serves four
multiply-adds and the sixteen sums stay in registers (the svc kernel's products of a
sphere's problems with its samples, which BLAS's ``gemm`` computes at less than half the
speed at these shapes: packing copies and tiles sized for large matrices), and
:func:`row_gram` to the Gram matrix of a matrix's rows (LDA's and ``RidgeClassifierCV``'s;
the products ``X' X`` of a matrix's columns are outer-product tiles, :mod:`._simd`).

:func:`gather_samples` reads a sphere's samples from the voxel-major data the other way
round: eight voxels' rows at a time, each sample's eight entries written together (the svc,
LDA and ridge kernels).
"""

from __future__ import annotations

from ._compiled import kernel

__all__ = ["eight_dots", "four_axpy", "four_dots", "gather_samples", "next_four", "row_gram", "row_products"]

#: sums may be reordered (vectorised): the results stay exact to rounding
_FASTMATH = {"reassoc", "contract"}


@kernel(fastmath=_FASTMATH, inline="always")
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


@kernel(fastmath=_FASTMATH, inline="always")
def eight_dots(M, r, v, d, out):
    """``out[r + t] = M[r + t, :d] . v[:d]`` for the eight rows ``r .. r + 7`` of ``M``, in
    one loop: each load of ``v`` serves eight products. Captured ``LogisticRegression``
    calls at W1 10 mm (its line search's products ``A step``, 162 x 82): 0.97-0.98 of the
    kernel's time with eight rows at a time instead of four."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
    for k in range(d):
        vk = v[k]
        a0 += M[r, k] * vk
        a1 += M[r + 1, k] * vk
        a2 += M[r + 2, k] * vk
        a3 += M[r + 3, k] * vk
        a4 += M[r + 4, k] * vk
        a5 += M[r + 5, k] * vk
        a6 += M[r + 6, k] * vk
        a7 += M[r + 7, k] * vk
    out[r], out[r + 1], out[r + 2], out[r + 3] = a0, a1, a2, a3
    out[r + 4], out[r + 5], out[r + 6], out[r + 7] = a4, a5, a6, a7


@kernel(fastmath=_FASTMATH, inline="always")
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


@kernel(fastmath=_FASTMATH, inline="always")
def four_axpy(M, r0, r1, r2, r3, c0, c1, c2, c3, out, d):
    """``out[:d] += c0 M[r0] + c1 M[r1] + c2 M[r2] + c3 M[r3]`` (the first ``d`` entries of
    the rows), in one loop: each load and store of ``out`` serves four products."""
    for k in range(d):
        out[k] += c0 * M[r0, k] + c1 * M[r1, k] + c2 * M[r2, k] + c3 * M[r3, k]


@kernel(fastmath=_FASTMATH, inline="always")
def gather_samples(Xv, rows, order, out):
    """A sphere's samples ``out[i, j] = Xv[rows[j], order[i]]`` (``out`` (n, p), rows with
    contiguous entries; an empty ``order`` for the data's own order) from the voxel-major
    data ``Xv``: eight voxels' rows read together, each sample's eight entries written
    together (0.55 of the time of a voxel at a time at 123 voxels and 320 samples, 0.69 of a
    sample at a time at 76 and 216; blocks of 16 were slower). The eight rows are taken as
    views once per block, so that each entry costs a load and a store, not an index
    computation through ``rows`` (stop 57, one thread, 200 spheres of random rows: 216 x 75
    in a permuted order 14.2 -> 10.9 us, in the data's order 10.0 -> 8.7 us; 320 x 111
    permuted 45.7 -> 30.0 us; 32 x 110 3.8 -> 2.1 us)."""
    n, p = out.shape
    identity = order.shape[0] == 0
    j0 = 0
    while j0 + 8 <= p:
        r0, r1, r2, r3 = Xv[rows[j0]], Xv[rows[j0 + 1]], Xv[rows[j0 + 2]], Xv[rows[j0 + 3]]
        r4, r5, r6, r7 = Xv[rows[j0 + 4]], Xv[rows[j0 + 5]], Xv[rows[j0 + 6]], Xv[rows[j0 + 7]]
        for i in range(n):
            src = i if identity else order[i]
            o = out[i]
            o[j0] = r0[src]
            o[j0 + 1] = r1[src]
            o[j0 + 2] = r2[src]
            o[j0 + 3] = r3[src]
            o[j0 + 4] = r4[src]
            o[j0 + 5] = r5[src]
            o[j0 + 6] = r6[src]
            o[j0 + 7] = r7[src]
        j0 += 8
    for j in range(j0, p):
        r = Xv[rows[j]]
        for i in range(n):
            out[i, j] = r[i if identity else order[i]]


@kernel(fastmath=_FASTMATH, inline="always")
def _sixteen_dots(A, i0, B, j0, d):
    """The dot products of rows ``i0 .. i0 + 3`` of ``A`` with rows ``j0 .. j0 + 3`` of ``B``
    over their first ``d`` entries, in one loop (``s[a][b]`` for rows ``i0 + a`` and
    ``j0 + b``): the eight loads of each step serve sixteen multiply-adds, and the sixteen
    sums stay in registers."""
    a0, a1, a2, a3 = A[i0], A[i0 + 1], A[i0 + 2], A[i0 + 3]
    b0, b1, b2, b3 = B[j0], B[j0 + 1], B[j0 + 2], B[j0 + 3]
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0.0
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = 0.0
    for k in range(d):
        x0, x1, x2, x3 = a0[k], a1[k], a2[k], a3[k]
        y0, y1, y2, y3 = b0[k], b1[k], b2[k], b3[k]
        s00 += x0 * y0
        s01 += x0 * y1
        s02 += x0 * y2
        s03 += x0 * y3
        s10 += x1 * y0
        s11 += x1 * y1
        s12 += x1 * y2
        s13 += x1 * y3
        s20 += x2 * y0
        s21 += x2 * y1
        s22 += x2 * y2
        s23 += x2 * y3
        s30 += x3 * y0
        s31 += x3 * y1
        s32 += x3 * y2
        s33 += x3 * y3
    return (
        (s00, s01, s02, s03),
        (s10, s11, s12, s13),
        (s20, s21, s22, s23),
        (s30, s31, s32, s33),
    )


@kernel(fastmath=_FASTMATH)
def row_products(A, B, out, m, n, d):
    """``out[i, j] = A[i, :d] . B[j, :d]`` for ``i < m``, ``j < n``: ``out = A B^T`` on
    leading blocks of C-contiguous 2-d arrays.

    Four rows of ``A`` against four rows of ``B`` at a time (:func:`_sixteen_dots`; the
    rows left over four or one at a time). For a few rows of ``A`` against a few hundred of
    ``B`` (the svc kernel's problems against a sphere's samples: ``8 x 124`` by
    ``321 x 124``, ``4 x 20`` by ``217 x 20``) this takes 0.3-0.6 of the time of BLAS's
    ``gemm``, whose packing copies and tiles suit large matrices.
    """
    i0 = 0
    while i0 + 4 <= m:
        o0, o1, o2, o3 = out[i0], out[i0 + 1], out[i0 + 2], out[i0 + 3]
        j0 = 0
        while j0 + 4 <= n:
            s = _sixteen_dots(A, i0, B, j0, d)
            o0[j0], o0[j0 + 1], o0[j0 + 2], o0[j0 + 3] = s[0]
            o1[j0], o1[j0 + 1], o1[j0 + 2], o1[j0 + 3] = s[1]
            o2[j0], o2[j0 + 1], o2[j0 + 2], o2[j0 + 3] = s[2]
            o3[j0], o3[j0 + 1], o3[j0 + 2], o3[j0 + 3] = s[3]
            j0 += 4
        for j in range(j0, n):
            o0[j], o1[j], o2[j], o3[j] = four_dots(A, i0, i0 + 1, i0 + 2, i0 + 3, B[j], d)
        i0 += 4
    for i in range(i0, m):
        a, o = A[i], out[i]
        j0 = 0
        while j0 + 4 <= n:
            o[j0], o[j0 + 1], o[j0 + 2], o[j0 + 3] = four_dots(B, j0, j0 + 1, j0 + 2, j0 + 3, a, d)
            j0 += 4
        for j in range(j0, n):
            b = B[j]
            t = 0.0
            for k in range(d):
                t += a[k] * b[k]
            o[j] = t


@kernel(fastmath=_FASTMATH)
def row_gram(A, G, n, d, shift):
    """``G[i, j] = A[i, :d] . A[j, :d] + shift`` for ``i, j < n`` (both triangles): the Gram
    matrix of the rows of a leading block of the C-contiguous ``A``, plus a constant.

    The blocks of four rows by four on or above the diagonal (:func:`_sixteen_dots`), each
    written to both triangles: half of :func:`row_products`' work. ``A`` needs at least
    ``n`` rounded up to a multiple of four rows (the last block reads the rows past ``n``
    and discards their products).
    """
    for i0 in range(0, n, 4):
        for j0 in range(i0, n, 4):
            s = _sixteen_dots(A, i0, A, j0, d)
            for a in range(min(4, n - i0)):
                i = i0 + a
                for b in range(min(4, n - j0)):
                    j = j0 + b
                    v = s[a][b] + shift
                    G[i, j] = v
                    G[j, i] = v

"""Solves with an upper Cholesky factor, in compiled loops.

``U^T U x = b`` for an upper factor ``U`` held in C order (its lower triangle is not read):
the forward solve ``U^T z = b`` runs along the rows of ``U`` (contiguous axpys) and the back
substitution ``U x = z`` takes the rows' dot products; both vectorise. Both take four rows
of ``U`` at a time: the four entries those rows give are solved within their 4 x 4 diagonal
block, and the rest of ``x`` is updated (forward) or summed (back) by the four rows at once,
so that each load and store of ``x`` serves four products instead of one. Measured in a
compiled loop (one thread, stop 39's machine, best of 5 x 5,000 solves), one row at a time
against four: 0.44 against 0.23 us at ``d = 19``, 1.13 against 0.48 at ``d = 40``, 2.50
against 1.12 at ``d = 76``, 4.21 against 2.14 at ``d = 111``, 5.81 against 2.90 at
``d = 141``; the svc kernels' calls captured from fits, replayed: W2 -5%, W1 12 mm -7%.

They replace LAPACK's ``potrs``, which reaches the solves through ``trsm`` with a single
right-hand side and packs the triangle first (stop 31's machine, one row at a time: 0.66
against 0.76 us at ``d = 19``, 6.2 against 13.6 at ``d = 111``).

The upper factorisation (:func:`cholesky_upper_rows`, :func:`cholesky_upper_into`) goes by
blocks of four rows of ``U``: the block's rows minus their products with the rows already
factored, in outer-product tiles of four rows by sixteen columns in explicit vector
instructions (:func:`._simd.outer_tile`; the rows above read as contiguous row segments),
then its 4 x 4 diagonal factor and the block's rows solved from it (since stop 63; since
stop 66, from 24 rows, as the product of the inverse of the factor's transpose with them in
the same tiles: 0.77-0.90 of the time at 76-162 rows). One thread, in one process alternated with the left-looking blocks of dot products
it replaced (:func:`._rows._sixteen_dots`, each entry's sum reduced across a vector at the
end; still the lower variant's, :func:`cholesky_lower_rows`): 4.96 against 14.95 us at
``k = 76``, 6.14 against 19.32 at 84, 12.46 against 49.62 at 111, 23.69 against 86.65 at
141, 36.0 against 133.5 at 162 (the leading block of a ``(k, k + 3)`` array). Blocks of
eight rows (tiles of eight rows by sixteen, then two 4 x 4 factors; rows 216 long) were no
faster up to ``k = 111`` and 0.91-0.96 of the time at 141-162 (7.55 against 7.39 us at 84,
25.1 against 26.1 at 141, 36.7 against 40.4 at 162): not kept. Before, the dot-product
blocks had replaced LAPACK's ``potrf`` (scipy's OpenBLAS, whose blocked factorisation spends
its time in ``syrk``/``gemm`` calls sized for larger matrices): 6.96 against 9.87 us at
``d = 77`` on stop 43's machine.

Since stop 83, the tiles of a block's rows right of its first sixteen columns apply that
inverse as they store their sums (:func:`._simd.outer_tile_solved`), so that only the
tile with the diagonal is solved by a tile of its own: one pass over those rows instead of
two. One thread (AMD Zen 4), alternated with the separate solve tiles: 13.8 against 14.2 us
at ``k = 105``, 29.1 against 29.9 at 141, 40.9 against 41.4 at 162; the svc Gram path's
captured calls of 2,000 neighbouring W1 12 mm spheres: 0.990 of the time, the same
decisions to the bit (the same operations in the same order).

Each 4 x 4 diagonal factor is a chain of dependent operations. Since stop 76 its pivots are
the Schur complements' (each a division by the pivot before, ``LDL^T``'s), the square roots
and their inverses taken after, all four at once (``sqrt(1 / p)``), so that no square root
is on the chain; and the block's tile with the diagonal is updated first and factored before
the block's other tiles are, which do not depend on it and run while it is being factored.
One thread, best of 7 x 200 or more, in one process with the order and chain before (Rocket
Lake): 0.86-0.88 of the time at ``k = 20`` and 40, 0.95-0.97 at 82, 0.91-0.92 at 113,
0.93-0.96 at 141, 0.97-1.00 at 162; the svc Gram path's captured calls of 2,000
neighbouring W1 12 mm spheres (where fresh factorisations are a quarter of the profile),
alternated call by call: 0.978 of the time, no decision's sign changed.

Compiled with numba (``cache=True``), for the kernels' compiled loops, which call them without
the interpreter lock.
"""

from __future__ import annotations

import math

import numpy as np

from ._compiled import kernel
from ._rows import _sixteen_dots
from ._simd import TILE_COLUMNS, TILE_ROWS, outer_tile, outer_tile_solved

__all__ = [
    "back_upper",
    "cholesky_lower_rows",
    "cholesky_solve_upper",
    "cholesky_solve_upper_rows",
    "cholesky_upper_forward",
    "cholesky_upper_into",
    "cholesky_upper_rows",
    "forward_upper",
    "forward_upper_rows",
    "inverse_rows_upper",
    "solve_upper",
]

#: sums may be reordered (vectorised): the results stay exact to rounding; no assumptions
#: on NaN or infinities
_FASTMATH = {"reassoc", "contract"}
#: :func:`_cholesky_upper_tiles` solves its blocks' rows in tiles from this many rows (a
#: 4 x 4 work array per factorisation), and only where at least this many columns are left
_SOLVE_TILES_FROM = 24
_SOLVE_TILE_COLUMNS = 8


@kernel(fastmath=_FASTMATH, inline="always")
def _forward_upper_from(U, inv, c, k, x):
    """:func:`forward_upper` from entry ``c`` (the entries of ``x`` before it zero)."""
    while c + 4 <= k:
        v0 = x[c] * inv[c]
        v1 = (x[c + 1] - v0 * U[c, c + 1]) * inv[c + 1]
        v2 = (x[c + 2] - v0 * U[c, c + 2] - v1 * U[c + 1, c + 2]) * inv[c + 2]
        v3 = (x[c + 3] - v0 * U[c, c + 3] - v1 * U[c + 1, c + 3] - v2 * U[c + 2, c + 3]) * inv[c + 3]
        x[c] = v0
        x[c + 1] = v1
        x[c + 2] = v2
        x[c + 3] = v3
        r0 = U[c, c + 4 : k]
        r1 = U[c + 1, c + 4 : k]
        r2 = U[c + 2, c + 4 : k]
        r3 = U[c + 3, c + 4 : k]
        tail = x[c + 4 : k]
        for j in range(k - c - 4):
            tail[j] -= v0 * r0[j] + v1 * r1[j] + v2 * r2[j] + v3 * r3[j]
        c += 4
    while c < k:
        v = x[c] * inv[c]
        x[c] = v
        row = U[c, c + 1 : k]
        tail = x[c + 1 : k]
        for j in range(k - c - 1):
            tail[j] -= v * row[j]
        c += 1


@kernel(fastmath=_FASTMATH)
def forward_upper(U, inv, k, x):
    """``x = U^-T x`` on the leading ``k`` entries, in place (``inv``: reciprocals of the
    diagonal of ``U``), four rows of ``U`` at a time: the four entries of ``x`` they give
    are solved within their 4 x 4 diagonal block, then the rest of ``x`` is updated by the
    four row slices at once (contiguous, vectorised; each load and store of ``x`` serves
    four products instead of one)."""
    _forward_upper_from(U, inv, 0, k, x)


@kernel(fastmath=_FASTMATH)
def inverse_rows_upper(U, inv, V):
    """The inverse ``U^-1`` of the upper factor ``U`` ``(k, k)`` into the upper triangle of
    ``V`` (C-contiguous, at least ``k x k``; the rest of its leading ``k`` rows is zeroed):
    row ``i`` is ``U^-T e_i``, whose entries before ``i`` are zero, by the forward solve
    from ``i`` (``inv``: reciprocals of the diagonal of ``U``). So ``(U^T U)^-1 = V V^T``
    and its diagonal is the rows' squared norms. About ``k^3 / 6`` multiply-adds."""
    k = U.shape[0]
    for i in range(k):
        x = V[i]
        for j in range(x.shape[0]):
            x[j] = 0.0
        x[i] = 1.0
        _forward_upper_from(U, inv, i, k, x)


@kernel(fastmath=_FASTMATH)
def solve_upper(U, inv, k, b, out):
    """``out = (U^T U)^-1 b`` on the leading ``k`` entries, for the upper factor held in the
    leading ``k x k`` block of ``U`` (``inv``: reciprocals of its diagonal): forward by row
    slices of ``U`` (:func:`forward_upper`), back by their dot products, both contiguous.
    ``out`` may be ``b``."""
    for i in range(k):
        out[i] = b[i]
    forward_upper(U, inv, k, out)
    back_upper(U, inv, k, out)


@kernel(fastmath=_FASTMATH)
def back_upper(U, inv, k, x):
    """``x = U^-1 x`` on the leading ``k`` entries, in place (``inv``: reciprocals of the
    diagonal of ``U``): the last ``k % 4`` entries one by one, then four at a time from the
    bottom, the four rows' dot products with the solved entries below them taken together
    (each load of ``x`` serves four), then their 4 x 4 diagonal block."""
    i = k - 1
    for _ in range(k % 4):
        row = U[i, i + 1 : k]
        tail = x[i + 1 : k]
        acc = 0.0
        for j in range(k - i - 1):
            acc += row[j] * tail[j]
        x[i] = (x[i] - acc) * inv[i]
        i -= 1
    while i >= 3:  # rows i - 3 .. i
        a = i - 3
        r0 = U[a, i + 1 : k]
        r1 = U[a + 1, i + 1 : k]
        r2 = U[a + 2, i + 1 : k]
        r3 = U[i, i + 1 : k]
        tail = x[i + 1 : k]
        s0 = s1 = s2 = s3 = 0.0
        for j in range(k - i - 1):
            t = tail[j]
            s0 += r0[j] * t
            s1 += r1[j] * t
            s2 += r2[j] * t
            s3 += r3[j] * t
        v3 = (x[i] - s3) * inv[i]
        v2 = (x[a + 2] - s2 - U[a + 2, i] * v3) * inv[a + 2]
        v1 = (x[a + 1] - s1 - U[a + 1, a + 2] * v2 - U[a + 1, i] * v3) * inv[a + 1]
        v0 = (x[a] - s0 - U[a, a + 1] * v1 - U[a, a + 2] * v2 - U[a, i] * v3) * inv[a]
        x[a] = v0
        x[a + 1] = v1
        x[a + 2] = v2
        x[i] = v3
        i -= 4


@kernel(fastmath=_FASTMATH)
def cholesky_solve_upper(R, b, out):
    """``out = (R^T R)^-1 b`` for the upper factor ``R`` ``(d, d)`` of
    :func:`cholesky_upper_into` (its lower triangle is not read), by
    :func:`solve_upper`; ``out`` may be ``b``."""
    d = R.shape[0]
    inv = np.empty(d)
    for i in range(d):
        inv[i] = 1.0 / R[i, i]
    solve_upper(R, inv, d, b, out)


@kernel(fastmath=_FASTMATH)
def cholesky_solve_upper_rows(R, B, running):
    """``B[q] = (R^T R)^-1 B[q]`` in place for every row ``q`` of ``B`` ``(Q, d)`` with
    ``running[q]``, for the upper factor ``R`` of :func:`cholesky_upper_into`, by
    :func:`forward_upper` and :func:`back_upper`."""
    d = R.shape[0]
    inv = np.empty(d)
    for i in range(d):
        inv[i] = 1.0 / R[i, i]
    for q in range(B.shape[0]):
        if running[q]:
            x = B[q]
            forward_upper(R, inv, d, x)
            back_upper(R, inv, d, x)


@kernel(fastmath=_FASTMATH, inline="always")
def _block_dots_two(A, i0, na, B, j0, nb, length, S):
    """``S[a, b] = A[i0 + a, :length] . B[j0 + b, :length]`` for ``a < na``, ``b < nb``:
    a block at a matrix's last rows, where four rows are not there to read."""
    for a in range(na):
        x = A[i0 + a]
        for b in range(nb):
            y = B[j0 + b]
            acc = 0.0
            for c in range(length):
                acc += x[c] * y[c]
            S[a, b] = acc


@kernel(fastmath=_FASTMATH, inline="always")
def _block_dots(L, i0, na, j0, nb, length, S):
    """:func:`_block_dots_two` of the rows of one matrix."""
    _block_dots_two(L, i0, na, L, j0, nb, length, S)


@kernel(fastmath=_FASTMATH)
def _cholesky_upper_tiles(M, k, kc):
    """In place: the upper Cholesky factor of the leading ``k x k`` block of ``M``, from its
    upper triangle into its upper triangle (``M = U^T U``; the lower triangle of each 4 x 4
    diagonal block spoiled, the rest of the lower triangle not touched); False, the block
    spoiled, when it is not positive definite to rounding.

    By blocks of four rows of ``U``: the block's rows minus their products with the rows
    already factored, in outer-product tiles (:func:`._simd.outer_tile`: four rows by
    sixteen columns, the sums in vector registers), then its 4 x 4 diagonal factor and the
    block's rows right of it solved from it: from :data:`_SOLVE_TILES_FROM` rows on, as the
    product of the inverse of the factor's transpose with those rows, in the same tiles
    (past the block's first sixteen columns, in the update's own tiles as they store; the
    substitution along the columns, which the compiler leaves in scalar instructions, took a
    quarter to a third of the time at ``k = 76-162``); below, by that substitution. ``M`` is
    a C-ordered 2-d array with unit column stride (its rows may be longer than ``k``).

    With ``kc > k`` (at most ``k + 12``: the last block's rows, when fewer than four, are
    taken without tiles) the columns ``k .. kc - 1`` of the leading ``k`` rows are carried
    along as right-hand sides: they end as ``U^-T`` times what they held (the forward solve,
    in the same tiles as the factor)."""
    if k >= _SOLVE_TILES_FROM:
        return _factor_blocks(M, k, kc, np.empty((4, 4)), True)
    return _factor_blocks(M, k, kc, M, False)


@kernel(fastmath=_FASTMATH, inline="always")
def _factor_blocks(M, k, kc, Linv, tiles):
    """:func:`_cholesky_upper_tiles`, its blocks' rows solved by tiles with ``tiles`` (with
    ``Linv`` as 4 x 4 work space) or by substitution (``Linv`` not used)."""
    ld = M.strides[0] // 8
    for j0 in range(0, k, 4):
        jb = min(4, k - j0)
        if j0 > 0:  # the tile with the diagonal block first: the rest overlap its factor's chain
            outer_tile(
                M, j0, ld, M, j0, ld, j0, M, j0 * ld + j0, ld, jb, min(TILE_COLUMNS, kc - j0), -1.0, True
            )
        if jb < 4:  # the last rows, fewer than four: one at a time (right of them: carried columns only)
            for a in range(jb):
                ra = M[j0 + a]
                for b in range(a):
                    f = M[j0 + b, j0 + a]
                    rb = M[j0 + b]
                    for c in range(j0 + a, kc):
                        ra[c] -= f * rb[c]
                piv = ra[j0 + a]
                if not piv > 0.0:
                    return False
                piv = math.sqrt(piv)
                ra[j0 + a] = piv
                inv = 1.0 / piv
                for c in range(j0 + a + 1, kc):
                    ra[c] *= inv
            return True
        r0, r1, r2, r3 = M[j0], M[j0 + 1], M[j0 + 2], M[j0 + 3]
        # the diagonal block's factor: its pivots by Schur complements, each a division by
        # the pivot before (no square root on the chain); the square roots after, together
        a01, a02, a03 = r0[j0 + 1], r0[j0 + 2], r0[j0 + 3]
        p0 = r0[j0]
        if not p0 > 0.0:
            return False
        q0 = 1.0 / p0
        s11 = r1[j0 + 1] - a01 * a01 * q0
        s12 = r1[j0 + 2] - a01 * a02 * q0
        s13 = r1[j0 + 3] - a01 * a03 * q0
        s22 = r2[j0 + 2] - a02 * a02 * q0
        s23 = r2[j0 + 3] - a02 * a03 * q0
        s33 = r3[j0 + 3] - a03 * a03 * q0
        if not s11 > 0.0:
            return False
        q1 = 1.0 / s11
        s22 -= s12 * s12 * q1
        s23 -= s12 * s13 * q1
        s33 -= s13 * s13 * q1
        if not s22 > 0.0:
            return False
        q2 = 1.0 / s22
        s33 -= s23 * s23 * q2
        if not s33 > 0.0:
            return False
        q3 = 1.0 / s33
        v0, v1, v2, v3 = math.sqrt(q0), math.sqrt(q1), math.sqrt(q2), math.sqrt(q3)
        d0, d1, d2, d3 = math.sqrt(p0), math.sqrt(s11), math.sqrt(s22), math.sqrt(s33)
        t01, t02, t03 = a01 * v0, a02 * v0, a03 * v0
        t12, t13 = s12 * v1, s13 * v1
        t23 = s23 * v2
        r0[j0], r0[j0 + 1], r0[j0 + 2], r0[j0 + 3] = d0, t01, t02, t03
        r1[j0 + 1], r1[j0 + 2], r1[j0 + 3] = d1, t12, t13
        r2[j0 + 2], r2[j0 + 3] = d2, t23
        r3[j0 + 3] = d3
        solve_tiles = tiles and kc - j0 - 4 >= _SOLVE_TILE_COLUMNS
        if solve_tiles:
            # Linv[l, r]: entry (r, l) of the inverse of the factor's transpose
            l10 = -v1 * t01 * v0
            l20 = -v2 * (t02 * v0 + t12 * l10)
            l21 = -v2 * t12 * v1
            Linv[0, 0], Linv[0, 1], Linv[0, 2] = v0, l10, l20
            Linv[0, 3] = -v3 * (t03 * v0 + t13 * l10 + t23 * l20)
            Linv[1, 0], Linv[1, 1], Linv[1, 2] = 0.0, v1, l21
            Linv[1, 3] = -v3 * (t13 * v1 + t23 * l21)
            Linv[2, 0], Linv[2, 1], Linv[2, 2], Linv[2, 3] = 0.0, 0.0, v2, -v3 * t23 * v2
            Linv[3, 0], Linv[3, 1], Linv[3, 2], Linv[3, 3] = 0.0, 0.0, 0.0, v3
        if j0 > 0:  # the block's other tiles, solved as they are stored where solved by tiles
            for c0 in range(j0 + TILE_COLUMNS, kc, TILE_COLUMNS):
                width = min(TILE_COLUMNS, kc - c0)
                if solve_tiles:
                    outer_tile_solved(
                        M, j0, ld, M, c0, ld, j0, M, j0 * ld + c0, ld, 4, width, -1.0, True, Linv
                    )
                else:
                    outer_tile(M, j0, ld, M, c0, ld, j0, M, j0 * ld + c0, ld, 4, width, -1.0, True)
        if solve_tiles:  # the block's rows right of it not solved above (each tile reads, then writes)
            end = min(j0 + TILE_COLUMNS, kc) if j0 > 0 else kc
            for c0 in range(j0 + 4, end, TILE_COLUMNS):
                width = min(TILE_COLUMNS, end - c0)
                outer_tile(Linv, 0, 4, M, j0 * ld + c0, ld, 4, M, j0 * ld + c0, ld, 4, width, 1.0, False)
        else:
            for c in range(j0 + 4, kc):
                x0 = r0[c] * v0
                x1 = (r1[c] - t01 * x0) * v1
                x2 = (r2[c] - t02 * x0 - t12 * x1) * v2
                x3 = (r3[c] - t03 * x0 - t13 * x1 - t23 * x2) * v3
                r0[c], r1[c], r2[c], r3[c] = x0, x1, x2, x3
    return True


@kernel(fastmath=_FASTMATH)
def _cholesky_lower_dots(M, k):
    """In place: the lower Cholesky factor of the leading ``k x k`` block of ``M``, from its
    lower triangle into its lower triangle (``M = L L^T``; the upper triangle not touched);
    False, the block spoiled, when it is not positive definite to rounding. By blocks of
    four columns of dot products along the rows of ``L``; see the module's docstring."""
    T = np.empty((4, 4))
    S = np.empty((4, 4))
    inv = np.empty(4)
    for j0 in range(0, k, 4):
        jb = min(4, k - j0)
        # the diagonal block: its rows' products over the columns already factored
        if jb == 4:
            s = _sixteen_dots(M, j0, M, j0, j0)
            for a in range(4):
                for b in range(a + 1):
                    S[a, b] = s[a][b]
        else:
            _block_dots(M, j0, jb, j0, jb, j0, S)
        for a in range(jb):
            for b in range(a + 1):
                T[a, b] = M[j0 + a, j0 + b] - S[a, b]
        for b in range(jb):  # its factor
            piv = T[b, b]
            for c in range(b):
                piv -= T[b, c] * T[b, c]
            if not piv > 0.0:
                return False
            piv = math.sqrt(piv)
            T[b, b] = piv
            inv[b] = 1.0 / piv
            for a in range(b + 1, jb):
                v = T[a, b]
                for c in range(b):
                    v -= T[a, c] * T[b, c]
                T[a, b] = v * inv[b]
        for a in range(jb):
            for b in range(a + 1):
                M[j0 + a, j0 + b] = T[a, b]
        if jb < 4:
            break
        t10, t20, t21 = T[1, 0], T[2, 0], T[2, 1]
        t30, t31, t32 = T[3, 0], T[3, 1], T[3, 2]
        v0, v1, v2, v3 = inv[0], inv[1], inv[2], inv[3]
        # the rows below, four at a time: their four entries of these columns
        for i0 in range(j0 + 4, k, 4):
            na = min(4, k - i0)
            if na == 4:
                s = _sixteen_dots(M, i0, M, j0, j0)
                for a in range(4):
                    for b in range(4):
                        S[a, b] = s[a][b]
            else:
                _block_dots(M, i0, na, j0, 4, j0, S)
            for a in range(na):
                i = i0 + a
                row = M[i]
                p0, p1, p2, p3 = row[j0], row[j0 + 1], row[j0 + 2], row[j0 + 3]
                x0 = (p0 - S[a, 0]) * v0
                x1 = (p1 - S[a, 1] - t10 * x0) * v1
                x2 = (p2 - S[a, 2] - t20 * x0 - t21 * x1) * v2
                x3 = (p3 - S[a, 3] - t30 * x0 - t31 * x1 - t32 * x2) * v3
                row[j0] = x0
                row[j0 + 1] = x1
                row[j0 + 2] = x2
                row[j0 + 3] = x3
    return True


@kernel(fastmath=_FASTMATH)
def cholesky_upper_rows(U, k):
    """In place: the upper factor of the leading ``k x k`` block of ``U`` (``M = F^T F``,
    from the upper triangle of that block); False when it is not positive definite. ``U`` is
    a C-ordered 2-d array with unit column stride (its rows may be longer than ``k``); the
    lower triangles of the block's 4 x 4 diagonal blocks are spoiled, the rest of its lower
    triangle not touched."""
    return _cholesky_upper_tiles(U, k, k)


@kernel(fastmath=_FASTMATH)
def cholesky_upper_forward(U, k, kc):
    """:func:`cholesky_upper_rows`, and the forward solve with the factor of the columns
    ``k .. kc - 1`` of the leading ``k`` rows (``kc <= k + 12``), in the same pass: those
    columns end as ``F^-T`` times what they held (the factor's rows carry them, as the
    augmented matrix ``[M, B]``'s upper factor ``[F, F^-T B]``). ``U`` has at least ``kc``
    columns."""
    return _cholesky_upper_tiles(U, k, kc)


@kernel(fastmath=_FASTMATH)
def cholesky_lower_rows(L, k):
    """In place: the lower factor of the leading ``k x k`` block of ``L`` (``M = F F^T``,
    from the lower triangle of that block); False when it is not positive definite. The
    block's upper triangle is not touched."""
    return _cholesky_lower_dots(L, k)


@kernel(fastmath=_FASTMATH)
def cholesky_upper_into(H, R):
    """The upper factor ``R`` (``H = R^T R``) of the upper triangle of ``H``; False when
    ``H`` is not positive definite. ``H`` and ``R`` are C-contiguous ``(d, d)`` arrays (they
    may be the same array); ``R``'s lower triangle is spoiled (as by
    :func:`cholesky_upper_rows`), ``H``'s (when it is another array) not read."""
    d = H.shape[0]
    if R.ctypes.data != H.ctypes.data:
        for r in range(d):  # (row slices from the diagonal: contiguous, vectorised)
            dst, src = R[r, r:], H[r, r:]
            for c in range(dst.shape[0]):
                dst[c] = src[c]
    return _cholesky_upper_tiles(R, d, d)


@kernel(fastmath=_FASTMATH)
def forward_upper_rows(U, Z, n):
    """Each row ``z`` of ``Z[:n]`` becomes ``U^-T z``, in place, for the factor ``U`` of
    :func:`cholesky_upper_rows` or :func:`cholesky_upper_into` (C-contiguous ``(k, k)``),
    whose transpose ``L = U^T`` this first writes into its lower triangle: the rows of ``L``
    give the dot products (four rows of ``Z`` by four of ``L``, :func:`._rows._sixteen_dots`), and
    each block of four entries is solved from ``L``'s 4 x 4 diagonal block. ``Z``'s rows
    have unit stride and at least ``k`` entries. Against BLAS's ``trsm`` on the same rows
    (one thread, best of 5 runs of 2,000): 30.7 against 39.4 us for 162 rows at ``k = 76``,
    25.8 against 31.3 for 130 at 77, 72.3 against 93.4 for 216 at 111."""
    k = U.shape[0]
    for r in range(1, k):  # L = U^T, into the lower triangle
        row = U[r]
        for c in range(r):
            row[c] = U[c, r]
    S = np.empty((4, 4))
    for j0 in range(0, k, 4):
        if j0 + 4 > k:  # the last columns, fewer than four: one at a time
            for i in range(n):
                z = Z[i]
                for j in range(j0, k):
                    lj = U[j]
                    v = z[j]
                    for c in range(j):
                        v -= lj[c] * z[c]
                    z[j] = v / lj[j]
            break
        r0, r1, r2, r3 = U[j0], U[j0 + 1], U[j0 + 2], U[j0 + 3]
        t10, t20, t21 = r1[j0], r2[j0], r2[j0 + 1]
        t30, t31, t32 = r3[j0], r3[j0 + 1], r3[j0 + 2]
        v0, v1, v2, v3 = 1.0 / r0[j0], 1.0 / r1[j0 + 1], 1.0 / r2[j0 + 2], 1.0 / r3[j0 + 3]
        for i0 in range(0, n, 4):
            na = min(4, n - i0)
            if na == 4:
                s = _sixteen_dots(Z, i0, U, j0, j0)
                for a in range(4):
                    for b in range(4):
                        S[a, b] = s[a][b]
            else:
                _block_dots_two(Z, i0, na, U, j0, 4, j0, S)
            for a in range(na):
                z = Z[i0 + a]
                x0 = (z[j0] - S[a, 0]) * v0
                x1 = (z[j0 + 1] - S[a, 1] - t10 * x0) * v1
                x2 = (z[j0 + 2] - S[a, 2] - t20 * x0 - t21 * x1) * v2
                x3 = (z[j0 + 3] - S[a, 3] - t30 * x0 - t31 * x1 - t32 * x2) * v3
                z[j0] = x0
                z[j0 + 1] = x1
                z[j0 + 2] = x2
                z[j0 + 3] = x3


@kernel(fastmath=_FASTMATH)
def column_norms_upper(U, B, Z, out):
    """``out[t] = |U^-T b_t|`` for the columns ``b_t`` of ``B`` ``(k, m)`` (C-contiguous) and the
    upper factor ``U`` ``(k, k)`` (unit column stride; its lower triangle not read): the norms
    of ``B``'s columns in the metric of ``(U^T U)^-1``. The forward solve ``U^T Z = B`` by
    blocks of four rows of ``Z`` (work space, C-contiguous, at least ``(k, m)``): the block
    is ``B``'s rows minus the product of the four columns of ``U`` above the diagonal with the
    rows of ``Z`` solved before (in :func:`._simd.outer_tile`'s tiles, sixteen columns of ``Z``
    at a time), then solved within its 4 x 4 diagonal block. One thread, ``k = 80``, 32
    columns, mean of 3,000 calls, two runs of one process: 7.5-7.6 us against 15.0-15.1 us
    for :func:`forward_upper_rows` on the rows of ``B'`` (whose copy of the factor's
    transpose weighs at a few dozen rows) and 20-24 us for row by row axpys of ``Z``."""
    k, m = B.shape
    ldu = U.strides[0] // 8
    ldz = Z.strides[0] // 8
    for j0 in range(0, k, TILE_ROWS):
        nb = min(TILE_ROWS, k - j0)
        for r in range(nb):
            for t in range(m):
                Z[j0 + r, t] = B[j0 + r, t]
        if j0 > 0:
            for c0 in range(0, m, TILE_COLUMNS):
                outer_tile(
                    U,
                    j0,
                    ldu,
                    Z,
                    c0,
                    ldz,
                    j0,
                    Z,
                    j0 * ldz + c0,
                    ldz,
                    nb,
                    min(TILE_COLUMNS, m - c0),
                    -1.0,
                    True,
                )
        for r in range(nb):  # the 4 x 4 diagonal block (indices, not row views: no reference counts)
            j = j0 + r
            for rr in range(r):
                c = U[j0 + rr, j]
                for t in range(m):
                    Z[j, t] -= c * Z[j0 + rr, t]
            inv = 1.0 / U[j, j]
            for t in range(m):
                Z[j, t] *= inv
    for t in range(m):
        out[t] = 0.0
    for j in range(k):
        for t in range(m):
            out[t] += Z[j, t] * Z[j, t]
    for t in range(m):
        out[t] = math.sqrt(out[t])

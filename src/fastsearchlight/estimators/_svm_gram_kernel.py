"""Compiled finite Newton iterations on the samples' Gram matrix, for problems with more
features than training samples (run-wise betas, large spheres).

The same problem and method as :mod:`._svm_kernel` (L2-regularised squared hinge, Newton
points on the active set, exact line search, stop when the active set no longer changes),
written in the coefficients ``alpha`` of the training samples instead of the weights:
``w = X_T^T alpha`` (the regulariser keeps the minimiser in the span of the training rows).
The Newton point of an active set ``A`` is, by the push-through identity,

    alpha_A = (I / 2C + K_AA)^-1 y_A,    alpha = 0 outside ``A``,

with ``K = X_T X_T^T`` the training rows' Gram matrix (the constant feature included), the
point ``(I + 2C X_A^T X_A)^-1 2C X_A^T y_A`` of the primal method. Margins, the line
search's ``w . s`` and ``s . s``, and the decisions on any sample ``j`` (``K[j, T] alpha``)
need only inner products, so a sphere's whole work starts from its ``n x n`` Gram matrix:
no ``d``-dimensional vector is ever formed.

``I / 2C + K_AA`` is positive definite even when ``K`` is singular (repeated or constant
samples), so every training set is solved here. The first step (every training sample
active) uses one factor per sphere and training set, shared by its problems (the classes and
label vectors of a fold; computed only when a problem starts cold); later steps update the factor of the active set's matrix, a sample
joining it appended (``O(|A|^2)``) and a sample leaving it removed (a rank-one update of the
block below and right of it), or compute it afresh when many samples change (``|A|^3 / 6``:
about a microsecond at ``|A| ~ 21``). Every Newton point is solved from a factor: exact to
rounding. The forward half of that solve, ``U^-T y_A``, is kept with the factor (an extra
column of a fresh factorisation, one more entry per append, the removals' rotations), so a
point takes one back substitution (W1 12 mm's captured calls: 0.95 of the time, the same
points). That factor is kept upper (``U^T U``, C order), so that the appends, removals and
solves all run along its rows, contiguous loops the compiler vectorises (with a lower factor
the removals and back substitutions walk down its columns); products with ``K`` run over
every sample, the Newton point being 0 outside its active set (dense loops, not gathers).

Training sets shared by several problems (the classes of a multi-class fit, label vectors of
a permutation test) also get the inverse ``S`` of ``I / 2C + K`` (every training sample; by
Gauss-Jordan elimination below :data:`_GAUSS_JORDAN_BELOW` samples, else from the factor by
LAPACK): each Newton point is then one
product with ``S`` and a small system on the samples outside the active set (a Schur
complement), whose multipliers also give ``K p`` there (no product with ``K`` in the steps),
refined once against ``K`` at the end. A step there costs the same however many samples
change, so these problems take full steps, no line search: each goes straight to its active
set's Newton point and takes the set of margins below 1 there as the next (the primal-dual
active-set method), which needs fewer steps than the damped iterations (W1 12 mm's
permutation problems: 29.1 damped steps -> 13.7 sets; W3's: 3.6 -> 2.7). Full steps may
cycle; after :data:`MAX_JUMPS` sets, and for any problem the inverse does not settle to
rounding, the factor path solves the problem from the start. The problems of such a training
set run in lockstep (:func:`_set_by_inverse`): their products with ``S`` and ``K`` (first
points, final margins, refinements) are matrix products over all of them, the jumps and
Schur systems problem by problem (W3's permutation calls: -7 to -10%).

Warm starts: a sphere's problem can start from the active set of the same problem's
optimum on a neighbouring sphere (the caller's choice). Its Newton point is the first point;
when the active set there is the same, it is the optimum (one factorisation or Schur system
and no line search), else the iterations go on from it, as from any point. Either way they
end at the problem's unique optimum; from a neighbour the damped steps are fewer (W1 at
12 mm: 26 -> 18 per problem, W3's permutation problems 3.7 -> 3.2). The inverse path's
jumps may be fewer from ``S y``'s own set (its first point, computed for every problem
anyway): W3's permutation problems take 2.42 jumps from it against 2.94 from the
neighbour's, while smooth data whose neighbouring spheres share nearly every voxel take
fewer from the neighbour's. So the inverse path starts from whichever has taken fewer jumps
on the spheres before (:data:`EXPLORE_EVERY`). A problem alone on its training set starts
from its last optimum's set even when that sphere is not a neighbour (the engine's blocks
hold spheres of one size, so the mask's edges leave many spheres without their neighbour
before them): that spares the factor of every training sample that a cold start needs.

A problem alone on its training set (binary fits) first takes up to :data:`FULL_JUMPS` full
steps on the factor path too (jumps as above, each Newton point from a factor), then damped
steps that go the whole way where that lowers the objective: W1 at 12 mm (``d ~ n``, nearly
separable training sets) 18.9 -> 9.4 Newton points per problem on the whole brain, warm
starts included.

Training sets with 0.55-0.72 features per sample (:data:`.svm.C_PATH_SHARE`) sit near the
edge of linear separability, and on raw-scale volumes their optimum is nearly the
hard-margin one, whose active set the iterations above reach a few samples at a time (W1 at
12 mm, spheres cut by the mask to 89-109 voxels: 40-53 Newton points per problem). Their
problems alone on their training sets first solve a path of smaller ``C``
(:func:`c_path`: from the ``C`` where the margin is soft, up by half decades), each from
the optimal active set of the one before, then ``C`` from the last one's: on W1 12 mm's
spheres of 89-113 voxels 0.61-0.64 of the time, the same optima (the path moves only the
start of the last solve).

Problems whose Gram matrix is too large for the regulariser (``eps * 2C max K_ii > 1e-6``,
as the primal method's test) are left with status :data:`NEEDS_SVD` for the caller.

Compiled with numba (``cache=True``, ``nogil=True``): a whole batch of spheres runs without
the interpreter lock.
"""

from __future__ import annotations

import numpy as np

from ._borrow import borrowed
from ._compiled import kernel
from ._lapack import inverse_lower_block, matmul_into
from ._rows import four_dots, next_four
from ._simd import DIAGONAL_BLOCK, column_gram_upper, column_products_upper, mirror_below_blocks
from ._svm_kernel import (
    _FASTMATH,
    _NORMAL_EQUATIONS_TOL,
    CONVERGED,
    NEEDS_SVD,
    UNCONVERGED,
    _step_length,
)
from ._triangular import back_upper, cholesky_lower_rows, cholesky_upper_forward, forward_upper, solve_upper

__all__ = ["follows_previous", "gram_newton_spheres", "sample_grams", "voxels_of"]

_EPS = np.finfo(np.float64).eps
#: the inverse path's inverse of every sample's matrix: by Gauss-Jordan elimination below
#: this many training samples (:func:`_inverse_every_sample`, in compiled loops: 0.44 of
#: LAPACK's time at ``k = 20``, 0.49 at 28, 0.80 at 56, 1.15 at 80, 1.98 at 162), from the
#: Cholesky factor by LAPACK from it. (W1 12 mm's permutation calls, ``k = 162`` on raw
#: volumes, took 2.0 times as long and 18% more Newton points with Gauss-Jordan's inverse.)
_GAUSS_JORDAN_BELOW = 64
#: factors of at least this size go to the blocked factorisation of :mod:`._triangular`
#: (:func:`_cholesky_lower`, :func:`_cholesky_upper`; LAPACK's ``potrf`` before stop 51),
#: smaller ones to a loop
_LAPACK_FROM = 24
#: :func:`sample_grams` computes every this-many-th sphere of a run of neighbours afresh (the
#: calls of :meth:`.BatchedLinearSVC._solve_gram` hold about six spheres at 12 mm)
GRAM_REFRESH = 16


@kernel(fastmath=_FASTMATH)
def _cholesky_lower(M, k, L, inv):
    """Lower factor ``L`` (``M = L L^T``) of the leading ``k x k`` block of ``M`` (lower
    triangle read), and the reciprocals ``inv`` of its diagonal; False if it is not
    positive definite. From ``k = 24`` (the inverse path's Schur systems, through
    :func:`_schur_factor`; the first step's factors of every sample came here before stop 65)
    the blocked factorisation in place (:func:`._triangular.cholesky_lower_rows`, 0.62-0.76
    of the time of LAPACK's ``potrf``, itself 1.5-1.7 times faster than this loop from
    ``k = 16`` to ``k = 162``); below it a compiled row-by-row loop, as a LAPACK call cost
    more than the work there (24 against 90 ns at ``k = 4``, 107 against 163 at ``k = 8``). The
    threshold was set when this loop also factored the inverse path's small Schur systems
    (with it at 12, W3's permutation problems took 12% longer, at 24 as long as with the
    loop alone, while plain W3 fits gain 7%); those now have their own ``L D L^T`` loop
    (:func:`_schur_factor_forward`), and from 24 samples go here through
    :func:`_schur_factor`."""
    if k >= _LAPACK_FROM:
        for r in range(k):
            for c in range(r + 1):
                L[r, c] = M[r, c]
        if not cholesky_lower_rows(L, k):
            return False
        for r in range(k):
            inv[r] = 1.0 / L[r, r]
        return True
    for i in range(k):
        for j in range(i):
            acc = M[i, j]
            for c in range(j):
                acc -= L[i, c] * L[j, c]
            L[i, j] = acc * inv[j]
        acc = M[i, i]
        for c in range(i):
            acc -= L[i, c] * L[i, c]
        if acc <= 0.0:
            return False
        L[i, i] = np.sqrt(acc)
        inv[i] = 1.0 / L[i, i]
    return True


@kernel(fastmath=_FASTMATH)
def _factor_every_sample(K, k, half, U0, inv0):
    """``U0`` (upper, in place: ``U0^T U0``) the factor of ``I / 2C + K`` on every training
    sample (``half = 1 / 2C``), ``inv0`` the reciprocals of its diagonal; False if it fails.
    By :func:`_cholesky_upper` (the outer-product tiles of :mod:`._triangular`; with the lower
    factor's blocks of dot products that it replaced, this function took 63 against 46-49 us
    at 162 raw-scale samples, one thread)."""
    for r in range(k):
        for c in range(r, k):
            U0[r, c] = K[r, c]
        U0[r, r] += half
    return _cholesky_upper(U0, k, k, inv0)


@kernel(fastmath=_FASTMATH)
def _inverse_from_factor(U0, k, S):
    """``S`` (both triangles of its leading ``k x k`` block) the inverse of ``U0^T U0``, from
    the upper factor ``U0`` of :func:`_factor_every_sample`: its transpose into the lower
    triangle of ``S``, then LAPACK's ``potri`` (:func:`._lapack.inverse_lower_block`). False
    when a diagonal entry is zero."""
    for r in range(k):
        for c in range(r + 1):
            S[r, c] = U0[c, r]
    return inverse_lower_block(S, k)


@kernel(fastmath=_FASTMATH)
def _inverse_every_sample(K, k, half, S, row):
    """``S`` the inverse of ``I / 2C + K`` on every training sample (``half = 1 / 2C``), by
    Gauss-Jordan elimination in place, without pivoting (the matrix is positive definite:
    its pivots are those of its ``L D L^T`` factor); ``row`` (length ``k``) work space.
    False if a pivot is not positive (the matrix is not positive definite to rounding).
    Each pivot updates whole rows of ``S`` (contiguous, vectorised): at ``k = 28`` about
    twice as fast as LAPACK's factor and inverse (``potrf``, ``potri``), whose unblocked
    routines at this size call BLAS column by column."""
    for r in range(k):
        for c in range(k):
            S[r, c] = K[r, c]
        S[r, r] += half
    for q in range(k):
        pivot = S[q, q]
        if not pivot > 0.0:
            return False
        d = 1.0 / pivot
        for c in range(k):
            row[c] = S[q, c] * d
        row[q] = d
        for r in range(k):
            f = S[r, q]
            g = 0.0 if r == q else f  # (the pivot's row is replaced below)
            for c in range(k):
                S[r, c] -= g * row[c]
            S[r, q] = -g * d
        for c in range(k):
            S[q, c] = row[c]
    return True


@kernel(fastmath=_FASTMATH)
def _schur_factor(M, k, L, dinv):
    """``M = L D L^T`` for the leading ``k x k`` block of ``M`` (lower triangle read): ``L``
    unit lower triangular (its diagonal set to 1), ``dinv`` the reciprocals of ``D``;
    False if it is not positive definite. The inverse path's Schur systems ``S_RR`` of at
    least :data:`_LAPACK_FROM` samples (:func:`_schur_correction`): the Cholesky factor
    ``C`` (:func:`_cholesky_lower`), rescaled (``L = C diag(C)^-1``, ``D = diag(C)^2``)."""
    if not _cholesky_lower(M, k, L, dinv):
        return False
    for r in range(k):
        for c in range(r):
            L[r, c] *= dinv[c]
        L[r, r] = 1.0
    for r in range(k):
        dinv[r] *= dinv[r]
    return True


@kernel(fastmath=_FASTMATH)
def _schur_factor_forward(S, ridx, k, L, dinv, z, f):
    """``S_RR = L D L^T`` (``R = ridx[:k]``, read from ``S`` in place) as
    :func:`_schur_factor`, by a compiled row-by-row loop, and the forward substitution
    ``f = L^-1 z_R`` row by row in the same pass; False if ``S_RR`` is not positive
    definite. The inverse path's small Schur systems (W3's permutation problems: about 7
    samples outside the active set): a row's pivot costs one division, where Cholesky's
    costs a square root and a division in sequence (such small factors are bound by that
    chain)."""
    for i in range(k):
        # L[i, c] holds (L D)[i, c] until its pivot's reciprocal scales it
        ri = ridx[i]
        for j in range(i):
            acc = S[ri, ridx[j]]
            for c in range(j):
                acc -= L[i, c] * L[j, c]
            L[i, j] = acc
        acc = S[ri, ri]
        fz = z[ri]
        for c in range(i):
            w = L[i, c]
            lc = w * dinv[c]
            acc -= w * lc
            fz -= lc * f[c]
            L[i, c] = lc
        if acc <= 0.0:
            return False
        L[i, i] = 1.0
        dinv[i] = 1.0 / acc
        f[i] = fz
    return True


@kernel(fastmath=_FASTMATH, inline="always")
def _ldl_back(L, dinv, k, x):
    """In place, ``x = L^-T D^-1 x`` on the leading ``k`` entries: the second half of a
    solve with an ``L D L^T`` factor, the back substitution along the rows of ``L``
    (contiguous) rather than its columns."""
    for i in range(k):
        x[i] *= dinv[i]
    for i in range(k - 1, 0, -1):
        xi = x[i]
        for c in range(i):
            x[c] -= L[i, c] * xi


@kernel(fastmath=_FASTMATH, inline="always")
def _solve_ldl(L, dinv, k, b, out):
    """``out = (L D L^T)^-1 b`` on the leading ``k`` entries (:func:`_schur_factor`'s
    factor; ``out`` may be ``b``)."""
    for i in range(k):
        acc = b[i]
        for c in range(i):
            acc -= L[i, c] * out[c]
        out[i] = acc
    _ldl_back(L, dinv, k, out)


@kernel(fastmath=_FASTMATH)
def _cholesky_upper(U, k, kc, inv):
    """In place: the upper factor ``U`` (``M = U^T U``) of the leading ``k x k`` block of
    ``U``, whose upper triangle holds ``M``, and the reciprocals ``inv`` of its diagonal;
    False if it is not positive definite. The columns ``k .. kc - 1`` of its leading ``k``
    rows (``kc <= k + 12``; ``U`` at least ``kc`` wide) are right-hand sides, and end as
    ``U^-T`` times what they held (the forward solve, in the same pass). From ``k = 24``
    the blocked factorisation (:func:`._triangular.cholesky_upper_forward`, which leaves the
    factor's transpose in the block's lower triangle, unused here), below it a compiled
    loop (as :func:`_cholesky_lower`); the loop updates the rows below a pivot by row
    slices, which vectorise."""
    if k >= _LAPACK_FROM:
        if not cholesky_upper_forward(U, k, kc):
            return False
        for r in range(k):
            inv[r] = 1.0 / U[r, r]
        return True
    for i in range(k):
        row = U[i, i:kc]
        if row[0] <= 0.0:
            return False
        piv = np.sqrt(row[0])
        inv[i] = 1.0 / piv
        row[0] = piv
        for j in range(1, kc - i):
            row[j] *= inv[i]
        for c in range(1, k - i):
            v = row[c]
            below = U[i + c, i + c : kc]
            src = row[c:]
            for j in range(kc - i - c):
                below[j] -= v * src[j]
    return True


@kernel(fastmath=_FASTMATH)
def _append(K, half, idx, na, j, U, inv, l, zy, yj):
    """Sample ``j`` appended to the upper factor ``U`` of ``I / 2C + K_AA``
    (``A = idx[:na]``): a new column ``U^-T K[A, j]`` (forward solve by row slices) and
    diagonal entry, and the new entry of ``zy = U^-T y_A`` (``yj``: the sample's target);
    False if rounding left no positive pivot."""
    Kj = K[j]
    for r in range(na):
        l[r] = Kj[idx[r]]
    forward_upper(U, inv, na, l)
    acc = K[j, j] + half
    lz = 0.0
    for c in range(na):
        U[c, na] = l[c]
        acc -= l[c] * l[c]
        lz += l[c] * zy[c]
    if acc <= 0.0:
        return False
    U[na, na] = np.sqrt(acc)
    inv[na] = 1.0 / U[na, na]
    zy[na] = (yj - lz) * inv[na]
    idx[na] = j
    return True


@kernel(fastmath=_FASTMATH)
def _remove(idx, na, r, U, inv, v, zy):
    """The sample at position ``r`` taken out of the upper factor ``U`` of
    ``I / 2C + K_AA`` (``A = idx[:na]``): its row and column are deleted (the entries right
    of and below them move up and left), and the block below and right of it takes the
    removed row as a rank-one update (always stable), row by row. ``zy = U^-T y_A`` follows
    as a column right of the factor's: its entries below ``r`` move up and take the same
    rotations. Each row below moves up
    and left as it is updated, in one pass: 0.80-0.83 of the time of a move, then the
    update (12 removals from factors of 100 and 120 samples, the same factors)."""
    m = na - 1 - r
    gone = U[r, r + 1 : na]
    for i in range(m):
        v[i] = gone[i]
    for i in range(r):
        row = U[i, r:na]
        for c in range(na - 1 - r):  # (a slice from 0: numba's loops from a variable start
            row[c] = row[c + 1]  # did not vectorise)
    vz = zy[r]  # the removed row's entry of zy, rotated like its others
    for c in range(m):  # row rc + 1 updated into row rc (free: moved or removed before)
        rc = r + c
        src = U[rc + 1, rc + 1 : na]
        dst = U[rc, rc : na - 1]
        idx[rc] = idx[rc + 1]
        lcc = src[0]
        nrm = np.sqrt(lcc * lcc + v[c] * v[c])
        inv_old = inv[rc + 1]
        cs = nrm * inv_old
        sn = v[c] * inv_old
        rcs = lcc / nrm
        dst[0] = nrm
        inv[rc] = 1.0 / nrm
        rest = v[c + 1 : m]
        for i in range(m - c - 1):
            x = (src[i + 1] + sn * rest[i]) * rcs
            dst[i + 1] = x
            rest[i] = cs * rest[i] - sn * x
        x = (zy[rc + 1] + sn * vz) * rcs
        zy[rc] = x
        vz = cs * vz - sn * x


@kernel(fastmath=_FASTMATH, inline="always")
def _products_off(K, k, p, on_p, out):
    """``out[i] = (K p)_i`` for the samples ``i`` outside ``on_p`` (the others are left as
    they were), four rows of ``K`` at a time: each load of ``p`` serves four products. ``p``
    is 0 outside its active set, but the products run over every sample: dense, vectorised
    loops rather than gathers."""
    i = 0
    while i < k:
        r0, r1, r2, r3, i = next_four(on_p, False, i, k)
        if r3 >= 0:
            a0, a1, a2, a3 = four_dots(K, r0, r1, r2, r3, p, k)
            out[r0] = a0
            out[r1] = a1
            out[r2] = a2
            out[r3] = a3
        else:  # the last one to three
            for r in (r0, r1, r2):
                if r >= 0:
                    acc = 0.0
                    for c in range(k):
                        acc += K[r, c] * p[c]
                    out[r] = acc


@kernel(fastmath=_FASTMATH)
def _newton_step(K, k, y, C, p, on_p, idx, na, a, m, act, s, u, delta):
    """One step from the coefficients ``a`` towards the Newton point ``p`` of the active set
    ``idx[:na]``, by the exact line search: ``a``, the margins ``m`` and the active set
    ``act`` moved (``s``, ``u``, ``delta`` are work space). On the samples ``on_p`` (the
    active set of ``p``) ``K p`` is ``y - p / 2C`` (their own equations); elsewhere it is
    computed from ``K``. The step goes all the way to ``p`` instead when that lowers the
    objective (a full step, as the jumps of :func:`_solve_dual`, with the descent that the
    damped step guarantees): on W1 12 mm it lands on a better active set. This includes the
    primal kernel's first-step rule: from ``a = 0`` the Newton point of every sample lowers
    the objective (its quadratic, with every sample's loss ``(1 - m_i)^2``, bounds the
    objective from above and equals it at 0). Returns ``(t, s . K s, n_changed, a . K a)``."""
    half = 0.5 / C
    # direction in the coefficients, and its change of every margin
    wd = 0.0
    ss = 0.0
    _products_off(K, k, p, on_p, u)  # (K p)_i outside on_p, into u
    for i in range(k):
        s[i] = p[i] - a[i]
        kp = y[i] - half * p[i] if on_p[i] else u[i]
        u[i] = kp - y[i] * m[i]
        delta[i] = y[i] * u[i]
        wd += a[i] * u[i]
        ss += s[i] * u[i]
    t = _step_length(wd, ss, m, delta, delta[:0], k, C)  # every sample weighs 1
    if t != 1.0:
        # the full step when it lowers the objective:
        # phi(1) - phi(0) = a.Ks + s.Ks / 2 + C sum_i ((1 - m_i - delta_i)_+^2 - (1 - m_i)_+^2)
        diff = wd + 0.5 * ss
        for i in range(k):
            r0 = 1.0 - m[i]
            r1 = r0 - delta[i]
            if r1 > 0.0:
                diff += C * r1 * r1
            if r0 > 0.0:
                diff -= C * r0 * r0
        if diff < 0.0:
            t = 1.0
    n_changed = 0
    ww = 0.0
    for i in range(k):
        a[i] += t * s[i]
        m[i] += t * delta[i]
        now = m[i] < 1.0
        n_changed += now != act[i]
        act[i] = now
        ww += a[i] * y[i] * m[i]
    return t, ss, n_changed, ww


@kernel(fastmath=_FASTMATH)
def _jump(K, k, y, C, p, on_p, a, m, act):
    """Move straight to the Newton point ``p`` of the active set ``on_p`` (a warm start's
    first step): ``a = p``, its margins ``m`` and active set ``act``. Returns how many
    samples' status differs from ``on_p`` (0: ``p`` is the optimum)."""
    half = 0.5 / C
    n_changed = 0
    _products_off(K, k, p, on_p, m)  # (K p)_i outside on_p, into m
    for i in range(k):
        a[i] = p[i]
        kp = y[i] - half * p[i] if on_p[i] else m[i]
        m[i] = y[i] * kp
        now = m[i] < 1.0
        n_changed += now != on_p[i]
        act[i] = now
    return n_changed


@kernel(fastmath=_FASTMATH)
def _factor_active(K, half, idx, na, U, inv):
    """The upper triangle of ``U`` set to ``I / 2C + K_AA`` (``A = idx[:na]``), to be
    factored in place."""
    for r in range(na):
        Kr = K[idx[r]]
        Ur = U[r, r:na]
        cols = idx[r:na]
        for c in range(na - r):  # (from 0: loops from a variable start were slower)
            Ur[c] = Kr[cols[c]]
        Ur[0] += half


@kernel(fastmath=_FASTMATH)
def _factor_fresh(K, half, idx, na, y, U, inv, zy):
    """The upper factor ``U`` of ``I / 2C + K_AA`` (``A = idx[:na]``) computed afresh, and
    ``zy = U^-T y_A`` in the same pass (``y_A`` as its extra column, :func:`_cholesky_upper`);
    False if the matrix is not positive definite to rounding."""
    _factor_active(K, half, idx, na, U, inv)
    for r in range(na):
        U[r, na] = y[idx[r]]
    if not _cholesky_upper(U, na, na + 1, inv):
        return False
    for r in range(na):
        zy[r] = U[r, na]
    return True


@kernel(fastmath=_FASTMATH, inline="always")
def _newton_point(U, inv, na, zy, z, idx, k, p):
    """``p`` the Newton point of the active set ``A = idx[:na]`` (0 elsewhere), from its
    factor ``U`` and ``zy = U^-T y_A``: one back substitution (``z``: work space)."""
    for r in range(na):
        z[r] = zy[r]
    back_upper(U, inv, na, z)
    for i in range(k):
        p[i] = 0.0
    for r in range(na):
        p[idx[r]] = z[r]


@kernel(fastmath=_FASTMATH)
def _solve_dual(
    K, k, y, C, U0, inv0, max_iter, a, p, s, u, m, delta, act, pact, idx, U, inv, zy, z, guess, jumps,
    have_U0,
):  # fmt: skip
    """Finite Newton iterations on one problem: training samples ``0 .. k-1`` of Gram
    matrix ``K``, targets ``y``; ``U0`` the upper factor of ``I / 2C + K`` (every sample
    active) when ``have_U0``, else work space where it is computed if a cold start needs it
    (a warm start's problem does not). Leaves the coefficients in ``a``; the other arrays
    are work space (length >= ``k``, ``U`` at least ``k x (k + 1)``: the upper factor of
    the active set's matrix, whose updates and solves then run along its rows; ``zy``:
    ``U^-T y_A``, kept with the factor, so that a Newton point takes one triangular solve:
    computed with a fresh factor in the same pass, as an extra column, and updated with
    it). Returns ``(status, iterations)``.

    The first ``jumps`` steps go straight to the Newton point of the active set and take
    the samples whose margins are below 1 there as the next set (the primal-dual active-set
    method, :data:`FULL_JUMPS`); the later ones are damped (:func:`_newton_step`), so the
    iterations end at the optimum from wherever the jumps left them.

    ``K p`` is not computed on the active set ``A`` of the Newton point ``p``: there it is
    ``y - p / 2C`` (its own equations); ``K a`` is ``y * m`` (the margins).

    ``guess`` (length ``k``, or empty for none) is a warm start: an active set, usually the
    optimum's of a neighbouring sphere's same problem. Its Newton point is then the first
    point (the first step a jump to it, :func:`_jump`), and the optimum when its active set
    is ``guess`` again; otherwise the iterations go on from it."""
    # every array borrowed (no reference counts; the caller holds them, and none is kept)
    K, y, U0, inv0, a, p = borrowed(K), borrowed(y), borrowed(U0), borrowed(inv0), borrowed(a), borrowed(p)
    s, u, m, delta = borrowed(s), borrowed(u), borrowed(m), borrowed(delta)
    act, pact, idx, U = borrowed(act), borrowed(pact), borrowed(idx), borrowed(U)
    inv, zy, z, guess = borrowed(inv), borrowed(zy), borrowed(z), borrowed(guess)
    half = 0.5 / C
    warm = guess.shape[0] > 0
    na = 0
    for i in range(k):
        a[i] = 0.0
        m[i] = 0.0
        act[i] = guess[i] if warm else True
        pact[i] = act[i]
        if act[i]:
            idx[na] = i
            na += 1
    if warm and not _factor_fresh(K, half, idx, na, y, U, inv, zy):  # rounding: a cold start
        warm = False
        for i in range(k):
            act[i] = True
            pact[i] = True
            idx[i] = i
        na = k
    if warm:
        _newton_point(U, inv, na, zy, z, idx, k, p)
    else:
        if not have_U0 and not _factor_every_sample(K, k, half, U0, inv0):
            return NEEDS_SVD, 0
        solve_upper(U0, inv0, k, y, p)
    for it in range(max_iter):
        if (warm and it == 0) or it < jumps:
            n_changed = _jump(K, k, y, C, p, pact, a, m, act)
            if n_changed == 0:
                return CONVERGED, it + 1
        else:
            t, ss, n_changed, ww = _newton_step(K, k, y, C, p, pact, idx, na, a, m, act, s, u, delta)
            if n_changed == 0 or t * t * ss <= 1e-26 * (1.0 + abs(ww)):
                return CONVERGED, it + 1
        # the Newton point of the new active set: the factor updated (a few changes) or
        # computed afresh
        fresh = (it == 0 and not warm) or _FRESH_SHARE * n_changed > na
        if not fresh:
            r = 0
            while r < na:  # samples that left
                if not act[idx[r]]:
                    pact[idx[r]] = False
                    _remove(idx, na, r, U, inv, z, zy)
                    na -= 1
                else:
                    r += 1
            for i in range(k):  # samples that joined
                if act[i] and not pact[i]:
                    if not _append(K, half, idx, na, i, U, inv, z, zy, y[i]):
                        fresh = True
                        break
                    pact[i] = True
                    na += 1
        if fresh:
            na = 0
            for i in range(k):
                pact[i] = act[i]
                if act[i]:
                    idx[na] = i
                    na += 1
            if not _factor_fresh(K, half, idx, na, y, U, inv, zy):
                return NEEDS_SVD, it + 1
        _newton_point(U, inv, na, zy, z, idx, k, p)
    return UNCONVERGED, max_iter


#: internal status of :func:`_set_by_inverse`: the problem goes to :func:`_solve_dual`
_REDO = 3
#: internal status of :func:`_set_by_inverse`: the point is to be refined once
_REFINE = 4
#: training sets shared by at least this many problems (the classes of a multi-class fit,
#: label vectors of a permutation test) are solved by :func:`_set_by_inverse` first; its
#: inverse per training set (LAPACK's ``potri``) costs about two factorisations. Captured
#: calls, CPU per problem: W3's plain fits (4 classes, k = 28) 10.0-10.5 -> 5.7-7.3 us by
#: the inverse; one problem per set (W3 restricted to one class, k = 28) 18.4-18.8 by the
#: factor path against 20.0-20.4 us, and W1 12 mm's (k = 162) 794-1,040 against
#: 1,040-1,086 us: the factor path for single problems.
INVERSE_MEMBERS = 2
#: the inverse path starts its problems from the neighbour's active set or from ``S y``'s
#: (cold), whichever has taken fewer jumps on average (a cold start's first point, ``S y``,
#: is not counted: every problem computes it); every this-many-th problem that could start
#: from its neighbour's set takes the other start, to keep measuring it (odd: not in step
#: with the classes of a label vector). The averages decay by :data:`_START_MEMORY` per
#: training set. W3's permutation problems, a numpy model of 600 spheres: 2.42 jumps from
#: ``S y``'s set against 2.94 from the neighbour's; captured calls 0.941 of the time all
#: cold, 0.948 with this rule (every 8th problem the other way: 0.959), the same decisions.
#: Smooth data whose neighbouring spheres share 29 of 30 voxels (as ``tests/``): about 2.8
#: jumps against 2.2; this rule 2.29 Newton points per problem, against 2.22 always from
#: the neighbour's.
EXPLORE_EVERY = 31
#: the factor by which the jump counts of :data:`EXPLORE_EVERY` decay per training set
_START_MEMORY = 0.99
#: active sets tried by :func:`_set_by_inverse` before a problem goes to the factor path
MAX_JUMPS = 12
#: steps that a problem solved on its own by :func:`_solve_dual` first takes as jumps (full
#: steps to its active set's Newton point, with no test of descent: the primal-dual
#: active-set method), before the damped steps, which descend. Captured calls of 800
#: neighbouring W1 12 mm spheres (3,056 problems, warm starts): 18.9 -> 9.4 Newton points
#: per problem and 0.59 of the kernel's CPU time (8 jumps; 12 and 16: 0.60, 0.61; 12 jumps
#: and no full damped steps: 0.61). In a numpy model of 160 cold problems, the jumps
#: alone converged in a median 8 sets; 2% did not within 60 (they wander, not cycle)
FULL_JUMPS = 8
#: a factor is computed afresh instead of updated when more than this share of its samples
#: change (one in 8; one in 4 before the jumps, which change many at once: 0.61 against 0.64
#: of the old kernel's time above)
_FRESH_SHARE = 8
#: a path in ``C`` (:func:`c_path`): its first ``C`` puts ``C`` times the training samples'
#: mean squared distance to their mean (``s``) at this value; then each ``C`` is this ratio
#: times the one before, while it is below :data:`C_PATH_END` times the problem's ``C``
C_PATH_START = 200.0
C_PATH_RATIO = 10.0**0.5
C_PATH_END = 0.2
#: at most this many ``C`` on a path
C_PATH_MAX = 16
#: Newton points allowed to each ``C`` of a path before the problem gives the path up (and
#: starts ``C`` from its own warm start, as without one); W1 12 mm's problems took at most
#: 45 points in all, path included (stop 90)
C_PATH_POINTS = 50


@kernel(fastmath=_FASTMATH)
def c_path(K, k, C, out):
    """The smaller ``C`` solved before ``C`` itself on a problem of the training samples'
    Gram block ``K`` (``k x k``), in increasing order into ``out``; returns how many (0: no
    path).

    The problems of training sets whose samples have 0.55-0.72 times as many features
    (:data:`.svm.C_PATH_SHARE`) are near the edge of linear separability (Cover's
    threshold: ``n`` points in general position in ``d`` dimensions are separable in
    every labelling when ``n <= d + 1``, and in most when ``n < 2 d``). On raw-scale
    volumes (``C s`` about ``7e4`` at W1 12 mm) their optimum is nearly the hard-margin
    one, with about as many support vectors as features, and the finite Newton method
    reaches its active set a few samples at a time from any start: 40-53 Newton points per
    problem (stop 76). Solved first at a ``C`` where the margin is soft (``C s`` =
    :data:`C_PATH_START`: most samples active, few points), then at ``C`` about three times
    larger each time, each from the optimal active set of the one before, the problem takes
    fewer and cheaper points in all. The path changes only where the last solve starts:
    its optimum is the problem's own."""
    tr = 0.0
    tot = 0.0
    for i in range(k):
        tr += K[i, i]
        row = K[i]
        acc = 0.0
        for j in range(k):
            acc += row[j]
        tot += acc
    s = tr / k - tot / (k * k)  # the mean squared distance to the samples' mean
    if not s > 0.0:
        return 0
    c = C_PATH_START / s
    n = 0
    while c < C_PATH_END * C and n < out.shape[0]:
        out[n] = c
        c *= C_PATH_RATIO
        n += 1
    return n


@kernel(fastmath=_FASTMATH, inline="always")
def _schur_correction(S, k, z, out, ridx, nr, Mr, Lr, invr, lam, factor):
    """``out = z - S[:, R] S_RR^-1 z_R`` with ``out_R = 0``, for ``R = ridx[:nr]``. With
    ``S`` the inverse of ``M = I / 2C + K`` on every training sample and ``z = S b`` (``b``
    zero on ``R``), this is ``(M_AA)^-1 b_A`` on ``A``, the other samples (block inverse:
    ``(M_AA)^-1 = S_AA - S_AR S_RR^-1 S_RA``). The factor of ``S_RR`` is computed when
    ``factor`` (:func:`_schur_factor_forward` below :data:`_LAPACK_FROM` samples, with the
    forward substitution, else :func:`_schur_factor`), else reused. False if it fails."""
    if nr == 0:
        for i in range(k):
            out[i] = z[i]
        return True
    if factor and nr < _LAPACK_FROM:
        if not _schur_factor_forward(S, ridx, nr, Lr, invr, z, lam):
            return False
        _ldl_back(Lr, invr, nr, lam)
    else:
        if factor:
            for e in range(nr):
                for f in range(e + 1):
                    Mr[e, f] = S[ridx[e], ridx[f]]
            if not _schur_factor(Mr, nr, Lr, invr):
                return False
        for e in range(nr):
            lam[e] = z[ridx[e]]
        _solve_ldl(Lr, invr, nr, lam, lam)
    # S is symmetric: S[:, R] lam from its rows R (contiguous, vectorised), the first with
    # the copy of z
    r0 = ridx[0]
    l0 = lam[0]
    for i in range(k):
        out[i] = z[i] - l0 * S[r0, i]
    for e in range(1, nr):
        re = ridx[e]
        le = lam[e]
        for i in range(k):
            out[i] -= le * S[re, i]
    for e in range(nr):
        out[ridx[e]] = 0.0
    return True


@kernel(fastmath=_FASTMATH, inline="always")
def _jumps(S, k, y, p1, max_jumps, p, Act, j, ridx, Mr, Lr, invr, lam, starts, warm):
    """The active-set jumps of :func:`_set_by_inverse` from ``p1 = S y``, the Newton point
    of every sample: each goes straight to the Newton point ``p`` of the current active set
    ``A`` (``p1_A - S_AR S_RR^-1 p1_R``, ``R`` the samples outside it) and takes the
    samples whose margins are below 1 there as the next set, until the set repeats. The
    margins need no product with ``K``: ``1 - y_i p_i / 2C`` on ``A`` and ``1 - y_i lam_i``
    on ``R`` (``lam = S_RR^-1 p1_R``).

    The first set is ``starts[j]`` when ``warm``, else the active set at ``p1``
    (``y_i p1_i > 0``). Leaves the last point in ``p``, its set in ``Act[j]`` and the
    samples outside it in ``ridx``. (Rows are indexed, not sliced: a row view costs
    reference counts.) Returns ``(status, Newton points computed, samples outside)``:
    :data:`CONVERGED` when the set repeated, :data:`_REDO` after ``max_jumps`` sets or a
    failed factor."""
    nr = 0
    for i in range(k):
        now = starts[j, i] if warm else y[i] * p1[i] > 0.0
        Act[j, i] = now
        ridx[nr] = i
        nr += 0 if now else 1
    # Newton points computed: a cold start's first is p1's (every sample), which is also
    # its first set's when that set is every sample
    first = 0 if warm or nr == 0 else 1
    points = 0
    for jump in range(max_jumps):
        points = first + jump + 1
        if not _schur_correction(S, k, p1, p, ridx, nr, Mr, Lr, invr, lam, True):
            return _REDO, points, nr
        # the next set: margins below 1 at p, from the block inverse's identities: with
        # lam written into p outside the set, the signs of y_i p_i on every sample, a
        # dense pass (no load whose address depends on which samples are active, as
        # reading p_i or lam_e by turns had: W3's permutation calls 0.98-0.99 of the time)
        for e in range(nr):
            p[ridx[e]] = lam[e]
        changed = False
        for i in range(k):
            now = y[i] * p[i] > 0.0
            changed = changed | (now != Act[j, i])
            Act[j, i] = now
        nr = 0
        for i in range(k):
            ridx[nr] = i
            nr += 0 if Act[j, i] else 1
        for e in range(nr):  # p back to the Newton point, 0 outside the set
            p[ridx[e]] = 0.0
        if not changed:
            return CONVERGED, points, nr
    return _REDO, points, nr


@kernel(fastmath=_FASTMATH, inline="always")
def _residual(k, C, Y, P, KP, Mg, Act, A, j, y, p, b, knorm, tolerant):
    """The residual ``b = y_A - M_AA p_A`` (0 outside the active set ``Act[j]``) of the
    Newton point ``p = P[j]`` of the targets ``y = Y[j]`` (both copied to the work vectors
    ``y`` and ``p``, and ``p`` to ``A[j]``), from its product ``KP[j] = K p``, with its
    margins ``Mg[j] = y_i (K p)_i``, in one pass.

    Returns ``(accepted, |p|_inf, |b|_2, err, |p|_2)``: the point is within ``2C |b|`` of
    the exact one (``M_AA >= I / 2C``), accepted as it is when that is below ``1e-13`` of
    it. With ``tolerant``, ``err`` bounds the rounding of the computed residual (for
    :func:`_certified`, whose radius is ``1.01 * 2C (|b|_2 + err)``): on each active sample
    ``gamma_k |K_i|_2 |p|_2`` from the product (``gamma_k = k eps / (1 - k eps)``) and three
    roundings of the subtractions, ``3 eps (1 + |p_i| / 2C + |(K p)_i|)``; their 2-norm,
    summed by expanding its square (terms of one sign, so no cancellation); else 0."""
    gamma = k * _EPS / (1.0 - k * _EPS)
    half = 0.5 / C
    res = 0.0
    big = 0.0
    pn2 = 0.0
    s_aa = 0.0
    s_at = 0.0
    s_tt = 0.0
    for i in range(k):
        yi = Y[j, i]
        pi = P[j, i]
        kp = KP[j, i]
        y[i] = yi
        p[i] = pi
        A[j, i] = pi
        mi = yi * kp
        Mg[j, i] = mi
        pn2 += pi * pi
        big = max(big, abs(pi))
        # (without branches: which samples are active is unpredictable)
        on = 1.0 if Act[j, i] else 0.0
        bi = on * (yi - half * pi - yi * mi)
        b[i] = bi
        res += bi * bi
        if tolerant:
            ai = on * gamma * knorm[i]
            ti = on * 3.0 * _EPS * (1.0 + half * abs(pi) + abs(kp))
            s_aa += ai * ai
            s_at += ai * ti
            s_tt += ti * ti
    res = np.sqrt(res)
    pn = np.sqrt(pn2)
    err = np.sqrt(pn2 * s_aa + 2.0 * pn * s_at + s_tt)
    return 2.0 * C * res <= 1e-13 * big, big, res, err, pn


@kernel(fastmath=_FASTMATH, inline="always")
def _certified(k, y, p, Mg, Act, j, knorm, radius, slack):
    """Whether the margins prove the active set ``A = Act[j]`` of the Newton point ``p``
    to be the optimum's, given ``radius``, a bound on ``|p - p*|_2`` for ``p*`` the exact
    Newton point of ``A`` (see :func:`_residual`), and ``slack = gamma_k |p|_2``, the
    rounding of the margins ``Mg[j]`` (``|K_i|_2`` times it, ``knorm[i]`` the 2-norms of
    ``K``'s rows). ``A`` is the optimum's set when ``p*``'s margins give it back (as
    :func:`_same_set` checks for ``p``): ``y_i p*_i > 0`` on it (margins ``1 - y_i p*_i / 2C``
    below 1), certain where ``y_i p_i`` exceeds the radius, and margins at least 1 outside
    it, certain where ``m_i`` exceeds 1 by ``|K_i|_2 (radius + slack)``.

    Returns -1 when they do not prove it, else 0 when ``p``'s own margins give ``A`` back
    too (:func:`_same_set`, which the proof implies outside ``A``), 1 when they do not."""
    proven = True
    same = True
    for i in range(k):  # (without branches: which samples are active is unpredictable)
        act = Act[j, i]
        inside = y[i] * p[i] > radius
        outside = Mg[j, i] - knorm[i] * (radius + slack) >= 1.0
        proven = proven & (inside if act else outside)
        same = same & (Mg[j, i] < 1.0 if act else True)
    if not proven:
        return -1
    return 0 if same else 1


@kernel(fastmath=_FASTMATH)
def _refined(S, k, u, p, big, s, a, ridx, nr, Mr, Lr, invr, lam, factor):
    """``a = p + M_AA^-1 r`` from ``u = S r`` (block inverse, with the factor of ``S_RR`` in
    ``Lr``/``invr``, or factored here when ``factor``); False when the correction exceeds
    ``1e-8`` of ``|p|_inf`` (or the correction fails): the point is then left to the factor
    path."""
    if not _schur_correction(S, k, u, s, ridx, nr, Mr, Lr, invr, lam, factor):
        return False
    corr = 0.0
    for i in range(k):
        a[i] = p[i] + s[i]
        corr = max(corr, abs(s[i]))
    return corr <= 1e-8 * big


@kernel(fastmath=_FASTMATH, inline="always")
def _same_set(k, Mg, Act, j):
    """Whether the margins ``Mg[j]`` give the active set ``Act[j]`` back (``m_i < 1`` on
    it)."""
    for i in range(k):
        if (Mg[j, i] < 1.0) != Act[j, i]:
            return False
    return True


@kernel(fastmath=_FASTMATH)
def _set_by_inverse(K, k, C, S, members, Yq, rows, starts, warm, max_jumps, arrays, jumped, work, tolerant):
    """Every problem of a training set (``members``) from ``S``, the inverse of
    ``M = I / 2C + K`` on every training sample, by active-set jumps (:func:`_jumps`: the
    primal-dual active-set method, a semismooth Newton method on the optimality conditions,
    with no line search) from ``p1 = S y``.

    At the end, the residual ``r = y_A - M_AA p_A`` and every margin are computed from
    ``K``: the point is accepted as it is when it is within ``1e-13`` of the exact one
    (:func:`_residual`), else refined once (``p += M_AA^-1 r``, by the block inverse, with
    the last jump's factor of ``S_RR``, or a small one factored again) and accepted if the
    correction was below ``1e-8`` of it (:func:`_refined`). Either way the margins from
    ``K`` at the accepted point must give the set ``A`` back. Jumps may cycle where the
    damped iterations of :func:`_solve_dual` cannot; after ``max_jumps`` sets, or when the
    final check fails, the problem gets :data:`_REDO` (the factor path, from the start).

    The problems run in lockstep: their first points ``S y``, the products ``K p`` of the
    jumps' last points, the refinements' ``S r`` and the refined points' ``K a`` are matrix
    products over all of them (BLAS), the jumps and Schur systems problem by problem.

    ``starts`` (M, k_max) holds each problem's warm start where ``warm``. ``arrays`` is
    :func:`_lockstep_space`'s tuple; on return, for each problem ``j``, ``jumped[j]`` holds
    its status (:data:`CONVERGED` or :data:`_REDO`), Newton points computed (a cold start's
    ``p1`` counted as the first, as the factor path's first step goes to it too) and samples
    outside its active set, and, when converged, ``A[j]`` its coefficients, ``Mg[j]`` their
    margins and ``Act[j]`` its active set. ``work``: vectors ``(9, k_max)``, ``Mr``, ``Lr``
    ``(k_max, k_max)``, ``invr``, ``ridx`` (k_max,).

    With ``tolerant``, a point whose residual is above ``1e-13`` of it is accepted without
    its refinement when its margins prove its active set to be the optimum's
    (:func:`_certified`): ``Rad[j]`` then holds a bound on its distance to the exact
    Newton point (2-norm), else 0. For callers that use only the signs or the largest of
    the decisions (predictions), which the bound lets them check."""
    # every array borrowed (:func:`._borrow.borrowed`: no reference counts; the caller holds
    # them): the counts of the helpers' array arguments, once per problem and jump, took 17%
    # of W3's plain fits and 23% of its permutation tests (Emerald Rapids, one thread). W3
    # permutations (2,000 spheres x 16) about 0.84 of the time, plain fits 0.87-0.89, the
    # same scores; 100 permutations of the whole brain 358 s against 497 s
    K, S, Yq, rows, members = borrowed(K), borrowed(S), borrowed(Yq), borrowed(rows), borrowed(members)
    starts, warm, jumped = borrowed(starts), borrowed(warm), borrowed(jumped)
    Y, P1, P, KP, R, A, Mg, Act, Ridx, F, Finv, Rad = arrays
    Y, P1, P, KP = borrowed(Y), borrowed(P1), borrowed(P), borrowed(KP)
    R, A, Mg = borrowed(R), borrowed(A), borrowed(Mg)
    Act, Ridx, F, Finv, Rad = borrowed(Act), borrowed(Ridx), borrowed(F), borrowed(Finv), borrowed(Rad)
    vec, Mr, Lr, invr, ridx = work
    vec, Mr, Lr, invr, ridx = borrowed(vec), borrowed(Mr), borrowed(Lr), borrowed(invr), borrowed(ridx)
    y, p1, p, b, u, s, lam, a = vec[0], vec[1], vec[2], vec[3], vec[4], vec[5], vec[6], vec[7]
    knorm = vec[8]
    if tolerant:
        for r in range(k):
            acc = 0.0
            for c in range(k):
                acc += K[r, c] * K[r, c]
            knorm[r] = np.sqrt(acc)
    M = members.shape[0]
    for j in range(M):
        for r in range(k):
            Y[j, r] = Yq[members[j], rows[r]]
    matmul_into(Y[:, :k], S[:k, :k], P1[:, :k], False)  # rows S y (S symmetric)
    for j in range(M):  # (rows copied to work vectors: each view costs reference counts)
        for r in range(k):
            y[r] = Y[j, r]
            p1[r] = P1[j, r]
        st, points, nr = _jumps(S, k, y, p1, max_jumps, p, Act, j, ridx, Mr, Lr, invr, lam, starts, warm[j])
        jumped[j, 0] = st
        jumped[j, 1] = points
        jumped[j, 2] = nr
        for r in range(k):
            P[j, r] = p[r]
        for e in range(nr):  # the samples outside the last set, for a refinement
            Ridx[j, e] = ridx[e]
        if nr >= _LAPACK_FROM:  # and its Schur factor (smaller ones are factored again)
            for e in range(nr):
                Finv[j, e] = invr[e]
                for f in range(e + 1):
                    F[j, e * (e + 1) // 2 + f] = Lr[e, f]
    matmul_into(P[:, :k], K[:k, :k], KP[:, :k], False)  # rows K p (K symmetric)
    gamma = k * _EPS / (1.0 - k * _EPS)
    refine = False
    for j in range(M):
        if jumped[j, 0] != CONVERGED:
            continue
        accepted, big, res, err, pn = _residual(k, C, Y, P, KP, Mg, Act, A, j, y, p, b, knorm, tolerant)
        Rad[j] = 0.0
        if accepted:
            if not _same_set(k, Mg, Act, j):
                jumped[j, 0] = _REDO
            continue
        if tolerant:
            radius = 1.01 * 2.0 * C * (res + err)
            proof = _certified(k, y, p, Mg, Act, j, knorm, radius, gamma * pn)
            if proof >= 0:
                Rad[j] = radius
                if proof == 1:
                    jumped[j, 0] = _REDO
                continue
        for r in range(k):  # (the other problems' rows of S r, from stale R rows, are not used)
            R[j, r] = b[r]
        jumped[j, 0] = _REFINE
        refine = True
    if not refine:
        return
    matmul_into(R[:, :k], S[:k, :k], KP[:, :k], False)  # rows S r, into KP
    for j in range(M):
        if jumped[j, 0] != _REFINE:
            continue
        nr = jumped[j, 2]
        big = 0.0
        for r in range(k):
            p[r] = P[j, r]
            u[r] = KP[j, r]
            big = max(big, abs(p[r]))
        for e in range(nr):
            ridx[e] = Ridx[j, e]
        kept = nr >= _LAPACK_FROM
        if kept:
            for e in range(nr):
                invr[e] = Finv[j, e]
                for f in range(e + 1):
                    Lr[e, f] = F[j, e * (e + 1) // 2 + f]
        if _refined(S, k, u, p, big, s, a, ridx, nr, Mr, Lr, invr, lam, not kept):
            for r in range(k):
                A[j, r] = a[r]
        else:
            jumped[j, 0] = _REDO
    matmul_into(A[:, :k], K[:k, :k], KP[:, :k], False)  # rows K a of the refined points
    for j in range(M):
        if jumped[j, 0] == _REFINE:
            for r in range(k):
                Mg[j, r] = Y[j, r] * KP[j, r]
            jumped[j, 0] = CONVERGED if _same_set(k, Mg, Act, j) else _REDO
    return


@kernel()
def _lockstep_space(M, k_max):
    """Work arrays of :func:`_set_by_inverse` for ``M`` problems per training set."""
    return (
        np.empty((M, k_max)), np.empty((M, k_max)), np.empty((M, k_max)), np.empty((M, k_max)),
        np.zeros((M, k_max)), np.empty((M, k_max)), np.empty((M, k_max)),
        np.empty((M, k_max), dtype=np.bool_), np.empty((M, k_max), dtype=np.int64),
        np.empty((M, k_max * (k_max + 1) // 2)), np.empty((M, k_max)), np.zeros(M),
    )  # fmt: skip


@kernel(fastmath=_FASTMATH)
def _training_runs(rows, k, start, length):
    """The runs of consecutive samples in ``rows[:k]``: their first samples into ``start``
    and lengths into ``length``; returns how many."""
    n = 0
    for r in range(k):
        if n > 0 and rows[r] == start[n - 1] + length[n - 1]:
            length[n - 1] += 1
        else:
            start[n] = rows[r]
            length[n] = 1
            n += 1
    return n


@kernel(inline="always")
def _by_runs(n_runs, k):
    """Whether a training set of ``k`` samples in ``n_runs`` runs of consecutive samples is
    read run by run (slices that vectorise) rather than sample by sample (many short runs:
    shuffled folds)."""
    return 8 * n_runs <= k


@kernel(fastmath=_FASTMATH)
def _training_block(Gb, rows, k, K, start, length, n_runs):
    """``K`` the block of the Gram matrix ``Gb`` on the samples ``rows[:k]``, whose runs of
    consecutive samples are ``start``, ``length`` (:func:`_training_runs`); returns its
    largest diagonal entry. A fold's training samples are a few runs (``KFold``,
    ``LeaveOneGroupOut`` in plan order): each row is copied run by run, by slices, which
    vectorise (a ``162 x 162`` block of a ``216 x 216`` matrix in two runs: 6.4 us against
    21.3 for the gather by index, one thread); many short runs (shuffled folds) are gathered
    entry by entry."""
    top = 0.0
    if _by_runs(n_runs, k):
        for r in range(k):
            src = Gb[rows[r]]
            dst = K[r]
            pos = 0
            for j in range(n_runs):
                n = length[j]
                d = dst[pos : pos + n]
                g = src[start[j] : start[j] + n]
                for c in range(n):
                    d[c] = g[c]
                pos += n
            top = max(top, K[r, r])
        return top
    for r in range(k):
        for c in range(k):
            K[r, c] = Gb[rows[r], rows[c]]
        top = max(top, K[r, r])
    return top


@kernel(fastmath=_FASTMATH)
def _decisions_outside(Gb, rows, k, a, others, start, length, n_runs, out):
    """``out[o] = Gb[o, rows[:k]] . a`` for the samples ``o`` in ``others`` (outside the
    training set ``rows[:k]``, whose runs of consecutive samples are ``start``, ``length``:
    :func:`_training_runs`): run by run, contiguous products that vectorise, or sample by
    sample for many short runs (as :func:`_training_block`)."""
    runs = _by_runs(n_runs, k)
    for e in range(others.shape[0]):
        o = others[e]
        src = Gb[o]
        acc = 0.0
        if runs:
            pos = 0
            for j in range(n_runs):
                n = length[j]
                g = src[start[j] : start[j] + n]
                w = a[pos : pos + n]
                for c in range(n):
                    acc += g[c] * w[c]
                pos += n
        else:
            for r in range(k):
                acc += src[rows[r]] * a[r]
        out[o] = acc


@kernel(nogil=True, fastmath=_FASTMATH)
def gram_newton_spheres(
    G, set_rows, set_size, members, Yq, C, max_iter, out, decisions, inverse_members, guess,
    has_guess, start_jumps, path, path_guess, path_has, follows, bounds, classes, unsettled,
):  # fmt: skip
    """Solve every problem of a batch of spheres from their Gram matrices.

    Parameters
    ----------
    G : ndarray (b, n, n)
        Each sphere's Gram matrix of all samples, ``Xz Xz^T`` with the constant feature.
    set_rows : ndarray of int (U, n_max)
        The training samples of each training set (the first ``set_size[u]``).
    set_size : ndarray of int (U,)
    members : ndarray of int (U, M)
        The problems of each training set.
    Yq : ndarray (Q, n)
        +-1 targets of each problem, on every sample.
    C : float
    max_iter : int
    out : ndarray (b, Q, n)
        Filled with each problem's coefficients on the samples (0 outside its training
        set: its weights are ``alpha @ Xz``), or with ``decisions``, its decision values
        on every sample (``G[j, T] alpha_T`` outside the training set ``T``, ``y_i m_i``
        from the margins on it).
    decisions : bool
    inverse_members : int
        Training sets with at least that many problems are solved from the inverse first.
    guess : ndarray of bool (Q, n_max)
        Warm starts, read and written: each problem's active set at the optimum of the last
        sphere that solved it (its training samples in ``set_rows`` order), where
        ``has_guess``. Neighbouring spheres share most of their voxels, so the active set
        of a problem's optimum often carries over. A warm start changes only where the
        iterations start: the optimum is unique, and reached as from a cold one.
    has_guess : ndarray of bool (Q,)
        Read and written (the caller keeps it between batches of neighbouring spheres);
        empty: cold starts throughout.
    start_jumps : ndarray (5,)
        Read and written, kept by the caller with ``has_guess``: the inverse path's jumps
        from the neighbour's set and the problems that took them, the same from ``S y``'s
        set (decayed sums, see :data:`EXPLORE_EVERY`), and the problems that could start
        from their neighbour's set; zeros at first.
    path : ndarray of bool (b,)
        Whether, on each sphere, a problem alone on its training set (the factor path)
        first solves the smaller ``C`` of :func:`c_path`, each from the optimal active set
        of the one before, and starts ``C`` from the last one's (where the whole path
        converged).
    path_guess : ndarray of bool (Q, n_max)
        With ``path``, read and written as ``guess``: each problem's active set at the
        optimum of its path's first ``C`` on the last sphere that solved it, where
        ``path_has``; the path's first ``C`` starts there, else from ``guess``'s set, else
        from every sample.
    path_has : ndarray of bool (Q,)
        Read and written with ``path_guess`` (kept by the caller between batches).
    follows : ndarray of bool (b,)
        Whether each sphere is a neighbour of the one before it (shares at least half its
        voxels). The inverse path starts from the sphere before only then. A problem alone
        on its training set (the factor path) starts from its last optimum's set whatever
        sphere gave it: from a distant sphere it takes more Newton points than from a cold
        start, but no factor of every training sample (stop 76, W1 12 mm, where the
        engine's blocks of equal-size spheres leave 35% of the spheres without their
        neighbour before them: 11.24 -> 11.99 points per problem, 0.966 of the kernel's
        time on the whole brain; 0.973 on 2,000 neighbouring spheres' captured calls).
    bounds : ndarray (b, Q)
        Written, when not empty (with ``decisions``): a bound on the error of each problem's
        decisions on the samples outside its training set, against the exact optimum's. 0
        for the problems solved to rounding; the others' points were accepted without their
        refinement (:func:`_set_by_inverse` with ``tolerant``), their bound
        ``max_o |G[o, T]|_2 (radius + gamma_k |alpha|_2)`` (the point's radius, and the
        rounding of the decisions' sums). Empty: every problem solved to rounding.
    classes : int
        With ``bounds``: the problems of a training set's ``members`` come in groups of
        ``classes`` (one label vector's one-vs-rest problems; 1 for two classes).
    unsettled : ndarray of bool (b,)
        Written with ``bounds``: True for the spheres where the bounds do not prove every
        prediction on the samples outside a training set (with one problem per label
        vector, a decision within its bound of 0; with more, the largest lower end
        ``d_c - b_c`` not above the second largest upper end ``d_c + b_c``), or where a
        bounded label vector has a problem left unsolved here (its decisions not yet known).

    Returns
    -------
    status : ndarray of int8 (b, Q)
        :data:`CONVERGED`, :data:`UNCONVERGED` or :data:`NEEDS_SVD`.
    iterations : ndarray of int32 (b, Q)
    """
    B, n, _ = G.shape
    U, M = members.shape
    k_max = set_rows.shape[1]
    status = np.zeros((B, Yq.shape[0]), dtype=np.int8)
    iterations = np.zeros((B, Yq.shape[0]), dtype=np.int32)
    K = np.empty((k_max, k_max))
    L = np.empty((k_max, k_max + 1))  # (a column for the right-hand side)
    U0 = np.empty((k_max, k_max))
    vec = np.empty((9, k_max))
    inv = np.empty(k_max)
    inv0 = np.empty(k_max)
    act = np.empty(k_max, dtype=np.bool_)
    pact = np.empty(k_max, dtype=np.bool_)
    idx = np.empty(k_max, dtype=np.int64)
    S = np.empty((k_max, k_max))
    gj_row = np.empty(k_max)
    by_inverse = M >= inverse_members
    # the inverse path's problems of a training set, in lockstep (_set_by_inverse)
    lockstep = _lockstep_space(M, k_max)
    jumped = np.empty((M, 3), dtype=np.int64)  # status, points, samples outside
    starts = np.empty((M, k_max), dtype=np.bool_)
    warm = np.zeros(M, dtype=np.bool_)
    could = np.zeros(M, dtype=np.bool_)
    lockstep_work = (
        np.empty((9, k_max)), np.empty((k_max, k_max)), np.empty((k_max, k_max)), np.empty(k_max),
        np.empty(k_max, dtype=np.int64),
    )  # fmt: skip
    A, Mg, Act = lockstep[5], lockstep[6], lockstep[7]
    others = np.empty((U, n), dtype=np.int64)  # the samples outside each training set
    n_others = np.zeros(U, dtype=np.int64)
    run_start = np.empty((U, k_max), dtype=np.int64)  # each training set's runs of samples
    run_length = np.empty((U, k_max), dtype=np.int64)
    n_runs = np.zeros(U, dtype=np.int64)
    for u in range(U):
        n_runs[u] = _training_runs(set_rows[u], set_size[u], run_start[u], run_length[u])
    inside = np.empty(n, dtype=np.bool_)
    for u in range(U):
        inside[:] = False
        for r in range(set_size[u]):
            inside[set_rows[u, r]] = True
        for j in range(n):
            if not inside[j]:
                others[u, n_others[u]] = j
                n_others[u] += 1
    half = 0.5 / C
    warm_starts = has_guess.shape[0] > 0
    tolerant = bounds.shape[0] > 0
    rad = lockstep[11]
    gamma = k_max * _EPS / (1.0 - k_max * _EPS)
    # work vectors named once, not sliced per problem (each view costs reference counting)
    a, w1, w2, w3, m = vec[0], vec[1], vec[2], vec[3], vec[4]
    w5, w6, w7, y = vec[5], vec[6], vec[7], vec[8]
    cs = np.empty(C_PATH_MAX)  # a training set's path in C
    path_start = np.empty(k_max, dtype=np.bool_)
    for b in range(B):
        Gb = G[b]
        for u in range(U):
            k = set_size[u]
            rows = set_rows[u]
            top = _training_block(Gb, rows, k, K, run_start[u], run_length[u], n_runs[u])
            ok = _EPS * (1.0 + 2.0 * C * top) <= _NORMAL_EQUATIONS_TOL
            # the inverse of every sample's matrix, for the inverse path: below
            # _GAUSS_JORDAN_BELOW samples straight from the matrix
            inverse = ok and by_inverse and k < _GAUSS_JORDAN_BELOW
            inverse = inverse and _inverse_every_sample(K, k, half, S, gj_row)
            # the factor of every sample's matrix: for cold starts on the factor path (a
            # warm start's problem factors it only if it falls back to a cold start; the
            # problems that the inverse path leaves to it, when one needs it), and for
            # the inverse from LAPACK from _GAUSS_JORDAN_BELOW samples
            have_U0 = False
            if ok and not inverse:
                need = by_inverse
                for j in range(M):
                    q = members[u, j]
                    need = need or not (warm_starts and has_guess[q])
                if need:
                    ok = _factor_every_sample(K, k, half, U0, inv0)
                    have_U0 = True
                if ok and by_inverse:
                    inverse = _inverse_from_factor(U0, k, S)
            # the path in C, for the problems alone on their training set (the factor path)
            n_path = c_path(K, k, C, cs) if path[b] and ok and not inverse else 0
            if inverse:  # every problem of the set at once
                # from the neighbour's set where it has taken fewer jumps than S y's (or
                # nothing is known yet), every EXPLORE_EVERY-th problem the other way
                warm_first = start_jumps[0] * start_jumps[3] <= start_jumps[2] * start_jumps[1]
                for j in range(M):
                    q = members[u, j]
                    could[j] = warm_starts and follows[b] and has_guess[q]
                    warm[j] = False
                    if could[j]:
                        warm[j] = warm_first != (int(start_jumps[4]) % EXPLORE_EVERY == EXPLORE_EVERY - 1)
                        start_jumps[4] += 1.0
                    if warm[j]:
                        for r in range(k):
                            starts[j, r] = guess[q, r]
                _set_by_inverse(
                    K, k, C, S, members[u], Yq, rows, starts, warm, MAX_JUMPS, lockstep, jumped, lockstep_work,
                    tolerant,
                )  # fmt: skip
                for i in range(4):
                    start_jumps[i] *= _START_MEMORY
                for j in range(M):  # jumps: a cold start's first point (S y) not counted
                    if could[j]:
                        c = 0 if warm[j] else 2
                        start_jumps[c] += jumped[j, 1] - (0 if warm[j] else 1)
                        start_jumps[c + 1] += 1.0
            gmax = 0.0  # the largest 2-norm of G[o, T] over the samples o outside T
            if tolerant:
                for e in range(n_others[u]):
                    o = others[u, e]
                    acc = 0.0
                    for r in range(k):
                        acc += Gb[o, rows[r]] * Gb[o, rows[r]]
                    gmax = max(gmax, np.sqrt(acc))
            for j in range(M):
                q = members[u, j]
                if tolerant:
                    bounds[b, q] = 0.0
                if not ok:
                    for i in range(n):
                        out[b, q, i] = 0.0
                    status[b, q] = NEEDS_SVD
                    if warm_starts:  # no optimum here: the next sphere's guess is not this one's
                        has_guess[q] = False
                    continue
                for r in range(k):
                    y[r] = Yq[q, rows[r]]
                st = _REDO
                if inverse and jumped[j, 0] == CONVERGED:
                    st = CONVERGED
                    its = jumped[j, 1]
                    an = 0.0
                    for r in range(k):
                        a[r] = A[j, r]
                        m[r] = Mg[j, r]
                        act[r] = Act[j, r]
                        an += a[r] * a[r]
                    if tolerant and rad[j] > 0.0:
                        bounds[b, q] = gmax * (rad[j] + gamma * np.sqrt(an))
                if st == _REDO:  # (the start's view made here only: a view costs reference counts)
                    near = follows[b] or not by_inverse  # (alone on its set: from any sphere)
                    start = guess[q, :k] if warm_starts and near and has_guess[q] else guess[q, :0]
                    walked = 0  # Newton points on the path in C
                    if n_path > 0:  # (0 on the inverse path)
                        pstart = path_start[:k]  # (a view made here only)
                        for r in range(k):  # its first C's set on the last sphere, else C's, else all
                            if path_has[q]:
                                pstart[r] = path_guess[q, r]
                            else:
                                pstart[r] = start[r] if start.shape[0] > 0 else True
                        cap = min(max_iter, C_PATH_POINTS)
                        for c in range(n_path):
                            pst, pits = _solve_dual(
                                K, k, y, cs[c], U0, inv0, cap, a, w1, w2, w3, m, w5, act, pact, idx, L, inv,
                                w6, w7, pstart, FULL_JUMPS, False,
                            )  # fmt: skip
                            walked += pits
                            if c == 0:
                                path_has[q] = pst == CONVERGED
                            if pst != CONVERGED:
                                break
                            for r in range(k):
                                pstart[r] = act[r]
                                if c == 0:
                                    path_guess[q, r] = act[r]
                            if c == n_path - 1:
                                start = pstart
                        have_U0 = False  # (a path's cold fallback factors its own C's matrix there)
                    if start.shape[0] == 0 and not have_U0:
                        have_U0 = _factor_every_sample(K, k, half, U0, inv0)
                    st, its = _solve_dual(
                        K, k, y, C, U0, inv0, max_iter, a, w1, w2, w3, m, w5, act, pact, idx, L,
                        inv, w6, w7, start, 0 if inverse else FULL_JUMPS, have_U0,
                    )  # fmt: skip
                    its += walked
                status[b, q] = st
                iterations[b, q] = its
                if warm_starts:
                    has_guess[q] = st == CONVERGED
                if warm_starts and st == CONVERGED:
                    for r in range(k):
                        guess[q, r] = act[r]
                if not decisions:
                    for i in range(n):
                        out[b, q, i] = 0.0
                    for r in range(k):
                        out[b, q, rows[r]] = a[r]
                    continue
                for r in range(k):  # (with the samples outside below: every sample written)
                    out[b, q, rows[r]] = y[r] * m[r]
                _decisions_outside(
                    Gb,
                    rows,
                    k,
                    a,
                    others[u, : n_others[u]],
                    run_start[u],
                    run_length[u],
                    n_runs[u],
                    out[b, q],
                )
            if tolerant and decisions:
                _check_predictions(
                    out[b], bounds[b], status[b], members[u], classes, others[u, : n_others[u]], unsettled, b
                )
    return status, iterations


@kernel(fastmath=_FASTMATH)
def _check_predictions(out, bound, status, members, classes, others, unsettled, b):
    """Flags sphere ``b`` in ``unsettled`` when the bounds of one of its label vectors
    (groups of ``classes`` problems in ``members``) do not prove its predictions on the
    samples ``others`` (see :func:`gram_newton_spheres`)."""
    for g in range(members.shape[0] // classes):
        bounded = False
        solved = True
        for c in range(classes):
            q = members[g * classes + c]
            bounded = bounded or bound[q] > 0.0
            solved = solved and status[q] == CONVERGED
        if not bounded:
            continue
        if not solved:
            unsettled[b] = True
            return
        for o in others:
            if classes == 1:
                q = members[g]
                if abs(out[q, o]) <= bound[q]:
                    unsettled[b] = True
                    return
                continue
            low = -np.inf
            high1 = -np.inf
            high2 = -np.inf
            for c in range(classes):
                q = members[g * classes + c]
                low = max(low, out[q, o] - bound[q])
                high = out[q, o] + bound[q]
                high2 = max(high2, min(high, high1))  # (the two largest, without branches)
                high1 = max(high1, high)
            if not low > high2:
                unsettled[b] = True
                return


@kernel()
def follows_previous(vox, previous):
    """Whether each sphere (row of ``vox``, voxel indices in increasing order, padded with
    -1 at its end to the row's length: :func:`voxels_of`) shares at least half its voxels
    with the one before it (``previous`` before the first; empty: none)."""
    B = vox.shape[0]
    out = np.zeros(B, dtype=np.bool_)
    for b in range(B):
        cur = voxels_of(vox[b])
        if b > 0:
            out[b] = 2 * _shared(cur, voxels_of(vox[b - 1])) >= cur.shape[0]
        elif previous.shape[0] > 0:
            out[b] = 2 * _shared(cur, voxels_of(previous)) >= cur.shape[0]
    return out


@kernel(inline="always")
def voxels_of(row):
    """A sphere's voxels: the entries of its row before the first negative one (the rows of
    a block of spheres of several sizes are padded with -1 at their end)."""
    k = row.shape[0]
    while k > 0 and row[k - 1] < 0:
        k -= 1
    return row[:k]


@kernel()
def _increasing(row):
    """Whether the entries of ``row`` are strictly increasing."""
    for j in range(1, row.shape[0]):
        if row[j - 1] >= row[j]:
            return False
    return True


@kernel()
def _shared(cur, prev):
    """How many entries two strictly increasing rows share."""
    k, kp = cur.shape[0], prev.shape[0]
    i = 0
    j = 0
    shared = 0
    while i < k and j < kp:
        if cur[i] == prev[j]:
            shared += 1
            i += 1
            j += 1
        elif cur[i] < prev[j]:
            i += 1
        else:
            j += 1
    return shared


@kernel(fastmath=_FASTMATH)
def _changed_rows(Xv, cur, prev, V, W):
    """The data rows of the voxels in ``cur`` and not in ``prev`` (strictly increasing rows
    of voxel indices), and of those in ``prev`` and not in ``cur``, into the rows of ``V``;
    the same rows into ``W``, the second kind negated. Returns how many rows."""
    n = Xv.shape[1]
    k, kp = cur.shape[0], prev.shape[0]
    i = 0
    j = 0
    m = 0
    while i < k or j < kp:
        if i < k and j < kp and cur[i] == prev[j]:
            i += 1
            j += 1
            continue
        added = j >= kp or (i < k and cur[i] < prev[j])
        src = Xv[cur[i]] if added else Xv[prev[j]]
        sign = 1.0 if added else -1.0
        dst, neg = V[m], W[m]
        for c in range(n):
            dst[c] = src[c]
            neg[c] = sign * src[c]
        m += 1
        if added:
            i += 1
        else:
            j += 1
    return m


@kernel(nogil=True, fastmath=_FASTMATH)
def sample_grams(Xv, vox, shift, G, first=0, run=None, refresh=GRAM_REFRESH):
    """Each sphere's Gram matrix of its samples, ``G[b] = V^T V + shift`` with ``V =
    Xv[vox[b]]`` (``n x n``, both triangles), from the voxel-major data ``Xv`` (n_voxels,
    n), for the spheres (rows) of ``vox`` from ``first`` on: the rows before are spheres
    whose matrices ``G`` already holds (the one before ``first`` may be updated, see below).
    ``run`` (an int64 array of one entry, read and written; None: 0) counts the updates
    since the last matrix computed afresh, carried from call to call, so that calls of any
    size give the same matrices. A row may be padded with -1 at its end
    (:func:`voxels_of`): a block may hold spheres of several sizes.

    A sphere whose voxel indices are in increasing order, as are those of the sphere before
    it, and that shares at least half its voxels with it, gets that sphere's matrix plus
    the products of the voxels it adds minus those of the voxels it loses (neighbouring
    spheres of W1 at 12 mm: about 74 of 155 voxels change); every ``refresh``-th sphere of
    such a run is computed afresh, so that the updates' rounding does not build up (within
    a few units of rounding of the matrix's largest entry). The rows of the voxels (all of
    them, or those that change) are copied into one block ``V``, the lost ones negated in
    ``W``, and the products of their columns formed in outer-product tiles over the rows
    (:func:`._simd.column_products_upper`: the upper triangle), then mirrored.

    One thread, W1 at 12 mm (1,200 neighbouring spheres of 155 voxels, 216 samples), in
    calls of six spheres as :meth:`.BatchedLinearSVC._solve_gram` makes them: 160 against
    294-300 us per sphere with every matrix afresh (``refresh=1``), in one process, four
    alternations (a slow spell of the machine: another run gave 115-139 against 167-206 us
    without the count carried between calls).
    """
    n = Xv.shape[1]
    V = np.empty((2 * vox.shape[1], n))
    W = np.empty((2 * vox.shape[1], n))
    updates = 0 if run is None else run[0]
    previous_increasing = first > 0 and _increasing(voxels_of(vox[first - 1]))
    for b in range(first, vox.shape[0]):
        Gb = G[b]
        cur = voxels_of(vox[b])
        prev = voxels_of(vox[b - 1]) if b > 0 else cur[:0]
        k = cur.shape[0]
        increasing = _increasing(cur)
        update = b > 0 and updates + 1 < refresh and increasing and previous_increasing
        update = update and 2 * _shared(cur, prev) >= k
        previous_increasing = increasing
        if update:
            updates += 1
            m = _changed_rows(Xv, cur, prev, V, W)
            Gp = G[b - 1]
            for r in range(n):  # the entries the tiles below read: the upper triangle and
                r0 = r - r % DIAGONAL_BLOCK  # the rest of each diagonal block
                dst, src = Gb[r, r0:], Gp[r, r0:]
                for c in range(n - r0):
                    dst[c] = src[c]
            column_products_upper(W, V, m, n, Gb, 0.0, 1.0, True, False)
        else:
            updates = 0
            for j in range(k):
                src, dst = Xv[cur[j]], V[j]
                for i in range(n):
                    dst[i] = src[i]
            column_gram_upper(V, k, n, Gb, shift, 1.0, False, False)
        mirror_below_blocks(Gb, n)  # the lower triangle below the tiles' entries
    if run is not None:
        run[0] = updates

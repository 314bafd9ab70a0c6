"""Compiled finite Newton iterations for batches of L2-regularised squared-hinge problems.

The same method as :func:`fastsearchlight.estimators._svm_newton.newton` (Newton points on
the active set, exact line search, stop when the active set no longer changes), problem by
problem in compiled code, where each iteration costs what changed instead of a new system:

- the matrix ``H = I + 2C X_A^T X_A`` and its Cholesky factor are kept from one iteration to
  the next; a sample entering or leaving the active set ``A`` is a rank-one update or
  downdate of both (``O(d^2)``), and the factor is rebuilt from the rows only when more
  samples change than that is worth;
- Newton points from an updated factor guide the search; the method stops only at a point
  computed from a fresh factor of ``H`` or refined once against ``H`` itself (one
  residual), so the result is exact to rounding whatever rounding the updates of the
  factor have gathered.

One step differs from the numpy method: when the exact line search of the first step
(from ``w = 0``) would go past the Newton point to where fewer than ``d`` samples stay active,
the step stops at the Newton point. With ``d ~ n`` on raw-scale data, that point nearly
interpolates the targets, and going past it leaves a handful of active samples that then grow
back a few per step (45 steps per problem at W1 12 mm, 28 with this rule); the optimum is the
same, as the method stops only where the optimality conditions hold.

The factorisations go to the blocked Cholesky of :mod:`._triangular` (dot products of four
rows by four: 0.62-0.76 of the time of LAPACK's ``potrf``, which it replaced in stop 51), the
products of many rows (a new active set's matrix) to BLAS (``syrk``, called in place:
:mod:`._lapack`). The solves with the factor are compiled loops along its
rows (:mod:`._triangular`), which there run twice as fast as LAPACK's ``potrs``; so do the
products of a sphere's problems with its samples (margins, gradients, right-hand sides,
decisions) by blocks of dot products (:func:`._rows.row_products`) against BLAS's
``gemm``. The other loops (rank-one changes of the factor, the upper triangles of the
matrices) run over row slices that start at the diagonal, so that they vectorise (see
:func:`_rank_one`).

With many training sets that each leave out a small disjoint part (leave-one-run-out) and
large spheres, the problems start instead from the sphere's matrix over every sample, factored
once per sphere (:func:`_majorised_starts`): it bounds the curvature of every training set's
objective, so its steps descend without a factorisation of the training set's own; the
iterations above then start from the active set they reach, with one factorisation. On noisy
trial betas (W2), where most samples stay active, this saves about one factorisation per
problem of the two.

Near ``d ~ n / 2`` on raw-scale data (large spheres, nearly separable training sets) the
method takes tens of short steps in which one or two samples change: there these updates
replace a full ``d x d`` product and factorisation per step.

Compiled with numba (``cache=True``): the first call after installation compiles and writes
the cache, later processes load it. When the package folder is read-only, numba keeps its
cache in the user's cache folder (``NUMBA_CACHE_DIR`` when set).
"""

from __future__ import annotations

import numpy as np

from ._compiled import kernel
from ._rows import four_dots, gather_samples, next_four, row_products
from ._simd import column_gram_upper
from ._triangular import cholesky_solve_upper, cholesky_solve_upper_rows, cholesky_upper_into

__all__ = ["CONVERGED", "NEEDS_SVD", "UNCONVERGED", "newton_block", "newton_problems"]

#: status of a problem after :func:`newton_problems`
CONVERGED, UNCONVERGED, NEEDS_SVD = 0, 1, 2

#: as ``_svm_newton._NORMAL_EQUATIONS_TOL``: beyond it, ``H`` has lost its identity to rounding
_NORMAL_EQUATIONS_TOL = 1e-6
_EPS = np.finfo(np.float64).eps
#: sums may be reordered (vectorised): the results stay exact to rounding; no assumptions
#: on NaN or infinities
_FASTMATH = {"reassoc", "contract"}
#: :func:`_majorised_starts`: the share of the sphere's samples that must stay active after
#: its first step (5th-95th percentiles: 78-86% on W2's trial betas, 48-60% on W1's raw
#: volumes at 10 mm), and its most steps (captured kernel calls of 1,500 W2 spheres, against
#: each training set's own factor: 1 step -9.5%, 2 steps -12%, 3 steps -12%, unlimited +12%)
_MAJORISED_MIN_ACTIVE = 0.7
_MAJORISED_MAX_STEPS = 2
#: a block of spheres stops trying the majorised starts once it has given up more than half
#: of at least this many
_MAJORISED_TRIAL = 16


@kernel(fastmath=_FASTMATH)
def _cholesky(H, R):
    """Upper factor ``R`` (``H = R^T R``, row-major) from the upper triangle of ``H``;
    False if ``H`` is not positive definite (:func:`._triangular.cholesky_upper_into`)."""
    return cholesky_upper_into(H, R)


@kernel(fastmath=_FASTMATH)
def _solve(R, b, out):
    """``out = (R^T R)^-1 b`` (compiled row loops, :mod:`._triangular`: two to 2.5 times
    faster than LAPACK's ``potrs`` from ``d ~ 76``)."""
    cholesky_solve_upper(R, b, out)


@kernel(fastmath=_FASTMATH, inline="always")
def _rotation(rkk, wk, sign):
    """The coefficients with which :func:`_rank_one` changes a row of the factor, from its
    diagonal entry ``rkk`` and the change's entry ``wk``: ``(r, c, s, 1 / c, sign s / c)``,
    ``r`` the new diagonal entry, or all 0 when no positive pivot is left."""
    r2 = rkk * rkk + sign * wk * wk
    if r2 <= 1e-12 * rkk * rkk:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    r = np.sqrt(r2)
    c = r / rkk
    s = wk / rkk
    inv_c = 1.0 / c
    return r, c, s, inv_c, sign * s * inv_c


@kernel(fastmath=_FASTMATH)
def _rank_one(R, x, sign, work):
    """``R^T R + sign * x x^T`` into ``R`` (update or downdate); False if it fails.

    The inner loop multiplies by ``1 / c`` instead of dividing by ``c``: 1.6-2.5 times
    faster from ``d = 42`` to ``d = 124``, as a division per element costs several
    multiplications."""
    d = R.shape[0]
    for k in range(d):
        work[k] = x[k]
    for k in range(d):
        r, c, s, inv_c, scaled = _rotation(R[k, k], work[k], sign)
        if r == 0.0:
            return False
        R[k, k] = r
        # slices from k + 1, looped from 0: numba then knows no index is negative, and the
        # loop vectorises (indexing from k + 1 keeps the wraparound check of negative
        # indices, which stops it: 1.5 times slower at d = 76, twice at d = 124)
        row = R[k, k + 1 :]
        rest = work[k + 1 :]
        for i in range(row.shape[0]):
            v = row[i] * inv_c + scaled * rest[i]
            row[i] = v
            rest[i] = c * rest[i] - s * v
    return True


@kernel(fastmath=_FASTMATH)
def _rank_two(R, x, sign, work, x2, sign2, work2):
    """:func:`_rank_one` with ``x`` then with ``x2``, in one pass over the rows of ``R``:
    each row takes the first change, then the second (the same operations in the same order
    as two calls, so the same result bit for bit), and is loaded and stored once instead of
    twice. False if either fails."""
    d = R.shape[0]
    for k in range(d):
        work[k] = x[k]
        work2[k] = x2[k]
    for k in range(d):
        r, c, s, inv_c, scaled = _rotation(R[k, k], work[k], sign)
        if r == 0.0:
            return False
        q, c2, s2, inv_c2, scaled2 = _rotation(r, work2[k], sign2)
        if q == 0.0:
            return False
        R[k, k] = q
        row = R[k, k + 1 :]  # (slices looped from 0: see _rank_one)
        rest = work[k + 1 :]
        rest2 = work2[k + 1 :]
        for i in range(row.shape[0]):
            v = row[i] * inv_c + scaled * rest[i]
            rest[i] = c * rest[i] - s * v
            v2 = v * inv_c2 + scaled2 * rest2[i]
            rest2[i] = c2 * rest2[i] - s2 * v2
            row[i] = v2
    return True


@kernel(fastmath=_FASTMATH)
def _margins(X, rows, Y, v, out):
    """``out[i] = Y[i] * X[rows[i]] . v``, four rows at a time (each load of ``v`` serves
    four products)."""
    d = X.shape[1]
    n = rows.shape[0]
    i = 0
    while i + 4 <= n:
        a0, a1, a2, a3 = four_dots(X, rows[i], rows[i + 1], rows[i + 2], rows[i + 3], v, d)
        out[i] = Y[i] * a0
        out[i + 1] = Y[i + 1] * a1
        out[i + 2] = Y[i + 2] * a2
        out[i + 3] = Y[i + 3] * a3
        i += 4
    while i < n:
        r = rows[i]
        acc = 0.0
        for k in range(d):
            acc += X[r, k] * v[k]
        out[i] = Y[i] * acc
        i += 1


@kernel(fastmath=_FASTMATH)
def _move_margins(m, t, delta, W, act):
    """``m += t * delta``; returns how many samples (of weight ``W > 0``) then change their
    side of the margin against ``act``, and how many are active (``m < 1``)."""
    n_changed = 0
    n_active = 0
    for i in range(m.shape[0]):
        m[i] += t * delta[i]
        now = W[i] > 0.0 and m[i] < 1.0
        n_changed += now != act[i]
        n_active += now
    return n_changed, n_active


@kernel(fastmath=_FASTMATH)
def _add_gram(X, rows, Y, chosen, alpha, H, g):
    """``H += alpha X_S^T X_S`` (upper triangle, in place, in outer-product tiles) and
    ``g = X_S^T y_S``, for the rows ``rows[chosen]`` of ``X``."""
    d = X.shape[1]
    k = 0
    for i in range(rows.shape[0]):
        k += chosen[i]
    XS = np.empty((k, d))
    g[:] = 0.0
    j = 0
    for i in range(rows.shape[0]):
        if chosen[i]:
            x = X[rows[i]]
            for c in range(d):
                XS[j, c] = x[c]
                g[c] += Y[i] * x[c]
            j += 1
    column_gram_upper(XS, k, d, H, 0.0, alpha, True)


@kernel(fastmath=_FASTMATH)
def _build(X, rows, Y, act, C, H, b):
    """``H = I + 2C X_A^T X_A`` (upper triangle) and ``b = 2C X_A^T y_A``, for the rows
    ``rows`` of ``X`` (the problem's samples)."""
    d = X.shape[1]
    for r in range(d):  # (row slices from the diagonal: vectorised, see _rank_one)
        h = H[r, r:]
        for c in range(h.shape[0]):
            h[c] = 0.0
        H[r, r] = 1.0
    _add_gram(X, rows, Y, act, 2.0 * C, H, b)
    for r in range(d):
        b[r] *= 2.0 * C


@kernel(fastmath=_FASTMATH)
def _refined_newton_point(X, rows, act, C, R, b, p, r, z):
    """``p = H^-1 b`` from the factor ``R``, refined once against ``H = I + 2C X_A^T X_A``
    itself, applied from the active rows (``r = b - p - 2C X_A^T X_A p``): exact to
    rounding whatever rounding the rank-one changes of the factor have gathered."""
    d = R.shape[0]
    _solve(R, b, p)
    for k in range(d):
        r[k] = b[k] - p[k]
    n = rows.shape[0]
    i = 0
    while i < n:  # the active rows four at a time: each load of p and of r serves four
        j0, j1, j2, j3, i = next_four(act, True, i, n)
        if j3 >= 0:
            r0, r1, r2, r3 = rows[j0], rows[j1], rows[j2], rows[j3]
            a0, a1, a2, a3 = four_dots(X, r0, r1, r2, r3, p, d)
            a0 *= 2.0 * C
            a1 *= 2.0 * C
            a2 *= 2.0 * C
            a3 *= 2.0 * C
            for k in range(d):
                r[k] -= a0 * X[r0, k] + a1 * X[r1, k] + a2 * X[r2, k] + a3 * X[r3, k]
        else:  # the last one to three
            for j in (j0, j1, j2):
                if j >= 0:
                    row = rows[j]
                    acc = 0.0
                    for k in range(d):
                        acc += X[row, k] * p[k]
                    acc *= 2.0 * C
                    for k in range(d):
                        r[k] -= acc * X[row, k]
    _solve(R, r, z)
    for k in range(d):
        p[k] += z[k]


@kernel(fastmath=_FASTMATH)
def _step_length(wd, ss, m, delta, W, n, C):
    """Exact minimiser ``t`` along a direction ``s`` of the objective
    ``0.5 |w + t s|^2 + C sum_i max(0, 1 - m_i - t delta_i)^2`` (as
    ``_svm_newton._exact_line_search``), from ``wd = w . s`` and ``ss = s . s``, over the
    samples ``i < n`` of weight ``W[i] > 0`` (every one when ``W`` is empty). Shared by the
    primal kernel and the Gram-space one (:mod:`._svm_gram_kernel`)."""
    t = 1.0
    if ss == 0.0:  # no step: already at the Newton point
        return t
    every = W.shape[0] == 0
    for _ in range(30):
        num = wd
        den = ss
        for i in range(n):
            r = 1.0 - m[i]
            if (every or W[i] > 0.0) and r - t * delta[i] > 0.0:
                num -= 2.0 * C * delta[i] * r
                den += 2.0 * C * delta[i] * delta[i]
        t_new = -num / den
        if abs(t_new - t) <= 1e-13 * max(1.0, abs(t)):
            return t_new
        t = t_new
    return t


@kernel(fastmath=_FASTMATH)
def _first_step_rule(t, m, delta, W, n, few):
    """The first step's length: ``t``, or the Newton point (``1``) when the exact line search
    goes past it to where fewer than ``few`` of the samples ``i < n`` of weight ``W[i] > 0``
    (every one when ``W`` is empty) stay active (``m_i + t delta_i < 1``). Shared by the
    primal kernel and the Gram-space one (see the module's docstring)."""
    if t <= 1.0 or few <= 0:
        return t
    every = W.shape[0] == 0
    kept = 0
    for i in range(n):
        kept += (every or W[i] > 0.0) and m[i] + t * delta[i] < 1.0
    return 1.0 if kept < few else t


@kernel(fastmath=_FASTMATH)
def _line_search(w, s, m, delta, W, C):
    """Exact minimiser along ``s`` of the objective (:func:`_step_length`)."""
    wd = 0.0
    ss = 0.0
    for k in range(w.shape[0]):
        wd += w[k] * s[k]
        ss += s[k] * s[k]
    return _step_length(wd, ss, m, delta, W, m.shape[0], C)


@kernel(fastmath=_FASTMATH)
def _too_large(H):
    """Whether ``H = I + 2C X^T X`` is too large for its identity (see ``needs_svd``)."""
    top = 0.0
    for k in range(H.shape[0]):
        top = max(top, H[k, k])
    return _EPS * top > _NORMAL_EQUATIONS_TOL


@kernel(fastmath=_FASTMATH)
def _changes_worth_updating(n_changed, n_active, d):
    """Whether ``n_changed`` rank-one updates cost less than rebuilding from the rows (a
    rebuild runs in BLAS and LAPACK, several times faster per operation than the updates:
    the factor 4 was measured best with 2 and 8 on W1 at 10 mm)."""
    return 4 * n_changed * d < n_active * (d // 2 + 1) + d * d // 6


@kernel(fastmath=_FASTMATH)
def _first_active_set(X, rows, Y, W, m, C, H0, rhs0, H, b, act):
    """``H`` and ``b`` of the active set after the first step: the first step's ``H0`` and
    ``rhs0`` (every training sample active) minus the samples that left it."""
    d = H.shape[0]
    left = np.empty(rows.shape[0], dtype=np.bool_)
    for i in range(rows.shape[0]):
        act[i] = W[i] > 0.0 and m[i] < 1.0
        left[i] = W[i] > 0.0 and not act[i]
    for r in range(d):  # (row slices from the diagonal: vectorised, see _rank_one)
        h, h0 = H[r, r:], H0[r, r:]
        for c in range(h.shape[0]):
            h[c] = h0[c]
    _add_gram(X, rows, Y, left, -2.0 * C, H, b)
    for r in range(d):
        b[r] = rhs0[r] - 2.0 * C * b[r]


@kernel(fastmath=_FASTMATH)
def _solve_problem(X, rows, Y, W, C, w, first, max_iter, H, R, vectors, m, delta, act, H0, rhs0, warm=False):
    """Finite Newton iterations on one problem, from ``w = 0`` with Newton point ``first``,
    or from a ``warm`` start.

    The problem's samples are the rows ``rows`` of ``X`` (read in place), with targets
    ``Y`` and 0/1 weights ``W``. ``H0`` and ``rhs0``, when not empty, are the first step's
    matrix and right-hand side (every sample of weight 1 active): after the first step,
    the samples that left the active set are taken out of them when they are fewer than
    those that stay. ``H``, ``R`` (d, d: each matrix ``H`` built is factored into ``R`` and
    not read again, so they may be one array), ``vectors`` (9, d), ``m``, ``delta``, ``act``
    (n,) are work space. Returns ``(status, iterations)``; ``w`` holds the result.

    With ``warm``, ``w``, its margins ``m`` and active set ``act`` come in
    (:func:`_majorised_starts`; ``H0`` given): the iterations start at the Newton point of ``w``'s active set, its matrix
    formed afresh (from ``H0`` minus the samples outside it when they are fewer than those
    in it) and factored, and the first iteration counted is that point's; ``first`` is
    not read.
    """
    n = rows.shape[0]
    d = X.shape[1]
    b, p = vectors[0], vectors[1]
    if warm:
        n_active = 0
        for i in range(n):
            n_active += act[i]
        if 2 * n_active > n:
            _first_active_set(X, rows, Y, W, m, C, H0, rhs0, H, b, act)
        else:
            _build(X, rows, Y, act, C, H, b)
        if not _cholesky(H, R):
            return NEEDS_SVD, 1
        _solve(R, b, p)
        return _newton_iterations(X, rows, Y, W, C, w, max_iter, H, R, vectors, m, delta, act, H0, rhs0, 1)
    for i in range(n):
        act[i] = W[i] > 0.0
        m[i] = 0.0
    w[:] = 0.0
    p[:] = first
    if H0.shape[0] != d:  # no first matrix given (checked by the caller otherwise): every
        # active set's H is no larger than the one of every training sample, checked here
        top = 0.0
        for k in range(d):
            acc = 0.0
            for i in range(n):
                if W[i] > 0.0:
                    acc += X[rows[i], k] * X[rows[i], k]
            top = max(top, 1.0 + 2.0 * C * acc)
        if _EPS * top > _NORMAL_EQUATIONS_TOL:
            return NEEDS_SVD, 0
    return _newton_iterations(X, rows, Y, W, C, w, max_iter, H, R, vectors, m, delta, act, H0, rhs0, 0)


@kernel(fastmath=_FASTMATH)
def _newton_iterations(X, rows, Y, W, C, w, max_iter, H, R, vectors, m, delta, act, H0, rhs0, start):
    """:func:`_solve_problem`'s iterations, from ``w`` (margins ``m``, active set ``act``)
    towards the Newton point ``vectors[1]`` of ``act``, whose factor is ``R`` (computed
    afresh); ``start`` is 0 from ``w = 0`` (the first step's rules apply), else 1."""
    n = rows.shape[0]
    d = X.shape[1]
    b, p, r, z, s, work, xs, work2, xs2 = (
        vectors[0],
        vectors[1],
        vectors[2],
        vectors[3],
        vectors[4],
        vectors[5],
        vectors[6],
        vectors[7],
        vectors[8],
    )
    exact = True  # whether p comes from a factor computed afresh (or was refined)
    root = np.sqrt(2.0 * C)
    for it in range(start, max_iter):
        for k in range(d):
            s[k] = p[k] - w[k]
        _margins(X, rows, Y, s, delta)
        t = _line_search(w, s, m, delta, W, C)
        if it == 0:
            t = _first_step_rule(t, m, delta, W, n, d)
        big = 0.0
        step = 0.0
        for k in range(d):
            w[k] += t * s[k]
            big = max(big, abs(w[k]))
            step = max(step, abs(t * s[k]))
        n_changed, n_active = _move_margins(m, t, delta, W, act)
        if step <= 1e-13 * (1.0 + big) or (n_changed == 0 and exact):
            return CONVERGED, it + 1
        if n_changed == 0:  # at a point from an updated factor: refine it, and check again
            _refined_newton_point(X, rows, act, C, R, b, p, r, z)
            exact = True
            continue
        rebuild = it == 0 or not _changes_worth_updating(n_changed, n_active, d)
        if it == 0 and H0.shape[0] == d and 2 * n_active > n:
            _first_active_set(X, rows, Y, W, m, C, H0, rhs0, H, b, act)
        elif rebuild:
            for i in range(n):
                act[i] = W[i] > 0.0 and m[i] < 1.0
            _build(X, rows, Y, act, C, H, b)
        if rebuild:
            if _too_large(H):
                return NEEDS_SVD, it + 1
            if not _cholesky(H, R):
                return NEEDS_SVD, it + 1
            exact = True
        else:
            refactor = False
            pending = False  # a change in xs (sign first) not yet applied: changes go in pairs
            first = 1.0
            for i in range(n):
                now = W[i] > 0.0 and m[i] < 1.0
                if now == act[i]:
                    continue
                act[i] = now
                sign = 1.0 if now else -1.0
                x = X[rows[i]]
                into = xs2 if pending else xs
                for k in range(d):
                    into[k] = root * x[k]
                    b[k] += sign * 2.0 * C * Y[i] * x[k]
                if not pending:
                    first = sign
                    pending = True
                    continue
                pending = False
                if not refactor and not _rank_two(R, xs, first, work, xs2, sign, work2):
                    refactor = True
            if pending and not refactor and not _rank_one(R, xs, first, work):
                refactor = True
            exact = refactor
            # (every active set's H is no larger than the first step's, checked already)
            if refactor:  # an update lost positive definiteness to rounding: from the rows
                _build(X, rows, Y, act, C, H, b)
                if not _cholesky(H, R):
                    return NEEDS_SVD, it + 1
        _solve(R, b, p)
    return UNCONVERGED, max_iter


@kernel(nogil=True, fastmath=_FASTMATH)
def newton_problems(Xs, Ys, Ws, first, C, max_iter):
    """Solve every problem of a batch (see the module's docstring).

    Parameters
    ----------
    Xs : ndarray (N, n, d)
        Training samples of each problem (padding rows have weight 0).
    Ys, Ws : ndarray (N, n)
        +-1 targets and 0/1 weights.
    first : ndarray (N, d)
        The Newton point from ``w = 0`` of each problem (the ridge solution on all its
        training samples).
    C : float
    max_iter : int

    Returns
    -------
    w : ndarray (N, d)
    status : ndarray of int8 (N,)
        :data:`CONVERGED`, :data:`UNCONVERGED`, or :data:`NEEDS_SVD` (values too large for
        the normal equations: to be solved by :func:`._svm_newton.newton`).
    iterations : ndarray of int32 (N,)
    """
    N, n, d = Xs.shape
    w = np.zeros((N, d))
    status = np.zeros(N, dtype=np.int8)
    iterations = np.zeros(N, dtype=np.int32)
    H = np.empty((d, d))
    R = H  # each matrix is factored in place
    vectors = np.empty((9, d))
    m = np.empty(n)
    delta = np.empty(n)
    act = np.empty(n, dtype=np.bool_)
    rows = np.arange(n)
    none = np.empty((0, 0))
    for q in range(N):
        st, it = _solve_problem(
            Xs[q],
            rows,
            Ys[q],
            Ws[q],
            C,
            w[q],
            first[q],
            max_iter,
            H,
            R,
            vectors,
            m,
            delta,
            act,
            none,
            none[0],
        )
        status[q] = st
        iterations[q] = it
    return w, status, iterations


@kernel(fastmath=_FASTMATH)
def _gather_margins(Mall, index, Yq, out):
    """``out[q, i] = Yq[q, i] * Mall[q, index[q, i]]``: each problem's margins of its own
    rows from the margins of every sample of the sphere."""
    for q in range(index.shape[0]):
        src, rows, y, o = Mall[q], index[q], Yq[q], out[q]
        for i in range(rows.shape[0]):
            o[i] = y[i] * src[rows[i]]


@kernel(fastmath=_FASTMATH)
def _majorised_starts(Xz, XT, index, Yq, Wq, C, PR, rhs, n_all, w, M, Act, steps, usable, mwork):
    """Starts for every problem of one sphere from the factor ``PR`` of
    ``P = I + 2C X^T X`` over every sample of the sphere, in lockstep: each step's margins
    and gradients of all the problems are two matrix products with the sphere's samples
    ``Xz`` and their transpose ``XT`` (:func:`._rows.row_products`) instead of two passes
    over each problem's rows. Sets ``w`` (Q, d), the margins ``M`` and active sets ``Act``
    (Q, n_train) of each problem, its ``steps`` taken and whether its start is ``usable``.

    The squared hinge's curvature is at most that of the problem's training samples, all
    active, which ``P`` bounds (it holds them and the left-out ones). So the steps
    ``-P^-1 grad`` with an exact line search (:func:`_line_search`) descend monotonically
    (majorise-minimise) from ``P^-1 rhs``, where ``rhs = 2C X_T^T y_T``, without any
    factorisation of the problem's own. Where most samples stay active, as on noisy trial
    betas, ``P`` is close to the optimum's matrix and a few steps find its active set; the
    caller then solves that set exactly (:func:`_solve_problem`, ``warm``), which proves the
    optimum or goes on from there. A problem's steps stop once a step changes no sample's
    side of the margin, or after :data:`_MAJORISED_MAX_STEPS`. Where fewer than
    :data:`_MAJORISED_MIN_ACTIVE` of the sphere's ``n_all`` samples stay active after the
    first step (nearly separable training sets, where the steps crawl), the start is not
    ``usable``: the caller solves from ``w = 0`` with the training set's own factor.
    ``mwork`` is :func:`_majorised_work`'s tuple.
    """
    Q, n = index.shape
    d = Xz.shape[1]
    Mall, Call, G, S, D, running = mwork
    twoC = 2.0 * C
    for q in range(Q):
        for k in range(d):
            w[q, k] = rhs[q, k]
        steps[q] = 0
        usable[q] = True
        running[q] = True
    cholesky_solve_upper_rows(PR, w, running)
    row_products(w, Xz, Mall, Q, Xz.shape[0], d)
    _gather_margins(Mall, index, Yq, M)
    for q in range(Q):
        for i in range(n):
            Act[q, i] = Wq[q, i] > 0.0 and M[q, i] < 1.0
    for step in range(_MAJORISED_MAX_STEPS):
        # gradients w - 2C sum_{i active} y_i (1 - m_i) x_i, as (the active weights) Xz
        Call[:, :] = 0.0
        for q in range(Q):
            if running[q]:
                rows, y, mq, aq, cq = index[q], Yq[q], M[q], Act[q], Call[q]
                for i in range(n):
                    if aq[i]:
                        cq[rows[i]] += y[i] * (1.0 - mq[i])
        row_products(Call, XT, G, Q, d, Xz.shape[0])
        for q in range(Q):
            if running[q]:
                for k in range(d):
                    S[q, k] = twoC * G[q, k] - w[q, k]  # minus the gradient
        cholesky_solve_upper_rows(PR, S, running)
        row_products(S, Xz, Mall, Q, Xz.shape[0], d)
        _gather_margins(Mall, index, Yq, D)
        for q in range(Q):
            if not running[q]:
                continue
            t = _line_search(w[q], S[q], M[q], D[q], Wq[q], C)
            for k in range(d):
                w[q, k] += t * S[q, k]
            n_changed, n_active = _move_margins(M[q], t, D[q], Wq[q], Act[q])
            for i in range(n):
                Act[q, i] = Wq[q, i] > 0.0 and M[q, i] < 1.0
            steps[q] = step + 1
            if step == 0 and n_active < _MAJORISED_MIN_ACTIVE * n_all:
                usable[q] = False
                running[q] = False
            elif n_changed == 0:
                running[q] = False


@kernel(fastmath=_FASTMATH)
def _majorised_work(Q, n_train, n_rows, d):
    """Work arrays of :func:`_majorised_starts` for ``Q`` problems of ``n_train`` rows of a
    sphere of ``n_rows`` samples (its padding row included) and ``d`` features: every
    sample's margins and gradient weights (Q, n_rows), gradients and steps (Q, d), each
    problem's margin changes (Q, n_train), and which problems still step."""
    return (
        np.empty((Q, n_rows)),
        np.empty((Q, n_rows)),
        np.empty((Q, d)),
        np.empty((Q, d)),
        np.empty((Q, n_train)),
        np.empty(Q, dtype=np.bool_),
    )


@kernel(fastmath=_FASTMATH)
def _solve_sphere(
    Xz, XT, index, Yq, Wq, set_of, H0, rhs, C, max_iter, w, status, iterations, work, PR, majorise, tries,
):  # fmt: skip
    """Every problem of one sphere (see :func:`newton_block`): results into ``w`` (Q, d),
    ``status`` and ``iterations`` (Q,). ``work`` is :func:`_work_space`'s tuple.

    With ``majorise``, the problems start from :func:`_majorised_starts` with the factor
    ``PR`` of the sphere's all-sample matrix; a training set's first matrix ``H0[u]`` is
    then factored only if one of its problems cannot use that start. Otherwise each
    ``H0[u]`` is factored once and serves every problem that shares it (the classes and
    label vectors of a fold). ``iterations`` counts the majorised steps too. ``tries`` (2,)
    counts the majorised starts tried and those given up."""
    H, R, factors, ok, factored, vectors, first, m, delta, act, M, Act, steps, usable, mwork = work
    U = H0.shape[0]
    n_all = Xz.shape[0] - 1
    for u in range(U):
        factored[u] = False
    if majorise:
        _majorised_starts(Xz, XT, index, Yq, Wq, C, PR, rhs, n_all, w, M, Act, steps, usable, mwork)
    for q in range(index.shape[0]):
        u = set_of[q]
        taken = 0
        if majorise:
            taken = steps[q]
            tries[0] += 1
            tries[1] += not usable[q]
            if usable[q]:
                st, it = _solve_problem(
                    Xz, index[q], Yq[q], Wq[q], C, w[q], first, max_iter, H, R, vectors, M[q], delta,
                    Act[q], H0[u], rhs[q], True,
                )  # fmt: skip
                status[q] = st
                iterations[q] = taken + it - 1
                continue
        if not factored[u]:
            ok[u] = not _too_large(H0[u]) and _cholesky(H0[u], factors[u])
            factored[u] = True
        if not ok[u]:
            status[q] = NEEDS_SVD
            continue
        _solve(factors[u], rhs[q], first)
        st, it = _solve_problem(
            Xz, index[q], Yq[q], Wq[q], C, w[q], first, max_iter, H, R, vectors, m, delta, act,
            H0[u], rhs[q],
        )  # fmt: skip
        status[q] = st
        iterations[q] = taken + it


@kernel(fastmath=_FASTMATH)
def _work_space(U, Q, n, n_rows, d, majorise):
    """Work arrays of :func:`_solve_sphere` for ``U`` training sets and ``Q`` problems of
    ``n`` rows, of spheres of ``n_rows`` samples (the padding row included) and ``d``
    features; those of the majorised starts only with ``majorise``."""
    Qm = Q if majorise else 0
    H = np.empty((d, d))  # each matrix is factored in place: H and R are one array
    return (
        H,
        H,
        np.empty((U, d, d)),
        np.empty(U, dtype=np.bool_),
        np.empty(U, dtype=np.bool_),
        np.empty((9, d)),
        np.empty(d),
        np.empty(n),
        np.empty(n),
        np.empty(n, dtype=np.bool_),
        np.empty((Qm, n)),
        np.empty((Qm, n), dtype=np.bool_),
        np.empty(Qm, dtype=np.int64),
        np.empty(Qm, dtype=np.bool_),
        _majorised_work(Qm, n, n_rows, d),
    )


@kernel(fastmath=_FASTMATH)
def _sphere_samples(Xv, voxels, intercept, scaling, Xz):
    """The sphere's samples ``Xz[:n] = [Xv[voxels].T, scaling]`` from the voxel-major data
    ``Xv`` (n_voxels, n), and a zero row ``Xz[n]`` (the padding sample)."""
    n = Xv.shape[1]
    k = voxels.shape[0]
    gather_samples(Xv, voxels, voxels[:0], Xz[:n, :k])  # (the samples in their own order)
    if intercept:
        for i in range(n):
            Xz[i, k] = scaling
    Xz[n, :] = 0.0


@kernel(fastmath=_FASTMATH)
def _sphere_features(Xv, voxels, intercept, scaling, XT):
    """The sphere's samples the other way round, ``XT[j] = [Xv[voxels[j]], 0]`` (its voxels'
    rows, each with the padding sample's 0) and ``XT[k] = [scaling, ..., scaling, 0]`` (the
    constant feature): the rows along which the products ``v^T Xz`` of the sphere's
    problems run as dot products (:func:`._rows.row_products`)."""
    n = Xv.shape[1]
    k = voxels.shape[0]
    for j in range(k):
        src, dst = Xv[voxels[j]], XT[j]
        for i in range(n):
            dst[i] = src[i]
        dst[n] = 0.0
    if intercept:
        XT[k, :n] = scaling
        XT[k, n] = 0.0


@kernel(fastmath=_FASTMATH)
def _rows_gram(Xz, rows, G):
    """``G = Xz[rows]^T Xz[rows]`` (upper triangle, in outer-product tiles:
    :func:`._simd.column_gram_upper`); a run of consecutive rows is read in place."""
    k = rows.shape[0]
    d = Xz.shape[1]
    if k > 0 and rows[k - 1] - rows[0] == k - 1:
        column_gram_upper(Xz[rows[0] : rows[0] + k], k, d, G, 0.0)
        return
    XS = np.empty((k, d))
    for i in range(k):
        XS[i] = Xz[rows[i]]
    column_gram_upper(XS, k, d, G, 0.0)


@kernel(fastmath=_FASTMATH)
def training_grams(Xz, n, set_ptr, set_rows, subtract, disjoint, rest, G, total):
    """``G[u] = X_T^T X_T`` (upper triangle) of each training set ``u`` of one sphere's rows
    ``Xz`` (``n`` of them), by :class:`.svm._GramPlan`'s arrays.

    Training set ``u``'s rows ``set_rows[set_ptr[u]:set_ptr[u + 1]]`` are those it leaves
    out when ``subtract[u]`` (its Gram matrix is then the sphere's minus theirs), else those
    it keeps. When the left-out parts are ``disjoint`` (k-fold, leave-one-group-out), the
    sphere's Gram matrix is the sum of theirs and that of the ``rest`` (rows never left
    out): each row enters one product instead of two, and ``total`` (d, d) holds it
    (upper triangle: every sample's ``X^T X``) on return; otherwise ``total`` is work space.
    """
    U = subtract.shape[0]
    d = Xz.shape[1]
    if disjoint:
        _rows_gram(Xz, rest, total)
        for u in range(U):
            _rows_gram(Xz, set_rows[set_ptr[u] : set_ptr[u + 1]], G[u])
            for r in range(d):  # (row slices from the diagonal: vectorised, see _rank_one)
                t, h = total[r, r:], G[u, r, r:]
                for c in range(t.shape[0]):
                    t[c] += h[c]
    else:
        need = False
        for u in range(U):
            need = need or subtract[u]
        if need:
            _rows_gram(Xz, np.arange(n), total)
        for u in range(U):
            _rows_gram(Xz, set_rows[set_ptr[u] : set_ptr[u + 1]], G[u])
    for u in range(U):
        if disjoint or subtract[u]:
            for r in range(d):
                t, h = total[r, r:], G[u, r, r:]
                for c in range(t.shape[0]):
                    h[c] = t[c] - h[c]


@kernel(fastmath=_FASTMATH)
def _first_matrices(Xz, n, set_ptr, set_rows, subtract, disjoint, rest, C, H0, total):
    """``H0[u] = I + 2C X_T^T X_T`` (upper triangle) of each training set ``u`` of one sphere,
    from :func:`training_grams` (``total`` as there)."""
    training_grams(Xz, n, set_ptr, set_rows, subtract, disjoint, rest, H0, total)
    d = Xz.shape[1]
    for u in range(subtract.shape[0]):
        for r in range(d):
            h = H0[u, r, r:]
            for c in range(h.shape[0]):
                h[c] *= 2.0 * C
            H0[u, r, r] += 1.0


@kernel(nogil=True, fastmath=_FASTMATH)
def newton_block(
    Xv, vox, intercept, scaling, set_ptr, set_rows, subtract, disjoint, rest, index, Yq, Wq, set_of,
    YW, C, max_iter, majorise_from, w, decisions,
):  # fmt: skip
    """Every problem of a block of spheres, from the voxel-major data to the decisions.

    Sphere by sphere: its samples gathered from the data (with the constant feature), the
    first step's matrix of each training set (:func:`_first_matrices`), the finite Newton
    iterations of every problem (:func:`_solve_sphere`), and the decision values of every
    problem on every sample. Nothing larger than one sphere's samples is materialised.

    With disjoint left-out parts and at least ``majorise_from`` features (the constant one
    included), the problems start from the sphere's all-sample matrix, factored once per
    sphere (:func:`_majorised_starts`), instead of each training set's own factor; the
    block stops trying once most of its first :data:`_MAJORISED_TRIAL` or more starts were
    given up (nearly separable training sets).

    Parameters
    ----------
    Xv : ndarray (n_voxels, n)
        Voxel-major data (float64, C-contiguous).
    vox : ndarray of int (B, k)
        Each sphere's rows of ``Xv``.
    intercept : bool
        Whether to append the constant feature ``scaling``.
    set_ptr, set_rows, subtract, disjoint, rest
        Each training set's rows, as :func:`_first_matrices`.
    index : ndarray of int (Q, n_train)
        Each problem's rows of its sphere (padding rows point at row ``n``, a zero sample).
    Yq, Wq : ndarray (Q, n_train)
        +-1 targets and 0/1 weights of each problem.
    set_of : ndarray of int (Q,)
        Each problem's training set.
    YW : ndarray (Q, n + 1)
        Each problem's targets times its training weights (0 at the padding).
    C : float
    max_iter : int
    majorise_from : int
        Fewest features for the majorised starts.
    w : ndarray (B, Q, d)
        Written: each problem's weights.
    decisions : ndarray (B, Q, n)
        Written: ``[x, scaling] . w`` of every problem on every sample. The caller
        provides both (work arrays that its next blocks reuse: see
        :mod:`fastsearchlight._work_arrays`).

    Returns
    -------
    w : ndarray (B, Q, d)
    status, iterations : ndarray (B, Q)
        As :func:`newton_problems` (the majorised steps counted).
    decisions : ndarray (B, Q, n)
    """
    B, k = vox.shape
    n = Xv.shape[1]
    d = k + (1 if intercept else 0)
    Q = index.shape[0]
    U = subtract.shape[0]
    status = np.zeros((B, Q), dtype=np.int8)
    iterations = np.zeros((B, Q), dtype=np.int32)
    Xz = np.empty((n + 1, d))
    XT = np.empty((d, n + 1))
    H0 = np.empty((U, d, d))
    rhs = np.empty((Q, d))
    total = np.empty((d, d))
    PR = np.empty((d, d))
    majorise = disjoint and d >= majorise_from
    work = _work_space(U, Q, index.shape[1], n + 1, d, majorise)
    tries = np.zeros(2, dtype=np.int64)
    for sph in range(B):
        if majorise and tries[0] >= _MAJORISED_TRIAL and 2 * tries[1] > tries[0]:
            majorise = False  # given up on most problems so far: the block's are alike
        w[sph] = 0.0
        _sphere_samples(Xv, vox[sph], intercept, scaling, Xz)
        _sphere_features(Xv, vox[sph], intercept, scaling, XT)
        _first_matrices(Xz, n, set_ptr, set_rows, subtract, disjoint, rest, C, H0, total)
        row_products(YW, XT, rhs, Q, d, n + 1)
        for q in range(Q):
            for c in range(d):
                rhs[q, c] *= 2.0 * C
        usable = False
        if majorise:  # P = I + 2C X^T X over every sample (upper triangle), factored
            for r in range(d):  # (row slices from the diagonal: vectorised, see _rank_one)
                t = total[r, r:]
                for c in range(t.shape[0]):
                    t[c] *= 2.0 * C
                total[r, r] += 1.0
            usable = not _too_large(total) and _cholesky(total, PR)
        _solve_sphere(
            Xz, XT, index, Yq, Wq, set_of, H0, rhs, C, max_iter, w[sph], status[sph], iterations[sph],
            work, PR, usable, tries,
        )  # fmt: skip
        row_products(w[sph], Xz, decisions[sph], Q, n, d)
    return w, status, iterations, decisions

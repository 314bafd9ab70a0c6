"""Compiled ``LogisticRegressionCV(solver="liblinear")`` (L2, two classes) of every outer
fold, sphere by sphere, from the voxel-major data.

:func:`logistic_cv_block` goes from each sphere's samples to every outer fold's test
decisions: for each outer fold it solves every (inner fold, ``C``) problem on the inner
training samples, scores it on the inner test samples, picks the ``C`` of the largest
summed score (the first on ties) and refits with it on all the outer training samples.
Every problem is liblinear's objective (the constant feature ``intercept_scaling``
penalised like every coefficient), divided by ``C * n_train``: the mean log-loss plus
``0.5 * |theta|^2 / (C n_train)``, solved by the binary Newton solver of
:mod:`._logistic_kernel` (:func:`._logistic_kernel._newton_binary`) with that penalty on
every coordinate. The refit stops once every gradient component is at most ``tol`` times
its coordinate's scale (``max(1, root mean square)`` of its column over the outer
training samples), after its last steps: chord steps with the factor at hand down to
``1e-4 tol`` where they contract the gradient fast, else one last Newton step
(:data:`._logistic_kernel._FINAL_SHARE`, as ``LogisticRegression``'s binary problems; the
refit's factor serves no later problem): the exact optimum, to rounding. Captured calls of
400 neighbouring W1 10 mm spheres (one thread, three rounds, alternated call by call with
the last Newton step): 0.975 of the time, one Hessian fewer per refit, the refits'
decisions within 1e-13 of the Newton step's.

An inner problem's only use is its test score, which decides the ``C``: it stops as soon as
that score is proven within ``score_bound`` of its optimum's (``neg_log_loss``), or its test
predictions proven the optimum's (accuracy), by the bound of
:func:`._logistic_kernel._certified` on the distance to the optimum in the metric of the
Hessian at hand; or at ``tol`` as before. The ``C`` is then chosen from the proven
intervals of the summed scores (:func:`_best_c`); where another ``C``'s interval reaches the
best one's, the problems of those ``C`` run on to ``tol`` first, and the choice is made from
their exact scores. So the chosen ``C`` is always the exact problems' one. Neighbouring W1
10 mm spheres (300, one thread, three alternations with every inner problem run to ``tol``):
1.78 Hessians and 3.4 iterations per inner problem against 2.50 and 5.75, 73% of them
stopped on a proof (the others, mostly the largest ``C``, reach ``tol`` first), no ``C`` left
in doubt, the same ``C`` everywhere and decisions within 7e-14; 0.86-0.88 of the CPU time.
With the proof tried at ``tol`` too (before the last Newton step), 1.70 Hessians and 83%
proven. With ``neg_log_loss`` the test score's bound comes from the test rows' mean and
the slope of their loss (:func:`._logistic_kernel._log_loss_bound`: two forward solves with
the factor, and no test row's own norm): captured calls of 400 neighbouring W1 10 mm
spheres, one thread, alternated call by call with the bound by the test rows' norms before
it, 0.947 of the time, 2.82 iterations per inner problem against 2.93, the same ``C``
everywhere and the refits' decisions within 6e-14. With accuracy each test decision's bound
needs its row's norm (forward solves with a factor); those are carried from one ``C`` to the
next of an inner fold, inflated by the square root of the ratio of the penalties
(:func:`._logistic_kernel._certified`), and computed again only where the proof fails with
them: 0.51 instead of 0.63 computations per inner problem on neighbouring W1 10 mm spheres,
the same proofs, iterations and decisions. The Hessians of an inner problem
but its last Newton step leave out the training rows of negligible weight
(:data:`._logistic_kernel._LEFT_OUT`: together at most 1% of the penalty), which the proofs'
lower bound on the Hessian allows: 13% of the rows on neighbouring W1 10 mm spheres, 0.95-0.99
of the time, the same ``C`` everywhere and the refits' decisions within 3e-14.

Within an inner fold the ``C`` are solved in increasing order, each from a point predicted
from the previous one's optimum (the optimum does not depend on the start: the problems are
strictly convex): the regularisation path's Taylor polynomial there, in ``log lambda``, of
order one (the tangent) or two, whichever has the lower new objective, or that optimum itself
when it is lower still (:func:`_path_start`). The
refit starts from the mean of the inner solutions at the chosen ``C``. The predictors of
the point where one problem stops (the rows' products with it, their ``exp(-|z|)`` and the
mean loss) are handed to the path start, and the start's to the next problem's Newton
iterations, instead of computed again by each (two passes over the rows and two
exponentials per sample and problem): captured calls of 400 neighbouring W1 10 mm spheres,
one thread, both versions alternated call by call, 0.96 of the time, every output the same.

Each inner fold's first Hessian (its first ``C``, from the origin, where every weight is
``1 / (4 n)``) is the Gram matrix of the outer training rows, formed once per outer fold,
minus that of the inner fold's test rows (:func:`_inner_origin_hessian`, where the inner
folds split the outer training set): at W1 10 mm 162 + 5 x 32 rows of Hessian tiles for an
outer fold's five inner folds instead of 5 x 130. The test scores' and the log-loss bound's
``exp`` and ``log`` are :mod:`._vector_math`'s (vectorised; the C library's took 1.9% of a
profile), and the bound's forward solve with the test rows' mean is done once per factor.
Captured calls of 400 neighbouring W1 10 mm spheres (one thread, three rounds, each change
alternated call by call with the code before it): 0.987 (the vectorised losses), 0.992 (the
first Hessians), 0.993 (the solve once per factor) and 0.994 (the columns' scales along the
rows) of the time, the same Hessians, iterations, proofs and ``C`` everywhere, the refits'
decisions within 6e-14. A proof takes only the forward half of the step's solve with the
factor (``U^-T grad``, whose squared norm is the Newton decrement), and the back half
follows only where a step is taken: before, every proof attempt paid for a whole solve,
wasted where the problem stopped on it or went on to a new Hessian (captured calls as
above, four rounds: 0.981 of the time, every output the same to the bit).

With more parameters than outer training samples an outer fold is solved in an
orthonormal basis ``Q`` ``(p, n_train)`` of its training rows (``theta = Q g``,
``|theta| = |g|``; every optimum, inner or refitted, is a combination of those rows since
every coordinate is penalised): the design becomes ``A Q = R'`` (``A' = Q R``, Householder
QR, orthonormal to rounding whatever the conditioning), ``n_train`` columns instead of
``p``.
"""

from __future__ import annotations

import math

import numpy as np

from ._borrow import borrowed
from ._compiled import kernel
from ._logistic_kernel import (
    _add_combination,
    _binary_trial,
    _dots,
    _expit,
    _newton_binary,
    _origin_hessian,
    certificate,
    newton_work,
    no_certificate,
    squared_row_norms,
)
from ._simd import column_gram_upper
from ._triangular import solve_upper
from ._vector_math import log_normal

__all__ = ["logistic_cv_block"]

_EPS = np.finfo(np.float64).eps
_FASTMATH = {"reassoc", "contract"}


#: the refit's stopping tolerance at most: with a large ``C`` on a nearly separable fold (which
#: accuracy scoring can choose), ``1e-10`` and one last Newton step left its decisions up to
#: 3e-4 from the optimum (of decisions up to 482); ``1e-12`` reaches it, for about one more
#: iteration of the refit (one problem in 51)
_REFIT_TOL = 1e-12


@kernel(nogil=True, fastmath=_FASTMATH)
def _test_score(D, rows, n_rows, t, theta, neg_log_loss, dec):
    """Score of ``theta`` on the rows ``rows[:n_rows]`` of the design ``D`` (labels ``t`` in
    {0, 1}): minus the mean log-loss of the probabilities ``expit(z)`` and ``1 - expit(z)``
    clipped to ``[eps, 1 - eps]`` (scikit-learn's ``neg_log_loss``), or the accuracy.
    ``dec`` (at least ``n_rows``): work space for the decisions, so that the losses' loop,
    with :mod:`._vector_math`'s ``exp`` and ``log``, vectorises (the C library's, one row at
    a time, were 1.9% of a profile)."""
    q = D.shape[1]
    for a in range(n_rows):
        i = rows[a]
        z = 0.0
        for j in range(q):
            z += D[i, j] * theta[j]
        dec[a] = z
    acc = 0.0
    if neg_log_loss:
        for a in range(n_rows):  # vectorised
            p1 = _expit(dec[a])
            pr = p1 if t[rows[a]] > 0.5 else 1.0 - p1
            pr = min(max(pr, _EPS), 1.0 - _EPS)
            acc += log_normal(pr)
    else:
        for a in range(n_rows):
            if (dec[a] > 0.0) == (t[rows[a]] > 0.5):
                acc += 1.0
    return acc / n_rows


@kernel(nogil=True, fastmath=_FASTMATH)
def _path_start(D, t, theta, R, lam_prev, lam, work, zwork, z, e, loss):
    """Start of the problem of penalty ``lam`` from the optimum ``theta`` of ``lam_prev``
    (same design ``D``, labels ``t``), in place: the path's Taylor polynomial of order two
    in ``log lambda``.

    The optimum of ``mean loss + 0.5 lam |theta|^2`` satisfies ``grad L(theta) + lam theta =
    0``. Along the path, with ``H = L'' + lam I`` the objective's Hessian and primes for
    derivatives in ``log lam``, ``H theta' = -lam theta`` and ``H theta'' = -lam theta - 2
    lam theta' - T(theta')``, where ``T(u) = mean_i phi3(z_i) (a_i . u)^2 a_i`` is the third
    derivative of the mean loss twice applied to ``u`` and ``phi3 = p (1 - p) (1 - 2 p)``
    that of the log-loss in the predictor. ``R`` is the Cholesky factor (upper) of the last
    Hessian of ``lam_prev``'s Newton iterations, at or near its optimum: each derivative
    costs a solve with it, the second also a product of ``D'`` with a vector. Of ``theta``,
    the first-order prediction ``theta + theta' dl`` and the second-order one ``theta +
    theta' dl + theta'' dl^2 / 2`` (``dl = log(lam / lam_prev)``), the start is the one of
    lowest objective at ``lam``.

    The tangent alone (stop 45), against starts from the optimum itself: captured kernel
    calls of 400 neighbouring W1 10 mm spheres (10 ``C`` from 1e-4 to 1e4, one thread, seven
    alternations), 8.36 -> 5.75 Newton iterations per inner problem, 0.66-0.73 of the CPU
    time. The second-order term (stop 70), 300 neighbouring W1 10 mm spheres, one thread:
    1.70 -> 1.51 Hessians and 3.41 -> 2.88 iterations per inner problem, 83% -> 88% of them
    stopped on a proof, the same scores; but 0.95-0.99 of the CPU time (median ratios of two
    blocks' captured calls, both versions alternated in one process), the new term's solve
    and products costing most of what the Hessians saved. Over a step of 2.04 in ``log
    lambda`` (a factor 7.7 in ``C``) the first-order prediction is still the better one in
    some problems: taking the second-order one whenever it lowers the objective below
    ``theta``'s gave 1.66 Hessians.

    ``z``, ``e`` and ``loss`` are the predictors ``D theta``, their ``exp(-|z|)`` and the
    mean loss at ``theta``, as :func:`._logistic_kernel._newton_binary` leaves them; ``z``
    and ``e`` are overwritten by the start's, and its mean loss is returned (for
    :func:`._logistic_kernel._newton_binary`'s ``f_start``), so that neither function
    computes them again. ``work`` is work space of at least (4, q), ``zwork`` of at least
    (7, n) for n rows of ``D``."""
    # every array borrowed (no reference counts; the caller holds them, and none is kept)
    D, t, theta, R = borrowed(D), borrowed(t), borrowed(theta), borrowed(R)
    work, zwork, z, e = borrowed(work), borrowed(zwork), borrowed(z), borrowed(e)
    q = theta.shape[0]
    n = D.shape[0]
    v = work[0]  # H^-1 theta
    step = work[1]  # theta' dl
    second = work[2]  # theta'' dl^2 / 2
    inv = work[3]  # reciprocals of the factor's diagonal
    for j in range(q):
        v[j] = theta[j]
        inv[j] = 1.0 / R[j, j]
    solve_upper(R, inv, q, v, v)
    dl = math.log(lam / lam_prev)
    sq0 = 0.0
    sq1 = 0.0
    for j in range(q):
        step[j] = -lam_prev * dl * v[j]
        sq0 += theta[j] * theta[j]
        sq1 += (theta[j] + step[j]) * (theta[j] + step[j])
    dz, zt, et = zwork[0, :n], zwork[1, :n], zwork[2, :n]  # the first-order trial
    zt2, et2 = zwork[3, :n], zwork[4, :n]  # the second-order one
    sign, dz2 = zwork[5, :n], zwork[6, :n]
    for i in range(n):
        sign[i] = 2.0 * t[i] - 1.0
    _dots(D, step, dz)
    f0 = loss + 0.5 * lam * sq0
    inv_n = 1.0 / n
    for i in range(n):  # phi3(z_i) (a_i . step)^2 / n, from e = exp(-|z|)
        ei = e[i]
        r = 1.0 / (1.0 + ei)
        p = r if z[i] >= 0.0 else ei * r
        dz2[i] = p * (1.0 - p) * (1.0 - 2.0 * p) * dz[i] * dz[i] * inv_n
    for j in range(q):
        second[j] = 2.0 * lam_prev * dl * step[j]
    _add_combination(D, dz2, second)
    solve_upper(R, inv, q, second, second)
    sq2 = 0.0
    for j in range(q):
        second[j] = -0.5 * (lam_prev * dl * dl * v[j] + second[j])
        w = theta[j] + step[j] + second[j]
        sq2 += w * w
    _dots(D, second, dz2)
    for i in range(n):
        dz2[i] += dz[i]
    loss1 = _binary_trial(z, dz, 1.0, sign, zt, et)
    loss2 = _binary_trial(z, dz2, 1.0, sign, zt2, et2)
    f1 = loss1 + 0.5 * lam * sq1
    f2 = loss2 + 0.5 * lam * sq2
    if f2 < f1 and f2 < f0:
        for j in range(q):
            theta[j] += step[j] + second[j]
        z[:] = zt2
        e[:] = et2
        return loss2
    if f1 < f0:
        for j in range(q):
            theta[j] += step[j]
        z[:] = zt
        e[:] = et
        return loss1
    return loss


@kernel(nogil=True, fastmath=_FASTMATH)
def _column_scale(D):
    """``max(1, root mean square)`` of every column of ``D``: the scale of the stopping
    rule."""
    n, q = D.shape
    scale = np.zeros(q)
    for a in range(n):  # along the rows (vectorised)
        row = D[a]
        for j in range(q):
            scale[j] += row[j] * row[j]
    for j in range(q):
        scale[j] = max(1.0, math.sqrt(scale[j] / n))
    return scale


@kernel(nogil=True, fastmath=_FASTMATH)
def _row_basis(A, basis):
    """With ``basis``, an orthonormal basis ``Q`` ``(p, n)`` of the rows of ``A`` ``(n, p)``
    and the design in it, ``A Q = R'`` (``A' = Q R``); else an empty ``Q`` and ``A``."""
    if basis:
        Q, R = np.linalg.qr(np.ascontiguousarray(A.T))
        return Q, np.ascontiguousarray(R.T)
    return np.empty((0, 0)), A


@kernel(nogil=True)
def _inner_design(D, to, rows, n_rows):
    """The rows ``rows[:n_rows]`` of the design ``D`` and of the labels ``to``."""
    q = D.shape[1]
    Dk = np.empty((n_rows, q))
    tk = np.empty(n_rows)
    for a in range(n_rows):
        src, dst = D[rows[a]], Dk[a]
        for j in range(q):
            dst[j] = src[j]
        tk[a] = to[rows[a]]
    return Dk, tk


@kernel(nogil=True, fastmath=_FASTMATH)
def _inner_origin_hessian(gram, D, test, n_test, pen, H, rows):
    """The upper triangle of the binary Hessian at the origin (every weight ``1 / (4 n)``) of
    the rows of ``D`` (N, q) but ``test[:n_test]`` (an inner fold's training rows,
    :func:`_complement`), ``gram / (4 n) + diag(pen)`` with ``n = N - n_test``, into ``H``:
    from ``gram``, the upper triangle of the Gram matrix of every row of ``D``, minus that of
    the test rows (gathered into ``rows``, work space of at least (n_test, q)). An outer
    fold's five inner folds then take 162 + 5 x 32 rows of tiles instead of 5 x 130 (W1 10
    mm); the triangles below the diagonal are not read."""
    q = D.shape[1]
    H[:, :] = gram
    for a in range(n_test):
        src, dst = D[test[a]], rows[a]
        for j in range(q):
            dst[j] = src[j]
    column_gram_upper(rows, n_test, q, H, 0.0, -1.0, True, False)
    _origin_hessian(H, D.shape[0] - n_test, pen, H)


@kernel(nogil=True)
def _complement(train, n_train, test, n_test, n, mark):
    """Whether the positions ``train[:n_train]`` and ``test[:n_test]`` split ``range(n)``
    (each position in exactly one of them). ``mark`` (at least ``n``): work space."""
    if n_train + n_test != n:
        return False
    mark[:n] = 0
    for a in range(n_train):
        mark[train[a]] += 1
    for a in range(n_test):
        mark[test[a]] += 1
    for i in range(n):
        if mark[i] != 1:
            return False
    return True


@kernel(nogil=True)
def _best_c(scores, bounds):
    """The ``C`` whose score summed over the inner folds (in their order) is the largest,
    the first on ties, from ``scores`` ``(K, nC)``, each within ``bounds`` (same shape) of
    its problem's optimum's; and whether that choice is in doubt: whether some other
    ``C``'s interval of summed scores reaches that ``C``'s, one of them not exact."""
    K, nC = scores.shape
    top = 0
    top_score = -np.inf
    for c in range(nC):
        tot = 0.0
        for k in range(K):
            tot += scores[k, c]
        if tot > top_score:
            top_score = tot
            top = c
    lo = 0.0
    slack = 0.0
    for k in range(K):
        lo += scores[k, top] - bounds[k, top]
        slack += bounds[k, top]
    for c in range(nC):
        if c == top:
            continue
        hi = 0.0
        width = slack
        for k in range(K):
            hi += scores[k, c] + bounds[k, c]
            width += bounds[k, c]
        if width > 0.0 and not hi < lo:
            return top, True
    return top, False


@kernel(nogil=True, fastmath=_FASTMATH)
def logistic_cv_block(
    Xv, vox, train_idx, n_train, test_idx, n_test, y, inner_tr, inner_ntr, inner_te, inner_nte,
    Cs, fit_intercept, intercept_scaling, refit_scaling, neg_log_loss, tol, max_iter, score_bound,
):  # fmt: skip
    """``LogisticRegressionCV`` decisions of every outer fold on its test samples, for a
    block of spheres.

    Parameters
    ----------
    Xv : ndarray (n_voxels, n)
        Voxel-major data (float64, C-contiguous).
    vox : ndarray of int64 (B, d)
        Each sphere's rows of ``Xv``.
    train_idx : ndarray of int64 (n_folds, max_train)
        Each outer fold's training samples (padded).
    n_train : ndarray of int64 (n_folds,)
    test_idx : ndarray of int64 (n_folds, max_test)
        Each outer fold's test samples in plan order (padded).
    n_test : ndarray of int64 (n_folds,)
    y : ndarray of int64 (n,)
        Class codes in {0, 1}.
    inner_tr : ndarray of int64 (n_folds, K, max_inner_train)
        Each inner fold's training samples, as positions in its outer training set.
    inner_ntr : ndarray of int64 (n_folds, K)
    inner_te : ndarray of int64 (n_folds, K, max_inner_test)
        Each inner fold's test samples, likewise.
    inner_nte : ndarray of int64 (n_folds, K)
    Cs : ndarray (n_Cs,)
    fit_intercept : bool
    intercept_scaling : float
        The constant feature (penalised like the others) of the inner problems.
    refit_scaling : float
        That of the refit (scikit-learn's refit does not pass ``intercept_scaling`` on: 1).
    neg_log_loss : bool
        Inner scoring: minus the log-loss, else accuracy.
    tol : float
    max_iter : int
    score_bound : float
        With ``neg_log_loss``, an inner problem stops once its test score is proven within
        this of the optimum's (:func:`._logistic_kernel._certified`); with accuracy, once its
        test predictions are proven the optimum's. 0: every inner problem runs to ``tol``.
        Where the proven intervals of the summed scores do not single out the best ``C``,
        the problems of the ``C`` left in doubt run on to ``tol`` before the choice.

    Returns
    -------
    dec : ndarray (B, n_folds, max_test)
        Decisions of each outer fold's test samples (zeros beyond ``n_test``).
    best : ndarray of int64 (B, n_folds)
        Position in ``Cs`` of the chosen ``C``.
    coef : ndarray (B, n_folds, d + 1)
        The refitted ``coef_`` then ``intercept_`` (0 without an intercept).
    stats : ndarray of int64 (8,)
        Problems that did not converge, Newton iterations of the inner problems, inner
        problems, Newton iterations of the refits, refits, Hessians factored (inner
        problems and refits; the other iterations were chord steps), inner problems stopped
        on a proof (``score_bound``), and those of them run on to ``tol`` afterwards (their
        iterations and Hessians counted with the inner problems').
    """
    B, d = vox.shape
    F = train_idx.shape[0]
    K = inner_tr.shape[1]
    nC = Cs.shape[0]
    e = 1 if fit_intercept else 0
    p = d + e
    dec = np.zeros((B, F, test_idx.shape[1]))
    best = np.zeros((B, F), dtype=np.int64)
    coef = np.zeros((B, F, d + 1))
    stats = np.zeros(8, dtype=np.int64)
    certify = score_bound > 0.0
    eps = score_bound if neg_log_loss else -1.0
    cert_out = np.zeros(3)
    nocert = no_certificate(0)
    order = np.argsort(Cs, kind="mergesort")  # the C path, increasing
    t = np.empty(y.shape[0])
    for i in range(y.shape[0]):
        t[i] = 1.0 if y[i] == 1 else 0.0
    As = np.empty((Xv.shape[1], p))  # the sphere's design, sample by sample
    scores = np.zeros((K, nC))
    # the Newton iterations' work space, for every problem (the basis has at most the outer
    # training samples as coordinates)
    nwork = newton_work(train_idx.shape[1], vox.shape[1] + 1, inner_te.shape[2])
    bounds = np.zeros((K, nC))
    for sph in range(B):
        rows = vox[sph]
        for j in range(d):
            src = Xv[rows[j]]
            for i in range(Xv.shape[1]):
                As[i, j] = src[i]
        if fit_intercept:
            for i in range(Xv.shape[1]):
                As[i, d] = intercept_scaling
        for f in range(F):
            nt = n_train[f]
            tr = train_idx[f, :nt]
            to = np.empty(nt)
            Aout = np.empty((nt, p))
            for a in range(nt):
                Aout[a] = As[tr[a]]
                to[a] = t[tr[a]]
            basis = p > nt
            Qb, D = _row_basis(Aout, basis)
            q = D.shape[1]
            scale = _column_scale(D)
            path = np.zeros((K, nC, q))
            theta = np.zeros(q)
            R = np.empty((q, q))  # the last Hessian's factor of the C before
            work = np.empty((4, q))
            zwork = np.empty((7, nt))  # the path starts' predictors
            rows_work = np.empty((nt, q))  # work space for the Hessians
            # each inner fold's first Hessian, at the origin (every weight 1 / (4 n)), from
            # the Gram matrix of the outer training rows minus that of its test rows
            gram = np.empty((q, q))
            column_gram_upper(D, nt, q, gram, 0.0, 1.0, False, False)
            mark = np.empty(nt, dtype=np.int64)
            for k in range(K):
                ntr = inner_ntr[f, k]
                Dk, tk = _inner_design(D, to, inner_tr[f, k], ntr)
                nte = inner_nte[f, k] if certify else 0
                Ct = np.empty((q, nte))  # the test rows, transposed, and their labels
                tte = np.empty(nte)
                for a in range(nte):
                    Ct[:, a] = D[inner_te[f, k, a]]
                    tte[a] = to[inner_te[f, k, a]]
                a2 = np.empty(ntr)
                squared_row_norms(Dk, a2)
                cert = certificate(Ct, a2, tte, cert_out, eps)
                cert_out[2] = 0.0  # new rows: no test rows' norms to carry from the fold before
                pen = np.empty(q)
                theta[:] = 0.0
                origin = _complement(inner_tr[f, k], ntr, inner_te[f, k], inner_nte[f, k], nt, mark)
                factored = False
                lam_prev = 0.0
                loss = -1.0  # the mean loss at theta, its predictors in nwork's rows 1 and 2
                for ci in range(nC):
                    c = order[ci]
                    lam = 1.0 / (Cs[c] * ntr)
                    if factored and lam < lam_prev:
                        loss = _path_start(
                            Dk, tk, theta, R, lam_prev, lam, work, zwork, nwork[1, :ntr], nwork[2, :ntr], loss
                        )
                    pen[:] = lam
                    if origin:  # the first C, from the origin
                        _inner_origin_hessian(gram, D, inner_te[f, k], inner_nte[f, k], pen, R, rows_work)
                    its, ok, hess, factored, loss = _newton_binary(
                        Dk, tk, pen, scale, theta, tol, max_iter, R, rows_work, False, cert, nwork, origin, loss,
                    )  # fmt: skip
                    origin = False
                    stats[5] += hess
                    lam_prev = lam
                    stats[0] += 0 if ok else 1
                    stats[1] += its
                    stats[2] += 1
                    stats[6] += int(cert_out[1])
                    bounds[k, c] = cert_out[0]
                    path[k, c] = theta
                    scores[k, c] = _test_score(
                        D, inner_te[f, k], inner_nte[f, k], to, theta, neg_log_loss, zwork[0]
                    )
            top, doubt = _best_c(scores, bounds)
            if doubt:  # the C whose intervals reach the top one's run on to the optimum
                lo = 0.0
                for k in range(K):
                    lo += scores[k, top] - bounds[k, top]
                for c in range(nC):
                    hi = 0.0
                    for k in range(K):
                        hi += scores[k, c] + bounds[k, c]
                    if c != top and hi < lo:
                        continue
                    for k in range(K):  # this C's problems to the optimum (to ``tol``)
                        if bounds[k, c] == 0.0:
                            continue
                        ntr = inner_ntr[f, k]
                        Dk, tk = _inner_design(D, to, inner_tr[f, k], ntr)
                        theta[:] = path[k, c]
                        pen = np.full(q, 1.0 / (Cs[c] * ntr))
                        its, ok, hess, _, _ = _newton_binary(
                            Dk, tk, pen, scale, theta, tol, max_iter, np.empty((q, q)), rows_work, False,
                            nocert, nwork,
                        )  # fmt: skip
                        stats[5] += hess
                        stats[0] += 0 if ok else 1
                        stats[1] += its
                        stats[7] += 1
                        bounds[k, c] = 0.0
                        path[k, c] = theta
                        scores[k, c] = _test_score(
                            D, inner_te[f, k], inner_nte[f, k], to, theta, neg_log_loss, zwork[0]
                        )
                top, _ = _best_c(scores, bounds)
            best[sph, f] = top
            theta[:] = 0.0
            for k in range(K):
                for j in range(q):
                    theta[j] += path[k, top, j]
            for j in range(q):
                theta[j] /= K
            if fit_intercept and refit_scaling != intercept_scaling:
                # scikit-learn's refit does not pass intercept_scaling on: its constant
                # feature is 1 there (from zero: the inner optima are in other coordinates)
                for a in range(nt):
                    Aout[a, d] = refit_scaling
                Qb, D = _row_basis(Aout, basis)
                scale = _column_scale(D)
                theta[:] = 0.0
            pen = np.full(q, 1.0 / (Cs[top] * nt))
            # the refit gives the decisions: solved to the rounding floor whatever ``tol``
            its, ok, hess, _, _ = _newton_binary(
                D, to, pen, scale, theta, min(tol, _REFIT_TOL), max_iter, np.empty((q, q)), rows_work, False,
                nocert, nwork, False, -1.0, True,
            )  # fmt: skip
            stats[5] += hess
            stats[0] += 0 if ok else 1
            stats[3] += its
            stats[4] += 1
            if basis:
                w = np.zeros(p)
                for j in range(p):
                    acc = 0.0
                    for a in range(q):
                        acc += Qb[j, a] * theta[a]
                    w[j] = acc
            else:
                w = theta
            for a in range(n_test[f]):
                row = As[test_idx[f, a]]
                acc = 0.0
                for j in range(d):
                    acc += row[j] * w[j]
                if fit_intercept:
                    acc += refit_scaling * w[d]
                dec[sph, f, a] = acc
            for j in range(d):
                coef[sph, f, j] = w[j]
            if fit_intercept:
                coef[sph, f, d] = w[d] * refit_scaling
    return dec, best, coef, stats

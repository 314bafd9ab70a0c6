"""Compiled L2-regularised logistic regression of every fold, sphere by sphere, from the
voxel-major data.

:func:`logistic_block` goes from each sphere's samples to every fold's test decisions (and,
when asked, its coefficients): one Newton solver per (sphere, fold) problem, binary
(:func:`_newton_binary`) or multinomial on the sum-to-zero subspace
(:func:`_newton_multinomial`), with the objective, stopping rule and line search described
in :mod:`.logistic`. Nothing larger than one sphere's samples, their Gram matrix and one
problem's Hessian is materialised.

With more features than training samples a fold is solved in an orthonormal basis of its
training rows, from the Cholesky factor of their Gram matrix: with ``X X' = L L'`` (``L``
lower triangular), ``Q = X' L^-T`` has orthonormal columns spanning the rows of ``X`` and
``X Q = L``, so the design in the basis is ``L`` itself, and ``w = Q g = X' L^-T g``. With an
intercept the optimal weights are combinations of the training rows centred on their mean
(the intercept's optimality condition makes the residuals sum to zero), and the first
``n_train - 1`` centred rows span those: the basis is theirs, the design is ``L`` then the
last centred row's coordinates (minus the sum of the others'), and the intercept absorbs
the mean (``b = b' - mean . w``). So the basis has ``r = n_train - 1`` vectors with an
intercept, ``n_train`` without, and is used when ``d > r``. The Gram matrix of all the
sphere's samples is computed once per sphere (one ``syrk``); each fold centres and factors
its training block. A fold whose block is not positive definite, or too badly conditioned
for the basis to be orthonormal to rounding, is solved in the feature space instead.

A binary fold's Hessians are summed in single precision where that is safe
(:func:`_single_precision_safe`, :func:`_binary_hessian`), its gradients, steps and line
searches in double; all but a last Newton step's leave out the rows of negligible weight
(:data:`_LEFT_OUT`). Once its gradient is below ``tol`` it goes on with the factor at hand
while that contracts the gradient fast, down to a gradient ten thousand times smaller
(:data:`_FINAL_SHARE`), rather than with a new Hessian.

Every fold starts from the origin, except in the basis, where it starts from its optimal
predictors on the sphere before when that sphere shares at least half the voxels (warm
starts: any predictors on the training samples are exactly a point there; W3, 3,000
neighbouring spheres, 6.8 Newton iterations per problem against 7.8). The multinomial
Newton step at the origin uses the Kronecker structure of the Hessian there
(:func:`_origin_step`). In the region of fast convergence, steps reuse an earlier Hessian's
factor (chord steps, :data:`_CHORD_GAIN`).

For scores that use only the predictions (``prove``), a multinomial fold in the basis stops
once its test predictions are proven to be the optimum's (:func:`_predictions_proven`, from
the bound of :func:`_decision_bound` on the distance to the optimum): W3, 1,259 neighbouring
spheres of 123 voxels, 5.1 iterations and 3.0 Hessians per problem against 11.7 and 4.1, every
problem proven, the same predictions.
"""

from __future__ import annotations

import math

import numpy as np

from ._borrow import borrowed
from ._compiled import kernel
from ._lapack import matmul_into
from ._rows import eight_dots, four_axpy, four_dots
from ._simd import column_gram, column_gram_upper, column_products_upper
from ._svm_kernel import training_grams
from ._triangular import (
    back_upper,
    cholesky_solve_upper,
    cholesky_upper_into,
    column_norms_upper,
    forward_upper,
    solve_upper,
)
from ._vector_math import divide, exp_nonpositive, log1p_unit, log_normal

__all__ = ["logistic_block"]

_EPS = np.finfo(np.float64).eps
#: sums may be reordered (vectorised): the results stay exact to rounding; no assumptions
#: on NaN or infinities
_FASTMATH = {"reassoc", "contract"}
#: a fold's Gram block is used as a basis when its smallest squared pivot is at least this
#: times its largest diagonal entry (the basis is then orthonormal to about
#: ``eps / _BASIS_RCOND``); otherwise the fold is solved in the feature space
_BASIS_RCOND = 1e-6
#: Armijo's sufficient-decrease constant and the number of halvings of the step
_ARMIJO = 1e-4
_HALVINGS = 60
#: a step reuses the Cholesky factor of an earlier iteration's Hessian (a chord step, with
#: no new Hessian) when the last step was a full one (or longer: :func:`_extrapolate`) and
#: shrank the largest gradient component to at most this share of the one before (for a
#: binary problem's last steps see :data:`_FINAL_SHARE`). Neighbouring spheres, one thread,
#: alternated with Newton steps only (same scores): W3 (3,000 spheres) 0.79 of the time with
#: 0.3 (0.82 with 0.1), W1 10 mm (2,500 spheres) 0.86 (0.91 with 0.1), with more iterations
#: but fewer Hessians
_CHORD_GAIN = 0.3
#: with ``last_chords`` (:func:`logistic_block`'s binary problems in the features), a
#: problem without a certificate whose gradient is below ``tol`` (every component within
#: ``tol`` times its scale) goes on with chord steps, as long as each shrinks the largest
#: gradient component to at most :data:`_CHORD_GAIN` of the one before and for at most
#: :data:`_FINAL_CHORDS` of them, until its gradient is below this share of ``tol``, where it
#: stops; else (at the gradient's rounding floor, say) its last step is a Newton step with a
#: new Hessian of every row, as the multinomial problems' and ``LogisticRegressionCV``'s
#: are. Before, that Newton step ended every binary problem, though near the optimum the
#: factor at hand already contracts the gradient fast: its Hessian was a sixth of a
#: problem's. Captured calls of 1,500 neighbouring W1 10 mm spheres (``LogisticRegression``,
#: ``tol = 1e-10``, one thread, alternated call by call with the code before, six rounds):
#: 5.85 Hessians and 16.4 iterations per problem against 6.83 and 14.7, 0.93-0.96 of the
#: kernel's time; every decision nearer the optimum's (the same calls at ``tol = 1e-15``,
#: 500 iterations) than before: at most 4.5e-11 from it against 1.2e-10, no sign changed.
#: Shares of 1e-3 and 1e-2 stopped farther from it (6.8e-10, 6.2e-9). Not in the basis of
#: the training rows, whose Hessians are small and whose warm starts begin near the
#: optimum: a sliding-sphere test problem there took more iterations, chord steps at the
#: rounding floor before the same Newton step
_FINAL_SHARE = 1e-4
_FINAL_CHORDS = 8
#: the largest gradient component below which a multinomial problem that may stop on the
#: proof of its test predictions tries it at each iteration (:func:`_predictions_proven`)
_PROOF_GRADIENT = 1e-3
_SQRT2 = math.sqrt(2.0)
#: the test rows' norms in the metric of a problem's Hessian (:func:`_certified`) are
#: computed again for a new factor whose predictors moved by more than this from where they
#: were computed (else carried over, inflated by ``exp(drift / 2)``)
_NORMS_DRIFT = 0.5
#: rows of :func:`_newton_binary`'s work space (:func:`newton_work`): twelve vectors of the
#: training rows (the signs, predictors, exponentials, trials, residuals, weights and the
#: predictors where the factor and the test rows' norms were formed), the gradient, the step,
#: the test rows' norms, the reciprocals of the factor's diagonal, which rows its Hessian
#: holds, the rows' squared norms (without a certificate, which brings its own) and two
#: vectors of the coordinates for the test log-loss's bound (:func:`_log_loss_bound`)
_WORK_ROWS = 20
_ROW_ZTN = 13  # the predictors where the test rows' norms were computed (kept between calls)
_ROW_TN = 14  # the test rows' norms (kept between calls)
_ROW_INV = 15
_ROW_KEEP = 16
_ROW_A2 = 17
_ROW_V1 = 18
_ROW_V2 = 19
#: a binary problem leaves out of its Hessians (those that steer its steps and, with a
#: certificate, its proofs) the rows whose ``w_i |a_i|^2`` is at most this share of the
#: smallest positive penalty divided by the rows' count (together at most this share of it:
#: with every penalty positive, as a certificate needs, the Hessian used is at least ``1 -
#: _LEFT_OUT`` times the whole one, never above it; an unpenalised intercept's curvature has
#: no such floor, which only the steps feel); a last Newton step, at ``tol``, takes every
#: row (the optimum, which the gradient defines, is the same either way). Captured calls
#: of 400 neighbouring W1 10 mm spheres (``LogisticRegressionCV``, one thread, alternated
#: call by call with the code before): 13% of the rows left out, the same Hessians (-0.2%)
#: and iterations (+0.1%), 89% of the problems proven instead of 88% (the proofs' bounds
#: count the kept rows only),
#: 0.95-0.99 of the time (medians of four comparisons); shares of 0.001 and 0.1 took the
#: same time as 0.01. ``LogisticRegression`` (stop 84; 1,500 neighbouring W1 10 mm spheres'
#: captured calls, ten rounds): the same 14.7 iterations and 6.83 Hessians per problem,
#: decisions within 5e-10 (relative) of those with every row, 0.964 of the time (shares of
#: 0.25 and 1: 0.973, 0.953); nearly separable training sets have many rows of vanishing
#: weight at their later Hessians
_LEFT_OUT = 0.01
#: single precision's unit roundoff, and the share of the smallest penalty that its rounding
#: of the largest entry of the Hessian may reach for a binary problem's Hessians to be summed
#: in it (:func:`_single_precision_safe`)
_SINGLE_ROUNDING = 2.0**-24
_SINGLE_SHARE = 0.01
#: :func:`_log_loss_bound`: a test row whose decision stays within this of 0 over the whole
#: ball is on the log-loss's smooth part (its probabilities at least ``1.7e-15`` from 0 and
#: 1, where scikit-learn's clipping to ``[eps, 1 - eps]`` does not act); one that stays
#: beyond :data:`_FLAT_DECISION`, on the clipped, constant part (``expit(38)`` is 1 in
#: ``float64``); one between, 1-Lipschitz
_SMOOTH_DECISION = 34.0
_FLAT_DECISION = 38.0


@kernel(nogil=True, fastmath=_FASTMATH, inline="always")
def _expit(z):
    """``1 / (1 + exp(-z))`` as scipy's ``expit`` computes it (``exp(z) / (1 + exp(z))``
    below 0), with :mod:`._vector_math`'s ``exp``: a loop over rows that calls it
    vectorises."""
    e = exp_nonpositive(-abs(z))
    return divide(1.0, 1.0 + e) if z >= 0.0 else divide(e, 1.0 + e)


@kernel(nogil=True, fastmath=_FASTMATH)
def _binary_trial(z, dz, s, sign, zt, et):
    """Mean binary log-loss of the predictors ``zt = z + s * dz`` (``sign`` = +-1 per
    sample), which are written to ``zt`` with ``et = exp(-|zt|)`` (from which the
    probabilities and weights follow without another exponential)."""
    n = z.shape[0]
    acc = 0.0
    for i in range(n):  # vectorised (:mod:`._vector_math`)
        v = z[i] + s * dz[i]
        zt[i] = v
        e = exp_nonpositive(-abs(v))
        et[i] = e
        # log(1 + exp(-sign v)) without overflow
        x = -sign[i] * v
        acc += log1p_unit(e) + (x if x > 0.0 else 0.0)
    return acc / n


@kernel(nogil=True, fastmath=_FASTMATH)
def _extrapolate(theta, step, pen, t, sign, z, dz, zt, et, zx, ex, f1):
    """After a full step ``theta + step`` of objective ``f1`` (its predictors ``zt`` and
    ``et = exp(-|zt|)`` from :func:`_binary_trial`; ``dz = A step``): where the objective
    still falls beyond it along ``step`` (its slope there is negative), one Newton step
    along the line from there, ``s = 1 - slope / curvature``. Returns ``(s, loss)`` with
    the trial's predictors in ``zx`` and ``ex`` when the objective at ``s`` is below ``f1``;
    ``(1.0, 0.0)`` otherwise.

    From the origin, Newton's full steps on these problems undershoot for several
    iterations (the optimum's margins are large). Haxby-sized data at 10 mm (1,500
    neighbouring spheres, 5,108 problems, one thread, alternated with the code before):
    17.7 -> 15.2 iterations and 8.9 -> 7.3 Hessians per problem, 0.89-0.90 of the CPU
    time, the same scores. Not used where a problem starts near its optimum: a path of
    ``C`` (``LogisticRegressionCV`` at 10 mm, 150 spheres: 1.06 of the time), the sphere
    before's optimum (binary run-wise betas: 1.11). The same step for the multinomial
    model took more time (W3, 3,000 spheres: 1.05-1.09; 11.4 -> 10.1 iterations, 3.97 ->
    3.89 Hessians per problem: the softmax trial costs about what a chord step saves)."""
    n = z.shape[0]
    d1 = 0.0
    d2 = 0.0
    for i in range(n):
        ei = et[i]
        r = 1.0 / (1.0 + ei)
        prob = r if zt[i] >= 0.0 else ei * r
        d1 += dz[i] * (prob - t[i])
        d2 += dz[i] * dz[i] * (ei * r * r)  # p (1 - p)
    d1 /= n
    d2 /= n
    for j in range(theta.shape[0]):
        d1 += pen[j] * (theta[j] + step[j]) * step[j]
        d2 += pen[j] * step[j] * step[j]
    if not (d1 < 0.0 and d2 > 0.0):
        return 1.0, 0.0
    s = 1.0 - d1 / d2
    pv = 0.0
    for j in range(theta.shape[0]):
        v = theta[j] + s * step[j]
        pv += pen[j] * v * v
    fx = _binary_trial(z, dz, s, sign, zx, ex)
    if fx + 0.5 * pv < f1:
        return s, fx
    return 1.0, 0.0


@kernel(nogil=True, fastmath=_FASTMATH, inline="always")
def squared_row_norms(A, out):
    """``out[i] = |a_i|^2`` for the rows of ``A`` (n, q)."""
    n, q = A.shape
    for i in range(n):
        acc = 0.0
        row = A[i]
        for j in range(q):
            acc += row[j] * row[j]
        out[i] = acc


@kernel(nogil=True, fastmath=_FASTMATH)
def _row_norm(A):
    """Mean Euclidean norm of the rows of ``A`` (the scale of the predictors' rounding)."""
    n, q = A.shape
    acc = 0.0
    for i in range(n):
        r = 0.0
        for j in range(q):
            r += A[i, j] * A[i, j]
        acc += math.sqrt(r)
    return acc / n


@kernel(nogil=True, fastmath=_FASTMATH)
def _newton_step(H, grad, step, inv, whole=True):
    """``step = -H^-1 grad`` by the Cholesky factor ``U`` of the symmetric ``H = U' U`` (its
    upper triangle read, and overwritten by the factor), with the reciprocals of the
    factor's diagonal into ``inv`` (for later solves with it, :func:`._triangular.solve_upper`);
    without ``whole``, only the solve's forward half ``-U^-T grad`` (a proof needs no more:
    :func:`_certified`). False, with ``H`` spoiled, when ``H`` is not positive definite to
    rounding (see :func:`_lu_step`)."""
    if not cholesky_upper_into(H, H):
        return False
    q = grad.shape[0]
    for j in range(q):
        step[j] = -grad[j]
        inv[j] = 1.0 / H[j, j]
    if whole:
        solve_upper(H, inv, q, step, step)
    else:
        forward_upper(H, inv, q, step)
    return True


@kernel(nogil=True, fastmath=_FASTMATH)
def _lu_step(H, grad, step):
    """``step = -H^-1 grad`` by LU, for an ``H`` (upper triangle filled) that is not positive
    definite to rounding."""
    q = H.shape[0]
    for r in range(1, q):
        for c in range(r):
            H[r, c] = H[c, r]
    step[:] = -np.linalg.solve(H, grad)


@kernel(nogil=True, fastmath=_FASTMATH)
def _binary_hessian(A, sw, pen, As, H, a2, cut, keep):
    """``A' diag(sw^2) A + diag(pen)`` into the upper triangle of ``H`` (entries below the
    diagonal near it spoiled), from the design ``A`` (n, q): the rows
    ``sw_i a_i`` into ``As`` (work space, at least (n, q)), then the Gram matrix of their
    columns in outer-product tiles (:func:`._simd.column_gram_upper`). Measured at 162 x 77
    (one thread): 17-18 us, against 28-36 us for the dot products along the samples of the
    scaled columns that it replaced (four by four, :func:`._rows.row_gram`). With ``cut > 0``
    the rows whose ``sw_i^2 a2_i`` is at most ``cut`` (``a2``: the rows' squared norms) are
    left out; ``keep[i]`` is set to 1 for the rows in the sum, 0 for those left out.

    ``As`` may be ``float32``: the scaled rows are then rounded to single precision and their
    products summed in it (sixteen to a vector instead of eight), into the ``float64`` ``H``.
    A Newton step needs only an approximate Hessian when its gradient is exact (chord steps
    use stale ones): W1 10 mm's binary problems (4,800 of neighbouring spheres, captured
    kernel calls) took the same 6.89 Hessians per problem, their decisions within 1.1e-10
    of those from ``float64`` Hessians (at most 229 in size), in 0.87 of the kernel's time.
    Not where the Hessian must bound the curvature from below (the certificates)."""
    n, q = A.shape
    k = 0  # the rows in the sum
    for i in range(n):
        s = sw[i]
        if cut > 0.0 and s * s * a2[i] <= cut:
            keep[i] = 0.0
            continue
        keep[i] = 1.0
        src, dst = A[i], As[k]
        for j in range(q):
            dst[j] = src[j] * s
        k += 1
    column_gram_upper(As, k, q, H, 0.0, 1.0, False, False)  # (its lower triangle: not read)
    for j in range(q):
        H[j, j] += pen[j]


@kernel(nogil=True, fastmath=_FASTMATH)
def _single_precision_safe(A, pen, colsq):
    """Whether the binary Hessians of the design ``A`` (n, q) may be summed in single
    precision (:func:`_binary_hessian`): where single precision's rounding of the largest
    diagonal entry a Hessian can have (at most that at the origin, where every weight
    ``p (1 - p) / n`` is at its largest, ``1 / (4 n)``) is at most :data:`_SINGLE_SHARE` of
    the smallest positive penalty, the floor of the Hessian's eigenvalues in the penalised
    coordinates. Centred raw-scale data pass (W1 at 10 mm: 0.002 of the penalty); features with a large
    common offset and no intercept to absorb it do not: there a Hessian's rounding in
    single precision is as large as the penalty, and Newton's method does not converge from
    it. ``colsq`` (at least q): work space."""
    n, q = A.shape
    for j in range(q):
        colsq[j] = 0.0
    for i in range(n):  # the columns' sums of squares, along the rows (vectorised)
        row = A[i]
        for j in range(q):
            colsq[j] += row[j] * row[j]
    largest = 0.0
    for j in range(q):
        largest = max(largest, colsq[j])
    smallest = np.inf
    for j in range(q):
        if pen[j] > 0.0:
            smallest = min(smallest, pen[j])
    if n == 0 or smallest == np.inf:
        return False
    return _SINGLE_ROUNDING * largest / (4.0 * n) <= _SINGLE_SHARE * smallest


@kernel(nogil=True, fastmath=_FASTMATH)
def _newton_binary(
    A, t, pen, scale, theta, tol, max_iter, H, As, extrapolate, cert, work, origin_hessian=False,
    f_start=-1.0, last_chords=False,
):  # fmt: skip
    """Minimise ``mean_i log(1 + exp(-s_i a_i . theta)) + 0.5 * sum_j pen_j theta_j^2``.

    A penalised intercept (liblinear's: a constant column of the design) is a coordinate
    like any other, with its own ``pen_j``; an unpenalised one has ``pen_j = 0``.

    Parameters
    ----------
    A : ndarray (n, q)
        Design (C-contiguous).
    t : ndarray (n,)
        Labels in {0, 1} (``s_i = 2 t_i - 1``).
    pen : ndarray (q,)
        Diagonal of the penalty.
    scale : ndarray (q,)
        Scale of every coordinate: the problem stops once ``|grad_j| <= tol * scale_j`` for
        every ``j``, after its last steps (one Newton step; with ``last_chords``, chord
        steps down to :data:`_FINAL_SHARE` times that, or one Newton step where they do not
        contract the gradient fast), or when a step no longer changes ``theta``.
    theta : ndarray (q,)
        Starting point, overwritten by the solution.
    tol : float
    max_iter : int
    H : ndarray (q, q)
        Work space for the Hessians (C-contiguous); on return it holds the Cholesky factor
        (upper, ``H = R' R``) of the last Hessian factored when ``factored``.
    As : ndarray (at least (n, q))
        Work space for the Hessians (:func:`_binary_hessian`), C-ordered with unit column
        stride; ``float32`` for Hessians summed in single precision (without a certificate
        only: its proofs need Hessians exact to double's rounding).
    extrapolate : bool
        Whether a full step is followed by a Newton step along its line where the
        objective still falls (:func:`_extrapolate`): fewer iterations from a distant start
        (the origin), more from a near one (a path of ``C``, where it breaks the runs of
        chord steps).
    cert : tuple ``(Ct, a2, Tw, out, eps, Ts, abar)``
        A certificate of the test scores, to stop before ``tol`` (:func:`_certified`;
        :func:`certificate` makes one, :func:`no_certificate` none: ``Ct`` with no
        columns). ``Ct`` ``(q, m)``: the test rows, transposed; ``a2`` ``(n,)``: the squared
        norms of the rows of ``A`` (also the line search's scale of rounding); ``Tw`` ``(max(q,
        2), m)``: work space (both C-contiguous); ``out`` ``(3,)``: on return, the proven bound
        (0 when the problem ran to ``tol``) and 1 when it stopped on the certificate;
        ``out[2]``, read and written, the smallest penalty of the problem whose factor gave
        the test rows' norms held in ``work`` (0: none; the caller sets it to 0 whenever
        ``A``, the test rows or ``work`` change between calls: a problem on the same rows
        starts from those norms, see :func:`_certified`). ``eps >= 0``: stop once the mean
        test log-loss (scikit-learn's ``neg_log_loss``) is proven within ``eps`` of the
        optimum's (:func:`_log_loss_bound`, the bound in ``out[0]``); ``eps < 0``: stop once
        every test decision's sign is proven the optimum's (bound 0). ``Ts`` ``(2, m)``: the
        test rows' signs (+-1) and their distances from the test rows' mean ``abar``
        ``(q,)``. Needs every ``pen_j > 0``. With a certificate or
        without, the Hessians but a last Newton step's leave out the rows of negligible
        weight (:data:`_LEFT_OUT`; none when no penalty is positive): they steer the steps
        and the proofs, which a lower Hessian keeps sound; a last Newton step, at ``tol``,
        takes every row.
    work : ndarray
        Work space of :func:`newton_work` (at least ``n`` rows, ``q`` columns and ``m`` test
        rows): the iterations' vectors, with no allocation per call.
    origin_hessian : bool, default=False
        Whether ``H`` already holds, in its upper triangle, the Hessian at the start, which
        must then be the origin (``theta = 0``: every weight is ``1 / (4 n)``), so that the
        first iteration does not form it (:func:`logistic_block` sums it from the folds'
        test blocks).
    f_start : float, default=-1.0
        With ``f_start >= 0``: the mean loss at ``theta``, whose predictors ``A theta`` and
        their ``exp(-|A theta|)`` are in rows 1 and 2 of ``work`` (where this function
        leaves them for the point it returns: a path of problems on the same rows, each
        starting where the one before stopped or from a point whose predictors the caller
        computed, does not compute them again); else they are computed here.
    last_chords : bool, default=False
        Whether, without a certificate, the gradient below ``tol`` is taken on down to
        :data:`_FINAL_SHARE` times it by chord steps where they contract it fast, instead of
        by one Newton step with a new Hessian. ``H`` then need not hold the factor of a
        Hessian at the returned point (a path of ``C`` that starts from that factor, as
        :func:`._logistic_cv_kernel._path_start`, needs the Newton step).

    Returns
    -------
    iterations : int
    converged : bool
        False when still running after ``max_iter`` iterations.
    hessians : int
        Hessians factored (the other iterations were chord steps).
    factored : bool
        Whether ``H`` holds the factor of the last Hessian computed (False when that one was
        not positive definite to rounding and was solved by LU).
    loss : float
        The mean loss at the returned ``theta``, whose predictors ``A theta`` and their
        ``exp(-|A theta|)`` are left in rows 1 and 2 of ``work``.
    """
    n, q = A.shape
    if work.shape[0] < _WORK_ROWS or work.shape[1] < max(n, q, cert[0].shape[1]):
        raise ValueError("_newton_binary: work space smaller than newton_work(n, q, m)")
    if cert[0].shape[1] > 0 and As.itemsize < 8:
        raise ValueError("_newton_binary: a certificate needs Hessians in float64 (As)")
    # every array borrowed (:func:`._borrow.borrowed`: no reference counts; the caller holds
    # them, and none is returned or kept): the counts of its views and of its helpers' array
    # arguments took 2.1% of a ``LogisticRegressionCV`` profile
    A, t, pen, scale, theta = borrowed(A), borrowed(t), borrowed(pen), borrowed(scale), borrowed(theta)
    H, As, work = borrowed(H), borrowed(As), borrowed(work)
    Ct, a2, Tw, cert_out, cert_eps, Ts, abar = cert
    Ct, a2, Tw, cert_out = borrowed(Ct), borrowed(a2), borrowed(Tw), borrowed(cert_out)
    Ts, abar = borrowed(Ts), borrowed(abar)
    sign = work[0, :n]
    for i in range(n):
        sign[i] = 2.0 * t[i] - 1.0
    # the predictors, the trial's and the extrapolation's, each with its exp(-|z|) in the
    # row after it; ``zr`` tracks the row that holds the current ones (they are swapped)
    z = work[1, :n]
    e = work[2, :n]
    zt = work[3, :n]
    et = work[4, :n]
    zx = work[5, :n]
    ex = work[6, :n]
    zr, ztr, zxr = 1, 3, 5
    dz = work[7, :n]
    resid = work[8, :n]
    sw = work[9, :n]
    grad = work[10, :q]
    step = work[11, :q]
    inv = work[_ROW_INV, :q]  # reciprocals of the factor's diagonal
    v1 = work[_ROW_V1, :q]  # (the test log-loss's bound)
    v2 = work[_ROW_V2, :q]
    keep = work[_ROW_KEEP, :n]  # the rows in the factor's Hessian
    at_origin = True
    for j in range(q):
        at_origin = at_origin and theta[j] == 0.0
    if f_start >= 0.0:  # the caller's, in rows 1 and 2
        f_loss = f_start
    elif at_origin:  # every predictor 0 (no pass over the rows)
        z[:] = 0.0
        e[:] = 1.0
        f_loss = log1p_unit(1.0)
    else:
        z[:] = 0.0
        _dots(A, theta, dz)
        f_loss = _binary_trial(z, dz, 1.0, sign, zt, et)
        z, zt = zt, z
        e, et = et, e
        zr, ztr = ztr, zr
    inv_n = 1.0 / n
    have = False  # H holds the Cholesky factor of an earlier iteration's Hessian
    hessians = 0
    s = 0.0
    gprev = 0.0
    certify = Ct.shape[1] > 0
    if not certify:  # the rows' squared norms (a certificate brings them)
        a2 = work[_ROW_A2, :n]
        squared_row_norms(A, a2)
    row_norm = 0.0  # (the line search's scale of rounding)
    for i in range(n):
        row_norm += math.sqrt(a2[i])
    row_norm /= n
    cert_out[0] = 0.0
    cert_out[1] = 0.0
    lam = np.inf  # the smallest penalty (every one positive with a certificate)
    lam_cut = np.inf  # the smallest positive one: the scale of the rows left out
    for j in range(q):
        lam = min(lam, pen[j])
        if pen[j] > 0.0:
            lam_cut = min(lam_cut, pen[j])
    z0 = work[12, :n]  # the predictors where the factor's Hessian was formed
    ztn = work[_ROW_ZTN, :n]  # and where the test rows' norms were computed
    tn = work[_ROW_TN, : Ct.shape[1]]
    tn_ready = certify and cert_out[2] > 0.0  # norms from an earlier problem on these rows
    m0 = 0.0
    chords_at_tol = last_chords and not certify  # (:data:`_FINAL_SHARE`)
    abar_for = -1  # the factor (its count) whose solve with the test rows' mean v1 holds (:func:`_certified`)
    final_chords = 0  # chord steps taken with the gradient below tol
    for it in range(max_iter):
        for i in range(n):  # residuals
            ei = e[i]
            r = 1.0 / (1.0 + ei)
            prob = r if z[i] >= 0.0 else ei * r
            resid[i] = (prob - t[i]) * inv_n
        pen_val = 0.0
        theta_sq = 0.0
        for j in range(q):
            grad[j] = pen[j] * theta[j]
            pen_val += pen[j] * theta[j] * theta[j]
            theta_sq += theta[j] * theta[j]
        _add_combination(A, resid, grad)
        gnorm = 0.0
        done = True
        for j in range(q):
            gnorm = max(gnorm, abs(grad[j]))
            done = done and abs(grad[j]) <= tol * scale[j]
        if done and chords_at_tol:  # its last steps
            final = True
            for j in range(q):
                final = final and abs(grad[j]) <= _FINAL_SHARE * tol * scale[j]
            if final:
                _predictors_to_rows(work, zr, n)
                return it, True, hessians, have, f_loss
        chord = (
            have and s >= 1.0 and gnorm <= _CHORD_GAIN * gprev
            and (not done or (chords_at_tol and final_chords < _FINAL_CHORDS))
        )  # fmt: skip
        if chord and done:  # a chord step towards _FINAL_SHARE * tol
            final_chords += 1
            done = False
        if have and certify:  # the proof with the factor at hand (at tol too: then no last step)
            for j in range(q):
                step[j] = -grad[j]
            forward_upper(H, inv, q, step)  # the step's forward half, all the proof needs
            stop, tn_ready, abar_ready = _certified(
                H, step, z, z0, ztn, m0, Ct, Tw, tn, tn_ready, theta, cert_eps, cert_out, lam, keep, inv, Ts, abar,
                v1, v2, abar_for == hessians,
            )  # fmt: skip
            abar_for = hessians if abar_ready else abar_for
            if stop:
                _predictors_to_rows(work, zr, n)
                return it, True, hessians, have, f_loss
            if chord:  # its back half: the chord step
                back_upper(H, inv, q, step)
        elif chord:
            for j in range(q):
                step[j] = -grad[j]
            solve_upper(H, inv, q, step, step)
        if not chord:
            # else the last full step shrank the gradient enough: the step from the factor
            # of an earlier Hessian (a chord step) instead of a new one; a last step at tol
            # without chord steps is a Newton step (to rounding level)
            for i in range(n):  # the square roots of the weights p (1 - p) / n
                ei = e[i]
                sw[i] = math.sqrt(ei * inv_n) * (1.0 / (1.0 + ei))
            # the rows of negligible weight left out but at the last step (:data:`_LEFT_OUT`)
            cut = _LEFT_OUT / n * lam_cut if lam_cut < np.inf and not done else -1.0
            if not (origin_hessian and it == 0):
                _binary_hessian(A, sw, pen, As, H, a2, cut, keep)
            else:
                keep[:] = 1.0
            hessians += 1
            proving = certify and not done
            # with a proof to try, the Newton step's forward half first: the proof needs only it
            have = _newton_step(H, grad, step, inv, not proving)
            if not have:
                _binary_hessian(A, sw, pen, As, H, a2, -1.0, keep)
                _lu_step(H, grad, step)
            elif proving:
                m0 = _leverage_bound(a2, sw, lam, keep)
                for i in range(n):
                    z0[i] = z[i]
                stop, tn_ready, abar_ready = _certified(
                    H, step, z, z0, ztn, m0, Ct, Tw, tn, tn_ready, theta, cert_eps, cert_out, lam, keep, inv, Ts, abar,
                    v1, v2, abar_for == hessians,
                )  # fmt: skip
                abar_for = hessians if abar_ready else abar_for
                if stop:
                    _predictors_to_rows(work, zr, n)
                    return it, True, hessians, have, f_loss
                back_upper(H, inv, q, step)  # the back half: the Newton step
        gprev = gnorm
        slope = 0.0
        for j in range(q):
            slope += grad[j] * step[j]
        _dots(A, step, dz)
        f0 = f_loss + 0.5 * pen_val
        slack = 16.0 * _EPS * (abs(f0) + row_norm * math.sqrt(theta_sq))
        # Armijo backtracking from the full step
        s = 1.0
        for _ls in range(_HALVINGS):
            pv = 0.0
            for j in range(q):
                v = theta[j] + s * step[j]
                pv += pen[j] * v * v
            ft = _binary_trial(z, dz, s, sign, zt, et)
            if ft + 0.5 * pv <= f0 + _ARMIJO * s * slope + slack:
                break
            s *= 0.5
        else:
            s = 0.0
        if extrapolate and s == 1.0 and not done:
            sx, fx = _extrapolate(theta, step, pen, t, sign, z, dz, zt, et, zx, ex, ft + 0.5 * pv)
            if sx > 1.0:  # the extrapolation's trial replaces the full step's
                s = sx
                ft = fx
                zt, zx = zx, zt
                et, ex = ex, et
                ztr, zxr = zxr, ztr
        if s > 0.0:  # the trial's predictors and exponentials become the current ones
            f_loss = ft
            z, zt = zt, z
            e, et = et, e
            zr, ztr = ztr, zr
        dmax = 0.0
        tmax = 0.0
        for j in range(q):
            delta = s * step[j]
            theta[j] += delta
            dmax = max(dmax, abs(delta))
            tmax = max(tmax, abs(theta[j]))
        # a step that no longer changes the parameters: nothing left to gain
        if done or dmax <= 1e-15 * (1.0 + tmax):
            _predictors_to_rows(work, zr, n)
            return it + 1, True, hessians, have, f_loss
    _predictors_to_rows(work, zr, n)
    return max_iter, False, hessians, have, f_loss


@kernel(nogil=True, inline="always")
def _predictors_to_rows(work, zr, n):
    """The predictors in row ``zr`` of :func:`_newton_binary`'s work space and their
    ``exp(-|z|)`` in the row after it, copied to rows 1 and 2 (where it returns them)."""
    if zr != 1:
        for i in range(n):
            work[1, i] = work[zr, i]
            work[2, i] = work[zr + 1, i]


@kernel(nogil=True)
def newton_work(n, q, m):
    """:func:`_newton_binary`'s work space for designs of at most ``n`` rows and ``q``
    columns and at most ``m`` test rows, made once for many problems."""
    return np.empty((_WORK_ROWS, max(n, q, m, 1)))


@kernel(nogil=True)
def no_certificate(q):
    """:func:`_newton_binary`'s ``cert`` for none (any ``q``: its arrays are not read)."""
    return np.empty((q, 0)), np.empty(0), np.empty((q, 0)), np.zeros(3), 0.0, np.empty((2, 0)), np.empty(q)


@kernel(nogil=True)
def certificate(Ct, a2, t_test, out, eps):
    """:func:`_newton_binary`'s ``cert`` for the test rows ``Ct`` ``(q, m)`` (transposed,
    C-contiguous) with labels ``t_test`` in {0, 1}, the training rows' squared norms ``a2``,
    the output ``out`` ``(3,)`` and ``eps`` (see ``cert`` there): with its work space, the test
    rows' signs, their mean and each one's distance from it."""
    q, m = Ct.shape
    Ts = np.empty((2, m))
    abar = np.zeros(q)
    for j in range(q):
        for a in range(m):
            abar[j] += Ct[j, a]
    for j in range(q):
        abar[j] /= max(m, 1)
    for a in range(m):
        Ts[0, a] = 2.0 * t_test[a] - 1.0
        Ts[1, a] = 0.0
    for j in range(q):
        for a in range(m):
            dev = Ct[j, a] - abar[j]
            Ts[1, a] += dev * dev
    for a in range(m):
        Ts[1, a] = math.sqrt(Ts[1, a])
    # the work space: at least two rows (:func:`_log_loss_bound`), q for the test rows' norms
    return Ct, a2, np.empty((max(q, 2), m)), out, eps, Ts, abar


@kernel(nogil=True, fastmath=_FASTMATH)
def _leverage_bound(a2, sw, lam, keep):
    """An upper bound on ``max_i |a_i|_{H^-1}`` over the rows in ``H`` (``keep[i] > 0``)
    for ``H = sum_{kept} sw_i^2 a_i a_i' + P`` with ``P >= lam I``: ``H >= sw_i^2 a_i a_i' +
    lam I``, whose inverse gives ``a_i`` the squared norm ``|a_i|^2 / (lam + sw_i^2
    |a_i|^2)`` (Sherman and Morrison); ``a2`` holds the ``|a_i|^2``."""
    m = 0.0
    for i in range(a2.shape[0]):
        if keep[i] > 0.0:
            m = max(m, a2[i] / (lam + sw[i] * sw[i] * a2[i]))
    return math.sqrt(m)


@kernel(nogil=True, fastmath=_FASTMATH, inline="always")
def _certified(
    H, half, z, z0, ztn, m0, Ct, Tw, tn, tn_ready, theta, eps, out, lam, keep, inv, Ts, abar, v1, v2, v_ready,
):  # fmt: skip
    """Whether the test score at ``theta`` is proven close enough to the optimum's to stop
    (:func:`_newton_binary`'s ``cert``), and whether ``tn`` holds the test rows' norms.

    ``H`` holds the factor of ``H0``, the Hessian formed where the predictors were ``z0``
    from the rows ``keep[i] > 0`` (:data:`_LEFT_OUT`: rows of negligible weight may be left
    out, which only lowers it); ``half = -U^-T grad``, the forward half of the Newton step's
    solve with that factor ``H0 = U' U``, at ``theta`` (predictors ``z``): ``nu^2 = grad'
    H0^-1 grad = |half|^2`` (the back half, which only a step needs, is not taken before the
    proof); ``m0`` bounds those rows' ``|a_i|_{H0^-1}`` (:func:`_leverage_bound`). A
    sample's weight ``p (1 - p)`` changes by at most a factor ``exp(|dz|)`` when its
    predictor moves by ``dz`` (the derivative of its logarithm is ``1 - 2p``), so along
    ``theta + t u`` (``|u|_H0 = 1``)
    the Hessian, at least its kept rows' part plus the penalty, is at least ``exp(-(drift + t
    m0)) H0``, with ``drift = max |z_i - z0_i|`` over the kept rows (the penalty and the
    rows left out only help). The objective's slope along ``u`` then rises from at least
    ``-nu`` (``nu = |grad|_{H0^-1}``) by at least ``exp(-drift) (1 - exp(-t m0)) / m0``, so
    the optimum lies within ``r = -log(1 - x) / m0`` of ``theta`` in ``H0``'s norm when
    ``x = nu m0 exp(drift) < 1``, and a test decision within ``|a_t|_{H0^-1} r`` of its
    value there.

    With ``eps >= 0`` the mean test log-loss is bounded over that ball by
    :func:`_log_loss_bound` (two forward solves with the factor, ``inv`` the reciprocals of
    its diagonal; ``Ts``, ``abar``: see :func:`certificate`; ``v1``, ``v2``: work vectors
    of ``q``), and the problem stops when that bound is at most ``eps``. With ``eps < 0``
    each test decision is bounded by its row's norm in the factor's metric (``tn``).

    The test rows' norms ``tn`` (forward solves with a factor) are carried to later factors
    by the same argument. Take a factor formed where the predictors moved by ``delta`` (over
    every row) from where the norms' factor was, with penalties ``lam`` where that one had
    ``lam_tn`` (its smallest penalty, ``out[2]``; the same rows ``A``). The rows in both
    weigh at most ``exp(delta)`` times more in the norms' Hessian; a row there and left out
    of the new one weighed at most ``exp(delta)`` times its new ``w_i |a_i|^2 <= s lam / n``
    (``s`` = :data:`_LEFT_OUT`), at most ``s exp(delta) lam`` for all of them together. So
    the norms' Hessian is at most ``max(exp(delta), s exp(delta) + lam_tn / lam)`` times the
    new one, and the new norms at most the square root of that times the carried ones
    (taken in logarithms: ``delta`` may be large). Within a problem the norms are computed
    again once ``delta`` exceeds :data:`_NORMS_DRIFT`; norms from an earlier problem (the ``C`` before
    on a path: ``lam_tn > lam``) are tried first whatever the factor, and computed again
    when the proof fails with them. The bound is inflated by ``1e-6`` of itself plus
    ``1e-12`` for the rounding of its terms. What it does not bound is the rounding of the
    factor itself: the Cholesky factor is exact for a matrix within a small relative error
    of ``H0`` (about ``q eps`` times its scaled condition number, in ``H0``'s metric), which
    would enlarge ``r`` by that share. Measured against the optima (raw-scale W1 10 mm
    problems, ``C`` from 1e-4 to 1e4, and the tests' problems): the true mean error at most
    0.53 of the bound.

    ``eps >= 0``: stop when the test log-loss's bound is at most ``eps`` (``out[0]`` gets
    it); ``eps < 0``: stop when every test decision is farther from 0 than its bound (its
    sign is proven; ``out[0] = 0``). ``v_ready``: whether ``v1`` holds the solve of
    :func:`_log_loss_bound` with ``abar`` for this factor (returned: whether it does now)."""
    n = z.shape[0]
    q = half.shape[0]
    nu2 = 0.0
    for j in range(q):
        nu2 += half[j] * half[j]
    drift = 0.0
    for i in range(n):
        if keep[i] > 0.0:
            drift = max(drift, abs(z[i] - z0[i]))
    x = math.sqrt(max(nu2, 0.0)) * m0 * math.exp(drift)
    if not x < 1.0:
        return False, tn_ready, v_ready
    if x < 1e-12:  # -log(1 - x) / x <= 1 + x
        r = math.sqrt(max(nu2, 0.0)) * math.exp(drift) * (1.0 + 1e-12)
    else:
        r = -math.log1p(-x) / m0
    if eps >= 0.0:
        bound = _log_loss_bound(H, inv, Ct, Tw, Ts, abar, theta, r, lam, v1, v2, v_ready)
        v_ready = True  # v1 holds the factor's solve with abar
        if bound <= eps:
            out[0] = bound
            out[1] = 1.0
            return True, tn_ready, v_ready
        return False, tn_ready, v_ready
    carried = False  # norms from an earlier problem
    grow = 0.0  # the logarithm of their inflation
    if tn_ready:
        delta = 0.0
        for i in range(n):
            delta = max(delta, abs(z0[i] - ztn[i]))
        carried = out[2] != lam
        grow = 0.5 * (delta + math.log(max(1.0, _LEFT_OUT + out[2] / lam * math.exp(-delta))))
        tn_ready = carried or delta <= _NORMS_DRIFT
    for _attempt in range(2):
        if not tn_ready:
            column_norms_upper(H, Ct, Tw, tn)
            for i in range(n):
                ztn[i] = z0[i]
            out[2] = lam
            tn_ready = True
            carried = False
            grow = 0.0
        if _signs_proven(Ct, Tw, tn, theta, r * math.exp(grow) * (1.0 + 1e-6), out):
            return True, tn_ready, v_ready
        if not carried:
            return False, tn_ready, v_ready
        tn_ready = False  # the carried norms did not prove it: this factor's own
    return False, tn_ready, v_ready


@kernel(nogil=True, fastmath=_FASTMATH, inline="always")
def _test_decisions(Ct, theta, dec):
    """``dec[a] = Ct[:, a] . theta`` for the test rows ``Ct`` (transposed)."""
    q, m = Ct.shape
    for a in range(m):
        dec[a] = 0.0
    for j in range(q):
        for a in range(m):
            dec[a] += Ct[j, a] * theta[j]


@kernel(nogil=True, fastmath=_FASTMATH, inline="always")
def _log_loss_bound(H, inv, Ct, Tw, Ts, abar, theta, r, lam, v, u, v_ready=False):
    """A bound on ``|L(theta') - L(theta)|`` for every ``theta'`` within ``r`` of ``theta`` in
    the metric of ``H0 = U' U`` (``H`` holds ``U``, ``inv`` the reciprocals of its diagonal;
    ``H0 >= lam I``), ``L`` the mean log-loss of the ``m`` test rows ``Ct`` (transposed)
    with scikit-learn's clipping of the probabilities to ``[eps, 1 - eps]``.

    With ``d = theta' - theta``, ``abar`` the test rows' mean and ``e_t = a_t - abar``
    (``|e_t|`` in ``Ts[1]``, the signs ``s_t`` in ``Ts[0]``): ``a_t . d = abar . d + e_t .
    d``, so ``|a_t . d| <= b_t = |abar|_{H0^-1} r + |e_t| r / sqrt(lam)`` (one forward
    solve for ``abar``, no test row's own). A row whose decision stays within
    :data:`_SMOOTH_DECISION` of 0 over the ball is on the loss's smooth part, where
    ``l'(z) = -s_t expit(-s_t z)`` and ``0 < l'' <= 1/4``: Taylor's theorem along the
    segment gives those rows' mean loss within ``|g . d| + (1/8m) sum_t (a_t . d)^2``, with
    ``g = (1/m) sum_t l'_t a_t`` (``|g . d| <= |g|_{H0^-1} r``: the second forward solve)
    and ``sum_t (a_t . d)^2 = m (abar . d)^2 + sum_t (e_t . d)^2`` (the ``e_t`` sum to zero,
    up to the computed mean's rounding, which the inflation below covers) ``<= (m
    |abar|^2_{H0^-1} + sum_t |e_t|^2 / lam) r^2``. A row that stays beyond
    :data:`_FLAT_DECISION` is on the clipped, constant part; one between, the loss being
    1-Lipschitz in the decision, moves by at most ``b_t``. So the bound is the mean of those
    terms, inflated by ``1e-6`` of itself plus ``1e-12`` for their rounding. Against
    the mean of the test rows' norms times ``r`` (Lipschitz in every row) it needs no
    test row's norm, and the first-order term's test rows partly cancel: on raw-scale W1
    10 mm inner problems it allows a ``r`` 2.5-9 times larger at every ``C``. ``Tw``: work
    space (its first two rows); ``v``, ``u``: work vectors of ``q``; with ``v_ready``, ``v``
    already holds ``U^-T abar`` (an earlier call with the same factor), whose solve is then
    not repeated."""
    q, m = Ct.shape
    if not v_ready:
        for j in range(q):
            v[j] = abar[j]
        forward_upper(H, inv, q, v)
    mean2 = 0.0  # |abar|^2 in H0's inverse metric
    for j in range(q):
        mean2 += v[j] * v[j]
    mean_r = math.sqrt(mean2) * r
    dev_r = r / math.sqrt(lam)
    dec = Tw[0]
    slope = Tw[1]
    _test_decisions(Ct, theta, dec)
    lipschitz = 0.0
    dev2 = 0.0
    for a in range(m):  # vectorised (:mod:`._vector_math`'s exp, not the C library's)
        e = Ts[1, a]
        dev2 += e * e
        b = mean_r + e * dev_r
        smooth = abs(dec[a]) + b <= _SMOOTH_DECISION
        slope[a] = -Ts[0, a] * _expit(-Ts[0, a] * dec[a]) if smooth else 0.0
        if not smooth and abs(dec[a]) - b < _FLAT_DECISION:
            lipschitz += b
    for j in range(q):
        acc = 0.0
        for a in range(m):
            acc += Ct[j, a] * slope[a]
        u[j] = acc
    forward_upper(H, inv, q, u)
    g2 = 0.0  # |m g|^2 in H0's inverse metric
    for j in range(q):
        g2 += u[j] * u[j]
    bound = (math.sqrt(g2) * r + 0.125 * (m * mean2 + dev2 / lam) * r * r + lipschitz) / m
    return bound * (1.0 + 1e-6) + 1e-12


@kernel(nogil=True, fastmath=_FASTMATH, inline="always")
def _signs_proven(Ct, Tw, tn, theta, r, out):
    """:func:`_certified`'s test of the test predictions, the optimum within ``r`` of
    ``theta`` in the metric in which the test rows ``Ct`` have norms at most ``tn``: whether
    every test decision is farther from 0 than its bound (``out[0] = 0``, ``out[1] = 1``
    when so). ``Tw``: work space (its first row)."""
    m = Ct.shape[1]
    _test_decisions(Ct, theta, Tw[0])  # into the work space's first row
    for a in range(m):
        if not abs(Tw[0, a]) > tn[a] * r + 1e-12:
            return False
    out[0] = 0.0
    out[1] = 1.0
    return True


@kernel(nogil=True, fastmath=_FASTMATH, inline="always")
def _add_combination(A, c, out):
    """``out += A' c`` (``A`` (n, p)): the rows of ``A`` four at a time, so that each load
    and store of ``out`` serves four (compiled loops: cheaper than a BLAS call at the sizes
    of one problem)."""
    n, p = A.shape
    i = 0
    while i + 4 <= n:
        four_axpy(A, i, i + 1, i + 2, i + 3, c[i], c[i + 1], c[i + 2], c[i + 3], out, p)
        i += 4
    for r in range(i, n):
        cr = c[r]
        for j in range(p):
            out[j] += A[r, j] * cr


@kernel(nogil=True, fastmath=_FASTMATH, inline="always")
def _dots(A, v, out):
    """``out = A v`` (``A`` (n, p)): the rows of ``A`` eight at a time, then four, so that each
    load of ``v`` serves several."""
    n, p = A.shape
    i = 0
    while i + 8 <= n:
        eight_dots(A, i, v, p, out)
        i += 8
    while i + 4 <= n:
        out[i], out[i + 1], out[i + 2], out[i + 3] = four_dots(A, i, i + 1, i + 2, i + 3, v, p)
        i += 4
    for r in range(i, n):
        acc = 0.0
        for j in range(p):
            acc += A[r, j] * v[j]
        out[r] = acc


@kernel(nogil=True, fastmath=_FASTMATH, inline="always")
def _rows_times(G, A, out):
    """``out = G A`` for a few rows ``G`` (m, n) and ``A`` (n, p)."""
    for k in range(G.shape[0]):
        o = out[k]
        o[:] = 0.0
        _add_combination(A, G[k], o)


@kernel(nogil=True, fastmath=_FASTMATH, inline="always")
def _times_rows(S, A, out):
    """``out = S A'`` for a few rows ``S`` (m, p) and ``A`` (n, p)."""
    for k in range(S.shape[0]):
        _dots(A, S[k], out[k])


@kernel(nogil=True, fastmath=_FASTMATH)
def _softmax_trial(U, dU, s, y, Ut, Pt, work):
    """Mean softmax cross-entropy of the predictors ``Ut = U + s * dU`` of the first ``K - 1``
    classes (``(K - 1, n)``; the last class's is minus their sum), written to ``Ut`` with
    the class probabilities ``Pt`` ``(K, n)`` (``work``: ``(2, n)``).

    Class by class along the samples, so that the loops over the samples are vectorised
    with the polynomial ``exp`` and ``log`` of :mod:`._vector_math`. W3's 28 samples and 4
    classes, in a compiled loop (one thread): 0.27 us against 2.0 us with the C library's
    functions, sample by sample."""
    m, n = U.shape
    # (two-dimensional indexing throughout: row views would cost reference counts)
    for i in range(n):  # the last class's predictors, then its probabilities
        Pt[m, i] = 0.0
    for k in range(m):
        for i in range(n):
            v = U[k, i] + s * dU[k, i]
            Ut[k, i] = v
            Pt[m, i] -= v
    for i in range(n):  # the largest predictor of each sample
        work[0, i] = Pt[m, i]
    for k in range(m):
        for i in range(n):
            work[0, i] = max(work[0, i], Ut[k, i])
    for i in range(n):  # the exponentials and their sums
        e = exp_nonpositive(Pt[m, i] - work[0, i])
        Pt[m, i] = e
        work[1, i] = e
    for k in range(m):
        for i in range(n):
            e = exp_nonpositive(Ut[k, i] - work[0, i])
            Pt[k, i] = e
            work[1, i] += e
    acc = 0.0
    for i in range(n):
        acc += log_normal(work[1, i]) + work[0, i]
        work[1, i] = divide(1.0, work[1, i])
    for k in range(m + 1):
        for i in range(n):
            Pt[k, i] *= work[1, i]
    for i in range(n):  # minus the predictor of each sample's class
        yi = y[i]
        if yi < m:
            acc -= Ut[yi, i]
        else:
            for k in range(m):
                acc += Ut[k, i]
    return acc / n


@kernel(nogil=True, fastmath=_FASTMATH)
def _multinomial_penalty(Theta, Step, pen):
    """The coefficients ``(c0, c1, c2)`` of the penalty along a step, ``0.5 * (sum_k |W_k|^2 +
    |sum_k W_k|^2) = c0 + c1 s + c2 s^2`` (weighted by ``pen``) for the rows ``W = Theta + s
    Step`` ``(K - 1, p)``: one pass for the whole line search."""
    m, p = Theta.shape
    c0 = 0.0
    c1 = 0.0
    c2 = 0.0
    for j in range(p):
        tt = 0.0
        ts = 0.0
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        for k in range(m):
            t = Theta[k, j]
            d = Step[k, j]
            tt += t
            ts += d
            a0 += t * t
            a1 += t * d
            a2 += d * d
        c0 += pen[j] * (a0 + tt * tt)
        c1 += pen[j] * (a1 + tt * ts)
        c2 += pen[j] * (a2 + ts * ts)
    return 0.5 * c0, c1, 0.5 * c2


@kernel(nogil=True, fastmath=_FASTMATH)
def _multinomial_hessian(A, P, pen, c, Ac, H):
    """Upper triangle of the Hessian of the mean softmax cross-entropy on the sum-to-zero
    subspace plus the penalty's, into ``H`` ``((K-1) p, (K-1) p)``: blocks
    ``A' diag(c_kl) A`` with ``c_kl = M_kl - M_kK - M_Kl + M_KK``, ``M = diag(P) - P P'``
    (per sample, over ``n``), and ``pen`` (twice on the diagonal blocks). Each block is
    symmetric: formed in outer-product tiles (:func:`._simd.column_products_upper`) and
    mirrored where the Hessian's upper triangle holds all of it."""
    n, p = A.shape
    m = P.shape[0] - 1
    inv_n = 1.0 / n
    for k in range(m):
        for l in range(k, m):
            for i in range(n):
                pk = P[k, i]
                pl = P[l, i]
                pK = P[m, i]
                v = (pk + pl) * pK + pK * (1.0 - pK) - pk * pl
                if k == l:
                    v += pk
                c[i] = v * inv_n
            for i in range(n):  # the block A' diag(c) A (symmetric) in outer-product tiles
                for j in range(p):
                    Ac[i, j] = c[i] * A[i, j]
            block = H[k * p : (k + 1) * p, l * p : (l + 1) * p]
            column_products_upper(Ac, A, n, p, block, 0.0, 1.0, False, False)
            if k == l:
                for r in range(p):
                    block[r, r] += 2.0 * pen[r]
            else:  # all of the block is in the upper triangle: the rest of its lower part
                for r in range(1, p):
                    for cc in range(r):
                        block[r, cc] = block[cc, r]
                for r in range(p):
                    block[r, r] += pen[r]


@kernel(nogil=True, fastmath=_FASTMATH)
def _origin_step(A, n_classes, pen, Grad, S, Step):
    """The Newton step ``Step`` ``(K - 1, p)`` of the multinomial problem at the origin,
    where every class probability is ``1 / K``: the Hessian is then
    ``(I + 11') kron (A' A / (n K) + diag(pen))``, so the step is
    ``-(I + 11')^-1 Grad S^-1`` with ``S = A' A / (n K) + diag(pen)`` (``(p, p)``, one
    Cholesky factor instead of one of size ``(K - 1) p``); False when ``S`` is not positive
    definite to rounding."""
    n, p = A.shape
    m = n_classes - 1
    column_gram_upper(A, n, p, S, 0.0)
    scale = 1.0 / (n * n_classes)
    for r in range(p):
        for cc in range(r, p):
            S[r, cc] *= scale
        S[r, r] += pen[r]
    if not cholesky_upper_into(S, S):
        return False
    # (I + 11')^-1 = I - 11' / K
    for j in range(p):
        tot = 0.0
        for k in range(m):
            tot += Grad[k, j]
        tot /= n_classes
        for k in range(m):
            Step[k, j] = tot - Grad[k, j]
    for k in range(m):
        cholesky_solve_upper(S, Step[k], Step[k])
    return True


@kernel(nogil=True, fastmath=_FASTMATH)
def _decision_bound(A, y, r, Theta, P, f_obj, lam, centre, xmax, alpha, work):
    """Bounds ``(radius, spread)`` on how far the current point of a multinomial problem is
    from its optimum: ``|G - G*|_F <= radius`` for the weights, ``|u_k - u_l| <= spread`` for
    the changes ``u`` of the intercepts (``(inf, inf)`` when no bound is found). The first
    ``r`` design columns are the features (in :func:`_newton_multinomial`'s use, a fold's
    basis coordinates), all penalised by ``lam``, then the intercept when ``centre``.

    Let ``g_k`` be the basis weights of the ``K`` classes (``g_K = -sum g_k``), ``b_k`` the
    intercepts, ``f_obj`` the objective at the current point, ``P`` its probabilities
    ``(K, n)``:

    - *Weights.* With the intercept minimised out, the objective is ``lam``-strongly convex
      in the weights (its penalty is ``lam/2`` times the squared norm of all ``K`` rows), so
      ``|G - G*|_F^2 <= 2 gap / lam`` for any dual-feasible ``alpha`` (probabilities per
      sample whose sums over the samples equal the class counts, when there is an
      intercept), with the dual ``sum_i H(alpha_i) / n - |R|_F^2 / (2 lam n^2)``,
      ``R = sum_i (alpha_i - e_{y_i}) x_i'`` and ``H`` the entropy. ``alpha`` is ``P`` with
      the intercept's condition restored by moving each class's shortfall between it and the
      last class within one sample; what rounding leaves of it is added to the gap (times
      the largest intercept), and so is a margin of ``1e-13`` of the objectives' size.
    - *Intercepts.* Two classes' weights move apart by at most ``sqrt(2) |G - G*|_F`` (the
      norm of all the rows' changes is at most ``|G - G*|_F``), so the difference of two
      classes' predictors of training sample ``i`` by at most ``sqrt(2) delta_i``, with
      ``delta_i <= delta = |G - G*|_F max_i |x_i|``. Sort the intercepts' changes ``u`` and
      split the classes into the top ones ``T`` and the rest: if the gap between the parts
      exceeded ``sqrt(2) delta + x``, every sample's log-odds of ``T`` would rise by more
      than ``x``, its probability of ``T`` by at least ``m_i (1 - m_i) (1 - exp(-x))``, while
      the intercept's condition at the optimum fixes the sum of those probabilities at the
      class counts of ``T``: the current sum's shortfall ``-e_T`` bounds the rise, so ``x <=
      -log(1 + e_T / kappa_T)`` (no room when ``e_T >= 0``), ``kappa_T = sum_i m_i (1 -
      m_i)``. Over every split, ``|u_k - u_l| <= (K - 1) (sqrt(2) delta + x_max)``.
      Without an intercept the spread is 0.

    So a difference of two classes' decisions of a sample with features ``c`` moves by at
    most ``sqrt(2) radius |c| + spread`` (:func:`_predictions_proven`).

    ``alpha`` ``(K, n)`` and ``work`` (``K + n + r``) are work space. Classes beyond 12 are
    not tried (the splits number ``2^K``)."""
    n = A.shape[0]
    K = P.shape[0]
    m = K - 1
    if K > 12 or not lam > 0.0:
        return np.inf, np.inf
    ek = work[:K]  # the classes' sums of P - Y (the intercept's condition)
    mi = work[K : K + n]
    row = work[K + n : K + n + r]
    for k in range(K):
        ek[k] = 0.0
        for i in range(n):
            alpha[k, i] = P[k, i]
            ek[k] += P[k, i]
    for i in range(n):
        ek[y[i]] -= 1.0
    rho = 0.0
    bmax = 0.0
    if centre:
        for k in range(m):
            short = 0.0  # (the shortfall summed again from alpha, as it stands)
            for i in range(n):
                short -= alpha[k, i]
            for i in range(n):
                short += 1.0 if y[i] == k else 0.0
            best = -1
            room = 0.0
            for i in range(n):
                v = min(alpha[k, i], alpha[m, i])
                if v > room:
                    room = v
                    best = i
            if best < 0 or not room > 2.0 * abs(short):
                return np.inf, np.inf
            alpha[k, best] += short
            alpha[m, best] -= short
        for k in range(K):
            tot = 0.0
            for i in range(n):
                tot += alpha[k, i]
            for i in range(n):
                tot -= 1.0 if y[i] == k else 0.0
            rho += abs(tot)
        bsum = 0.0
        for k in range(m):
            bmax = max(bmax, abs(Theta[k, r]))
            bsum += Theta[k, r]
        bmax = max(bmax, abs(bsum))
    # the dual: the entropy (terms below 1e-300 left out: a smaller dual, a larger gap),
    # then alpha - Y in place and |R|^2, R's rows by axpys along the design's rows
    ent = 0.0
    for k in range(K):
        for i in range(n):
            a = alpha[k, i]
            ent -= a * log_normal(a) if a >= 1e-300 else 0.0
    for i in range(n):
        alpha[y[i], i] -= 1.0
    rsq = 0.0
    for k in range(K):
        for j in range(r):
            row[j] = 0.0
        for i in range(n):
            c = alpha[k, i]
            for j in range(r):
                row[j] += c * A[i, j]
        for j in range(r):
            rsq += row[j] * row[j]
    dual = ent / n - rsq / (2.0 * lam * n * n)
    gap = f_obj - dual + bmax * rho / n + 1e-13 * (1.0 + abs(f_obj) + abs(dual))
    if not gap >= 0.0:  # (rounding beyond the margin: no proof)
        return np.inf, np.inf
    radius = math.sqrt(2.0 * gap / lam)
    delta = radius * xmax
    xres = 0.0
    if centre:
        for mask in range(1, (1 << K) - 1):
            e = 0.0
            for i in range(n):
                mi[i] = 0.0
            for k in range(K):
                if (mask >> k) & 1:
                    e += ek[k]
                    for i in range(n):
                        mi[i] += P[k, i]
            if e < 0.0:
                kappa = 0.0
                for i in range(n):
                    kappa += mi[i] * (1.0 - mi[i])
                if not -e < kappa:
                    return np.inf, np.inf
                xres = max(xres, -math.log1p(e / kappa))
    return radius, m * (_SQRT2 * delta + xres) if centre else 0.0


@kernel(nogil=True, fastmath=_FASTMATH)
def _predictions_proven(A, y, r, Theta, P, f_obj, lam, centre, Ct, xmax, alpha, dec, work):
    """Whether the current point's predictions of the test samples (their largest classes;
    features ``Ct`` ``(n_test, r)``) are proven to be the optimum's: each largest class ahead
    of every other by more than :func:`_decision_bound`'s ``sqrt(2) radius |c_t| +
    spread``.
    ``dec`` ``(K,)`` is work space, the rest as there."""
    K = P.shape[0]
    m = K - 1
    radius, spread = _decision_bound(A, y, r, Theta, P, f_obj, lam, centre, xmax, alpha, work)
    if not spread < np.inf:
        return False
    for t in range(Ct.shape[0]):
        cn = 0.0
        for j in range(r):
            cn += Ct[t, j] * Ct[t, j]
        last = 0.0
        for k in range(m):
            acc = Theta[k, r] if centre else 0.0
            for j in range(r):
                acc += Ct[t, j] * Theta[k, j]
            dec[k] = acc
            last -= acc
        dec[m] = last
        top = 0
        for k in range(1, K):
            if dec[k] > dec[top]:
                top = k
        lead = np.inf
        for k in range(K):
            if k != top:
                lead = min(lead, dec[top] - dec[k])
        if not lead > _SQRT2 * radius * math.sqrt(cn) + spread:
            return False
    return True


@kernel(nogil=True, fastmath=_FASTMATH)
def _newton_multinomial(A, y, n_classes, pen, Theta, tol, max_iter, Ct, xmax, centre):
    """Minimise the mean softmax cross-entropy plus ``0.5 * (sum_k |W_k|^2 + |sum_k
    W_k|^2)`` (weighted by ``pen``) over the first ``K - 1`` parameter rows (the last is
    minus their sum).

    Parameters
    ----------
    A : ndarray (n, p)
        Design (C-contiguous).
    y : ndarray of int64 (n,)
        Class codes in ``0 .. K-1``.
    n_classes : int
    pen : ndarray (p,)
        Penalty weight of each column of the design.
    Theta : ndarray (K - 1, p)
        Starting point (C-contiguous), overwritten by the solution.
    tol : float
    max_iter : int
    Ct : ndarray (n_test, r)
        To stop once the test predictions are proven to be the optimum's
        (:func:`_predictions_proven`; a problem in the basis of its training rows, whose
        first ``r`` design columns are the basis coordinates): the test samples' basis
        coordinates. With no rows, every problem is solved to ``tol`` and one last Newton
        step.
    xmax : float
        With ``Ct``: the largest norm of a training row's basis coordinates.
    centre : bool
        With ``Ct``: whether the design's last column is the intercept.

    Returns
    -------
    iterations : int
    converged : bool
    hessians : int
    proven : bool
        Whether the problem stopped on the proof (its decisions not exact to rounding).
    """
    n, p = A.shape
    m = n_classes - 1
    q = m * p
    r = p - 1 if centre else p
    prove = Ct.shape[0] > 0
    alpha = np.empty((m + 1, n) if prove else (0, 0))
    dec = np.empty(m + 1)
    pwork = np.empty(m + 1 + n + r if prove else 0)
    At = np.ascontiguousarray(A.T)  # (p, n)
    U = np.zeros((m, n))
    Ut = np.empty((m, n))
    dU = np.empty((m, n))
    P = np.empty((m + 1, n))
    Pt = np.empty((m + 1, n))
    work = np.empty((2, n))
    Gu = np.empty((m, n))
    Ac = np.empty((n, p))
    blk = np.empty((p, p))
    H = np.empty((q, q))
    inv = np.empty(q)  # reciprocals of the factor's diagonal
    grad = np.empty(q)
    step = np.empty(q)
    Step = step.reshape(m, p)
    Grad = grad.reshape(m, p)
    c = np.empty(n)
    origin = True
    for k in range(m):
        for j in range(p):
            origin = origin and Theta[k, j] == 0.0
    matmul_into(Theta, At, dU, False)
    f_loss = _softmax_trial(U, dU, 1.0, y, Ut, Pt, work)
    U, Ut = Ut, U
    P, Pt = Pt, P
    row_norm = _row_norm(A)
    inv_n = 1.0 / n
    have = False  # H holds the Cholesky factor of an earlier iteration's Hessian
    hessians = 0
    s = 0.0
    gprev = 0.0
    for it in range(max_iter):
        # d u_k moves z_k by +1 and z_K by -1
        for k in range(m):
            for i in range(n):
                yi = y[i]
                rk = P[k, i] - (1.0 if yi == k else 0.0)
                rK = P[m, i] - (1.0 if yi == m else 0.0)
                Gu[k, i] = (rk - rK) * inv_n
        _rows_times(Gu, A, Grad)
        theta_max = 0.0
        for k in range(m):
            sq = 0.0
            for j in range(p):
                sq += Theta[k, j] * Theta[k, j]
            theta_max = max(theta_max, math.sqrt(sq))
        for j in range(p):
            tot = 0.0
            for k in range(m):
                tot += Theta[k, j]
            for k in range(m):
                Grad[k, j] += pen[j] * (Theta[k, j] + tot)
        gmax = 0.0
        for j in range(q):
            gmax = max(gmax, abs(grad[j]))
        done = gmax <= tol
        if prove and gmax <= _PROOF_GRADIENT:
            c0, _, _ = _multinomial_penalty(Theta, Theta, pen)
            if _predictions_proven(
                A, y, r, Theta, P, f_loss + c0, pen[0], centre, Ct, xmax, alpha, dec, pwork
            ):
                return it, True, hessians, True
        # a chord step (see _newton_binary)
        if have and s == 1.0 and gmax <= _CHORD_GAIN * gprev and not done:
            for j in range(q):
                step[j] = -grad[j]
            solve_upper(H, inv, q, step, step)  # (inv: kept by _newton_step with H's factor)
        elif it == 0 and origin and _origin_step(A, n_classes, pen, Grad, blk, Step):
            have = False
            hessians += 1
        else:
            _multinomial_hessian(A, P, pen, c, Ac, H)
            hessians += 1
            have = _newton_step(H, grad, step, inv)
            if not have:
                _multinomial_hessian(A, P, pen, c, Ac, H)
                _lu_step(H, grad, step)
        gprev = gmax
        slope = 0.0
        for j in range(q):
            slope += grad[j] * step[j]
        _times_rows(Step, A, dU)
        c0, c1, c2 = _multinomial_penalty(Theta, Step, pen)
        f0 = f_loss + c0
        slack = 16.0 * _EPS * (abs(f0) + row_norm * theta_max)
        s = 1.0
        for _ls in range(_HALVINGS):
            ft = _softmax_trial(U, dU, s, y, Ut, Pt, work)
            if ft + (c0 + s * (c1 + s * c2)) <= f0 + _ARMIJO * s * slope + slack:
                break
            s *= 0.5
        else:
            s = 0.0
        if s > 0.0:  # the trial's predictors and probabilities become the current ones
            f_loss = ft
            U, Ut = Ut, U
            P, Pt = Pt, P
        dmax = 0.0
        tmax = 0.0
        for k in range(m):
            for j in range(p):
                delta = s * Step[k, j]
                Theta[k, j] += delta
                dmax = max(dmax, abs(delta))
                tmax = max(tmax, abs(Theta[k, j]))
        if done or dmax <= 1e-15 * (1.0 + tmax):
            return it + 1, True, hessians, False
    return max_iter, False, hessians, False


@kernel(nogil=True, fastmath=_FASTMATH)
def _training_means(Gall, train, centre, rm):
    """For centring the training rows on their mean within the Gram matrix of all samples
    ``Gall``: ``rm[a]`` (``n_train``) the mean of training row ``a``'s products with the
    training rows, and the returned mean of those means, so that ``(x_a - m) . (x_b - m) =
    G_ab - rm_a - rm_b + gm``; zeros without ``centre``."""
    nt = train.shape[0]
    gm = 0.0
    for a in range(nt):
        rm[a] = 0.0
    if centre:
        for a in range(nt):
            ia = train[a]
            acc = 0.0
            for b in range(nt):
                acc += Gall[ia, train[b]]
            rm[a] = acc / nt
            gm += rm[a]
        gm /= nt
    return gm


@kernel(nogil=True, fastmath=_FASTMATH)
def _gram_basis(Gall, train, rm, gm, R):
    """The upper Cholesky factor ``R`` ``(r, r)`` (``G = R' R``) of the Gram matrix ``G`` of
    the first ``r`` training rows, read from the Gram matrix of all samples ``Gall``,
    centred by :func:`_training_means`' ``rm`` and ``gm`` (with an intercept, on the
    training rows' mean: ``r = n_train - 1``, the last centred row is minus the sum of the
    others; without, zeros). False when ``G`` is not positive definite or its smallest
    squared pivot is below ``_BASIS_RCOND`` times its largest diagonal entry."""
    r = R.shape[0]
    gmax = 0.0
    for a in range(r):
        ia = train[a]
        for b in range(a, r):
            R[a, b] = Gall[ia, train[b]] - rm[a] - rm[b] + gm
        gmax = max(gmax, R[a, a])
    if not cholesky_upper_into(R, R):
        return False
    for a in range(r):
        if R[a, a] * R[a, a] < _BASIS_RCOND * gmax:
            return False
    return True


@kernel(nogil=True, fastmath=_FASTMATH)
def _basis_coordinates(Gall, train, test, rm, gm, centre, R):
    """The coordinates ``(n_test, r)`` of the test samples in the basis of :func:`_gram_basis`
    (its factor ``R``; ``rm`` and ``gm`` from :func:`_training_means`): with ``L = R'``,
    ``Q' x = L^-1 X_r x`` for the first ``r`` training rows ``X_r``, from the Gram matrix of
    all samples; with ``centre``, of the samples centred on the training rows' mean."""
    nt = train.shape[0]
    r = R.shape[0]
    inv = np.empty(r)
    for a in range(r):
        inv[a] = 1.0 / R[a, a]
    C = np.empty((test.shape[0], r))
    for t in range(test.shape[0]):
        it = test[t]
        rt = 0.0
        if centre:
            for b in range(nt):
                rt += Gall[it, train[b]]
            rt /= nt
        for a in range(r):
            C[t, a] = Gall[train[a], it] - rm[a] - rt + gm
        forward_upper(R, inv, r, C[t])
    return C


@kernel(nogil=True, fastmath=_FASTMATH)
def _origin_hessian(gram, nt, pen, H):
    """The upper triangle of the binary Hessian at the origin of a fold of ``nt`` training
    rows, ``gram / (4 nt) + diag(pen)`` (every weight ``p (1 - p) / nt`` is ``1 / (4 nt)``
    there), from the upper triangle of the Gram matrix of its rows
    (:func:`._svm_kernel.training_grams`)."""
    w0 = 0.25 / nt
    q = H.shape[0]
    for j in range(q):
        hj, gj = H[j, j:], gram[j, j:]  # (from 0: vectorised)
        for c in range(q - j):
            hj[c] = gj[c] * w0
        hj[0] += pen[j]


@kernel(nogil=True, fastmath=_FASTMATH)
def logistic_block(
    Xv, vox, train_idx, n_train, test_idx, n_test, y, n_classes, C, fit_intercept, tol, max_iter,
    want_coef, follows, gram_plan, prove=False,
):  # fmt: skip
    """Logistic-regression decisions of every fold on its test samples, for a block of
    spheres.

    Parameters
    ----------
    Xv : ndarray (n_voxels, n)
        Voxel-major data (float64, C-contiguous).
    vox : ndarray of int64 (B, d)
        Each sphere's rows of ``Xv``.
    train_idx : ndarray of int64 (n_folds, max_train)
        Each fold's training samples (padded).
    n_train : ndarray of int64 (n_folds,)
    test_idx : ndarray of int64 (n_folds, max_test)
        Each fold's test samples in plan order (padded).
    n_test : ndarray of int64 (n_folds,)
    y : ndarray of int64 (n,)
        Class codes.
    n_classes : int
    C : float
    fit_intercept : bool
    tol : float
    max_iter : int
    want_coef : bool
        Whether to return the coefficients.
    follows : ndarray of bool (B,)
        Whether each sphere shares at least half its voxels with the one before it
        (:func:`._svm_gram_kernel.follows_previous`); a fold solved in the basis of its
        training rows then starts from its optimal predictors on that sphere. Any
        predictors on the training samples are exactly a point in the basis; the Newton
        iterations go on from there to the same optimum. Empty: every fold starts from the
        origin.
    gram_plan : tuple
        :meth:`.svm._GramPlan.arrays` of the folds' training sets: with left-out parts that
        are disjoint (k-fold, leave-one-group-out), a binary fold in the features starts from
        its Gram matrix at the origin by :func:`._svm_kernel.training_grams` (one pass over
        the sphere's rows serves every fold).
    prove : bool
        Whether a multinomial fold solved in the basis of its training rows may stop once its
        test predictions are proven to be the optimum's (:func:`_predictions_proven`): for
        scores that use only the predictions. Its decisions are then not exact to rounding.

    Returns
    -------
    dec : ndarray (B, n_folds, max_test, K)
        Decisions of each fold's test samples (zeros beyond ``n_test``); ``K = 1`` for two
        classes, else ``n_classes``.
    coef : ndarray (B, n_folds, K, d + 1)
        With ``want_coef`` (else of length 0): each fold's parameter rows (the weights, then
        the intercept, 0 without one), in the coordinates of the features shifted by their
        mean over all samples when ``fit_intercept``.
    mu : ndarray (B, d)
        That mean (zeros without an intercept).
    stats : ndarray of int64 (6,)
        Problems that did not converge, Newton iterations, problems solved, problems with
        more features than basis vectors solved in the feature space (their Gram block was
        not a usable basis), Hessians factored (the other iterations were chord steps), and
        problems stopped on the proof of their test predictions.
    """
    B, d = vox.shape
    n = Xv.shape[1]
    F = train_idx.shape[0]
    K = 1 if n_classes == 2 else n_classes
    m = 1 if n_classes == 2 else n_classes - 1
    e = 1 if fit_intercept else 0
    p = d + e
    dec = np.zeros((B, F, test_idx.shape[1], K))
    coef = np.zeros((B if want_coef else 0, F, K, d + 1))
    mus = np.zeros((B, d))
    stats = np.zeros(6, dtype=np.int64)
    nocert = no_certificate(0)  # the binary problems' (none)
    max_train = 0
    any_basis = False
    for f in range(F):
        max_train = max(max_train, n_train[f])
        any_basis = any_basis or d > n_train[f] - e
    Xf = np.empty((d, n))  # the sphere's features, voxel by voxel
    As = np.empty((n, p))  # its design, sample by sample
    Gall = np.empty((n, n)) if any_basis else np.empty((0, 0))
    W = np.zeros((m, p))  # a fold's optimum in the coordinates of the design
    Wfull = np.zeros((K, p))
    v = np.empty(max_train)
    colsq = np.empty(max(p, max_train))  # (:func:`_single_precision_safe`)
    rm = np.empty(max_train)  # a fold's centring means (:func:`_training_means`)
    gm = 0.0
    yt = np.empty(max_train, dtype=np.int64)
    tt = np.empty(max_train)
    # warm starts: each fold's optimal predictors on its training samples, on the sphere
    # before (where it was solved in the basis)
    warm_start = follows.shape[0] > 0
    Zprev = np.zeros((F, m, max_train))
    have_prev = np.zeros(F, dtype=np.bool_)
    # binary folds in the features start at the origin, where every weight is the same:
    # their first Hessian is the Gram matrix of their training rows, which (with disjoint
    # left-out parts) is that of all rows minus their left-out part's, so one pass over the
    # sphere's rows serves every fold (:func:`._svm_kernel.training_grams`)
    set_ptr, set_rows, subtract, disjoint, rest = gram_plan
    by_blocks = n_classes == 2 and disjoint
    grams = np.empty((F if by_blocks else 0, p, p))
    nwork = newton_work(max_train, max(p, max_train), 0)  # the binary problems' work space
    total = np.empty((p, p) if by_blocks else (0, 0))
    for sph in range(B):
        have_grams = False
        rows = vox[sph]
        for j in range(d):
            src = Xv[rows[j]]
            mu = 0.0
            if fit_intercept:
                for i in range(n):
                    mu += src[i]
                mu /= n
            mus[sph, j] = mu
            for i in range(n):
                Xf[j, i] = src[i] - mu
        for i in range(n):
            for j in range(d):
                As[i, j] = Xf[j, i]
            if fit_intercept:
                As[i, d] = 1.0
        if any_basis:
            column_gram(Xf, Gall)
        for f in range(F):
            nt = n_train[f]
            tr = train_idx[f, :nt]
            for a in range(nt):
                yt[a] = y[tr[a]]
                tt[a] = 1.0 if y[tr[a]] == 1 else 0.0
            # with an intercept, the optimal weights are combinations of the training rows
            # centred on their mean (the intercept's optimality condition), n_train - 1 of
            # them span those
            r = nt - e
            basis = False
            Rb = np.empty((0, 0))
            if d > r:
                Rb = np.empty((r, r))
                gm = _training_means(Gall, tr, fit_intercept, rm)
                basis = _gram_basis(Gall, tr, rm, gm, Rb)
            if basis:
                # design in the basis: L = R' (lower triangular; with an intercept, then the
                # last centred row, minus the sum of the others), then the intercept column
                pb = r + e
                A = np.zeros((nt, pb))
                for a in range(r):
                    for b in range(a + 1):
                        A[a, b] = Rb[b, a]
                if fit_intercept:
                    for a in range(r):
                        for b in range(a + 1):
                            A[nt - 1, b] -= A[a, b]
                    for a in range(nt):
                        A[a, r] = 1.0
            else:
                pb = p
                A = np.empty((nt, p))
                for a in range(nt):  # (entry by entry: a row view per sample costs its
                    i = tr[a]  # reference counts)
                    for j in range(p):
                        A[a, j] = As[i, j]
            # every fold starts from the origin (the previous fold's optimum took more
            # iterations on the benchmark workloads), or in the basis from the sphere
            # before's optimal predictors (W3: 6.8 Newton iterations per problem against
            # 7.8; in the features, from that sphere's weights or one weighted
            # least-squares step to its predictors, W1 10 mm took more: 14.9 and 13.1
            # against 11.3)
            Theta = np.zeros((m, pb))
            warm = basis and warm_start and follows[sph] and have_prev[f]
            if warm:
                # the predictors z exactly: with an intercept it is their mean (the last
                # row's coordinates are minus the sum of the others'), and L theta the rest
                for k in range(m):
                    zm = 0.0
                    if fit_intercept:
                        for a in range(nt):
                            zm += Zprev[f, k, a]
                        zm /= nt
                        Theta[k, r] = zm
                    for a in range(r):
                        acc = Zprev[f, k, a] - zm
                        for b in range(a):
                            acc -= A[a, b] * Theta[k, b]
                        Theta[k, a] = acc / A[a, a]
            pen = np.full(pb, 1.0 / (C * nt))
            if fit_intercept:
                pen[pb - 1] = 0.0
            if n_classes == 2:
                H = np.empty((pb, pb))
                origin = by_blocks and not basis and not warm
                if origin:  # the first Hessian, at the origin: weights 1 / (4 nt)
                    if not have_grams:
                        training_grams(As, n, set_ptr, set_rows, subtract, disjoint, rest, grams, total)
                        have_grams = True
                    _origin_hessian(grams[f], nt, pen, H)
                # extrapolations from the origin only: from the sphere before's optimum
                # they took more time (binary run-wise betas, 4,000 spheres: 1.11 of it)
                if _single_precision_safe(A, pen, colsq):
                    its, ok, hess, _, _ = _newton_binary(
                        A, tt[:nt], pen, np.ones(pb), Theta[0], tol, max_iter, H, np.empty((nt, pb), np.float32),
                        not warm, nocert, nwork, origin, -1.0, not basis,
                    )  # fmt: skip
                else:
                    its, ok, hess, _, _ = _newton_binary(
                        A, tt[:nt], pen, np.ones(pb), Theta[0], tol, max_iter, H, np.empty((nt, pb)), not warm,
                        nocert, nwork, origin, -1.0, not basis,
                    )  # fmt: skip
            else:
                Ct = np.empty((0, max(r, 0)))
                xmax = 0.0
                if prove and basis:  # the test samples' basis coordinates, for the proofs
                    Ct = _basis_coordinates(Gall, tr, test_idx[f, : n_test[f]], rm, gm, fit_intercept, Rb)
                    for a in range(nt):
                        acc = 0.0
                        for j in range(r):
                            acc += A[a, j] * A[a, j]
                        xmax = max(xmax, math.sqrt(acc))
                its, ok, hess, proven = _newton_multinomial(
                    A, yt[:nt], n_classes, pen, Theta, tol, max_iter, Ct, xmax, fit_intercept
                )
                stats[5] += 1 if proven else 0
            if warm_start:  # this fold's optimal predictors, for the next sphere
                have_prev[f] = basis and ok
                if basis:
                    for k in range(m):
                        for a in range(nt):
                            acc = 0.0
                            for j in range(pb):
                                acc += A[a, j] * Theta[k, j]
                            Zprev[f, k, a] = acc
            stats[0] += 0 if ok else 1
            stats[1] += its
            stats[2] += 1
            stats[4] += hess
            if d > r and not basis:
                stats[3] += 1
            if basis:  # back to the features: W_k = Xc' L^-T g, b_k = b'_k - mean . W_k
                xbar = np.zeros(d)
                if fit_intercept:
                    for a in range(nt):
                        row = As[tr[a]]
                        for j in range(d):
                            xbar[j] += row[j]
                    for j in range(d):
                        xbar[j] /= nt
                for k in range(m):
                    for a in range(r - 1, -1, -1):
                        acc = Theta[k, a]
                        for b in range(a + 1, r):
                            acc -= Rb[a, b] * v[b]
                        v[a] = acc / Rb[a, a]
                    for j in range(d):
                        W[k, j] = 0.0
                    vsum = 0.0
                    for a in range(r):
                        row = As[tr[a]]
                        va = v[a]
                        vsum += va
                        for j in range(d):
                            W[k, j] += va * row[j]
                    if fit_intercept:
                        shift = 0.0
                        for j in range(d):
                            W[k, j] -= vsum * xbar[j]
                            shift += xbar[j] * W[k, j]
                        W[k, d] = Theta[k, r] - shift
            else:
                W[:, :] = Theta
            if n_classes == 2:
                Wfull[0] = W[0]
            else:
                Wfull[n_classes - 1] = 0.0
                for k in range(m):
                    Wfull[k] = W[k]
                    Wfull[n_classes - 1] -= W[k]
            for a in range(n_test[f]):
                i = test_idx[f, a]
                for k in range(K):
                    acc = 0.0
                    for j in range(p):
                        acc += As[i, j] * Wfull[k, j]
                    dec[sph, f, a, k] = acc
            if want_coef:
                for k in range(K):
                    for j in range(p):
                        coef[sph, f, k, j] = Wfull[k, j]
    return dec, coef, mus, stats

"""A posteriori certificate that a linear SVC's predictions are those of the exact optimum.

The problem of ``sklearn.svm.LinearSVC`` (L2 penalty, squared hinge loss), with the intercept
as an extra feature of value ``s = intercept_scaling`` regularised like the weights::

    f(w) = 0.5 |w|^2 + C * sum_i max(0, 1 - y_i w . x_i)^2,   x_i = [x_i, s],  y_i in {-1, +1}

is 1-strongly convex (its Hessian, where it exists, is at least the identity), so for any
point ``w`` the distance to the unique minimiser ``w*`` is at most the gradient's norm:
``|w - w*| <= |grad f(w)|``. Each decision value is then within
``|grad f(w)| * |x|`` of the exact optimum's, and a prediction is *certified* (proven equal to
the exact optimum's prediction) when its margin exceeds that bound:

- two classes: ``|w . x| > bound`` (the exact decision has the same sign);
- one-vs-rest: the top class's lower end ``d_top - b_top`` exceeds every other class's upper
  end ``d_j + b_j`` (so the exact argmax is the same class, strictly: how ties are broken
  never matters for a certified prediction).

Everything here is plain numpy, independent of the compiled solvers it checks. The gradient
and the decisions are computed in numpy's extended precision (``np.longdouble``: 64-bit
mantissa on x86) from the float64 data and weights, which it holds exactly, and the bounds
include an allowance for the rounding of those computations (standard first-order bounds
for sums and dot products, with the machine epsilon doubled), so that a certificate is not
an artefact of rounding. (In float64 that allowance alone would reach ``1e-4`` on fMRI-like
data, values near 1000 with a spread near 70, far above the gradients it certifies.)
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = [
    "Certificate",
    "ExactSolution",
    "augment",
    "certified_predictions",
    "certify",
    "exact_solution",
    "gradient",
    "liblinear_weights",
    "ovr_targets",
]

_WORK = np.longdouble  # the precision of the certificate's own arithmetic
_EPS = float(np.finfo(_WORK).eps)  # twice the unit roundoff: conservative


def augment(X: np.ndarray, intercept_scaling: float = 1.0) -> np.ndarray:
    """``X`` (n, k) with the constant feature ``intercept_scaling`` appended: (n, k + 1), in
    the certificate's extended precision (exact: float64 values are held exactly)."""
    X = np.asarray(X, dtype=np.float64).astype(_WORK)
    return np.hstack([X, np.full((X.shape[0], 1), float(intercept_scaling), dtype=_WORK)])


def ovr_targets(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Targets in {-1, +1} of ``LinearSVC``'s problems, shape (n_problems, n_samples).

    One problem for two classes (``classes[1]`` positive, as scikit-learn), else one per
    class (that class positive).
    """
    y = np.asarray(y)
    if len(classes) == 2:
        return np.where(y == classes[1], 1.0, -1.0)[None, :]
    return np.where(y[None, :] == np.asarray(classes)[:, None], 1.0, -1.0)


def liblinear_weights(coef: np.ndarray, intercept: np.ndarray, intercept_scaling: float = 1.0) -> np.ndarray:
    """A fitted ``LinearSVC``'s weights in the augmented space: ``[coef_, intercept_ / s]``,
    shape (n_problems, k + 1)."""
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    b = np.asarray(intercept, dtype=np.float64).reshape(-1, 1) / float(intercept_scaling)
    return np.hstack([coef, b])


def gradient(w: np.ndarray, Xa: np.ndarray, Y: np.ndarray, C: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of ``f`` at ``w`` for every problem, and a bound on its rounding error.

    Parameters
    ----------
    w : ndarray (n_problems, D)
        Augmented weights ``[w, b]`` (float64: held exactly in extended precision).
    Xa : ndarray (n_train, D)
        Augmented training samples (:func:`augment`, extended precision).
    Y : ndarray (n_problems, n_train)
        Targets in {-1, +1}.
    C : float
        Inverse regularisation strength.

    Returns
    -------
    grad : ndarray (n_problems, D)
        ``w - 2C sum_i y_i max(0, 1 - y_i w . x_i) x_i``, in extended precision.
    rounding : ndarray (n_problems,)
        A bound on ``|computed grad - exact grad|`` (Euclidean norm; extended precision), from the componentwise
        bounds ``gamma_m * sum |terms|`` of the dot products and the sum (``m`` terms).
    """
    w = np.atleast_2d(np.asarray(w, dtype=np.float64)).astype(_WORK)
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64)).astype(_WORK)
    Xa = np.asarray(Xa, dtype=_WORK)
    n, D = Xa.shape
    C = _WORK(C)
    gap = 1 - Y * (w @ Xa.T)  # (P, n)
    slack = np.maximum(gap, 0)
    grad = w - 2 * C * (Y * slack) @ Xa
    absX = np.abs(Xa)
    # rounding: each margin w . x_i is off by at most (D + 2) eps |w| . |x_i| (the slack too:
    # max(0, .) is 1-Lipschitz, and both are zero when the gap is below minus that error),
    # and the sum over n samples by at most (n + 2) eps times the sum of absolute terms
    slack_err = (D + 2) * _EPS * (np.abs(w) @ absX.T + 1)  # (P, n)
    slack_err = np.where(gap > -slack_err, slack_err, 0)
    comp = (n + D + 4) * _EPS * (np.abs(w) + 2 * C * (slack + slack_err) @ absX) + 2 * C * slack_err @ absX
    return grad, np.linalg.norm(comp, axis=1)


@dataclass
class Certificate:
    """Certified predictions of one (fold) problem set.

    Attributes
    ----------
    predictions : ndarray (n_test,)
        The predicted labels (as ``LinearSVC.predict``: ``decision > 0`` for two classes,
        the first argmax for more).
    certified : ndarray of bool (n_test,)
        Whether each prediction is proven equal to the exact optimum's.
    grad_norms : ndarray (n_problems,)
        ``|grad f(w)|`` of every problem (one per one-vs-rest class).
    decisions, bounds : ndarray (n_problems, n_test)
        The decision values and their bounds ``|d - d*| <= bound``.
    """

    predictions: np.ndarray
    certified: np.ndarray
    grad_norms: np.ndarray
    decisions: np.ndarray
    bounds: np.ndarray

    @property
    def all_certified(self) -> bool:
        return bool(self.certified.all())


def certified_predictions(decisions: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class indices, as ``LinearSVC.predict``, and whether each is certified.

    Parameters
    ----------
    decisions : ndarray (n_problems, n_test)
        Decision values: one problem for two classes, one per class for more.
    bounds : ndarray (n_problems, n_test)
        Bounds on their distance to the exact optimum's decisions.

    Returns
    -------
    index : ndarray of int (n_test,)
        Two classes: 1 where ``decision > 0``, else 0; more: the first argmax (ties broken
        as ``LinearSVC.predict``).
    certified : ndarray of bool (n_test,)
        Two classes: ``|decision| > bound``. More: the predicted class's lower end
        ``d_top - b_top`` exceeds every other class's upper end ``d_j + b_j``, so the exact
        argmax is that class, strictly (not just the runner-up's: a class further down with
        a larger bound could overtake). A tie is therefore never certified.
    """
    if decisions.shape[0] == 1:
        d, b = decisions[0], bounds[0]
        return (d > 0).astype(np.int64), np.abs(d) > b
    top = np.argmax(decisions, axis=0)
    cols = np.arange(decisions.shape[1])
    low = decisions[top, cols] - bounds[top, cols]
    high = decisions + bounds
    high[top, cols] = -np.inf
    return top, low > high.max(axis=0)


def certify(
    w: np.ndarray,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    classes: np.ndarray,
    C: float = 1.0,
    intercept_scaling: float = 1.0,
) -> Certificate:
    """Certify the test predictions of the weights ``w`` of ``LinearSVC``'s problems.

    Parameters
    ----------
    w : ndarray (n_problems, n_features + 1)
        Augmented weights ``[w, b]`` of each problem (the intercept is ``b * s``); one
        problem for two classes, one per class (in the order of ``classes``) for more.
    X_train : ndarray (n_train, n_features)
    y_train : ndarray (n_train,)
        Training labels.
    X_test : ndarray (n_test, n_features)
    classes : ndarray (n_classes,)
        The sorted labels (``LinearSVC.classes_``).
    C, intercept_scaling : float
        As ``LinearSVC`` (liblinear's intercept as a regularised constant feature).

    Returns
    -------
    Certificate
    """
    classes = np.asarray(classes)
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    Xa = augment(X_train, intercept_scaling)
    Y = ovr_targets(y_train, classes)
    if w.shape != (Y.shape[0], Xa.shape[1]):
        raise ValueError(f"w has shape {w.shape}, expected {(Y.shape[0], Xa.shape[1])}")
    grad, rounding = gradient(w, Xa, Y, C)
    grad_norms = np.linalg.norm(grad, axis=1)
    Ta = augment(X_test, intercept_scaling)
    wx = w.astype(_WORK)
    decisions = wx @ Ta.T  # (P, m)
    x_norms = np.linalg.norm(Ta, axis=1)  # (m,)
    D = Ta.shape[1]
    # |d - d*| <= |w - w*| |x| <= |grad| |x|, and the rounding of the norms and decisions
    bounds = (grad_norms + rounding)[:, None] * x_norms[None, :] * (1 + (D + 4) * _EPS)
    bounds += (D + 2) * _EPS * (np.abs(wx) @ np.abs(Ta).T)
    index, certified = certified_predictions(decisions, bounds)
    predictions = classes[index]
    f64 = lambda a: np.asarray(a, dtype=np.float64)
    return Certificate(predictions, certified, f64(grad_norms), f64(decisions), f64(bounds))


# --------------------------------------------------------------------------- exact arithmetic
# Where the bound above cannot decide (ill-conditioned problems: raw-scale data, decisions
# near zero), the optimum itself is found and proven in exact rational arithmetic. The
# problem's data are floating-point numbers, so dyadic rationals: scaled by one power of two
# they are integers, and so is every quantity below (Python's integers, any size).


@dataclass
class ExactSolution:
    """The exact optimum of one fold's ``LinearSVC`` problems, proven by exact arithmetic.

    Attributes
    ----------
    predictions : ndarray (n_test,)
        The exact optimum's predicted labels (as ``LinearSVC.predict``: ``decision > 0`` for
        two classes, the first argmax for more).
    decisions : ndarray (n_problems, n_test)
        Its decision values, rounded to float64 (exact as fractions until then).
    active : list of ndarray of int
        Each problem's active set: the training samples with margin below 1 (indices into
        the training samples).
    rounds : int
        Active sets tried in all (the first from the guess).
    """

    predictions: np.ndarray
    decisions: np.ndarray
    active: list
    rounds: int


def _dyadic_integers(a: np.ndarray) -> tuple[np.ndarray, int]:
    """``(ints, E)`` with ``a == ints / 2**E`` exactly: ``ints`` an object array of Python
    integers (every finite float64 is a dyadic rational)."""
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("exact arithmetic needs finite values")
    ratios = [float(v).as_integer_ratio() for v in a.ravel()]
    E = max((den.bit_length() - 1 for _, den in ratios), default=0)
    ints = [num << (E - den.bit_length() + 1) for num, den in ratios]
    out = np.empty(len(ints), dtype=object)
    out[:] = ints
    return out.reshape(a.shape), E


def _bareiss_solve(M: np.ndarray, r: np.ndarray) -> tuple[int, np.ndarray]:
    """``(det, N)`` with ``M N = det r`` and ``det = det(M) > 0``, exactly, for an integer
    matrix ``M`` (object array, ``(k, k)``) whose leading principal minors are positive
    (positive definite) and an integer vector ``r``: Bareiss's fraction-free elimination
    (each division exact, by Sylvester's identity), then back substitution of the integers
    ``N = det x`` (Cramer's rule: ``det M^-1 r`` is an integer vector). The result is checked
    against ``M`` itself, so that the proof does not rest on this function."""
    k = M.shape[0]
    if k == 0:
        return 1, np.zeros(0, dtype=object)
    A = np.empty((k, k + 1), dtype=object)
    A[:, :k] = M
    A[:, k] = r
    previous = 1
    for j in range(k):
        pivot = A[j, j]
        if pivot <= 0:
            raise ArithmeticError("the matrix is not positive definite")
        if j + 1 < k:
            A[j + 1 :, j + 1 :] = (
                A[j + 1 :, j + 1 :] * pivot - np.outer(A[j + 1 :, j], A[j, j + 1 :])
            ) // previous
        previous = pivot
    det = A[k - 1, k - 1]
    N = np.zeros(k, dtype=object)
    for j in range(k - 1, -1, -1):
        N[j] = (det * A[j, k] - np.dot(A[j, j + 1 : k], N[j + 1 :])) // A[j, j]
    if not all(v == det * w for v, w in zip(M.dot(N), r)):
        raise ArithmeticError("exact solve failed its check")
    return det, N


def exact_solution(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    classes: np.ndarray,
    C: float = 1.0,
    intercept_scaling: float = 1.0,
    w: np.ndarray | None = None,
    max_rounds: int = 30,
) -> ExactSolution | None:
    """The exact optimum of ``LinearSVC``'s problems and its test predictions, proven in
    exact arithmetic (slow: for the predictions :func:`certify` cannot decide).

    An active set ``A`` (the training samples with margin below 1) gives the optimum's
    candidate, the minimiser of the objective with the squared hinge's ``max`` dropped on
    ``A`` and the samples off ``A`` left out: ``(I + 2C X_A' X_A) w = 2C X_A' y_A``, or in
    the coefficients of the samples (``w = sum_i beta_i y_i x_i``, fewer unknowns when ``A``
    is smaller than the features) ``(I / 2C + Y K_AA Y) beta = 1``. The candidate is the
    unique optimum if and only if every margin is at most 1 on ``A`` and at least 1 off it,
    which is checked exactly: the float64 data are held as integers (one power-of-two scale),
    ``C`` and ``intercept_scaling`` as fractions, and the systems solved in integers
    (:func:`_bareiss_solve`). A failed check moves the samples that break it (a primal-dual
    active-set step), up to ``max_rounds`` sets.

    Parameters
    ----------
    X_train, y_train, X_test, classes, C, intercept_scaling
        As :func:`certify`.
    w : ndarray (n_problems, n_features + 1), optional
        Augmented weights whose margins guess the active sets (e.g. a solver's); without
        them, every training sample starts active.
    max_rounds : int
        Active sets tried per problem before giving up.

    Returns
    -------
    ExactSolution, or None when some problem's active set was not found within
    ``max_rounds``.
    """
    classes = np.asarray(classes)
    X_train = np.asarray(X_train, dtype=np.float64)
    X_test = np.asarray(X_test, dtype=np.float64)
    n, m = X_train.shape[0], X_test.shape[0]
    Y = ovr_targets(y_train, classes).astype(np.int64)  # (P, n)
    P = Y.shape[0]
    if w is not None:
        w = np.atleast_2d(np.asarray(w, dtype=np.float64))
        if w.shape != (P, X_train.shape[1] + 1):
            raise ValueError(f"w has shape {w.shape}, expected {(P, X_train.shape[1] + 1)}")
    c = Fraction(C)
    if c <= 0:
        raise ValueError("C must be positive")
    samples = np.vstack([X_train, X_test])
    # Z = 2**E x (augmented), integers; with C = p / q, each system times q 2**(2E)
    Z, E = _dyadic_integers(np.hstack([samples, np.full((n + m, 1), float(intercept_scaling))]))
    D = Z.shape[1]
    K = None  # 2**(2E) x_i . x_j, (n + m, n): formed once a problem needs the dual form
    p2, diagonal = 2 * c.numerator, c.denominator << (2 * E)
    if w is not None:
        guess_margins = Y * (augment(X_train, intercept_scaling) @ w.astype(_WORK).T).T
    decisions = np.zeros((P, m), dtype=object)  # exact, as fractions
    active_sets, rounds = [], 0
    for p in range(P):
        y = Y[p]
        yo = y.astype(object)
        active = np.flatnonzero(guess_margins[p] < 1) if w is not None else np.arange(n)
        tried = set()
        while True:
            key = active.tobytes()
            if key in tried or len(tried) >= max_rounds:
                return None
            tried.add(key)
            rounds += 1
            yA = yo[active]
            if len(active) > D:  # in the weights: (q 2**2E I + 2p Z_A' Z_A) w = 2p 2**E Z_A' y_A
                ZA = Z[active]
                M = p2 * ZA.T.dot(ZA)
                M[np.diag_indices(D)] += diagonal
                det, N = _bareiss_solve(M, (p2 << E) * ZA.T.dot(yA))  # N = det w
                f, denominator = Z.dot(N), det << E  # decisions w . x_i = f_i / denominator
            else:  # in the coefficients: (q 2**2E I + 2p Y K_AA Y) beta = 2p 2**2E
                if K is None:
                    K = Z.dot(Z[:n].T)
                M = p2 * (np.outer(yA, yA) * K[np.ix_(active, active)])
                M[np.diag_indices(len(active))] += diagonal
                det, N = _bareiss_solve(M, np.full(len(active), p2 << (2 * E), dtype=object))
                f = K[:, active].dot(N * yA) if len(active) else np.zeros(n + m, dtype=object)
                denominator = det << (2 * E)
            # the conditions: margins y_i f_i / denominator at most 1 on A, at least 1 off it
            margins = yo * f[:n]
            inside = np.zeros(n, dtype=bool)
            inside[active] = True
            leave = inside & (margins > denominator)
            enter = ~inside & (margins < denominator)
            if not leave.any() and not enter.any():
                break
            active = np.flatnonzero((inside & ~leave) | enter)
        active_sets.append(active)
        decisions[p] = [Fraction(v, denominator) for v in f[n:]]
    if P == 1:
        index = np.array([1 if d > 0 else 0 for d in decisions[0]], dtype=np.int64)
    else:  # the first argmax
        index = np.array(
            [max(range(P), key=lambda q: (decisions[q, t], -q)) for t in range(m)], dtype=np.int64
        )
    values = np.array([[float(v) for v in row] for row in decisions]).reshape(P, m)
    return ExactSolution(classes[index], values, active_sets, rounds)

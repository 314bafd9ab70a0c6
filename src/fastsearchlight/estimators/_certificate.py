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

import numpy as np

__all__ = [
    "Certificate",
    "augment",
    "certified_predictions",
    "certify",
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

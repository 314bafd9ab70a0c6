"""Tests of the batched logistic regression against scikit-learn's ``LogisticRegression``.

Reference: ``LogisticRegression(C=C, tol=1e-10, max_iter=10000)`` (L2 penalty, default
``lbfgs`` solver) fitted on every sphere and fold. lbfgs stops on its relative decrease of
the objective (``ftol = 64 eps``) before its gradient reaches ``tol``, so its solution is
only close to the optimum. The tests therefore measure how far it is: at scikit-learn's
solution ``theta_sk`` they compute (with plain numpy, independent of the code under test)
the gradient ``g`` and Hessian ``H`` of the same objective, and the Newton correction
``delta = H^-1 g``, which is scikit-learn's error to first order. Then

- our decision values must equal those of the reference optimum, reached from
  ``theta_sk`` by four plain (unbatched, all-``K``-rows) Newton steps, to
  ``1e-10 * (1 + |decision|)``: both are float64 solutions of well-conditioned problems,
  observed agreement is 1e-15 on standardised data and 1e-12 on raw-scale data;
- our decision values must differ from scikit-learn's own by at most ``2 |A_test delta|``
  (twice scikit-learn's estimated error) plus ``1e-10 * (1 + |decision|)``;
- the predictions must be identical on every test sample whose scikit-learn margin is larger
  than that error bound (in practice all of them);
- the gradient of the scaled objective at our solution must be at the rounding level
  (``<= 1e-12``; ``1e-10`` on raw-scale data, where the features are ~1000).

On raw BOLD-scale data (values ~1000 +- 50) lbfgs is far from converged (decision errors of
order 1 to 10 after 10000 iterations), so the comparison with scikit-learn uses standardised
data; raw-scale data are compared with lbfgs fitted on fold-wise centred features (an exact
reparametrisation of the same problem, on which lbfgs gets close enough for the correction)
and checked through the optimality conditions in the original coordinates.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import expit, softmax
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from fastsearchlight.estimators.logistic import BatchedLogisticRegression

REL = 1e-10  # agreement with the reference optimum, relative to 1 + |decision|


@pytest.fixture(autouse=True)
def _single_blas_thread():
    """Small BLAS calls are much slower with several threads on a busy machine."""
    with threadpool_limits(1):
        yield


from sphere_cases import make_data, make_plan  # noqa: E402


def objective_derivatives(A, y, theta, C, n_classes, fit_intercept):
    """Gradient and Hessian of the scaled objective (mean loss + |w|^2 / (2 C n)).

    ``A`` is the training design (intercept column of ones last if ``fit_intercept``),
    ``theta`` the parameters as rows ``(n_rows, p)``. For several classes the Hessian gets
    ``(sum_k b_k)^2 / 2`` added (and the gradient its derivative), which fixes the free
    common shift of the intercepts at ``sum_k b_k = 0`` without moving the optimum of the
    coefficients.
    """
    n, p = A.shape
    pen = np.full(p, 1.0 / (C * n))
    if fit_intercept:
        pen[-1] = 0.0
    if n_classes == 2:
        w = theta[0]
        prob = expit(A @ w)
        grad = A.T @ (prob - (y == 1)) / n + pen * w
        hess = A.T @ ((prob * (1 - prob) / n)[:, None] * A) + np.diag(pen)
        return grad[None, :], hess
    K = n_classes
    P = softmax(A @ theta.T, axis=1)
    Y = np.eye(K)[y]
    grad = (P - Y).T @ A / n + pen * theta
    hess = np.zeros((K, p, K, p))
    for k in range(K):
        for l in range(K):
            c = P[:, k] * ((k == l) - P[:, l]) / n
            hess[k, :, l, :] = A.T @ (c[:, None] * A)
    hess = hess.reshape(K * p, K * p) + np.diag(np.tile(pen, K))
    if fit_intercept:
        e = np.zeros((K, p))
        e[:, -1] = 1.0
        grad = grad + theta[:, -1].sum() * e
        hess = hess + np.outer(e.ravel(), e.ravel())
    return grad, hess


def design(X, fit_intercept):
    return np.c_[X, np.ones(len(X))] if fit_intercept else X


def compare_with_sklearn(X, y, n_classes, plan, C=1.0, fit_intercept=True, centre=False):
    """Fit both on every sphere and fold; return the worst discrepancies.

    With ``centre=True`` scikit-learn is fitted on features centred by the training mean
    (an exact reparametrisation of the same problem).
    """
    est = BatchedLogisticRegression(C=C, fit_intercept=fit_intercept)
    decisions = est.fold_decisions(X, y, n_classes, plan)
    coefficients = est.fold_coefficients(X, y, n_classes, plan)
    worst = dict(corrected=0.0, excess=0.0, grad=0.0, sk_err=0.0, sk_diff=0.0)
    n_checked = n_total = 0
    for f, (train, test) in enumerate(zip(plan.train_indices, plan.test_indices)):
        for s in range(X.shape[0]):
            shift = X[s][train].mean(axis=0) if centre else np.zeros(X.shape[2])
            Xtr, Xte = X[s][train] - shift, X[s][test] - shift
            ref = LogisticRegression(C=C, fit_intercept=fit_intercept, tol=1e-10, max_iter=10000)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # lbfgs may stop on its ftol criterion
                ref.fit(Xtr, y[train])
            A, A_te = design(Xtr, fit_intercept), design(Xte, fit_intercept)
            theta_sk = np.c_[ref.coef_, ref.intercept_] if fit_intercept else ref.coef_
            grad, hess = objective_derivatives(A, y[train], theta_sk, C, n_classes, fit_intercept)
            delta = np.linalg.solve(hess, grad.ravel()).reshape(theta_sk.shape)
            theta_ref = theta_sk - delta
            for _ in range(3):  # plain Newton steps to the optimum, from scikit-learn's point
                g, h = objective_derivatives(A, y[train], theta_ref, C, n_classes, fit_intercept)
                theta_ref = theta_ref - np.linalg.solve(h, g.ravel()).reshape(theta_sk.shape)
            dec_sk = ref.decision_function(Xte)
            corrected = A_te @ theta_ref.T
            err_sk = np.abs(A_te @ delta.T)
            ours = decisions[f][s]
            if n_classes == 2:
                corrected, err_sk = corrected[:, 0], err_sk[:, 0]
            scale = 1.0 + np.abs(corrected)
            worst["corrected"] = max(worst["corrected"], np.max(np.abs(ours - corrected) / scale))
            excess = np.abs(ours - dec_sk) - 2 * err_sk - REL * scale
            worst["excess"] = max(worst["excess"], excess.max())
            worst["sk_err"] = max(worst["sk_err"], err_sk.max())
            worst["sk_diff"] = max(worst["sk_diff"], np.max(np.abs(ours - dec_sk)))

            # predictions, where scikit-learn's own error cannot flip them
            if n_classes == 2:
                pred, margin, bound = (ours > 0).astype(int), np.abs(dec_sk), err_sk
            else:
                pred = ours.argmax(axis=1)
                top2 = np.sort(dec_sk, axis=1)[:, -2:]
                margin, bound = top2[:, 1] - top2[:, 0], 2 * err_sk.max(axis=1)
            sure = margin > 2 * bound + 1e-9
            assert np.array_equal(pred[sure], ref.predict(Xte)[sure])
            n_checked += sure.sum()
            n_total += len(test)

            # optimality of our solution, in the coordinates scikit-learn was given
            coef, intercept = coefficients[f][0][s], coefficients[f][1][s]
            theta = np.c_[coef, intercept + coef @ shift] if fit_intercept else coef
            g, _ = objective_derivatives(A, y[train], theta, C, n_classes, fit_intercept)
            worst["grad"] = max(worst["grad"], np.abs(g).max())
    worst["checked"] = n_checked / n_total
    return worst


def check(worst, grad_tol=1e-12):
    assert worst["corrected"] <= REL, worst
    assert worst["excess"] <= 0.0, worst
    assert worst["grad"] <= grad_tol, worst
    assert worst["checked"] >= 0.99, worst


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("cv", ["kfold", "stratified", "logo"])
def test_matches_sklearn_standardised(n_classes, cv):
    rng = np.random.default_rng([n_classes, len(cv)])
    for n_samples, n_features in [(60, 1), (96, 7), (120, 20)]:
        X, y, groups = make_data(rng, 20, n_samples, n_features, n_classes, raw=False)
        worst = compare_with_sklearn(X, y, n_classes, make_plan(cv, y, groups))
        check(worst)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_raw_scale(n_classes):
    """Raw BOLD-scale values: lbfgs is fitted on fold-centred features (same problem)."""
    rng = np.random.default_rng([7, n_classes])
    # lbfgs needs ~2000 iterations per multinomial problem here: fewer spheres
    X, y, groups = make_data(rng, 12 if n_classes == 2 else 6, 80, 12, n_classes, raw=True)
    worst = compare_with_sklearn(X, y, n_classes, make_plan("stratified", y, groups), centre=True)
    check(worst, grad_tol=1e-10)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("C", [1e-3, 100.0])
def test_other_C(n_classes, C):
    rng = np.random.default_rng([11, n_classes, int(C * 1000)])
    X, y, groups = make_data(rng, 15, 72, 6, n_classes, raw=False, effect=0.8)
    worst = compare_with_sklearn(X, y, n_classes, make_plan("kfold", y, groups), C=C)
    check(worst)


def test_raw_scale_no_intercept_in_double():
    """Raw BOLD-scale values (~1000, neighbouring voxels correlated, W1 10 mm's shape) and no
    intercept to absorb them: the binary Hessians' single-precision rounding would be as
    large as the penalty (Newton's method then stalls), so they are summed in double
    (:func:`._logistic_kernel._single_precision_safe`): every fold reaches the optimum, with
    no warning. The same design centred passes the test."""
    from fastsearchlight.estimators._logistic_kernel import _single_precision_safe

    rng = np.random.default_rng(17)
    n_samples, n_features = 216, 81
    noise = rng.normal(size=(3, n_samples, n_features)).cumsum(axis=2) * 6.0
    X = 1000.0 + noise
    y = (noise[0, :, :5].sum(axis=1) + rng.normal(scale=90.0, size=n_samples) > 0).astype(int)
    pen = np.full(n_features, 1.0 / 162)
    assert not _single_precision_safe(np.ascontiguousarray(X[0, :162]), pen, np.empty(n_features))
    centred = np.ascontiguousarray(X[0, :162] - X[0, :162].mean(axis=0))
    assert _single_precision_safe(centred, pen, np.empty(n_features))
    plan = make_plan("kfold", y, np.arange(n_samples) * 4 // n_samples)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "did not converge" would be a RuntimeWarning
        coefficients = BatchedLogisticRegression(fit_intercept=False).fold_coefficients(X, y, 2, plan)
    for f, train in enumerate(plan.train_indices):
        for s in range(X.shape[0]):
            coef = coefficients[f][0][s]
            g, _ = objective_derivatives(X[s][train], y[train], coef, 1.0, 2, False)
            assert np.abs(g).max() <= 1e-9  # the estimator's tol is 1e-10


@pytest.mark.parametrize("n_classes", [2, 3])
def test_no_intercept(n_classes):
    rng = np.random.default_rng([13, n_classes])
    X, y, groups = make_data(rng, 15, 72, 6, n_classes, raw=False)
    X = X + 0.5  # an offset the model cannot absorb
    worst = compare_with_sklearn(X, y, n_classes, make_plan("stratified", y, groups), fit_intercept=False)
    check(worst)


def test_shapes_and_coefficients():
    rng = np.random.default_rng(3)
    X, y, groups = make_data(rng, 6, 40, 4, 3, raw=True)
    plan = make_plan("logo", y, groups)
    est = BatchedLogisticRegression()
    for n_classes, yy in [(2, y % 2), (3, y)]:
        decisions = est.fold_decisions(X, yy, n_classes, plan)
        coefficients = est.fold_coefficients(X, yy, n_classes, plan)
        n_rows = 1 if n_classes == 2 else n_classes
        for dec, (coef, intercept), test in zip(decisions, coefficients, plan.test_indices):
            shape = (6, len(test)) if n_classes == 2 else (6, len(test), n_classes)
            assert dec.shape == shape
            assert coef.shape == (6, n_rows, 4) and intercept.shape == (6, n_rows)
            # decisions are X @ coef.T + intercept in the original coordinates
            again = np.einsum("snd,skd->snk", X[:, test], coef) + intercept[:, None, :]
            np.testing.assert_allclose(again.reshape(dec.shape), dec, rtol=0, atol=1e-9)
            if n_classes > 2:  # the multinomial optimum has rows and intercepts summing to 0
                assert np.abs(coef.sum(axis=1)).max() < 1e-12
                assert np.abs(intercept.sum(axis=1)).max() < 1e-9


def test_warns_when_not_converged():
    rng = np.random.default_rng(5)
    X, y, groups = make_data(rng, 4, 40, 3, 2, raw=False)
    plan = make_plan("stratified", y, groups)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        BatchedLogisticRegression(max_iter=1).fold_decisions(X, y, 2, plan)


@pytest.mark.parametrize("n_features", [8, 23, 24, 60])  # d < n, d ~ n (either side), d > n
@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_every_shape(n_features, n_classes, fit_intercept):
    """32 samples in 4 runs, leave one run out (24 training samples): with more features
    than training samples the fit runs in the span of the training rows; binary and
    multinomial."""
    rng = np.random.default_rng([17, n_features, n_classes])
    X, y, groups = make_data(rng, 6, 32, n_features, n_classes, raw=False)
    plan = make_plan("logo", y, groups)
    assert all(len(tr) == 24 for tr in plan.train_indices)
    check(compare_with_sklearn(X, y, n_classes, plan, fit_intercept=fit_intercept))

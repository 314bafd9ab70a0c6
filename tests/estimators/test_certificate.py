"""The a posteriori certificate of the svc's predictions (estimators/_certificate.py) and the
benchmark's sphere-by-sphere use of it (benchmarks/_certify.py)."""

from __future__ import annotations

import itertools
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from fastsearchlight.estimators._certificate import (
    _bareiss_solve,
    augment,
    certified_predictions,
    certify,
    exact_solution,
    gradient,
    liblinear_weights,
    ovr_targets,
)
from fastsearchlight.estimators.svm import BatchedLinearSVC


def problem(n_train: int, n_test: int, n_features: int, n_classes: int, seed: int):
    """A small, well-conditioned problem: class means apart, unit noise, an offset."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_train + n_test) % n_classes
    rng.shuffle(y)
    means = rng.standard_normal((n_classes, n_features))
    X = 0.5 + means[y] + rng.standard_normal((len(y), n_features))
    labels = np.array(["a", "b", "c", "d"])[y]
    return X[:n_train], labels[:n_train], X[n_train:], labels[n_train:]


def ours(X: np.ndarray, y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Our solver's augmented weights, one row per one-vs-rest problem."""
    Y = ovr_targets(y, classes)
    return BatchedLinearSVC().fit_weights(X[None], Y, np.ones_like(Y))[0]


def converged_liblinear(X: np.ndarray, y: np.ndarray) -> LinearSVC:
    """liblinear's dual solver at tol 1e-8 (about 1e-7 from the optimum on these problems;
    its convergence is checked by the tests). At tol 1e-12 it runs into max_iter=10**6 and,
    depending on its random order, can stop with gradients of order one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LinearSVC(dual=True, tol=1e-8, max_iter=10**6, random_state=0).fit(X, y)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("n_train, n_features", [(60, 5), (20, 40)])  # d < n and d > n
def test_our_solution_is_certified_and_matches_converged_liblinear(n_classes, n_train, n_features):
    X, y, Xt, yt = problem(n_train, 40, n_features, n_classes, seed=n_classes * 100 + n_features)
    classes = np.unique(y)
    cert = certify(ours(X, y, classes), X, y, Xt, classes)
    assert cert.grad_norms.max() < 1e-8
    assert cert.all_certified
    svc = converged_liblinear(X, y)
    # the numpy gradient is that of LinearSVC's objective: small at liblinear's converged
    # solution too (a wrong sign, intercept or factor 2 would leave it of order one)
    w_lib = liblinear_weights(svc.coef_, svc.intercept_, svc.intercept_scaling)
    g, _ = gradient(w_lib, augment(X), ovr_targets(y, classes))
    assert np.linalg.norm(g.astype(float), axis=1).max() < 1e-5
    np.testing.assert_array_equal(cert.predictions, svc.predict(Xt))


def test_gradient_bounds_the_distance_to_the_optimum():
    """1-strong convexity: |grad f(w)| >= |w - w*|, so a shifted w has a gradient at least
    the shift's norm, and its bounds grow accordingly."""
    X, y, Xt, _ = problem(50, 10, 4, 2, seed=1)
    classes = np.unique(y)
    w = ours(X, y, classes)
    shifted = w + 0.1
    g, _ = gradient(shifted, augment(X), ovr_targets(y, classes))
    assert np.linalg.norm(g.astype(float)) >= 0.1 * np.sqrt(w.shape[1])
    exact, off = certify(w, X, y, Xt, classes), certify(shifted, X, y, Xt, classes)
    assert np.all(off.bounds > 1e3 * exact.bounds)


def test_point_near_the_boundary_is_certified_only_at_the_optimum():
    X, y, _, _ = problem(50, 10, 4, 2, seed=2)
    classes = np.unique(y)
    w = ours(X, y, classes)[0]
    # a test point whose exact decision is 1e-3: moved onto the hyperplane, then off it
    x0 = np.random.default_rng(0).standard_normal(4)
    x = x0 - (w[:4] @ x0 + w[4] - 1e-3) * w[:4] / (w[:4] @ w[:4])
    x = x[None, :]
    at_optimum = certify(w[None], X, y, x, classes)
    assert at_optimum.all_certified and at_optimum.predictions[0] == classes[1]
    for shift in (0.1, -0.1):
        off = certify(w[None] + shift, X, y, x, classes)
        assert not off.certified[0]
        assert off.bounds[0, 0] > abs(off.decisions[0, 0])


def test_certified_predictions_rule():
    # two classes: sign, decision 0 goes to class 0 (as LinearSVC.predict), never certified
    index, ok = certified_predictions(np.array([[0.5, -0.5, 0.0, 0.05]]), np.full((1, 4), 0.1))
    np.testing.assert_array_equal(index, [1, 0, 0, 1])
    np.testing.assert_array_equal(ok, [True, True, False, False])
    # one-vs-rest: columns are test points
    decisions = np.array(
        [
            [1.0, 1.0, 1.0, 1.0],
            [0.5, 0.5, 1.0, 0.5],
            [0.0, 0.6, 0.0, 0.0],
        ]
    )
    bounds = np.array(
        [
            [0.1, 0.1, 0.1, 0.1],
            [0.1, 0.1, 0.1, 0.1],
            [0.1, 0.5, 0.1, 1.0],
        ]
    )
    index, ok = certified_predictions(decisions, bounds)
    np.testing.assert_array_equal(index, [0, 0, 0, 0])  # a tie (column 2) goes to the first
    # column 1: the runner-up (class 2, 0.6) is within reach; column 3: the third class
    # (0.0 + 0.8) could overtake although the runner-up (0.5 + 0.1) could not
    np.testing.assert_array_equal(ok, [True, False, False, False])


def test_certify_spheres_matches_nilearn_searchlight():
    """The benchmark's sphere extraction and refits: its tight LinearSVC scores are nilearn's
    SearchLight scores with that estimator, and its certified scores are ours."""
    import nibabel as nib
    from nilearn.decoding import SearchLight as NilearnSearchLight
    from sklearn.model_selection import KFold

    from fastsearchlight import SearchLight

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from _certify import certify_spheres, summary

    rng = np.random.default_rng(3)
    shape, n = (5, 5, 5), 40
    y = np.repeat(["a", "b"], n // 2)
    rng.shuffle(y)
    data = 1000.0 + 30.0 * rng.standard_normal(shape + (n,))
    data[1:4, 1:4, 1:4] += 20.0 * (y == "b")
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    mask = nib.Nifti1Image(np.ones(shape, np.uint8), affine)
    process = np.zeros(shape, np.uint8)
    process[tuple(rng.integers(0, 5, (3, 6)))] = 1
    process = nib.Nifti1Image(process, affine)
    common = dict(mask_img=mask, process_mask_img=process, radius=4.0, cv=KFold(4))
    cert = certify_spheres(img, y, None, mask, process, 4.0, KFold(4))
    keep = np.asarray(process.dataobj) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tight = LinearSVC(dual=False, tol=1e-10, max_iter=100000)
        ref = NilearnSearchLight(estimator=tight, **common).fit(img, y).scores_[keep]
    np.testing.assert_allclose(cert["liblinear_score"], ref, rtol=0, atol=1e-12)
    assert cert["certified"].all() and cert["proven"].all()
    fast = SearchLight(estimator="svc", n_jobs=1, **common).fit(img, y).scores_[keep]
    out = summary(cert, fast)
    assert out["ours_equals_exact"] == 1.0 and out["certified"] == 1.0 and out["proven"] == 1.0
    assert out["grad_max_ours"] < 1e-6 and np.isfinite(out["grad_max_liblinear"])


# ------------------------------------------------------------------ exact arithmetic


def _fraction_solve(M: list, b: list) -> list:
    """Gauss-Jordan elimination in fractions (small systems; the tests' own reference)."""
    k = len(b)
    A = [list(row) + [v] for row, v in zip(M, b)]
    for j in range(k):
        pivot = next(i for i in range(j, k) if A[i][j] != 0)
        A[j], A[pivot] = A[pivot], A[j]
        A[j] = [v / A[j][j] for v in A[j]]
        for i in range(k):
            if i != j and A[i][j] != 0:
                A[i] = [u - A[i][j] * v for u, v in zip(A[i], A[j])]
    return [row[k] for row in A]


def brute_force_decisions(X, targets, X_test, C=1.0, s=1.0):
    """The exact optimum's test decisions of one problem and its active set, by trying every
    active set (in fractions) until one satisfies the optimality conditions (the optimum is
    unique)."""
    aug = lambda x: [Fraction(float(v)) for v in x] + [Fraction(s)]  # noqa: E731
    Xa, Ta = [aug(x) for x in X], [aug(x) for x in X_test]
    dot = lambda a, b: sum(u * v for u, v in zip(a, b))  # noqa: E731
    y = [int(t) for t in targets]
    n, half_c = len(Xa), 1 / (2 * Fraction(C))
    for size in range(n + 1):
        for A in itertools.combinations(range(n), size):
            M = [[y[i] * y[j] * dot(Xa[i], Xa[j]) + (half_c if i == j else 0) for j in A] for i in A]
            beta = _fraction_solve(M, [Fraction(1)] * size) if size else []
            w = [sum(b * y[j] * Xa[j][c] for b, j in zip(beta, A)) for c in range(len(Xa[0]))]
            if all(b >= 0 for b in beta) and all(y[i] * dot(w, Xa[i]) >= 1 for i in range(n) if i not in A):
                return [dot(w, t) for t in Ta], A
    raise AssertionError("no active set satisfies the optimality conditions")


@pytest.mark.parametrize("n_classes", [2, 3])
def test_exact_solution_equals_brute_force(n_classes):
    X, y, Xt, _ = problem(9, 12, 2, n_classes, seed=10 + n_classes)
    X, Xt = 3 * X, 3 * Xt  # classes further apart: some samples off the margin
    classes = np.unique(y)
    Y = ovr_targets(y, classes)
    found = [brute_force_decisions(X, Y[p], Xt, C=0.7, s=1.5) for p in range(len(Y))]
    assert all(0 < len(A) < len(y) for _, A in found)  # neither every sample active nor none
    reference = np.array([d for d, _ in found])
    for w in (None, ours(X, y, classes)):  # cold, and from our (C = 1) solution's active sets
        solution = exact_solution(X, y, Xt, classes, C=0.7, intercept_scaling=1.5, w=w)
        np.testing.assert_array_equal(solution.decisions, reference.astype(np.float64))
        index = (reference[0] > 0).astype(int) if n_classes == 2 else np.argmax(reference, axis=0)
        np.testing.assert_array_equal(solution.predictions, classes[index])


def test_exact_solution_decides_what_the_bound_cannot():
    """Raw-scale data (values near 1000) and a test point a hair from the hyperplane: the
    bound cannot certify its prediction; exact arithmetic decides it, as the brute force."""
    rng = np.random.default_rng(11)
    y = np.array(["a", "b"] * 4)
    X = 1000.0 + 30.0 * rng.standard_normal((8, 2)) + 25.0 * (y == "b")[:, None]
    classes = np.unique(y)
    w = ours(X, y, classes)
    x0 = X.mean(axis=0) + rng.standard_normal(2)
    x = (x0 - (w[0, :2] @ x0 + w[0, 2] - 1e-11) * w[0, :2] / (w[0, :2] @ w[0, :2]))[None]
    cert = certify(w, X, y, x, classes)
    assert not cert.certified[0]
    exact = brute_force_decisions(X, ovr_targets(y, classes)[0], x)[0][0]
    assert exact != 0
    solution = exact_solution(X, y, x, classes, w=w)
    assert solution.decisions[0, 0] == float(exact)
    assert solution.predictions[0] == classes[int(exact > 0)]
    assert solution.rounds == 1  # our solution's active set is the optimum's


def test_exact_solution_gives_up_after_max_rounds():
    X, y, Xt, _ = problem(30, 5, 3, 2, seed=1)
    classes = np.unique(y)
    assert exact_solution(X, y, Xt, classes, max_rounds=1) is None  # every sample active: not optimal
    assert exact_solution(X, y, Xt, classes) is not None


def test_bareiss_solve_is_exact_and_rejects_indefinite_matrices():
    rng = np.random.default_rng(5)
    B = rng.integers(-50, 50, (6, 6))
    M = (B @ B.T + np.eye(6, dtype=np.int64)).astype(object)
    r = rng.integers(-9, 9, 6).astype(object)
    det, N = _bareiss_solve(M, r)
    reference = _fraction_solve([[Fraction(int(v)) for v in row] for row in M], [Fraction(int(v)) for v in r])
    rows, exact_det = [[Fraction(int(v)) for v in row] for row in M], Fraction(1)
    for j in range(6):  # the determinant in fractions: the product of the pivots
        exact_det *= rows[j][j]
        for i in range(j + 1, 6):
            rows[i] = [u - rows[i][j] / rows[j][j] * v for u, v in zip(rows[i], rows[j])]
    assert det == exact_det
    assert [Fraction(int(v), det) for v in N] == reference
    with pytest.raises(ArithmeticError, match="positive definite"):
        _bareiss_solve(np.array([[1, 2], [2, 1]], dtype=object), np.array([1, 1], dtype=object))

"""Per-sphere tests of the compiled logistic-regression kernel against scikit-learn.

Every (sphere, fold) problem of :class:`BatchedLogisticRegression` is compared with
``LogisticRegression(C=C, tol=1e-12, max_iter=10000, solver="newton-cholesky")`` fitted on
that sphere's training samples: scikit-learn's Newton solver reaches the optimum to about
1e-9 relative on these problems (lbfgs stops near 1e-5 on raw-scale data), so coefficients,
intercepts and decisions must agree to ``rtol = 1e-6`` (relative to the largest reference
value) and the predictions must be identical. The data are on the raw BOLD scale (offset
~1000), with fewer features than training samples, as many, and more (the kernel then
solves in a basis of the training rows), binary and with 3 or 4 classes, with and without
an intercept.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sphere_cases import make_data, make_plan
from threadpoolctl import threadpool_limits

from fastsearchlight.estimators.base import as_voxel_major
from fastsearchlight.estimators.logistic import BatchedLogisticRegression

RTOL = 1e-6


@pytest.fixture(autouse=True)
def _single_blas_thread():
    with threadpool_limits(1):
        yield


def compare_per_sphere(X, y, n_classes, plan, C, fit_intercept):
    """Fit every sphere and fold with the kernel and with scikit-learn; assert agreement."""
    est = BatchedLogisticRegression(C=C, fit_intercept=fit_intercept)
    decisions = est.fold_decisions(X, y, n_classes, plan)
    coefficients = est.fold_coefficients(X, y, n_classes, plan)
    # the engine's entry point (voxel-major data, spheres as rows) gives the same decisions
    at = est.many_fold_decisions_at(*as_voxel_major(X), y[None], n_classes, plan)[0]
    for f, (train, test) in enumerate(zip(plan.train_indices, plan.test_indices)):
        np.testing.assert_array_equal(at[f], decisions[f])
        for s in range(X.shape[0]):
            ref = LogisticRegression(C=C, fit_intercept=fit_intercept, tol=1e-12, max_iter=10000,
                                     solver="newton-cholesky")  # fmt: skip
            # with an intercept, on the features centred on their training mean (the same
            # problem; uncentred, scikit-learn's Hessian can be too ill-conditioned for its
            # Cholesky solver on raw-scale data)
            shift = X[s][train].mean(axis=0) if fit_intercept else np.zeros(X.shape[2])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # its line search at the rounding floor
                ref.fit(X[s][train] - shift, y[train])
            ref_intercept = ref.intercept_ - ref.coef_ @ shift
            coef, intercept = coefficients[f][0][s], coefficients[f][1][s]
            scale = np.abs(ref.coef_).max()
            np.testing.assert_allclose(coef, ref.coef_, rtol=RTOL, atol=RTOL * scale)
            if fit_intercept:
                np.testing.assert_allclose(
                    intercept, ref_intercept, rtol=RTOL, atol=RTOL * np.abs(ref_intercept).max()
                )
            else:
                assert np.all(intercept == 0.0)
            ref_dec = ref.decision_function(X[s][test] - shift)
            ours = decisions[f][s]
            np.testing.assert_allclose(ours, ref_dec, rtol=RTOL, atol=RTOL * np.abs(ref_dec).max())
            pred = (ours > 0).astype(int) if n_classes == 2 else ours.argmax(axis=1)
            np.testing.assert_array_equal(pred, ref.predict(X[s][test] - shift))
    return est


@pytest.mark.parametrize("n_features", [8, 30, 60])  # 30 training samples: d < n, d = n, d > n
@pytest.mark.parametrize("n_classes", [2, 3, 4])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_each_sphere_matches_newton_cholesky(n_features, n_classes, fit_intercept):
    rng = np.random.default_rng([23, n_features, n_classes, fit_intercept])
    X, y, groups = make_data(rng, 3, 40, n_features, n_classes, raw=True)
    plan = make_plan("logo", y, groups)
    assert all(len(tr) == 30 for tr in plan.train_indices)
    assert np.abs(X).mean() > 500  # raw BOLD scale
    for C in (0.01, 1.0):
        compare_per_sphere(X, y, n_classes, plan, C, fit_intercept)


@pytest.mark.parametrize("n_features", [8, 60])  # 30 training samples: d < n, d > n
@pytest.mark.parametrize("n_classes", [2, 4])
def test_chord_steps_reuse_a_factor_and_reach_the_optimum(n_features, n_classes):
    """In the region of fast convergence the steps reuse an earlier Hessian's factor (chord
    steps): fewer Hessians are factored than iterations taken, and every sphere still
    matches scikit-learn's tightly solved Newton (the gradient's rounding level, after a
    last Newton step, is tested with the objective in test_logistic.py)."""
    rng = np.random.default_rng([43, n_features, n_classes])
    X, y, groups = make_data(rng, 3, 40, n_features, n_classes, raw=True)
    plan = make_plan("logo", y, groups)
    est = compare_per_sphere(X, y, n_classes, plan, 1.0, True)
    assert est.n_problems_ == 3 * plan.n_folds
    assert est.n_problems_ <= est.n_hessians_ < est.n_iter_


@pytest.mark.parametrize("n_classes", [2, 4])
def test_duplicate_samples_more_features(n_classes):
    """More features than training samples, two identical samples: the Gram block of the
    training rows is singular and the kernel solves the fold in the feature space."""
    rng = np.random.default_rng([29, n_classes])
    X, y, groups = make_data(rng, 3, 40, 50, n_classes, raw=True)
    dup = np.flatnonzero(groups == groups[0])[:2]
    X[:, dup[1]] = X[:, dup[0]]
    y[dup[1]] = y[dup[0]]
    plan = make_plan("logo", y, groups)
    est = compare_per_sphere(X, y, n_classes, plan, 0.1, True)
    # every fold that trains on both copies, for each of the three spheres (the last fit:
    # the voxel-major entry point)
    n_folds = sum(dup[0] in tr for tr in plan.train_indices)
    assert est.n_feature_space_ == 3 * n_folds
    assert est.n_problems_ == 3 * plan.n_folds
    assert est.n_iter_ >= est.n_problems_


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_unequal_folds_more_features(n_classes, fit_intercept):
    """More features than training samples, folds of different sizes (each fold's basis has
    its own dimension)."""
    rng = np.random.default_rng([31, n_classes, fit_intercept])
    X, y, groups = make_data(rng, 3, 42, 50, n_classes, raw=True)
    plan = make_plan("stratified", y, groups)
    assert len({len(tr) for tr in plan.train_indices}) > 1
    compare_per_sphere(X, y, n_classes, plan, 0.1, fit_intercept)


def test_many_label_sets():
    """Several label vectors (e.g. permutations) at once: each as on its own."""
    rng = np.random.default_rng(37)
    X, y, groups = make_data(rng, 4, 40, 12, 3, raw=True)
    plan = make_plan("logo", y, groups)
    ys = np.stack([y, rng.permutation(y), rng.permutation(y)])
    est = BatchedLogisticRegression(C=0.1)
    many = est.many_fold_decisions(X, ys, 3, plan)
    for labels, folds in zip(ys, many):
        for got, want in zip(folds, est.fold_decisions(X, labels, 3, plan)):
            np.testing.assert_array_equal(got, want)
    assert not np.array_equal(many[0][0], many[1][0])


@pytest.mark.parametrize("n_classes", [2, 4])
def test_warm_starts_from_the_sphere_before_reach_the_same_optimum_in_fewer_iterations(n_classes):
    """Sliding spheres (each shares all but one voxel with the one before) with more
    features than training samples: each fold solved in the basis starts from its optimal
    predictors on the sphere before. The decisions match scikit-learn's tightly solved
    Newton sphere by sphere, equal the cold starts' to rounding of the stopping rule, and
    take fewer Newton iterations."""
    from fastsearchlight.estimators._logistic_kernel import logistic_block

    rng = np.random.default_rng([41, n_classes])
    n, d, n_spheres = 32, 30, 12
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    groups = np.arange(n) // 8  # 4 runs: 24 training samples, fewer than d
    n_vox = d + n_spheres - 1
    # smooth along the voxels, raw BOLD scale, a class effect
    noise = rng.normal(size=(n_vox + 4, n))
    smooth = sum(noise[i : i + n_vox] for i in range(5)) / np.sqrt(5)
    effect = 0.5 * rng.normal(size=(n_vox, n_classes))[:, y]
    Xv = np.ascontiguousarray(1000 + 30 * (smooth + effect))
    vox = np.array([np.arange(s, s + d) for s in range(n_spheres)], dtype=np.int64)
    plan = make_plan("logo", y, groups)
    C = 0.1
    est = BatchedLogisticRegression(C=C)
    warm = est.many_fold_decisions_at(Xv, vox, y[None], n_classes, plan)[0]
    warm_iterations = est.n_iter_
    for f, (train, test) in enumerate(zip(plan.train_indices, plan.test_indices)):
        for s in range(n_spheres):
            X = Xv[vox[s]].T
            shift = X[train].mean(axis=0)
            ref = LogisticRegression(C=C, tol=1e-12, max_iter=10000, solver="newton-cholesky")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref.fit(X[train] - shift, y[train])
            ref_dec = ref.decision_function(X[test] - shift)
            np.testing.assert_allclose(warm[f][s], ref_dec, rtol=RTOL, atol=RTOL * np.abs(ref_dec).max())
    # the same call without warm starts
    train_idx = np.array(plan.train_indices, dtype=np.int64)
    test_idx = np.array(plan.test_indices, dtype=np.int64)
    n_train = np.full(plan.n_folds, train_idx.shape[1], dtype=np.int64)
    n_test = np.full(plan.n_folds, test_idx.shape[1], dtype=np.int64)
    runs = {}
    for warm_start in (False, True):
        follows = np.ones(n_spheres, dtype=bool) if warm_start else np.zeros(0, dtype=bool)
        follows[:1] = False
        runs[warm_start] = logistic_block(
            Xv, vox, train_idx, n_train, test_idx, n_test, y.astype(np.int64), n_classes, C, True,
            est.tol, est.max_iter, False, follows, _gram_plan(train_idx, n_train, len(y)),
        )  # fmt: skip
    cold_dec, cold_stats = runs[False][0], runs[False][3]
    warm_dec, warm_stats = runs[True][0], runs[True][3]
    assert warm_stats[1] == warm_iterations
    assert cold_stats[3] == warm_stats[3] == 0  # every fold in the basis
    np.testing.assert_allclose(warm_dec, cold_dec, rtol=0, atol=1e-8 * np.abs(cold_dec).max())
    assert warm_stats[1] < 0.9 * cold_stats[1]


@pytest.mark.parametrize(("n", "q"), [(162, 77), (37, 9), (20, 12), (5, 3)])
def test_binary_hessian_from_the_design_rows(n, q):
    """The binary Hessian ``A' diag(sw^2) A + diag(pen)`` from the design's rows, in tiles
    of eight rows by sixteen (any ``q``), matches numpy's product in its upper triangle; the
    work array may be larger than the design (one serves a path of designs), and the lower
    triangle below the tiles along the diagonal is not touched. With a cut, exactly the rows
    whose ``sw^2 |a|^2`` is above it are in the sum, and flagged so."""
    from fastsearchlight.estimators._logistic_kernel import _binary_hessian

    rng = np.random.default_rng(q)
    A = rng.normal(loc=1000.0, size=(n, q))
    sw = rng.uniform(0.0, 0.5, size=n)
    pen = rng.uniform(0.0, 1.0, size=q)
    As = np.full((n + 7, q + 3), np.nan)  # every entry the Hessian reads is written first
    H = np.full((q, q), np.nan)
    keep = np.full(n, np.nan)
    _binary_hessian(A, sw, pen, As, H, np.empty(0), -1.0, keep)  # every row (a2 not read)
    expected = (A * sw[:, None] ** 2).T @ A + np.diag(pen)
    upper = np.triu_indices(q)
    np.testing.assert_allclose(H[upper], expected[upper], rtol=1e-13, atol=1e-13 * np.abs(expected).max())
    below_tiles = np.arange(q)[:, None] >= 16 * (np.arange(q) // 16 + 1)
    assert np.isnan(H[below_tiles]).all()
    assert (keep == 1.0).all()
    # rows of negligible weight left out: those whose sw^2 |a|^2 is at most the cut
    a2 = (A**2).sum(axis=1)
    sw[::3] *= 1e-9
    cut = np.quantile(sw**2 * a2, 0.3)
    kept = sw**2 * a2 > cut
    assert 0 < kept.sum() < n
    _binary_hessian(A, sw, pen, As, H, a2, cut, keep)
    expected = (A[kept] * sw[kept, None] ** 2).T @ A[kept] + np.diag(pen)
    np.testing.assert_allclose(H[upper], expected[upper], rtol=1e-13, atol=1e-13 * np.abs(expected).max())
    np.testing.assert_array_equal(keep, kept.astype(float))


@pytest.mark.parametrize(("n", "q"), [(162, 82), (37, 9), (5, 3)])
def test_binary_hessian_in_single_precision(n, q):
    """With a ``float32`` work array the scaled rows are rounded to single precision and
    their products summed in it, stored in the ``float64`` Hessian: numpy's product of the
    same rounded rows to single precision's rounding, the penalty added in double."""
    from fastsearchlight.estimators._logistic_kernel import _binary_hessian

    rng = np.random.default_rng(q)
    A = rng.normal(scale=30.0, size=(n, q))
    sw = rng.uniform(0.0, 0.5, size=n)
    pen = rng.uniform(0.0, 1e-3, size=q)
    As = np.full((n, q), np.nan, np.float32)
    H = np.full((q, q), np.nan)
    _binary_hessian(A, sw, pen, As, H, np.empty(0), -1.0, np.empty(n))
    rows = (A * sw[:, None]).astype(np.float32).astype(np.float64)
    expected = rows.T @ rows
    upper = np.triu_indices(q)
    scale = np.sqrt(np.outer(np.diag(expected), np.diag(expected)))[upper]
    np.testing.assert_array_less(
        np.abs(H[upper] - expected[upper] - np.diag(pen)[upper]), 1e-6 * scale + 1e-30
    )
    assert np.abs(H[upper] - (A * sw[:, None] ** 2).T.dot(A)[upper]).max() > 0  # rounded, not exact


def _plan_arrays(folds):
    """``logistic_block``'s padded fold arrays from ``(train, test)`` pairs."""
    F = len(folds)
    tr = np.zeros((F, max(len(a) for a, _ in folds)), dtype=np.int64)
    te = np.zeros((F, max(len(b) for _, b in folds)), dtype=np.int64)
    for f, (a, b) in enumerate(folds):
        tr[f, : len(a)] = a
        te[f, : len(b)] = b
    ntr = np.array([len(a) for a, _ in folds], dtype=np.int64)
    nte = np.array([len(b) for _, b in folds], dtype=np.int64)
    return tr, ntr, te, nte


def _gram_plan(train_idx, n_train, n):
    """The folds' :class:`._GramPlan` arrays, as :class:`BatchedLogisticRegression` passes them."""
    from fastsearchlight.estimators.svm import _GramPlan

    kept = np.zeros((len(n_train), n), dtype=bool)
    for f, k in enumerate(n_train):
        kept[f, train_idx[f, :k]] = True
    return _GramPlan(kept).arrays()


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_origin_hessian_from_the_training_grams(fit_intercept):
    """Each fold's Hessian at the origin, from the shared training Gram matrices
    (:func:`._svm_kernel.training_grams`), equals numpy's ``A_train' A_train / (4 n_train) +
    diag(pen)`` in its upper triangle: folds of unequal sizes in shuffled order and
    ``LeaveOneGroupOut`` (disjoint left-out parts, sums by subtraction), and plans whose
    left-out parts overlap or that leave samples out of every fold."""
    from sklearn.model_selection import KFold, LeaveOneGroupOut, ShuffleSplit

    from fastsearchlight.estimators._logistic_kernel import _origin_hessian
    from fastsearchlight.estimators._svm_kernel import training_grams

    rng = np.random.default_rng(11)
    n, d = 37, 21
    As = rng.normal(scale=25.0, size=(n, d))
    if fit_intercept:
        As = np.hstack([As - As.mean(axis=0), np.ones((n, 1))])
    q = As.shape[1]
    groups = np.arange(n) * 5 // n
    folds = list(KFold(4, shuffle=True, random_state=1).split(As))
    plans = {
        "kfold": folds,
        "logo": list(LeaveOneGroupOut().split(As, groups=groups)),
        "overlap": [(a, np.r_[b, a[:1]]) for a, b in folds],
        "some left out of every fold": [(a[1:], b) for a, b in folds],
        "shuffle split": list(ShuffleSplit(3, test_size=0.3, random_state=0).split(As)),
    }
    upper = np.triu_indices(q)
    for name, plan in plans.items():
        plan = [(a[~np.isin(a, b)], b) for a, b in plan]  # (no test sample trained on)
        tr, ntr, _, _ = _plan_arrays(plan)
        arrays = _gram_plan(tr, ntr, n)
        assert arrays[3] == (name in ("kfold", "logo")), name  # disjoint left-out parts
        grams = np.full((len(plan), q, q), np.nan)
        training_grams(As, n, *arrays, grams, np.full((q, q), np.nan))
        for f, (a, _) in enumerate(plan):
            pen = rng.uniform(0.0, 1.0, size=q)
            H = np.full((q, q), np.nan)
            _origin_hessian(grams[f], len(a), pen, H)
            expected = As[a].T @ As[a] / (4 * len(a)) + np.diag(pen)
            np.testing.assert_allclose(
                H[upper], expected[upper], rtol=1e-12, atol=1e-12 * np.abs(expected).max(), err_msg=name
            )


def test_binary_folds_from_the_origin_hessian_by_blocks_match_the_per_fold_hessians():
    """``logistic_block`` with folds whose left-out parts are disjoint (the first Hessian from
    the shared training Gram matrices) gives the decisions and the Hessians of the same problems solved one fold at a
    time by :func:`_newton_binary` (with its last chord steps, as ``logistic_block``'s problems in the features),
    every Hessian formed from the fold's rows."""
    from sklearn.model_selection import KFold

    from fastsearchlight.estimators._logistic_kernel import (
        _newton_binary,
        logistic_block,
        newton_work,
        no_certificate,
    )

    rng = np.random.default_rng(12)
    n, d = 80, 15
    Xv = 1000.0 + 30.0 * rng.normal(size=(d, n))
    y = (Xv[:3].sum(axis=0) + rng.normal(scale=60.0, size=n) > 3000.0).astype(np.int64)
    folds = list(KFold(4).split(np.zeros((n, 1))))
    tr, ntr, te, nte = _plan_arrays(folds)
    vox = np.arange(d, dtype=np.int64)[None, :]
    dec, _, mu, stats = logistic_block(
        Xv,
        vox,
        tr,
        ntr,
        te,
        nte,
        y,
        2,
        1.0,
        True,
        1e-10,
        100,
        False,
        np.zeros(0, bool),
        _gram_plan(tr, ntr, n),
    )
    As = np.hstack([(Xv - Xv.mean(axis=1, keepdims=True)).T, np.ones((n, 1))])
    its_all = hess_all = 0
    for f, (a, b) in enumerate(folds):
        pen = np.full(d + 1, 1.0 / len(a))
        pen[-1] = 0.0
        theta = np.zeros(d + 1)
        its, ok, hess, *_ = _newton_binary(
            np.ascontiguousarray(As[a]), y[a].astype(float), pen, np.ones(d + 1), theta, 1e-10, 100,
            np.empty((d + 1, d + 1)), np.empty((len(a), d + 1)), True, no_certificate(d + 1),
            newton_work(len(a), d + 1, 0), last_chords=True,
        )  # fmt: skip
        assert ok
        its_all += its
        hess_all += hess
        expected = As[b] @ theta
        np.testing.assert_allclose(
            dec[0, f, : len(b), 0], expected, rtol=0, atol=1e-9 * (1 + np.abs(expected).max())
        )
    # the same Hessians; the last iterations, at the rounding level, may differ by one per fold
    assert stats[4] == hess_all
    assert abs(stats[1] - its_all) <= len(folds)


def _line_objective(A, t, pen, theta, step, s):
    """Mean binary log-loss plus the penalty at ``theta + s * step`` (numpy)."""
    v = theta + s * step
    z = (2.0 * t - 1.0) * (A @ v)
    return np.mean(np.logaddexp(0.0, -z)) + 0.5 * np.sum(pen * v * v)


def _full_step_trial(A, t, pen, theta, step):
    """What :func:`_newton_binary` holds after a full step: the predictors at ``theta``,
    ``A step``, the trial's predictors and exponentials, and the objective there."""
    from fastsearchlight.estimators._logistic_kernel import _binary_trial

    z = A @ theta
    dz = A @ step
    zt, et = np.empty_like(z), np.empty_like(z)
    loss = _binary_trial(z, dz, 1.0, 2.0 * t - 1.0, zt, et)
    return z, dz, zt, et, loss + 0.5 * np.sum(pen * (theta + step) ** 2)


def test_extrapolation_is_a_newton_step_along_the_line_and_descends():
    """After the first Newton step from the origin on raw-scale data (which undershoots),
    the extrapolation is the 1-D Newton step ``1 - phi'(1) / phi''(1)`` of the objective
    ``phi(s)`` along the step (derivatives from numpy), its objective is below the full
    step's, and its predictors are the trial's at that ``s``."""
    from fastsearchlight.estimators._logistic_kernel import _extrapolate

    rng = np.random.default_rng(7)
    n, q = 80, 12
    A = np.hstack([rng.normal(scale=30.0, size=(n, q - 1)), np.ones((n, 1))])
    t = (A[:, :3].sum(axis=1) + rng.normal(scale=20.0, size=n) > 0).astype(float)
    pen = np.full(q, 1.0 / n)
    pen[-1] = 0.0
    theta = np.zeros(q)
    # the Newton step from the origin (every weight 1/4)
    grad = A.T @ (0.5 - t) / n
    step = -np.linalg.solve(A.T @ A / (4 * n) + np.diag(pen), grad)
    z, dz, zt, et, f1 = _full_step_trial(A, t, pen, theta, step)
    zx, ex = np.empty(n), np.empty(n)
    s, loss = _extrapolate(theta, step, pen, t, 2.0 * t - 1.0, z, dz, zt, et, zx, ex, f1)
    v = theta + step
    prob = 1.0 / (1.0 + np.exp(-(A @ v)))
    d1 = dz @ (prob - t) / n + np.sum(pen * v * step)
    d2 = (dz * dz) @ (prob * (1.0 - prob)) / n + np.sum(pen * step * step)
    assert d1 < 0.0  # the full step undershoots
    np.testing.assert_allclose(s, 1.0 - d1 / d2, rtol=1e-10)
    assert s > 1.0
    f_s = _line_objective(A, t, pen, theta, step, s)
    np.testing.assert_allclose(loss + 0.5 * np.sum(pen * (theta + s * step) ** 2), f_s, rtol=1e-12)
    assert f_s < f1
    np.testing.assert_allclose(zx, z + s * dz, rtol=1e-12)
    np.testing.assert_allclose(ex, np.exp(-np.abs(z + s * dz)), rtol=1e-12)


def test_no_extrapolation_past_the_line_minimum():
    """A full step that overshoots the minimum along its line (slope positive there) is
    not extrapolated: ``(1.0, 0.0)``, the trial arrays untouched."""
    from fastsearchlight.estimators._logistic_kernel import _extrapolate

    rng = np.random.default_rng(8)
    n, q = 60, 6
    A = rng.normal(size=(n, q))
    t = (A[:, 0] + rng.normal(size=n) > 0).astype(float)
    pen = np.full(q, 1.0 / n)
    theta = np.zeros(q)
    grad = A.T @ (0.5 - t) / n
    step = -10.0 * np.linalg.solve(A.T @ A / (4 * n) + np.diag(pen), grad)  # far past
    z, dz, zt, et, f1 = _full_step_trial(A, t, pen, theta, step)
    zx, ex = np.full(n, np.nan), np.full(n, np.nan)
    assert _extrapolate(theta, step, pen, t, 2.0 * t - 1.0, z, dz, zt, et, zx, ex, f1) == (1.0, 0.0)
    assert np.isnan(zx).all() and np.isnan(ex).all()


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("C", [1.0, 1000.0])  # 1000: nearly separable, optimum far out
@pytest.mark.parametrize("hessian_type", [np.float64, np.float32])
def test_extrapolated_newton_reaches_the_same_optimum(fit_intercept, C, hessian_type):
    """From the origin, Newton's method with and without the extrapolations ends at the
    same point (the optimum, to the gradient's rounding level), on raw-scale data with
    fewer features than samples, where the full steps undershoot; so does it with its
    Hessians' products in single precision (a ``float32`` work array), the gradient exact."""
    from fastsearchlight.estimators._logistic_kernel import _newton_binary, newton_work, no_certificate

    rng = np.random.default_rng(9)
    n, p = 120, 40
    A = rng.normal(scale=25.0, size=(n, p))
    t = (A[:, :5].sum(axis=1) + rng.normal(scale=40.0, size=n) > 0).astype(float)
    if fit_intercept:
        A = np.hstack([A - A.mean(axis=0), np.ones((n, 1))])
    q = A.shape[1]
    pen = np.full(q, 1.0 / (C * n))
    if fit_intercept:
        pen[-1] = 0.0
    out = {}
    for extrapolate in (False, True):
        theta = np.zeros(q)
        its, ok, hess, *_ = _newton_binary(
            A, t, pen, np.ones(q), theta, 1e-10, 100, np.empty((q, q)), np.empty((n, q), hessian_type),
            extrapolate, no_certificate(q), newton_work(n, q, 0),
        )  # fmt: skip
        assert ok
        prob = 1.0 / (1.0 + np.exp(-(A @ theta)))
        assert np.abs(A.T @ (prob - t) / n + pen * theta).max() <= 1e-10
        out[extrapolate] = theta
    np.testing.assert_allclose(out[True], out[False], rtol=1e-9, atol=1e-9 * np.abs(out[False]).max())


def _nearly_separable_problem():
    """A nearly separable raw-scale binary problem (150 rows, 40 centred features and an
    unpenalised intercept, ``C = 1000``) and its optimal predictors by Newton's method in
    numpy (every row in every Hessian, Armijo from the full step) to a gradient of 1e-13."""
    rng = np.random.default_rng(5)
    n, p = 150, 40
    A = rng.normal(scale=25.0, size=(n, p))
    t = (A[:, :5].sum(axis=1) + rng.normal(scale=10.0, size=n) > 0).astype(float)
    A = np.hstack([A - A.mean(axis=0), np.ones((n, 1))])
    q = A.shape[1]
    pen = np.full(q, 1.0 / (1000.0 * n))
    pen[-1] = 0.0
    reference = np.zeros(q)
    for _ in range(100):
        prob = 1.0 / (1.0 + np.exp(-(A @ reference)))
        grad = A.T @ (prob - t) / n + pen * reference
        if np.abs(grad).max() <= 1e-13:
            break
        w = prob * (1.0 - prob) / n
        step = -np.linalg.solve((A * w[:, None]).T @ A + np.diag(pen), grad)
        f0 = np.mean(np.logaddexp(0.0, -(2 * t - 1) * (A @ reference))) + 0.5 * pen @ reference**2
        s = 1.0
        while s > 1e-12:
            trial = reference + s * step
            f1 = np.mean(np.logaddexp(0.0, -(2 * t - 1) * (A @ trial))) + 0.5 * pen @ trial**2
            if f1 <= f0 + 1e-4 * s * grad @ step + 1e-14 * abs(f0):
                break
            s /= 2
        reference = trial
    return A, t, pen, A @ reference


@pytest.mark.parametrize("hessian_type", [np.float64, np.float32])
def test_rows_of_negligible_weight_left_out_but_at_the_last_step(hessian_type):
    """Without a certificate too, the Hessians but the last Newton step's leave out the rows
    whose ``w |a|^2`` is at most ``s lam / n`` (``lam`` the smallest positive penalty: the
    intercept's is 0), flagged in the work space's keep row. On a nearly separable raw-scale
    problem, where many rows weigh nothing near the optimum, a run stopped before its last
    step has left rows out, and a run to ``tol`` ends with a Newton step on every row at
    the optimum of every row (a numpy Newton iteration's)."""
    from fastsearchlight.estimators._logistic_kernel import (
        _LEFT_OUT,
        _ROW_KEEP,
        _newton_binary,
        newton_work,
        no_certificate,
    )

    A, t, pen, z = _nearly_separable_problem()
    n, q = A.shape
    w = 1.0 / (1.0 + np.exp(-z)) * (1.0 / (1.0 + np.exp(z))) / n
    assert (w * (A**2).sum(axis=1) <= _LEFT_OUT / n * pen[0]).sum() >= 10  # rows to leave out

    def solve(max_iter):
        theta = np.zeros(q)
        work = newton_work(n, q, 0)
        its, ok, *_ = _newton_binary(
            A, t, pen, np.ones(q), theta, 1e-13, max_iter, np.empty((q, q)), np.empty((n, q), hessian_type),
            True, no_certificate(q), work,
        )  # fmt: skip
        return its, ok, theta, work[_ROW_KEEP, :n].copy()

    its, ok, theta, keep = solve(100)
    assert ok and (keep == 1.0).all()  # the last step took every row
    np.testing.assert_allclose(A @ theta, z, rtol=0, atol=1e-9 * np.abs(z).max())
    _, ok, _, keep = solve(its - 1)  # stopped before its last step
    assert not ok and (keep == 0.0).any()


@pytest.mark.parametrize("hessian_type", [np.float64, np.float32])
def test_last_chord_steps_take_the_gradient_below_tol_without_a_new_hessian(hessian_type):
    """With ``last_chords``, a problem whose gradient is below ``tol`` goes on with the factor
    at hand, down to ``_FINAL_SHARE * tol``, instead of a last Newton step: on a nearly
    separable raw-scale problem it factors one Hessian fewer than without, ends with its
    gradient that far below ``tol``, at the optimum of a numpy Newton iteration run to the
    rounding floor and nearer it than the Newton step's point. Where that share of ``tol`` is
    below the gradient's rounding floor, the chord steps stop shrinking it and the last
    Newton step comes as before."""
    from fastsearchlight.estimators._logistic_kernel import (
        _FINAL_SHARE,
        _newton_binary,
        newton_work,
        no_certificate,
    )

    A, t, pen, z = _nearly_separable_problem()
    n, q = A.shape

    def solve(tol, last_chords):
        theta = np.zeros(q)
        its, ok, hess, *_ = _newton_binary(
            A, t, pen, np.ones(q), theta, tol, 100, np.empty((q, q)), np.empty((n, q), hessian_type), True,
            no_certificate(q), newton_work(n, q, 0), last_chords=last_chords,
        )  # fmt: skip
        prob = 1.0 / (1.0 + np.exp(-(A @ theta)))
        return ok, hess, theta, np.abs(A.T @ (prob - t) / n + pen * theta).max()

    tol = 1e-8
    ok, hess, theta, gmax = solve(tol, True)
    ok_newton, hess_newton, theta_newton, gmax_newton = solve(tol, False)
    assert ok and ok_newton
    assert hess == hess_newton - 1  # the same path, but for the last Newton step
    assert gmax <= _FINAL_SHARE * tol
    np.testing.assert_allclose(A @ theta, z, rtol=0, atol=1e-9 * np.abs(z).max())
    # nearer the optimum than the last Newton step from tol (measured: 3.8e-8 against 2.5e-7)
    assert np.abs(A @ theta - z).max() < np.abs(A @ theta_newton - z).max()
    ok, hess, theta, gmax = solve(1e-15, True)  # below the rounding floor: the Newton step
    ok_newton, hess_newton, theta_newton, _ = solve(1e-15, False)
    assert ok and ok_newton
    assert hess == hess_newton
    np.testing.assert_allclose(A @ theta, z, rtol=0, atol=1e-9 * np.abs(z).max())


def test_newton_binary_rejects_a_work_space_too_small():
    """The binary solver's vectors live in the caller's work space (no allocation per
    problem): one with too few columns for the rows, the parameters or the test rows is an
    error, not a write past its end; so is a certificate with single-precision Hessians."""
    from fastsearchlight.estimators._logistic_kernel import (
        _newton_binary,
        certificate,
        newton_work,
        no_certificate,
    )

    rng = np.random.default_rng(4)
    n, q, m = 30, 6, 40
    A = rng.normal(size=(n, q))
    t = (rng.random(n) > 0.5).astype(float)
    cert = certificate(np.ones((q, m)), (A**2).sum(axis=1), np.ones(m), np.zeros(3), 0.01)

    def solve(work, cert=cert):
        return _newton_binary(
            A, t, np.full(q, 0.1), np.ones(q), np.zeros(q), 1e-10, 50, np.empty((q, q)), np.empty((n, q)), False,
            cert, work,
        )  # fmt: skip

    with pytest.raises(ValueError, match="work space"):  # too few for the rows
        solve(newton_work(n - 1, q, 0), no_certificate(q))
    for work in (newton_work(n, q, m - 1), np.empty((16, 100))):  # the test rows; the vectors
        with pytest.raises(ValueError, match="work space"):
            solve(work)
    assert solve(newton_work(n, q, m))[1]
    assert solve(newton_work(n, q, 0), no_certificate(q))[1]
    with pytest.raises(ValueError, match="certificate needs Hessians in float64"):
        _newton_binary(
            A, t, np.full(q, 0.1), np.ones(q), np.zeros(q), 1e-10, 50, np.empty((q, q)),
            np.empty((n, q), np.float32), False, cert, newton_work(n, q, m),
        )  # fmt: skip


@pytest.mark.parametrize("extrapolate", [False, True])
@pytest.mark.parametrize("certify", [False, True])
def test_newton_binary_leaves_its_predictors_for_the_next_problem(extrapolate, certify):
    """The binary solver leaves the predictors ``A theta`` of the point it returns, their
    ``exp(-|z|)`` and the mean loss there (wherever its swaps of trials left them: full
    steps, extrapolations, a stop on the certificate); started from those (``f_start``) on
    the next problem of the same rows, it takes the same iterations and Hessians to the same
    optimum as when it computes them."""
    from fastsearchlight.estimators._logistic_kernel import (
        _newton_binary,
        certificate,
        newton_work,
        no_certificate,
    )

    rng = np.random.default_rng(11)
    n, q, m = 90, 14, 25
    A = rng.normal(scale=30.0, size=(n, q))
    A[:, -1] = 1.0
    t = (A[:, :3].sum(axis=1) + rng.normal(scale=60.0, size=n) > 0).astype(float)
    At = rng.normal(scale=30.0, size=(m, q))

    def solve(theta, lam, work, f_start=-1.0):
        out = np.zeros(3)
        cert = (
            certificate(np.ascontiguousarray(At.T), (A**2).sum(axis=1), np.ones(m), out, -1.0)
            if certify
            else no_certificate(q)
        )
        return _newton_binary(
            A, t, np.full(q, lam), np.ones(q), theta, 1e-11, 200, np.empty((q, q)), np.empty((n, q)), extrapolate,
            cert, work, False, f_start,
        )  # fmt: skip

    def loss_at(theta):
        return np.logaddexp(0.0, -(2 * t - 1) * (A @ theta)).mean()

    work = newton_work(n, q, m)
    theta = np.zeros(q)
    first = solve(theta, 1.0 / n, work)
    assert first[1]
    z = A @ theta
    np.testing.assert_allclose(work[1, :n], z, rtol=0, atol=1e-11 * np.abs(z).max())
    np.testing.assert_allclose(work[2, :n], np.exp(-np.abs(z)), rtol=1e-10)
    assert first[4] == pytest.approx(loss_at(theta), rel=1e-12)
    # the next problem (a weaker penalty) from there: handed over, or computed
    handed, computed = theta.copy(), theta.copy()
    kept = solve(handed, 0.1 / n, work, first[4])
    fresh = solve(computed, 0.1 / n, newton_work(n, q, m))
    assert kept[0] == fresh[0] and kept[2] == fresh[2]
    np.testing.assert_allclose(handed, computed, rtol=0, atol=1e-9 * np.abs(computed).max())
    np.testing.assert_allclose(work[1, :n], A @ handed, rtol=0, atol=1e-11 * np.abs(A @ handed).max())
    assert kept[4] == pytest.approx(loss_at(handed), rel=1e-12)


@pytest.mark.parametrize("n_classes", [3, 4, 7])
def test_softmax_trial_and_penalty_along_a_step_match_numpy(n_classes):
    """The multinomial line search's loss (class by class, vectorised), probabilities and
    penalty coefficients against numpy, with predictors far apart (large margins) and a last
    class that is minus the sum of the others."""
    from scipy.special import logsumexp, softmax

    from fastsearchlight.estimators._logistic_kernel import _multinomial_penalty, _softmax_trial

    rng = np.random.default_rng(n_classes)
    m, n, p = n_classes - 1, 37, 11
    U = rng.normal(size=(m, n)) * 30.0
    dU = rng.normal(size=(m, n))
    y = rng.integers(0, n_classes, n)
    y[:n_classes] = np.arange(n_classes)
    Ut, Pt = np.empty((m, n)), np.empty((n_classes, n))
    loss = _softmax_trial(U, dU, 0.375, y, Ut, Pt, np.empty((2, n)))
    Z = U + 0.375 * dU
    Zall = np.vstack([Z, -Z.sum(0)])
    np.testing.assert_allclose(Ut, Z, rtol=1e-15)
    np.testing.assert_allclose(Pt, softmax(Zall, axis=0), rtol=1e-13, atol=1e-300)
    want = np.mean(logsumexp(Zall, axis=0) - Zall[y, np.arange(n)])
    assert abs(loss - want) <= 1e-13 * abs(want)

    Theta, Step = rng.normal(size=(m, p)), rng.normal(size=(m, p))
    pen = rng.uniform(0.0, 2.0, p)
    pen[-1] = 0.0
    c0, c1, c2 = _multinomial_penalty(Theta, Step, pen)
    for s in (0.0, 0.5, 1.0, 3.0):
        W = Theta + s * Step
        want = 0.5 * np.sum(pen * (np.sum(W * W, axis=0) + W.sum(0) ** 2))
        assert abs(c0 + s * (c1 + s * c2) - want) <= 1e-13 * want


def _multinomial_state(A, y, T, pen):
    """The probabilities ``(K, n)`` and the objective at the parameter rows ``T`` ``(K - 1,
    p)`` of the multinomial model (the last class's predictors minus the others' sum), in
    numpy."""
    from scipy.special import logsumexp, softmax

    Z = A @ T.T
    Zall = np.hstack([Z, -Z.sum(axis=1, keepdims=True)])
    P = np.ascontiguousarray(softmax(Zall, axis=1).T)
    loss = np.mean(logsumexp(Zall, axis=1) - Zall[np.arange(len(y)), y])
    return P, loss + 0.5 * np.sum(pen * (np.sum(T * T, axis=0) + T.sum(axis=0) ** 2))


def _all_classes(T, fit_intercept):
    """Weights ``(K, r)`` and intercepts ``(K,)`` of every class, from the parameter rows."""
    full = np.vstack([T, -T.sum(axis=0)])
    return (full[:, :-1], full[:, -1]) if fit_intercept else (full, np.zeros(len(full)))


@pytest.mark.parametrize("n_classes", [3, 4])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("C", [0.1, 1.0, 10.0])
def test_decision_bound_holds_at_every_iterate(n_classes, fit_intercept, C):
    """The bound of :func:`_decision_bound` on the distance to the optimum (the weights'
    from the duality gap, the intercepts' spread from the intercept's optimality condition)
    holds at every Newton iterate, against the optimum solved to rounding, for the weights,
    the intercepts and the decisions of unseen samples; and it is tight near the end."""
    from fastsearchlight.estimators._logistic_kernel import _decision_bound, _newton_multinomial

    rng = np.random.default_rng([71, n_classes, fit_intercept, int(C * 10)])
    n, r = 24, 30
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    means = rng.normal(size=(n_classes, r)) * 1.5
    X = rng.normal(size=(n, r)) + means[y] + 0.7
    A = np.ascontiguousarray(np.hstack([X, np.ones((n, 1))]) if fit_intercept else X)
    lam = 1.0 / (C * n)
    pen = np.full(A.shape[1], lam)
    if fit_intercept:
        pen[-1] = 0.0
    m, p = n_classes - 1, A.shape[1]
    none = np.empty((0, r))
    optimum = np.zeros((m, p))
    _newton_multinomial(A, y, n_classes, pen, optimum, 1e-13, 200, none, 0.0, fit_intercept)
    W_opt, b_opt = _all_classes(optimum, fit_intercept)
    xmax = np.sqrt((X * X).sum(axis=1)).max()
    unseen = rng.normal(size=(50, r)) * 2.0 + 0.7
    checked, last = 0, np.inf
    for iterations in range(1, 12):
        T = np.zeros((m, p))
        _newton_multinomial(A, y, n_classes, pen, T, 0.0, iterations, none, 0.0, fit_intercept)
        P, f = _multinomial_state(A, y, T, pen)
        radius, spread = _decision_bound(
            A, y, r, T, P, f, lam, fit_intercept, xmax, np.empty((n_classes, n)), np.empty(n_classes + n + r)
        )
        if not np.isfinite(spread):
            continue
        checked += 1
        W, b = _all_classes(T, fit_intercept)
        assert np.linalg.norm(W - W_opt) <= radius
        u = b_opt - b
        assert u.max() - u.min() <= spread * (1 + 1e-12) + 1e-15
        dec, dec_opt = unseen @ W.T + b, unseen @ W_opt.T + b_opt
        moved = np.abs((dec - dec_opt)[:, :, None] - (dec - dec_opt)[:, None, :]).max(axis=(1, 2))
        assert np.all(moved <= np.sqrt(2) * radius * np.linalg.norm(unseen, axis=1) + spread)
        last = np.sqrt(2) * radius * np.linalg.norm(unseen, axis=1).max() + spread
    assert checked >= 3
    # not vacuous: at the last iterates within 1% of the decisions' size (1e-5 to 2.7e-3 of
    # it in these cases: the floor is the gap's rounding margin over lam)
    assert last < 1e-2 * np.abs(dec_opt).max()


@pytest.mark.parametrize("n_classes", [3, 4])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_predictions_only_stop_on_proofs_with_the_same_predictions(n_classes, fit_intercept):
    """For scores that use only the predictions, folds with more features than training
    samples stop once their test predictions are proven: fewer iterations, the same
    predictions as the exact decisions', decisions close to them."""
    rng = np.random.default_rng([29, n_classes, fit_intercept])
    X, y, groups = make_data(rng, 6, 40, 60, n_classes, raw=True)  # 30 training samples
    plan = make_plan("logo", y, groups)
    exact = BatchedLogisticRegression(fit_intercept=fit_intercept)
    proven = BatchedLogisticRegression(fit_intercept=fit_intercept)
    Xv, vox = as_voxel_major(X)
    ref = exact.many_fold_decisions_at(Xv, vox, y[None], n_classes, plan)[0]
    got = proven.many_fold_decisions_for_predictions_at(Xv, vox, y[None], n_classes, plan)[0]
    assert exact.n_proven_ == 0 and proven.n_proven_ > 0.5 * proven.n_problems_
    assert proven.n_iter_ < exact.n_iter_
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a.argmax(axis=-1), b.argmax(axis=-1))
        np.testing.assert_allclose(b, a, rtol=0.05, atol=0.05 * np.abs(a).max())

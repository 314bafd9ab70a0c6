"""BatchedRidgeClassifier against scikit-learn's RidgeClassifier fitted per sphere and fold."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import KFold, ShuffleSplit
from sphere_cases import CASES, N_RUNS, SPLITTERS, make_spheres, sliding_spheres  # noqa: F401

from fastsearchlight.cv import make_cv_plan
from fastsearchlight.estimators._ridge_kernel import (
    block_products_added,
    block_products_rows,
    gather_rows,
    order_runs,
    sphere_slots,
)
from fastsearchlight.estimators.ridge import BatchedRidgeClassifier


def reference(est, X, y, plan):
    """scikit-learn's decision values and predictions per fold."""
    dec, pred = [], []
    for tr, te in zip(plan.train_indices, plan.test_indices):
        fits = [clone(est).fit(Xs[tr], y[tr]) for Xs in X]
        dec.append(np.array([m.decision_function(Xs[te]) for m, Xs in zip(fits, X)]))
        pred.append(np.array([m.predict(Xs[te]) for m, Xs in zip(fits, X)]))
    return dec, pred


def assert_decisions_match(ours, ref, pred):
    """Same predictions; decision values equal to rtol 1e-6 (relative to each sphere's
    largest value for values near 0)."""
    ours_pred = (ours > 0).astype(int) if ref.ndim == 2 else ours.argmax(-1)
    assert np.array_equal(ours_pred, pred)
    scale = np.abs(ref).reshape(len(ref), -1).max(axis=1)
    scale = scale.reshape((-1,) + (1,) * (ref.ndim - 1))
    assert np.all(np.abs(ours - ref) <= 1e-6 * (np.abs(ref) + scale))


@pytest.mark.parametrize("n_classes, raw, splitter, n_features", CASES)
def test_matches_ridge_classifier(n_classes, raw, splitter, n_features):
    X, y, groups = make_spheres(n_features + 7 * n_classes, n_classes, raw, n_features)
    plan = make_cv_plan(SPLITTERS[splitter], y, groups if splitter == "logo" else None)
    ours = BatchedRidgeClassifier().fold_decisions(X, y, n_classes, plan)
    dec, pred = reference(RidgeClassifier(), X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert a.shape == b.shape
        assert_decisions_match(a, b, p)


@pytest.mark.parametrize(
    "params",
    [
        {"alpha": 1e-3},
        {"alpha": 100.0},
        {"fit_intercept": False},
        {"alpha": 1e-2, "fit_intercept": False},
    ],
)
@pytest.mark.parametrize("n_classes, raw", [(2, True), (3, False)])
def test_parameters_are_honoured(params, n_classes, raw):
    X, y, _ = make_spheres(21, n_classes, raw, 8, n_spheres=8)
    plan = make_cv_plan(ShuffleSplit(4, test_size=0.25, random_state=0), y)
    ours = BatchedRidgeClassifier(**params).fold_decisions(X, y, n_classes, plan)
    dec, pred = reference(RidgeClassifier(**params), X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert_decisions_match(a, b, p)


def test_more_features_than_training_samples():
    """scikit-learn then solves the dual (kernel) system: same solution."""
    X, y, _ = make_spheres(22, 2, False, 20, n_spheres=4)
    X, y = X[:, :24], y[:24]
    plan = make_cv_plan(KFold(3), y)
    ours = BatchedRidgeClassifier().fold_decisions(X, y, 2, plan)
    dec, pred = reference(RidgeClassifier(), X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert_decisions_match(a, b, p)


@pytest.mark.parametrize("alpha", [0.0, -1.0, [1.0, 2.0]])
def test_invalid_alpha_raises(alpha):
    X, y, _ = make_spheres(23, 2, False, 3, n_spheres=1)
    with pytest.raises(ValueError, match="alpha"):
        BatchedRidgeClassifier(alpha=alpha).fold_decisions(X, y, 2, make_cv_plan(KFold(3), y))


@pytest.mark.parametrize("n_features", [8, 23, 24, 60])  # d < n, d ~ n (either side), d > n
@pytest.mark.parametrize("n_classes, raw", [(2, True), (2, False), (4, True), (4, False)])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_every_shape_against_scikit_learn(n_features, n_classes, raw, fit_intercept):
    """32 samples in 4 runs, leave one run out (24 training samples): the primal path below
    24 features, the sample-space (kernel) path above; binary and one-vs-rest."""
    X, y, groups = make_spheres(31 + n_features, n_classes, raw, n_features, n_spheres=6)
    X, y, groups = X[:, :32], y[:32], groups[:32] * 0 + np.arange(32) // 8
    plan = make_cv_plan(SPLITTERS["logo"], y, groups)
    est = RidgeClassifier(fit_intercept=fit_intercept)
    ours = BatchedRidgeClassifier(fit_intercept=fit_intercept).fold_decisions(X, y, n_classes, plan)
    dec, pred = reference(est, X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert a.shape == b.shape
        assert_decisions_match(a, b, p)


@pytest.mark.parametrize("n_features", [8, 23])  # d < n, d ~ n (the compiled primal kernel)
@pytest.mark.parametrize("n_classes, raw", [(2, True), (3, False)])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_voxel_major_spheres_and_several_label_vectors(n_features, n_classes, raw, fit_intercept):
    """Overlapping spheres read from voxel-major data (as the searchlight passes them), two
    label vectors at once, a plan with samples in no training or test set: every fold's
    decisions as scikit-learn's fitted sphere by sphere."""
    X, y, _ = make_spheres(40 + n_features, n_classes, raw, n_features, n_spheres=1)
    rng = np.random.default_rng(n_features)
    n_samples = X.shape[1]
    data = X[0].T  # (n_features, n_samples): the voxels
    extra = 1000.0 * raw + rng.standard_normal((12, n_samples))
    Xv = np.concatenate([data, extra])  # (n_voxels, n_samples)
    vox = np.stack([rng.permutation(len(Xv))[:n_features] for _ in range(7)])
    ys = np.stack([y, rng.permutation(y)])
    plan = make_cv_plan(ShuffleSplit(3, train_size=0.6, test_size=0.3, random_state=1), y)
    est = BatchedRidgeClassifier(alpha=0.5, fit_intercept=fit_intercept)
    ours = est.many_fold_decisions_at(Xv, vox, ys, n_classes, plan)
    spheres = Xv[vox].transpose(0, 2, 1)  # (7, n_samples, n_features)
    for labels, folds in zip(ys, ours):
        dec, pred = reference(RidgeClassifier(alpha=0.5, fit_intercept=fit_intercept), spheres, labels, plan)
        for a, b, p in zip(folds, dec, pred):
            assert a.shape == b.shape
            assert_decisions_match(a, b, p)


@pytest.mark.parametrize(
    "order",
    [np.arange(10), np.array([3, 4, 5, 0, 1, 2, 9, 6, 7, 8]), np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])],
)
@pytest.mark.parametrize("centre", [True, False])
def test_gather_rows_reads_each_sphere_in_block_order(order, centre):
    runs = order_runs(order)
    assert runs[:, 2].sum() == len(order)
    if np.array_equal(order, np.arange(10)):
        assert len(runs) == 1
    rng = np.random.default_rng(0)
    Xv = 1e4 + rng.standard_normal((6, 10))
    rows = np.array([4, 0, 5])
    Xt, mu = np.full((3, 10), np.nan), np.full(3, np.nan)
    gather_rows(Xv, rows, runs, Xt, centre, mu)
    expected = Xv[rows][:, order]
    if centre:
        np.testing.assert_allclose(mu, expected.mean(axis=1), rtol=1e-14)
        expected = expected - expected.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(Xt, expected, rtol=1e-12, atol=1e-10)


def test_kernel_falls_back_to_lu_when_the_normal_equations_are_not_positive_definite():
    """A negative alpha (possible only by calling the kernel directly) makes every fold's
    matrix indefinite: Cholesky stops and the LU fallback must solve the full symmetric
    system rebuilt from the upper triangles."""
    from fastsearchlight.estimators._ridge_kernel import ridge_block, role_blocks

    rng = np.random.default_rng(3)
    n, p, alpha = 40, 5, -30.0
    X = 100.0 + rng.standard_normal((n, p))
    y = np.repeat([0, 1], n // 2)
    plan = make_cv_plan(KFold(4), y)
    rb = role_blocks(plan)
    targets = np.where(y == 1, 1.0, -1.0)[:, None]
    dec = ridge_block(
        np.ascontiguousarray(X.T), np.arange(p, dtype=np.int64)[None], rb.runs, rb.bounds, rb.used,
        rb.fold_blocks, rb.subtract, rb.n_train, rb.test_pos, rb.n_test, rb.test_span,
        np.ascontiguousarray(targets[rb.order]), alpha, True,
    )  # fmt: skip
    for f, (tr, te) in enumerate(zip(plan.train_indices, plan.test_indices)):
        mu, ybar = X[tr].mean(axis=0), targets[tr].mean(axis=0)
        Xc = X[tr] - mu
        A = Xc.T @ Xc + alpha * np.eye(p)
        assert np.linalg.eigvalsh(A).min() < 0  # the fallback is what is tested
        coef = np.linalg.solve(A, Xc.T @ (targets[tr] - ybar))
        expected = (X[te] - mu) @ coef + ybar
        np.testing.assert_allclose(dec[0, f, : len(te)], expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("definite", [True, False])
def test_cholesky_solve_reads_only_the_upper_triangle(definite):
    """The LDA kernel hands over matrices whose lower triangle is not kept: both the
    Cholesky path and the LU fallback (indefinite matrices) must solve the symmetric matrix
    of the upper triangle."""
    from fastsearchlight.estimators._ridge_kernel import _cholesky_solve

    rng = np.random.default_rng(4)
    B = rng.standard_normal((6, 6))
    S = B @ B.T + np.eye(6) if definite else B + B.T
    R = rng.standard_normal((6, 2))
    A = np.triu(S) + np.tril(np.full((6, 6), 1e3), -1)
    out = R.copy()
    _cholesky_solve(A, out)
    np.testing.assert_allclose(out, np.linalg.solve(S, R), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sliding_spheres_reuse_products_and_match_sklearn(fit_intercept):
    """Spheres sliding along a row of voxels (in increasing order, as the neighbourhoods
    give them) share most voxels with the one before, whose block products they keep
    (:func:`sphere_slots`): every sphere's decisions are still scikit-learn's."""
    Xv, vox, y = sliding_spheres(11)
    n_classes = 2
    plan = make_cv_plan(KFold(4), y)
    est = BatchedRidgeClassifier(alpha=0.5, fit_intercept=fit_intercept)
    ours = est.many_fold_decisions_at(Xv, vox, y[None], n_classes, plan)[0]
    dec, pred = reference(
        RidgeClassifier(alpha=0.5, fit_intercept=fit_intercept), Xv[vox].transpose(0, 2, 1), y, plan
    )
    for a, b, p in zip(ours, dec, pred):
        assert_decisions_match(a, b, p)


def test_sphere_slots_keep_shared_voxels_in_place():
    """Shared voxels keep the slot they had on the sphere before, added ones take the freed
    slots in increasing order; fewer than half shared (or another size, or voxels not in
    increasing order): every slot its voxel's position, -1."""
    prev = np.array([2, 5, 7, 9, 11, 14])
    prev_slot = np.array([3, 0, 5, 1, 2, 4])  # prev[i] sits in slot prev_slot[i]
    rows = np.array([5, 7, 9, 11, 20, 30])  # loses 2 (slot 3) and 14 (slot 4)
    slot, slot_rows, added = (np.full(6, -9, dtype=np.int64) for _ in range(3))
    k = sphere_slots(rows, prev, prev_slot, slot, slot_rows, added)
    assert k == 2
    assert list(added[:k]) == [3, 4]
    assert list(slot) == [0, 5, 1, 2, 3, 4]
    assert all(slot_rows[slot[j]] == rows[j] for j in range(6))
    for other in (np.array([5, 7, 20, 30, 40, 50]), np.array([5, 9, 7, 11, 20, 30])):
        assert sphere_slots(other, prev, prev_slot, slot, slot_rows, added) == -1
        assert list(slot) == list(range(6)) and list(slot_rows) == list(other)
    assert sphere_slots(rows[:5], prev, prev_slot, slot[:5], slot_rows[:5], added) == -1
    assert sphere_slots(rows, prev[:0], prev_slot[:0], slot, slot_rows, added) == -1


@pytest.mark.parametrize("p", [9, 76, 81])
def test_block_products_added_equal_fresh_products_to_the_bit(p):
    """A run of spheres sliding over a line of voxels, each formed from the one before by
    :func:`sphere_slots` and :func:`block_products_added`: every upper triangle and sum the
    same to the bit as :func:`block_products_rows` on the same slots."""
    rng = np.random.default_rng(p)
    n_vox, n = 4 * p, 216
    Xv = rng.standard_normal((n_vox, n)) * 300 + 1000  # raw-scale values
    bounds = np.array([0, 54, 108, 162, 216])
    runs = order_runs(np.arange(n))
    grams = np.zeros((4, p, p))
    sums = np.zeros((4, p))
    slot, prev_slot, slot_rows, added = (np.empty(p, dtype=np.int64) for _ in range(4))
    Xt = np.empty((p, n))
    mu = np.empty(p)
    prev = np.empty(0, dtype=np.int64)
    formed_from_before = 0
    for start in range(0, 2 * p, max(1, p // 4)):
        rows = np.sort(rng.choice(np.arange(start, start + p + p // 3), size=p, replace=False))
        k = sphere_slots(rows, prev, prev_slot, slot, slot_rows, added)
        prev_slot[:] = slot
        prev = rows
        gather_rows(Xv, slot_rows, runs, Xt, True, mu)
        fresh_g = np.zeros((4, p, p))
        fresh_s = np.zeros((4, p))
        for b in range(4):
            block_products_rows(Xt, bounds, b, fresh_g, fresh_s)
            if k < 0:
                block_products_rows(Xt, bounds, b, grams, sums)
            else:
                block_products_added(Xt, bounds, b, grams, sums, added[:k])
            assert np.array_equal(np.triu(grams[b]), np.triu(fresh_g[b]))
            assert np.array_equal(sums[b], fresh_s[b])
        formed_from_before += k >= 0
    assert formed_from_before > 0


@pytest.mark.parametrize("p", [1, 9, 76, 111])
@pytest.mark.parametrize("lo, hi", [(0, 0), (3, 4), (10, 64), (0, 216)])
def test_block_products_rows_against_numpy(p, lo, hi):
    """A voxel-major block's cross-products (tiles on its sample-major copy): the upper
    triangle, or both with ``mirror``, and the sums; below the diagonal nothing but the
    diagonal's 8 x 8 blocks is written without ``mirror``."""
    from fastsearchlight.estimators._simd import DIAGONAL_BLOCK

    rng = np.random.default_rng(p + hi)
    Xt = rng.standard_normal((p, 216))
    bounds = np.array([0, lo, hi, 216])
    block = Xt[:, lo:hi]
    for mirror in (False, True):
        grams = np.full((3, p, p), 7.0)
        sums = np.full((3, p), 7.0)
        block_products_rows(Xt, bounds, 1, grams, sums, mirror)
        G = grams[1]
        expected = block @ block.T
        np.testing.assert_allclose(np.triu(G), np.triu(expected), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(sums[1], block.sum(axis=1), rtol=1e-12, atol=1e-12)
        assert np.all(grams[[0, 2]] == 7.0) and np.all(sums[[0, 2]] == 7.0)
        if mirror:
            np.testing.assert_allclose(G, expected, rtol=1e-12, atol=1e-12)
        else:
            r, c = np.tril_indices(p, -1)
            untouched = c < r - r % DIAGONAL_BLOCK
            assert np.all(G[r[untouched], c[untouched]] == 7.0)
            inside = ~untouched
            np.testing.assert_allclose(G[r[inside], c[inside]], expected[r[inside], c[inside]], atol=1e-12)

import warnings

import numpy as np
import pytest
from sklearn.model_selection import (
    KFold,
    LeaveOneGroupOut,
    PredefinedSplit,
    ShuffleSplit,
    StratifiedKFold,
)
from sklearn.svm import LinearSVC

from fastsearchlight.cv import make_cv_plan
from fastsearchlight.estimators.svm import BatchedLinearSVC, _padded_training_sets


def random_spheres(n_spheres, n_samples, n_features, n_classes, seed, scale=1000.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    X = scale + 30.0 * rng.standard_normal((n_spheres, n_samples, n_features))
    signal = rng.standard_normal((n_spheres, n_classes, n_features)) * 6.0
    X += signal[:, y, :]
    X[0, :, 0] = scale  # a constant voxel
    return X, y


def reference_decisions(est, X, y, plan):
    out = []
    for tr, te in zip(plan.train_indices, plan.test_indices):
        fold = []
        for Xs in X:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fold.append(est.fit(Xs[tr], y[tr]).decision_function(Xs[te]))
        out.append(np.array(fold))
    return out


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize(
    "splitter", [KFold(4), StratifiedKFold(3, shuffle=True, random_state=0), LeaveOneGroupOut()]
)
def test_matches_tightly_solved_linearsvc(n_classes, splitter):
    X, y = random_spheres(12, 90, 9, n_classes, seed=n_classes)
    groups = np.arange(len(y)) % 4
    plan = make_cv_plan(splitter, y, groups)
    ours = BatchedLinearSVC().fold_decisions(X, y, n_classes, plan)
    ref = reference_decisions(LinearSVC(tol=1e-10, max_iter=200000), X, y, plan)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        # same predictions, and decision values equal to liblinear's tight optimum
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
        if n_classes == 2:
            assert np.array_equal(a > 0, b > 0)
        else:
            assert np.array_equal(a.argmax(-1), b.argmax(-1))


@pytest.mark.parametrize("params", [{"C": 0.01}, {"C": 10.0}, {"fit_intercept": False},
                                    {"intercept_scaling": 5.0}])  # fmt: skip
def test_parameters_are_honoured(params):
    X, y = random_spheres(8, 80, 6, 2, seed=5, scale=1.0)
    plan = make_cv_plan(KFold(4), y)
    ours = BatchedLinearSVC(**params).fold_decisions(X, y, 2, plan)
    ref = reference_decisions(LinearSVC(tol=1e-10, max_iter=200000, **params), X, y, plan)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_result_does_not_depend_on_batching():
    X, y = random_spheres(30, 100, 7, 2, seed=3)
    plan = make_cv_plan(KFold(4), y)
    a = BatchedLinearSVC().fold_decisions(X, y, 2, plan)
    b = BatchedLinearSVC(batch_problems=7, first_iter=2).fold_decisions(X, y, 2, plan)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "splitter",
    [
        KFold(4),  # disjoint test sets covering every sample
        KFold(2),  # test sets as large as the training sets
        ShuffleSplit(4, test_size=0.3, random_state=0),  # overlapping test sets
        ShuffleSplit(3, train_size=0.5, test_size=0.25, random_state=0),  # samples in neither
        PredefinedSplit(np.arange(60) % 5 - 1),  # disjoint, some samples never tested
    ],
)
def test_first_newton_matrices_are_the_training_sets_ridge_matrices(splitter):
    # from w = 0 every training sample is active: the first Newton step solves
    # (I + 2C X_T'X_T) w = 2C X_T'y_T on each problem's training set T; its matrix is formed
    # from the left-out rows' Gram matrices (disjoint or not) or from the kept rows
    from fastsearchlight.estimators._svm_kernel import _first_matrices, _sphere_samples
    from fastsearchlight.estimators.base import as_voxel_major
    from fastsearchlight.estimators.svm import _GramPlan

    X, y = random_spheres(5, 60, 4, 2, seed=7, scale=3.0)
    plan = make_cv_plan(splitter, y)
    C = 0.7
    kept = plan.train_masks.astype(bool)  # (U, n): one training set per fold
    Xv, vox = as_voxel_major(X)
    n, d = X.shape[1], X.shape[2] + 1
    Xz, H0, total = np.empty((n + 1, d)), np.empty((len(kept), d, d)), np.empty((d, d))
    plan_arrays = _GramPlan(kept).arrays()
    for s in range(len(X)):
        _sphere_samples(Xv, vox[s], True, 1.0, Xz)
        _first_matrices(Xz, n, *plan_arrays, C, H0, total)
        if plan_arrays[3]:  # disjoint left-out parts: every sample's Gram matrix as well
            Xa = np.column_stack([X[s], np.ones(n)])
            np.testing.assert_allclose(np.triu(total), np.triu(Xa.T @ Xa), rtol=1e-12, atol=1e-10)
        for u, mask in enumerate(kept):
            Xt = np.column_stack([X[s][mask], np.ones(mask.sum())])
            expected = np.eye(d) + 2 * C * Xt.T @ Xt  # (the upper triangle is formed)
            np.testing.assert_allclose(np.triu(H0[u]), np.triu(expected), rtol=1e-12, atol=1e-10)


def test_as_slice_only_takes_runs_in_order():
    from fastsearchlight.estimators.base import as_slice

    assert as_slice(np.arange(3, 9)) == slice(3, 9)
    for index in ([3, 5, 4, 6], [0, 0, 2], [4, 3], [1, 3]):
        assert isinstance(as_slice(np.array(index)), np.ndarray)
    assert isinstance(as_slice(np.array([], dtype=int)), np.ndarray)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_matches_tightly_solved_linearsvc_on_large_values(n_classes):
    # values ~1e7: the normal equations' identity (the regulariser) is lost to rounding
    X, y = random_spheres(6, 60, 9, n_classes, seed=1, scale=1e7)
    plan = make_cv_plan(KFold(4), y)
    ours = BatchedLinearSVC().fold_decisions(X, y, n_classes, plan)
    ref = reference_decisions(LinearSVC(tol=1e-10, max_iter=200000), X, y, plan)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_large_zero_mean_values_do_not_make_a_singular_system():
    # values ~1e8 around 0: the normal equations are singular in floating point
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    X = 1e8 * (rng.standard_normal((4, 40, 19)) + 0.5 * y[None, :, None])
    plan = make_cv_plan(KFold(4), y)
    for decisions in BatchedLinearSVC().fold_decisions(X, y, 2, plan):
        assert decisions.shape == (4, 10) and np.all(np.isfinite(decisions))


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("n_features", [30, 123])
def test_more_features_than_training_samples_match_tightly_solved_linearsvc(n_classes, n_features):
    """Run-wise betas with large spheres (d > n): the Newton steps come from the training
    rows' Gram matrix; the optimum is LinearSVC's (standardised data, where liblinear
    converges tightly)."""
    X, y = random_spheres(6, 32, n_features, n_classes, seed=n_features, scale=0.0)
    X /= 30.0
    groups = np.arange(len(y)) // 4  # 8 runs of 4 samples
    plan = make_cv_plan(LeaveOneGroupOut(), y, groups)
    ours = BatchedLinearSVC().fold_decisions(X, y, n_classes, plan)
    ref = reference_decisions(LinearSVC(tol=1e-12, max_iter=500000, dual=False), X, y, plan)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())
        if n_classes == 2:
            assert np.array_equal(a > 0, b > 0)
        else:
            assert np.array_equal(a.argmax(-1), b.argmax(-1))


def test_more_features_than_samples_on_raw_scale_reach_the_optimum():
    """On raw-scale data liblinear stops short of the optimum even at tol=1e-12 (its dual
    solver far from it); the objective reached here is never above either of its solvers'."""
    X, y = random_spheres(6, 32, 30, 2, seed=30)
    train = np.arange(32) >= 4
    targets = np.where(y == 1, 1.0, -1.0)
    w = BatchedLinearSVC().fit_weights(X, targets[None, :], train[None, :].astype(float))[:, 0]
    for s in range(len(X)):
        Xa = np.hstack([X[s], np.ones((32, 1))])[train]

        def objective(v, Xa=Xa):
            return 0.5 * v @ v + np.sum(np.maximum(0.0, 1.0 - targets[train] * (Xa @ v)) ** 2)

        for dual in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sk = LinearSVC(tol=1e-12, max_iter=500000, dual=dual).fit(X[s][train], y[train])
            theirs = objective(np.r_[sk.coef_[0], sk.intercept_[0]])
            assert objective(w[s]) <= theirs * (1 + 1e-12)


def test_dual_and_primal_newton_points_agree():
    from fastsearchlight.estimators._svm_newton import _dual_newton_point

    rng = np.random.default_rng(0)
    N, n, d, C = 5, 12, 40, 1.0
    Xs = rng.standard_normal((N, n, d))
    Ys = np.where(rng.random((N, n)) > 0.5, 1.0, -1.0)
    act = (rng.random((N, n)) > 0.3).astype(float)
    Xa = Xs * act[:, :, None]
    primal = np.linalg.solve(np.eye(d) + 2 * C * np.swapaxes(Xa, 1, 2) @ Xa,
                             2 * C * np.einsum("nk,nkd->nd", act * Ys, Xs)[..., None])[..., 0]  # fmt: skip
    dual = _dual_newton_point(Xs @ np.swapaxes(Xs, 1, 2), Xs, Ys, act, C)
    np.testing.assert_allclose(dual, primal, rtol=1e-10, atol=1e-12)


def test_the_gram_path_serves_problems_with_more_features_than_samples(monkeypatch):
    from fastsearchlight.estimators import svm

    calls = []
    original = svm.gram_newton_spheres
    monkeypatch.setattr(svm, "gram_newton_spheres", lambda *a: calls.append(1) or original(*a))
    X, y = random_spheres(3, 32, 50, 2, seed=1, scale=0.0)
    plan = make_cv_plan(KFold(4), y, None)
    BatchedLinearSVC().fold_decisions(X, y, 2, plan)
    assert calls  # d = 51 > 24 training samples
    calls.clear()
    X, y = random_spheres(3, 90, 9, 2, seed=1)
    BatchedLinearSVC().fold_decisions(X, y, 2, make_cv_plan(KFold(4), y, None))
    assert not calls  # d = 10 < 68: the primal systems


def _primal_gradient(w, X, Y, W, C=1.0):
    """Gradient of 0.5 |w|^2 + C sum_i W_i max(0, 1 - y_i w . [x_i, 1])^2 (each problem)."""
    Xt = np.concatenate([X, np.ones(X.shape[:-1] + (1,))], axis=-1)  # (n, d)
    slack = np.maximum(0.0, 1.0 - Y * (w @ Xt.T)) * W  # (Q, n)
    return w - 2.0 * C * (slack * Y) @ Xt


@pytest.mark.parametrize("n_classes", [2, 3])
def test_nearly_as_many_features_as_samples_take_the_gram_path_and_the_optimum(monkeypatch, n_classes):
    # d / n_train above GRAM_SHARE (d ~ n on raw-scale data, nearly separable training
    # sets, where liblinear itself stops short of the optimum): solved from the Gram
    # matrices; the decisions are the primal kernel's, and the weights are the optimum
    # (1-strongly convex objective: the distance to the optimum is at most the gradient's
    # norm)
    from fastsearchlight.estimators import svm

    X, y = random_spheres(6, 64, 36, n_classes, seed=11)  # d = 37, 48 training samples
    plan = make_cv_plan(KFold(4), y, None)
    assert 37 >= svm.GRAM_SHARE * 48
    calls = []
    original = svm.gram_newton_spheres
    monkeypatch.setattr(svm, "gram_newton_spheres", lambda *a: calls.append(1) or original(*a))
    gram = BatchedLinearSVC().fold_decisions(X, y, n_classes, plan)
    assert calls  # the Gram kernel
    targets = np.array([np.where(y == c, 1.0, -1.0) for c in ([1] if n_classes == 2 else range(n_classes))])
    Y = np.repeat(targets, plan.n_folds, axis=0)
    W = np.tile(plan.train_masks.astype(float), (len(targets), 1))
    w = BatchedLinearSVC().fit_weights(X, Y, W)
    for s in range(len(X)):
        start = np.linalg.norm(_primal_gradient(np.zeros_like(w[s]), X[s], Y, W), axis=1)
        # (1e-8: the weights are formed as X^T alpha from raw-scale values, whose rounding
        # leaves gradients up to about 1.3e-9 of the start here)
        assert np.all(np.linalg.norm(_primal_gradient(w[s], X[s], Y, W), axis=1) <= 1e-8 * start)
    monkeypatch.setattr(svm, "GRAM_SHARE", 10.0)  # every problem to the primal kernel
    calls.clear()
    primal = BatchedLinearSVC().fold_decisions(X, y, n_classes, plan)
    assert not calls
    for a, b in zip(gram, primal):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-7 * np.abs(b).max())


@pytest.mark.parametrize("n_classes", [2, 3])
def test_training_sets_near_the_edge_of_separability_take_a_path_in_c_to_the_same_optimum(
    monkeypatch, n_classes
):
    # 0.55-0.72 features (the constant one included) per training sample, raw scale: the
    # Gram kernel's problems alone on their training sets solve a path of smaller C first
    # (C_PATH_SHARE); the decisions are those without the path, and the weights the optimum
    from fastsearchlight.estimators import svm

    X, y = random_spheres(6, 64, 30, n_classes, seed=5)  # d = 31, 48 training samples
    plan = make_cv_plan(KFold(4), y, None)
    assert svm.C_PATH_SHARE[0] <= 31 / 48 < svm.C_PATH_SHARE[1]
    paths = []
    original = svm.gram_newton_spheres

    def kernel(*a):
        paths.append((a[13], a[15]))  # path, path_has (written by the kernel)
        return original(*a)

    monkeypatch.setattr(svm, "gram_newton_spheres", kernel)
    walked = BatchedLinearSVC().fold_decisions(X, y, n_classes, plan)
    assert paths and all(path.all() for path, _ in paths)
    # walked to their end by the problems alone on their training sets (two classes); the
    # one-vs-rest problems of a training set are solved from its inverse first, without it
    assert any(has.any() for _, has in paths) == (n_classes == 2)
    # the weights, with the path, are the optimum (as in the test above: liblinear stops
    # short of it on nearly separable raw-scale sets)
    targets = np.array([np.where(y == c, 1.0, -1.0) for c in ([1] if n_classes == 2 else range(n_classes))])
    Y = np.repeat(targets, plan.n_folds, axis=0)
    W = np.tile(plan.train_masks.astype(float), (len(targets), 1))
    paths.clear()
    w = BatchedLinearSVC().fit_weights(X, Y, W)
    assert paths and all(path.all() for path, _ in paths)
    for sphere in range(len(X)):
        start = np.linalg.norm(_primal_gradient(np.zeros_like(w[sphere]), X[sphere], Y, W), axis=1)
        assert np.all(np.linalg.norm(_primal_gradient(w[sphere], X[sphere], Y, W), axis=1) <= 1e-8 * start)
    paths.clear()
    monkeypatch.setattr(svm, "C_PATH_SHARE", (0.0, 0.0))  # no path
    plain = BatchedLinearSVC().fold_decisions(X, y, n_classes, plan)
    assert paths and not any(path.any() for path, _ in paths)
    for a, b in zip(walked, plain):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * np.abs(b).max())
    # above the band (40 features): no path
    monkeypatch.undo()
    monkeypatch.setattr(svm, "gram_newton_spheres", kernel)
    paths.clear()
    X, y = random_spheres(2, 64, 40, n_classes, seed=5)
    BatchedLinearSVC().fold_decisions(X, y, n_classes, plan)
    assert paths and not any(path.any() for path, _ in paths)


def test_singular_gram_matrices_are_solved_too():
    """A repeated sample makes the training rows' Gram matrix singular: those problems
    still reach the optimum."""
    X, y = random_spheres(4, 32, 50, 2, seed=2, scale=0.0)
    X /= 30.0
    X[1, 5] = X[1, 9]
    plan = make_cv_plan(KFold(4), y, None)
    ours = BatchedLinearSVC().fold_decisions(X, y, 2, plan)
    ref = reference_decisions(LinearSVC(tol=1e-12, max_iter=500000, dual=False), X, y, plan)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


def test_threads_on_both_compiled_paths():
    """The primal path and the Gram path both spend their time in compiled code without
    the interpreter lock."""
    from fastsearchlight.estimators.svm import BatchedLinearSVC

    svc = BatchedLinearSVC()
    assert svc.releases_gil(n_features=18, n_train=162)
    assert svc.releases_gil(n_features=161, n_train=162)  # with the constant feature: 162
    assert svc.releases_gil(n_features=110, n_train=28)  # the Gram path


@pytest.mark.parametrize("n_features", [6, 70])  # the compiled block path, and the Gram path
@pytest.mark.parametrize("n_classes", [2, 3])
def test_spheres_read_from_voxel_major_data_give_the_block_decisions(n_features, n_classes):
    # the engine passes the whole voxel-major data and each sphere's voxels, which overlap
    # between spheres and come in any order; the decisions are those of the gathered block
    # (to rounding: on the Gram path, spheres that share at least half their voxels with
    # the one before are warm-started from it, and the block's disjoint spheres are not)
    from fastsearchlight.estimators.svm import BatchedLinearSVC

    rng = np.random.default_rng(4)
    X, y = random_spheres(1, 60, 90, n_classes, seed=9, scale=0.0)
    Xv = np.ascontiguousarray(X[0].T) / 30.0  # (90 voxels, 60 samples), standardised: there
    # liblinear's primal solver converges tightly with more features than samples too
    vox = np.stack([rng.choice(90, n_features, replace=False) for _ in range(7)])
    plan = make_cv_plan(KFold(3), y)
    ys = np.stack([y, rng.permutation(y)])
    svc = BatchedLinearSVC()
    at = svc.many_fold_decisions_at(Xv, vox, ys, n_classes, plan)
    block = svc.many_fold_decisions(Xv[vox].transpose(0, 2, 1), ys, n_classes, plan)
    tight = LinearSVC(tol=1e-12, max_iter=500000, dual=False)
    ref = reference_decisions(tight, Xv[vox].transpose(0, 2, 1), y, plan)
    for a_sets, b_sets in zip(at, block):
        for a, b in zip(a_sets, b_sets):
            if n_features < 60:  # the primal kernel: the same operations, to the bit
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())
    for a, b in zip(at[0], ref):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


@pytest.mark.parametrize("n_permutations", [0, 20])
def test_overlapping_spheres_warm_start_the_gram_path_and_match_linearsvc(n_permutations):
    """Spheres sliding along a row of voxels share most of them (as neighbours in a brain):
    the Gram path warm-starts each from the one before (fewer steps: many problems stop at
    their first point), and every sphere still gets the tight LinearSVC's decisions. With
    20 permuted label vectors, the training sets go to the inverse path."""
    rng = np.random.default_rng(3)
    n_classes, runs = 4, 8
    y = np.concatenate([rng.permutation(n_classes) for _ in range(runs)])
    groups = np.repeat(np.arange(runs), n_classes)
    Xv = rng.standard_normal((120, len(y)))
    Xv += 0.5 * rng.standard_normal((120, n_classes))[:, y]
    Xv = np.ascontiguousarray(np.cumsum(Xv, axis=0) / 3.0)  # smooth along the row
    vox = np.arange(90)[:, None] + np.arange(30)[None, :]  # 90 spheres of 30 voxels, step 1
    plan = make_cv_plan(LeaveOneGroupOut(), y, groups)
    ys = np.stack([y] + [np.concatenate([rng.permutation(r) for r in y.reshape(runs, -1)])
                         for _ in range(n_permutations)])  # fmt: skip
    svc = BatchedLinearSVC()
    ours = svc.many_fold_decisions_at(Xv, vox, ys, n_classes, plan)
    assert np.mean(svc.n_iter_[1:] == 1) > 0.1  # warm starts that were the optimum
    assert np.all(svc.n_iter_[0] > 1)  # the first sphere: cold
    for labels, folds in list(zip(ys, ours))[:2]:
        for f, (tr, te) in enumerate(zip(plan.train_indices, plan.test_indices)):
            for s in range(0, len(vox), 7):
                X = Xv[vox[s]].T
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    sk = LinearSVC(dual=False, tol=1e-10, max_iter=1_000_000).fit(X[tr], labels[tr])
                ref = sk.decision_function(X[te])
                np.testing.assert_allclose(folds[f][s], ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_gram_path_results_do_not_depend_on_the_spheres_per_compiled_call(monkeypatch):
    """The Gram path solves its spheres in calls of a bounded size; the warm starts carry
    from call to call, so one sphere per call gives the same decisions and the same Newton
    iterations as every sphere in one call."""
    from fastsearchlight.estimators import svm

    rng = np.random.default_rng(4)
    n_classes, runs = 4, 8
    y = np.concatenate([rng.permutation(n_classes) for _ in range(runs)])
    groups = np.repeat(np.arange(runs), n_classes)
    Xv = rng.standard_normal((80, len(y))) + 0.5 * rng.standard_normal((80, n_classes))[:, y]
    Xv = np.ascontiguousarray(np.cumsum(Xv, axis=0) / 3.0)
    vox = np.arange(50)[:, None] + np.arange(30)[None, :]  # 50 overlapping spheres
    plan = make_cv_plan(LeaveOneGroupOut(), y, groups)
    svc = BatchedLinearSVC()
    monkeypatch.setattr(svm, "_GRAM_BATCH_BYTES", 1 << 40)
    whole = svc.many_fold_decisions_at(Xv, vox, y[None], n_classes, plan)
    whole_iter = svc.n_iter_.copy()
    monkeypatch.setattr(svm, "_GRAM_BATCH_BYTES", 1)  # one sphere per call
    single = svc.many_fold_decisions_at(Xv, vox, y[None], n_classes, plan)
    assert np.mean(whole_iter == 1) > 0.1  # warm starts that were the optimum
    np.testing.assert_array_equal(svc.n_iter_, whole_iter)
    for a, b in zip(single[0], whole[0]):
        np.testing.assert_array_equal(a, b)


def test_padded_training_sets_lists_each_problems_samples_in_order_then_the_padding():
    """Each row: the problem's training samples in increasing order, their targets and
    weight 1, then the zero sample ``n`` with target and weight 0 (rows of any length)."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        Q, n = rng.integers(1, 12), rng.integers(1, 40)
        W = (rng.random((Q, n)) < rng.random()).astype(float)
        W[rng.integers(Q), rng.integers(n)] = 1.0
        Y = rng.choice([-1.0, 1.0], (Q, n))
        index, Yq, Wq = _padded_training_sets(Y, W, n)
        assert index.shape == (Q, int((W != 0).sum(axis=1).max()))
        for q in range(Q):
            train = np.flatnonzero(W[q])
            np.testing.assert_array_equal(index[q, : train.size], train)
            np.testing.assert_array_equal(index[q, train.size :], n)
            np.testing.assert_array_equal(
                Yq[q], np.where(index[q] < n, Y[q, np.minimum(index[q], n - 1)], 0.0)
            )
            np.testing.assert_array_equal(Wq[q], index[q] < n)


def _trial_beta_like(n_spheres, n_classes, n_features, seed):
    """Noisy samples of 8 runs of 40 (most samples stay active at the optimum, as on trial
    betas), their labels and runs."""
    rng = np.random.default_rng(seed)
    n = 320
    y = rng.permutation(np.arange(n) % n_classes)
    X = rng.standard_normal((n_spheres, n, n_features))
    X += 0.05 * rng.standard_normal((n_spheres, n_classes, n_features))[:, y]
    return X, y, np.repeat(np.arange(8), n // 8)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_majorised_starts_reach_the_optimum_of_the_training_sets_own_factors(monkeypatch, n_classes):
    # 8 runs left out one at a time, 101 features against 280 training samples: the problems
    # start from each sphere's all-sample matrix (_svm_kernel._majorised_starts), and end at
    # the optimum that the training sets' own factors reach, and at liblinear's tight one
    # (with 3 classes the starts are forced: they serve one problem per training set)
    from fastsearchlight.estimators import svm

    X, y, groups = _trial_beta_like(3, n_classes, 100, seed=n_classes)
    plan = make_cv_plan(LeaveOneGroupOut(), y, groups)
    kept = plan.train_masks.astype(bool)
    assert svm._majorise_from(kept, 1) == svm.MAJORISED_START_FEATURES <= 101
    if n_classes > 2:
        assert svm._majorise_from(kept, n_classes) > 10**9
        monkeypatch.setattr(svm, "_majorise_from", lambda kept, members: svm.MAJORISED_START_FEATURES)
    est = BatchedLinearSVC()
    majorised = est.fold_decisions(X, y, n_classes, plan)
    iterations = est.n_iter_.copy()
    monkeypatch.setattr(svm, "_majorise_from", lambda kept, members: 10**6)
    own = est.fold_decisions(X, y, n_classes, plan)
    assert not np.array_equal(est.n_iter_, iterations)  # the two paths ran,
    assert not np.array_equal(est.n_iter_ + 1, iterations)  # and the starts were not all given up
    for a, b in zip(majorised, own):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())
    ref = reference_decisions(LinearSVC(tol=1e-10, max_iter=200000), X[:1], y, plan)
    for a, b in zip(majorised, ref):
        np.testing.assert_allclose(a[:1], b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


def test_k_fold_quarters_and_shared_training_sets_are_not_started_from_the_all_sample_matrix():
    from fastsearchlight.estimators import svm

    kept = make_cv_plan(KFold(4), np.arange(40) % 2).train_masks.astype(bool)
    assert svm._majorise_from(kept, 1) > 10**9
    kept = make_cv_plan(LeaveOneGroupOut(), np.arange(40) % 2, np.arange(40) % 8).train_masks.astype(bool)
    assert svm._majorise_from(kept, 1) == svm.MAJORISED_START_FEATURES
    assert svm._majorise_from(kept, 2) > 10**9  # a factorisation shared by two problems


@pytest.mark.parametrize("separable", [False, True])
def test_majorised_starts_descend_and_give_up_on_nearly_separable_sets(separable):
    # from P^-1 rhs, the steps -P^-1 grad with an exact line search never increase a
    # problem's objective; on noisy sets the starts are used (most samples stay active), on
    # nearly separable ones (60 features, 70 training samples of strong classes) given up.
    # Several problems run in lockstep, one with a shorter, padded training set.
    from fastsearchlight.estimators._svm_kernel import _majorised_starts, _majorised_work

    C = 1.0
    rng = np.random.default_rng(0)
    if separable:
        n = 80
        y = np.arange(n) % 2
        Xs = rng.standard_normal((n, 59)) + 3.0 * rng.standard_normal((2, 59))[y]
        groups = np.arange(n) // 10
    else:
        Xs_all, y, groups = _trial_beta_like(1, 2, 70, seed=4)
        Xs, n = Xs_all[0], 320
    X = np.column_stack([Xs, np.ones(n)])
    Xz = np.vstack([X, np.zeros(X.shape[1])])  # the padding sample, row n
    Yall = np.where(y == 1, 1.0, -1.0)
    trains = [np.flatnonzero(groups != g) for g in range(3)]
    trains.append(np.flatnonzero(groups != 3)[: -n // 40])  # shorter
    Q, nt, d = len(trains), max(map(len, trains)), X.shape[1]
    index = np.full((Q, nt), n)
    Yq, Wq = np.zeros((Q, nt)), np.zeros((Q, nt))
    for q, rows in enumerate(trains):
        index[q, : len(rows)], Yq[q, : len(rows)], Wq[q, : len(rows)] = rows, Yall[rows], 1.0
    PR = np.ascontiguousarray(np.linalg.cholesky(np.eye(d) + 2 * C * X.T @ X).T)
    rhs = 2 * C * np.stack([X[rows].T @ Yall[rows] for rows in trains])
    w, M, Act = np.empty((Q, d)), np.empty((Q, nt)), np.empty((Q, nt), dtype=bool)
    steps, usable = np.empty(Q, dtype=np.int64), np.empty(Q, dtype=bool)
    work = _majorised_work(Q, nt, n + 1, d)
    XT = np.ascontiguousarray(Xz.T)
    _majorised_starts(Xz, XT, index, Yq, Wq, C, PR, rhs, n, w, M, Act, steps, usable, work)

    for q, rows in enumerate(trains):
        Y = Yall[rows]

        def objective(v, rows=rows, Y=Y):
            return 0.5 * v @ v + C * np.sum(np.maximum(0.0, 1.0 - Y * (X[rows] @ v)) ** 2)

        start = np.linalg.solve(PR, np.linalg.solve(PR.T, rhs[q]))
        assert steps[q] >= 1
        assert bool(usable[q]) is (not separable)
        assert objective(w[q]) < objective(start)
        k = len(rows)
        np.testing.assert_allclose(M[q, :k], Y * (X[rows] @ w[q]), rtol=1e-10, atol=1e-10)
        assert np.array_equal(Act[q, :k], M[q, :k] < 1.0)
        assert not Act[q, k:].any()  # the padding never enters the active set


def test_blocks_of_spheres_of_several_sizes_give_each_spheres_own_decisions(monkeypatch):
    """The Gram path takes blocks of spheres of several sizes (rows padded with -1, in the
    order of the spheres, as :meth:`.Neighbourhoods.blocks` gives them from
    ``mixed_sizes_from`` on): each sphere's decisions are those of the sphere alone, its
    path in C is decided by its own size, and a block with a sphere below the Gram path's
    size is refused."""
    from fastsearchlight.estimators import svm

    rng = np.random.default_rng(7)
    y = np.tile([0, 1], 32)  # 64 samples, KFold(4): 48 training samples
    Xv = np.ascontiguousarray(np.cumsum(rng.standard_normal((120, 64)), axis=0) / 3.0 + 0.3 * y)
    plan = make_cv_plan(KFold(4), y, None)
    svc = BatchedLinearSVC()
    smallest = svc.mixed_sizes_from(plan)
    assert svm._on_gram_path(smallest + 1, 48) and not svm._on_gram_path(smallest, 48)
    assert BatchedLinearSVC(fit_intercept=False).mixed_sizes_from(plan) == smallest + 1
    # spheres sliding along the row, of 27 to 40 voxels: 28-41 features, some in the path's
    # band (0.55-0.72 of 48: 27-34) and some above it
    sizes = [27, 30, 40, 33, 36, 28, 40, 35]
    starts = np.arange(len(sizes)) * 3
    vox = np.full((len(sizes), max(sizes)), -1, dtype=np.int64)
    for r, (s, k) in enumerate(zip(starts, sizes)):
        vox[r, :k] = np.arange(s, s + k)
    paths = []
    original = svm.gram_newton_spheres

    def kernel(*a):
        paths.append(a[13].copy())
        return original(*a)

    monkeypatch.setattr(svm, "gram_newton_spheres", kernel)
    mixed = svc.many_fold_decisions_at(Xv, vox, y[None], 2, plan)[0]
    share = (np.array(sizes) + 1) / 48
    np.testing.assert_array_equal(np.concatenate(paths), (0.55 <= share) & (share < 0.72))
    for r, k in enumerate(sizes):
        alone = svc.many_fold_decisions_at(Xv, vox[r : r + 1, :k], y[None], 2, plan)[0]
        for a, b in zip(mixed, alone):
            np.testing.assert_allclose(a[r], b[0], rtol=1e-9, atol=1e-9 * np.abs(b).max())
    # the weights too: the padding's are zero, the others each sphere's own
    Y = np.where(y == 1, 1.0, -1.0)[None].repeat(plan.n_folds, axis=0)
    W = plan.train_masks.astype(float)
    w, _, _, _ = svc._solve(Xv, vox, Y, W)
    for r, k in enumerate(sizes):
        wr, _, _, _ = svc._solve(Xv, vox[r : r + 1, :k], Y, W)
        assert np.all(w[r, :, k:-1] == 0.0)
        np.testing.assert_allclose(w[r, :, :k], wr[0, :, :k], rtol=1e-7, atol=1e-9 * np.abs(wr).max())
    # a sphere below the Gram path's size in a block of several sizes
    vox[1, smallest - 1 :] = -1
    with pytest.raises(ValueError, match="several sizes"):
        svc.many_fold_decisions_at(Xv, vox, y[None], 2, plan)

"""Tests of the batched ridge classifier against scikit-learn's ``RidgeClassifierCV``.

Reference: ``RidgeClassifierCV(alphas, fit_intercept)`` (``cv=None``: efficient
leave-one-out) fitted on every sphere and fold. Both sides compute closed-form solutions
(eigendecompositions of the same centred covariance, or of the Gram matrix when the
training set has no more samples than features), so they agree up to rounding: the
observed largest difference of decision values is ~3e-14 (values of order 1). The tests
require ``1e-9 * (1 + |decision|)``, which leaves room for the rounding of worse-conditioned
spheres (constant features, raw values ~1000) while catching any formula difference, whose
effect would be of the order of the decisions themselves. Chosen alphas and predictions must
be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifierCV
from threadpoolctl import threadpool_limits

from fastsearchlight.estimators.ridge_cv import BatchedRidgeClassifierCV

REL = 1e-9


@pytest.fixture(autouse=True)
def _single_blas_thread():
    """Small BLAS calls are much slower with several threads on a busy machine."""
    with threadpool_limits(1):
        yield


from sphere_cases import make_data, make_plan, sliding_spheres  # noqa: E402


def compare_with_sklearn(X, y, n_classes, plan, alphas=(0.1, 1.0, 10.0), fit_intercept=True):
    """Fit both on every sphere and fold, assert agreement, return the worst difference."""
    est = BatchedRidgeClassifierCV(alphas=alphas, fit_intercept=fit_intercept)
    decisions = est.fold_decisions(X, y, n_classes, plan)
    chosen = est.fold_alphas(X, y, n_classes, plan)
    worst = 0.0
    for f, (train, test) in enumerate(zip(plan.train_indices, plan.test_indices)):
        for s in range(X.shape[0]):
            ref = RidgeClassifierCV(alphas=alphas, fit_intercept=fit_intercept)
            ref.fit(X[s][train], y[train])
            assert chosen[f][s] == ref.alpha_, (f, s)
            dec_ref = ref.decision_function(X[s][test])
            ours = decisions[f][s]
            assert ours.shape == dec_ref.shape
            diff = np.abs(ours - dec_ref)
            assert np.all(diff <= REL * (1 + np.abs(dec_ref))), (f, s, diff.max())
            pred = (ours > 0).astype(int) if n_classes == 2 else ours.argmax(axis=1)
            assert np.array_equal(pred, ref.predict(X[s][test])), (f, s)
            worst = max(worst, diff.max())
    return worst


@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("cv", ["kfold", "stratified", "logo"])
def test_matches_sklearn(cv, n_classes, raw):
    rng = np.random.default_rng([n_classes, len(cv), raw])
    for n_samples, n_features in [(60, 1), (90, 7), (120, 20)]:
        X, y, groups = make_data(rng, 20, n_samples, n_features, n_classes, raw=raw)
        compare_with_sklearn(X, y, n_classes, make_plan(cv, y, groups))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_many_alphas(n_classes):
    """A wide grid, so that the choice varies between spheres and folds."""
    rng = np.random.default_rng([17, n_classes])
    alphas = np.logspace(-3, 4, 15)
    X, y, groups = make_data(rng, 30, 72, 10, n_classes, raw=False, effect=0.3)
    plan = make_plan("stratified", y, groups)
    compare_with_sklearn(X, y, n_classes, plan, alphas=alphas)
    chosen = np.concatenate(BatchedRidgeClassifierCV(alphas).fold_alphas(X, y, n_classes, plan))
    assert len(np.unique(chosen)) >= 3


@pytest.mark.parametrize("n_classes", [2, 3])
def test_fewer_samples_than_features(n_classes):
    """scikit-learn then works on the Gram matrix ("gram" mode); same answer."""
    rng = np.random.default_rng([19, n_classes])
    X, y, groups = make_data(rng, 20, 24, 20, n_classes, raw=True)
    compare_with_sklearn(X, y, n_classes, make_plan("kfold", y, groups))


@pytest.mark.parametrize("n_classes", [2, 3])
def test_no_intercept(n_classes):
    rng = np.random.default_rng([23, n_classes])
    X, y, groups = make_data(rng, 20, 60, 6, n_classes, raw=False)
    plan = make_plan("stratified", y, groups)
    compare_with_sklearn(X + 0.3, y, n_classes, plan, fit_intercept=False)


def test_ties_go_to_the_first_alpha():
    """A sphere whose only feature is constant has the same LOO error for every alpha."""
    rng = np.random.default_rng(29)
    n_samples = 50
    y = (np.arange(n_samples) < 30).astype(int)  # unbalanced: decisions clearly != 0
    X = 1000 + 30 * rng.normal(size=(4, n_samples, 1))
    X[:2] = 987.25  # constant
    plan = make_plan("stratified", y, None)
    alphas = (5.0, 0.1, 1.0, 10.0)
    compare_with_sklearn(X, y, 2, plan, alphas=alphas)
    chosen = BatchedRidgeClassifierCV(alphas).fold_alphas(X, y, 2, plan)
    assert all(np.all(c[:2] == 5.0) for c in chosen)


def test_rejects_bad_alphas():
    X = np.zeros((1, 10, 2))
    y = np.arange(10) % 2
    plan = make_plan("stratified", y, None)
    for alphas in [(), (1.0, 0.0), (-1.0,)]:
        with pytest.raises(ValueError):
            BatchedRidgeClassifierCV(alphas).fold_decisions(X, y, 2, plan)


@pytest.mark.parametrize("n_features", [6, 30])  # covariance and Gram paths
@pytest.mark.parametrize("n_classes", [2, 3])
def test_many_label_sets_match_one_at_a_time(n_classes, n_features, monkeypatch):
    """Permutations share the decomposition; results equal label-by-label fits."""
    import fastsearchlight.estimators.ridge_cv as module

    monkeypatch.setattr(module, "_CHUNK_ELEMENTS", 5000)  # several label chunks
    rng = np.random.default_rng([31, n_classes, n_features])
    X, y, groups = make_data(rng, 9, 36, n_features, n_classes, raw=True)
    plan = make_plan("logo", y, groups)
    ys = np.stack([y] + [rng.permutation(y) for _ in range(6)])
    est = BatchedRidgeClassifierCV(alphas=(0.01, 1.0, 100.0))
    many = est.many_fold_decisions(X, ys, n_classes, plan)
    assert len(many) == len(ys)
    for per_set, labels in zip(many, ys):
        single = est.fold_decisions(X, labels, n_classes, plan)
        for a, b in zip(per_set, single):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    compare_with_sklearn(X, ys[3], n_classes, plan, alphas=(0.01, 1.0, 100.0))


@pytest.mark.parametrize("n_features", [4, 40])  # covariance and Gram paths
def test_test_samples_in_any_order(n_features):
    """Test sets given out of order (a shuffled run of samples, overlapping sets): the
    decisions follow the order of the plan's test indices."""
    from fastsearchlight.cv import make_cv_plan

    rng = np.random.default_rng(41)
    X, y, _ = make_data(rng, 5, 36, n_features, 2, raw=True)
    first = np.array([2, 4, 3, 5, 6, 7, 8, 9, 10, 11])  # the run 2..11, not in order
    second = rng.permutation(np.arange(8, 20))  # overlaps the first
    splits = [(np.setdiff1d(np.arange(36), te), te) for te in (first, second)]
    plan = make_cv_plan(splits, y)
    compare_with_sklearn(X, y, 2, plan)


def test_training_sets_smaller_than_the_complement_of_the_test_sets():
    """Splitters may leave samples out of both sets of a fold (ShuffleSplit with
    train_size + test_size < 1): the covariances are those of the training samples only."""
    from sklearn.model_selection import ShuffleSplit

    from fastsearchlight.cv import make_cv_plan

    rng = np.random.default_rng(43)
    X, y, _ = make_data(rng, 6, 48, 5, 2, raw=True)
    plan = make_cv_plan(ShuffleSplit(3, train_size=0.5, test_size=0.25, random_state=0), y)
    assert all(len(tr) + len(te) < 48 for tr, te in zip(plan.train_indices, plan.test_indices))
    compare_with_sklearn(X, y, 2, plan)


@pytest.mark.parametrize("n_features", [8, 23, 24, 60])  # d < n, d ~ n (either side), d > n
@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("raw, fit_intercept", [(True, True), (False, True), (False, False)])
def test_every_shape(n_features, n_classes, raw, fit_intercept):
    """32 samples in 4 runs, leave one run out (24 training samples): the covariance path
    below 24 features, the Gram matrices (centred per fold from one per sphere) from 24 on;
    binary and one-vs-rest. (Raw BOLD-scale values without an intercept, at 23 features,
    leave the uncentred covariance so ill-conditioned that its decisions differ from
    scikit-learn's by about 1e-8, already before this path: not included.)"""
    rng = np.random.default_rng([29, n_features, n_classes, raw])
    X, y, groups = make_data(rng, 8, 32, n_features, n_classes, raw=raw)
    plan = make_plan("logo", y, groups)
    assert all(len(tr) == 24 for tr in plan.train_indices)
    compare_with_sklearn(X, y, n_classes, plan, fit_intercept=fit_intercept)


# ---------------------------------------------------------------------------
# The compiled kernel and the eigendecomposition path it leaves the near-ties to
# ---------------------------------------------------------------------------


def _spy_paths(monkeypatch):
    """Record the kernel's near-tie flags and the spheres given to the eigh path."""
    import fastsearchlight.estimators.ridge_cv as module

    record = {"near": [], "eigh": []}
    kernel, eigh = module.ridge_cv_block, module.BatchedRidgeClassifierCV._eigh_run

    def spy_kernel(*args):
        out = kernel(*args)
        record["near"].append(out[2].copy())
        return out

    def spy_eigh(self, X, *args):
        record["eigh"].append(len(X))
        return eigh(self, X, *args)

    monkeypatch.setattr(module, "ridge_cv_block", spy_kernel)
    monkeypatch.setattr(module.BatchedRidgeClassifierCV, "_eigh_run", spy_eigh)
    return module, record


@pytest.mark.parametrize("n_features", [8, 23, 24, 60])  # d < n, d ~ n (either side), d > n
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_kernel_alone_matches_sklearn(n_features, n_classes, fit_intercept, monkeypatch):
    """Without the near-tie margin every choice is the kernel's (the eigh path is never
    called), and it is scikit-learn's; 24 training samples per fold."""
    module, record = _spy_paths(monkeypatch)
    monkeypatch.setattr(module, "_TIE_MARGIN", 0.0)
    monkeypatch.setattr(module, "_GRAM_TIE_MARGIN", 0.0)
    rng = np.random.default_rng([37, n_features, n_classes, fit_intercept])
    X, y, groups = make_data(rng, 8, 32, n_features, n_classes, raw=False)
    plan = make_plan("logo", y, groups)
    compare_with_sklearn(X, y, n_classes, plan, fit_intercept=fit_intercept)
    assert record["near"] and not any(near.any() for near in record["near"])
    assert record["eigh"] == []


@pytest.mark.parametrize("n_features", [8, 24, 60])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_eigh_path_alone_matches_sklearn(n_features, n_classes, monkeypatch):
    """With an infinite margin every problem is left to the eigendecomposition path, which
    must give scikit-learn's answers on its own (raw BOLD-scale values)."""
    module, record = _spy_paths(monkeypatch)
    monkeypatch.setattr(module, "_TIE_MARGIN", np.inf)
    monkeypatch.setattr(module, "_GRAM_TIE_MARGIN", np.inf)
    rng = np.random.default_rng([41, n_features, n_classes])
    X, y, groups = make_data(rng, 8, 32, n_features, n_classes, raw=True)
    plan = make_plan("logo", y, groups)
    compare_with_sklearn(X, y, n_classes, plan)
    assert all(near.all() for near in record["near"])
    assert record["eigh"] and all(n == 8 for n in record["eigh"])


def _tie_case(seed, n_features, spacing=1e-9):
    """Alphas two of which are ``spacing`` apart (relative), the third far off, the data (10
    spheres, 32 samples in 8 groups, two classes), the leave-one-group-out plan and the
    estimator."""
    alphas = (2.0, 2.0 * (1 + spacing), 50.0)
    rng = np.random.default_rng(seed)
    X, y, groups = make_data(rng, 10, 32, n_features, 2, raw=False, effect=0.6)
    plan = make_plan("logo", y, groups)
    return alphas, X, y, plan, BatchedRidgeClassifierCV(alphas=alphas)


# covariance and Gram forms; the Gram form's margin is in units of its shifted matrix's
# condition number, about 1e-12 (relative) here, so its pair of alphas is closer
@pytest.mark.parametrize(("n_features", "spacing"), [(6, 1e-9), (40, 1e-10)])
def test_near_tie_goes_to_the_eigendecomposition(n_features, spacing, monkeypatch):
    """Two alphas 1e-9 (1e-10) apart (relative): their leave-one-out scores differ by about
    1e-12 (1e-13), above the rounding of either path but within the kernel's margin, so the
    kernel flags the problems, the eigendecomposition path decides them (its decisions
    replace the kernel's exactly), and the choice is scikit-learn's."""
    module, record = _spy_paths(monkeypatch)
    alphas, X, y, plan, est = _tie_case([43, n_features], n_features, spacing)
    decisions = est.fold_decisions(X, y, 2, plan)
    near = record["near"][-1][:, :, 0]  # (spheres, folds)
    assert near.sum() >= 5
    chosen = est.fold_alphas(X, y, 2, plan)
    assert any(np.any(c[near[:, f]] < 3) for f, c in enumerate(chosen))  # ties between the pair
    compare_with_sklearn(X, y, 2, plan, alphas=alphas)
    flagged = np.flatnonzero(near.any(axis=1))
    # the samples as the estimator hands them to the eigh path (voxel-major, gathered)
    from fastsearchlight.estimators.base import as_voxel_major

    Xv, vox = as_voxel_major(X)
    eigh_dec, eigh_best = est._eigh_run(Xv[vox[flagged]].transpose(0, 2, 1), y[None], 2, plan)
    for f in range(plan.n_folds):
        rows = near[flagged, f]
        np.testing.assert_array_equal(decisions[f][flagged[rows]], eigh_dec[0][f][rows, :, 0])
        np.testing.assert_array_equal(chosen[f][flagged[rows]], np.asarray(alphas)[eigh_best[0][f][rows]])


def test_choice_and_margin_rule():
    """The kernel's rule: the first best score; a near-tie when another alpha's score is
    within margin * eps * sensitivity (relative) of the best, or a score is not finite."""
    from fastsearchlight.estimators._ridge_cv_kernel import _choose

    eps = np.finfo(float).eps
    sse = np.array(
        [[4.0, 2.0, 3.0, 1.0], [2.0, 2.0, 3.0 * (1 + 1e-9), 1.0], [5.0, 2.5, 3.0 * (1 + 5e-8), np.nan]]
    )
    best, near = np.empty(4, dtype=np.int64), np.empty(4, dtype=bool)
    _choose(sse, 1.0, 1.0, 0.0, best, near)  # no margin: exact ties only
    assert best.tolist() == [1, 0, 0, 0] and near.tolist() == [False, True, False, True]
    _choose(sse, 1.0, 1e4, 1.01e-8 / (1e4 * eps), best, near)  # tolerance 1.01e-8
    assert best.tolist() == [1, 0, 0, 0] and near.tolist() == [False, True, True, True]
    _choose(sse, 1.0, 1e4, 0.99e-9 / (1e4 * eps), best, near)  # 0.99e-9
    assert near.tolist() == [False, True, False, True]


def test_shifted_norm_and_column_solves_match_numpy():
    """The kernel's pieces against numpy: ``A + alpha I`` and its 1-norm (which sets the
    near-tie margin through the condition number), and the column solves that give the
    fitted values ``Z t`` and the coefficients ``A^-1 r`` from the factor ``U``."""
    from fastsearchlight.estimators._ridge_cv_kernel import _norm1_shifted, _solve_columns
    from fastsearchlight.estimators._triangular import cholesky_upper_into

    rng = np.random.default_rng(3)
    p, n_train, Q = 13, 40, 3
    X = rng.normal(size=(n_train, p)) * rng.uniform(0.1, 10.0, size=p)
    A = X.T @ X
    A[0, 1] = A[1, 0] = -3.0 * abs(A[0, 1])  # negative entries count by their magnitude
    H = np.empty((p, p))
    norm = _norm1_shifted(A, 0.7, H)
    np.testing.assert_array_equal(H, A + 0.7 * np.eye(p))
    assert norm == pytest.approx(np.linalg.norm(A + 0.7 * np.eye(p), 1), rel=1e-15)
    assert cholesky_upper_into(H, H)
    U = np.triu(H)
    np.testing.assert_allclose(U.T @ U, A + 0.7 * np.eye(p), rtol=1e-12)
    Z = np.linalg.solve(U.T, X.T).T  # rows z_i = U^-T x_i
    R = rng.normal(size=(Q, p))
    coef, fitted = R.copy(), np.empty((Q, n_train))
    _solve_columns(H, coef, fitted, Z)
    for q in range(Q):
        t = np.linalg.solve(U.T, R[q])
        np.testing.assert_allclose(fitted[q], Z @ t, rtol=1e-10, atol=1e-12 * np.abs(Z @ t).max())
        np.testing.assert_allclose(coef[q], np.linalg.solve(A + 0.7 * np.eye(p), R[q]), rtol=1e-10)


# ---------------------------------------------------------------------------
# Predictions alone: folds whose alphas all predict alike skip the leave-one-out choice
# ---------------------------------------------------------------------------


def _predictions(decisions, n_classes):
    return (decisions > 0).astype(int) if n_classes == 2 else decisions.argmax(axis=-1)


def compare_predictions_with_sklearn(X, y, n_classes, plan, alphas=(0.1, 1.0, 10.0)):
    """Predictions of the predictions-only path against scikit-learn's on every sphere and
    fold; returns the chosen alphas (NaN where the choice was skipped) and the decisions
    of the exact path, for the callers' own checks."""
    from fastsearchlight.estimators.base import as_voxel_major

    est = BatchedRidgeClassifierCV(alphas=alphas)
    Xv, vox = as_voxel_major(X)
    decisions, chosen = est._run(Xv, vox, y[None], n_classes, plan, for_predictions=True)
    # the public method returns the same decisions
    public = est.many_fold_decisions_for_predictions_at(Xv, vox, y[None], n_classes, plan)
    exact, exact_chosen = est._run(Xv, vox, y[None], n_classes, plan)
    for f, (train, test) in enumerate(zip(plan.train_indices, plan.test_indices)):
        np.testing.assert_array_equal(public[0][f], decisions[0][f])
        for s in range(X.shape[0]):
            ref = RidgeClassifierCV(alphas=alphas).fit(X[s][train], y[train])
            ours = _predictions(decisions[0][f][s], n_classes)
            assert np.array_equal(ours, ref.predict(X[s][test])), (f, s)
            if np.isnan(chosen[0][f][s]):
                continue
            # folds solved in full: the exact path's answer, to the bit
            assert chosen[0][f][s] == exact_chosen[0][f][s] == ref.alpha_
            np.testing.assert_array_equal(decisions[0][f][s], exact[0][f][s])
    return np.array([c for c in chosen[0]]), exact


@pytest.mark.parametrize("n_features", [8, 23, 24, 60])  # covariance form, then Gram form
@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("raw", [True, False])
def test_predictions_alone_match_sklearn(n_features, n_classes, raw):
    """d < n, d ~ n (either side) and d > n, binary and one-vs-rest: the predictions are
    scikit-learn's. In the covariance form (fewer than 24 features, the training set's
    size) on raw-scale data some folds' alphas 0.1, 1 and 10 predict alike, and those skip
    the choice (all of them at 8 features, about half at 23); on standardised data 2-69% of
    them do, and a block that proves fewer than a quarter of its first 16 folds stops
    trying. The Gram form with these 24 training samples does not try to prove every alpha
    alike (the choice costs less than the proof there): on standardised data it always
    chooses; on raw-scale data its leave-one-out scores are near-ties, and those folds skip
    the choice where the tied alphas predict alike (:func:`test_near_ties_proven_alike`)."""
    rng = np.random.default_rng([53, n_features, n_classes, raw])
    X, y, groups = make_data(rng, 12, 32, n_features, n_classes, raw=raw)
    plan = make_plan("logo", y, groups)
    chosen, _ = compare_predictions_with_sklearn(X, y, n_classes, plan)
    skipped = np.isnan(chosen).mean()
    if n_features < 24 and raw:
        assert skipped > 0.0
        if n_features == 8:
            assert skipped == 1.0
    elif n_features >= 24 and not raw:
        assert skipped == 0.0


@pytest.mark.parametrize("n_features", [72, 150])  # d ~ n and d > n, in the Gram form
@pytest.mark.parametrize("n_classes", [2, 4])
def test_predictions_alone_in_the_gram_form_match_sklearn(n_features, n_classes):
    """The Gram form with 72 training samples (at least ``_GRAM_PROOF_MIN``) proves its
    folds' predictions alike on the centred Gram matrix too, and skips the choice there;
    the predictions are scikit-learn's, and the folds solved in full the exact path's."""
    from fastsearchlight.estimators._ridge_cv_kernel import _GRAM_PROOF_MIN

    rng = np.random.default_rng([61, n_features, n_classes])
    X, y, groups = make_data(rng, 6, 96, n_features, n_classes, raw=True)
    plan = make_plan("logo", y, groups)
    assert min(len(tr) for tr in plan.train_indices) >= _GRAM_PROOF_MIN
    chosen, _ = compare_predictions_with_sklearn(X, y, n_classes, plan)
    assert np.isnan(chosen).mean() > 0.0


@pytest.mark.parametrize("n_classes", [2, 3])
def test_predictions_alone_choose_where_alphas_disagree(n_classes):
    """A wide grid of alphas on standardised data: where the alphas do not all predict
    alike, the fold is solved in full (its choice is scikit-learn's, its decisions the
    exact path's); elsewhere the choice is skipped. Both kinds occur."""
    rng = np.random.default_rng([59, n_classes])
    alphas = np.logspace(-3, 4, 8)
    X, y, groups = make_data(rng, 30, 72, 10, n_classes, raw=False, effect=0.3)
    plan = make_plan("stratified", y, groups)
    chosen, _ = compare_predictions_with_sklearn(X, y, n_classes, plan, alphas=alphas)
    assert np.isnan(chosen).any() and (~np.isnan(chosen)).sum() >= 10


def test_agreement_rule():
    """Two classes: every alpha's decision on the same side of 0 by more than its bound.
    More classes: the same top class for every alpha, ahead of every other by more than
    both bounds. Each alpha is compared with the first, as the kernel does: 1 when proven
    alike, -1 when both predictions are proven and differ, else 0."""
    from fastsearchlight.estimators._ridge_cv_kernel import _proven_alike, _proven_class

    def alike(rows, bound):
        """The worst comparison of the first row with each other (one test sample)."""
        rows = np.asarray(rows, dtype=float)
        T = rows.shape[1]
        err = np.full((1, T), bound)
        vals, errs = np.empty((2, T)), np.empty((2, T))
        first = rows[:1]
        return min(_proven_alike(first, err, row[None], err, T, vals, errs) for row in rows[1:])

    assert alike([[0.5], [0.2], [0.11]], 0.1) == 1
    assert alike([[-0.5], [-0.2], [-0.11]], 0.1) == 1
    assert alike([[0.5], [0.2], [0.09]], 0.1) == 0  # within the bound
    assert alike([[0.5], [-0.2], [0.3]], 0.1) == -1  # another side
    assert alike([[1.0, 0.5, 0.0], [0.9, 0.6, 0.1]], 0.1) == 1
    assert alike([[1.0, 0.5, 0.0], [0.6, 0.9, 0.1]], 0.1) == -1  # another top
    assert alike([[1.0, 0.85, 0.0], [0.9, 0.6, 0.1]], 0.1) == 0  # gap within the bounds
    bounds = np.full((1, 3), 0.1)
    assert _proven_class(np.array([[1.0, 0.85, 0.0]]), bounds, 0) == -1
    assert _proven_class(np.array([[0.1, 0.9, 0.0]]), bounds, 0) == 1
    assert _proven_class(np.array([[-0.5]]), np.full((1, 1), 0.1), 0) == 0


def test_agreeing_decisions_against_numpy():
    """The largest alpha's coefficients and decisions against numpy's solves (to rounding);
    the other alphas' coefficients, from its factor by a series and refinement, accurate
    enough to give numpy's predictions; the largest alpha's decisions returned
    when all alphas predict alike. A test sample whose decision is 0 for every alpha
    (orthogonal to every coefficient vector, no intercept) stops the shortcut, as does one
    whose prediction changes with alpha. The matrix is unchanged."""
    from fastsearchlight.estimators._ridge_cv_kernel import _agreeing_decisions

    rng = np.random.default_rng(61)
    p, n_train, n_test = 9, 30, 6
    X = rng.normal(size=(n_train, p))
    M = X.T @ X
    M0 = M.copy()
    R = rng.normal(size=(1, p)) * 5
    F = rng.normal(size=(n_test, p))
    alphas = np.array([1.0, 0.01, 3.0])
    ybar = np.zeros(1)
    coefs = [np.linalg.solve(M + a * np.eye(p), R[0]) for a in alphas]
    dec = np.stack([F @ c for c in coefs])  # (A, n_test)
    agree = np.all(np.sign(dec) == np.sign(dec[0]), axis=0)
    H, C, out = np.empty((2, p, p)), np.empty((3, 1, p)), np.zeros((n_test, 1))
    keep = np.flatnonzero(agree)
    assert keep.size >= 2
    assert _agreeing_decisions(M, R, F[keep], ybar, alphas, 1, 1e4, H, C, out, 0.0)
    # the slack (a bound on M's rounding): half the smallest alpha or more, no proof
    assert not _agreeing_decisions(M, R, F[keep], ybar, alphas, 1, 1e4, H, C, out.copy(), 0.5 * alphas.min())
    np.testing.assert_array_equal(M, M0)
    np.testing.assert_allclose(C[2, 0], coefs[2], rtol=1e-10, atol=0)
    np.testing.assert_allclose(out[: keep.size, 0], dec[2, keep], rtol=1e-10, atol=0)
    for a in range(2):  # only as accurate as the proof of the predictions needs
        assert np.array_equal(F[keep] @ C[a, 0] > 0, dec[a, keep] > 0)
    # a sample with decision 0 for every alpha: orthogonal to the three coefficient vectors
    basis = np.linalg.svd(np.stack(coefs))[2]
    zero = basis[-1] * 3.0
    assert np.abs(np.stack(coefs) @ zero).max() < 1e-12
    assert not _agreeing_decisions(M, R, np.vstack([F[keep], zero]), ybar, alphas, 1, 1e4, H, C, out, 0.0)
    # a sample whose prediction changes with alpha, if there is one
    if not agree.all():
        assert not _agreeing_decisions(M, R, F, ybar, alphas, 1, 1e4, H, C, out, 0.0)
    np.testing.assert_array_equal(M, M0)


@pytest.mark.parametrize("cond", [1e2, 1e6, 1e11])
@pytest.mark.parametrize("delta", [1e-9, 0.9, 9.9])
def test_series_error_bounds_the_error(cond, delta):
    """:func:`_series_error` bounds the error of the four-term series, computed as the
    kernel computes it (one Cholesky factor of ``A0 = M + 10 I``, three solves), against the
    solution of ``(M + (10 - delta) I) c = r`` refined in extended precision (with ``delta``
    tiny, the rounding alone), given ``1 / alpha`` (as in the kernel) or the exact
    ``|(M + alpha I)^-1|_2``. On a well-conditioned ``M`` far above the alphas the bound is
    small against the coefficients (it proves predictions)."""
    from fastsearchlight.estimators._ridge_cv_kernel import _EPS, _norm, _series_error
    from fastsearchlight.estimators._triangular import cholesky_solve_upper_rows, cholesky_upper_into

    rng = np.random.default_rng(int(np.log10(cond) * 10 + delta * 7))
    m = 60
    basis = np.linalg.qr(rng.normal(size=(m, m)))[0]
    eig = 2000.0 * np.logspace(0, np.log10(cond), m)
    M = (basis * eig) @ basis.T
    M = (M + M.T) / 2
    r = rng.normal(size=(1, m)) * 1e3
    a0, alpha = 10.0, 10.0 - delta
    A0 = M + a0 * np.eye(m)
    U = np.empty((m, m))
    assert cholesky_upper_into(A0.copy(), U)
    running = np.ones(1, dtype=bool)
    g = [r.copy()]
    for _ in range(4):
        g.append(g[-1].copy())
        cholesky_solve_upper_rows(U, g[-1], running)
    c0, g1, g2, g3 = (v[0] for v in g[1:])
    dlt = a0 - alpha
    c = c0 + dlt * (g1 + dlt * (g2 + dlt * g3))
    # the solution, refined with residuals in extended precision
    A = M + alpha * np.eye(m)
    exact = np.linalg.solve(A, r[0]).astype(np.longdouble)
    for _ in range(4):
        res = r[0].astype(np.longdouble) - A.astype(np.longdouble) @ exact
        exact += np.linalg.solve(A, res.astype(np.float64))
    error = float(np.sqrt(np.sum((c.astype(np.longdouble) - exact) ** 2)))
    norms = np.array([_norm(v) for v in (c0, g1, g2, g3)])
    fro2 = (np.trace(M) + m * a0) / (1.0 - (2 * m + 2) * _EPS)
    for inv in (1.0 / alpha, 1.0 / (eig.min() + alpha)):  # the kernel's bound, the exact norm
        bound = _series_error(norms, dlt, inv, fro2, (3 * m + 8) * _EPS)
        assert error <= bound
    if cond == 1e2:  # small enough to prove predictions
        assert bound < 1e-3 * norms[0]


def test_agreeing_decisions_take_each_way(monkeypatch):
    """The ways of :func:`_agreeing_decisions`, run as Python (``py_func``) with its callees
    counted:

    - well separated eigenvalues: one factorisation and no inversion, the other alphas by
      the series alone (four solves in all);
    - a nearly singular ``M`` (a feature of tiny variance puts an eigenvalue near 4e-3, with
      a component in ``Xc'Yc``) leaves the refinement nowhere to go (the series and the
      refinement converge at about ``(10 - alpha) / (10 + 4e-3)`` per step), so the trace of
      the inverse is computed and each other alpha takes its own factorisation;
    - an eigenvalue near 30: the series' remainder is too large, and refinement proves the
      predictions, after the trace of the inverse, still with one factorisation.

    Every way returns numpy's predictions, and the largest alpha's decisions."""
    import fastsearchlight.estimators._ridge_cv_kernel as kernel

    calls = {"factor": 0, "trace": 0, "solve": 0}
    factor, trace, solve = kernel._factor_shifted, kernel._inverse_trace, kernel.cholesky_solve_upper_rows

    def counted_solve(*args):
        calls["solve"] += 1
        return solve(*args)

    def counted_factor(*args):
        calls["factor"] += 1
        return factor(*args)

    def counted_trace(*args):
        calls["trace"] += 1
        return trace(*args)

    monkeypatch.setattr(kernel, "_factor_shifted", counted_factor)
    monkeypatch.setattr(kernel, "_inverse_trace", counted_trace)
    monkeypatch.setattr(kernel, "cholesky_solve_upper_rows", counted_solve)
    rng = np.random.default_rng(67)
    p = 8
    alphas = np.array([0.1, 1.0, 10.0])
    for case, scale in (("separated", None), ("singular", 0.01), ("medium", 1.0)):
        calls.update(factor=0, trace=0, solve=0)
        X = rng.normal(size=(40, p)) * 30.0
        if scale is not None:
            X[:, -1] = scale * rng.normal(size=40)  # an eigenvalue of M near 40 scale^2
        M = X.T @ X
        y = np.sign(X[:, 1] + (0.0 if scale is None else 30.0 * X[:, -1]) + 0.1 * rng.normal(size=40))
        R = X.T @ y[:, None]
        R = np.ascontiguousarray(R.T)
        F = rng.normal(size=(100, p)) * 30.0
        if case == "medium":
            F[:, -1] *= scale / 30.0  # test samples like the training ones
        ybar = np.array([0.05])
        coefs = [np.linalg.solve(M + a * np.eye(p), R[0]) for a in alphas]
        dec = np.stack([F @ c + ybar[0] for c in coefs])
        margin = np.abs(dec).min(axis=0) / np.abs(dec).max(axis=0)
        keep = np.flatnonzero(np.all(np.sign(dec) == np.sign(dec[0]), axis=0) & (margin > 0.1))
        assert keep.size >= 5
        H, C, out = np.empty((2, p, p)), np.empty((3, 1, p)), np.zeros((keep.size, 1))
        assert kernel._agreeing_decisions.py_func(M, R, F[keep], ybar, alphas, 1, 1e4, H, C, out, 0.0)
        np.testing.assert_allclose(out[:, 0], dec[2, keep], rtol=1e-9, atol=0)
        if case == "singular":
            assert calls["factor"] == 3 and calls["trace"] == 1, calls
            assert calls["solve"] > 4 + 2, calls  # refinement steps, and the own factors' solves
        elif case == "medium":
            assert calls["factor"] == 1 and calls["solve"] > 4, calls  # refinement proves
        else:  # the series alone: the largest alpha's solve and the series' three
            assert calls == {"factor": 1, "trace": 0, "solve": 4}, calls


@pytest.mark.parametrize("n_features", [6, 24, 40])  # covariance and Gram forms
@pytest.mark.parametrize("n_classes", [2, 3])
def test_eigh_path_on_some_problems_only(n_features, n_classes):
    """The eigendecomposition path restricted to some (sphere, fold) problems gives those
    problems exactly the decisions and choices of the unrestricted path, down to a single
    sphere (whose arrays numpy lays out otherwise: its test decisions by matmul once took
    another summation order there)."""
    rng = np.random.default_rng([47, n_features, n_classes])
    X, y, groups = make_data(rng, 9, 32, n_features, n_classes, raw=True)
    plan = make_plan("logo", y, groups)
    est = BatchedRidgeClassifierCV()
    random_need = rng.random((len(X), plan.n_folds)) < 0.3
    random_need[0] = False  # a sphere with no problem
    random_need[1] = True
    masks = [random_need] + [np.eye(len(X), dtype=bool)[:, [j] * plan.n_folds] for j in range(len(X))]
    for ys in (y[None], np.stack([y, rng.permutation(y)])):  # one label set, and two
        full_dec, full_best = est._eigh_run(X, ys, n_classes, plan)
        for need in masks:
            dec, best = est._eigh_run(X, ys, n_classes, plan, need)
            for k in range(len(ys)):
                for f in range(plan.n_folds):
                    rows = need[:, f]
                    np.testing.assert_array_equal(dec[k][f][rows], full_dec[k][f][rows])
                    np.testing.assert_array_equal(best[k][f][rows], full_best[k][f][rows])


@pytest.mark.parametrize("n_features", [12, 60])  # covariance and Gram forms
def test_near_ties_proven_alike(n_features, monkeypatch):
    """With predictions alone, a near-tie whose tied alphas all predict alike (proven) is
    not sent to the eigendecomposition path: its choice is skipped, its decisions are
    those of the largest tied alpha, and the predictions are scikit-learn's. Two alphas
    1e-9 apart (relative) tie (scikit-learn chooses one of them), 50 is outside the tie.
    With 24 training samples the Gram form (60 features) does not try to prove every alpha
    alike, so there the tie's proof alone skips the choice; in the covariance form (12
    features) the proof of every alpha may skip it first (its decisions are then the
    largest alpha's)."""
    from fastsearchlight.estimators.base import as_voxel_major

    module, record = _spy_paths(monkeypatch)
    alphas, X, y, plan, est = _tie_case([59, n_features], n_features)
    Xv, vox = as_voxel_major(X)
    decisions, chosen = est._run(Xv, vox, y[None], 2, plan, for_predictions=True)
    near_pred = record["near"][-1][..., 0]  # (spheres, folds)
    est._run(Xv, vox, y[None], 2, plan)
    near_exact = record["near"][-1][..., 0]
    resolved = near_exact & ~near_pred
    assert near_exact.sum() >= 5 and resolved.sum() >= 3
    for f, (train, test) in enumerate(zip(plan.train_indices, plan.test_indices)):
        for s in range(X.shape[0]):
            ref = RidgeClassifierCV(alphas=alphas).fit(X[s][train], y[train])
            ours = decisions[0][f][s]
            assert np.array_equal((ours > 0).astype(int), ref.predict(X[s][test])), (f, s)
            if resolved[s, f]:
                assert np.isnan(chosen[0][f][s]) and ref.alpha_ < 3
                if n_features < 24:  # (the proof of every alpha may have skipped it first)
                    continue
                # the largest tied alpha's decisions: 1e-9 (relative) from the other's
                dec_ref = ref.decision_function(X[s][test])
                assert np.all(np.abs(ours - dec_ref) <= 1e-6 * (1 + np.abs(dec_ref))), (f, s)


def test_intercept_shift_keeps_the_gram_form_solution():
    """``K + s 11'`` (``s = trace(K) / n^2``) for the centred Gram matrix ``K``: ``1``
    becomes an eigenvector of eigenvalue ``trace(K) / n``, and the dual coefficients
    ``G^-1 Yc`` and denominators ``G^-1_ii - (G^-1 1)_i / n`` are those of ``K + alpha I``
    (standardised values, well conditioned: both computed to about 1e-13); without an
    intercept ``K`` is returned as it is."""
    from fastsearchlight.estimators._ridge_cv_kernel import _intercept_shifted

    rng = np.random.default_rng(71)
    n, d, alpha = 20, 45, 0.7
    X = rng.standard_normal((n, d))
    Xc = X - X.mean(axis=0)
    K = Xc @ Xc.T
    Yc = rng.standard_normal(n)
    Yc -= Yc.mean()
    Ks = _intercept_shifted(K, True)
    np.testing.assert_allclose(Ks - K, np.trace(K) / n**2, rtol=1e-14)
    np.testing.assert_allclose(Ks @ np.ones(n), np.trace(K) / n * np.ones(n), rtol=1e-12)
    assert _intercept_shifted(K, False) is K
    G, Gs = np.linalg.inv(K + alpha * np.eye(n)), np.linalg.inv(Ks + alpha * np.eye(n))
    np.testing.assert_allclose(Gs @ Yc, G @ Yc, rtol=1e-11, atol=0)
    den = np.diag(G) - G.sum(axis=1) / n
    np.testing.assert_allclose(np.diag(Gs) - Gs.sum(axis=1) / n, den, rtol=1e-11, atol=0)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_gram_form_on_raw_values_decides_without_the_eigh_path(n_classes, monkeypatch):
    """More features than training samples on raw BOLD-scale values (the default alphas,
    far below the Gram matrix's nonzero eigenvalues): the alphas' scores differ by far more
    than any path's rounding, so the kernel decides nearly every fold (at most 2 of the 24
    flagged; with ``K + alpha I``, whose inverse has the eigenvalue ``1 / alpha`` along
    ``1``, as the condition number, all 24 were), and the choices are scikit-learn's."""
    module, record = _spy_paths(monkeypatch)
    rng = np.random.default_rng([73, n_classes])
    X, y, groups = make_data(rng, 6, 32, 60, n_classes, raw=True)
    plan = make_plan("logo", y, groups)
    compare_with_sklearn(X, y, n_classes, plan)
    near = record["near"][0]
    assert near.size == 24 and near.sum() <= 2


def test_gram_form_proofs_on_simulated_spheres():
    """Predictions alone in the Gram form on raw, spatially smooth simulated volumes (the
    package's Haxby-like data, 216 samples, ``KFold(4)``: 162 training samples; 20 spheres
    of 261 voxels at 14.5 mm): the proof that every alpha predicts alike runs on ``K + s
    11'``, whose inverse has no ``1 / alpha`` along ``1``, and proves at least 90% of the
    folds (on ``K`` itself it proved 61 of these 80), with scikit-learn's predictions."""
    from sklearn.model_selection import KFold

    from fastsearchlight.cv import make_cv_plan
    from fastsearchlight.simulate import simulate_haxby_like
    from fastsearchlight.spaces.volume import build_neighbourhoods

    ds = simulate_haxby_like(n_runs=12, random_state=0)
    inside = np.asarray(ds.mask_img.dataobj) != 0
    Xv = np.ascontiguousarray(np.asarray(ds.func_img.dataobj)[inside], dtype=np.float64)
    spheres = build_neighbourhoods(
        inside, ds.mask_img.affine, inside, ds.mask_img.affine, 14.5
    ).adjacency.tocsr()
    sizes = np.diff(spheres.indptr)
    rows = np.flatnonzero(sizes == sizes.max())[:20]
    vox = np.stack([spheres.indices[spheres.indptr[s] : spheres.indptr[s + 1]] for s in rows])
    y = np.unique(ds.labels["labels"].to_numpy(), return_inverse=True)[1]
    plan = make_cv_plan(KFold(4), y, None)
    decisions, chosen = BatchedRidgeClassifierCV()._run(Xv, vox, y[None], 2, plan, for_predictions=True)
    proven = sum(int(np.isnan(c).sum()) for c in chosen[0])
    assert vox.shape == (20, 261) and proven >= 72
    for f, (train, test) in enumerate(zip(plan.train_indices, plan.test_indices)):
        for s in range(len(vox)):
            X = Xv[vox[s]].T
            ref = RidgeClassifierCV().fit(X[train], y[train]).predict(X[test])
            assert np.array_equal((decisions[0][f][s] > 0).astype(int), ref), (f, s)


@pytest.mark.parametrize("predictions_only", [False, True])
def test_sliding_spheres_reuse_products_and_match_sklearn(predictions_only, monkeypatch):
    """Spheres sliding along a row of voxels (in increasing order, as the neighbourhoods give
    them) keep the block products of the voxels they share with the sphere before
    (:func:`._ridge_kernel.sphere_slots`): every sphere's decisions (or, with predictions
    alone, its predictions) are still scikit-learn's, all from the kernel (the eigh path,
    which would repair a problem the kernel flags, is never called)."""
    _, record = _spy_paths(monkeypatch)
    Xv, vox, y = sliding_spheres(12)
    n_classes, n_samples = 2, len(y)
    plan = make_plan("kfold", y, np.arange(n_samples) * 4 // n_samples)
    est = BatchedRidgeClassifierCV()
    run = est.many_fold_decisions_for_predictions_at if predictions_only else est.many_fold_decisions_at
    ours = run(Xv, vox, y[None], n_classes, plan)[0]
    for f, (train, test) in enumerate(zip(plan.train_indices, plan.test_indices)):
        for s in range(len(vox)):
            X = Xv[vox[s]].T
            ref = RidgeClassifierCV(alphas=(0.1, 1.0, 10.0)).fit(X[train], y[train])
            dec_ref = ref.decision_function(X[test])
            assert np.array_equal(ours[f][s] > 0, dec_ref > 0), (f, s)
            if not predictions_only:
                assert np.all(np.abs(ours[f][s] - dec_ref) <= REL * (1 + np.abs(dec_ref))), (f, s)
    assert record["eigh"] == []

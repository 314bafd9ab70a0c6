"""BatchedLDA against scikit-learn's LinearDiscriminantAnalysis(solver="lsqr") fitted per
sphere and fold, and the fold statistics the batched estimators share."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.model_selection import (
    KFold,
    LeaveOneGroupOut,
    LeaveOneOut,
    PredefinedSplit,
    ShuffleSplit,
    StratifiedKFold,
)
from sphere_cases import CASES, N_RUNS, SPLITTERS, make_spheres  # noqa: F401

from fastsearchlight.cv import make_cv_plan
from fastsearchlight.estimators.discriminant import (
    BatchedLDA,
    block_grams,
    block_sums,
    gather,
    make_fold_blocks,
)


def reference(est, X, y, plan):
    """scikit-learn's decision values and predictions per fold."""
    dec, pred = [], []
    for tr, te in zip(plan.train_indices, plan.test_indices):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # priors renormalised
            fits = [clone(est).fit(Xs[tr], y[tr]) for Xs in X]
        dec.append(np.array([m.decision_function(Xs[te]) for m, Xs in zip(fits, X)]))
        pred.append(np.array([m.predict(Xs[te]) for m, Xs in zip(fits, X)]))
    return dec, pred


def assert_decisions_match(ours, ref, pred=None):
    """Same predictions; decision values equal to rtol 1e-6 (relative to each sphere's
    largest value for values near 0)."""
    ours_pred = (ours > 0).astype(int) if ref.ndim == 2 else ours.argmax(-1)
    assert np.array_equal(ours_pred, (ref > 0).astype(int) if ref.ndim == 2 else ref.argmax(-1))
    if pred is not None:
        assert np.array_equal(ours_pred, pred)
    scale = np.abs(ref).reshape(len(ref), -1).max(axis=1)
    scale = scale.reshape((-1,) + (1,) * (ref.ndim - 1))
    assert np.all(np.abs(ours - ref) <= 1e-6 * (np.abs(ref) + scale))


@pytest.mark.parametrize("n_classes, raw, splitter, n_features", CASES)
def test_matches_lda_with_ledoit_wolf_shrinkage(n_classes, raw, splitter, n_features):
    X, y, groups = make_spheres(n_features + 7 * n_classes, n_classes, raw, n_features)
    plan = make_cv_plan(SPLITTERS[splitter], y, groups if splitter == "logo" else None)
    ours = BatchedLDA().fold_decisions(X, y, n_classes, plan)
    dec, pred = reference(LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert a.shape == b.shape
        assert_decisions_match(a, b, p)


@pytest.mark.parametrize("shrinkage", [None, 0.0, 0.3, 1.0])
@pytest.mark.parametrize("n_classes, raw", [(2, True), (3, False)])
def test_matches_lda_with_other_shrinkages(shrinkage, n_classes, raw):
    """Includes a constant feature, which leaves the unshrunk covariance singular."""
    X, y, groups = make_spheres(11, n_classes, raw, 6, n_spheres=9)
    plan = make_cv_plan(LeaveOneGroupOut(), y, groups)
    ours = BatchedLDA(shrinkage=shrinkage).fold_decisions(X, y, n_classes, plan)
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage)
    dec, pred = reference(lda, X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert_decisions_match(a, b, p)


@pytest.mark.parametrize("priors", [[0.2, 0.5, 0.3], [2.0, 1.0, 1.0]])
def test_priors(priors):
    X, y, _ = make_spheres(12, 3, False, 4, n_spheres=6)
    plan = make_cv_plan(KFold(3), y)
    est = BatchedLDA(priors=priors)
    if abs(sum(priors) - 1) > 1e-5:
        with pytest.warns(UserWarning, match="Renormalizing"):
            ours = est.fold_decisions(X, y, 3, plan)
    else:
        ours = est.fold_decisions(X, y, 3, plan)
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto", priors=priors)
    dec, pred = reference(lda, X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert_decisions_match(a, b, p)


def test_feature_constant_within_each_class():
    """StandardScaler's scale 1 for features without variance within a class."""
    X, y, _ = make_spheres(13, 2, True, 5, n_spheres=8)
    X[:, y == 0, 1] = 987.654321
    X[:, y == 1, 1] = 1001.25
    X[:, y == 1, 3] = 1017.75
    plan = make_cv_plan(StratifiedKFold(4), y)
    ours = BatchedLDA().fold_decisions(X, y, 2, plan)
    dec, pred = reference(LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert_decisions_match(a, b, p)


def test_constant_raw_feature_scikit_learn_rounding():
    """A constant feature at a raw value (1000.3) puts scikit-learn's own rounding error
    near 1e-7: it solves for each class's coefficients against the raw means (huge along
    the constant feature, whose shrunk variance is small) and subtracts them. The model is
    invariant under translation, and on data shifted by a sample scikit-learn agrees
    with the batched decisions to rounding."""
    rng = np.random.default_rng(14)
    y = np.arange(90) % 2
    X = 1000.0 + 50.0 * (rng.standard_normal((10, 90, 2)) + 0.5 * y[None, :, None])
    X[:, :, 0] = 1000.3
    plan = make_cv_plan(StratifiedKFold(5), y)
    ours = BatchedLDA().fold_decisions(X, y, 2, plan)
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    dec_raw, _ = reference(lda, X, y, plan)
    dec_shifted, _ = reference(lda, X - X[:, :1], y, plan)
    for a, raw, shifted in zip(ours, dec_raw, dec_shifted):
        np.testing.assert_allclose(a, shifted, rtol=1e-10, atol=1e-10 * np.abs(shifted).max())
        assert_decisions_match(a, raw)


@pytest.mark.parametrize(
    "splitter",
    [
        ShuffleSplit(5, test_size=0.3, random_state=0),  # overlapping test sets
        LeaveOneOut(),  # one block per sample
        PredefinedSplit(np.tile([-1, 0, 1, 1, 0, -1], 10)),  # samples never tested
    ],
)
def test_any_splitter(splitter):
    X, y, _ = make_spheres(15, 2, False, 4, n_spheres=3)
    X, y = X[:, :60], y[:60]
    plan = make_cv_plan(splitter, y)
    ours = BatchedLDA().fold_decisions(X, y, 2, plan)
    dec, pred = reference(LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert_decisions_match(a, b, p)


def test_fold_blocks_statistics():
    """Fold statistics assembled from blocks equal those computed on each training set."""
    rng = np.random.default_rng(16)
    y = rng.permutation(np.arange(50) % 3)
    X = rng.standard_normal((4, 50, 3))
    for splitter in [KFold(5), ShuffleSplit(4, test_size=0.2, random_state=1), LeaveOneOut()]:
        plan = make_cv_plan(splitter, y)
        blocks = make_fold_blocks(y, 3, plan)
        Xp = gather(X, blocks)
        sums = blocks.fold_class_sums(block_sums(Xp, blocks))
        grams = blocks.fold_sums(block_grams(Xp, blocks))
        for f, tr in enumerate(plan.train_indices):
            for c in range(3):
                idx = tr[y[tr] == c]
                np.testing.assert_allclose(sums[f, c], X[:, idx].sum(axis=1), atol=1e-12)
            np.testing.assert_allclose(grams[f], np.einsum("sni,snj->sij", X[:, tr], X[:, tr]), atol=1e-12)
            assert blocks.train_counts[f].sum() == len(tr)


def test_class_missing_from_a_training_set_raises():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    plan = make_cv_plan(KFold(2), y)
    with pytest.raises(ValueError, match="Every class"):
        BatchedLDA().fold_decisions(np.zeros((1, 8, 2)), y, 2, plan)


def test_invalid_parameters_raise():
    X, y, _ = make_spheres(17, 2, False, 3, n_spheres=1)
    plan = make_cv_plan(KFold(3), y)
    for est in [BatchedLDA(solver="svd"), BatchedLDA(shrinkage=1.5), BatchedLDA(shrinkage="oas")]:
        with pytest.raises(ValueError):
            est.fold_decisions(X, y, 2, plan)
    with pytest.raises(ValueError, match="non-negative"):
        BatchedLDA(priors=[-0.5, 1.5]).fold_decisions(X, y, 2, plan)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("n_features", [1, 2, 5])
def test_constant_spheres_match_scikit_learn(n_classes, n_features):
    """Spheres of all-zero or constant voxels (a zeroed block of the brain, constant data):
    no within-class variance at all, decisions from the priors alone, as scikit-learn."""
    rng = np.random.default_rng(n_features)
    y = np.arange(48) % n_classes
    X = rng.standard_normal((4, 48, n_features))
    X[0] = 0.0
    X[1] = 1234.5
    X[2, :, 0] = 0.0  # one dead voxel beside live ones
    plan = make_cv_plan(KFold(4, shuffle=True, random_state=0), y)
    ours = BatchedLDA().fold_decisions(X, y, n_classes, plan)
    dec, pred = reference(LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert np.all(np.isfinite(a))
        assert_decisions_match(a, b, p)


@pytest.mark.parametrize("n_features", [8, 23, 24, 25, 60])  # d < n, d ~ n, d > n
@pytest.mark.parametrize("n_classes, raw", [(2, True), (2, False), (4, True), (4, False)])
def test_every_shape_against_scikit_learn(n_features, n_classes, raw):
    """32 samples in 4 runs, leave one run out (24 training samples): with Ledoit-Wolf
    shrinkage and more features than training samples the pooled covariance is solved in
    the sample space; binary and multi-class."""
    X, y, _ = make_spheres(41 + n_features, n_classes, raw, n_features, n_spheres=9)
    X, y = X[:, :32], y[:32]
    plan = make_cv_plan(LeaveOneGroupOut(), y, np.arange(32) // 8)
    assert all(len(tr) == 24 for tr in plan.train_indices)
    ours = BatchedLDA().fold_decisions(X, y, n_classes, plan)
    dec, pred = reference(LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert a.shape == b.shape
        assert_decisions_match(a, b, p)


def test_sample_space_with_unequal_training_sets():
    """Folds of different training sizes (zero rows pad the smaller ones)."""
    X, y, _ = make_spheres(43, 3, True, 40, n_spheres=6)
    X, y = X[:, :30], y[:30]
    plan = make_cv_plan(KFold(4), y)
    assert len({len(tr) for tr in plan.train_indices}) == 2
    ours = BatchedLDA().fold_decisions(X, y, 3, plan)
    dec, pred = reference(LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert_decisions_match(a, b, p)


@pytest.mark.parametrize("n_features", [8, 23])  # d < n, d ~ n (the compiled kernel)
@pytest.mark.parametrize("n_classes, raw", [(2, True), (3, False)])
@pytest.mark.parametrize("shrinkage", ["auto", 0.3, None])
def test_voxel_major_spheres_and_several_label_vectors(n_features, n_classes, raw, shrinkage):
    """Overlapping spheres read from voxel-major data (as the searchlight passes them), two
    label vectors, a plan with samples in no training or test set: every fold's decisions
    as scikit-learn's fitted sphere by sphere."""
    X, y, _ = make_spheres(50 + n_features, n_classes, raw, n_features, n_spheres=1)
    rng = np.random.default_rng(n_features)
    n_samples = X.shape[1]
    extra = 1000.0 * raw + rng.standard_normal((12, n_samples))
    Xv = np.concatenate([X[0].T, extra])  # (n_voxels, n_samples)
    vox = np.stack([rng.permutation(len(Xv))[:n_features] for _ in range(7)])
    ys = np.stack([y, rng.permutation(y)])
    plan = make_cv_plan(ShuffleSplit(3, train_size=0.6, test_size=0.3, random_state=1), y)
    ours = BatchedLDA(shrinkage=shrinkage).many_fold_decisions_at(Xv, vox, ys, n_classes, plan)
    spheres = Xv[vox].transpose(0, 2, 1)
    est = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage)
    for labels, folds in zip(ys, ours):
        dec, pred = reference(est, spheres, labels, plan)
        for a, b, p in zip(folds, dec, pred):
            assert a.shape == b.shape
            assert_decisions_match(a, b, p)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_sample_space_spheres_solved_in_the_feature_space(n_classes):
    """More features than training samples, but spheres the sample space cannot solve (no
    within-class variance, a dead voxel): computed by the feature-space kernel, as
    scikit-learn."""
    rng = np.random.default_rng(n_classes)
    y = np.arange(32) % n_classes
    X = rng.standard_normal((4, 32, 40))
    X[0] = 0.0
    X[1] = 1234.5
    X[2, :, 0] = 0.0
    plan = make_cv_plan(LeaveOneGroupOut(), y, np.arange(32) // 8)
    ours = BatchedLDA().fold_decisions(X, y, n_classes, plan)
    dec, pred = reference(LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), X, y, plan)
    for a, b, p in zip(ours, dec, pred):
        assert np.all(np.isfinite(a))
        assert_decisions_match(a, b, p)

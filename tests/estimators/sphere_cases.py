"""Random spheres shared by the tests of the closed-form batched estimators."""

import numpy as np
from sklearn.model_selection import KFold, LeaveOneGroupOut, StratifiedKFold

from fastsearchlight.cv import make_cv_plan

N_RUNS = 4
SPLITTERS = {
    "kfold": KFold(4),
    "stratified": StratifiedKFold(5, shuffle=True, random_state=0),
    "logo": LeaveOneGroupOut(),
}
# (n_classes, raw BOLD scale, splitter, n_features): every splitter with both scales and
# both class counts, and numbers of features from 1 to 20
CASES = [
    (2, False, "kfold", 1), (2, True, "stratified", 2), (2, False, "logo", 19),
    (2, True, "kfold", 20), (2, False, "stratified", 7), (2, True, "logo", 12),
    (3, True, "kfold", 1), (3, False, "stratified", 3), (3, True, "logo", 19),
    (3, False, "kfold", 20), (3, True, "stratified", 5), (3, False, "logo", 10),
]  # fmt: skip


def make_spheres(seed, n_classes, raw, n_features, n_spheres=30, effect=0.5, constant_pattern=False):
    """Random spheres: labels, runs, class effects; every third sphere has a constant
    feature (and, with ``constant_pattern``, one sample is a constant pattern); values
    like raw BOLD (1000 +- 50) or standardised."""
    rng = np.random.default_rng(seed)
    n_samples = int(rng.integers(60, 121))
    y = rng.permutation(np.arange(n_samples) % n_classes)
    groups = np.arange(n_samples) * N_RUNS // n_samples
    X = rng.standard_normal((n_spheres, n_samples, n_features))
    X += effect * rng.standard_normal((n_spheres, n_classes, n_features))[:, y]
    if raw:
        X = 1000.0 + 50.0 * X
    if n_features > 1:
        j = n_features // 2
        X[::3, :, j] = X[::3, :1, j]  # constant feature (an arbitrary value)
    if constant_pattern:
        X[:, 5, :] = X[:, 5, :1]  # a pattern without variance across features
    return X, y, groups


def make_data(rng, n_spheres, n_samples, n_features, n_classes, *, raw, effect=0.4):
    """Random spheres: BOLD-like values (~1000 +- 20..50), a class effect, runs as groups.

    Spheres 0..4 have a constant first feature (when there are at least 2 features).
    With ``raw=False`` every feature of every sphere is standardised over all samples.
    """
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    groups = np.arange(n_samples) * 4 // n_samples  # 4 runs
    means = effect * rng.normal(size=(n_spheres, n_classes, n_features))
    X = rng.normal(size=(n_spheres, n_samples, n_features)) + means[:, y, :]
    base = 1000 + 100 * rng.normal(size=(n_spheres, 1, n_features))
    X = base + rng.uniform(20, 50, size=(n_spheres, 1, n_features)) * X
    if n_features >= 2:
        X[:5, :, 0] = base[:5, :, 0]
    if not raw:
        std = X.std(axis=1, keepdims=True)
        X = (X - X.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
    return X, y, groups


def sliding_spheres(seed, n_samples=96, n_classes=2):
    """Voxel-major raw-scale data smooth along a row of 60 voxels, and 40 spheres of 20
    voxels sliding along it one voxel at a time (in increasing order, as the neighbourhoods
    give them): each shares all but one voxel with the one before."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n_samples) % n_classes)
    Xv = rng.standard_normal((60, n_samples)) + 0.5 * rng.standard_normal((60, n_classes))[:, y]
    Xv = np.ascontiguousarray(1000.0 + 30.0 * np.cumsum(Xv, axis=0) / 3.0)
    vox = np.arange(40)[:, None] + np.arange(20)[None, :]
    return Xv, vox, y


def make_plan(kind, y, groups):
    splitter = {
        "kfold": KFold(5, shuffle=True, random_state=0),
        "stratified": StratifiedKFold(4),
        "logo": LeaveOneGroupOut(),
    }[kind]
    return make_cv_plan(splitter, y, groups if kind == "logo" else None)

"""Sphere sums: naive Bayes scores of every sphere from per-voxel terms and a sparse product.

The sphere-sum path must give exactly the scores of the block path (and of scikit-learn's
GaussianNB fitted per sphere), whatever the splitter, the number of classes, the memory
budget or the number of threads, including where its bounded decisions are uncertain.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.model_selection import (
    KFold,
    LeaveOneGroupOut,
    ShuffleSplit,
    StratifiedKFold,
    cross_val_score,
)
from sklearn.naive_bayes import GaussianNB

from fastsearchlight import engine
from fastsearchlight.cv import make_cv_plan
from fastsearchlight.estimators.correlation import (
    BatchedCorrelation,
    CorrelationClassifier,
    _test_pattern_sums,
)
from fastsearchlight.estimators.naive_bayes import BatchedGaussianNB
from fastsearchlight.neighbourhoods import build_neighbourhoods
from fastsearchlight.sphere_sums import SphereSums, run_sphere_sums, supports_sphere_sums


def _volume(seed, n_samples=72, n_classes=2, shape=(7, 8, 6), raw=True, constant=True):
    """A small brain: mask, neighbourhoods (radius 2 voxels), data (samples x mask voxels)
    with a class effect in a blob, runs as groups."""
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < 0.7
    mask[3, 4, 3] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    hoods = build_neighbourhoods(mask, affine, mask, affine, 4.0)
    n_vox = int(mask.sum())
    y = rng.permutation(np.arange(n_samples) % n_classes)
    groups = np.arange(n_samples) * 4 // n_samples
    effect = 0.8 * rng.standard_normal((n_classes, n_vox)) * (rng.random(n_vox) < 0.4)
    X = rng.standard_normal((n_samples, n_vox)) + effect[y]
    if raw:
        X = 1000.0 + 40.0 * X
    if constant:
        X[:, :3] = X[:1, :3]  # constant voxels
        X[:, 3] = np.where(y == 0, X[0, 3], X[:, 3])  # constant within class 0 only
    return X, y, groups, hoods


def _block_path(X, hoods, est, ys, n_classes, plan, metric, n_jobs=1):
    """Scores by the block path, the sphere-sum path being disabled."""
    blocks = engine._blocks(engine.voxel_major(X), hoods, est, n_classes, plan, 64, 1)
    Xv = engine.voxel_major(X)
    out = np.empty((len(ys), hoods.n_spheres, plan.n_folds))
    for ids, vox in blocks:
        out[:, ids] = engine._batched_block(Xv, vox, est, ys, n_classes, plan, metric)
    return out


SPLITS = {
    "kfold": lambda: KFold(4),
    "stratified": lambda: StratifiedKFold(3, shuffle=True, random_state=0),
    "logo": LeaveOneGroupOut,
    # test sets overlap and leave samples out: not a partition of the samples
    "shuffle": lambda: ShuffleSplit(5, test_size=0.3, random_state=0),
}


@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy"])
@pytest.mark.parametrize("n_sets", [1, 6])  # one label vector: no copy of the data
@pytest.mark.parametrize("model", [BatchedGaussianNB, BatchedCorrelation])
def test_same_scores_as_block_path(split, n_classes, metric, n_sets, model):
    X, y, groups, hoods = _volume(1 + n_classes, n_classes=n_classes)
    plan = make_cv_plan(SPLITS[split](), y, groups)
    est = model()
    rng = np.random.default_rng(0)
    ys = np.stack([y] + [rng.permutation(y) for _ in range(n_sets - 1)])
    assert supports_sphere_sums(est, metric)
    got = engine.run_batched(X, hoods, est, ys, n_classes, plan, metric)
    want = _block_path(X, hoods, est, ys, n_classes, plan, metric)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "model, reference", [(BatchedGaussianNB, GaussianNB), (BatchedCorrelation, CorrelationClassifier)]
)
def test_same_scores_as_the_reference_per_sphere(model, reference):
    X, y, groups, hoods = _volume(7)
    plan = make_cv_plan(KFold(4), y)
    got = engine.run_batched(X, hoods, model(), y[None], 2, plan, "accuracy")[0]
    for s in range(hoods.n_spheres):
        want = cross_val_score(reference(), X[:, hoods.voxels(s)], y, cv=KFold(4))
        np.testing.assert_array_equal(got[s], want)


@pytest.mark.parametrize("memory_mb", [0.01, 512.0])
@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("model", [BatchedGaussianNB, BatchedCorrelation])
def test_threads_and_memory_budget_do_not_change_scores(memory_mb, n_jobs, model):
    X, y, groups, hoods = _volume(11, n_classes=3)
    plan = make_cv_plan(LeaveOneGroupOut(), y, groups)
    rng = np.random.default_rng(1)
    ys = np.stack([rng.permutation(y) for _ in range(7)])
    est = model()
    want = _block_path(X, hoods, est, ys, 3, plan, "accuracy")
    got = engine.run_batched(X, hoods, est, ys, 3, plan, "accuracy", n_jobs=n_jobs, memory_mb=memory_mb)
    np.testing.assert_array_equal(got, want)


def test_uncertain_decisions_are_recomputed_exactly():
    """With a large variance smoothing, the decisions without it change sign on some
    spheres; those must be reported uncertain, and the scores still be exact."""
    X, y, groups, hoods = _volume(5, raw=False, constant=False)
    plan = make_cv_plan(KFold(4), y)
    est = BatchedGaussianNB(var_smoothing=0.3)
    sums = SphereSums(hoods)
    state = est.sphere_sum_state(engine.voxel_major(X), plan, sums)
    stats = est.sphere_sum_label_sets(state, y[None], 2, plan)[0]
    n_flipped = 0
    for f, decisions, unsure in est.sphere_sum_decisions(state, stats, 2, plan, sums, None, 10**6):
        for s in range(hoods.n_spheres):
            block = X[:, hoods.voxels(s)][None]
            truth = est.fold_decisions(block, y, 2, plan)[f][0]
            flipped = (truth > 0) != (decisions[s] > 0)
            n_flipped += flipped.any()
            assert not flipped.any() or unsure[s], f"sphere {s} fold {f}: wrong sign reported certain"
    assert n_flipped > 0  # the case is exercised
    want = _block_path(X, hoods, est, y[None], 2, plan, "accuracy")
    np.testing.assert_array_equal(engine.run_batched(X, hoods, est, y[None], 2, plan, "accuracy"), want)


def test_priors_and_constant_voxels():
    X, y, groups, hoods = _volume(3, n_classes=3)
    plan = make_cv_plan(StratifiedKFold(4), y)
    est = BatchedGaussianNB(priors=np.array([0.2, 0.5, 0.3]))
    got = engine.run_batched(X, hoods, est, y[None], 3, plan, "accuracy")
    np.testing.assert_array_equal(got, _block_path(X, hoods, est, y[None], 3, plan, "accuracy"))


def test_label_set_with_a_missing_class_takes_the_block_path():
    X, y, groups, hoods = _volume(9)
    plan = make_cv_plan(LeaveOneGroupOut(), y, groups)
    bad = y.copy()
    bad[groups != 0] = 0  # training sets of fold 0 hold class 0 only
    calls = []
    est = BatchedGaussianNB()

    def exact(ids, labels):
        calls.append(len(ids))
        return np.zeros((len(ids), plan.n_folds))

    out = run_sphere_sums(engine.voxel_major(X), hoods, est, np.stack([y, bad]), 2, plan,
                          "accuracy", exact, memory_mb=64)  # fmt: skip
    assert calls[-1] == hoods.n_spheres
    assert np.all(out[1] == 0)


def test_sphere_sums_against_dense():
    X, y, groups, hoods = _volume(2)
    dense = hoods.adjacency.toarray().astype(float)
    values = np.random.default_rng(0).standard_normal((dense.shape[1], 3, 2))
    for threads in (1, 3):
        sums = SphereSums(hoods, threads)
        with ThreadPoolExecutor(threads) as pool:
            np.testing.assert_allclose(sums.sum(values, pool), np.einsum("sv,vab->sab", dense, values))
    masked = np.where(dense[:, :, None, None] > 0, values[None], -np.inf)
    np.testing.assert_array_equal(sums.max(values), masked.max(axis=1))
    flags = np.zeros(dense.shape[1], dtype=bool)
    flags[[0, 5]] = True
    np.testing.assert_array_equal(sums.any(flags), dense[:, flags].any(axis=1))


def test_roc_auc_keeps_the_block_path():
    assert not supports_sphere_sums(BatchedGaussianNB(), "roc_auc")
    assert not supports_sphere_sums(BatchedCorrelation(), "roc_auc")


def test_correlation_spheres_of_two_voxels_and_flat_patterns_are_exact():
    """Spheres of 1-2 voxels (the reference's exact rule for two features) and constant
    patterns go to the exact path."""
    X, y, groups, hoods = _volume(12)
    X = X.copy()
    X[::7] = X[::7, :1]  # some test patterns constant across all voxels
    plan = make_cv_plan(KFold(4), y)
    est = BatchedCorrelation()
    want = _block_path(X, hoods, est, y[None], 2, plan, "accuracy")
    np.testing.assert_array_equal(engine.run_batched(X, hoods, est, y[None], 2, plan, "accuracy"), want)
    sums = SphereSums(hoods)
    state = est.sphere_sum_state(engine.voxel_major(X), plan, sums)
    stats = est.sphere_sum_label_sets(state, y[None], 2, plan)[0]
    for f, _, unsure in est.sphere_sum_decisions(state, stats, 2, plan, sums, None, 10**6):
        assert np.all(unsure[hoods.sizes < 3])
        mean = np.ascontiguousarray(stats["mean"][:, f])
        flat = _test_pattern_sums(state["folds"][f], mean, sums)["flat_x"]
        assert flat.any()
        assert np.all(unsure[flat])


def test_single_precision_sums_are_within_their_bound():
    """The bound the near-boundary recheck relies on: a single-precision sphere sum of p
    terms is within (p + 2) * 2^-24 * sum |terms| of the exact sum."""
    X, y, groups, hoods = _volume(4)
    sums = SphereSums(hoods)
    rng = np.random.default_rng(3)
    terms = rng.standard_normal((hoods.adjacency.shape[1], 1, 40)) * 10.0 ** rng.integers(-3, 4, (1, 1, 40))
    single = sums.sum(terms.astype(np.float32))
    exact = sums.sum(terms)
    size = sums.sum(np.abs(terms))
    bound = (sums.sizes + 2)[:, None, None] * np.finfo(np.float32).eps / 2 * size
    assert single.dtype == np.float32
    assert np.all(np.abs(single.astype(np.float64) - exact) <= bound)


@pytest.mark.parametrize("memory_mb", [0.01, 512.0])
@pytest.mark.parametrize("split", ["one", "kfold", "logo"])  # fewer folds than threads, more
@pytest.mark.parametrize("model", [BatchedGaussianNB, BatchedCorrelation])
def test_one_label_vector_on_threads(memory_mb, split, model):
    """A single label vector runs on threads (whole folds, or the pieces of a fold when
    there are fewer folds than threads): the scores are the block path's."""
    X, y, groups, hoods = _volume(13, n_classes=3)
    splitter = ShuffleSplit(1, test_size=0.3, random_state=0) if split == "one" else SPLITS[split]()
    plan = make_cv_plan(splitter, y, groups)
    est = model()
    want = _block_path(X, hoods, est, y[None], 3, plan, "accuracy")
    got = engine.run_batched(X, hoods, est, y[None], 3, plan, "accuracy", n_jobs=2, memory_mb=memory_mb)
    np.testing.assert_array_equal(got, want)


def _arrays_in(obj, found, depth=0):
    """Every ndarray reachable from ``obj`` (containers, sparse matrices, dataclasses)."""
    if isinstance(obj, np.ndarray):
        found.append(obj)
    elif depth < 8 and isinstance(obj, dict):
        for value in obj.values():
            _arrays_in(value, found, depth + 1)
    elif depth < 8 and isinstance(obj, (list, tuple)):
        for value in obj:
            _arrays_in(value, found, depth + 1)
    elif depth < 8 and hasattr(obj, "__dict__") and not isinstance(obj, type):
        for value in vars(obj).values():
            _arrays_in(value, found, depth + 1)


@pytest.mark.parametrize("model", [BatchedGaussianNB, BatchedCorrelation])
def test_worker_processes_receive_the_data_by_file_name(model, monkeypatch):
    """Several label vectors go to worker processes, which must map the data and the
    per-voxel state rather than receive a copy with every task: joblib passes memory maps
    by file name, but an ndarray subclass (such as the voxel-major view) by value."""
    from fastsearchlight.core._executors import LocalProcesses

    X, y, groups, hoods = _volume(17, n_classes=3)
    plan = make_cv_plan(LeaveOneGroupOut(), y, groups)
    rng = np.random.default_rng(2)
    ys = np.stack([rng.permutation(y) for _ in range(5)])
    sent = []
    original = LocalProcesses.map_unordered

    def spy(self, func, argsets, **kwargs):
        sent.extend(argsets)
        return original(self, func, argsets, **kwargs)

    monkeypatch.setattr(LocalProcesses, "map_unordered", spy)
    est = model()
    got = engine.run_batched(X, hoods, est, ys, 3, plan, "accuracy", n_jobs=2)
    np.testing.assert_array_equal(got, _block_path(X, hoods, est, ys, 3, plan, "accuracy"))
    assert sent
    arrays = []
    _arrays_in(sent, arrays)
    subclasses = {type(a).__name__ for a in arrays if type(a) not in (np.ndarray, np.memmap)}
    assert not subclasses, f"sent by value with every task: {subclasses}"
    data = [a for a in arrays if a.shape == X.T.shape]
    assert data and all(isinstance(a, np.memmap) and a.filename for a in data)

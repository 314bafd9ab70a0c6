"""The core: one problem, any executor, several metrics from the same decisions."""

import numpy as np
import pytest
from sklearn.model_selection import KFold

from fastsearchlight.core import InProcess, LocalProcesses, Problem, Threads, compute_scores
from fastsearchlight.cv import make_cv_plan
from fastsearchlight.estimators import batched_equivalent, resolve_estimator
from fastsearchlight.images import masked_data
from fastsearchlight.neighbourhoods import build_neighbourhoods
from fastsearchlight.simulate import simulate_haxby_like


@pytest.fixture(scope="module")
def parts():
    ds = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0, random_state=3)
    mask = np.asarray(ds.mask_img.dataobj) > 0
    X = masked_data(ds.func_img, mask)
    hoods = build_neighbourhoods(mask, ds.func_img.affine, mask, ds.func_img.affine, 4.0)
    codes = np.unique(ds.labels["labels"].to_numpy(), return_inverse=True)[1]
    plan = make_cv_plan(KFold(4), codes, None, classifier=True)
    return X, hoods, plan, codes


@pytest.mark.parametrize("name", ["svc", "gnb", "lda"])
def test_several_metrics_in_one_pass_equal_one_at_a_time(parts, name):
    X, hoods, plan, codes = parts
    est = batched_equivalent(resolve_estimator(name, None))
    metrics = ("accuracy", "balanced_accuracy", "roc_auc")
    labels = np.stack([codes, np.roll(codes, 5)])
    together = compute_scores(Problem(X, hoods, plan, est, metrics), labels)
    assert together.shape == (2, hoods.n_spheres, plan.n_folds, 3)
    for m, metric in enumerate(metrics):
        alone = compute_scores(Problem(X, hoods, plan, est, (metric,)), labels)[..., 0]
        np.testing.assert_array_equal(together[..., m], alone)


def test_every_executor_gives_the_same_scores(parts):
    from sklearn.naive_bayes import GaussianNB

    from fastsearchlight.neighbourhoods import Neighbourhoods

    X, hoods, plan, codes = parts
    svc = batched_equivalent(resolve_estimator("svc", None))
    batched = Problem(X, hoods, plan, svc, ("accuracy",), memory_mb=1)
    # one scikit-learn fit per sphere and fold: 72 spheres are two tasks (blocks of 64)
    few = Neighbourhoods(hoods.adjacency[:72], hoods.seeds_ijk[:72])
    generic = Problem(X, few, plan, GaussianNB(), ("accuracy", "balanced_accuracy"))
    for problem, labels in ((batched, codes[None]), (generic, codes[None])):
        here = compute_scores(problem, labels, InProcess())
        there = compute_scores(problem, labels, LocalProcesses(2))
        np.testing.assert_array_equal(here, there)
        in_threads = compute_scores(problem, labels, Threads(2))  # started per call
        np.testing.assert_array_equal(here, in_threads)


def test_searchlight_runs_compiled_estimators_in_threads_and_others_in_processes(monkeypatch):
    """svc's fits release the interpreter lock: local parallel runs use threads (the data
    are not written to a shared file for them); the others use processes."""
    import fastsearchlight.searchlight as searchlight_module
    from fastsearchlight import SearchLight

    ds = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0, random_state=3)
    y = ds.labels["labels"].to_numpy()
    made = []
    make = searchlight_module.make_executor

    def recording(*args, **kwargs):
        made.append(make(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(searchlight_module, "make_executor", recording)
    scores = {}
    for name in ("svc", "gnb"):
        for n_jobs in (1, 2):
            sl = SearchLight(mask_img=ds.mask_img, radius=4.0, estimator=name, cv=KFold(4), n_jobs=n_jobs)
            scores[name, n_jobs] = sl.fit(ds.func_img, y).scores_
        np.testing.assert_array_equal(scores[name, 1], scores[name, 2])
    assert [type(e).__name__ for e in made] == ["Threads", "Threads", "InProcess", "LocalProcesses"]
    assert [e.n_workers for e in made] == [1, 2, 1, 2]


def test_local_processes_pass_memory_maps_by_file_name():
    """Data written once to a shared memory map reach the workers as that map, not as a copy
    joblib writes at every call."""
    from fastsearchlight.shared import shared_empty

    X = shared_empty((100, 50))
    X[:] = 1.0
    executor = LocalProcesses(2)
    [(_, filename)] = list(executor.map_unordered(_filename, [(executor.share(X),)]))
    assert filename == X.filename


def _filename(array):
    return getattr(array, "filename", None)


@pytest.mark.parametrize("name", ["svc", "lda"])
def test_blocks_fit_the_memory_budget_with_every_label_vector_solved_together(parts, monkeypatch, name):
    """A batch of permutations is solved block by block with all its label vectors at once:
    the blocks shrink so that the budget holds for all of them, and the scores do not change."""
    import fastsearchlight.core._blocks as blocks_module

    X, hoods, plan, codes = parts
    est = batched_equivalent(resolve_estimator(name, None))
    rng = np.random.default_rng(0)
    labels = np.stack([codes] + [rng.permutation(codes) for _ in range(19)])
    seen = []
    real = blocks_module.batched_block

    def spy(X_, vox, estimator, ys, *args):
        seen.append((vox.shape, ys.shape[0]))
        return real(X_, vox, estimator, ys, *args)

    monkeypatch.setattr(blocks_module, "batched_block", spy)
    memory_mb = 0.5
    scores = {}
    for n_sets in (1, 20):
        seen.clear()
        scores[n_sets] = compute_scores(
            Problem(X, hoods, plan, est, ("accuracy",), memory_mb=memory_mb), labels[:n_sets]
        )
        for (n_spheres, k), n_label_sets in seen:
            assert n_label_sets == n_sets
            args = (X.shape[0], k, plan.n_folds, 2)
            per_sphere = est.bytes_per_sphere(*args) + (n_sets - 1) * est.bytes_per_label_set(*args)
            assert n_spheres == 1 or n_spheres * per_sphere <= memory_mb * 2**20
        if n_sets == 1:
            largest_alone = max(shape[0] for shape, _ in seen)
    assert max(shape[0] for shape, _ in seen) < largest_alone
    np.testing.assert_array_equal(scores[20][:1], scores[1])


@pytest.mark.parametrize("name", ["svc", "gnb"])
def test_reduced_block_by_block_equals_reduced_at_the_end(parts, monkeypatch, name):
    """``reduce`` (a permutation batch's fold means) is applied to each block's scores as
    they arrive, so no array of every sphere's per-fold scores is made; the result is the
    same, to the bit, as reducing the full array (svc: blocks; gnb: sphere sums)."""
    import fastsearchlight.core._compute as compute_module
    from fastsearchlight.stats import fold_mean

    X, hoods, plan, codes = parts
    est = batched_equivalent(resolve_estimator(name, None))
    rng = np.random.default_rng(1)
    labels = np.stack([codes] + [rng.permutation(codes) for _ in range(5)])
    problem = Problem(X, hoods, plan, est, ("accuracy", "balanced_accuracy"), memory_mb=0.5)
    full = compute_scores(problem, labels)
    first_metric_means = lambda s: fold_mean(s[..., 0])  # noqa: E731
    if name == "svc":  # many blocks, each reduced alone
        sizes = []
        real = compute_module.batched_task

        def spy(*args):
            out = real(*args)
            sizes.append(len(out[0]))
            return out

        monkeypatch.setattr(compute_module, "batched_task", spy)
    maps = compute_scores(problem, labels, reduce=first_metric_means)
    assert maps.shape == (len(labels), hoods.n_spheres)
    np.testing.assert_array_equal(maps, fold_mean(full[..., 0]))
    if name == "svc":
        assert len(sizes) > 1 and max(sizes) < hoods.n_spheres


@pytest.mark.parametrize(
    ("name", "n_classes"),
    [("svc", 2), ("svc", 3), ("lda", 3), ("ridge_classifier", 3), ("ridge_classifier_fixed", 3),
     ("logistic_regression", 3), ("logistic", 2)],
)  # fmt: skip
@pytest.mark.parametrize("n_samples", [None, 16])  # fewer voxels than training samples, and more
def test_estimators_shared_by_threads_score_as_in_one_thread(name, n_classes, n_samples):
    """The engine's threads share one estimator object: every estimator that runs in threads
    (it releases the interpreter lock) gives, on many small blocks with several label
    vectors, the scores of the same blocks in one thread, to the bit."""
    ds = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0, random_state=3)
    mask = np.asarray(ds.mask_img.dataobj) > 0
    X = masked_data(ds.func_img, mask)[:n_samples]
    hoods = build_neighbourhoods(mask, ds.func_img.affine, mask, ds.func_img.affine, 4.0)
    codes = np.arange(len(X)) % n_classes
    plan = make_cv_plan(KFold(4, shuffle=True, random_state=0), codes, None, classifier=True)
    rng = np.random.default_rng(0)
    n_permuted = 1 if name == "logistic" else 3  # (an inner cross-validation per fit: slow)
    labels = np.stack([codes] + [rng.permutation(codes) for _ in range(n_permuted)])
    est = batched_equivalent(resolve_estimator(name, None))
    assert est.releases_gil(n_features=hoods.sizes.max(), n_train=len(plan.train_indices[0])) or (
        name == "ridge_classifier_fixed" and n_samples is not None  # dual form: in processes
    )
    problem = Problem(X, hoods, plan, est, ("accuracy",), n_classes=n_classes, memory_mb=0.05)
    alone = compute_scores(problem, labels, InProcess())
    assert np.isfinite(alone).all()
    np.testing.assert_array_equal(compute_scores(problem, labels, Threads(2)), alone)


def test_gram_path_spheres_share_blocks_of_several_sizes_with_the_same_scores(monkeypatch):
    """svc's spheres solved from their Gram matrices come in blocks of several sizes, in
    the order of the spheres (rows padded with -1); the scores are those of blocks of equal
    sizes."""
    from fastsearchlight.core._blocks import plan_blocks
    from fastsearchlight.estimators.svm import BatchedLinearSVC

    ds = simulate_haxby_like(shape=(9, 10, 9), n_runs=2, n_regions=1, region_radius_mm=5.0, random_state=4)
    mask = np.asarray(ds.mask_img.dataobj) > 0
    X = masked_data(ds.func_img, mask)
    hoods = build_neighbourhoods(mask, ds.func_img.affine, mask, ds.func_img.affine, 7.0)
    codes = np.unique(ds.labels["labels"].to_numpy(), return_inverse=True)[1]
    plan = make_cv_plan(KFold(4), codes, None, classifier=True)
    svc = batched_equivalent(resolve_estimator("svc", None))
    smallest = svc.mixed_sizes_from(plan)
    assert len(np.unique(hoods.sizes[hoods.sizes >= smallest])) > 3
    blocks = plan_blocks(X.T.copy(), hoods, svc, 2, plan, 1024.0, 1)
    mixed = [vox for _, vox in blocks if (vox < 0).any()]
    assert mixed and all(((vox >= 0).sum(axis=1) >= smallest).all() for vox in mixed)
    scores = compute_scores(Problem(X, hoods, plan, svc, ("accuracy", "roc_auc")), codes[None])
    monkeypatch.setattr(BatchedLinearSVC, "mixed_sizes_from", lambda self, plan: None)
    assert not any((vox < 0).any() for _, vox in plan_blocks(X.T.copy(), hoods, svc, 2, plan, 1024.0, 1))
    equal = compute_scores(Problem(X, hoods, plan, svc, ("accuracy", "roc_auc")), codes[None])
    np.testing.assert_array_equal(scores[..., 0], equal[..., 0])
    np.testing.assert_allclose(scores[..., 1], equal[..., 1], rtol=0, atol=1e-12)

"""Work arrays reused by the blocks of one computation, per thread, released at its end."""

import threading

import numpy as np
import pytest
from sklearn.model_selection import KFold

from fastsearchlight import _work_arrays
from fastsearchlight._work_arrays import reused_work_arrays, work_array
from fastsearchlight.core import Problem, Threads, compute_scores
from fastsearchlight.cv import make_cv_plan
from fastsearchlight.estimators import batched_equivalent, resolve_estimator
from fastsearchlight.images import masked_data
from fastsearchlight.neighbourhoods import build_neighbourhoods
from fastsearchlight.simulate import simulate_haxby_like


def test_fresh_arrays_outside_a_computation():
    a = work_array("x", (4, 3))
    b = work_array("x", (4, 3))
    assert a.shape == (4, 3) and a.dtype == np.float64 and a.flags.c_contiguous
    assert not np.shares_memory(a, b)


def test_reused_per_name_and_thread_grown_and_released():
    with reused_work_arrays():
        a = work_array("x", (4, 3))
        assert np.shares_memory(a, work_array("x", (2, 5)))  # smaller: a view of the same
        assert not np.shares_memory(a, work_array("y", (4, 3)))
        assert work_array("x", (3,), np.int32).dtype == np.int32  # another dtype: new
        big = work_array("x", (10, 10))
        assert big.shape == (10, 10) and np.shares_memory(big, work_array("x", (100,)))
        other = {}
        thread = threading.Thread(target=lambda: other.update(a=work_array("x", (10, 10))))
        thread.start()
        thread.join()
        assert not np.shares_memory(big, other["a"])
        assert len(_work_arrays._owners) == 2
    assert _work_arrays._owners == []  # every thread's arrays released
    with reused_work_arrays():  # a new computation: new arrays
        assert not np.shares_memory(big, work_array("x", (10, 10)))


@pytest.mark.parametrize(("n_classes", "n_samples"), [(2, None), (3, None), (3, 16)])
def test_svc_blocks_on_threads_reusing_their_arrays_score_as_fresh_arrays(monkeypatch, n_classes, n_samples):
    """Many small blocks of svc with a batch of label vectors, on two threads that each
    reuse their decisions' array from block to block: the scores are those of arrays filled
    with NaN for every block, to the bit (fewer voxels than training samples, and, with 16
    samples, more: the Gram path)."""
    import fastsearchlight.estimators.svm as svm_module

    ds = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0, random_state=3)
    mask = np.asarray(ds.mask_img.dataobj) > 0
    X = masked_data(ds.func_img, mask)[:n_samples]
    hoods = build_neighbourhoods(mask, ds.func_img.affine, mask, ds.func_img.affine, 4.0)
    rng = np.random.default_rng(0)
    codes = np.arange(len(X)) % n_classes
    plan = make_cv_plan(KFold(4, shuffle=True, random_state=0), codes, None, classifier=True)
    labels = np.stack([codes] + [rng.permutation(codes) for _ in range(7)])
    est = batched_equivalent(resolve_estimator("svc", None))
    problem = lambda: Problem(X, hoods, plan, est, ("accuracy",), n_classes=n_classes, memory_mb=0.2)  # noqa: E731
    with Threads(2) as threads:
        reused = compute_scores(problem(), labels, threads)
    monkeypatch.setattr(
        svm_module, "work_array", lambda name, shape, dtype=np.float64: np.full(shape, np.nan, dtype)
    )
    fresh = compute_scores(problem(), labels)
    assert np.isfinite(fresh).all()
    np.testing.assert_array_equal(reused, fresh)

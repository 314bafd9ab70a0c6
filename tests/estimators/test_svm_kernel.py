"""The compiled Newton iterations against the numpy ones and a tightly solved LinearSVC."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sklearn.svm import LinearSVC

import fastsearchlight
from fastsearchlight.estimators._svm_kernel import CONVERGED, NEEDS_SVD, _rank_one, _rank_two, newton_problems
from fastsearchlight.estimators._svm_newton import newton, ridge_svd


def raw_scale_problems(n_problems, n, d, seed, scale=1000.0):
    """Raw-BOLD-like problems (values ~1000, a constant feature last): nearly separable
    when d approaches n / 2, where the active set changes by a few samples per step."""
    rng = np.random.default_rng(seed)
    X = scale + 60.0 * rng.standard_normal((n_problems, n, d))
    X[:, :, -1] = 1.0
    Y = np.where(rng.random((n_problems, n)) < 0.5, -1.0, 1.0)
    X[:, :, :-1] += 3.0 * Y[:, :, None] * rng.standard_normal((n_problems, 1, d - 1))
    W = np.ones((n_problems, n))
    W[:, -3:] = 0.0  # padding rows
    X[:, -3:] = 0.0
    return X, Y, W


def first_points(X, Y, W, C):
    d = X.shape[2]
    XW = X * W[:, :, None]
    H = np.eye(d) + 2.0 * C * np.swapaxes(XW, 1, 2) @ XW
    return np.linalg.solve(H, (2.0 * C * np.einsum("nk,nkd->nd", Y * W, X))[..., None])[..., 0]


@pytest.mark.parametrize("n, d", [(120, 12), (120, 50), (120, 61), (80, 70), (120, 115), (40, 60)])
def test_same_optimum_as_numpy_newton(n, d):
    C = 1.0
    X, Y, W = raw_scale_problems(12, n, d, seed=d)
    first = first_points(X, Y, W, C)
    w, status, iterations = newton_problems(X, Y, W, first, C, 500)
    assert np.all(status == CONVERGED)
    ref = np.zeros_like(first)
    assert newton(X, Y, W, ref, C, 500, first).all()
    scale = np.abs(ref).max(axis=1, keepdims=True)
    np.testing.assert_allclose(w, ref, rtol=0, atol=1e-6 * scale.max())
    # same active set at the optimum, so the same decisions' signs on every sample
    np.testing.assert_array_equal(
        np.einsum("nkd,nd->nk", X, w) * Y < 1.0, np.einsum("nkd,nd->nk", X, ref) * Y < 1.0
    )
    if d in (50, 61):  # near-separable: many steps, rank-one changes exercised
        assert iterations.max() > 5


def test_first_step_stops_at_the_newton_point_when_overshooting_would_empty_the_active_set():
    """With d ~ n on raw-scale data the first Newton point nearly interpolates the targets;
    the exact line search would go past it to where nearly every margin exceeds 1, and the
    active set would then grow back a few samples per step. The kernel stops at the
    Newton point instead, and reaches the same optimum in far fewer steps."""
    C = 1.0
    X, Y, W = raw_scale_problems(12, 120, 115, seed=5)
    first = first_points(X, Y, W, C)
    w, status, iterations = newton_problems(X, Y, W, first, C, 500)
    assert np.all(status == CONVERGED)
    ref = np.zeros_like(first)
    steps = np.zeros(len(X), dtype=np.int32)
    assert newton(X, Y, W, ref, C, 500, first, iterations=steps).all()
    np.testing.assert_allclose(w, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    assert iterations.mean() < 0.6 * steps.mean()


def objective(w, X, Y, C):
    hinge = np.maximum(0.0, 1.0 - Y * (X @ w))
    return 0.5 * w @ w + C * hinge @ hinge


@pytest.mark.parametrize("d", [10, 55])
def test_optimum_at_least_as_good_as_tight_linearsvc(d):
    """The gradient vanishes (to rounding), and liblinear's tightly solved primal reaches
    no lower objective; where it has converged, the weights are the same."""
    C = 1.0
    X, Y, W = raw_scale_problems(6, 110, d, seed=3)
    w, status, _ = newton_problems(X, Y, W, first_points(X, Y, W, C), C, 500)
    assert np.all(status == CONVERGED)
    same = 0
    for q in range(len(X)):
        rows = W[q] > 0
        Xq, Yq = X[q, rows], Y[q, rows]
        slack = np.maximum(0.0, 1.0 - Yq * (Xq @ w[q]))
        gradient = w[q] - 2.0 * C * Xq.T @ (Yq * slack)
        # rounding of the margins: products of the size of |X| |w|, times |X|
        rounding = 2.0 * C * np.abs(Xq).T @ (np.abs(Xq) @ np.abs(w[q]))
        assert np.all(np.abs(gradient) <= 1e-13 * rounding)
        # the constant last feature is liblinear's intercept feature (intercept_scaling=1)
        ref = LinearSVC(C=C, dual=False, tol=1e-12, max_iter=100000).fit(Xq[:, :-1], Yq)
        w_ref = np.append(ref.coef_[0], ref.intercept_[0])
        assert objective(w[q], Xq, Yq, C) <= objective(w_ref, Xq, Yq, C) * (1 + 1e-12)
        same += np.allclose(w[q], w_ref, rtol=0, atol=1e-6 * np.abs(w_ref).max())
    assert same >= len(X) - 1


def test_values_too_large_for_normal_equations_are_flagged():
    """Data of ~1e8 leave nothing of the identity in ``I + 2C X^T X``: once the active set
    changes, such problems are handed back (to be solved from the SVD)."""
    X, Y, W = raw_scale_problems(4, 60, 30, seed=1, scale=1e8)
    first = ridge_svd(X * W[:, :, None], (Y * W)[:, :, None], 1.0)[..., 0]
    _, status, _ = newton_problems(X, Y, W, first, 1.0, 50)
    assert np.all(status == NEEDS_SVD)


def test_compiles_and_caches_when_the_package_folder_cannot_be_written(tmp_path):
    """With the package's folder not writable, numba keeps its cache in the user's cache
    folder, and the kernel runs. Every kernel of the package is cached the same way
    (``cache=True``, numba's cache locators), so the smallest one is compiled here: the SVM
    kernel's compile alone took 20 s of the suite."""
    package = Path(fastsearchlight.__file__).parent
    copy = tmp_path / "site" / "fastsearchlight"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    # a file where the cache folder would go: no one, root included, can create it
    (copy / "estimators" / "__pycache__").write_text("")
    if os.geteuid() != 0:
        for path in sorted(copy.rglob("*"), reverse=True) + [copy]:
            path.chmod(0o555 if path.is_dir() else 0o444)
    home = tmp_path / "home"
    home.mkdir()
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import fastsearchlight.estimators._svm_gram_kernel as k
        assert k.__file__.startswith(sys.argv[1]), k.__file__
        vox = np.array([[0, 1, 2, 3], [1, 2, 3, 4], [7, 8, 9, 10]])
        follows = k.follows_previous(vox, vox[:0, 0])
        assert follows.tolist() == [False, True, False], follows
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=str(copy.parent))
    for _ in range(2):  # compile and write the cache, then load it
        out = subprocess.run(
            [sys.executable, "-c", script, str(copy)], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"
    assert list(home.rglob("*.nbi")), "no cache index in the user's cache folder"
    assert not list(copy.rglob("*.nbi"))


def test_the_block_kernel_is_compiled_for_one_layout_whatever_the_training_sets():
    """Each problem's training samples reach the compiled kernel in C order, with or without
    samples left out, so a process compiles (and the cache holds) the kernel once, not once
    per memory layout."""
    from sklearn.model_selection import KFold

    from fastsearchlight import SearchLight
    from fastsearchlight.estimators._svm_kernel import newton_block
    from fastsearchlight.estimators.svm import _padded_training_sets
    from fastsearchlight.simulate import simulate_haxby_like

    rng = np.random.default_rng(0)
    Y = np.where(rng.random((4, 30)) < 0.5, -1.0, 1.0)
    for W in (np.ones((4, 30)), (rng.random((4, 30)) < 0.7).astype(float)):
        index, Yq, Wq = _padded_training_sets(Y, W, 30)
        assert index.flags.c_contiguous and Yq.flags.c_contiguous and Wq.flags.c_contiguous
    ds = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0, random_state=3)
    SearchLight(mask_img=ds.mask_img, radius=4.0, estimator="svc", cv=KFold(3)).fit(
        ds.func_img, ds.labels["labels"].to_numpy()
    )
    assert len(newton_block.signatures) == 1, newton_block.signatures


@pytest.mark.parametrize("signs", [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)])
def test_two_changes_of_the_factor_in_one_pass_equal_two_rank_one_changes(signs):
    """Each row takes the first change, then the second: the same operations as two calls
    of ``_rank_one``, bit for bit; the factor is that of the changed matrix."""
    rng = np.random.default_rng(3)
    d = 23
    A = rng.standard_normal((60, d))
    H = np.eye(d) + A.T @ A
    x, x2 = A[4] * 0.7, A[9] * 0.5  # downdates keep H positive definite
    R = np.linalg.cholesky(H).T.copy()
    one = R.copy()
    work = np.empty(d)
    assert _rank_one(one, x.copy(), signs[0], work) and _rank_one(one, x2.copy(), signs[1], work)
    two = R.copy()
    assert _rank_two(two, x, signs[0], np.empty(d), x2, signs[1], np.empty(d))
    np.testing.assert_array_equal(np.triu(two), np.triu(one))
    changed = H + signs[0] * np.outer(x, x) + signs[1] * np.outer(x2, x2)
    np.testing.assert_allclose(np.triu(two).T @ np.triu(two), changed, rtol=0, atol=1e-10 * np.abs(H).max())


def test_two_changes_fail_when_the_second_leaves_no_positive_pivot():
    R = np.eye(3)
    x = np.array([0.0, 0.0, 0.5])
    assert not _rank_two(R.copy(), x, 1.0, np.empty(3), np.array([0.0, 2.0, 0.0]), -1.0, np.empty(3))
    assert _rank_two(R.copy(), x, 1.0, np.empty(3), np.array([0.0, 0.5, 0.0]), -1.0, np.empty(3))

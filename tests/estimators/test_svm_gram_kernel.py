"""The compiled Newton iterations on the Gram matrix (more features than training samples),
sphere by sphere against a tightly solved LinearSVC."""

import warnings

import numpy as np
import pytest
from sklearn.model_selection import LeaveOneGroupOut
from sklearn.svm import LinearSVC

from fastsearchlight.cv import make_cv_plan
from fastsearchlight.estimators._svm_gram_kernel import (
    _GAUSS_JORDAN_BELOW,
    _REDO,
    _START_MEMORY,
    EXPLORE_EVERY,
    FULL_JUMPS,
    GRAM_REFRESH,
    MAX_JUMPS,
    _certified,
    _check_predictions,
    _decisions_outside,
    _factor_every_sample,
    _inverse_every_sample,
    _inverse_from_factor,
    _lockstep_space,
    _residual,
    _schur_factor,
    _schur_factor_forward,
    _set_by_inverse,
    _solve_dual,
    _solve_ldl,
    _training_block,
    _training_runs,
    follows_previous,
    gram_newton_spheres,
    sample_grams,
    voxels_of,
)
from fastsearchlight.estimators._svm_kernel import CONVERGED, NEEDS_SVD
from fastsearchlight.estimators.base import binary_targets
from fastsearchlight.estimators.svm import BatchedLinearSVC


def run_betas(n_spheres, n_features, n_classes, seed, runs=8):
    """Run-wise betas: ``runs`` runs of one sample per class (standardised values)."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([rng.permutation(np.arange(n_classes)) for _ in range(runs)])
    groups = np.repeat(np.arange(runs), n_classes)
    X = rng.standard_normal((n_spheres, len(y), n_features))
    X += 0.7 * rng.standard_normal((n_spheres, n_classes, n_features))[:, y]
    return X, y, groups


def tight_svc(X, y, C=1.0):
    """liblinear's primal solver, tightly converged: (coef, intercept) per problem."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = LinearSVC(C=C, dual=False, tol=1e-10, max_iter=1_000_000).fit(X, y)
    return sk


def assert_optimum(w, b, X, y, n_classes, C=1.0, scaling=1.0):
    """Every one-vs-rest problem's objective gradient vanishes at ``(w, b)`` to rounding: a
    tighter check than liblinear's own (its gradient stops near 1e-8 on standardised data).
    Rounding bound: the margins' own rounding (``eps`` times the sum of ``|x_ij w_j|``) times
    the gradient's sum over samples, with a factor 64 for the sums' accumulation."""
    Xa = np.hstack([X, np.full((len(X), 1), scaling)])
    eps = np.finfo(np.float64).eps
    for wq, bq, yq in zip(w, b, binary_targets(y, n_classes)):
        v = np.r_[wq, bq / scaling]
        slack = np.maximum(0.0, 1.0 - yq * (Xa @ v))
        gradient = v - 2.0 * C * Xa.T @ (yq * slack)
        margin_rounding = eps * (1.0 + np.abs(Xa * v).sum(axis=1).max())
        bound = 64 * (eps * np.abs(v).max() + 2.0 * C * np.abs(Xa).sum(axis=0).max() * margin_rounding)
        assert np.abs(gradient).max() <= bound


def solve(G, rows, size, members, Y, C, inverse_members=10**9, warm=False, follows=None, path=False):
    """The kernel's coefficients and decisions (two calls), status and iterations; by
    default on the factor path, with ``inverse_members=1`` by the inverse first; with
    ``warm``, each sphere warm-started from the one before it (``follows``: whether each
    sphere is a neighbour of the one before; by default every one is); with ``path``, a
    path in ``C`` first where :func:`c_path` gives one."""
    alpha = np.full((len(G), len(Y), G.shape[1]), np.nan)
    decisions = np.full_like(alpha, np.nan)
    runs = []
    for out, want_decisions in ((alpha, False), (decisions, True)):
        guess = np.zeros((len(Y), rows.shape[1]), dtype=bool)
        has_guess = np.zeros(len(Y) if warm else 0, dtype=bool)
        neighbours = np.ones(len(G), dtype=bool) if follows is None else follows
        args = (G, rows, size, members, Y, C, 200, out, want_decisions, inverse_members)
        exact = (np.zeros((0, len(Y))), 1, np.zeros(0, bool))  # no bounds: solved to rounding
        path_warm = (np.zeros((len(Y), rows.shape[1]), dtype=bool), np.zeros(len(Y), dtype=bool))
        runs.append(
            gram_newton_spheres(
                *args, guess, has_guess, np.zeros(5), np.full(len(G), path), *path_warm, neighbours, *exact
            )
        )
    (status, iterations), (status2, iterations2) = runs
    assert np.array_equal(status, status2) and np.array_equal(iterations, iterations2)
    return alpha, decisions, status, iterations


def kernel_inputs(X, y, n_classes, train, scaling=1.0):
    """Gram matrices and the arguments of :func:`gram_newton_spheres` for one training set."""
    Y = binary_targets(y, n_classes)
    G = X @ np.swapaxes(X, 1, 2) + scaling**2
    rows = np.flatnonzero(train)[None, :]
    return G, rows, np.array([rows.shape[1]]), np.arange(len(Y))[None, :], Y


@pytest.mark.parametrize("inverse_members", [1, 10**9])
def test_a_problem_alone_on_its_training_set_starts_from_the_last_optimum_even_of_a_distant_sphere(
    inverse_members,
):
    """On the factor path (one problem per training set) a problem starts from its active
    set at the last sphere's optimum whether or not that sphere is a neighbour: a sphere
    solved again after a distant one (``follows`` False) starts from the distant sphere's
    set, and the same sphere solved twice in a row takes one Newton point the second time
    even without ``follows``. The inverse path (several problems per set) starts cold after
    a distant sphere, as before. Either way each sphere ends at its own optimum."""
    X, y, groups = run_betas(3, 60, 2, seed=21)
    train = groups != 0
    G, rows, size, members, Y = kernel_inputs(X, y, 2, train)
    G = G[[0, 0, 1]]  # the same sphere twice, then another
    Y = np.vstack([Y, -Y]) if inverse_members == 1 else Y  # two problems on the set
    members = np.arange(len(Y))[None, :]
    apart = np.zeros(len(G), dtype=bool)  # no sphere a neighbour of the one before
    out, _, status, iterations = solve(G, rows, size, members, Y, 1.0, inverse_members, True, apart)
    assert np.all(status == CONVERGED)
    cold = solve(G, rows, size, members, Y, 1.0, inverse_members)
    np.testing.assert_allclose(out, cold[0], rtol=0, atol=1e-9 * np.abs(cold[0]).max())
    if inverse_members == 1:  # cold again after a sphere that is not a neighbour
        np.testing.assert_array_equal(iterations, cold[3])
    else:
        assert iterations[0, 0] > 1 and iterations[1, 0] == 1
        assert iterations[2, 0] != cold[3][2, 0]  # started from sphere 1's set, not cold


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("C", [1.0, 0.01])
@pytest.mark.parametrize("inverse_members", [1, 10**9])
@pytest.mark.parametrize("warm", [False, True])
def test_kernel_matches_tightly_solved_linearsvc_sphere_by_sphere(n_classes, C, inverse_members, warm):
    """Cold, and warm-started from the sphere before (unrelated random spheres here: poor
    guesses, which must still end at each sphere's own optimum)."""
    X, y, groups = run_betas(5, 60, n_classes, seed=n_classes)
    train = groups != 0
    G, rows, size, members, Y = kernel_inputs(X, y, n_classes, train)
    alpha, decisions, status, iterations = solve(G, rows, size, members, Y, C, inverse_members, warm)
    assert np.all(status == CONVERGED)
    assert np.all(alpha[:, :, ~train] == 0.0)
    for s in range(len(X)):
        sk = tight_svc(X[s][train], y[train], C)
        w = alpha[s] @ X[s]
        b = alpha[s].sum(axis=1)  # intercept_scaling 1
        assert_optimum(w, b, X[s][train], y[train], n_classes, C)
        np.testing.assert_allclose(w, sk.coef_, rtol=0, atol=1e-6 * np.abs(sk.coef_).max())
        np.testing.assert_allclose(b, sk.intercept_, rtol=0, atol=1e-6 * np.abs(sk.coef_).max())
        # decisions on every sample from the Gram matrix alone
        np.testing.assert_allclose(decisions[s], (X[s] @ w.T + b).T, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_fold_decisions_match_tightly_solved_linearsvc_with_several_label_vectors(n_classes):
    X, y, groups = run_betas(4, 90, n_classes, seed=10 + n_classes)
    plan = make_cv_plan(LeaveOneGroupOut(), y, groups)
    rng = np.random.default_rng(0)
    ys = np.stack([y] + [np.concatenate([rng.permutation(r) for r in y.reshape(8, -1)]) for _ in range(3)])
    svc = BatchedLinearSVC()
    ours = svc.many_fold_decisions(X, ys, n_classes, plan)
    assert np.all(svc.n_iter_ > 0)
    for labels, folds in zip(ys, ours):
        for f, (tr, te) in enumerate(zip(plan.train_indices, plan.test_indices)):
            ref = np.stack(
                [tight_svc(X[s][tr], labels[tr]).decision_function(X[s][te]) for s in range(len(X))]
            )
            assert folds[f].shape == ref.shape
            np.testing.assert_allclose(folds[f], ref, rtol=0, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("inverse_members", [1, 10**9])
def test_repeated_and_constant_samples_are_solved_by_the_kernel(n_classes, inverse_members):
    """A repeated training sample and a constant one (zero after the constant feature)
    make the training rows' Gram matrix singular; ``I / 2C + K_AA`` is not, so the kernel
    itself reaches the optimum."""
    X, y, groups = run_betas(3, 50, n_classes, seed=7)
    train = groups != 0
    X[:, 5] = X[:, 9]  # repeated
    X[:, 13] = 0.0  # constant: the Gram row is the intercept's alone
    X[:, 14] = 0.0
    G, rows, size, members, Y = kernel_inputs(X, y, n_classes, train)
    K = G[0][np.ix_(rows[0], rows[0])]
    assert np.linalg.eigvalsh(K)[0] < 1e-10 * np.linalg.eigvalsh(K)[-1]  # singular
    alpha, _, status, _ = solve(G, rows, size, members, Y, 1.0, inverse_members, warm=True)
    assert np.all(status == CONVERGED)
    for s in range(len(X)):
        sk = tight_svc(X[s][train], y[train])
        w, b = alpha[s] @ X[s], alpha[s].sum(axis=1)
        assert_optimum(w, b, X[s][train], y[train], n_classes)
        np.testing.assert_allclose(w, sk.coef_, rtol=0, atol=1e-6 * np.abs(sk.coef_).max())
        np.testing.assert_allclose(b, sk.intercept_, rtol=0, atol=1e-6 * np.abs(sk.coef_).max())


def test_values_too_large_for_the_regulariser_are_left_to_the_caller():
    X, y, groups = run_betas(2, 40, 2, seed=3)
    X *= 1e8
    G, rows, size, members, Y = kernel_inputs(X, y, 2, groups != 0)
    _, _, status, _ = solve(G, rows, size, members, Y, 1.0)
    assert np.all(status == NEEDS_SVD)
    # and the estimator solves them (numpy Newton, from the singular value decomposition)
    plan = make_cv_plan(LeaveOneGroupOut(), y, groups)
    for decisions in BatchedLinearSVC().fold_decisions(X, y, 2, plan):
        assert np.all(np.isfinite(decisions))


def test_weights_and_decisions_agree_with_unequal_training_sets():
    """Training sets of different sizes (runs of different lengths): the weights of
    ``fit_weights`` and the decisions of ``many_fold_decisions`` are one optimum."""
    rng = np.random.default_rng(4)
    y = np.tile([0, 1, 2], 11)[:32]
    groups = np.repeat(np.arange(5), [4, 8, 6, 7, 7])
    X = rng.standard_normal((3, 32, 70))
    plan = make_cv_plan(LeaveOneGroupOut(), y, groups)
    svc = BatchedLinearSVC(intercept_scaling=2.0)
    ours = svc.fold_decisions(X, y, 3, plan)
    for f, (tr, te) in enumerate(zip(plan.train_indices, plan.test_indices)):
        Yf = binary_targets(y, 3)
        W = np.zeros_like(Yf)
        W[:, tr] = 1.0
        w = svc.fit_weights(X, Yf, W)
        for s in range(len(X)):
            assert_optimum(w[s, :, :-1], 2.0 * w[s, :, -1], X[s][tr], y[tr], 3, scaling=2.0)
        np.testing.assert_allclose(ours[f], np.einsum("bjd,bqd->bjq", X[:, te], w[:, :, :-1]) + 2.0 * w[:, None, :, -1],
                                   rtol=1e-10, atol=1e-10)  # fmt: skip
        for s in range(len(X)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sk = LinearSVC(dual=False, tol=1e-10, max_iter=1_000_000, intercept_scaling=2.0).fit(
                    X[s][tr], y[tr]
                )
            ref = sk.decision_function(X[s][te])
            np.testing.assert_allclose(ours[f][s], ref, rtol=0, atol=1e-6 * np.abs(ref).max())


@pytest.mark.parametrize("n_classes", [2, 4])
def test_inverse_and_factor_paths_reach_the_same_optimum_on_raw_scale(n_classes):
    """Raw-scale values (~1000 +- 30): ``I / 2C + K`` is ill-conditioned, the inverse's
    Newton points are not exact to rounding, and its problems fall back to the factor
    path where the refinement is not small; both paths end at the optimum."""
    X, y, groups = run_betas(4, 60, n_classes, seed=20 + n_classes)
    X = 1000.0 + 30.0 * X
    train = groups != 0
    G, rows, size, members, Y = kernel_inputs(X, y, n_classes, train)
    by_inverse = solve(G, rows, size, members, Y, 1.0, 1)
    by_factor = solve(G, rows, size, members, Y, 1.0)
    assert np.all(by_inverse[2] == CONVERGED) and np.all(by_factor[2] == CONVERGED)
    scale = np.abs(by_factor[1]).max()
    np.testing.assert_allclose(by_inverse[1], by_factor[1], rtol=0, atol=1e-9 * scale)
    # (liblinear stops short of this optimum on raw-scale values: the optimality
    # conditions are checked instead)
    for alpha in (by_inverse[0], by_factor[0]):
        for s in range(len(X)):
            assert_optimum(alpha[s] @ X[s], alpha[s].sum(axis=1), X[s][train], y[train], n_classes)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_active_set_jumps_reach_the_factor_paths_optimum_on_permuted_labels(n_classes):
    """A permutation test's problems (many label vectors per training set) by the inverse
    path's active-set jumps and by the factor path's damped iterations: the same optimum,
    every problem converged."""
    X, y, groups = run_betas(6, 80, n_classes, seed=30 + n_classes)
    rng = np.random.default_rng(1)
    ys = np.stack([y] + [np.concatenate([rng.permutation(r) for r in y.reshape(8, -1)]) for _ in range(24)])
    train = groups != 0
    Y = np.concatenate([binary_targets(labels, n_classes) for labels in ys])
    G = X @ np.swapaxes(X, 1, 2) + 1.0
    rows = np.flatnonzero(train)[None, :]
    size, members = np.array([rows.shape[1]]), np.arange(len(Y))[None, :]
    by_jumps = solve(G, rows, size, members, Y, 1.0, 16)
    by_factor = solve(G, rows, size, members, Y, 1.0)
    assert np.all(by_jumps[2] == CONVERGED) and np.all(by_factor[2] == CONVERGED)
    scale = np.abs(by_factor[1]).max()
    np.testing.assert_allclose(by_jumps[1], by_factor[1], rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(by_jumps[0], by_factor[0], rtol=0, atol=1e-10 * np.abs(by_factor[0]).max())


def solve_dual(K, y, jumps, guess=None, have_U0=True, C=1.0):
    """One problem by :func:`_solve_dual` (the factor path): status, Newton points and
    coefficients. Without ``have_U0`` the all-sample factor is NaN, so using it shows."""
    k = len(y)
    U0, inv0 = np.full((k, k), np.nan), np.full(k, np.nan)
    if have_U0:
        assert _factor_every_sample(K, k, 0.5 / C, U0, inv0)
    a, p, s, u, m, delta, rhs, z, inv = (np.zeros(k) for _ in range(9))
    act, pact, idx, U = np.zeros(k, bool), np.zeros(k, bool), np.zeros(k, np.int64), np.zeros((k, k + 1))
    guess = np.zeros(0, bool) if guess is None else guess
    status, points = _solve_dual(
        K, k, y, C, U0, inv0, 500, a, p, s, u, m, delta, act, pact, idx, U, inv, rhs, z, guess, jumps, have_U0
    )  # fmt: skip
    return status, points, a


@pytest.mark.parametrize("k", [1, 2, 5, 7, 23, 24, 40])
def test_schur_factors_are_the_ldl_factor_and_solve(k):
    """``M = L D L^T`` with ``L`` unit lower triangular, by ``_schur_factor`` (LAPACK's
    Cholesky factor rescaled; only the lower triangle of ``M`` read, the upper one NaN
    here) and by ``_schur_factor_forward`` (a loop on ``S_RR`` read in place through the
    indices ``R``, with ``L^-1 z_R``); ``_solve_ldl`` solves with either (in place too). A
    matrix that is not positive definite is refused by both."""
    rng = np.random.default_rng(k)
    B = rng.standard_normal((k, k + 3))
    M = B @ B.T + 0.1 * np.eye(k)
    Mlow = np.tril(M) + np.triu(np.full((k, k), np.nan), 1)
    # M as the block S_RR of a larger S, at scattered indices R
    n = k + 5
    R = np.sort(rng.choice(n, k, replace=False))
    S = np.full((n, n), np.nan)
    S[np.ix_(R, R)] = M
    z = np.full(n, np.nan)
    z[R] = rng.standard_normal(k)
    b = rng.standard_normal(k)
    exact = np.linalg.solve(M, b)
    for by_lapack in (True, False):
        L, dinv = np.full((k + 2, k + 2), np.nan), np.full(k + 2, np.nan)
        L[:k, :k] = 0.0  # the factor's upper triangle is not written
        if by_lapack:
            assert _schur_factor(Mlow, k, L, dinv)
        else:
            f = np.full(k + 2, np.nan)
            assert _schur_factor_forward(S, R, k, L, dinv, z, f)
        Lk = np.tril(L[:k, :k])
        np.testing.assert_array_equal(np.diag(Lk), 1.0)
        np.testing.assert_allclose(
            Lk @ np.diag(1.0 / dinv[:k]) @ Lk.T, M, rtol=0, atol=1e-12 * np.abs(M).max()
        )
        if not by_lapack:
            np.testing.assert_allclose(Lk @ f[:k], z[R], rtol=0, atol=1e-12 * np.abs(z[R]).max())
        out = np.zeros(k)
        _solve_ldl(L, dinv, k, b, out)
        np.testing.assert_allclose(out, exact, rtol=1e-9, atol=0)
        inplace = b.copy()
        _solve_ldl(L, dinv, k, inplace, inplace)
        np.testing.assert_array_equal(inplace, out)
    if k > 1:
        indefinite = M.copy()
        indefinite[k - 1, k - 1] = -1.0
        assert not _schur_factor(indefinite, k, np.zeros((k, k)), np.zeros(k))
        S[R[-1], R[-1]] = -1.0
        assert not _schur_factor_forward(S, R, k, np.zeros((k, k)), np.zeros(k), z, np.zeros(k))


@pytest.mark.parametrize("scale", [1.0, 1000.0])
@pytest.mark.parametrize("k", [1, 2, 7, 28, _GAUSS_JORDAN_BELOW - 1])
def test_gauss_jordan_inverse_of_every_sample(k, scale):
    """``_inverse_every_sample`` leaves the inverse of ``I / 2C + K`` (both triangles) in
    the leading block of a larger work array, as LAPACK's inverse from the factor does,
    also on raw-scale samples (``cond`` about 1e9 at ``scale = 1000``); a matrix that is
    not positive definite is refused."""
    rng = np.random.default_rng(k)
    X = scale * (1.0 + 0.03 * rng.standard_normal((k, 110)))
    K = X @ X.T + 1.0
    C = 1.0
    M = np.eye(k) / (2 * C) + K
    S = np.full((k + 3, k + 3), np.nan)
    assert _inverse_every_sample(K, k, 0.5 / C, S, np.full(k + 3, np.nan))
    exact = np.linalg.inv(M)
    assert np.isnan(S[k:]).all() and np.isnan(S[:, k:]).all()
    np.testing.assert_allclose(S[:k, :k], S[:k, :k].T, rtol=0, atol=1e-12 * np.abs(exact).max())
    # within the rounding of any inverse: |S - M^-1| <= k eps cond(M) |M^-1|
    bound = 10 * k * np.finfo(float).eps * np.linalg.cond(M) * np.abs(exact).max()
    np.testing.assert_allclose(S[:k, :k], exact, rtol=0, atol=bound)
    np.testing.assert_allclose(S[:k, :k] @ M, np.eye(k), rtol=0, atol=bound * np.abs(M).max())
    if k > 1:
        indefinite = K.copy()
        indefinite[k - 1, k - 1] = -np.abs(K).max()
        assert not _inverse_every_sample(indefinite, k, 0.5 / C, np.zeros((k, k)), np.zeros(k))


def nearly_separable_sets(n_sets=12, n=60, d=52, seed=0):
    """Raw-scale samples (~1000 +- 30) with nearly as many features as samples, as W1 at
    12 mm: ``(X, labels, K)`` per training set, the constant feature in ``K``."""
    rng = np.random.default_rng(seed)
    for _ in range(n_sets):
        labels = rng.integers(0, 2, n)
        X = (
            1000.0
            + 30.0 * rng.standard_normal((n, d))
            + 3.0 * (2 * labels - 1)[:, None] * rng.standard_normal(d)
        )
        yield X, labels, X @ X.T + 1.0


def test_jumps_then_damped_steps_reach_the_optimum_in_fewer_newton_points():
    """With 0, 1, 3, :data:`FULL_JUMPS` and unlimited jumps before the damped steps, every
    problem ends at the optimum: its active set is that of the Newton point solved in
    extended precision (whose margins give it back), and its decisions are that point's to
    1e-10 (both ways about 4e-12 here; this data is too ill-conditioned for
    :func:`assert_optimum`'s rounding bound, which the damped steps alone also exceed on
    some problems). The jumps take fewer Newton points in all (here 133 -> 81 over 12
    problems)."""
    points = {}
    for _, labels, K in nearly_separable_sets():
        y = binary_targets(labels, 2)[0]
        for jumps in (0, 1, 3, FULL_JUMPS, 10**6):
            status, its, a = solve_dual(K, y, jumps)
            assert status == CONVERGED
            points[jumps] = points.get(jumps, 0) + its
            active = a != 0.0  # (0 outside the active set; y_i a_i > 0 on it)
            exact = K.astype(np.longdouble) @ newton_point_extended(K, y, active)
            assert np.array_equal(y * exact < 1.0, active)
            np.testing.assert_allclose(
                K @ a, exact.astype(np.float64), rtol=0, atol=1e-10 * np.abs(exact).max()
            )
    assert points[FULL_JUMPS] < 0.8 * points[0]
    assert points[1] == points[0]  # the first jump is the damped method's first step


def test_the_all_sample_factor_is_computed_only_when_a_cold_start_needs_it():
    """Without the factor of ``I / 2C + K``, a cold start computes it (the same result, bit
    for bit) and a warm start never reads it (NaN there)."""
    for X, labels, K in nearly_separable_sets(n_sets=4, seed=1):
        y = binary_targets(labels, 2)[0]
        given = solve_dual(K, y, FULL_JUMPS)
        lazy = solve_dual(K, y, FULL_JUMPS, have_U0=False)
        assert given[:2] == lazy[:2] and np.array_equal(given[2], lazy[2])
        optimum_set = y * (K @ given[2]) < 1.0
        status, its, a = solve_dual(K, y, FULL_JUMPS, guess=optimum_set, have_U0=False)
        assert status == CONVERGED and its == 1
        np.testing.assert_allclose(K @ a, K @ given[2], rtol=0, atol=1e-9 * np.abs(K @ given[2]).max())


def by_inverse(K, S, Y, rows, max_jumps=MAX_JUMPS, members=None, starts=None, warm=None, tolerant=False):
    """:func:`_set_by_inverse` on the problems ``members`` (rows of ``Y``; all by default) of
    one training set: ``(jumped, coefficients, margins, active sets, points, radii)``, one row
    per problem; ``points``: where the jumps ended, before any refinement; ``radii``: with
    ``tolerant``, the bound on an unrefined point's distance to the exact one (0 if
    refined)."""
    k = len(rows)
    members = np.arange(len(Y)) if members is None else np.asarray(members)
    M = len(members)
    starts = np.zeros((M, k), bool) if starts is None else starts
    warm = np.zeros(M, bool) if warm is None else warm
    arrays = _lockstep_space(M, k)
    jumped = np.zeros((M, 3), np.int64)
    work = (np.zeros((9, k)), np.zeros((k, k)), np.zeros((k, k)), np.zeros(k), np.zeros(k, np.int64))
    _set_by_inverse(K, k, 1.0, S, members, Y, rows, starts, warm, max_jumps, arrays, jumped, work, tolerant)
    return jumped, arrays[5].copy(), arrays[6].copy(), arrays[7].copy(), arrays[2].copy(), arrays[11].copy()


def test_active_set_jumps_give_up_after_their_cap():
    """A problem whose first active set is not the optimum's: with one jump allowed it is
    left to the factor path (``_REDO``); with the default cap it converges, to the factor
    path's optimum."""
    X, y, groups = run_betas(1, 60, 4, seed=40)
    train = groups != 0
    G, rows, size, members, Y = kernel_inputs(X, y, 4, train)
    k = rows.shape[1]
    K = np.ascontiguousarray(G[0][np.ix_(rows[0], rows[0])])
    S = np.linalg.inv(K + 0.5 * np.eye(k))
    reference = solve(G, rows, size, members, Y, 1.0)
    outcomes = []
    for cap in (1, MAX_JUMPS):
        jumped, A = by_inverse(K, S, Y, rows[0], cap)[:2]
        for q in range(len(Y)):
            status, sets = jumped[q, 0], jumped[q, 1]
            outcomes.append((q, cap, status, sets))
            if status == CONVERGED:
                np.testing.assert_allclose(
                    A[q], reference[0][0, q, rows[0]], rtol=0, atol=1e-10 * np.abs(A[q]).max()
                )
    assert all(status == CONVERGED for _, cap, status, _ in outcomes if cap == MAX_JUMPS)
    redone = [(q, sets) for q, cap, status, sets in outcomes if cap == 1 and status == _REDO]
    assert redone, "every first active set was the optimum's: the cap was not exercised"
    assert all(sets == 2 for _, sets in redone)  # p1, then the first set's point


def permuted_training_set(scale=1.0, offset=0.0):
    """One training set of run-wise betas (28 samples, 160 features) and 8 label vectors
    (the true one and 7 permutations: 32 one-vs-rest problems), the samples ``scale * (x +
    offset)``: ``(K, S, Y, rows)``, with ``S`` the inverse of ``I / 2 + K`` (C = 1)."""
    X, y, _ = run_betas(1, 160, 4, seed=11)
    X = scale * (X + offset)
    rng = np.random.default_rng(5)
    Y = np.vstack([binary_targets(yk, 4) for yk in [y] + [rng.permutation(y) for _ in range(7)]])
    rows = np.arange(28)
    K = np.ascontiguousarray(X[0][rows] @ X[0][rows].T + 1.0)
    S = np.linalg.inv(K + 0.5 * np.eye(len(rows)))
    return K, np.ascontiguousarray((S + S.T) / 2), Y, rows


@pytest.mark.parametrize("scale", [1.0, 300.0])  # standardised and raw-scale samples
def test_problems_of_a_training_set_in_lockstep_match_them_one_by_one(scale):
    """:func:`_set_by_inverse` on 32 problems at once (matrix products over them) ends each
    problem where it does alone: same status, Newton points, active set, and coefficients
    and margins to rounding; warm starts included. (Every problem here is refined once: its
    residual is above 1e-13 of it, at the rounding level of K p.)"""
    # an offset: K's entries large against its smallest eigenvalue
    K, S, Y, rows = permuted_training_set(scale, offset=3.0)
    k, M = len(rows), len(Y)
    starts = np.zeros((M, k), bool)
    warm = np.zeros(M, bool)
    warm[::3] = True
    starts[warm] = Y[warm][:, rows] * (S @ Y[warm][:, rows].T).T > 0.5  # some guesses
    jumped, A, Mg, Act = by_inverse(K, S, Y, rows, starts=starts, warm=warm)[:4]
    for q in range(M):
        one = by_inverse(K, S, Y, rows, members=[q], starts=starts[q : q + 1], warm=warm[q : q + 1])
        np.testing.assert_array_equal(jumped[q], one[0][0])
        if jumped[q, 0] == CONVERGED:
            np.testing.assert_array_equal(Act[q], one[3][0])
            np.testing.assert_allclose(A[q], one[1][0], rtol=0, atol=1e-12 * np.abs(A[q]).max())
            np.testing.assert_allclose(Mg[q], one[2][0], rtol=0, atol=1e-12 * np.abs(Mg[q]).max())
    assert np.any(jumped[:, 0] == CONVERGED)


@pytest.mark.parametrize("k_max", [12, 40])  # the loop and LAPACK factorisations
def test_upper_factor_updates_stay_the_factor_of_the_active_sets_matrix(k_max):
    """Appends and removals (first, middle, last position) of samples keep ``U`` the upper
    factor of ``I / 2C + K_AA`` for the active set ``A = idx[:na]``, and its solves equal
    numpy's, as a fresh factor's do; ``zy``, computed with the first factor as its extra
    column, stays ``U^-T y_A``."""
    from fastsearchlight.estimators._svm_gram_kernel import _append, _cholesky_upper, _remove
    from fastsearchlight.estimators._triangular import solve_upper

    rng = np.random.default_rng(3)
    X = rng.standard_normal((k_max, k_max + 5))
    K = X @ X.T
    y = rng.choice([-1.0, 1.0], k_max)
    half = 0.5 / 0.7
    U = np.full((k_max, k_max + 1), np.nan)
    inv = np.empty(k_max)
    idx = np.arange(k_max, dtype=np.int64)
    work = np.empty(k_max)
    zy = np.full(k_max, np.nan)
    na = k_max // 2
    U[:na, :na] = np.triu(K[:na, :na] + half * np.eye(na))
    U[:na, na] = y[:na]
    assert _cholesky_upper(U, na, na + 1, inv)
    zy[:na] = U[:na, na]

    def check(na):
        A = idx[:na]
        F = np.triu(U[:na, :na])
        M = K[np.ix_(A, A)] + half * np.eye(na)
        np.testing.assert_allclose(F.T @ F, M, rtol=1e-12, atol=1e-12 * np.abs(M).max())
        np.testing.assert_allclose(inv[:na], 1.0 / np.diag(F), rtol=1e-14)
        np.testing.assert_allclose(F.T @ zy[:na], y[A], rtol=0, atol=1e-12)
        b = rng.standard_normal(na)
        out = np.empty(k_max)
        solve_upper(U, inv, na, b, out)
        np.testing.assert_allclose(out[:na], np.linalg.solve(M, b), rtol=1e-10)

    check(na)
    for pos in (0, na // 2, na - 1):
        _remove(idx, na, pos, U, inv, work, zy)
        na -= 1
        check(na)
    absent = np.setdiff1d(np.arange(k_max), idx[:na])
    for j in absent[::-1]:
        assert _append(K, half, idx, na, j, U, inv, work, zy, y[j])
        na += 1
        check(na)
    assert sorted(idx[:na]) == list(range(k_max))


@pytest.mark.parametrize("k", [3, 12, 23, 24, 30, 40, 43])  # the loop and the tiles
@pytest.mark.parametrize("extra", [1, 5])
def test_upper_factor_carries_right_hand_sides(k, extra):
    """``_cholesky_upper`` with ``extra`` columns right of the matrix: the factor is the same
    to rounding, and those columns end as ``U^-T`` times what they held."""
    from fastsearchlight.estimators._svm_gram_kernel import _cholesky_upper

    rng = np.random.default_rng(k + 100 * extra)
    X = rng.standard_normal((k, k + 4))
    M = X @ X.T + 0.5 * np.eye(k)
    B = rng.standard_normal((k, extra))
    U = np.full((k, k + extra + 2), np.nan)
    U[:, :k] = np.triu(M)
    U[:, k : k + extra] = B
    inv = np.empty(k)
    assert _cholesky_upper(U, k, k + extra, inv)
    F = np.triu(U[:, :k])
    np.testing.assert_allclose(F, np.linalg.cholesky(M).T, rtol=0, atol=1e-12 * np.abs(F).max())
    np.testing.assert_allclose(F.T @ U[:, k : k + extra], B, rtol=0, atol=1e-12 * np.abs(B).max())
    assert np.all(np.isnan(U[:, k + extra :]))  # nothing written beyond


def test_upper_factor_reports_indefinite_matrices():
    from fastsearchlight.estimators._svm_gram_kernel import _cholesky_upper

    for k in (5, 30):
        U = np.eye(k)
        U[2, 2] = -1.0
        assert not _cholesky_upper(U, k, k, np.empty(k))


@pytest.mark.parametrize("inverse_members", [1, 10**9])
def test_warm_starts_from_neighbouring_spheres_reach_the_same_optimum_in_fewer_steps(inverse_members):
    """Spheres that differ a little (as neighbours do): each warm-started from the one
    before it ends at the cold start's optimum, and many problems stop at their first
    point (the neighbour's active set was the optimum's)."""
    X, y, groups = run_betas(1, 60, 4, seed=21)
    rng = np.random.default_rng(5)
    X = X[0] + 0.02 * np.cumsum(rng.standard_normal((12,) + X.shape[1:]), axis=0)
    train = groups != 0
    G, rows, size, members, Y = kernel_inputs(X, y, 4, train)
    cold = solve(G, rows, size, members, Y, 1.0, inverse_members)
    warm = solve(G, rows, size, members, Y, 1.0, inverse_members, warm=True)
    assert np.all(cold[2] == CONVERGED) and np.all(warm[2] == CONVERGED)
    scale = np.abs(cold[1]).max()
    np.testing.assert_allclose(warm[0], cold[0], rtol=0, atol=1e-10 * np.abs(cold[0]).max())
    np.testing.assert_allclose(warm[1], cold[1], rtol=0, atol=1e-10 * scale)
    assert np.array_equal(warm[2], cold[2])
    # the first sphere has no neighbour before it: as cold
    assert np.array_equal(warm[3][0], cold[3][0])
    assert warm[3][1:].sum() < cold[3][1:].sum()
    assert np.mean(warm[3][1:] == 1) > 0.3 and np.all(cold[3] > 1)


@pytest.mark.parametrize("warm_first", [True, False])
def test_inverse_path_starts_from_the_start_that_took_fewer_jumps(warm_first):
    """The inverse path starts its problems from their neighbour's active set when those
    starts have taken fewer jumps on average than ``S y``'s set, else from ``S y``'s, and
    every ``EXPLORE_EVERY``-th problem the other way. Given its optimum's own set a warm
    problem stops at its first point; a cold one takes its cold steps. The jumps taken
    (a cold start's ``S y`` not counted) are added to the decayed sums."""
    X, y, groups = run_betas(1, 60, 4, seed=21)
    train = groups != 0
    G, rows, size, members, Y = kernel_inputs(X, y, 4, train)
    Y = np.vstack([Y] * 8)  # 32 problems on one training set
    members = np.arange(len(Y))[None, :]

    def run(guess, has_guess, start_jumps):
        out = np.full((1, len(Y), G.shape[1]), np.nan)
        args = (G, rows, size, members, Y, 1.0, 200, out, False, 1, guess, has_guess, start_jumps)
        status, its = gram_newton_spheres(
            *args,
            np.zeros(1, bool),
            np.zeros((len(Y), rows.shape[1]), bool),
            np.zeros(len(Y), bool),
            np.ones(1, bool),
            np.zeros((0, len(Y))),
            1,
            np.zeros(0, bool),
        )
        return out[0], status[0], its[0]

    no_guess = np.zeros((len(Y), rows.shape[1]), bool)
    alpha, status, cold_its = run(no_guess, np.zeros(0, bool), np.zeros(5))
    assert np.all(status == CONVERGED) and np.all(cold_its > 1)
    optimum_sets = alpha[:, rows[0]] != 0.0
    assert optimum_sets.any(axis=1).all() and not optimum_sets.all()
    # averages: 3 jumps against 1, or 1 against 3
    start_jumps = (
        np.array([10.0, 10.0, 30.0, 10.0, 0.0]) if warm_first else np.array([30.0, 10.0, 10.0, 10.0, 0.0])
    )
    before = start_jumps.copy()
    warm_alpha, status, its = run(optimum_sets.copy(), np.ones(len(Y), bool), start_jumps)
    assert np.all(status == CONVERGED)
    explored = np.arange(len(Y)) % EXPLORE_EVERY == EXPLORE_EVERY - 1
    assert explored.any()
    took_warm = explored != warm_first
    np.testing.assert_array_equal(its[took_warm], 1)
    np.testing.assert_array_equal(its[~took_warm], cold_its[~took_warm])
    np.testing.assert_allclose(warm_alpha, alpha, rtol=0, atol=1e-12 * np.abs(alpha).max())
    decayed = _START_MEMORY * before[:4]
    expected = decayed + [
        took_warm.sum(),
        took_warm.sum(),
        (cold_its[~took_warm] - 1).sum(),
        (~took_warm).sum(),
    ]
    np.testing.assert_allclose(start_jumps[:4], expected, rtol=1e-12)
    assert start_jumps[4] == len(Y)


def test_follows_previous_counts_shared_voxels():

    vox = np.array([[0, 1, 2, 3], [2, 3, 4, 5], [3, 4, 5, 9], [10, 11, 12, 13], [11, 14, 15, 16]])
    assert follows_previous(vox, vox[0, :0]).tolist() == [False, True, True, False, False]
    assert follows_previous(vox[1:], vox[0]).tolist() == [True, True, False, False]


@pytest.mark.parametrize("scale, refined", [(1.0, True), (0.1, False)])
def test_a_point_whose_margins_do_not_give_its_set_back_goes_to_the_factor_path(scale, refined):
    """The inverse path's jumps decide the active sets from the block inverse's identities;
    the point they end at is accepted only when its margins computed from ``K`` give its set
    back. Here ``K``'s entries between each problem's optimal active set ``A`` and the other
    samples ``R`` are set to 0: the residual on ``A`` and the jumps (which read ``S`` only)
    are unchanged, but every margin on ``R`` drops to 0, below 1, so the point must not be
    accepted (``_REDO``). At scale 1 the points are refined before that check, at 0.1
    accepted at once (their residuals below 1e-13 of them)."""
    K, S, Y, rows = permuted_training_set(scale)
    jumped, _, _, Act = by_inverse(K, S, Y, rows)[:4]
    checked = 0
    for q in np.flatnonzero(jumped[:, 0] == CONVERGED):
        A, R = np.flatnonzero(Act[q]), np.flatnonzero(~Act[q])
        if not len(R):
            continue
        cut = K.copy()
        cut[np.ix_(A, R)] = 0.0
        cut[np.ix_(R, A)] = 0.0
        again, coefficients, _, _, points, _ = by_inverse(K, S, Y, rows, members=[q])
        assert again[0, 0] == CONVERGED
        assert (not np.array_equal(coefficients[0], points[0])) == refined
        assert by_inverse(cut, S, Y, rows, members=[q])[0][0, 0] == _REDO
        checked += 1
    assert checked >= 16


def newton_point_extended(K, y, act, C=1.0):
    """The Newton point of the active set ``act`` (``(I / 2C + K_AA)^-1 y_A``, 0 elsewhere),
    refined with residuals in extended precision (``np.longdouble``): a reference far below
    double rounding."""
    A = np.flatnonzero(act)
    M = K[np.ix_(A, A)] + np.eye(len(A)) / (2 * C)
    Ml = M.astype(np.longdouble)
    p = np.linalg.solve(M, y[A]).astype(np.longdouble)
    for _ in range(4):
        r = y[A].astype(np.longdouble) - Ml @ p
        p += np.linalg.solve(M, r.astype(np.float64))
    out = np.zeros(len(K), dtype=np.longdouble)
    out[A] = p
    return out


@pytest.mark.parametrize("scale", [1.0, 300.0])  # standardised and raw-scale samples
def test_tolerant_inverse_path_bounds_its_unrefined_points(scale):
    """With ``tolerant``, a point accepted without its refinement has its active set proven
    optimal (the exact path's) and lies within its radius ``Rad`` of the exact Newton point
    of that set (checked against an extended-precision solve); the other points are those
    of the exact path. On standardised samples most points are accepted so."""
    K, S, Y, rows = permuted_training_set(scale, offset=3.0)
    exact = by_inverse(K, S, Y, rows)
    tolerant = by_inverse(K, S, Y, rows, tolerant=True)
    M = len(Y)
    radius = tolerant[5]
    assert not exact[5].any()
    np.testing.assert_array_equal(exact[0][:, 0], tolerant[0][:, 0])
    bounded = 0
    for q in range(M):
        if exact[0][q, 0] != CONVERGED:
            continue
        np.testing.assert_array_equal(tolerant[3][q], exact[3][q])
        if radius[q] > 0:
            bounded += 1
            reference = newton_point_extended(K, Y[q][rows], exact[3][q])
            assert np.sqrt(np.sum((tolerant[1][q] - reference) ** 2)) <= radius[q]
            np.testing.assert_array_equal(tolerant[1][q], tolerant[4][q])  # not refined
        else:
            np.testing.assert_array_equal(tolerant[1][q], exact[1][q])
    if scale == 1.0:
        assert bounded >= M // 2


def test_decisions_for_predictions_give_the_exact_predictions_and_fall_back_when_unproven(monkeypatch):
    """:meth:`BatchedLinearSVC.many_fold_decisions_for_predictions_at` (unrefined points
    with bounds, on the Gram path) predicts what the exact decisions predict, on run-wise
    betas with permuted label vectors; where the bounds do not prove a sphere's predictions
    (forced here), the sphere is solved again to rounding."""
    import fastsearchlight.estimators.svm as svm_module
    from fastsearchlight.estimators.base import as_voxel_major
    from fastsearchlight.scoring import predictions

    X, y, groups = run_betas(30, 110, 4, seed=3)
    rng = np.random.default_rng(2)
    ys = np.vstack([y] + [np.concatenate([rng.permutation(r) for r in y.reshape(8, -1)]) for _ in range(7)])
    plan = make_cv_plan(LeaveOneGroupOut(), y, groups)
    est = BatchedLinearSVC()
    Xv, vox = as_voxel_major(X)
    exact = est.many_fold_decisions_at(Xv, vox, ys, 4, plan)
    loose = est.many_fold_decisions_for_predictions_at(Xv, vox, ys, 4, plan)
    differ = False
    for folds_exact, folds_loose in zip(exact, loose):
        for a, b in zip(folds_exact, folds_loose):
            np.testing.assert_array_equal(predictions(a, 4), predictions(b, 4))
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-9 * np.abs(a).max())
            differ |= not np.array_equal(a, b)
    assert differ, "every point was refined: the bounded path was not exercised"
    kernel = svm_module.gram_newton_spheres

    def nothing_proven(*args):
        out = kernel(*args)
        args[-1][:] = True  # unsettled: every sphere
        return out

    monkeypatch.setattr(svm_module, "gram_newton_spheres", nothing_proven)
    forced = est.many_fold_decisions_for_predictions_at(Xv, vox, ys, 4, plan)
    for folds_exact, folds_forced in zip(exact, forced):
        for a, b in zip(folds_exact, folds_forced):
            np.testing.assert_array_equal(b, a)


def test_refined_spheres_use_their_own_iterations_when_another_thread_shares_the_estimator(monkeypatch):
    """The engine's threads share one estimator. A sphere that is solved again must take
    its iterations from its own call, not from ``n_iter_``, which another thread may have
    overwritten by then (simulated: after every solve, ``n_iter_`` is replaced by another
    block's array, of another shape)."""
    import fastsearchlight.estimators.svm as svm_module
    from fastsearchlight.estimators.base import as_voxel_major

    X, y, groups = run_betas(6, 110, 4, seed=3)
    plan = make_cv_plan(LeaveOneGroupOut(), y, groups)
    est = BatchedLinearSVC()
    Xv, vox = as_voxel_major(X)
    exact = est.many_fold_decisions_at(Xv, vox, ys := y[None], 4, plan)
    kernel = svm_module.gram_newton_spheres

    def first_sphere_unproven(*args):
        out = kernel(*args)
        if args[-1].size:  # the tolerant call (the exact one has no flags)
            args[-1][0] = True
        return out

    solve = BatchedLinearSVC._solve
    calls = []

    def other_thread_writes_after(self, *args, **kwargs):
        out = solve(self, *args, **kwargs)
        calls.append(self.n_iter_.copy())  # this call's, before the other thread writes
        self.n_iter_ = np.full((len(vox) + 1, calls[-1].shape[1]), -1)  # another block's
        return out

    monkeypatch.setattr(svm_module, "gram_newton_spheres", first_sphere_unproven)
    monkeypatch.setattr(BatchedLinearSVC, "_solve", other_thread_writes_after)
    refined = est.many_fold_decisions_for_predictions_at(Xv, vox, ys, 4, plan)
    assert len(calls) == 2 and calls[1].shape[0] == 1  # the first sphere was solved again
    for a_folds, b_folds in zip(exact, refined):
        for a, b in zip(a_folds, b_folds):
            np.testing.assert_array_equal(b[0], a[0])
    expected = calls[0].copy()
    expected[0] = calls[1][0]
    np.testing.assert_array_equal(est.n_iter_, expected)


def check_predictions(decisions, bounds, classes, status=None):
    """:func:`_check_predictions` on one sphere: ``decisions`` (label vectors x classes,
    samples), ``bounds`` (label vectors x classes), every sample checked."""
    G, P, n = decisions.shape
    status = np.full(G * P, CONVERGED, np.int8) if status is None else status
    unsettled = np.zeros(1, bool)
    members = np.arange(G * P)
    _check_predictions(decisions.reshape(G * P, n), bounds.reshape(-1), status, members, classes,
                       np.arange(n), unsettled, 0)  # fmt: skip
    return bool(unsettled[0])


def test_two_class_predictions_are_proven_when_every_decision_clears_its_bound():
    for decision, bound, unsettled in [
        ([0.5, -0.3], 0.1, False), ([0.5, -0.05], 0.1, True), ([1e-12, -1.0], 1e-12, True),
        ([0.0, 1.0], 0.0, False),  # no bound: solved to rounding, nothing to prove
    ]:  # fmt: skip
        got = check_predictions(np.array([[decision]]), np.array([[bound]]), 1)
        assert got == unsettled, (decision, bound)


def test_multi_class_predictions_are_proven_when_one_class_stays_largest():
    cases = [
        ([1.0, 0.5, 0.2], [0.1, 0.1, 0.1], False),  # 0.9 > 0.6
        ([1.0, 0.85, 0.2], [0.1, 0.1, 0.1], True),  # 0.9 < 0.95: the second may be largest
        ([1.0, 0.85, 0.2], [0.0, 0.1, 0.0], False),  # 1.0 > 0.95
        ([1.0, 1.0, 0.0], [0.0, 0.0, 1e-9], True),  # a tie: argmax picks by position
        ([0.2, 0.3, 0.9], [0.0, 0.7, 0.0], True),  # the middle class's interval reaches 1.0
    ]
    for decision, bound, unsettled in cases:
        got = check_predictions(np.array(decision)[None, :, None], np.array([bound]), 3)
        assert got == unsettled, (decision, bound)


def test_prediction_checks_agree_with_the_interval_definition():
    """Random decisions and bounds, 6 label vectors x 4 classes x 3 samples per sphere: a
    sphere is settled when, for every label vector and sample, the largest decision's lower
    end exceeds every other class's upper end; a problem not solved in the kernel unsettles
    its bounded label vector."""
    rng = np.random.default_rng(0)
    outcomes = []
    for _ in range(300):
        decisions = rng.standard_normal((6, 4, 3))
        bounds = rng.uniform(0, 0.05, (6, 4))
        top = decisions.argmax(axis=1)  # (6, 3)
        proven = True
        for g, t in np.ndindex(6, 3):
            c = top[g, t]
            low = decisions[g, c, t] - bounds[g, c]
            proven &= all(low > decisions[g, o, t] + bounds[g, o] for o in range(4) if o != c)
        assert check_predictions(decisions, bounds, 4) == (not proven)
        outcomes.append(proven)
        status = np.full(24, CONVERGED, np.int8)
        status[5] = NEEDS_SVD
        assert check_predictions(decisions, bounds, 4, status)
    assert any(outcomes) and not all(outcomes)


def test_residual_and_certificate_against_their_formulas():
    """``_residual`` (one pass) gives the residual on the active set, its 2-norm, ``|p|``
    and the rounding bound ``|(gamma_k |K_i| |p| + 3 eps (1 + |p_i| / 2C + |(K p)_i|))_A|_2``
    written out; ``_certified`` proves the set exactly where the margins clear the radius
    (active: ``y_i p_i > radius``; inactive: ``m_i - |K_i| (radius + slack) >= 1``), and tells
    whether ``p``'s own margins give the set back."""
    rng = np.random.default_rng(5)
    k, C, j = 20, 0.7, 1
    K = rng.standard_normal((k, k + 4))
    K = K @ K.T
    knorm = np.linalg.norm(K, axis=1)
    Y = np.where(rng.random((3, k)) < 0.5, -1.0, 1.0)
    P = rng.standard_normal((3, k))
    KP = P @ K
    act = rng.random((3, k)) < 0.7
    Mg, A = np.zeros((3, k)), np.zeros((3, k))
    y, p, b = np.zeros(k), np.zeros(k), np.zeros(k)
    for tolerant in (False, True):
        accepted, big, res, err, pn = _residual(k, C, Y, P, KP, Mg, act, A, j, y, p, b, knorm, tolerant)
        expected_b = np.where(act[j], Y[j] - P[j] / (2 * C) - Y[j] * Y[j] * KP[j], 0.0)
        np.testing.assert_allclose(b, expected_b, rtol=1e-14, atol=1e-14)
        np.testing.assert_array_equal(Mg[j], Y[j] * KP[j])
        np.testing.assert_array_equal(A[j], P[j])
        assert big == np.abs(P[j]).max() and not accepted
        np.testing.assert_allclose([res, pn], [np.linalg.norm(expected_b), np.linalg.norm(P[j])], rtol=1e-14)
        gamma = k * np.finfo(float).eps / (1 - k * np.finfo(float).eps)
        terms = gamma * knorm * pn + 3 * np.finfo(float).eps * (1 + np.abs(P[j]) / (2 * C) + np.abs(KP[j]))
        np.testing.assert_allclose(err, np.linalg.norm(terms[act[j]]) if tolerant else 0.0, rtol=1e-12)
    # a set the margins prove, and p's margins give back
    yp = np.abs(rng.standard_normal(k)) + 0.5
    active = np.arange(k) < 12
    y = np.ones(k)
    p = np.where(active, yp, 0.0)
    Mg = np.zeros((2, k))
    Mg[j] = np.where(active, 0.5, 2.0 + 0.1 * knorm)
    Act = np.zeros((2, k), bool)
    Act[j] = active
    slack = 1e-3
    assert _certified(k, y, p, Mg, Act, j, knorm, 0.1, slack) == 0
    # an active sample at the radius
    assert _certified(k, y, p, Mg, Act, j, knorm, yp[:12].min(), slack) == -1
    outside = Mg.copy()
    outside[j, 15] = 1.0 + knorm[15] * (0.1 + slack / 2)  # clears the radius, not its rounding too
    assert _certified(k, y, p, outside, Act, j, knorm, 0.1, slack) == -1
    other = Mg.copy()
    other[j, 3] = 1.5  # proven, but p's own margin on an active sample is not below 1
    assert _certified(k, y, p, other, Act, j, knorm, 0.1, slack) == 1


@pytest.mark.parametrize(("n", "k"), [(216, 141), (32, 110), (7, 3), (1, 9), (5, 8)])
def test_sample_grams_are_each_spheres_gram_matrix_plus_the_shift(n, k):
    rng = np.random.default_rng(n + k)
    Xv = 1000.0 + 26.0 * rng.standard_normal((400, n))  # raw-scale values
    vox = np.stack([np.sort(rng.choice(400, k, replace=False)) for _ in range(3)])
    G = np.full((3, n, n), np.nan)
    sample_grams(Xv, vox, 1.0, G)
    V = Xv[vox]
    want = np.swapaxes(V, 1, 2) @ V + 1.0
    np.testing.assert_allclose(G, want, rtol=1e-14)
    np.testing.assert_array_equal(G, np.swapaxes(G, 1, 2))  # both triangles, the same values


def test_sample_grams_of_neighbouring_spheres_by_updates_equal_numpys():
    """Spheres that share most voxels with the one before get its matrix updated by the
    voxels that change: within rounding of numpy's product, across runs longer than the
    refresh period, a jump to a distant sphere, a repeated sphere and voxels out of order."""
    rng = np.random.default_rng(11)
    n, k = 216, 60
    Xv = (1000.0 + 26.0 * rng.standard_normal((900, n))).astype(np.float32).astype(np.float64)
    rows = [np.sort(np.r_[s : s + 40, 500 + 2 * s : 500 + 2 * s + 20]) for s in range(GRAM_REFRESH + 5)]
    rows.append(rows[-1])  # the same voxels again: nothing changes
    rows += [np.arange(800, 800 + k), np.arange(801, 801 + k)]  # a distant sphere, then its neighbour
    rows.append(rng.permutation(np.arange(802, 802 + k)))  # out of order: computed afresh
    rows.append(np.arange(803, 803 + k))
    vox = np.stack(rows)
    G = np.full((len(vox), n, n), np.nan)
    sample_grams(Xv, vox, 1.0, G)
    V = Xv[vox]
    want = np.swapaxes(V, 1, 2) @ V + 1.0
    np.testing.assert_allclose(G, want, rtol=1e-14)
    np.testing.assert_array_equal(G, np.swapaxes(G, 1, 2))
    # every sphere afresh: the same matrices to rounding
    fresh = np.full_like(G, np.nan)
    sample_grams(Xv, vox, 1.0, fresh, 0, None, 1)
    np.testing.assert_allclose(fresh, want, rtol=1e-14)
    # in calls of three spheres, each after the last matrix of the call before and the
    # count of updates since a fresh one: the same matrices as in one call
    run = np.zeros(1, dtype=np.int64)
    calls = np.full_like(G, np.nan)
    for lo in range(0, len(vox), 3):
        first = 1 if lo else 0
        buffer = np.full((4, n, n), np.nan)
        if lo:
            buffer[0] = calls[lo - 1]
        rows = vox[lo - first : lo + 3]
        sample_grams(Xv, rows, 1.0, buffer[: len(rows)], first, run)
        calls[lo : lo + 3] = buffer[first : len(rows)]
    np.testing.assert_array_equal(calls, G)


def test_sample_grams_and_neighbours_of_spheres_of_several_sizes_padded_with_minus_one():
    """Rows padded with -1 at their end (a block of spheres of several sizes): each sphere's
    matrix is that of its own voxels, updated from the sphere before where they share half
    its voxels, and the padding is never counted as shared."""
    rng = np.random.default_rng(12)
    n = 40
    Xv = 1000.0 + 26.0 * rng.standard_normal((300, n))
    spheres = [
        np.arange(10, 70),
        np.arange(12, 60),
        np.arange(14, 74),
        np.arange(200, 230),
        np.arange(201, 221),
    ]
    vox = np.full((len(spheres), 60), -1, dtype=np.int64)
    for r, v in enumerate(spheres):
        vox[r, : len(v)] = v
    np.testing.assert_array_equal(voxels_of(vox[3]), spheres[3])
    assert voxels_of(np.full(4, -1)).shape == (0,)
    G = np.full((len(vox), n, n), np.nan)
    sample_grams(Xv, vox, 1.0, G)
    for g, v in zip(G, spheres):
        np.testing.assert_allclose(g, Xv[v].T @ Xv[v] + 1.0, rtol=1e-14)
    assert follows_previous(vox, vox[0, :0]).tolist() == [False, True, True, False, True]
    # the padding of two rows is not shared: 20 voxels after 30, of which 20 shared
    assert follows_previous(vox[4:], vox[3]).tolist() == [True]
    short = np.full((2, 60), -1, dtype=np.int64)
    short[0, :2], short[1, :40] = [1, 2], np.arange(100, 140)  # 2 voxels, then 40 others
    assert follows_previous(short, short[0, :0]).tolist() == [False, False]


@pytest.mark.parametrize(
    "rows",
    [
        np.arange(54, 216),  # KFold's first fold: one run
        np.r_[0:54, 108:216],  # a middle fold: two runs
        np.r_[3:9, 20:21, 40:200],  # three runs, one of a single sample
        np.random.default_rng(5).permutation(216)[:150],  # shuffled: sample by sample
    ],
)
def test_decisions_outside_a_training_set_are_the_gram_rows_times_the_coefficients(rows):
    """The decisions on the samples outside a training set, run by run (or sample by
    sample), equal numpy's product of their Gram rows with the coefficients."""
    rng = np.random.default_rng(8)
    X = 1000.0 + 26.0 * rng.normal(size=(216, 40))
    G = X @ X.T + 1.0
    k = len(rows)
    start, length = np.empty(k, dtype=np.int64), np.empty(k, dtype=np.int64)
    n_runs = _training_runs(rows, k, start, length)
    others = np.setdiff1d(np.arange(216), rows)
    a = rng.normal(size=k)
    out = np.full(216, np.nan)
    _decisions_outside(G, rows, k, a, others, start, length, n_runs, out)
    np.testing.assert_allclose(out[others], G[np.ix_(others, rows)] @ a, rtol=1e-12)
    assert np.isnan(out[rows]).all()


@pytest.mark.parametrize(
    "rows",
    [
        np.arange(54, 216),  # KFold's first fold: one run
        np.r_[0:54, 108:216],  # a middle fold: two runs
        np.r_[3:9, 20:21, 40:200],  # three runs, one of a single sample
        np.random.default_rng(5).permutation(216)[:150],  # shuffled: gathered entry by entry
    ],
)
def test_training_block_is_the_gram_block_of_the_training_samples(rows):
    """A training set's block of the sphere's Gram matrix, copied run by run (or gathered),
    equals numpy's indexing, and its largest diagonal entry is returned."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(216, 30))
    G = X @ X.T
    k = len(rows)
    start, length = np.zeros(216, np.int64), np.zeros(216, np.int64)
    n_runs = _training_runs(rows, k, start, length)
    assert length[:n_runs].sum() == k and np.array_equal(np.concatenate(
        [np.arange(a, a + b) for a, b in zip(start[:n_runs], length[:n_runs])]), rows)  # fmt: skip
    K = np.full((220, 220), np.nan)
    top = _training_block(G, rows, k, K, start, length, n_runs)
    np.testing.assert_array_equal(K[:k, :k], G[np.ix_(rows, rows)])
    assert top == G[rows, rows].max()


@pytest.mark.parametrize("k", [5, 30, 64, 162])
def test_every_sample_factor_and_its_inverse(k):
    """The factor of ``I / 2C + K`` on every training sample (the upper tiles, raw-scale
    samples as W1's) is that matrix's Cholesky factor, and the inverse path's ``S`` from it
    (LAPACK's ``potri`` on its transpose) is that matrix's inverse."""
    rng = np.random.default_rng(k)
    X = 1000.0 + 26.0 * rng.standard_normal((k, 141))
    K = X @ X.T + 1.0
    M = K + 0.5 * np.eye(k)
    U0, inv0 = np.full((k + 3, k + 3), np.nan), np.full(k + 3, np.nan)
    assert _factor_every_sample(K, k, 0.5, U0, inv0)
    U = np.triu(U0[:k, :k])
    np.testing.assert_allclose(U, np.linalg.cholesky(M).T, rtol=1e-9, atol=1e-9 * np.abs(U).max())
    np.testing.assert_allclose(inv0[:k], 1.0 / np.diag(U), rtol=1e-15)
    S = np.full((k + 3, k + 3), np.nan)
    assert _inverse_from_factor(U0, k, S)
    np.testing.assert_allclose(S[:k, :k] @ M, np.eye(k), atol=1e-6)
    np.testing.assert_array_equal(S[:k, :k], S[:k, :k].T)


def near_separable(n_spheres, seed, n_features=60, n_train=96):
    """Raw-scale samples (offset 1000, noise 20) of two classes with a weak signal, ``n_train``
    training samples and ``n_features`` voxels: 0.55-0.72 features (the constant one
    included) per training sample, where the training sets are near the edge of
    separability. Returns the samples and the kernel's inputs for one training set."""
    rng = np.random.default_rng(seed)
    n = n_train + 24
    y = np.arange(n) % 2
    rng.shuffle(y)
    X = 1000.0 + 20.0 * rng.standard_normal((n_spheres, n, n_features))
    X += 3.0 * rng.standard_normal((n_spheres, 2, n_features))[:, y]
    train = np.arange(n) < n_train
    return X, *kernel_inputs(X, y, 2, train)


def test_c_path_starts_where_the_margin_is_soft_and_climbs_by_half_decades():
    """:func:`c_path`: from ``C_PATH_START / s`` (``s`` the training samples' mean squared
    distance to their mean) up by ``C_PATH_RATIO`` while below ``C_PATH_END * C``; empty
    where ``C s`` is too small for a path (standardised values, or a small ``C``)."""
    from fastsearchlight.estimators._svm_gram_kernel import C_PATH_END, C_PATH_RATIO, C_PATH_START, c_path

    X, G, rows, _, _, _ = near_separable(1, seed=0)
    K = np.ascontiguousarray(G[0][np.ix_(rows[0], rows[0])])
    k = len(K)
    Xt = X[0][rows[0]]
    s = np.mean(np.sum((Xt - Xt.mean(axis=0)) ** 2, axis=1))
    for C in (1.0, 0.05, 1e-4):
        out = np.full(16, np.nan)
        n_path = c_path(K, k, C, out)
        expected = C_PATH_START / s * C_PATH_RATIO ** np.arange(16)
        expected = expected[expected < C_PATH_END * C]
        assert n_path == len(expected)
        np.testing.assert_allclose(out[:n_path], expected, rtol=1e-12)
    assert c_path(K, k, 1.0, np.empty(16)) >= 3  # (raw scale: C s about 1e4)
    assert c_path(K, k, 1e-4, np.empty(16)) == 0
    Z = (Xt - Xt.mean(axis=0)) / Xt.std(axis=0)  # standardised voxels: s = 60
    assert c_path(Z @ Z.T + 1.0, k, 1.0, np.empty(16)) == 0


def test_path_in_c_ends_at_each_problems_own_optimum_and_keeps_its_first_sets():
    """With ``path``, a problem alone on its training set solves the smaller ``C`` of
    :func:`c_path` first: it ends at the optimum it reaches without the path (and that the
    primal gradient confirms), keeps the active set of its path's first ``C`` in
    ``path_guess`` (that ``C``'s own optimal set), and a sphere solved again starts its path
    there (fewer Newton points the second time)."""
    from fastsearchlight.estimators._svm_gram_kernel import c_path

    _, G, rows, size, members, Y = near_separable(3, seed=4)
    G = G[[0, 0, 1, 2]]  # the first sphere twice
    k = size[0]

    def run(path, C=1.0):
        out = np.full((len(G), 1, G.shape[1]), np.nan)
        guess, has_guess = np.zeros((1, rows.shape[1]), bool), np.zeros(0, bool)  # cold starts
        path_guess, path_has = np.zeros((1, rows.shape[1]), bool), np.zeros(1, bool)
        status, its = gram_newton_spheres(
            G, rows, size, members, Y, C, 500, out, False, 10**9, guess, has_guess, np.zeros(5),
            np.full(len(G), path), path_guess, path_has, np.zeros(len(G), bool), np.zeros((0, 1)), 1, np.zeros(0, bool),
        )  # fmt: skip
        return out[:, 0], status[:, 0], its[:, 0], path_guess[0], path_has[0]

    plain, status, plain_its, _, kept = run(False)
    assert np.all(status == CONVERGED) and not kept
    walked, status, its, first_set, kept = run(True)
    assert np.all(status == CONVERGED) and kept
    np.testing.assert_allclose(walked, plain, rtol=0, atol=1e-9 * np.abs(plain).max())
    # the path's first C on the last sphere: its optimal set, solved there alone
    K = np.ascontiguousarray(G[3][np.ix_(rows[0], rows[0])])
    cs = np.empty(16)
    assert c_path(K, k, 1.0, cs) >= 3
    G_last = G[3:]
    out = np.full((1, 1, G.shape[1]), np.nan)
    gram_newton_spheres(
        G_last, rows, size, members, Y, cs[0], 500, out, False, 10**9, np.zeros((1, rows.shape[1]), bool),
        np.zeros(0, bool), np.zeros(5), np.zeros(1, bool), np.zeros((1, rows.shape[1]), bool), np.zeros(1, bool),
        np.zeros(1, bool), np.zeros((0, 1)), 1, np.zeros(0, bool),
    )  # fmt: skip
    np.testing.assert_array_equal(first_set[:k], out[0, 0, rows[0]] != 0.0)
    assert not first_set.all() and first_set[:k].sum() > k // 2
    # the first sphere again: its path starts at its own first set
    assert its[1] < its[0]
    # and the path is where the points went: every sphere's optimum reached in fewer of them
    assert its.sum() < plain_its.sum()

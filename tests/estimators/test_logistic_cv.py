"""Tests of the batched ``LogisticRegressionCV`` (nilearn's ``"logistic"``/``"logistic_l2"``)
against scikit-learn's.

Reference: nilearn's configuration (``solver="liblinear"``, ``l1_ratios=(0,)``,
``scoring="neg_log_loss"``), fitted per sphere and outer fold, with liblinear solved tightly
(``tol=1e-12``, ``max_iter=100000``; liblinear then stops with gradients of ~1e-8, its
decisions within ~1e-6 of the optimum). Checked per (sphere, fold): the chosen ``C`` is
scikit-learn's, the decisions agree to ``1e-5 * (1 + |decision|)``, the predictions are
identical, and, independently of scikit-learn, the refitted model is the optimum of
liblinear's objective (gradient computed with plain numpy at rounding level).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import expit
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from fastsearchlight.cv import make_cv_plan
from fastsearchlight.estimators import batched_equivalent, resolve_estimator
from fastsearchlight.estimators.logistic_cv import BatchedLogisticRegressionCV

REL = 1e-5  # agreement with tightly solved liblinear, relative to 1 + |decision|


@pytest.fixture(autouse=True)
def _single_blas_thread():
    """Small BLAS calls are much slower with several threads on a busy machine."""
    with threadpool_limits(1):
        yield


from sphere_cases import make_data, make_plan  # noqa: E402


def tight_reference(**params):
    """nilearn's ``"logistic"`` estimator, with liblinear solved tightly."""
    est = resolve_estimator("logistic")
    return est.set_params(tol=1e-12, max_iter=100_000, **params)


def fit_reference(X, y, plan, **params):
    """Decisions and chosen ``C`` (position in ``Cs_``) of scikit-learn, per sphere and fold."""
    n_spheres = X.shape[0]
    decisions = [np.empty((n_spheres, len(te))) for te in plan.test_indices]
    best = np.empty((n_spheres, plan.n_folds), dtype=int)
    for s in range(n_spheres):
        for f, (tr, te) in enumerate(zip(plan.train_indices, plan.test_indices)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # liblinear's convergence warnings
                model = tight_reference(**params).fit(X[s, tr], y[tr])
            decisions[f][s] = model.decision_function(X[s, te])
            best[s, f] = int(np.flatnonzero(model.Cs_ == model.C_)[0])
    return decisions, best


def liblinear_gradient(X, y, coef, C, intercept_scaling=1.0):
    """Gradient of ``0.5 |w|^2 + C sum log(1 + exp(-y_i w . [x_i, s]))`` at ``coef``
    (``coef_`` then ``intercept_``), scaled by ``1 / (C n)``."""
    A = np.c_[X, np.full(len(X), intercept_scaling)]
    w = coef.copy()
    w[-1] /= intercept_scaling
    t = (y == 1).astype(float)
    return (A.T @ (expit(A @ w) - t) + w / C) / len(X)


def check_against_sklearn(X, y, plan, est, **params):
    ours, best, coefs = est.fit_folds(X, y, 2, plan)
    ref, ref_best = fit_reference(X, y, plan, **params)
    np.testing.assert_array_equal(best, ref_best)
    for f, (tr, _) in enumerate(zip(plan.train_indices, plan.test_indices)):
        np.testing.assert_array_less(np.abs(ours[f] - ref[f]), REL * (1 + np.abs(ref[f])))
        clear = np.abs(ref[f]) > REL * (1 + np.abs(ref[f]))
        np.testing.assert_array_equal((ours[f] > 0)[clear], (ref[f] > 0)[clear])
        for s in range(X.shape[0]):
            grad = liblinear_gradient(X[s, tr], y[tr], coefs[f][s], est.Cs_[best[s, f]])
            scale = 1 + np.r_[np.sqrt(np.mean(X[s, tr] ** 2, axis=0)), 1.0]
            assert np.all(np.abs(grad) <= 1e-9 * scale)


@pytest.mark.parametrize(
    ("raw", "cv", "n_features", "n_samples"),
    [
        (False, "kfold", 5, 80),
        (True, "logo", 12, 64),
        (False, "stratified", 1, 72),
        (True, "kfold", 30, 24),  # more features than training samples
    ],
)
def test_matches_sklearn(raw, cv, n_features, n_samples):
    rng = np.random.default_rng(n_features)
    X, y, groups = make_data(rng, 5, n_samples, n_features, 2, raw=raw)
    plan = make_plan(cv, y, groups)
    check_against_sklearn(X, y, plan, BatchedLogisticRegressionCV())


def test_other_parameters_match_sklearn():
    """Accuracy scoring (ties: the first C), 3 inner folds, other Cs, no intercept."""
    rng = np.random.default_rng(7)
    X, y, groups = make_data(rng, 4, 60, 4, 2, raw=False)
    plan = make_plan("kfold", y, groups)
    params = {"scoring": "accuracy", "cv": 3, "Cs": [0.01, 0.3, 5.0]}
    est = batched_equivalent(tight_reference(**params))
    assert est is not None and est.scoring == "accuracy" and est.n_inner == 3
    ours, best, _ = est.fit_folds(X, y, 2, plan)
    ref, ref_best = fit_reference(X, y, plan, **params)
    np.testing.assert_array_equal(best, ref_best)
    for f in range(plan.n_folds):
        np.testing.assert_array_less(np.abs(ours[f] - ref[f]), REL * (1 + np.abs(ref[f])))
    est = batched_equivalent(tight_reference(fit_intercept=False, Cs=4))
    ours, best, _ = est.fit_folds(X, y, 2, plan)
    ref, ref_best = fit_reference(X, y, plan, fit_intercept=False, Cs=4)
    np.testing.assert_array_equal(best, ref_best)
    for f in range(plan.n_folds):
        np.testing.assert_array_less(np.abs(ours[f] - ref[f]), REL * (1 + np.abs(ref[f])))


@pytest.mark.parametrize("scoring", ["neg_log_loss", "accuracy"])
@pytest.mark.parametrize(("n_features", "intercept_scaling"), [(6, 1.0), (9, 3.0), (40, 1.0), (40, 0.5)])
def test_each_sphere_matches_sklearn_both_scorings(scoring, n_features, intercept_scaling):
    """Per sphere and outer fold, both inner scorings, fewer and more parameters than outer
    training samples (24: the kernel then solves in a basis of the training rows), raw BOLD
    scale (standardised with more parameters: there, at C = 1e4, liblinear's tightest
    solution is ~1e-4 from the optimum, measured against an extended-precision Newton solve,
    where ours is 5e-7 from it), liblinear's constant feature other than 1 (in the inner
    problems only: scikit-learn's refit does not pass it on): the chosen ``C`` is
    scikit-learn's,
    the decisions agree to ``REL * (1 + |decision|)``, the predictions are identical, the
    coefficients are the optimum of liblinear's objective, and the engine's entry point
    (voxel-major data) gives the same decisions."""
    from fastsearchlight.estimators.base import as_voxel_major

    rng = np.random.default_rng([11, n_features, int(4 * intercept_scaling)])
    X, y, groups = make_data(rng, 4, 32, n_features, 2, raw=n_features < 24)
    plan = make_plan("logo", y, groups)
    params = {"scoring": scoring, "intercept_scaling": intercept_scaling}
    est = batched_equivalent(tight_reference(**params))
    assert est.scoring == scoring and est.intercept_scaling == intercept_scaling
    ours, best, coefs = est.fit_folds(X, y, 2, plan)
    assert est.n_problems_ == 4 * plan.n_folds * 5 * 10 and est.n_refits_ == 4 * plan.n_folds
    assert est.n_problems_ + est.n_refits_ <= est.n_hessians_ <= est.n_iter_ + est.n_iter_refit_
    at = est.many_fold_decisions_at(*as_voxel_major(X), y[None], 2, plan)[0]
    ref, ref_best = fit_reference(X, y, plan, **params)
    np.testing.assert_array_equal(best, ref_best)
    for f, (tr, _) in enumerate(zip(plan.train_indices, plan.test_indices)):
        np.testing.assert_array_equal(at[f], ours[f])
        np.testing.assert_array_less(np.abs(ours[f] - ref[f]), REL * (1 + np.abs(ref[f])))
        np.testing.assert_array_equal(ours[f] > 0, ref[f] > 0)
        # scikit-learn's refit has the constant feature 1 whatever intercept_scaling
        for s in range(X.shape[0]):
            grad = liblinear_gradient(X[s, tr], y[tr], coefs[f][s], est.Cs_[best[s, f]])
            scale = 1 + np.r_[np.sqrt(np.mean(X[s, tr] ** 2, axis=0)), 1.0]
            assert np.all(np.abs(grad) <= 1e-9 * scale)


@pytest.mark.parametrize("n_features", [3, 70])
def test_constant_and_zero_spheres(n_features):
    """Spheres without information: the penalised intercept alone decides (with more
    parameters than outer training samples too: their rows are then rank-deficient). With
    more parameters the informative sphere is standardised: on the raw scale, at C = 1e4,
    its problem's conditioning bounds any float64 solution to ~1e-4 (measured against an
    extended-precision Newton solve: ours 3.9e-5 from it, liblinear's tightest 1.4e-4)."""
    rng = np.random.default_rng(3)
    X, y, groups = make_data(rng, 3, 60, n_features, 2, raw=n_features < 60)
    X[1] = 0.0
    X[2] = X[2, :1]  # every sample the same pattern
    plan = make_plan("kfold", y, groups)
    check_against_sklearn(X, y, plan, BatchedLogisticRegressionCV())


def test_routing_of_names_and_parameters():
    for name in ("logistic", "logistic_l2"):
        est = batched_equivalent(resolve_estimator(name))
        assert isinstance(est, BatchedLogisticRegressionCV)
        assert (est.n_inner, est.scoring, est.intercept_scaling) == (5, "neg_log_loss", 1.0)
        np.testing.assert_array_equal(est.Cs_, np.logspace(-4, 4, 10))
    for name in ("logistic_l1", "svc_l1"):
        assert batched_equivalent(resolve_estimator(name)) is None
    base = resolve_estimator("logistic")
    for other in (
        {"class_weight": "balanced"},
        {"solver": "lbfgs"},
        {"refit": False},
        {"cv": KFold(3)},
        {"dual": True},
        {"l1_ratios": (0.5,)},
        {"scoring": "roc_auc"},
    ):
        assert batched_equivalent(base.set_params(**other)) is None, other
        base = resolve_estimator("logistic")
    assert batched_equivalent(LogisticRegressionCV(solver="liblinear", l1_ratios=(0,))) is not None


def test_more_classes_and_missing_classes_stay_per_sphere():
    """scikit-learn's liblinear refuses three classes and inner training sets of one class;
    those designs are not batched (the per-sphere path reports scikit-learn's error)."""
    est = BatchedLogisticRegressionCV()
    y3 = np.arange(60) % 3
    plan3 = make_cv_plan(KFold(4), y3)
    assert not est.handles(y3, 3, plan3)
    with pytest.raises(ValueError, match="multiclass"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tight_reference().fit(np.random.default_rng(0).normal(size=(60, 3)), y3)
    y = np.zeros(40, dtype=int)
    y[[3, 30]] = 1  # one sample of class 1 in each outer training set
    plan = make_cv_plan(KFold(2), y)
    assert not est.handles(y, 2, plan)
    with pytest.raises(ValueError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tight_reference().fit(np.random.default_rng(0).normal(size=(20, 3)), y[plan.train_indices[0]])
    y2 = np.arange(40) % 2
    assert est.handles(y2, 2, make_cv_plan(KFold(2), y2))


def _standardised_haxby(haxby_slice, n_spheres):
    """The Haxby slice, every voxel z-scored over time (liblinear's default tolerance then
    lands close to the optimum), and a process mask of ``n_spheres`` random voxels."""
    import nibabel as nib

    func = haxby_slice["func"]
    data = np.asarray(func.dataobj, dtype=np.float64)
    sd = data.std(axis=3, keepdims=True)
    data = (data - data.mean(axis=3, keepdims=True)) / np.where(sd > 0, sd, 1.0)
    mask = np.asarray(haxby_slice["mask"].dataobj) != 0
    ijk = np.argwhere(mask)
    pick = ijk[np.sort(np.random.default_rng(0).choice(len(ijk), n_spheres, replace=False))]
    process = np.zeros(mask.shape, dtype=np.uint8)
    process[tuple(pick.T)] = 1
    affine = func.affine
    return nib.Nifti1Image(data.astype(np.float32), affine), nib.Nifti1Image(process, affine)


def test_searchlight_logistic_matches_nilearn_and_tight_liblinear(haxby_slice):
    """``SearchLight(estimator="logistic")`` runs batched. Its map (scoring=None: the
    estimator's own score, the log-loss, as nilearn's) equals the per-sphere path with a
    tightly solved liblinear to 1e-5; with ``scoring="accuracy"`` its map is nilearn's own
    (liblinear's default tol=1e-4) on >= 99% of the spheres. On raw BOLD values (~2000)
    nilearn's liblinear stops far enough from the optimum to choose another C at some
    folds (83% of 60 spheres identical, measured): hence standardised data here."""
    from nilearn.decoding import SearchLight as NilearnSearchLight

    from fastsearchlight import SearchLight
    from fastsearchlight.engine import run_generic
    from fastsearchlight.images import load_mask, masked_data

    func, process = _standardised_haxby(haxby_slice, 8)
    y, mask = haxby_slice["y"], haxby_slice["mask"]
    common = dict(mask_img=mask, process_mask_img=process, radius=5.6, cv=KFold(4), estimator="logistic")
    ours = SearchLight(**common).fit(func, y)
    assert ours.engine_ == "batched"
    X = masked_data(func, load_mask(mask, "mask", func))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = run_generic(X, ours.neighbourhoods_, tight_reference(), y, ours.cv_plan_, None, n_jobs=2)
    assert np.all(ref < 0)  # the log-loss, not accuracy
    np.testing.assert_allclose(ours.fold_scores_, ref, rtol=1e-5)

    ours = SearchLight(scoring="accuracy", **common).fit(func, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nilearn = NilearnSearchLight(scoring="accuracy", n_jobs=2, **common).fit(func, y)
    assert np.isclose(ours.masked_scores_, nilearn.masked_scores_).mean() >= 0.99


def test_searchlight_logistic_three_classes_per_sphere(make_dataset):
    """Three classes: scikit-learn's liblinear raises, so the per-sphere path runs and
    gives NaN with a warning, as nilearn."""
    from fastsearchlight import SearchLight

    d = make_dataset(n_classes=3, n_per_class=12, shape=(5, 5, 4))
    sl = SearchLight(mask_img=d["mask"], radius=4.0, cv=KFold(3), estimator="logistic")
    with pytest.warns(FitFailedWarning, match="does not support multiclass"):
        sl.fit(d["func"], d["y"])
    assert sl.engine_ == "generic"
    assert np.all(np.isnan(sl.masked_scores_))


def test_routing_metric_is_the_estimators_own_score():
    """scoring=None means ``LogisticRegressionCV.score``: its own scoring (the log-loss for
    nilearn's names), which needs both classes in every test fold (else per sphere)."""
    from sklearn.metrics import log_loss

    from fastsearchlight.core import choose_measure
    from fastsearchlight.scoring import batched_scores

    y = np.arange(40) % 2
    classes = np.array(["face", "house"])
    plan = make_cv_plan(KFold(4), y)
    est = resolve_estimator("logistic")
    measure, metrics = choose_measure(est, None, classes, y, plan)
    assert isinstance(measure, BatchedLogisticRegressionCV) and metrics == ("neg_log_loss",)
    assert choose_measure(est, "accuracy", classes, y, plan)[1] == ("accuracy",)
    old = resolve_estimator("logistic").set_params(scoring=None)
    assert choose_measure(old, None, classes, y, plan)[1] == ("accuracy",)
    sorted_y = np.sort(y)  # KFold(4) leaves test folds of one class
    assert choose_measure(est, None, classes, sorted_y, make_cv_plan(KFold(4), sorted_y))[0] is est
    decisions = np.random.default_rng(0).normal(scale=20.0, size=(3, 10))
    y_test = np.arange(10) % 2
    expected = [-log_loss(y_test, expit(row)) for row in decisions]
    np.testing.assert_allclose(batched_scores("neg_log_loss", decisions, y_test, 2), expected, rtol=1e-12)


@pytest.mark.parametrize("ratio", [0.9, 0.5, 1 / 7.7])
def test_path_start_follows_the_regularisation_path_to_second_order(ratio):
    """Each ``C`` of an inner fold starts from the Taylor polynomial of order two of the
    regularisation path at the optimum of the ``C`` before: its error shrinks with the cube
    of the step in ``log lambda`` (the tangent's with the square), it is below the
    tangent's, and the start never has a higher objective than the previous optimum or the
    tangent's point."""
    from fastsearchlight.estimators._logistic_cv_kernel import _path_start
    from fastsearchlight.estimators._logistic_kernel import _newton_binary, newton_work, no_certificate

    def objective(D, t, theta, lam):
        margins = (2 * t - 1) * (D @ theta)
        return np.logaddexp(0.0, -margins).mean() + 0.5 * lam * theta @ theta

    rng = np.random.default_rng(5)
    n, q = 80, 9
    D = rng.normal(size=(n, q))
    D[:, -1] = 1.0  # liblinear's penalised constant feature
    t = (D @ rng.normal(size=q) + rng.normal(scale=2.0, size=n) > 0).astype(float)

    def optimum(lam):
        theta, H, work = np.zeros(q), np.empty((q, q)), newton_work(n, q, 0)
        _, ok, _, factored, loss = _newton_binary(
            D, t, np.full(q, lam), np.ones(q), theta, 1e-13, 100, H, np.empty((n, q)), False,
            no_certificate(q), work,
        )  # fmt: skip
        assert ok and factored
        return theta, H, work, loss

    lam_prev = 0.02
    before, R, work, loss = optimum(lam_prev)
    lam = ratio * lam_prev
    after, *_ = optimum(lam)
    step = np.log(lam_prev / lam)
    U = np.triu(R)  # the factor (its strict lower triangle is work space)
    tangent = before + lam_prev * step * np.linalg.solve(U, np.linalg.solve(U.T, before))
    start = before.copy()
    z, e = work[1, :n].copy(), work[2, :n].copy()  # the predictors where the solver stopped
    loss = _path_start(D, t, start, R, lam_prev, lam, np.empty((4, q)), np.empty((7, n)), z, e, loss)
    assert objective(D, t, start, lam) <= min(objective(D, t, before, lam), objective(D, t, tangent, lam))
    # the start's predictors, their exp(-|z|) and mean loss, for the Newton solver
    np.testing.assert_allclose(z, D @ start, rtol=0, atol=1e-12 * np.abs(D @ start).max())
    np.testing.assert_allclose(e, np.exp(-np.abs(D @ start)), rtol=1e-11)
    assert loss == pytest.approx(objective(D, t, start, 0.0), rel=1e-12)
    gap = np.linalg.norm(before - after)
    assert gap > 1e-3
    error, error_tangent = np.linalg.norm(start - after), np.linalg.norm(tangent - after)
    # measured: 0.0004, 0.018 and 0.16 of the gap for steps of 0.11, 0.69 and 2.04 (the
    # tangent: 0.0066, 0.059 and 0.30)
    assert error < 0.1 * step**2 * gap
    assert error < 0.6 * error_tangent


def _inner_problem(seed, n=64, n_features=12, n_test=16, raw=True):
    """An inner problem as the kernel sees it: raw-scale rows with liblinear's constant
    feature, labels, and test rows."""
    rng = np.random.default_rng(seed)
    X, y, _ = make_data(rng, 1, n + n_test, n_features, 2, raw=raw)
    A = np.ascontiguousarray(np.c_[X[0], np.ones(n + n_test)])
    return A[:n], y[:n].astype(float), A[n:]


def _clipped_log_loss(decisions, t):
    """scikit-learn's ``log_loss`` of ``expit(decisions)`` (its probabilities clipped to
    ``[eps, 1 - eps]``), labels ``t`` in {0, 1}."""
    p1 = expit(decisions)
    p = np.clip(np.where(t > 0.5, p1, 1.0 - p1), np.finfo(float).eps, 1.0 - np.finfo(float).eps)
    return -np.mean(np.log(p))


def _log_loss_case(seed, stationary=False):
    """A factor of a raw-scale Hessian (training rows near a common mean of 1,000, with the
    constant feature), test rows, labels and a point: the test decisions moderate, but for
    one wrong-side row whose decision is -36 (where the loss's clipping sets in) and one
    correct-side row at 45 (clipped); with ``stationary``, the origin, where every test row
    appears with either label (the test loss's slope zero there, its change second order)."""
    rng = np.random.default_rng(seed)
    q, n, m = 9, 40, 14
    mean = np.r_[1000.0 + 50.0 * rng.normal(size=q - 1), 1.0]
    B = mean + np.c_[5.0 * rng.normal(size=(n, q - 1)), np.zeros(n)]
    lam = 1e-4
    H = (B * (rng.uniform(0.001, 0.25, n) / n)[:, None]).T @ B + lam * np.eye(q)
    U = np.ascontiguousarray(np.linalg.cholesky(H).T)
    At = mean + np.c_[5.0 * rng.normal(size=(m, q - 1)), np.zeros(m)]
    t = (np.arange(m) % 2).astype(float)
    theta = np.r_[rng.normal(size=q - 1) * 1e-3, 0.0]
    theta[-1] = -mean @ theta  # decisions near 0
    if stationary:  # every test row twice, with either label, at the origin: slope zero
        At[m // 2 :] = At[: m // 2]
        t = np.r_[np.ones(m // 2), np.zeros(m - m // 2)]
        theta = np.zeros(q)
    else:  # row 0 a positive sample at -36 (wrong side, the clipping's edge), row 1 at 45 (clipped)
        u = theta / (theta @ theta)  # adding c u to a row moves its decision by c
        dec = At @ theta
        At[0] += (-36.0 - dec[0]) * u
        At[1] += (45.0 - dec[1]) * u
        t[:2] = 1.0
    return U, lam, np.ascontiguousarray(At.T), t, theta


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("stationary", [False, True])
def test_log_loss_bound_holds_over_the_ball(seed, stationary):
    """``_log_loss_bound``: the mean clipped test log-loss moves by at most the bound
    anywhere within ``r`` of the point in the factor's metric: at random points of the
    ball's surface and along the directions that move the loss most (its slope's, the test
    rows' mean's, each test row's, both signs). The cases hold a row at the clipping's edge
    (where the loss is only 1-Lipschitz) and one on its flat part, or a stationary point of
    the loss, where it moves by its second-order term only (so the bound's second-order term
    is needed)."""
    from fastsearchlight.estimators._logistic_kernel import _log_loss_bound, certificate

    U, lam, Ct, t, theta = _log_loss_case(seed, stationary)
    q, m = Ct.shape
    inv = 1.0 / np.diag(U)
    cert = certificate(Ct, np.ones(3), t, np.zeros(3), 0.01)
    At = Ct.T
    base = _clipped_log_loss(At @ theta, t)
    slope = At.T @ (expit(At @ theta) - t) / m
    for r in (1e-6, 1e-4, 1e-2):
        bound = _log_loss_bound(
            U, inv, Ct, cert[2], cert[5], cert[6], theta, r, lam, np.empty(q), np.empty(q)
        )
        directions = [np.linalg.solve(U, v) for v in np.random.default_rng(seed).normal(size=(200, q))]
        for v in (slope, At.mean(axis=0), *At):  # d maximising v . d over the ball: H0^-1 v
            directions.append(np.linalg.solve(U, np.linalg.solve(U.T, v)))
        worst = 0.0
        for d in directions:
            d = d * r / np.linalg.norm(U @ d)  # on the ball's surface
            for sign in (1.0, -1.0):
                worst = max(worst, abs(_clipped_log_loss(At @ (theta + sign * d), t) - base))
        assert worst <= bound
        if r == 1e-2:
            assert worst > 1e-9  # the loss moves: the test can fail


def test_log_loss_bound_with_one_coordinate():
    """A problem of one coordinate (one voxel, no intercept) has a work space of two rows for
    the test log-loss's bound, which holds there too (at the ball's two ends)."""
    from fastsearchlight.estimators._logistic_kernel import _log_loss_bound, certificate

    Ct = np.array([[0.5, -1.0, 2.0, 0.1]])
    t = np.array([1.0, 0.0, 1.0, 0.0])
    cert = certificate(Ct, np.ones(3), t, np.zeros(3), 0.01)
    assert cert[2].shape == (2, 4)
    U, lam, theta, r = np.array([[2.0]]), 0.5, np.array([0.3]), 0.2
    bound = _log_loss_bound(
        U, 1.0 / np.diag(U), Ct, cert[2], cert[5], cert[6], theta, r, lam, np.empty(1), np.empty(1)
    )
    base = _clipped_log_loss(Ct[0] * theta[0], t)
    for d in (r / 2.0, -r / 2.0):  # |d| U = r
        assert abs(_clipped_log_loss(Ct[0] * (theta[0] + d), t) - base) <= bound


@pytest.mark.parametrize("drift", [0.0, 0.3, 3.0])
def test_certified_carries_the_test_rows_norms_from_a_larger_penalty(drift):
    """Test rows' norms computed with the factor of an earlier problem on the same rows (a
    larger penalty ``lam_tn``, predictors ``ztn``) are carried to a new factor inflated by
    ``sqrt(max(exp(delta), s exp(delta) + lam_tn / lam))`` (``s``: the share of the penalty
    that rows left out of a Hessian may weigh): never below the new factor's own norms,
    with fewer rows than features (where the penalty's ratio is the whole inflation) and
    predictors moved by ``delta``. When the proof fails with them, the new factor's own norms
    are computed and tried. (The norms serve the proofs of the test predictions, ``eps <
    0``: the test decisions are set to twice their bound with the carried norms, and to a
    hundredth of it.)"""
    from fastsearchlight.estimators._logistic_kernel import _LEFT_OUT, _certified, certificate

    rng = np.random.default_rng(7)
    n, q, m = 24, 40, 10
    A = rng.normal(size=(n, q))
    Ct = np.ascontiguousarray(rng.normal(size=(q, m)))

    def factor(z, lam):  # the upper Cholesky factor of A' diag(p (1 - p) / n) A + lam I
        p = expit(z)
        H = (A * (p * (1 - p) / n)[:, None]).T @ A + lam * np.eye(q)
        return np.ascontiguousarray(np.linalg.cholesky(H).T)

    def norms(R):
        return np.linalg.norm(np.linalg.solve(R.T, Ct), axis=0)

    lam_tn, lam = 0.02, 0.02 / 7.7
    ztn = rng.normal(size=n)
    z0 = ztn + drift * np.sign(rng.normal(size=n))
    tn = norms(factor(ztn, lam_tn))
    R = factor(z0, lam)
    own = norms(R)
    grad = 1e-9 * rng.normal(size=q)
    step = -np.linalg.solve(R, np.linalg.solve(R.T, grad))
    half = -np.linalg.solve(R.T, grad)  # the step's forward half, which the proof takes
    nu = np.sqrt(-grad @ step)
    inflation = np.sqrt(max(np.exp(drift), _LEFT_OUT * np.exp(drift) + lam_tn / lam))
    radius = nu * (1 + 1e-12) * inflation * (1 + 1e-6)  # the carried norms' radius
    assert np.all(tn * inflation >= own * (1 - 1e-12))  # they bound the own norms
    direction = np.linalg.lstsq(Ct.T, np.sign(rng.normal(size=m)) * tn, rcond=None)[0]
    for scale, carried in ((2.0, True), (0.01, False)):
        theta = scale * radius * direction  # decisions at +-scale times the carried bounds
        cert = certificate(Ct, np.ones(n), np.ones(m), np.array([0.0, 0.0, lam_tn]), -1.0)
        out, held = cert[3], tn.copy()
        proven, ready, _ = _certified(
            R, half, z0, z0, ztn.copy(), 1e-6, Ct, cert[2], held, True, theta, -1.0, out, lam, np.ones(n),
            1.0 / np.diag(R), cert[5], cert[6], np.empty(q), np.empty(q), False,
        )  # fmt: skip
        assert ready
        if carried:  # proven with the carried norms: not computed again
            assert proven and out[2] == lam_tn
            np.testing.assert_array_equal(held, tn)
        else:  # not proven with them: the factor's own norms computed and tried
            assert not proven and out[2] == lam
            np.testing.assert_allclose(held, own, rtol=1e-10)
    # the penalties' ratio is needed: with fewer rows than features some own norm is above
    # the carried one inflated by the drift alone
    assert np.any(own > tn * np.exp(drift / 2) * (1 + 1e-6)) or drift > 2.0


def test_certified_carries_the_test_rows_norms_to_a_factor_with_rows_left_out():
    """A new factor may leave out rows of negligible weight that the norms' factor held
    (each at most ``s lam / n`` of ``w |a|^2``): the carried norms' inflation covers them,
    with the predictors where they were and the same penalty, by ``sqrt(1 + s)``, and no
    less would do. The proof's drift counts the kept rows only. (The proofs of the test
    predictions, ``eps < 0``: decisions just beyond their bound with the carried norms so
    inflated are proven; just within it, not.)"""
    from fastsearchlight.estimators._logistic_kernel import _LEFT_OUT, _certified, certificate

    rng = np.random.default_rng(8)
    n, q = 24, 40
    A = rng.normal(size=(n, q))
    a2 = (A**2).sum(axis=1)
    lam = 0.02 / 7.7
    w = expit(rng.normal(size=n)) * (1 - expit(rng.normal(size=n))) / n
    w[:3] = _LEFT_OUT * lam / n / a2[:3]  # three rows at the cut: left out of the new factor
    kept = np.ones(n, dtype=bool)
    kept[:3] = False
    Ct = np.ascontiguousarray(np.c_[A[:3].T, rng.normal(size=(q, 5))])  # those rows among the tests
    m = Ct.shape[1]

    def factor(rows):
        H = (A[rows] * w[rows, None]).T @ A[rows] + lam * np.eye(q)
        return np.ascontiguousarray(np.linalg.cholesky(H).T)

    def norms(R):
        return np.linalg.norm(np.linalg.solve(R.T, Ct), axis=0)

    tn = norms(factor(np.ones(n, dtype=bool)))  # the norms' factor held every row
    R = factor(kept)
    own = norms(R)
    assert np.any(own > tn * (1 + 1e-9))  # rows left out: some own norm above the carried one
    grad = 1e-9 * rng.normal(size=q)
    step = -np.linalg.solve(R, np.linalg.solve(R.T, grad))
    half = -np.linalg.solve(R.T, grad)  # the step's forward half, which the proof takes
    z0 = rng.normal(size=n)
    z = z0.copy()
    z[:3] += 50.0  # the rows left out moved far: not the kept rows' drift
    inflation = np.sqrt(1.0 + _LEFT_OUT)
    assert np.all(tn * inflation >= own * (1 - 1e-12))
    nu = np.sqrt(-grad @ step)
    radius = nu * (1 + 1e-12) * inflation * (1 + 1e-6)  # exp(drift) = 1: the kept rows only
    direction = np.linalg.lstsq(Ct.T, np.sign(rng.normal(size=m)) * tn, rcond=None)[0]
    for scale, carried in ((1.0 + 1e-6, True), (1.0 - 1e-6, False)):
        cert = certificate(Ct, np.ones(n), np.ones(m), np.array([0.0, 0.0, lam]), -1.0)
        out, held = cert[3], tn.copy()
        proven, ready, _ = _certified(
            R, half, z, z0, z0.copy(), 1e-6, Ct, cert[2], held, True, scale * radius * direction, -1.0,
            out, lam, kept.astype(float), 1.0 / np.diag(R), cert[5], cert[6], np.empty(q), np.empty(q), False,
        )  # fmt: skip
        assert ready
        if carried:
            assert proven
            np.testing.assert_array_equal(held, tn)  # carried, not computed again
        else:  # just within the carried bound: not proven (the same penalty and predictors: no
            # other norms to try), so the inflation is no smaller than sqrt(1 + s) either
            assert not proven
            np.testing.assert_array_equal(held, tn)


@pytest.mark.parametrize("C", [1e-3, 0.1, 10.0, 1e3])
@pytest.mark.parametrize("eps", [0.01, 1e-4, -1.0])
def test_certified_stop_bounds_the_test_scores(C, eps):
    """An inner problem stopped on its certificate (``_certified``) is within the proven
    bound of the optimum: its mean test log-loss (clipped as scikit-learn's) is within the
    bound it reports of the optimum's (``eps >= 0``), or every test prediction is the
    optimum's (``eps < 0``), and it stopped in fewer iterations than the run to ``tol``. From
    the origin and from a start beside the optimum (as on a path of ``C``). The log-loss
    bound's solve with the test rows' mean, done once per factor, is the proving factor's."""
    from fastsearchlight.estimators._logistic_kernel import (
        _ROW_V1,
        _newton_binary,
        certificate,
        newton_work,
        no_certificate,
    )

    proven = 0
    later = 0  # proven with a later factor than the first
    for seed in range(6):
        A, t, At = _inner_problem(seed)
        tt = np.random.default_rng(seed + 100).integers(0, 2, len(At)).astype(float)  # test labels
        n, q = A.shape
        pen = np.full(q, 1.0 / (C * n))
        exact = np.zeros(q)
        full_its, ok, *_ = _newton_binary(
            A, t, pen, np.ones(q), exact, 1e-13, 200, np.empty((q, q)), np.empty((n, q)), False, no_certificate(q),
            newton_work(n, q, 0),
        )  # fmt: skip
        assert ok
        for start in (np.zeros(q), exact * 0.9):
            theta = start.copy()
            cert = certificate(np.ascontiguousarray(At.T), (A**2).sum(axis=1), tt, np.zeros(3), eps)
            out = cert[3]
            H, work = np.empty((q, q)), newton_work(n, q, len(At))
            its, ok, hessians, *_ = _newton_binary(
                A, t, pen, np.ones(q), theta, 1e-13, 200, H, np.empty((n, q)), False, cert, work
            )  # fmt: skip
            assert ok
            if out[1] == 0.0:  # ran to tol: no bound
                assert out[0] == 0.0
                continue
            proven += 1
            if eps >= 0.0:
                assert 0.0 < out[0] <= eps
                assert abs(_clipped_log_loss(At @ theta, tt) - _clipped_log_loss(At @ exact, tt)) <= out[0]
                # the bound's solve with the test rows' mean is the proving factor's own (not
                # one kept from an earlier factor)
                own = np.linalg.solve(np.triu(H).T, At.mean(axis=0))
                np.testing.assert_allclose(work[_ROW_V1, :q], own, rtol=1e-9, atol=1e-12 * np.abs(own).max())
                later += hessians > 1
            else:
                assert out[0] == 0.0
                np.testing.assert_array_equal(At @ theta > 0, At @ exact > 0)
            if not start.any():  # from the origin, as the run to tol
                assert its < full_its
    if C <= 10.0:  # at the largest C the nearly separable problems prove late, or not at all
        assert proven >= 6
        assert eps < 0.0 or later > 0


def test_certified_problems_leave_out_rows_of_negligible_weight_but_at_the_last_step():
    """With a certificate, the Hessians that steer the steps and proofs leave out the rows
    whose ``w |a|^2`` is at most ``s lam / n`` (flagged in the work space's keep row), and
    the proofs hold; a problem that runs to ``tol`` takes its last Newton step with every
    row, and at a tight ``tol`` reaches the optimum (on nearly separable raw-scale problems,
    where many rows weigh nothing at the optimum)."""
    from fastsearchlight.estimators._logistic_kernel import (
        _LEFT_OUT,
        _ROW_KEEP,
        _newton_binary,
        certificate,
        newton_work,
        no_certificate,
    )

    left_out = ran_to_tol = 0
    for seed in range(10):
        A, t, At = _inner_problem(seed)
        n, q = A.shape
        a2 = (A**2).sum(axis=1)
        for C in (10.0, 1e3):
            pen = np.full(q, 1.0 / (C * n))
            exact = np.zeros(q)
            assert _newton_binary(
                A, t, pen, np.ones(q), exact, 1e-13, 200, np.empty((q, q)), np.empty((n, q)), False,
                no_certificate(q), newton_work(n, q, 0),
            )[1]  # fmt: skip
            z = A @ exact
            w = expit(z) * (1 - expit(z)) / n
            negligible = w * a2 <= _LEFT_OUT / n * pen[0]
            for tol in (1e-13, 1e-4):
                theta = np.zeros(q)
                out = np.zeros(3)
                work = newton_work(n, q, len(At))
                cert = certificate(np.ascontiguousarray(At.T), a2, np.ones(len(At)), out, -1.0)
                its, ok, *_ = _newton_binary(
                    A, t, pen, np.ones(q), theta, tol, 200, np.empty((q, q)), np.empty((n, q)), False, cert, work,
                )  # fmt: skip
                assert ok
                keep = work[_ROW_KEEP, :n]
                if out[1] == 1.0:  # proven, with the last factor's rows
                    np.testing.assert_array_equal(At @ theta > 0, At @ exact > 0)
                    left_out += int(negligible.any() and (keep == 0.0).any())
                else:  # the last Newton step took every row
                    assert (keep == 1.0).all()
                    ran_to_tol += 1
                    if tol == 1e-13:
                        np.testing.assert_allclose(A @ theta, z, rtol=0, atol=1e-9 * np.abs(z).max())
    assert left_out >= 3 and ran_to_tol >= 1


def test_certified_inner_problems_choose_the_same_C(monkeypatch):
    """Inner problems stopped on proofs of their test scores choose every outer fold's
    ``C`` as problems solved to ``tol`` do, and the refits' decisions agree to rounding,
    in far fewer iterations; with accuracy too (proofs of the test predictions)."""
    import fastsearchlight.estimators.logistic_cv as lcv

    rng = np.random.default_rng(3)
    X, y, groups = make_data(rng, 6, 72, 10, 2, raw=True)
    plan = make_plan("kfold", y, groups)
    for scoring in ("neg_log_loss", "accuracy"):
        runs = {}
        for bound in (0.0, lcv.SCORE_BOUND):
            monkeypatch.setattr(lcv, "SCORE_BOUND", bound)
            est = BatchedLogisticRegressionCV(scoring=scoring)
            runs[bound] = est.fit_folds(X, y, 2, plan), est.n_iter_, est.n_proven_, est.n_run_on_
        (exact, best_exact, _), exact_its, none_proven, _ = runs[0.0]
        (ours, best, _), its, proven, run_on = runs[lcv.SCORE_BOUND]
        assert none_proven == 0 and proven > 0.5 * est.n_problems_ and run_on < 0.1 * proven
        assert its < 0.8 * exact_its
        np.testing.assert_array_equal(best, best_exact)
        for f in range(plan.n_folds):
            np.testing.assert_allclose(ours[f], exact[f], rtol=0, atol=1e-9 * (1 + np.abs(exact[f]).max()))


def test_choice_in_doubt_runs_on_to_the_optimum(monkeypatch):
    """Where the proven intervals of the summed scores overlap (here: a bound as loose as
    the scores themselves), the ``C`` concerned run on to ``tol`` before the choice, which
    is then the exact one's."""
    import fastsearchlight.estimators.logistic_cv as lcv

    rng = np.random.default_rng(4)
    X, y, groups = make_data(rng, 4, 64, 8, 2, raw=True)
    plan = make_plan("logo", y, groups)
    monkeypatch.setattr(lcv, "SCORE_BOUND", 0.0)
    exact, best_exact, _ = BatchedLogisticRegressionCV().fit_folds(X, y, 2, plan)
    monkeypatch.setattr(lcv, "SCORE_BOUND", 2.0)
    est = BatchedLogisticRegressionCV()
    ours, best, _ = est.fit_folds(X, y, 2, plan)
    assert est.n_run_on_ > 0
    np.testing.assert_array_equal(best, best_exact)
    for f in range(plan.n_folds):
        np.testing.assert_allclose(ours[f], exact[f], rtol=0, atol=1e-9 * (1 + np.abs(exact[f]).max()))


def test_best_c_from_proven_intervals():
    """The chosen ``C`` is the largest summed score's, the first on ties; the choice is in
    doubt when another ``C``'s interval reaches its own, one of them not exact."""
    from fastsearchlight.estimators._logistic_cv_kernel import _best_c

    scores = np.array([[-0.5, -0.3, -0.4], [-0.6, -0.2, -0.4]])  # sums -1.1, -0.5, -0.8
    assert _best_c(scores, np.zeros_like(scores)) == (1, False)
    bounds = np.full_like(scores, 0.07)  # intervals of half-width 0.14: [-0.64, -0.36], [-0.94, -0.66]
    assert _best_c(scores, bounds) == (1, False)
    bounds[0, 2] = 0.1  # the third C's upper end -0.63 reaches the second's lower end -0.64
    assert _best_c(scores, bounds) == (1, True)
    tied = np.array([[-0.3, -0.3, -0.5]])
    assert _best_c(tied, np.zeros_like(tied)) == (0, False)  # exact ties: the first
    bounds = np.zeros_like(tied)
    bounds[0, 1] = 1e-9
    assert _best_c(tied, bounds) == (0, True)


def test_inner_origin_hessian_from_the_outer_gram():
    """An inner fold's first Hessian (at the origin) from the Gram matrix of the outer
    training rows minus that of its test rows equals the one summed over its training rows,
    on raw-scale rows (a large common offset, as raw BOLD values)."""
    from fastsearchlight.estimators._logistic_cv_kernel import _complement, _inner_origin_hessian

    rng = np.random.default_rng(11)
    n, q = 41, 13
    D = 1000.0 + rng.normal(size=(n, q))
    D[:, -1] = 1.0  # the constant feature
    test = np.sort(rng.choice(n, size=9, replace=False))
    train = np.setdiff1d(np.arange(n), test)
    gram = D.T @ D
    pen = np.full(q, 0.3)
    H = np.full((q, q), np.nan)
    _inner_origin_hessian(gram, D, np.r_[test, [0, 0]], 9, pen, H, np.empty((n, q)))  # padded
    direct = D[train].T @ D[train] / (4 * len(train)) + np.diag(pen)
    upper = np.triu_indices(q)
    np.testing.assert_allclose(H[upper], direct[upper], rtol=1e-12, atol=1e-12 * np.abs(direct).max())
    mark = np.empty(n, dtype=np.int64)
    assert _complement(train, len(train), test, 9, n, mark)
    assert not _complement(train[1:], len(train) - 1, test, 9, n, mark)  # a row in neither
    overlap = np.r_[train[1:], test[:1]]
    assert not _complement(overlap, len(overlap), test, 9, n, mark)  # a row in both


def test_test_score_is_sklearns_neg_log_loss_and_accuracy():
    """``_test_score``: minus scikit-learn's ``log_loss`` of the probabilities
    ``[1 - expit(z), expit(z)]`` (clipped there to ``[eps, 1 - eps]``), to rounding, over
    decisions from the smooth part to the clipped one, and the accuracy; on the rows named."""
    from sklearn.metrics import accuracy_score, log_loss

    from fastsearchlight.estimators._logistic_cv_kernel import _test_score

    rng = np.random.default_rng(8)
    n, q = 60, 5
    D = rng.normal(size=(n, q))
    theta = rng.normal(size=q)
    theta *= 45.0 / np.abs(D @ theta).max()  # decisions up to 45: probabilities clipped
    t = rng.integers(0, 2, n).astype(float)
    rows = np.sort(rng.choice(n, size=37, replace=False))
    z = D[rows] @ theta
    p1 = expit(z)
    ours = _test_score(D, np.r_[rows, [0, 0]], 37, t, theta, True, np.empty(n))
    assert np.abs(z).max() > 40 and np.abs(z).min() < 1
    np.testing.assert_allclose(ours, -log_loss(t[rows], np.c_[1 - p1, p1], labels=[0, 1]), rtol=1e-13)
    accuracy = _test_score(D, rows, 37, t, theta, False, np.empty(n))
    assert accuracy == accuracy_score(t[rows], z > 0)


def _liblinear_optimum(A, t, C):
    """The minimiser of ``0.5 |w|^2 + C sum log(1 + exp(-s_i w . a_i))`` by plain Newton with
    backtracking: 80 iterations, beyond the point where its decisions stop moving (at their
    rounding floor) on the test's problems."""
    w = np.zeros(A.shape[1])
    s = 2 * t - 1
    f = lambda v: 0.5 * v @ v + C * np.logaddexp(0, -s * (A @ v)).sum()  # noqa: E731
    for _ in range(80):
        p = expit(A @ w)
        g = w + C * A.T @ (p - t)
        step = -np.linalg.solve(np.eye(len(w)) + C * (A * (p * (1 - p))[:, None]).T @ A, g)
        a = 1.0
        while f(w + a * step) > f(w) + 1e-4 * a * g @ step + 1e-13 * abs(f(w)) and a > 1e-12:
            a /= 2
        w = w + a * step
    return w


def test_refit_reaches_the_optimum_on_nearly_separable_folds():
    """The refit's last steps (chord steps with the factor at hand, or a Newton step) end at
    the optimum of liblinear's objective to rounding, at a large ``C`` on raw-scale training
    sets that are nearly separable (decisions in the hundreds)."""
    rng = np.random.default_rng(12)
    X, y, groups = make_data(rng, 3, 40, 20, 2, raw=True)
    plan = make_plan("kfold", y, groups)
    est = BatchedLogisticRegressionCV(Cs=(1e4,), scoring="accuracy")
    ours, best, coefs = est.fit_folds(X, y, 2, plan)
    largest = 0.0
    for f, (tr, te) in enumerate(zip(plan.train_indices, plan.test_indices)):
        for s in range(X.shape[0]):
            A = np.c_[X[s, tr], np.ones(len(tr))]
            w = _liblinear_optimum(A, (y[tr] == 1).astype(float), 1e4)
            exact = np.c_[X[s, te], np.ones(len(te))] @ w
            largest = max(largest, np.abs(A @ w).max())
            np.testing.assert_allclose(ours[f][s], exact, rtol=0, atol=1e-9 * (1 + np.abs(exact).max()))
    assert largest > 50.0  # nearly separable: large training decisions

"""The rounding of ``RidgeClassifierCV``'s leave-one-out scores in the Gram form, against
the compiled kernel's unit (the calibration of ``ridge_cv._GRAM_TIE_MARGIN``).

With more features than training samples the kernel scores each alpha from the inverse of
``G = K + s 11' + alpha I`` (``K`` the centred Gram matrix of the training samples, ``s =
trace(K) / n^2`` with an intercept, 0 without). Two alphas whose scores are within
``gram_margin * eps * cond(G) * (1 + amp)`` (relative; ``amp`` the largest
``(1 - den) / den`` over the leave-one-out denominators ``den``) are a near-tie, which the
eigendecomposition path decides. This script measures, in that unit, how far
scikit-learn's scores (``RidgeClassifierCV(store_cv_results=True)``) and the
eigendecomposition path's are from the kernel's:

- on simulated problems: 20 to 162 training samples, ``d`` from ``n`` to ``n + 150``, raw
  BOLD-scale values (~1000 +- 50) or standardised ones, white or smooth across features, 2
  or 4 classes, the default alphas or 7 from 1e-3 to 1e3, with and without an intercept;
- with ``--spheres``, on the folds of random spheres of the simulated searchlight data of
  ``cost_growth.py`` (radius and runs given);
- with ``--exact`` (needs ``mpmath``), the kernel's own scores against 40-digit arithmetic
  on simulated problems of at most 40 training samples.

The kernel's scores are computed by the compiled functions it calls itself
(``_intercept_shifted``, ``_gram_alpha``, ``_loo_sse``).

Usage::

    python benchmarks/ridge_cv_rounding.py --problems 2000
    python benchmarks/ridge_cv_rounding.py --problems 0 --spheres 14.5 12 150
    python benchmarks/ridge_cv_rounding.py --problems 0 --exact 40
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from numba import njit

from fastsearchlight.estimators._ridge_cv_kernel import _gram_alpha, _intercept_shifted, _loo_sse
from fastsearchlight.estimators.ridge_cv import _Gram

EPS = np.finfo(np.float64).eps
DEFAULT_ALPHAS = np.array([0.1, 1.0, 10.0])


@njit(cache=True)
def kernel_scores(K, Yct, alphas, fit_intercept):
    """The Gram form's sums of squared leave-one-out errors per alpha, ``cond(G)`` at the
    smallest alpha and ``amp``, by the kernel's own function (``_gram_alpha``); ``cond``
    is -1 when a factorisation fails."""
    n = K.shape[0]
    Ks = _intercept_shifted(K, fit_intercept)
    G = np.empty((n, n))
    V = np.zeros(((n + 3) // 4 * 4, n))
    work, col, diag = np.empty(n), np.empty(n), np.empty(n)
    c = np.empty((Yct.shape[0], n))
    sse = np.zeros((alphas.shape[0], 1))
    kappa, amp = -1.0, 0.0
    a_min = np.argmin(alphas)
    for a in range(alphas.shape[0]):
        ok, cond, amp_a = _gram_alpha(Ks, alphas[a], Yct, fit_intercept, a == a_min, G, V, work, col, diag, c)
        if not ok:
            return sse, -1.0, 0.0
        if a == a_min:
            kappa = cond
        amp = max(amp, amp_a)
        _loo_sse(c, diag, n, Yct.shape[0], sse[a])
    return sse, kappa, amp


def targets(y, n_classes):
    Y = np.where(y[:, None] == np.arange(n_classes), 1.0, -1.0)
    return Y[:, 1:] if n_classes == 2 else Y


def measure(X, y, n_classes, alphas, fit_intercept):
    """(kernel scores, unit, scikit-learn's error, eigh path's error), errors relative to
    the kernel's scores and in its unit; None when the kernel's factorisation fails."""
    from sklearn.linear_model import RidgeClassifierCV

    n = X.shape[0]
    Xs = X - X.mean(axis=0) if fit_intercept else X  # the estimator's shift
    Xc = Xs - Xs.mean(axis=0) if fit_intercept else Xs
    K = Xc @ Xc.T
    K = (K + K.T) / 2
    Y = targets(y, n_classes)
    y_mean = Y.mean(axis=0) if fit_intercept else np.zeros(Y.shape[1])
    sse, kappa, amp = kernel_scores(K, np.ascontiguousarray((Y - y_mean).T), alphas, fit_intercept)
    if kappa < 0:
        return None
    ours = -sse[:, 0] / (n * Y.shape[1])
    unit = EPS * kappa * (1 + amp)
    ref = RidgeClassifierCV(alphas=alphas, fit_intercept=fit_intercept, store_cv_results=True).fit(X, y)
    sk = -ref.cv_results_.reshape(n, -1, len(alphas)).mean(axis=(0, 1))
    looe = _Gram(K[None], np.zeros((1, 1, n)), fit_intercept).loo_residuals(Y, y_mean, np.arange(n), alphas)
    eig = -(looe[0] ** 2).mean(axis=(0, 2))
    rel = lambda other: float(np.max(np.abs(other - ours) / np.abs(ours)))  # noqa: E731
    return ours, unit, rel(sk) / unit, rel(eig) / unit


def simulated(rng, max_train=None):
    n = int(rng.choice([m for m in (20, 28, 40, 81, 120, 162) if max_train is None or m <= max_train]))
    d = n + int(rng.choice([0, 1, 5, 20, 70, 150]))
    n_classes = int(rng.choice([2, 2, 4]))
    y = np.arange(n) % n_classes
    X = rng.standard_normal((n, d))
    if rng.integers(2):  # smooth across features, a shared component
        X = X + 2 * rng.standard_normal((n, 1)) + 0.3 * np.cumsum(rng.standard_normal((n, d)), axis=1)
    X[y == 1] += 0.3
    if rng.integers(2):
        X = 1000 + 50 * X
    alphas = DEFAULT_ALPHAS if rng.random() < 0.7 else np.logspace(-3, 3, 7)
    return X, y, n_classes, alphas, bool(rng.random() < 0.8)


def exact_scores(X, y, n_classes, alphas, fit_intercept):
    """The leave-one-out scores in 40-digit arithmetic (``mpmath``), from the raw ``X``."""
    import mpmath as mp

    mp.mp.dps = 40
    n, d = X.shape
    Xm = mp.matrix(X.tolist())
    Ym = mp.matrix(targets(y, n_classes).tolist())
    if fit_intercept:
        for j in range(d):
            m = mp.fsum(Xm[i, j] for i in range(n)) / n
            for i in range(n):
                Xm[i, j] -= m
        for q in range(Ym.cols):
            m = mp.fsum(Ym[i, q] for i in range(n)) / n
            for i in range(n):
                Ym[i, q] -= m
    K = Xm * Xm.T
    out = []
    for a in alphas:
        Gi = (K + mp.mpf(float(a)) * mp.eye(n)) ** -1
        total = 0
        for i in range(n):
            den = Gi[i, i] - (mp.fsum(Gi[i, k] for k in range(n)) / n if fit_intercept else 0)
            for q in range(Ym.cols):
                total += (mp.fsum(Gi[i, k] * Ym[k, q] for k in range(n)) / den) ** 2
        out.append(-float(total / (n * Ym.cols)))
    return np.array(out)


def sphere_problems(radius, runs, n_spheres, seed=0):
    """The Gram-form folds of random spheres of ``cost_growth.py``'s simulated data."""
    from profile_kernels import _prepare

    from fastsearchlight.cv import make_cv_plan
    from fastsearchlight.spaces.volume import build_neighbourhoods

    img, mask, y, groups, cv, radius_mm = _prepare(None, (radius, runs))
    inside = np.asarray(mask.dataobj) != 0
    spheres = build_neighbourhoods(inside, mask.affine, inside, mask.affine, radius_mm).adjacency.tocsr()
    data = np.asarray(img.dataobj)[inside].astype(np.float64)
    classes, labels = np.unique(y, return_inverse=True)
    plan = make_cv_plan(cv, labels, groups)
    rng = np.random.default_rng(seed)
    for s in rng.choice(spheres.shape[0], size=n_spheres, replace=False):
        X = data[spheres.indices[spheres.indptr[s] : spheres.indptr[s + 1]]].T
        for train in plan.train_indices:
            if len(train) <= X.shape[1]:
                yield X[train], labels[train], len(classes), DEFAULT_ALPHAS, True


def report(name, rows):
    if not rows:
        print(f"{name}: no problems")
        return
    r = np.array(rows)
    print(
        f"{name}: {len(r)} problems; in units of eps * cond(G) * (1 + amp), scikit-learn's scores "
        f"at most {r[:, 0].max():.3g} (median {np.median(r[:, 0]):.2g}) from the kernel's, the "
        f"eigendecomposition path's at most {r[:, 1].max():.3g}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=2000, help="simulated problems")
    parser.add_argument("--spheres", nargs=3, type=float, metavar=("RADIUS", "RUNS", "N"))
    parser.add_argument("--exact", type=int, default=0, metavar="N", help="problems checked in 40 digits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(args.seed)
    rows = []
    for _ in range(args.problems):
        got = measure(*simulated(rng))
        if got is not None:
            rows.append(got[2:])
    report("simulated problems", rows)
    if args.spheres:
        radius, runs, n = args.spheres
        rows = [got[2:] for p in sphere_problems(radius, runs, int(n)) if (got := measure(*p)) is not None]
        report(f"spheres of {radius:g} mm, {int(runs)} runs", rows)
    if args.exact:
        worst = {True: [0.0, 0.0], False: [0.0, 0.0]}  # intercept: (relative, in units)
        for _ in range(args.exact):
            problem = simulated(rng, max_train=40)
            got = measure(*problem)
            if got is not None:
                error = float(np.max(np.abs(got[0] - exact_scores(*problem)) / np.abs(got[0])))
                w = worst[problem[-1]]
                w[0], w[1] = max(w[0], error), max(w[1], error / got[1])
        for intercept, (relative, units) in worst.items():
            print(
                f"the kernel's scores against 40-digit arithmetic ({args.exact} problems), "
                f"{'with' if intercept else 'without'} an intercept: at most {relative:.2g} (relative), "
                f"{units:.2g} of its unit"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Proven-exact searchlight scores of the svc, sphere by sphere (for ``sphere_sizes.py``).

For every sphere of a process mask, the sphere's samples are extracted as nilearn's
``SearchLight`` extracts them (:func:`nilearn.maskers.nifti_spheres_masker.apply_mask_and_get_affinity`),
and every fold's ``LinearSVC`` problems (one per one-vs-rest class) are solved twice:

- by :class:`fastsearchlight.estimators.svm.BatchedLinearSVC` (``fit_weights`` on the one
  sphere, every problem in its primal kernel: our Newton solver, but not our masking,
  neighbourhoods or batching of spheres, and it returns the weights, which the searchlight's
  decision-only path does not form);
- by a tightly solved ``sklearn.svm.LinearSVC(dual=False, tol=1e-10, max_iter=100000)``.

The gradient of the objective at both solutions, and the certificate of our test predictions,
are computed in plain numpy (:mod:`fastsearchlight.estimators._certificate`). A fold whose
test predictions the certificate's bound cannot all decide (ill-conditioned problems, decisions
near zero) is solved again in exact rational arithmetic
(:func:`~fastsearchlight.estimators._certificate.exact_solution`, its active sets guessed from
our weights: a few seconds per fold at W1 12 mm). When every test prediction of a sphere is
proven either way, its accuracy (mean over folds, as ``cross_val_score``) is the exact
optimum's: the *exact score*, against which both tools' scores are compared.
"""

from __future__ import annotations

import warnings

import numpy as np

from fastsearchlight.estimators._certificate import (
    augment,
    certify,
    exact_solution,
    gradient,
    liblinear_weights,
    ovr_targets,
)


def _sphere_samples(img, mask_img, process_img, radius: float) -> tuple[np.ndarray, list]:
    """``(X, rows)``: the masked samples and each process-mask voxel's sphere (columns of
    ``X``), in the order of the process mask's voxels (``np.where``), as nilearn's
    ``SearchLight.fit``."""
    from nilearn.image import coord_transform
    from nilearn.maskers.nifti_spheres_masker import apply_mask_and_get_affinity

    process = np.asarray(process_img.dataobj) != 0
    ijk = np.where(process)
    coords = np.asarray(coord_transform(ijk[0], ijk[1], ijk[2], process_img.affine)).T
    X, A = apply_mask_and_get_affinity(coords, img, radius, True, mask_img=mask_img)
    return np.asarray(X, dtype=np.float64), list(A.rows)


def _primal_weights(svc, X, Y, W) -> np.ndarray:
    """``svc.fit_weights`` with every problem solved in the weights (the primal kernel).

    The Gram-space kernel (problems with many features per training sample) forms weights
    as ``X^T alpha``; on raw-scale data (values near 1000) the gradient at those weights is
    dominated by the rounding of that product (up to 0.5 at W1 12 mm, where the primal
    kernel's stays below 1e-6), too coarse for the bound, while its decisions, computed
    from the Gram matrix, are accurate. The certificate proves the exact scores from the
    primal kernel's weights; the searchlight's own scores, whichever kernel made them, are
    then compared with those (``ours_equals_exact``)."""
    from fastsearchlight.estimators import svm

    share, svm.GRAM_SHARE = svm.GRAM_SHARE, np.inf
    try:
        return svc.fit_weights(X, Y, W)
    finally:
        svm.GRAM_SHARE = share


def certify_spheres(
    img, y, groups, mask_img, process_img, radius: float, cv, C: float = 1.0, liblinear: bool = True
) -> dict:
    """Certificate, gradients and exact scores of every sphere of ``process_img``.

    Parameters
    ----------
    img, y, groups, mask_img, radius, cv
        As nilearn's ``SearchLight(mask_img=mask_img, radius=radius, cv=cv).fit(img, y, groups)``
        with ``estimator="svc"``.
    process_img : Niimg
        The spheres' centres.
    C : float
        ``LinearSVC``'s C.
    liblinear : bool
        Whether to refit the tight ``LinearSVC`` too (slow on large spheres: about 40 s per
        sphere at W1 12 mm); without it, ``liblinear_score`` and ``grad_liblinear`` are NaN.

    Returns
    -------
    dict of ndarray (n_spheres,), in the order of the process mask's voxels
        ``certified`` (bool: every test prediction of every fold certified by the bound),
        ``proven`` (bool: every fold's test predictions proven, by the bound or else in exact
        arithmetic), ``exact_score`` (accuracy of the proven predictions, NaN if not proven),
        ``liblinear_score``
        (tight ``LinearSVC``'s accuracy), ``grad_ours`` and ``grad_liblinear`` (the largest
        gradient norm over the sphere's problems).
    """
    from sklearn.svm import LinearSVC

    from fastsearchlight.estimators.svm import BatchedLinearSVC

    X, rows = _sphere_samples(img, mask_img, process_img, radius)
    y = np.asarray(y)
    classes = np.unique(y)
    splits = list(cv.split(X, y, groups))
    ours = BatchedLinearSVC(C=C)
    out = {
        k: np.full(len(rows), np.nan)
        for k in ("exact_score", "liblinear_score", "grad_ours", "grad_liblinear")
    }
    out["certified"] = np.zeros(len(rows), dtype=bool)
    out["proven"] = np.zeros(len(rows), dtype=bool)
    Yall = ovr_targets(y, classes)  # (P, n)
    P = Yall.shape[0]
    # every fold's problems of one sphere at once: problem f * P + p
    Yq = np.tile(Yall, (len(splits), 1))
    Wq = np.repeat(
        np.array([np.isin(np.arange(len(y)), tr) for tr, _ in splits], dtype=np.float64), P, axis=0
    )
    for i, row in enumerate(rows):
        Xs = X[:, row]
        w = _primal_weights(ours, Xs[None], Yq, Wq)[0]  # (F * P, k + 1)
        certified, proven, exact, tight, g_ours, g_lib = True, True, [], [], 0.0, 0.0
        for f, (train, test) in enumerate(splits):
            if not np.array_equal(np.unique(y[train]), classes):
                raise ValueError("a training fold lacks a class: LinearSVC's problems would differ")
            wf = w[f * P : (f + 1) * P]
            cert = certify(wf, Xs[train], y[train], Xs[test], classes, C)
            certified &= cert.all_certified
            predictions = cert.predictions
            if not cert.all_certified:  # in exact arithmetic
                solution = exact_solution(Xs[train], y[train], Xs[test], classes, C, w=wf)
                proven &= solution is not None
                if solution is not None:
                    predictions = solution.predictions
            exact.append(np.mean(predictions == y[test]))
            g_ours = max(g_ours, float(cert.grad_norms.max()))
            if not liblinear:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # liblinear's convergence warnings
                svc = LinearSVC(C=C, dual=False, tol=1e-10, max_iter=100000).fit(Xs[train], y[train])
            tight.append(svc.score(Xs[test], y[test]))
            wl = liblinear_weights(svc.coef_, svc.intercept_, svc.intercept_scaling)
            grad, _ = gradient(
                wl, augment(Xs[train], svc.intercept_scaling), ovr_targets(y[train], classes), C
            )
            g_lib = max(g_lib, float(np.linalg.norm(grad, axis=1).max()))
        out["certified"][i] = certified
        out["proven"][i] = proven
        out["exact_score"][i] = np.mean(exact) if proven else np.nan
        out["liblinear_score"][i] = np.mean(tight) if liblinear else np.nan
        out["grad_ours"][i] = g_ours
        out["grad_liblinear"][i] = g_lib if liblinear else np.nan
    return out


def summary(cert: dict, our_scores: np.ndarray | None = None) -> dict:
    """The result fields of :func:`certify_spheres`'s output: ``certified`` (share of spheres
    whose every test prediction is certified by the bound), ``proven`` (share whose every
    test prediction is proven, by the bound or in exact arithmetic), ``grad_max_ours``,
    ``grad_max_liblinear``, and, over the proven spheres, ``liblinear_equals_exact`` (share
    whose tight ``LinearSVC`` score equals the exact score) and ``ours_equals_exact`` (the same
    for ``our_scores``, the searchlight's scores of the same spheres, if given)."""
    ok = cert["proven"]
    same = lambda s: (
        float(np.mean(np.isclose(s[ok], cert["exact_score"][ok], rtol=0, atol=1e-12)))
        if ok.any()
        else float("nan")
    )
    out = {
        "certified": float(cert["certified"].mean()),
        "proven": float(ok.mean()),
        "grad_max_ours": float(np.max(cert["grad_ours"])),
        "grad_max_liblinear": float(np.max(cert["grad_liblinear"])),
        # (NaN when the tight LinearSVC was not refitted)
        "liblinear_equals_exact": (
            same(cert["liblinear_score"]) if not np.isnan(cert["liblinear_score"]).all() else float("nan")
        ),
    }
    if our_scores is not None:
        out["ours_equals_exact"] = same(np.asarray(our_scores, dtype=np.float64))
    return out

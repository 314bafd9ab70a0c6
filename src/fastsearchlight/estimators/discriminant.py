"""Batched linear discriminant analysis.

:class:`BatchedLDA` reproduces scikit-learn's
``LinearDiscriminantAnalysis(solver="lsqr", shrinkage=...)`` fitted on every sphere and
every fold, from the fold statistics of :mod:`._fold_statistics`: in the feature space
by one compiled kernel per block of spheres (:func:`._lda_kernel.lda_block`), or, with
Ledoit-Wolf shrinkage and more features than training samples, in the sample space.
"""

from __future__ import annotations

import warnings
from numbers import Real

import numpy as np

from ..cv import CVPlan
from ._fold_statistics import (
    FoldBlocks,
    block_grams,
    block_sums,
    block_sums_of_squares,
    diagonal_view,
    gather,
    gather_centered,
    linear_test_decisions,
    make_fold_blocks,
)
from ._lda_kernel import lda_block, lda_layout
from .base import BatchedClassifier, fold_decisions_by_slab

# with the fold statistics callers import from this module
__all__ = ["BatchedLDA", "block_grams", "block_sums", "gather", "make_fold_blocks"]

_EPS = np.finfo(np.float64).eps


class BatchedLDA(BatchedClassifier):
    """Linear discriminant analysis for every sphere and fold at once.

    Reproduces ``sklearn.discriminant_analysis.LinearDiscriminantAnalysis(
    solver="lsqr", shrinkage=shrinkage, priors=priors)``: class means and a
    within-class covariance estimated on each fold's training set, ``coef = cov^-1 @
    means.T`` and ``intercept = -0.5 * diag(means @ coef) + log(priors)``; for two
    classes the decision is the difference of the class-1 and class-0 rows.

    Parameters
    ----------
    solver : {"lsqr"}, default="lsqr"
        Only the least-squares solver is reproduced (the decisions of ``"eigen"`` are
        the same up to rounding when the covariance is invertible).
    shrinkage : "auto", float in [0, 1] or None, default="auto"
        Shrinkage of each class covariance, as scikit-learn applies it:

        - ``"auto"``: Ledoit-Wolf shrinkage of the standardised class data, rescaled to
          the data's units (a feature that is constant within a class keeps the scale 1,
          as scikit-learn's ``StandardScaler`` does);
        - float ``s``: ``(1 - s) * cov + s * trace(cov) / p * I``;
        - None: the empirical (biased) class covariance.

        The class covariances are averaged with the class priors as weights.
    priors : array-like of shape (n_classes,) or None, default=None
        Class priors; by default the class frequencies of the fold's training set.

    Notes
    -----
    With ``shrinkage=None`` (or 0) the covariance is singular when a feature has no
    within-class variance; scikit-learn's least-squares solution then gives such a
    feature a zero weight (its singular value is below the ``lstsq`` cut-off), which is
    reproduced by removing the features whose pooled variance is at most ``eps`` times the
    covariance trace. Other rank deficiencies (more features than training samples,
    collinear features) are not reproduced: the covariance is assumed invertible
    otherwise.
    """

    reference = "sklearn.discriminant_analysis.LinearDiscriminantAnalysis(solver='lsqr')"

    def __init__(
        self,
        solver: str = "lsqr",
        shrinkage: str | float | None = "auto",
        priors: np.ndarray | None = None,
    ) -> None:
        self.solver = solver
        self.shrinkage = shrinkage
        self.priors = priors

    def _check_params(self, n_classes: int) -> np.ndarray | None:
        if self.solver != "lsqr":
            raise ValueError(f"Only solver='lsqr' is implemented, got {self.solver!r}.")
        s = self.shrinkage
        if isinstance(s, str):
            if s != "auto":
                raise ValueError(f"shrinkage must be 'auto', a float or None, got {s!r}.")
        elif s is not None:
            if not isinstance(s, Real) or not 0.0 <= float(s) <= 1.0:
                raise ValueError(f"shrinkage must lie in [0, 1], got {s!r}.")
        if self.priors is None:
            return None
        priors = np.asarray(self.priors, dtype=np.float64).ravel()
        if priors.shape != (n_classes,):
            raise ValueError("The number of priors must match the number of classes.")
        if np.any(priors < 0):
            raise ValueError("priors must be non-negative")
        if abs(priors.sum() - 1.0) > 1e-5:
            warnings.warn("The priors do not sum to 1. Renormalizing", UserWarning, stacklevel=2)
            priors = priors / priors.sum()
        return priors

    def releases_gil(self, n_features: int, n_train: int) -> bool:
        """The feature-space fits run in one compiled kernel without the interpreter lock
        (:func:`._lda_kernel.lda_block`); the sample-space ones (Ledoit-Wolf shrinkage with
        more features than training samples) in numpy."""
        return not self._sample_space(n_features, n_train)

    def _sample_space(self, n_features: int, n_train: int) -> bool:
        """Whether spheres of ``n_features`` voxels are solved in the sample space."""
        return self.shrinkage == "auto" and n_features > n_train

    def fold_decisions(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
        """LDA decisions of every sphere on every fold's test set.

        Parameters and result are those of :meth:`BatchedClassifier.fold_decisions`; the
        values are ``LinearDiscriminantAnalysis.decision_function``'s.
        """
        priors = self._check_params(n_classes)
        X = np.asarray(X, dtype=np.float64)
        if self._sample_space(X.shape[2], max(len(tr) for tr in plan.train_indices)):
            return fold_decisions_by_slab(
                X, y, n_classes, plan, lambda Xs, blocks: self._slab(Xs, blocks, priors, y, plan)
            )
        return self._kernel_decisions(*_voxel_major(X), y, n_classes, plan, priors)

    def many_fold_decisions_at(
        self, X: np.ndarray, vox: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`many_fold_decisions` of the spheres ``vox`` (rows of the voxel-major data
        ``X``); in the feature space, read sphere by sphere by the compiled kernel."""
        priors = self._check_params(n_classes)
        if self._sample_space(vox.shape[1], max(len(tr) for tr in plan.train_indices)):
            return super().many_fold_decisions_at(X, vox, ys, n_classes, plan)
        return [self._kernel_decisions(X, vox, y, n_classes, plan, priors) for y in np.atleast_2d(ys)]

    def _kernel_decisions(
        self,
        Xv: np.ndarray,
        vox: np.ndarray,
        y: np.ndarray,
        n_classes: int,
        plan: CVPlan,
        priors: np.ndarray | None,
    ) -> list[np.ndarray]:
        """Feature-space decisions of the spheres ``vox`` (rows of the voxel-major data
        ``Xv``), one compiled call (:func:`._lda_kernel.lda_block`).

        Returns
        -------
        list of ndarray, one per fold
            As :meth:`fold_decisions`.
        """
        blocks = make_fold_blocks(np.asarray(y), n_classes, plan)
        counts = blocks.train_counts
        if priors is None:
            prior = counts / counts.sum(axis=1, keepdims=True)
        else:
            prior = np.broadcast_to(priors, counts.shape).astype(np.float64)
        lay = lda_layout(blocks, plan)
        s = self.shrinkage
        dec = lda_block(
            np.ascontiguousarray(Xv, dtype=np.float64), np.ascontiguousarray(vox, dtype=np.int64),
            lay["order"], lay["bounds"], lay["block_class"], lay["class_bounds"], lay["used"],
            lay["fc_blocks"], lay["fc_sub"], lay["test_pos"], lay["n_test"], counts,
            np.ascontiguousarray(prior), np.log(prior), s == "auto",
            0.0 if s is None or s == "auto" else float(s),
        )  # fmt: skip
        folds = [dec[:, f, : lay["n_test"][f]] for f in range(plan.n_folds)]
        return [d[..., 0] for d in folds] if n_classes == 2 else folds

    def _slab(
        self, X: np.ndarray, blocks: FoldBlocks, priors: np.ndarray | None, y: np.ndarray, plan: CVPlan
    ) -> list[np.ndarray]:
        """Sample-space decisions of every fold (test samples in plan order) for a slab of
        spheres with more features than training samples (:meth:`_sample_space_solver`);
        the spheres it cannot solve there are computed in the feature space."""
        n_classes, n_folds = blocks.n_classes, blocks.n_folds
        U, ref, shift = gather_centered(X, blocks)  # (n, S, p), (C, S, p)

        counts = blocks.train_counts  # (F, C)
        inv_n = 1.0 / counts
        # training class means relative to the class reference, (F, C, S, p)
        mean_u = blocks.fold_class_sums(block_sums(U, blocks))
        mean_u *= inv_n[:, :, None, None]
        if priors is None:
            prior = counts / counts.sum(axis=1, keepdims=True)
        else:
            prior = np.broadcast_to(priors, (n_folds, n_classes))
        # class means in the common frame X - ref[0], (F, S, C, p)
        means = (shift[None] + mean_u).transpose(0, 2, 1, 3)
        log_prior = np.log(prior)  # (F, C)
        solve, fallback = self._sample_space_solver(U, ref, blocks, mean_u, prior)
        if n_classes == 2:
            out = _binary_decisions(U, shift, blocks, solve, None, means, log_prior)
        else:
            out = _multiclass_decisions(U, ref, shift, blocks, solve, None, means, log_prior)
        if fallback.any():
            redo = self._kernel_decisions(*_voxel_major(X[fallback]), y, n_classes, plan, priors)
            for dec, exact in zip(out, redo):
                dec[fallback] = exact
        return out

    def _sample_space_solver(
        self, U: np.ndarray, ref: np.ndarray, blocks: FoldBlocks, mean_u: np.ndarray, prior: np.ndarray
    ):
        """Solves with the Ledoit-Wolf pooled covariance of every fold in the sample space,
        for spheres with more features than training samples.

        The pooled covariance is ``Z'Z + diag(D)``: ``Z`` holds the training samples centred
        on their class mean, each scaled by ``sqrt(alpha_c / n_c)`` (``alpha_c`` the prior
        of its class times one minus its shrinkage), and ``D`` is the shrinkage target of
        every class weighted by its prior and shrinkage. By the Woodbury identity,
        ``(Z'Z + D)^-1 r = D^-1 r - D^-1 Z' (I + Z D^-1 Z')^-1 Z D^-1 r``: one system of the
        size of the training set per fold, instead of one of the number of features. The
        shrinkage itself is computed in the sample space too (:meth:`_ledoit_wolf` with the
        class Gram matrices).

        Parameters
        ----------
        U, ref : ndarray
            Class-centred data and class references (:func:`gather_centered`).
        blocks : FoldBlocks
        mean_u : ndarray of shape (n_folds, n_classes, n_spheres, p)
        prior : ndarray of shape (n_folds, n_classes)

        Returns
        -------
        solve : callable
            ``solve(rhs)``, rhs of shape (n_folds, n_spheres, p, k): the solutions
            ``pooled^-1 rhs``.
        fallback : ndarray of bool of shape (n_spheres,)
            Spheres to compute in the feature space instead: those with a feature without
            within-class variance or a null shrinkage target (whose pooled covariance may be
            singular; scikit-learn's least-squares solution is then reproduced there).
        """
        n_spheres, p = U.shape[1], U.shape[2]
        n_folds, n_classes = prior.shape
        counts = blocks.train_counts
        inv_n = 1.0 / counts
        n_train = int(counts.sum(axis=1).max())
        var = blocks.fold_class_sums(block_sums_of_squares(U, blocks)) * inv_n[:, :, None, None]
        var -= mean_u * mean_u
        mean_raw = ref[None] + mean_u
        nfc = counts[:, :, None, None]
        constant = var <= nfc * _EPS * var + (nfc * mean_raw * _EPS) ** 2
        scale2 = np.where(constant, 1.0, var)
        shrink, mu = self._ledoit_wolf(U, blocks, mean_u, var, scale2)
        alpha = prior[:, :, None] * (1.0 - shrink)  # (F, C, S)
        D = np.einsum("fcs,fcsj->fsj", prior[:, :, None] * shrink * mu, scale2)  # (F, S, p)
        pdiag = np.einsum("fcs,fcsj->fsj", alpha, var) + D
        # as _isolate_null_features: a feature without pooled variance; or a target that
        # leaves the pooled covariance (nearly) singular
        bad = (pdiag <= _EPS * pdiag.sum(axis=-1, keepdims=True)) | (D <= 1e-8 * pdiag)
        fallback = bad.any(axis=(0, 2))
        D = np.where(bad, 1.0, D)
        d_inv = 1.0 / D
        # Z of every fold, (F, S, n_train, p): the training samples of each class, in block
        # order (zero rows where a fold trains on fewer samples: they change nothing)
        Z = np.zeros((n_folds, n_spheres, n_train, p))
        for f in range(n_folds):
            at = 0
            for c in range(n_classes):
                sl = blocks.class_slice(c)
                rows = np.flatnonzero(blocks.sample_train[f, sl]) + sl.start
                zc = Z[f, :, at : at + len(rows)]
                np.subtract(U[rows].transpose(1, 0, 2), mean_u[f, c][:, None, :], out=zc)
                zc *= np.sqrt(alpha[f, c] * inv_n[f, c])[:, None, None]
                at += len(rows)
        ZD = Z * d_inv[:, :, None, :]
        M = np.matmul(ZD, Z.transpose(0, 1, 3, 2))  # (F, S, n_train, n_train)
        diagonal_view(M)[...] += 1.0

        def solve(rhs: np.ndarray) -> np.ndarray:
            y1 = rhs * d_inv[..., None]
            t = np.linalg.solve(M, np.matmul(Z, y1))  # (F, S, n_train, k)
            return y1 - np.matmul(ZD.transpose(0, 1, 3, 2), t)

        return solve, fallback

    @staticmethod
    def _ledoit_wolf(
        U: np.ndarray,
        blocks: FoldBlocks,
        mean_u: np.ndarray,
        var: np.ndarray,
        scale2: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ledoit-Wolf shrinkage of the standardised training data of each fold and class.

        With ``z = (x - mean) / scale`` (``scale2 = scale**2``), ``R`` the covariance of
        ``z`` and ``mu = trace(R) / p``, the shrinkage is ``min(beta, delta) / delta``
        (0 if ``beta`` is 0, and 0 for a single feature) with ``delta = ||R - mu I||^2 /
        p`` and ``beta = (mean_i ||z_i||^4 - ||R||^2) / (p n)``.

        Parameters
        ----------
        U : ndarray of shape (n_spheres, n_samples, p)
            Class-centred data in block order.
        blocks : FoldBlocks
        mean_u, var, scale2 : ndarray of shape (n_folds, n_classes, n_spheres, p)
            Training means of ``U``, variances and squared scales.

        Returns
        -------
        shrinkage, mu : ndarray of shape (n_folds, n_classes, n_spheres)
        """
        n_folds, n_classes, n_spheres, p = mean_u.shape
        inv_n = (1.0 / blocks.train_counts)[:, :, None]  # (F, C, 1)
        w = 1.0 / scale2
        mu = np.einsum("fcsj,fcsj->fcs", var, w) / p
        if p == 1:
            return np.zeros(mu.shape), mu

        # ||R||_F^2 without forming R (Sigma = G / n - m m^T, G the class cross-products):
        # sum_jk w_j w_k Sigma_jk^2
        #   = w.(G*G).w / n^2 - 2 (w m).G.(w m) / n + (sum_j w_j m_j^2)^2,
        # those sums from the Gram matrices of the training samples of each class
        wm = w * mean_u
        wmm = np.einsum("fcsj,fcsj->fcs", wm, mean_u)
        delta_, Gwm2 = _class_gram_sums(U, blocks, w, wm)
        delta_ *= inv_n**2
        delta_ -= 2.0 * inv_n * Gwm2
        delta_ += wmm * wmm
        delta = (delta_ - p * mu * mu) / p

        # sum over the training samples of ||z_i||^4, with
        # ||z_i||^2 = sum_j w_j u_ij^2 - 2 sum_j w_j m_j u_ij + sum_j w_j m_j^2
        W = w.transpose(1, 2, 3, 0)  # (C, S, p, F)
        WM = (-2.0 * wm).transpose(1, 2, 3, 0)
        K = wmm.transpose(1, 2, 0)[:, :, None, :]  # (C, S, 1, F)
        fourth = np.empty((n_folds, n_classes, n_spheres))
        for c in range(n_classes):
            sl = blocks.class_slice(c)
            Uc = U[sl].transpose(1, 0, 2)  # (S, n_c, p)
            q = np.matmul(Uc * Uc, W[c])
            q += np.matmul(Uc, WM[c])
            q += K[c]  # (S, n_c, F): ||z_i||^2 for every sample of the class and fold
            q *= q
            # keep the folds in which the sample trains
            fourth[:, c] = np.einsum("snf,fn->fs", q, blocks.sample_train[:, sl].astype(np.float64))
        beta = (fourth * inv_n - delta_) * (inv_n / p)
        beta = np.minimum(beta, delta)
        with np.errstate(divide="ignore", invalid="ignore"):
            shrink = np.where(beta == 0, 0.0, beta / delta)
        return shrink, mu

    def bytes_per_sphere(self, n_samples: int, n_features: int, n_folds: int, n_classes: int) -> int:
        """Peak working memory per sphere: the input block and the decisions (the
        temporaries are bounded by the slab size, see :data:`._fold_statistics.SLAB_BYTES`)."""
        return 8 * n_samples * (n_features + 2 * n_classes)


def _binary_decisions(U, shift, blocks: FoldBlocks, solve, keep, means, log_prior) -> list[np.ndarray]:
    """Two-class LDA decisions of every fold: ``x @ w + b`` with ``w = cov^-1 (m_1 - m_0)``.

    Parameters
    ----------
    U, shift : ndarray
        Class-centred data and class shifts (:func:`gather_centered`).
    blocks : FoldBlocks
    solve : callable
        ``solve(rhs)``: the pooled covariance of every fold and sphere solved for ``rhs``
        of shape (n_folds, n_spheres, p, k).
    keep : ndarray of bool or None
        From :meth:`BatchedLDA._pooled_covariance`.
    means : ndarray of shape (n_folds, n_spheres, n_classes, p)
        Training class means in the common frame ``X - ref[0]``.
    log_prior : ndarray of shape (n_folds, n_classes)

    Returns
    -------
    list of ndarray of shape (n_spheres, n_test), one per fold
    """
    rhs = means[:, :, 1] - means[:, :, 0]  # (F, S, p)
    if keep is not None:
        rhs *= keep
    w = solve(rhs[..., None])  # (F, S, p, 1)
    mid = 0.5 * (means[:, :, 0] + means[:, :, 1])
    b = np.matmul(mid[:, :, None, :], w)[..., 0]  # (F, S, 1)
    b *= -1.0
    b += (log_prior[:, 1] - log_prior[:, 0])[:, None, None]
    return [linear_test_decisions(U, shift, blocks, f, w[f], b[f])[..., 0] for f in range(blocks.n_folds)]


def _multiclass_decisions(
    U, ref, shift, blocks: FoldBlocks, solve, keep, means, log_prior
) -> list[np.ndarray]:
    """LDA decisions of every fold for more than two classes, ``(n_spheres, n_test,
    n_classes)`` per fold; the arguments (and ``ref``, the class references) as for
    :func:`_binary_decisions`."""
    n_classes, p = blocks.n_classes, U.shape[2]
    g = ref[0]  # (S, p): origin of the common frame
    rhs = np.empty(means.shape[:2] + (p, n_classes + 1))
    rhs[..., :n_classes] = means.transpose(0, 1, 3, 2)
    rhs[..., n_classes] = g
    if keep is not None:
        rhs *= keep[..., None]
    sol = solve(rhs)  # (F, S, p, C + 1)
    v, h = sol[..., :n_classes], sol[..., n_classes]  # cov^-1 (m_c - g), cov^-1 g
    coef = v + h[..., None]  # (F, S, p, C): scikit-learn's coef_.T
    # intercept in the common frame: -0.5 (m_c - g).v_c + 0.5 g.h + log prior_c
    icpt = -0.5 * np.einsum("fscp,fspc->fsc", means, v)
    icpt += 0.5 * np.einsum("sp,fsp->fs", g, h)[..., None]
    icpt += log_prior[:, None, :]
    return [linear_test_decisions(U, shift, blocks, f, coef[f], icpt[f]) for f in range(blocks.n_folds)]


def _class_gram_sums(
    U: np.ndarray, blocks: FoldBlocks, w: np.ndarray, wm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``w.(G*G).w`` and ``(w m).G.(w m)`` of every fold and class without ``G``.

    With ``G = U_fc' U_fc`` the cross-products of the training samples of class ``c`` in
    fold ``f``: ``w.(G*G).w = ||U_fc diag(w) U_fc'||^2`` (Frobenius) and
    ``(w m).G.(w m) = ||U_fc (w m)||^2``, sums over pairs of samples instead of features.

    Parameters
    ----------
    U : ndarray of shape (n_samples, n_spheres, p)
        Class-centred data in block order.
    blocks : FoldBlocks
    w, wm : ndarray of shape (n_folds, n_classes, n_spheres, p)

    Returns
    -------
    two ndarrays of shape (n_folds, n_classes, n_spheres)
    """
    n_folds, n_classes, n_spheres, _ = w.shape
    ww = np.empty((n_folds, n_classes, n_spheres))
    mm = np.empty((n_folds, n_classes, n_spheres))
    for c in range(n_classes):
        sl = blocks.class_slice(c)
        Uc = U[sl].transpose(1, 0, 2)  # (S, n_c, p)
        train = blocks.sample_train[:, sl].astype(np.float64)  # (F, n_c)
        K = np.matmul(Uc[None] * w[:, c, :, None, :], Uc.transpose(0, 2, 1)[None])  # (F, S, n_c, n_c)
        K *= K
        ww[:, c] = np.einsum("fsik,fi,fk->fs", K, train, train)
        q = np.matmul(Uc[None], wm[:, c, :, :, None])[..., 0]  # (F, S, n_c)
        mm[:, c] = np.einsum("fsi,fi->fs", q * q, train)
    return ww, mm


def _voxel_major(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spheres ``X`` (n_spheres, n_samples, p) as voxel-major data (n_spheres * p,
    n_samples) and each sphere's rows of it (n_spheres, p)."""
    n_spheres, n_samples, p = X.shape
    Xv = np.ascontiguousarray(X.transpose(0, 2, 1)).reshape(n_spheres * p, n_samples)
    return Xv, np.arange(n_spheres * p, dtype=np.int64).reshape(n_spheres, p)

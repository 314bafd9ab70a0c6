"""Batched ridge classifier with efficient leave-one-out choice of alpha, as ``RidgeClassifierCV``.

For every (sphere, fold) problem this reproduces scikit-learn's
``RidgeClassifierCV(alphas, fit_intercept)`` with its default ``cv=None`` (efficient
leave-one-out, "generalised cross-validation"), fitted on the fold's training samples:

1. Targets are ``-1 / +1`` (``LabelBinarizer(pos_label=1, neg_label=-1)``): one column for
   two classes (class 1 positive), one column per class otherwise.
2. With ``fit_intercept`` the training features and targets are centred, so the intercept is
   not penalised: ``Xc = X - mean(X)``, ``Yc = Y - mean(Y)``.
3. For every alpha the exact leave-one-out residuals of the ridge fit are::

       looe_i = (Yc - Xc B_alpha)_i / (1 - h_ii - 1/n)

   with ``B_alpha = (Xc'Xc + alpha I)^-1 Xc'Yc`` and ``h_ii`` the diagonal of
   ``Xc (Xc'Xc + alpha I)^-1 Xc'``; the ``1/n`` term is the leverage of the (unpenalised)
   intercept column, which is orthogonal to the centred features. Without an intercept
   there is no centring and no ``1/n`` term.
4. The score of an alpha is minus the mean of ``looe**2`` over samples and target columns;
   the best alpha is the first one with the highest score (a later alpha replaces the
   current best only if its score is strictly higher, as scikit-learn does).
5. The returned model is the ridge fit with that alpha; the decision is
   ``(X - mean(X_train)) B + mean(Y_train)``.

Like scikit-learn (``gcv_mode=None``), the ``d x d`` centred covariance ``Xc'Xc`` is used
when the training set has more samples than features, and the ``n x n`` Gram matrix
``Xc Xc'`` otherwise (in dual form: with ``G = Xc Xc' + alpha I`` and ``c = G^-1 Yc``,
``looe_i = c_i / (G^-1_ii - (G^-1 1)_i / n)``). Both give the same errors in exact
arithmetic; following scikit-learn's choice keeps the rounding behaviour close to its own
when the covariance is rank deficient.

Two implementations, one for each role:

- **the compiled kernel** (:func:`._ridge_cv_kernel.ridge_cv_block`), which solves every
  problem first: per sphere, fold and alpha one Cholesky factorisation of
  ``Xc'Xc + alpha I`` (its triangular solve of the training samples gives the leverages)
  or of ``G`` (its inverse gives the denominators), read sphere by sphere from the
  voxel-major data, without the interpreter lock;
- **the eigendecomposition path** (:meth:`BatchedRidgeClassifierCV._eigh_run`, the classes
  below), one batched ``eigh`` per fold and block of spheres serving every alpha, which
  decides the problems the kernel flags as near-ties: two alphas' scores within the
  kernel's rounding margin (see :mod:`._ridge_cv_kernel`), where Cholesky's rounding and
  the eigendecomposition's could choose differently. Those problems get exactly the
  choice and decisions of the eigendecomposition path, which was this estimator's only
  path before the kernel (same score maps on the benchmark rows, measured by hash).

Sharing across folds (covariance form, both implementations): each fold's covariance is
the total cross-products minus those of the samples it leaves out (the total itself the
sum of parts), corrected by the training mean. In the eigendecomposition path every sample
of the block is projected on the fold's eigenbasis once: the training samples give the
leave-one-out errors, the test samples the decisions (``Xc_test B`` for the chosen alpha is
read from the same fitted values), so no per-fold copy of the training samples is made.

Conditioning: before anything else, every sphere's features are shifted by their mean over
all samples. With an intercept this is an exact reparametrisation (the fitted coefficients
do not change, the intercept absorbs the shift) and it removes the large common offset of
raw BOLD values (~1000) from every product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..cv import CVPlan
from ._ridge_cv_kernel import ridge_cv_block
from ._ridge_kernel import role_blocks
from .base import BatchedClassifier, as_slice, as_voxel_major, binary_targets

__all__ = ["BatchedRidgeClassifierCV"]

#: spheres per block (keeps a block's arrays in cache)
_BLOCK = 256


class BatchedRidgeClassifierCV(BatchedClassifier):
    """Batched equivalent of ``sklearn.linear_model.RidgeClassifierCV`` (``cv=None``).

    Parameters
    ----------
    alphas : sequence of float, default=(0.1, 1.0, 10.0)
        Candidate regularisation strengths, all > 0. The one with the lowest mean squared
        leave-one-out error on the training set is used (the first one on ties).
    fit_intercept : bool, default=True
        Whether to fit an unpenalised intercept (features and targets are centred).

    Notes
    -----
    Work per fold and sphere: one Cholesky factorisation per alpha of the centred
    covariance plus a triangular solve of the training samples (or of the Gram matrix plus
    its inverse), in a compiled kernel; near-ties between alphas are solved again by
    eigendecomposition (see the module's docstring). For scores of the predictions alone
    (accuracy), a covariance-form fold whose alphas all predict alike skips the triangular
    solve (:meth:`many_fold_decisions_for_predictions_at`).
    """

    reference = "sklearn.linear_model.RidgeClassifierCV(cv=None)"

    def __init__(
        self,
        alphas: Sequence[float] | np.ndarray = (0.1, 1.0, 10.0),
        fit_intercept: bool = True,
    ):
        self.alphas = alphas
        self.fit_intercept = fit_intercept

    def _checked_alphas(self) -> np.ndarray:
        alphas = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64))
        if alphas.ndim != 1 or alphas.size == 0:
            raise ValueError("alphas must be a non-empty 1-d sequence of floats.")
        if not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise ValueError(f"alphas must be finite and > 0, got {alphas!r}.")
        return alphas

    def bytes_per_sphere(self, n_samples: int, n_features: int, n_folds: int, n_classes: int) -> int:
        n_targets = 1 if n_classes == 2 else n_classes
        # the decisions of every fold; the working arrays belong to blocks of spheres
        # (_BLOCK at a time) and are counted as one shifted copy of the data
        per = n_samples * n_targets + n_samples * n_features + n_folds
        return 8 * per

    def releases_gil(self, n_features: int, n_train: int) -> bool:
        """The fits run in one compiled kernel without the interpreter lock
        (:func:`._ridge_cv_kernel.ridge_cv_block`); the few near-ties solved again by
        eigendecomposition spend their time in LAPACK."""
        return True

    def fold_decisions(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
        """Decisions with the leave-one-out alpha, for every sphere on every fold.

        Parameters and result are those of :meth:`BatchedClassifier.fold_decisions`.
        """
        return self.many_fold_decisions(X, np.asarray(y)[None, :], n_classes, plan)[0]

    def many_fold_decisions(
        self, X: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`fold_decisions` for several label vectors (e.g. permutations) at once.

        The factorisations of every sphere, fold and alpha do not depend on the labels, so
        they are computed once and shared by all label vectors.

        Parameters
        ----------
        X : ndarray of shape (n_spheres, n_samples, n_features)
        ys : ndarray of int of shape (n_label_sets, n_samples)
        n_classes : int
        plan : CVPlan

        Returns
        -------
        list (one per label vector) of lists (one per fold) of decision arrays
        """
        return self._run(*as_voxel_major(X), ys, n_classes, plan)[0]

    def many_fold_decisions_at(
        self, X: np.ndarray, vox: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`many_fold_decisions` of the spheres ``vox`` (rows of the voxel-major data
        ``X``), read sphere by sphere by the compiled kernel."""
        return self._run(X, vox, ys, n_classes, plan)[0]

    def many_fold_decisions_for_predictions_at(
        self, X: np.ndarray, vox: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[list[np.ndarray]]:
        """:meth:`many_fold_decisions_at` for scores of the predictions alone.

        A fold where every alpha gives every test sample the same prediction, by more than
        a bound on the decisions' rounding, needs no leave-one-out choice: whichever alpha
        it would choose, the predictions are the same. Such folds return the largest
        alpha's decisions and skip the leave-one-out errors (in the covariance form, more
        training samples than features, a triangular solve of every training sample per
        alpha, most of the work; in the Gram form, from 64 training samples, an inverse of
        the Gram matrix per alpha), and the other alphas' factorisations (their solutions
        from the largest alpha's factor by a series, refined where needed); the others are
        solved as :meth:`many_fold_decisions_at` does (see :mod:`._ridge_cv_kernel`). A
        block of spheres that proves fewer than a quarter of its folds stops trying.
        """
        return self._run(X, vox, ys, n_classes, plan, for_predictions=True)[0]

    def fold_alphas(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
        """The alpha chosen by leave-one-out for every sphere on every fold, given the
        arguments of :meth:`fold_decisions`.

        Returns
        -------
        list of ndarray of shape (n_spheres,), one per fold
        """
        return self._run(*as_voxel_major(X), np.asarray(y)[None, :], n_classes, plan)[1][0]

    def _run(
        self,
        Xv: np.ndarray,
        vox: np.ndarray,
        ys: np.ndarray,
        n_classes: int,
        plan: CVPlan,
        for_predictions: bool = False,
    ) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
        """Decisions and chosen alphas, per label vector and fold, of the spheres ``vox``
        (rows of the voxel-major ``Xv``): the compiled kernel, then the eigendecomposition
        path for the problems it flags (near-ties between alphas).

        With ``for_predictions``, folds whose alphas all predict alike skip the choice
        (see :meth:`many_fold_decisions_for_predictions_at`): their chosen alpha is NaN."""
        alphas = self._checked_alphas()
        Xv = np.ascontiguousarray(Xv, dtype=np.float64)
        vox = np.ascontiguousarray(vox, dtype=np.int64)
        ys = np.atleast_2d(np.asarray(ys))
        if Xv.ndim != 2 or vox.ndim != 2:
            raise ValueError("Xv must be (n_voxels, n_samples) and vox (n_spheres, n_features).")
        if ys.shape[1] != Xv.shape[1]:
            raise ValueError(f"ys must have shape (n_label_sets, {Xv.shape[1]}), got {ys.shape}.")
        n_sets = len(ys)
        Y = np.stack([binary_targets(y, n_classes).T for y in ys], axis=1)  # (n, L, T)
        n_targets = Y.shape[2]
        rb = role_blocks(plan)
        inv = np.empty(plan.n_samples, dtype=np.int64)
        inv[rb.order] = np.arange(plan.n_samples)
        n_train = np.array([len(tr) for tr in plan.train_indices], dtype=np.int64)
        train_pos = np.zeros((plan.n_folds, max(1, int(n_train.max()))), dtype=np.int64)
        for f, tr in enumerate(plan.train_indices):
            train_pos[f, : len(tr)] = np.sort(inv[np.asarray(tr)])
        # as scikit-learn: the covariance when there are more samples than features
        gram_fold = n_train <= vox.shape[1]
        targets = np.ascontiguousarray(Y.reshape(len(Y), -1)[rb.order])
        dec, best, near = ridge_cv_block(
            Xv, vox, rb.order, rb.runs, rb.bounds, rb.used, rb.fold_blocks, rb.subtract,
            train_pos, n_train, rb.test_pos, rb.n_test, gram_fold, targets, n_sets, alphas,
            bool(self.fit_intercept), float(_TIE_MARGIN), float(_GRAM_TIE_MARGIN), bool(for_predictions),
        )  # fmt: skip
        decisions = [
            [dec[:, f, : rb.n_test[f], k * n_targets : (k + 1) * n_targets] for f in range(plan.n_folds)]
            for k in range(n_sets)
        ]
        chosen = [[best[:, f, k] for f in range(plan.n_folds)] for k in range(n_sets)]
        # the eigendecomposition path decides the near-ties (label sets with one solved
        # together; the other sets of those spheres keep the kernel's answers)
        flagged = near.any(axis=1)  # (S, L)
        redo_sets = np.flatnonzero(flagged.any(axis=0))
        redo = np.flatnonzero(flagged.any(axis=1))
        if redo.size:
            X_redo = Xv[vox[redo]].transpose(0, 2, 1)
            need = near[redo][:, :, redo_sets].any(axis=2)  # (spheres, folds): only those
            dec_redo, best_redo = self._eigh_run(X_redo, ys[redo_sets], n_classes, plan, need)
            for j, k in enumerate(redo_sets):
                for f in range(plan.n_folds):
                    rows = near[redo, f, k]
                    decisions[k][f][redo[rows]] = dec_redo[j][f][rows]
                    chosen[k][f][redo[rows]] = best_redo[j][f][rows]
        if n_classes == 2:
            decisions = [[d[..., 0] for d in per_set] for per_set in decisions]
        return decisions, [[np.where(b >= 0, alphas[b], np.nan) for b in per_set] for per_set in chosen]

    def _eigh_run(
        self, X: np.ndarray, ys: np.ndarray, n_classes: int, plan: CVPlan, need: np.ndarray | None = None
    ) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
        """The eigendecomposition path (see the module's docstring): decisions
        ``(S, n_test, T)`` and chosen alpha indices ``(S,)``, per label vector and fold, of
        the spheres ``X`` ``(S, n_samples, n_features)``. Used for the problems the
        compiled kernel flags as near-ties.

        ``need`` ``(S, n_folds)`` of bool, when given, restricts the work to the (sphere,
        fold) problems it marks; the others' decisions and choices are left undefined (each
        problem's arithmetic does not depend on which others are solved with it)."""
        alphas = self._checked_alphas()
        X = np.asarray(X, dtype=np.float64)
        ys = np.asarray(ys)
        if X.ndim != 3:
            raise ValueError(f"X must have shape (n_spheres, n_samples, n_features), got {X.shape}.")
        if ys.ndim != 2 or ys.shape[1] != X.shape[1]:
            raise ValueError(f"ys must have shape (n_label_sets, {X.shape[1]}), got {ys.shape}.")
        # targets (n_samples, n_label_sets, n_targets)
        Y = np.stack([binary_targets(y, n_classes).T for y in ys], axis=1)
        S, n_sets, n_targets = X.shape[0], Y.shape[1], Y.shape[2]
        decisions = [
            [np.empty((S, len(test), n_targets)) for test in plan.test_indices] for _ in range(n_sets)
        ]
        best = [[np.empty(S, dtype=np.intp) for _ in plan.test_indices] for _ in range(n_sets)]
        n_features = X.shape[2]
        # the samples each fold does not train on (its test samples, for the usual splitters)
        left = [np.setdiff1d(np.arange(X.shape[1]), train) for train in plan.train_indices]
        for start in range(0, S, _BLOCK):
            block = slice(start, start + _BLOCK)
            Zb = X[block]
            if self.fit_intercept:  # exact reparametrisation, for conditioning
                Zb = Zb - Zb.mean(axis=1, keepdims=True)
            else:
                Zb = np.ascontiguousarray(Zb)
            covariances = gram = None
            for f, (train, test) in enumerate(zip(plan.train_indices, plan.test_indices)):
                sel = slice(None) if need is None else np.flatnonzero(need[block, f])
                if need is not None and sel.size == 0:
                    continue
                # as scikit-learn: the covariance when there are more samples than
                # features, else the Gram matrix
                if len(train) > n_features:
                    if covariances is None:
                        covariances = _BlockCovariances(Zb, plan, left, self.fit_intercept)
                    decomposition = covariances.fold(f, sel)
                else:
                    if gram is None:  # every sample's products, shared by the folds
                        gram = np.matmul(Zb, Zb.transpose(0, 2, 1))
                    decomposition = _Gram(
                        *_centred_gram(gram[sel], train, test, self.fit_intercept), self.fit_intercept
                    )
                at = np.arange(X.shape[0])[block][sel]  # the problems' rows in the outputs
                # label sets in chunks, to bound the (spheres, samples, alphas, sets) arrays
                per_set = len(at) * Zb.shape[1] * alphas.size * n_targets
                chunk = max(1, _CHUNK_ELEMENTS // per_set)
                for first in range(0, n_sets, chunk):
                    sets = slice(first, first + chunk)
                    dec, chosen = self._fit_decide(decomposition, Y[:, sets], train, alphas)
                    for j, label_set in enumerate(range(n_sets)[sets]):
                        decisions[label_set][f][at] = dec[:, :, j]
                        best[label_set][f][at] = chosen[:, j]
        return decisions, best

    def _fit_decide(
        self, decomposition, Y: np.ndarray, train: np.ndarray, alphas: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Alpha selection and fit on one fold, for several label sets.

        Parameters
        ----------
        decomposition : _FoldCovariance or _Gram
            Of the fold's centred training data.
        Y : ndarray of shape (n_samples, L, T)
            Targets of ``L`` label sets, every sample.
        train : ndarray of int
            The fold's training samples.
        alphas : ndarray of shape (A,)

        Returns
        -------
        decisions : ndarray of shape (S, n_test, L, T)
        best : ndarray of shape (S, L)
            Index of the chosen alpha.
        """
        Y_train = Y[train]
        n_train, n_sets, n_targets = Y_train.shape
        if self.fit_intercept:
            y_mean = Y_train.mean(axis=0)  # (L, T)
        else:
            y_mean = np.zeros((n_sets, n_targets))
        looe = decomposition.loo_residuals(Y.reshape(len(Y), -1), y_mean.ravel(), train, alphas)
        S = looe.shape[0]
        looe = looe.reshape(S, n_train, alphas.size, n_sets, n_targets)
        looe *= looe
        scores = looe.sum(axis=1).sum(axis=-1)  # (S, A, L)
        scores *= -1.0 / (n_train * n_targets)  # minus the mean squared error

        # a later alpha replaces the best only if strictly better: ties keep the first
        best = np.zeros((S, n_sets), dtype=np.intp)
        best_score = scores[:, 0]
        for a in range(1, alphas.size):
            better = scores[:, a] > best_score
            best[better] = a
            best_score = np.where(better, scores[:, a], best_score)

        decisions = decomposition.test_decisions(best, n_sets).reshape(S, -1, n_sets, n_targets)
        return decisions + y_mean, best


#: relative margin between two alphas' leave-one-out scores, in units of
#: ``eps * cond * (1 + amp)`` (see :mod:`._ridge_cv_kernel`), under which the compiled
#: kernel leaves the choice to the eigendecomposition path; the two paths' scores were
#: measured at most 0.66 such units apart
_TIE_MARGIN = 1e4
#: the same in the Gram form (more features than training samples), whose ``cond`` is that
#: of ``K + s 11' + alpha I`` (no ``1 / alpha`` from the centred Gram matrix's null
#: direction): scikit-learn's scores and the eigendecomposition path's were measured at
#: most 0.23 such units from the kernel's (4,400 simulated problems, 20-162 training
#: samples, d from n to n + 150, raw and standardised, with and without an intercept;
#: 0.0013 on 2,780 folds of simulated searchlight spheres, 81-261 voxels), the kernel's
#: own at most 0.0005 of them from 40-digit arithmetic (``benchmarks/ridge_cv_rounding.py``)
_GRAM_TIE_MARGIN = 1e2


#: bound on the elements of the (spheres, samples, alphas, label sets) working arrays
_CHUNK_ELEMENTS = 1 << 22


def _disjoint(sets: list[np.ndarray]) -> bool:
    """Whether no sample is in two of the sets."""
    every = np.concatenate(sets)
    return len(np.unique(every)) == len(every)


class _BlockCovariances:
    """The centred training covariances ``Xc'Xc`` of every fold of a block ``Zb`` (S, n, d),
    from sums over all samples minus those over the samples the fold leaves out (its test
    samples, for the usual splitters): ``Xc'Xc = (Z'Z - Zl'Zl) - n_train m m'`` with ``m``
    the training mean (``Zb`` is already centred on all samples, so the subtraction loses
    nothing to cancellation).

    When the left-out sets are disjoint the total is the sum of their parts (and of the
    samples never left out), so every sample enters one product.
    """

    def __init__(self, Zb: np.ndarray, plan: CVPlan, left: list[np.ndarray], fit_intercept: bool):
        self.Zb, self.plan, self.fit_intercept = Zb, plan, fit_intercept
        self.tests = [as_slice(te) for te in plan.test_indices]
        rows = [as_slice(ix) for ix in left]
        self.parts = [np.matmul(Zb[:, r].transpose(0, 2, 1), Zb[:, r]) for r in rows]
        self.part_sums = [Zb[:, r].sum(axis=1) for r in rows]
        if _disjoint(left):
            total = self.parts[0].copy()
            for part in self.parts[1:]:
                total += part
            rest = np.setdiff1d(np.arange(Zb.shape[1]), np.concatenate(left))
            if rest.size:
                Zr = Zb[:, as_slice(rest)]
                total += np.matmul(Zr.transpose(0, 2, 1), Zr)
        else:
            total = np.matmul(Zb.transpose(0, 2, 1), Zb)
        self.total = total
        self.sum_all = Zb.sum(axis=1)  # (S, d)

    def fold(self, f: int, spheres: slice | np.ndarray = slice(None)) -> _FoldCovariance:
        """The decomposition of fold ``f``, for the block's ``spheres`` (all by default)."""
        n_train = len(self.plan.train_indices[f])
        cov = self.total[spheres] - self.parts[f][spheres]
        mean = None
        if self.fit_intercept:
            mean = (self.sum_all[spheres] - self.part_sums[f][spheres]) / n_train  # (S, d)
            cov -= n_train * mean[:, :, None] * mean[:, None, :]
        return _FoldCovariance(self.Zb[spheres], cov, mean, self.tests[f], n_train, self.fit_intercept)


class _FoldCovariance:
    """Eigendecomposition of a fold's centred covariance ``Xc'Xc`` (``n_train > d``), with
    every sample of the block in its eigenbasis: the training samples give the
    leave-one-out errors, the test samples the decisions."""

    def __init__(self, Zb, cov, mean, test_rows, n_train: int, fit_intercept: bool):
        self.intercept_leverage = 1.0 / n_train if fit_intercept else 0.0
        self.test_rows = test_rows
        self.evals, self.V = np.linalg.eigh(cov)  # (S, d), (S, d, d)
        U = np.matmul(Zb, self.V)  # (S, n, d): every sample in the eigenbasis
        if mean is not None:
            U -= np.matmul(mean[:, None, :], self.V)
        self.U = U

    def loo_residuals(
        self, Y: np.ndarray, y_mean: np.ndarray, train: np.ndarray, alphas: np.ndarray
    ) -> np.ndarray:
        """Leave-one-out residuals ``(S, n_train, A, M)`` of the targets ``Y`` ``(n, M)``
        (centred by ``y_mean`` ``(M,)`` on the training samples ``train``).

        ``(Yc - Xc B)_i / (1 - h_ii - 1/n)`` with ``B = (Xc'Xc + alpha I)^-1 Xc'Yc`` and
        ``h_ii`` the leverages; all alphas at once. Keeps the fitted values of every
        sample for :meth:`test_decisions`.
        """
        S, n, d = self.U.shape
        n_alphas, M = alphas.size, Y.shape[1]
        Yc = Y - y_mean
        Yt = np.zeros_like(Yc)
        Yt[train] = Yc[train]
        UtY = np.matmul(self.U.transpose(0, 2, 1), Yt)  # (S, d, M) = V' Xc' Yc
        D = 1.0 / (self.evals[..., None] + alphas)  # (S, d, A)
        shrunk = D[..., None] * UtY[:, :, None, :]  # (S, d, A, M): V' B_alpha
        fitted = np.matmul(self.U, shrunk.reshape(S, d, n_alphas * M))
        self.fitted = fitted.reshape(S, n, n_alphas, M)
        leverage = np.take(np.matmul(self.U * self.U, D), train, axis=1)  # (S, n_train, A)
        denom = 1.0 - leverage - self.intercept_leverage
        residual = Yc[train][:, None, :] - np.take(self.fitted, train, axis=1)
        return residual / denom[..., None]

    def test_decisions(self, best: np.ndarray, n_sets: int) -> np.ndarray:
        """Centred decisions ``(S, n_test, M)`` of the test samples with the chosen alpha
        index ``best`` ``(S, L)``."""
        fitted = self.fitted[:, self.test_rows]  # (S, n_test, A, M)
        S, n_test, _, M = fitted.shape
        fitted = fitted.reshape(S, n_test, -1, n_sets, M // n_sets)
        index = np.broadcast_to(best[:, None, None, :, None], (S, n_test, 1, n_sets, M // n_sets))
        return np.take_along_axis(fitted, index, axis=2)[:, :, 0].reshape(S, n_test, M)


def _centred_gram(
    gram: np.ndarray, train: np.ndarray, test: np.ndarray, fit_intercept: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Products of a fold's samples centred on its training mean (not centred without an
    intercept), from the products ``gram`` (S, n, n) of all samples.

    Returns
    -------
    K : ndarray of shape (S, n_train, n_train)
        ``Xc Xc'`` of the training samples.
    cross : ndarray of shape (S, n_test, n_train)
        Products of the test samples (centred on the training mean) with ``Xc``.
    """
    rows = gram[:, train]  # (S, n_train, n): <x_i, x_j> for training i
    if fit_intercept:
        # <x_i - m, x_j - m> = <x_i, x_j> - <m, x_j> - (<x_i, m> - <m, m>)
        rows = rows - rows.mean(axis=1, keepdims=True)
        rows -= rows[:, :, train].mean(axis=2, keepdims=True)
    # (contiguous: numpy's indexing leaves the spheres innermost, and matmul would sum the
    # decisions by its own loop for several spheres but by BLAS for one, so that a problem's
    # decisions would depend on how many were solved with it)
    return rows[:, :, train], np.ascontiguousarray(rows[:, :, test].transpose(0, 2, 1))


class _Gram:
    """Eigendecomposition of the Gram matrix ``Xc Xc'`` of a fold's training samples
    (``n <= d``).

    With ``G = Xc Xc' + alpha I`` the dual coefficients are ``c = G^-1 Yc``, the
    leave-one-out residuals ``c_i / (G^-1_ii - (G^-1 1)_i / n)`` (no ``1/n`` term without
    intercept) and the test decisions ``(X_test - mean) Xc' c``.

    Parameters
    ----------
    gram : ndarray of shape (S, n_train, n_train)
        ``Xc Xc'`` (see :func:`_centred_gram`).
    cross : ndarray of shape (S, n_test, n_train)
        Products of the centred test samples with ``Xc``.
    fit_intercept : bool
    """

    def __init__(self, gram: np.ndarray, cross: np.ndarray, fit_intercept: bool):
        self.cross = cross
        self.fit_intercept = fit_intercept
        self.evals, self.Q = np.linalg.eigh(gram)
        self.Q2 = self.Q * self.Q
        self.Qt1 = self.Q.sum(axis=1)  # (S, n) = Q' 1

    def loo_residuals(
        self, Y: np.ndarray, y_mean: np.ndarray, train: np.ndarray, alphas: np.ndarray
    ) -> np.ndarray:
        """Leave-one-out residuals ``(S, n, A, M)`` of the targets ``Y[train]`` ``(n, M)``,
        centred by ``y_mean``. Keeps the dual coefficients for :meth:`test_decisions`."""
        Yc = Y[train] - y_mean
        S, n, _ = self.Q.shape
        n_alphas, M = alphas.size, Yc.shape[1]
        QtY = np.einsum("snk,nm->skm", self.Q, Yc)  # (S, n, M)
        D = 1.0 / (self.evals[..., None] + alphas)  # (S, n, A)
        dual = np.matmul(self.Q, (D[..., None] * QtY[:, :, None, :]).reshape(S, n, -1))
        self.dual = dual.reshape(S, n, n_alphas, M)
        diag = np.matmul(self.Q2, D)  # (S, n, A): diagonal of G^-1
        if self.fit_intercept:
            diag = diag - np.matmul(self.Q, D * self.Qt1[..., None]) / n
        return self.dual / diag[..., None]

    def test_decisions(self, best: np.ndarray, n_sets: int) -> np.ndarray:
        """Centred decisions ``(S, n_test, M)`` of the test samples with the chosen alpha
        index ``best`` ``(S, L)``."""
        S, n, _, M = self.dual.shape
        dual = self.dual.reshape(S, n, -1, n_sets, M // n_sets)
        index = np.broadcast_to(best[:, None, None, :, None], (S, n, 1, n_sets, M // n_sets))
        chosen = np.take_along_axis(dual, index, axis=2)[:, :, 0]  # (S, n, L, T)
        return np.matmul(self.cross, chosen.reshape(S, n, M))

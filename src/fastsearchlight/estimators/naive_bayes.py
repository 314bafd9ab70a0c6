"""Batched Gaussian naive Bayes.

:class:`BatchedGaussianNB` reproduces scikit-learn's ``GaussianNB`` fitted on every sphere
and every fold, from per-class sums and sums of squares computed once per sphere (see
:class:`~fastsearchlight.estimators._fold_statistics.FoldBlocks`): the block path. Its
sphere-sum path (:mod:`fastsearchlight.sphere_sums`) is in
:mod:`~fastsearchlight.estimators._naive_bayes_sums`.
"""

from __future__ import annotations

import numpy as np

from ..cv import CVPlan
from ._fold_statistics import (
    FoldBlocks,
    block_sums,
    block_sums_of_squares,
    gather_centered,
)
from ._naive_bayes_sums import GaussianNBSphereSums
from .base import BatchedClassifier, fold_decisions_by_slab

__all__ = ["BatchedGaussianNB", "JointLogLikelihoodDifference"]


class BatchedGaussianNB(GaussianNBSphereSums, BatchedClassifier):
    """Gaussian naive Bayes for every sphere and fold at once.

    Reproduces ``sklearn.naive_bayes.GaussianNB(var_smoothing=var_smoothing,
    priors=priors)``: on each fold's training set, per-class feature means and biased
    variances, plus ``epsilon = var_smoothing * max_j var(X_train[:, j])`` added to every
    variance; class priors are the training class frequencies unless given.

    The decision is the joint log-likelihood ``log P(c) + log P(x | c)`` (scikit-learn's
    ``predict_joint_log_proba``): shape ``(n_spheres, n_test, n_classes)``, or for two
    classes the difference ``jll[..., 1] - jll[..., 0]``.

    Parameters
    ----------
    var_smoothing : float, default=1e-9
        Portion of the largest feature variance added to the variances.
    priors : array-like of shape (n_classes,) or None, default=None
        Prior probabilities of the classes.

    Notes
    -----
    ROC AUC: scikit-learn scores a ``GaussianNB`` with ``predict_proba[:, 1]``, which it
    computes as ``exp(jll - logsumexp(jll))``. These probabilities reach exactly 1.0, and
    are coarsely quantised just below it, at a threshold that depends on the magnitude
    of the joint log-likelihoods (the spacing of floats near ``jll``), not only on their
    difference; the ties this creates change the AUC. To reproduce them, the two-class
    decision arrays returned by :meth:`fold_decisions` are
    :class:`JointLogLikelihoodDifference` arrays: ordinary ``jll1 - jll0`` values that
    also carry the joint log-likelihoods, from which :meth:`proba_like` computes the
    probabilities with scikit-learn's formula (identical saturation and ties). Arrays
    derived from them (slices, copies, arithmetic) lose the joint log-likelihoods; for
    those, and for any plain two-class decision ``d``, :meth:`proba_like` applies the
    same formula to the joint log-likelihoods ``(0, d)``: values then agree with
    scikit-learn's to about 1e-13 and underflow to 0.0 where scikit-learn's do, but reach
    1.0 only above ``d`` of about 37, where scikit-learn's (joint log-likelihoods of
    typically -50 to -1000) already do above about 30.
    """

    reference = "sklearn.naive_bayes.GaussianNB"

    def __init__(self, var_smoothing: float = 1e-9, priors: np.ndarray | None = None) -> None:
        self.var_smoothing = var_smoothing
        self.priors = priors

    def _check_priors(self, n_classes: int) -> np.ndarray | None:
        if self.priors is None:
            return None
        priors = np.asarray(self.priors, dtype=np.float64).ravel()
        if priors.shape != (n_classes,):
            raise ValueError("Number of priors must match number of classes.")
        if not np.isclose(priors.sum(), 1.0):
            raise ValueError("The sum of the priors should be 1.")
        if np.any(priors < 0):
            raise ValueError("Priors must be non-negative.")
        return priors

    def fold_joint_log_likelihoods(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[np.ndarray]:
        """Joint log-likelihoods of every fold's test samples, given the arguments of
        :meth:`BatchedClassifier.fold_decisions`.

        Returns
        -------
        list of ndarray of shape (n_spheres, n_test, n_classes), one per fold
            scikit-learn's ``predict_joint_log_proba`` of the model fitted on the fold's
            training set.
        """
        priors = self._check_priors(n_classes)
        if self.var_smoothing < 0:
            raise ValueError("var_smoothing must be non-negative.")
        return fold_decisions_by_slab(
            X, y, n_classes, plan, lambda Xs, blocks: self._slab(Xs, blocks, priors),
            class_axis=True,
        )  # fmt: skip

    def fold_decisions(self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan) -> list[np.ndarray]:
        """:meth:`fold_joint_log_likelihoods`, as decisions (one array per fold).

        Returns
        -------
        list of ndarray, one per fold
            Joint log-likelihoods ``(n_spheres, n_test, n_classes)``, or for two classes
            their difference ``(n_spheres, n_test)`` (> 0 predicts class 1), as a
            :class:`JointLogLikelihoodDifference` that also holds the joint
            log-likelihoods (for :meth:`proba_like`).
        """
        jlls = self.fold_joint_log_likelihoods(X, y, n_classes, plan)
        if n_classes == 2:
            return [JointLogLikelihoodDifference.from_jll(j) for j in jlls]
        return jlls

    def _slab(self, X: np.ndarray, blocks: FoldBlocks, priors: np.ndarray | None) -> list[np.ndarray]:
        """Joint log-likelihoods of every fold's test samples (plan order) for a slab."""
        n_classes, n_folds = blocks.n_classes, blocks.n_folds
        U, _, shift = gather_centered(X, blocks)  # (n, S, p), (C, S, p)

        counts = blocks.train_counts  # (F, C)
        inv_n = (1.0 / counts)[:, :, None, None]
        mean_u = blocks.fold_class_sums(block_sums(U, blocks))
        mean_u *= inv_n
        var = blocks.fold_class_sums(block_sums_of_squares(U, blocks))
        var *= inv_n
        var -= mean_u * mean_u
        np.maximum(var, 0.0, out=var)  # (F, C, S, p), biased class variances
        means = mean_u + shift[None]  # class means in the common frame X - ref[0]

        # variance of the whole training set (all classes), for epsilon
        n_train = counts.sum(axis=1)  # (F,)
        frac = (counts / n_train[:, None])[:, :, None, None]
        grand = np.sum(frac * means, axis=1, keepdims=True)
        dev = means - grand
        total_var = np.sum(frac * (var + dev * dev), axis=1)  # (F, S, p)
        epsilon = self.var_smoothing * total_var.max(axis=-1)  # (F, S)
        var += epsilon[:, None, :, None]

        if priors is None:
            prior = counts / n_train[:, None]
        else:
            prior = np.broadcast_to(priors, (n_folds, n_classes))
        inv_var = 1.0 / var
        # log P(c) - 0.5 sum_j log(2 pi var_cj), (F, C, S)
        const = np.log(prior)[:, :, None] - 0.5 * np.sum(np.log(2.0 * np.pi * var), axis=-1)

        # For a test sample of class k, U = x - ref[k], and
        # sum_j (x_j - m_cj)^2 / v_cj = U^2.(1/v_c) - 2 U.(mu/v_c) + mu^2.(1/v_c) with
        # mu = m_c - ref[k] (small for c = k, exactly 0 on a constant feature).
        quad = (-0.5 * inv_var).transpose(0, 2, 3, 1)  # (F, S, p, C)
        jlls = []
        for f in range(n_folds):

            def piece(rows, k, f=f):
                mu = means[f] - shift[k]  # (C, S, p)
                mu_v = mu * inv_var[f]
                lin = mu_v.transpose(1, 2, 0)  # (S, p, C)
                off = const[f] - 0.5 * np.einsum("csp,csp->cs", mu_v, mu)  # (C, S)
                Ut = U[rows]
                jll = np.matmul((Ut * Ut).transpose(1, 0, 2), quad[f])  # (S, n_t, C)
                jll += np.matmul(Ut.transpose(1, 0, 2), lin)
                jll += off.T[:, None, :]
                return jll

            jlls.append(blocks.test_decisions(piece, f))
        return jlls

    def bytes_per_sphere(self, n_samples: int, n_features: int, n_folds: int, n_classes: int) -> int:
        """Peak working memory per sphere: the input block, the joint log-likelihoods and
        the decisions (the temporaries are bounded by the slab size)."""
        return 8 * n_samples * (n_features + 2 * n_classes + 1)

    def proba_like(self, decisions: np.ndarray) -> np.ndarray:
        """Probabilities as scikit-learn's ``GaussianNB.predict_proba`` computes them.

        Parameters
        ----------
        decisions : ndarray
            One of

            - a two-class decision array returned by :meth:`fold_decisions`
              (a :class:`JointLogLikelihoodDifference`): scikit-learn's probabilities of
              class 1 are reproduced from the joint log-likelihoods it carries, ties
              included;
            - joint log-likelihoods ``(n_spheres, n_test, n_classes)``, as returned by
              :meth:`fold_joint_log_likelihoods`: scikit-learn's probabilities are
              reproduced, ties included;
            - any other two-class decision array ``d = jll1 - jll0``: the probabilities
              of class 1 given joint log-likelihoods ``(0, d)`` (see the class notes).

        Returns
        -------
        ndarray
            For two classes the probability of class 1, shape ``(n_spheres, n_test)``;
            for more classes all probabilities, shape ``(n_spheres, n_test, n_classes)``.
        """
        jll = getattr(decisions, "jll", None)
        if jll is None:
            decisions = np.asarray(decisions, dtype=np.float64)
            if decisions.ndim == 3:
                jll = decisions
            else:
                jll = np.stack([np.zeros_like(decisions), decisions], axis=-1)
        proba = np.exp(jll - _logsumexp_last(jll)[..., None])
        if jll.shape[-1] == 2:
            return proba[..., 1]
        return proba


class JointLogLikelihoodDifference(np.ndarray):
    """Two-class naive Bayes decisions ``jll1 - jll0`` that carry the joint
    log-likelihoods.

    A float64 ndarray of shape ``(n_spheres, n_test)``, usable as any decision array,
    with an attribute ``jll`` of shape ``(n_spheres, n_test, 2)``, or None on arrays
    derived from it (views, slices and results of operations do not keep it, as it
    would no longer match their values).
    """

    jll: np.ndarray | None

    @classmethod
    def from_jll(cls, jll: np.ndarray) -> JointLogLikelihoodDifference:
        """Decision ``jll[..., 1] - jll[..., 0]`` carrying ``jll``."""
        out = np.subtract(jll[..., 1], jll[..., 0]).view(cls)
        out.jll = jll
        return out

    def __array_finalize__(self, obj) -> None:
        self.jll = None

    def __reduce__(self):
        state = super().__reduce__()
        return (_rebuild, (state, self.jll))


def _rebuild(state, jll):
    """Unpickle a :class:`JointLogLikelihoodDifference`."""
    func, args, arr_state = state
    arr = func(*args)
    arr.__setstate__(arr_state)
    arr.jll = jll
    return arr


def _logsumexp_last(a: np.ndarray) -> np.ndarray:
    """``log(sum(exp(a), axis=-1))`` with the operations of scikit-learn's ``_logsumexp``.

    The largest entries are taken out (``m`` of them, all equal to ``a_max``), the
    others summed as ``s = sum(exp(a - a_max)) / m`` and the result is
    ``log1p(s) + log(m) + a_max``, evaluated in that order so that rounding (and hence
    saturation of the probabilities) is the same as scikit-learn's.
    """
    a_max = np.max(a, axis=-1, keepdims=True)
    is_max = a == a_max
    m = np.sum(is_max, axis=-1, keepdims=True, dtype=np.float64)
    shift = np.where(np.isfinite(a_max), a_max, 0.0)
    e = np.exp(np.where(is_max, -np.inf, a) - shift)
    s = np.sum(e, axis=-1, keepdims=True)
    s = np.where(s == 0, s, s / m)
    out = np.log1p(s) + np.log(m) + a_max
    return out[..., 0]

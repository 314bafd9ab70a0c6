"""Batched Gaussian naive Bayes.

:class:`BatchedGaussianNB` reproduces scikit-learn's ``GaussianNB`` fitted on every sphere
and every fold, from per-class sums and sums of squares computed once per sphere (see
:class:`~fastsearchlight.estimators.discriminant.FoldBlocks`).
"""

from __future__ import annotations

import threading

import numpy as np

from ..cv import CVPlan
from ._fold_statistics import (
    FoldBlocks,
    block_sums,
    block_sums_of_squares,
    gather_centered,
)
from .base import BatchedClassifier, as_slice, class_mean_weights, fold_decisions_by_slab


class BatchedGaussianNB(BatchedClassifier):
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

    def fold_decisions(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[np.ndarray]:
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

    def _slab(
        self, X: np.ndarray, blocks: FoldBlocks, priors: np.ndarray | None
    ) -> list[np.ndarray]:
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

    # ------------------------------------------------------------------ sphere sums
    def sphere_sum_state(self, X: np.ndarray, plan: CVPlan, sums, lean: bool = False, pool=None) -> dict:
        """What the sphere-sum path needs that does not depend on the labels.

        The joint log-likelihood of a test sample is a sum over the features (voxels) of
        per-voxel terms, so :mod:`fastsearchlight.sphere_sums` computes it for every sphere
        with one sparse product. Only the variance smoothing ``epsilon`` is a property of
        the sphere (the largest training variance among its voxels); it is computed here,
        per sphere and fold, to bound its effect on the decisions.

        Parameters
        ----------
        X : ndarray (n_voxels, n_samples)
            Voxel-major data.
        plan : CVPlan
        sums : SphereSums
        lean : bool
            Keep no copy of the data: centre the pieces of ``X`` as they are used (for a
            single label vector; several read their test samples faster from a copy).
        pool : ThreadPoolExecutor or None
            Threads sharing the passes over the data (by chunks of voxels).

        Returns
        -------
        dict
        """
        if self.var_smoothing < 0:
            raise ValueError("var_smoothing must be non-negative.")
        X = np.asarray(X, dtype=np.float64)
        if lean:
            # test sets that are runs of samples are read as slices, without a gather
            runs = [as_slice(te) for te in plan.test_indices]
            centre, reach = _centre_and_reach(X, runs, pool)
            state = {"blocks": [X], "order": np.arange(plan.n_samples), "centre": centre,
                     "tests": None, "test_indices": runs, "reach": reach, "sums": sums,
                     "train_weights": plan.train_masks.T / plan.train_masks.sum(axis=1),
                     "epsilon": None}  # fmt: skip
            # epsilon comes with the first label vector's statistics, in the same pass
            return state
        centre = X.mean(axis=1, keepdims=True)
        # the model is invariant to a shift of each voxel; centring keeps the sums of
        # squares below free of cancellation. When the test sets partition the samples
        # (KFold, LeaveOneGroupOut, ...), one copy of the data, split by test set into
        # contiguous blocks, serves both the statistics and every fold's test samples.
        order = np.concatenate(plan.test_indices)
        if np.array_equal(np.sort(order), np.arange(plan.n_samples)):
            blocks = [np.take(X, te, axis=1) for te in plan.test_indices]
            for block in blocks:
                block -= centre
            tests = blocks
        else:
            order = np.arange(plan.n_samples)
            blocks = [X - centre]
            tests = [np.ascontiguousarray(blocks[0][:, te]) for te in plan.test_indices]
        state = {"blocks": blocks, "order": order, "centre": None, "tests": tests}
        train = plan.train_masks.T[order].astype(np.float64)  # (n, F), in block order
        mean, mean_square = _moments(blocks, train / train.sum(axis=0), pool=pool)
        reach = np.stack([np.maximum(t.max(axis=1), -t.min(axis=1)) for t in tests], axis=1)
        total_var = np.maximum(mean_square - mean * mean, 0.0)  # (V, F)
        state["epsilon"] = self.var_smoothing * sums.max(total_var)  # (S, F)
        state["reach"] = reach
        return state

    def sphere_sum_label_sets(self, state, ys, n_classes, plan, pool=None) -> list:
        """Class means and variances of every voxel, per fold, for several label vectors.

        One matrix product per statistic for all label vectors (the data are read once).

        Parameters
        ----------
        state : dict
            From :meth:`sphere_sum_state`.
        ys : ndarray (n_label_sets, n_samples)
        n_classes : int
        plan : CVPlan
        pool : ThreadPoolExecutor or None
            Threads sharing the pass over the data (by chunks of voxels).

        Returns
        -------
        list
            Per label vector, a dict of statistics for :meth:`sphere_sum_decisions`, or
            None when a class is absent from a fold's training set.
        """
        ys = np.atleast_2d(ys)
        n_sets, n_folds = ys.shape[0], plan.n_folds
        priors = self._check_priors(n_classes)
        weights, counts, valid = class_mean_weights(ys, n_classes, plan)
        weights = weights[state["order"]]
        shape = (-1, n_sets, n_folds, n_classes)
        if state["epsilon"] is None:  # lean state: the training variances too
            weights = np.hstack([weights, state["train_weights"]])
        means, mean_squares = _moments(state["blocks"], weights, state["centre"], pool=pool)
        if state["epsilon"] is None:
            mean, mean_square = means[:, -n_folds:], mean_squares[:, -n_folds:]
            total_var = np.maximum(mean_square - mean * mean, 0.0)  # (V, F)
            state["epsilon"] = self.var_smoothing * state["sums"].max(total_var)
            means, mean_squares = means[:, :-n_folds], mean_squares[:, :-n_folds]
        means = means.reshape(shape)  # (V, K, F, C)
        mean_squares = mean_squares.reshape(shape)
        out = []
        for k in range(n_sets):
            if not valid[k]:
                out.append(None)
                continue
            prior = counts[k] / counts[k].sum(axis=1, keepdims=True) if priors is None else priors
            mean = np.ascontiguousarray(means[:, k])
            var = mean_squares[:, k] - mean * mean
            out.append({"mean": mean, "var": var,
                        "log_prior": np.log(np.broadcast_to(prior, (n_folds, n_classes)))})  # fmt: skip
        return out

    def sphere_sum_decisions(self, state, stats, n_classes, plan, sums, pool, max_columns):
        """Decisions of every sphere on every fold, from per-voxel terms summed per sphere.

        The decisions are those of the model with ``epsilon = 0``; ``epsilon`` changes
        each per-voxel term of class ``c`` by at most
        ``epsilon * 0.5 / v (1 + (x - m)^2 / v)`` (``m``, ``v``: the class mean and
        variance of the voxel), so a decision farther from the boundary than the sum of
        these bounds over the sphere (plus a rounding margin) has the exact model's sign.
        The others are reported uncertain, to be recomputed exactly.

        Parameters
        ----------
        state : dict
            From :meth:`sphere_sum_state`.
        stats : dict
            One label vector's statistics, from :meth:`sphere_sum_label_sets`.
        n_classes : int
        plan : CVPlan
        sums : SphereSums
        pool : ThreadPoolExecutor or None
            Threads for the sparse products.
        max_columns : int
            Test samples processed at once.

        Yields
        ------
        (fold, decisions, uncertain)
            Two classes: ``decisions`` are ``jll1 - jll0``, ``(n_spheres, n_test)``;
            more classes: ``jll_c - jll_0``, ``(n_spheres, n_test, n_classes)``.
            ``uncertain`` is a bool ``(n_spheres,)``.
        """
        mean, var, log_prior = stats["mean"], stats["var"], stats["log_prior"]
        positive = var > 0
        degenerate = ~np.all(positive, axis=2)  # (V, F): a zero class variance
        if degenerate.any():
            var = np.where(positive, var, 1.0)
            degenerate_spheres = sums.any(degenerate.any(axis=1))
        else:
            degenerate_spheres = np.zeros(sums.n_spheres, dtype=bool)
        inv = 1.0 / var
        # per-voxel term of class c: -0.5 log(2 pi v) - 0.5 (x - m)^2 / v, written as
        # alpha + beta x + gamma x^2; the decisions take differences with class 0
        alpha = -0.5 * (np.log(var) + mean * mean * inv)
        beta = mean * inv
        gamma = -0.5 * inv
        reach = state["reach"][:, :, None]
        # bound on the change from epsilon, and on the size of the terms (for rounding)
        far = reach + np.abs(mean)
        slack_terms = np.empty(mean.shape[:2] + (2,))
        slack_terms[..., 0] = np.sum(inv * (1.0 + far * far * inv), axis=2)
        slack_terms[..., 0] *= 0.5
        slack_terms[..., 1] = np.sum(np.abs(alpha) + (np.abs(beta) + np.abs(gamma) * reach) * reach, axis=2)
        sphere_slack = sums.sum(slack_terms, pool)  # (S, F, 2)
        slack = state["epsilon"] * sphere_slack[:, :, 0] + 1e-9 * sphere_slack[:, :, 1]
        n_diff = n_classes - 1
        # The sums run in single precision (half the time of double): a single-precision
        # sum of p terms is within (p + 2) * 2^-24 of the sum of their sizes of the exact
        # one, so the spheres with a decision that close to the boundary are summed again
        # in double precision, and only then checked against ``slack``.
        unit = np.float64(np.finfo(np.float32).eps) / 2.0

        def fold(f: int, inner) -> tuple:
            """Decisions and uncertain spheres of fold ``f``, with the threads ``inner``."""
            # (V, C-1, 1): the test samples run along the last axis, the fast one
            a = (alpha[:, f, 1:] - alpha[:, f, :1])[:, :, None]
            b = (beta[:, f, 1:] - beta[:, f, :1])[:, :, None]
            g = (gamma[:, f, 1:] - gamma[:, f, :1])[:, :, None]
            prior = log_prior[f, 1:] - log_prior[f, 0]  # (C-1,)
            room = slack[:, f]
            rough = room + (sums.sizes + 2) * unit * (sphere_slack[:, f, 1] + np.abs(prior).max())
            n_vox, n_test = sums.n_voxels, len(plan.test_indices[f])
            step = max(1, max_columns // n_diff)
            diff = None if step >= n_test else np.empty((sums.n_spheres, n_diff, n_test), dtype=np.float32)
            unsure = degenerate_spheres.copy()
            for lo in range(0, n_test, step):
                hi = min(n_test, lo + step)
                single = _scratch(state, (n_vox, n_diff, hi - lo), "single", np.float32)

                def voxel_chunk(v0, f=f, lo=lo, hi=hi, a=a, b=b, g=g, single=single):
                    """Terms of some voxels, computed in cache, then stored in single."""
                    v = slice(v0, v0 + _VOXEL_CHUNK)
                    xs = _test_window(state, f, v, lo, hi)
                    single[v] = _terms(a[v], b[v], g[v], xs, _scratch(state, xs.shape[:1] + single.shape[1:]))

                _map(inner, voxel_chunk, range(0, n_vox, _VOXEL_CHUNK))
                part = sums.sum(single, inner)
                part += prior.astype(np.float32)[None, :, None]
                rows = np.flatnonzero(_near_boundary(part, rough))
                if rows.size:  # summed again in double precision, over their voxels only
                    sub = sums.adjacency[rows]
                    vox = np.unique(sub.indices)
                    terms = _terms(a[vox], b[vox], g[vox], _test_window(state, f, vox, lo, hi), None)
                    exact = (sub[:, vox] @ terms.reshape(len(vox), -1)).reshape(part[rows].shape)
                    exact += prior[None, :, None]
                    unsure[rows] |= _near_boundary(exact, room[rows])
                    part[rows] = exact
                if step >= n_test:
                    diff = part
                else:
                    diff[:, :, lo : lo + step] = part
            if n_classes == 2:
                decisions = diff[:, 0, :]
            else:
                decisions = np.concatenate(
                    [np.zeros((sums.n_spheres, n_test, 1), dtype=diff.dtype), diff.transpose(0, 2, 1)],
                    axis=2,
                )
            return f, decisions, unsure

        if pool is not None and plan.n_folds >= sums.n_threads:
            # the folds on the threads, each whole (its serial steps overlap the others')
            yield from pool.map(lambda f: fold(f, None), range(plan.n_folds))
        else:
            for f in range(plan.n_folds):
                yield fold(f, pool)

    def bytes_per_sphere(
        self, n_samples: int, n_features: int, n_folds: int, n_classes: int
    ) -> int:
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


def _moments(blocks: list[np.ndarray], weights: np.ndarray, centre: np.ndarray | None = None,
             chunk: int = 2048, pool=None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``data @ weights`` and ``data**2 @ weights`` for ``data`` given as column blocks
    (``weights`` rows in the same order), minus ``centre`` (per row) if given, ``chunk``
    rows at a time (the squares are never held whole; the chunks shared among the threads
    of ``pool`` if given)."""
    first = np.zeros((blocks[0].shape[0], weights.shape[1]))
    second = np.zeros_like(first)
    starts = np.cumsum([0] + [block.shape[1] for block in blocks])

    def rows_of(lo):
        hi = lo + chunk
        for block, start in zip(blocks, starts):
            w = weights[start : start + block.shape[1]]
            rows = block[lo:hi]
            if centre is not None:
                rows = rows - centre[lo:hi]
            first[lo:hi] += rows @ w
            second[lo:hi] += (rows * rows) @ w

    _map(pool, rows_of, range(0, first.shape[0], chunk))
    return first, second


def _centre_and_reach(X: np.ndarray, runs: list, pool=None, chunk: int = 2048):
    """Mean of every voxel (row of ``X``), shape (V, 1), and the largest distance from it
    of the voxel's test samples in each fold (``runs``: slices or index arrays), shape
    (V, n_folds); ``chunk`` voxels at a time (in cache), shared among the threads of
    ``pool`` if given."""
    centre = np.empty((X.shape[0], 1))
    reach = np.empty((X.shape[0], len(runs)))

    def rows_of(lo):
        rows = X[lo : lo + chunk]
        c = rows.mean(axis=1)
        centre[lo : lo + chunk, 0] = c
        for f, run in enumerate(runs):
            window = rows[:, run]
            reach[lo : lo + chunk, f] = np.maximum(window.max(axis=1) - c, c - window.min(axis=1))

    _map(pool, rows_of, range(0, X.shape[0], chunk))
    return centre, reach


def _test_window(state: dict, fold: int, voxels, lo: int, hi: int | None) -> np.ndarray:
    """Centred test samples ``lo:hi`` of ``fold`` at ``voxels`` (a slice or indices), shape
    (n_voxels, 1, hi - lo): from the copy kept in ``state``, or centred on the fly."""
    tests = state["tests"]
    if tests is not None:
        return tests[fold][voxels, None, lo:hi]
    X = state["blocks"][0]
    columns = state["test_indices"][fold]
    if isinstance(columns, slice):
        start = columns.start + lo
        stop = columns.stop if hi is None else min(columns.stop, columns.start + hi)
        window = X[voxels, start:stop]
    else:
        window = X[voxels][:, columns[lo:hi]]
    return (window - state["centre"][voxels])[:, None, :]


def _scratch(state: dict, shape: tuple, name: str = "terms", dtype=np.float64) -> np.ndarray:
    """A work array of ``shape``, reused by the calling thread across calls (fresh large
    arrays cost page faults on first touch)."""
    local = state.setdefault("scratch", threading.local())
    size = int(np.prod(shape))
    buf = getattr(local, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(size, dtype=dtype)
        setattr(local, name, buf)
    return buf[:size].reshape(shape)


#: voxels whose per-voxel terms are computed at once (the work arrays stay in cache)
_VOXEL_CHUNK = 2048


def _map(pool, function, items) -> None:
    """``function(item)`` for every item, on the threads of ``pool`` if given (numpy
    releases the interpreter lock in the array operations)."""
    if pool is None:
        for item in items:
            function(item)
    else:
        list(pool.map(function, items))


def _terms(a, b, g, x, out):
    """Per-voxel terms ``a + b x + g x^2`` (``((g x) + b) x + a``), in ``out`` if given."""
    terms = np.multiply(g, x, out=out)
    terms += b
    terms *= x
    terms += a
    return terms


def _near_boundary(diff: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Spheres with a test sample whose prediction could change if every decision moved by
    up to ``margin`` (per sphere); NaN counts as near.

    ``diff`` holds ``jll_c - jll_0`` for ``c >= 1``, shape (n_spheres, n_classes - 1, n_test).
    """
    if diff.shape[1] == 1:
        # candidates against the largest margin first: one cheap pass over all decisions
        size = np.abs(diff[:, 0, :])
        where = np.flatnonzero(~(size > margin.max()))  # NaN counts as near
        rows = where // size.shape[1]
        near = np.zeros(diff.shape[0], dtype=bool)
        near[rows[~(size.ravel()[where] > margin[rows])]] = True
        return near
    full = np.concatenate([np.zeros((diff.shape[0], 1, diff.shape[2]), dtype=diff.dtype), diff], axis=1)
    top2 = -np.partition(-full, 1, axis=1)[:, :2, :]
    gap = (top2[:, 0, :] - top2[:, 1, :]).astype(np.float64)
    return ~(gap > 2.0 * margin[:, None]).all(axis=1)


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

"""Gaussian naive Bayes by sphere sums.

The joint log-likelihood of a test sample is a sum over the voxels of a sphere of terms
that depend on each voxel alone (its class means and variances), so
:mod:`fastsearchlight.sphere_sums` computes the decisions of every sphere with sparse
products. :class:`GaussianNBSphereSums` holds that path of
:class:`~fastsearchlight.estimators.naive_bayes.BatchedGaussianNB`: the per-voxel
statistics, the terms, and the bounds that tell which spheres must be recomputed exactly
(the variance smoothing, a property of the whole sphere, and the rounding of the sums in
single precision).
"""

from __future__ import annotations

import numpy as np

from .._work_arrays import work_array
from ..cv import CVPlan
from .base import as_slice, class_mean_weights

__all__ = ["GaussianNBSphereSums"]


class GaussianNBSphereSums:
    """The sphere-sum path of Gaussian naive Bayes (see the module docstring).

    A mixin of :class:`~fastsearchlight.estimators.naive_bayes.BatchedGaussianNB`, whose
    ``var_smoothing`` and ``_check_priors`` it uses; it implements
    :class:`fastsearchlight.sphere_sums.SphereSumModel`.
    """

    var_smoothing: float

    def sphere_sum_state(self, X: np.ndarray, plan: CVPlan, sums, lean: bool = False, pool=None) -> dict:
        """What the sphere-sum path needs that does not depend on the labels.

        The joint log-likelihood of a test sample is a sum over the features (voxels) of
        per-voxel terms, so :mod:`fastsearchlight.sphere_sums` computes it for every sphere
        with one sparse product. Only the variance smoothing ``epsilon`` is a property of
        the sphere (the largest training variance among its voxels); it is computed here,
        per sphere and fold, to bound its effect on the decisions.

        Parameters
        ----------
        X, plan, sums
            Voxel-major data ``(n_voxels, n_samples)``, CV plan and sphere sums, as for
            :meth:`fastsearchlight.sphere_sums.SphereSumModel.sphere_sum_state`.
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
        terms = _voxel_terms(state, stats, sums, pool)

        def fold(f: int, inner) -> tuple:
            """Decisions and uncertain spheres of fold ``f``, with the threads ``inner``."""
            return _fold_decisions(state, terms, f, n_classes, plan, sums, inner, max_columns)

        if pool is not None and plan.n_folds >= sums.n_threads:
            # the folds on the threads, each whole (its serial steps overlap the others')
            yield from pool.map(lambda f: fold(f, None), range(plan.n_folds))
        else:
            for f in range(plan.n_folds):
                yield fold(f, pool)


def _voxel_terms(state: dict, stats: dict, sums, pool) -> dict:
    """Per-voxel terms of one label vector and the bounds on their sums per sphere.

    Parameters
    ----------
    state, stats, sums, pool
        As for :meth:`GaussianNBSphereSums.sphere_sum_decisions`.

    Returns
    -------
    dict
        ``alpha``, ``beta``, ``gamma`` (V, F, C): the term of class ``c`` at a centred
        value ``x`` is ``alpha + beta x + gamma x^2``; ``log_prior`` (F, C); ``slack``
        (S, F): the bound on the effect of ``epsilon`` plus a rounding margin;
        ``sphere_slack`` (S, F, 2): the sums of the two bounds' terms; ``degenerate``
        (S,): spheres with a zero class variance.
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
    return {"alpha": alpha, "beta": beta, "gamma": gamma, "log_prior": log_prior,
            "slack": slack, "sphere_slack": sphere_slack, "degenerate": degenerate_spheres}  # fmt: skip


def _fold_decisions(
    state: dict, terms: dict, f: int, n_classes: int, plan: CVPlan, sums, inner, max_columns: int
) -> tuple[int, np.ndarray, np.ndarray]:
    """Decisions and uncertain spheres of fold ``f``, with the threads ``inner``.

    The sums run in single precision (half the time of double): a single-precision sum of
    ``p`` terms is within ``(p + 2) * 2^-24`` of the sum of their sizes of the exact one,
    so the spheres with a decision that close to the boundary are summed again in double
    precision, and only then checked against the ``slack`` of ``terms``.

    Parameters
    ----------
    state, n_classes, plan, sums, max_columns
        As for :meth:`GaussianNBSphereSums.sphere_sum_decisions`.
    terms : dict
        From :func:`_voxel_terms`.
    f : int
        The fold.
    inner : ThreadPoolExecutor or None
        Threads for the sparse products of this fold.

    Returns
    -------
    (fold, decisions, uncertain)
        One item of :meth:`GaussianNBSphereSums.sphere_sum_decisions`.
    """
    alpha, beta, gamma = terms["alpha"], terms["beta"], terms["gamma"]
    log_prior, slack, sphere_slack = terms["log_prior"], terms["slack"], terms["sphere_slack"]
    n_diff = n_classes - 1
    unit = np.float64(np.finfo(np.float32).eps) / 2.0
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
    unsure = terms["degenerate"].copy()
    for lo in range(0, n_test, step):
        hi = min(n_test, lo + step)
        single = work_array("naive Bayes single", (n_vox, n_diff, hi - lo), np.float32)

        def voxel_chunk(v0, f=f, lo=lo, hi=hi, a=a, b=b, g=g, single=single):
            """Terms of some voxels, computed in cache, then stored in single."""
            v = slice(v0, v0 + _VOXEL_CHUNK)
            xs = _test_window(state, f, v, lo, hi)
            single[v] = _terms(
                a[v], b[v], g[v], xs, work_array("naive Bayes terms", xs.shape[:1] + single.shape[1:])
            )

        _map(inner, voxel_chunk, range(0, n_vox, _VOXEL_CHUNK))
        part = sums.sum(single, inner)
        part += prior.astype(np.float32)[None, :, None]
        rows = np.flatnonzero(_near_boundary(part, rough))
        if rows.size:  # summed again in double precision, over their voxels only
            sub = sums.adjacency[rows]
            vox = np.unique(sub.indices)
            exact_terms = _terms(a[vox], b[vox], g[vox], _test_window(state, f, vox, lo, hi), None)
            exact = (sub[:, vox] @ exact_terms.reshape(len(vox), -1)).reshape(part[rows].shape)
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

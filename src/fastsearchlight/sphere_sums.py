"""Sphere sums: models whose decisions are sums of per-voxel terms, for all spheres at once.

Some classifiers decide with sums over the voxels of the sphere of terms that depend on
each voxel alone (Gaussian naive Bayes: the log-likelihood of a test sample is a sum over
features; the correlation classifier: a ratio of sums of x m, x, m, x^2 and m^2). Their
per-voxel terms are the same in every sphere that holds the voxel, so they are computed once
per voxel, for every test sample, and summed over every sphere at once with sparse
products: ``adjacency @ terms`` (spheres x voxels times voxels x samples). This replaces the
per-sphere work of the block path by about ``n_spheres x sphere_size`` multiply-adds per
test sample.

Each model bounds the error of its decisions: rounding, and what it leaves out (naive
Bayes' variance smoothing depends on the largest variance in the sphere). The spheres where
a decision is within that bound of the decision boundary are recomputed exactly by the
block path (:func:`fastsearchlight.engine.run_batched`), so the predictions, hence the
scores, are those of the exact model.

Models implement :class:`SphereSumModel`; :func:`run_sphere_sums` runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from ._huge_pages import without_huge_pages
from ._work_arrays import reused_work_arrays
from .cv import CVPlan
from .neighbourhoods import Neighbourhoods
from .scoring import batched_scores
from .shared import SharedFolder, exit_with_parent

#: metrics that depend on predicted classes only (so that bounded decisions suffice)
PREDICTION_METRICS = ("accuracy", "balanced_accuracy")


class SphereSums:
    """Sums and maxima of per-voxel values over every sphere.

    Parameters
    ----------
    neighbourhoods : Neighbourhoods
    n_threads : int
        Threads for the sparse products (scipy releases the interpreter lock in them).
    """

    def __init__(self, neighbourhoods: Neighbourhoods, n_threads: int = 1) -> None:
        from scipy import sparse

        a = neighbourhoods.adjacency
        self.adjacency = sparse.csr_matrix((np.ones(a.nnz), a.indices, a.indptr), shape=a.shape)
        self.adjacency32 = self.adjacency.astype(np.float32)
        self.n_spheres, self.n_voxels = a.shape
        self.sizes = np.diff(a.indptr)
        self.n_threads = max(1, int(n_threads))
        cuts = np.linspace(0, self.n_spheres, 2 * self.n_threads + 1).astype(int)
        self._rows = [(lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:]) if hi > lo]
        self._parts = {
            dtype: [matrix[lo:hi] for lo, hi in self._rows]
            for dtype, matrix in ((np.float64, self.adjacency), (np.float32, self.adjacency32))
        }

    def sum(self, values: np.ndarray, pool: ThreadPoolExecutor | None = None) -> np.ndarray:
        """``out[s] = sum of values[v] over the voxels v of sphere s``.

        Parameters
        ----------
        values : ndarray (n_voxels, ...) of float64 or float32
            The sums are computed in the same precision.
        pool : ThreadPoolExecutor or None
            Threads to share the product among (row slices of the adjacency).

        Returns
        -------
        ndarray (n_spheres, ...)
        """
        shape = values.shape
        flat = values.reshape(shape[0], -1)
        single = flat.dtype == np.float32
        parts = self._parts[np.float32 if single else np.float64]
        if pool is None or len(parts) == 1:
            out = (self.adjacency32 if single else self.adjacency) @ flat
        else:
            out = np.empty((self.n_spheres, flat.shape[1]), dtype=flat.dtype)

            def part(i):
                lo, hi = self._rows[i]
                out[lo:hi] = parts[i] @ flat

            list(pool.map(part, range(len(parts))))
        return out.reshape((self.n_spheres,) + shape[1:])

    def max(self, values: np.ndarray) -> np.ndarray:
        """``out[s] = max of values[v] over the voxels v of sphere s`` (spheres are never empty).

        Parameters
        ----------
        values : ndarray (n_voxels, ...)

        Returns
        -------
        ndarray (n_spheres, ...)
        """
        a = self.adjacency
        values = np.asarray(values)
        flat = values.reshape(values.shape[0], -1)
        out = np.empty((self.n_spheres, flat.shape[1]), dtype=values.dtype)
        for j, column in enumerate(flat.T):  # one contiguous 1-D reduction per column
            out[:, j] = np.maximum.reduceat(np.ascontiguousarray(column)[a.indices], a.indptr[:-1])
        return out.reshape((self.n_spheres,) + values.shape[1:])

    def any(self, flags: np.ndarray) -> np.ndarray:
        """``out[s]`` is True when ``flags[v]`` is True for a voxel of sphere s."""
        flags = np.asarray(flags, dtype=bool)
        return self.max(flags.astype(np.int8)).astype(bool)


class SphereSumModel(Protocol):
    """What :func:`run_sphere_sums` needs from a model (e.g.
    :class:`~fastsearchlight.estimators.naive_bayes.BatchedGaussianNB`)."""

    def sphere_sum_state(
        self,
        X: np.ndarray,
        plan: CVPlan,
        sums: SphereSums,
        lean: bool = False,
        pool: ThreadPoolExecutor | None = None,
    ) -> Any:
        """Everything that does not depend on the labels, computed once per run (``lean``:
        for a single label vector, favouring memory over reuse; ``pool``: threads to share
        the work)."""

    def sphere_sum_label_sets(
        self,
        state: Any,
        ys: np.ndarray,
        n_classes: int,
        plan: CVPlan,
        pool: ThreadPoolExecutor | None = None,
    ) -> list:
        """Per-voxel statistics of several label vectors at once; None for a label vector
        the model cannot take (the caller then uses the block path)."""

    def sphere_sum_decisions(
        self,
        state: Any,
        stats: Any,
        n_classes: int,
        plan: CVPlan,
        sums: SphereSums,
        pool: ThreadPoolExecutor | None,
        max_columns: int,
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(fold, decisions, uncertain)`` for every fold of one label vector.

        ``decisions`` are the fold's test decisions, ``(n_spheres, n_test)`` or
        ``(n_spheres, n_test, n_classes)``, whose predictions are exact wherever
        ``uncertain`` (bool, ``(n_spheres,)``) is False.
        """


def supports_sphere_sums(estimator: Any, metric: str) -> bool:
    """Whether ``estimator`` and ``metric`` can run through :func:`run_sphere_sums`."""
    return metric in PREDICTION_METRICS and callable(getattr(estimator, "sphere_sum_decisions", None))


def run_sphere_sums(
    X: np.ndarray,
    neighbourhoods: Neighbourhoods,
    estimator: SphereSumModel,
    ys: np.ndarray,
    n_classes: int,
    plan: CVPlan,
    metric: str,
    exact_block: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    memory_mb: float,
    n_jobs: int = 1,
    progress: Callable[[int], None] | None = None,
    cache: dict | None = None,
) -> np.ndarray:
    """Per-fold scores of every sphere for a :class:`SphereSumModel`.

    Parameters
    ----------
    X : ndarray (n_mask_voxels, n_samples), voxel-major
    neighbourhoods : Neighbourhoods
    estimator : SphereSumModel
    ys : ndarray (n_label_sets, n_samples)
    n_classes : int
    plan : CVPlan
    metric : {"accuracy", "balanced_accuracy"}
    exact_block : callable
        ``exact_block(sphere_ids, y)`` gives the exact per-fold scores ``(len(ids), n_folds)``
        of some spheres (the block path), for the spheres whose decisions are uncertain
        and for labels the model cannot take.
    memory_mb : float
        Working-memory budget, in MB: test samples are processed in column chunks so that
        the per-voxel terms and the sphere sums of all threads fit in it.
    n_jobs : int
        Threads sharing the sparse products of one label vector, or worker processes
        taking whole label vectors when there are several.
    progress : callable or None
        Called with the number of spheres done.
    cache : dict or None
        Keeps what does not depend on the labels between calls on the same data.

    Returns
    -------
    ndarray (n_label_sets, n_spheres, n_folds)
    """
    if metric not in PREDICTION_METRICS:
        raise ValueError(f"sphere sums compute {PREDICTION_METRICS}, not {metric!r}.")
    ys = np.atleast_2d(ys)
    n_sets = ys.shape[0]
    n_workers = max(1, int(n_jobs))
    # one label vector: its sparse products are shared among threads; several (e.g.
    # permutations): whole label vectors go to worker processes
    processes = n_workers > 1 and n_sets > 1
    n_threads = 1 if processes else n_workers
    lean = n_sets == 1  # no copy of the data for a single label vector
    from .core._executors import Threads  # here: the core imports this module

    with Threads(n_threads) as threads:
        pool = threads.pool
        sums, state, shared = _label_independent(
            X, neighbourhoods, estimator, plan, n_threads, processes, lean, pool, cache
        )
        # per column of test samples: the per-voxel terms, the sums, and their temporaries
        bytes_per_column = 8 * (3 * X.shape[0] + 2 * sums.n_spheres) * max(1, n_classes - 1)
        max_columns = int(max(1, memory_mb * 2**20 / n_workers // bytes_per_column))
        if not processes:
            args = (estimator, n_classes, plan, metric, exact_block, max_columns)
            out = np.full((n_sets, sums.n_spheres, plan.n_folds), np.nan)
            for lo in range(0, n_sets, _LABEL_SETS_PER_PASS):
                rows = slice(lo, lo + _LABEL_SETS_PER_PASS)
                out[rows] = _label_sets_scores(state, sums, ys[rows], *args, pool=pool)
                if progress is not None:
                    progress(sums.n_spheres * len(ys[rows]))
            return out
        return _in_processes(shared, sums, ys, estimator, n_classes, plan, metric, exact_block,
                             max_columns, n_workers, progress)  # fmt: skip


def _label_independent(X, neighbourhoods, estimator, plan, n_threads, processes, lean, pool, cache):
    """The sphere sums and the model's per-voxel state (memory-mapped for worker processes
    when they take the label vectors), computed once per data and kept in ``cache``."""
    key = ("sphere-sums", id(X), id(neighbourhoods), id(estimator), id(plan), n_threads, processes, lean)
    cached = cache.get(key) if cache is not None else None
    if cached is not None:
        return cached[4], cached[5], cached[6]
    sums = SphereSums(neighbourhoods, n_threads)
    state = estimator.sphere_sum_state(X, plan, sums, lean=lean, pool=pool)
    shared = SharedFolder((X, sums, state, neighbourhoods)) if processes else None
    if cache is not None:  # the objects of the key are kept, so their ids stay theirs
        cache[key] = (X, neighbourhoods, estimator, plan, sums, state, shared)
    return sums, state, shared


def _in_processes(shared, sums, ys, estimator, n_classes, plan, metric, exact_block, max_columns,
                  n_workers, progress):  # fmt: skip
    """Whole label vectors in worker processes, which map the label-independent arrays."""
    from .core._executors import LocalProcesses

    n_sets = ys.shape[0]
    out = np.full((n_sets, sums.n_spheres, plan.n_folds), np.nan)
    X_mm, sums_mm, state_mm, hoods_mm = shared.objects
    exact_mm = exact_block.with_data(X_mm, hoods_mm) if hasattr(exact_block, "with_data") else exact_block
    args = (estimator, n_classes, plan, metric, exact_mm, max_columns)
    per_task = max(1, min(_LABEL_SETS_PER_PASS, -(-n_sets // (2 * n_workers))))
    argsets = [(lo, state_mm, sums_mm, ys[lo : lo + per_task], args) for lo in range(0, n_sets, per_task)]
    for _, (lo, scores) in LocalProcesses(n_workers).map_unordered(_task, argsets):
        out[lo : lo + len(scores)] = scores
        if progress is not None:
            progress(sums.n_spheres * len(scores))
    return out


#: label vectors whose per-voxel statistics are computed in one pass over the data
_LABEL_SETS_PER_PASS = 16


def _task(lo, state, sums, ys, args):
    """:func:`_label_sets_scores` in a worker process; returns ``(lo, scores)``."""
    exit_with_parent()
    with reused_work_arrays(), without_huge_pages():
        return lo, _label_sets_scores(state, sums, ys, *args, pool=None)


def _label_sets_scores(state, sums, ys, estimator, n_classes, plan, metric, exact_block,
                       max_columns, *, pool):  # fmt: skip
    """Per-fold scores ``(len(ys), n_spheres, n_folds)`` of some label vectors, in turn."""
    out = np.empty((len(ys), sums.n_spheres, plan.n_folds))
    for k, stats in enumerate(estimator.sphere_sum_label_sets(state, ys, n_classes, plan, pool=pool)):
        y = ys[k]
        if stats is None:
            out[k] = exact_block(np.arange(sums.n_spheres), y)
            continue
        uncertain = np.zeros(sums.n_spheres, dtype=bool)
        folds = estimator.sphere_sum_decisions(state, stats, n_classes, plan, sums, pool, max_columns)
        for f, decisions, unsure in folds:
            out[k, :, f] = batched_scores(metric, decisions, y[plan.test_indices[f]], n_classes)
            uncertain |= unsure
        ids = np.flatnonzero(uncertain)
        if ids.size:
            out[k, ids] = exact_block(ids, y)
    return out

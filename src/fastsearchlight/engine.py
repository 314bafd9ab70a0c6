"""Execution: run the spheres in memory-bounded blocks, batched or one by one.

Two paths give per-fold scores of every sphere:

- :func:`run_batched` gathers blocks of equal-size spheres into one dense array
  (spheres x samples x voxels) sized to the memory budget, and hands each block to a
  batched estimator that solves all spheres and folds at once;
- :func:`run_generic` fits a scikit-learn estimator per sphere and fold, exactly as nilearn
  does, for estimators or metrics the batched path does not cover.

Both run blocks in parallel with ``n_jobs`` (threads for the batched path, where numpy
releases the interpreter lock; processes for the generic path) and report progress with tqdm.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_validate
from tqdm.auto import tqdm

from .cv import CVPlan
from .estimators.base import BatchedClassifier
from .neighbourhoods import Neighbourhoods
from .scoring import batched_scores

#: default working-memory budget of a block, in megabytes
DEFAULT_MEMORY_MB = 512.0


def effective_n_jobs(n_jobs: int | None) -> int:
    """Number of workers for ``n_jobs`` (joblib's convention: -1 means all cores)."""
    from joblib import effective_n_jobs as _eff

    return max(1, _eff(n_jobs if n_jobs is not None else 1))


def spheres_per_block(bytes_per_sphere: int, memory_mb: float, n_workers: int = 1) -> int:
    """How many spheres fit in one block so that all workers stay under ``memory_mb``."""
    if not np.isfinite(memory_mb) or memory_mb <= 0:
        raise ValueError(f"memory budget must be a positive number of MB, got {memory_mb!r}.")
    budget = memory_mb * 2**20 / max(1, n_workers)
    return int(max(1, min(4096, budget // max(1, bytes_per_sphere))))


def run_batched(
    X: np.ndarray,
    neighbourhoods: Neighbourhoods,
    estimator: BatchedClassifier,
    ys: np.ndarray,
    n_classes: int,
    plan: CVPlan,
    metric: str,
    *,
    memory_mb: float = DEFAULT_MEMORY_MB,
    n_jobs: int | None = 1,
    verbose: int = 0,
    progress_desc: str = "searchlight",
) -> np.ndarray:
    """Per-fold scores of every sphere with a batched estimator.

    Parameters
    ----------
    X : ndarray (n_samples, n_mask_voxels)
        Masked data, read once.
    neighbourhoods : Neighbourhoods
    estimator : BatchedClassifier
    ys : ndarray (n_label_sets, n_samples) of class codes
        Label vectors scored on the same spheres (the observed labels, permutations).
    n_classes : int
    plan : CVPlan
    metric : str
        One of :data:`fastsearchlight.scoring.BATCHED_SCORINGS`.
    memory_mb : float
        Working-memory budget for the blocks in flight, in MB.
    n_jobs : int
        Blocks processed at the same time (threads).
    verbose : int
        Progress bar when > 0.

    Returns
    -------
    ndarray (n_label_sets, n_spheres, n_folds)
    """
    n_workers = effective_n_jobs(n_jobs)
    ys = np.atleast_2d(ys)
    X = np.asarray(X, dtype=np.float64)
    n_samples = X.shape[0]
    sizes = np.unique(neighbourhoods.sizes)
    per_block = {
        int(k): spheres_per_block(
            estimator.bytes_per_sphere(n_samples, int(k), plan.n_folds, n_classes),
            memory_mb,
            n_workers,
        )
        for k in sizes
    }
    blocks = list(neighbourhoods.blocks(lambda k: per_block[k]))
    bar = tqdm(
        total=neighbourhoods.n_spheres,
        disable=verbose <= 0,
        desc=progress_desc,
        unit="sphere",
        leave=False,
    )
    out = np.full((ys.shape[0], neighbourhoods.n_spheres, plan.n_folds), np.nan)
    with bar:
        if n_workers == 1:
            for ids, vox in blocks:
                out[:, ids] = _batched_block(X, vox, estimator, ys, n_classes, plan, metric)
                bar.update(len(ids))
        else:
            # processes, not threads: the solver's many small array operations hold the
            # interpreter lock. X is memory-mapped to the workers once by joblib.
            tasks = _group_blocks(blocks, 4 * n_workers)
            results = Parallel(n_jobs=n_workers, return_as="generator_unordered")(
                delayed(_batched_task)(X, task, estimator, ys, n_classes, plan, metric)
                for task in tasks
            )
            for ids, scores in results:
                out[:, ids] = scores
                bar.update(len(ids))
    return out


def _batched_block(X, vox, estimator, ys, n_classes, plan, metric):
    """Per-fold scores of one block of equal-size spheres, shape (n_label_sets, spheres, folds)."""
    block = np.transpose(X[:, vox], (1, 0, 2))  # (spheres, samples, voxels)
    proba_like = estimator.proba_like if metric == "roc_auc" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        decisions = estimator.many_fold_decisions(block, ys, n_classes, plan)
    return np.stack(
        [
            np.column_stack(
                [
                    batched_scores(metric, dec, y[test], n_classes, proba_like)
                    for dec, test in zip(folds, plan.test_indices)
                ]
            )
            for y, folds in zip(ys, decisions)
        ]
    )


def _batched_task(X, task, estimator, ys, n_classes, plan, metric):
    """Run several blocks in a worker; return their sphere ids and scores."""
    ids = np.concatenate([ids for ids, _ in task])
    scores = np.concatenate(
        [_batched_block(X, vox, estimator, ys, n_classes, plan, metric) for _, vox in task], axis=1
    )
    return ids, scores


def _group_blocks(blocks, n_tasks):
    """Split blocks into about ``n_tasks`` groups of similar numbers of spheres."""
    total = sum(len(ids) for ids, _ in blocks)
    target = max(1, total // max(1, n_tasks))
    tasks, current, count = [], [], 0
    for block in blocks:
        current.append(block)
        count += len(block[0])
        if count >= target:
            tasks.append(current)
            current, count = [], 0
    if current:
        tasks.append(current)
    return tasks


def _generic_block(estimator, X, rows, y, folds, scoring):
    """Per-fold scores of a list of spheres, one scikit-learn fit per sphere and fold."""
    out = np.empty((len(rows), len(folds)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for r, row in enumerate(rows):
            res = cross_validate(
                clone(estimator), X[:, row], y, cv=folds, scoring=scoring, n_jobs=1,
                error_score="raise",
            )  # fmt: skip
            out[r] = res["test_score"]
    return out


def run_generic(
    X: np.ndarray,
    neighbourhoods: Neighbourhoods,
    estimator,
    y: np.ndarray,
    plan: CVPlan,
    scoring: str | Callable | None,
    *,
    n_jobs: int | None = 1,
    verbose: int = 0,
    block_size: int = 64,
    progress_desc: str = "searchlight (per sphere)",
) -> np.ndarray:
    """Per-fold scores of every sphere, one scikit-learn fit per sphere and fold.

    The same computation as nilearn's ``SearchLight`` (``cross_val_score`` on each sphere),
    with the folds of ``plan``; blocks of spheres run in parallel processes.

    Returns
    -------
    ndarray (n_spheres, n_folds)
    """
    folds = list(zip(plan.train_indices, plan.test_indices))
    adjacency = neighbourhoods.adjacency
    rows = [adjacency.indices[adjacency.indptr[s] : adjacency.indptr[s + 1]] for s in range(adjacency.shape[0])]
    starts = list(range(0, len(rows), block_size))
    out = np.empty((len(rows), len(folds)))
    bar = tqdm(total=len(rows), disable=verbose <= 0, desc=progress_desc, unit="sphere", leave=False)
    n_workers = effective_n_jobs(n_jobs)
    with bar:
        results = Parallel(n_jobs=n_workers, return_as="generator")(
            delayed(_generic_block)(estimator, X, rows[s : s + block_size], y, folds, scoring)
            for s in starts
        )
        for s, scores in zip(starts, results):
            out[s : s + len(scores)] = scores
            bar.update(len(scores))
    return out

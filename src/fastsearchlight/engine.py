"""Execution, as functions of arrays: the searchlight of one label vector (or several) with a
batched estimator (:func:`run_batched`) or one scikit-learn fit per sphere and fold
(:func:`run_generic`), in this process, in joblib processes (``n_jobs > 1``) or on a
dask.distributed cluster (``backend="dask"``).

These build a :class:`~fastsearchlight.core.Problem` and an executor and call
:func:`~fastsearchlight.core.compute_scores`, the one place where the path is chosen; see
:mod:`fastsearchlight.core`. Whatever the backend, every sphere is computed the same way and
the results are assembled by sphere id, so the scores are bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .core import (
    DASK_INSTALL_HINT,
    DASK_RETRIES,
    DEFAULT_MEMORY_MB,
    DaskSession,
    ExactSpheres,
    MissingDependencyError,
    Problem,
    VoxelMajor,
    borrowed_session,
    compute_scores,
    effective_n_jobs,
    import_distributed,
    make_executor,
    prefers_threads,
    spheres_per_block,
    voxel_major,
)  # fmt: skip
from .core._blocks import batched_block, plan_blocks
from .core._compute import per_sphere_blocks
from .core._generic import no_cv_block, warn_failures
from .cv import CVPlan
from .estimators.base import BatchedClassifier
from .neighbourhoods import Neighbourhoods

__all__ = [
    "BACKENDS", "DASK_INSTALL_HINT", "DASK_RETRIES", "DEFAULT_MEMORY_MB", "DaskSession",
    "ExactSpheres", "MissingDependencyError", "VoxelMajor", "check_backend", "effective_n_jobs",
    "import_distributed", "run_batched", "run_generic", "run_without_cv", "spheres_per_block",
    "voxel_major", "warn_failures",
]  # fmt: skip

#: execution backends: joblib processes (in-process with ``n_jobs=1``) or a dask cluster
BACKENDS = ("loky", "dask")


def check_backend(backend: str) -> str:
    """Validate a backend name (one of :data:`BACKENDS`)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}.")
    return backend


def _run(problem: Problem, ys, n_jobs, verbose, desc, backend, scheduler) -> np.ndarray:
    check_backend(backend)
    if backend != "dask":
        threads = prefers_threads(problem.measure, problem.neighbourhoods, problem.plan)
        executor = make_executor(backend, n_jobs, None, threads=threads)
        return compute_scores(problem, ys, executor, verbose=verbose, desc=desc)
    with borrowed_session(scheduler) as session:
        return compute_scores(problem, ys, make_executor("dask", None, session), verbose=verbose, desc=desc)


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
    backend: str = "loky",
    scheduler: Any = None,
    cache: dict | None = None,
) -> np.ndarray:
    """Per-fold scores of every sphere with a batched estimator.

    Parameters
    ----------
    X : ndarray (n_samples, n_mask_voxels) or VoxelMajor
        Masked data, read once (see :func:`voxel_major`).
    neighbourhoods : Neighbourhoods
    estimator : BatchedClassifier
    ys : ndarray (n_label_sets, n_samples) of class codes
        Label vectors scored on the same spheres (the observed labels, permutations).
    n_classes : int
    plan : CVPlan
    metric : str
        One of :data:`fastsearchlight.scoring.BATCHED_SCORINGS`.
    memory_mb : float
        Working-memory budget for the blocks in flight, in MB (per worker process on a
        dask cluster).
    n_jobs : int
        Blocks processed at the same time (joblib processes); ignored by the dask backend,
        which uses every thread of the cluster.
    verbose : int
        Progress bar when > 0.
    backend : {"loky", "dask"}
        Joblib processes (in-process when ``n_jobs=1``), or a dask.distributed cluster.
    scheduler : DaskSession, Client, str or None
        With ``backend="dask"``: the cluster (see :class:`DaskSession`). Give a
        :class:`DaskSession` to reuse the data it has scattered across calls.
    cache : dict or None
        Kept by the caller across calls on the same data (e.g. batches of permutations):
        label-independent work is done once.

    Returns
    -------
    ndarray (n_label_sets, n_spheres, n_folds)
    """
    problem = Problem(
        voxel_major(X), neighbourhoods, plan, estimator, (metric,), n_classes, memory_mb,
        cache if cache is not None else {},
    )  # fmt: skip
    return _run(problem, ys, n_jobs, verbose, progress_desc, backend, scheduler)[..., 0]


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
    progress_desc: str = "searchlight (per sphere)",
    backend: str = "loky",
    scheduler: Any = None,
) -> np.ndarray:
    """Per-fold scores of every sphere, one scikit-learn fit per sphere and fold.

    The same computation as nilearn's ``SearchLight`` (``cross_val_score`` on each sphere,
    with ``error_score=np.nan``: a fit or score that fails gives NaN, and one warning per
    call counts them), with the folds of ``plan``, on ``X`` and ``y`` as given (the user's
    labels, the data's dtype); blocks of spheres run in parallel processes, or as tasks on
    a dask cluster with ``backend="dask"`` (see :func:`run_batched` for ``backend`` and
    ``scheduler``; a custom ``scoring`` callable must then be importable by the workers or
    picklable by value).

    Returns
    -------
    ndarray (n_spheres, n_folds)
    """
    problem = Problem(X, neighbourhoods, plan, estimator, (scoring,))
    return _run(problem, np.asarray(y)[None, :], n_jobs, verbose, progress_desc, backend, scheduler)[
        0, ..., 0
    ]


def run_without_cv(X, neighbourhoods, estimator, y, groups, *, n_jobs=1, verbose=0,
                   block_size=64, progress_desc="searchlight (per sphere)"):  # fmt: skip
    """Scores ``(n_spheres, 1)`` of an estimator that does its own validation
    (``nilearn_searchlight_uses_cv = False``, as in nilearn): one fit on all samples of
    each sphere, with ``groups``, scored by its ``score(X, y, groups=groups)``."""
    executor = make_executor("loky", n_jobs, None)
    data = executor.share(X)
    return per_sphere_blocks(
        neighbourhoods, executor, no_cv_block, lambda rows: (estimator, data, rows, y, groups), (1,),
        verbose, progress_desc, block_size,
    )  # fmt: skip


def _blocks(X, neighbourhoods, estimator, n_classes, plan, memory_mb, n_workers):
    """Blocks of equal-size spheres (see :func:`fastsearchlight.core._blocks.plan_blocks`)."""
    return plan_blocks(X, neighbourhoods, estimator, n_classes, plan, memory_mb, n_workers)


def _batched_block(X, vox, estimator, ys, n_classes, plan, metric):
    """Per-fold scores of one block for one metric, (n_label_sets, spheres, folds)."""
    return batched_block(X, vox, estimator, ys, n_classes, plan, (metric,))[..., 0]

"""A fit's problem, and the one function that turns it into scores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._huge_pages import without_huge_pages
from .._work_arrays import reused_work_arrays
from ..cv import CVPlan
from ..estimators.base import BatchedClassifier
from ..neighbourhoods import Neighbourhoods
from ..sphere_sums import run_sphere_sums, supports_sphere_sums
from ._blocks import ExactSpheres, batched_task, group_blocks, plan_blocks, voxel_major
from ._executors import Executor, InProcess
from ._generic import generic_block, merge_failures, warn_failures

__all__ = ["DEFAULT_MEMORY_MB", "Problem", "compute_scores", "per_sphere_blocks", "progress_bar"]

#: default working-memory budget of a block, in megabytes
DEFAULT_MEMORY_MB = 512.0


@dataclass
class Problem:
    """Everything a searchlight computes from, but the labels.

    Attributes
    ----------
    data : ndarray
        The masked data: voxel-major (n_mask_voxels, n_samples) for a batched measure
        (:func:`voxel_major`), sample-major (n_samples, n_mask_voxels) in the images' dtype
        for a scikit-learn estimator (what nilearn hands it).
    neighbourhoods : Neighbourhoods
        The spheres (any sparse neighbourhood: a volume's spheres, a mesh's discs).
    plan : CVPlan
        The folds, shared by every sphere.
    measure : BatchedClassifier or scikit-learn estimator
        What is computed on each sphere and fold: a batched classifier's decisions, or one
        scikit-learn fit per sphere and fold.
    metrics : tuple
        Scores made from the same decisions: batched metric names
        (:data:`fastsearchlight.scoring.BATCHED_SCORINGS`) for a batched measure, scikit-learn
        scorings (names, callables, None) otherwise.
    n_classes : int
        Classes of the targets (label sets are class codes for a batched measure).
    memory_mb : float
        Working-memory budget of the blocks in flight, per worker process on a cluster.
    cache : dict
        Label-independent work kept between calls on the same problem (the batches of a
        permutation test): sphere sums' per-voxel state, the blocks of each executor.
    """

    data: np.ndarray
    neighbourhoods: Neighbourhoods
    plan: CVPlan
    measure: Any
    metrics: tuple
    n_classes: int = 2
    memory_mb: float = DEFAULT_MEMORY_MB
    cache: dict = field(default_factory=dict)

    @property
    def batched(self) -> bool:
        """Whether the measure is solved for many spheres at once."""
        return isinstance(self.measure, BatchedClassifier)


def progress_bar(total: int, verbose: int, desc: str):
    """A tqdm bar, shown when ``verbose > 0``."""
    from tqdm.auto import tqdm  # here: worker processes, which import this module, need none

    return tqdm(total=total, disable=verbose <= 0, desc=desc, unit="sphere", leave=False)


def compute_scores(
    problem: Problem,
    label_sets: np.ndarray,
    executor: Executor | None = None,
    *,
    verbose: int = 0,
    desc: str = "searchlight",
    reduce: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Per-fold scores of every sphere for every label vector and metric.

    The one place where the path is chosen: per-sphere scikit-learn fits for an estimator
    without a batched equivalent; sphere sums for the models whose decisions are sums over
    the sphere's voxels (in this process's threads, or its worker processes, for prediction
    metrics); otherwise blocks of equal-size spheres solved at once, on ``executor``.

    Parameters
    ----------
    problem : Problem
    label_sets : ndarray (n_label_sets, n_samples)
        Label vectors scored on the same spheres (the observed labels, permutations).
    executor : Executor or None
        Where the tasks run (None: in this process).
    reduce : callable or None
        Applied to the scores of each block of spheres as they arrive, shape
        (n_label_sets, spheres, n_folds, n_metrics) -> (n_label_sets, spheres, ...), so that
        only its result is held for every sphere (a permutation test keeps the fold means
        of its batch of label vectors, not their per-fold scores). It must treat each
        sphere on its own.

    Returns
    -------
    ndarray (n_label_sets, n_spheres, n_folds, n_metrics), or ``reduce``'s shape
    """
    executor = executor or InProcess()
    ys = np.atleast_2d(label_sets)
    # what runs in this process (its threads) reuses its large work arrays from block to
    # block, and takes its fresh memory without numpy's huge pages (see _huge_pages.py)
    with reused_work_arrays(), without_huge_pages():
        if problem.batched:
            X = voxel_major(problem.data)
            metrics = tuple(problem.metrics)
            if executor.is_dask or not all(supports_sphere_sums(problem.measure, m) for m in metrics):
                return _blocks(problem, X, ys, executor, verbose, desc, reduce)
            scores = _sphere_sums(problem, X, ys, executor.n_workers, verbose, desc)
        else:
            scores = np.stack([_generic(problem, y, executor, verbose, desc) for y in ys])
    return scores if reduce is None else reduce(scores)


def _sphere_sums(problem, X, ys, n_workers, verbose, desc):
    """Sphere sums, one metric at a time (each reuses the label-independent state)."""
    hoods, est, plan, n_classes = problem.neighbourhoods, problem.measure, problem.plan, problem.n_classes
    out = []
    with progress_bar(ys.shape[0] * hoods.n_spheres * len(problem.metrics), verbose, desc) as bar:
        for metric in problem.metrics:
            exact = ExactSpheres(X, hoods, est, n_classes, plan, metric, problem.memory_mb)
            out.append(run_sphere_sums(
                X, hoods, est, ys, n_classes, plan, metric, exact, memory_mb=problem.memory_mb,
                n_jobs=n_workers, progress=bar.update, cache=problem.cache,
            ))  # fmt: skip
    return np.stack(out, axis=-1)


def _blocks(problem, X, ys, executor, verbose, desc, reduce=None):
    """Blocks of equal-size spheres on ``executor``; the blocks (and their grouping into
    tasks) are planned once per problem, executor and number of label vectors solved together
    (the memory budget holds for all of them). ``reduce``: as :func:`compute_scores`."""
    hoods, est, plan = problem.neighbourhoods, problem.measure, problem.plan
    key = ("blocks", executor.is_dask, executor.n_workers, executor.n_tasks, ys.shape[0])
    tasks = problem.cache.get(key)
    if tasks is None:
        blocks = plan_blocks(
            X, hoods, est, problem.n_classes, plan, problem.memory_mb, executor.n_workers, ys.shape[0]
        )
        tasks = [[b] for b in blocks] if executor.n_tasks is None else group_blocks(blocks, executor.n_tasks)
        problem.cache[key] = tasks
    data = executor.share(X, key=("data", id(X)))
    shared_tasks = executor.share(tasks, key=("tasks", id(tasks))) if executor.is_dask else tasks
    metrics = tuple(problem.metrics)
    argsets = [(data, task, est, ys, problem.n_classes, plan, metrics) for task in shared_tasks]
    reduce = reduce or (lambda scores: scores)
    shape = reduce(np.empty((ys.shape[0], 0, plan.n_folds, len(metrics)))).shape
    out = np.full((shape[0], hoods.n_spheres, *shape[2:]), np.nan)
    with progress_bar(hoods.n_spheres, verbose, desc) as bar:
        for _, (ids, scores) in executor.map_unordered(batched_task, argsets, name="fastsearchlight-batched"):
            out[:, ids] = reduce(scores)
            bar.update(len(ids))
    return out


def _generic(problem, y, executor, verbose, desc):
    """One scikit-learn fit per sphere and fold, in blocks of spheres; failures give NaN and
    one warning (scikit-learn's ``error_score=nan``)."""
    plan, metrics = problem.plan, tuple(problem.metrics)
    folds = list(zip(plan.train_indices, plan.test_indices))
    data = executor.share(problem.data, key=("data", id(problem.data)))
    return per_sphere_blocks(
        problem.neighbourhoods, executor, generic_block, lambda rows: (problem.measure, data, rows, y, folds, metrics),
        (len(folds), len(metrics)), verbose, desc,
    )  # fmt: skip


def per_sphere_blocks(hoods, executor, func, args_of, shape, verbose, desc, block_size: int = 64):
    """Scores ``(n_spheres, *shape)`` of ``func(*args_of(rows))`` on blocks of spheres
    (``rows``: each sphere's voxels), run on ``executor``; ``func`` returns the block's
    scores and its failures, counted in one warning."""
    rows = [hoods.voxels(s) for s in range(hoods.n_spheres)]
    starts = list(range(0, len(rows), block_size))
    argsets = [args_of(rows[s : s + block_size]) for s in starts]
    out = np.empty((len(rows), *shape))
    failures: dict = {}
    with progress_bar(len(rows), verbose, desc) as bar:
        for i, (scores, failed) in executor.map_unordered(
            func, argsets, name=f"fastsearchlight-{func.__name__}"
        ):
            out[starts[i] : starts[i] + len(scores)] = scores
            merge_failures(failures, failed)
            bar.update(len(scores))
    warn_failures(failures, out.size)
    return out

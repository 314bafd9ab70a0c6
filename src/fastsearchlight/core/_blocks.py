"""Blocks of equal-size spheres, sized to the memory budget, and their batched scores."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

from ..cv import CVPlan
from ..estimators.base import BatchedClassifier
from ..neighbourhoods import Neighbourhoods
from ..scoring import batched_scores, uses_predictions_only
from ..shared import exit_with_parent

__all__ = [
    "ExactSpheres", "VoxelMajor", "batched_block", "batched_task", "group_blocks", "plan_blocks",
    "spheres_per_block", "voxel_major",
]  # fmt: skip


class VoxelMajor(np.ndarray):
    """Masked data stored voxel by voxel, (n_mask_voxels, n_samples), C-contiguous."""


def voxel_major(X: np.ndarray) -> VoxelMajor:
    """The (n_samples, n_mask_voxels) data as a :class:`VoxelMajor` array (no copy if it is one).

    Callers that run several searchlights on the same data (permutation batches) convert
    once and pass the result, so that the copy, and a cluster's scatter, happen once.
    """
    if isinstance(X, VoxelMajor):
        return X
    return np.ascontiguousarray(np.asarray(X, dtype=np.float64).T).view(VoxelMajor)


def spheres_per_block(bytes_per_sphere: int, memory_mb: float, n_workers: int = 1) -> int:
    """How many spheres fit in one block so that all workers stay under ``memory_mb``."""
    if not np.isfinite(memory_mb) or memory_mb <= 0:
        raise ValueError(f"memory budget must be a positive number of MB, got {memory_mb!r}.")
    budget = memory_mb * 2**20 / max(1, n_workers)
    return int(max(1, min(4096, budget // max(1, bytes_per_sphere))))


#: with several workers, blocks hold at most 1 / (this * n_workers) of the spheres, so that the
#: last blocks to finish leave no worker idle for long (W1 at 8 mm: 63 blocks, the largest of
#: 4,096 spheres, kept two threads at 1.75 times one)
_TASKS_PER_WORKER = 32


def plan_blocks(X, neighbourhoods, estimator, n_classes, plan, memory_mb, n_workers, n_label_sets=1):
    """Blocks of equal-size spheres, each sized so that ``n_workers`` of them fit the budget
    with ``n_label_sets`` label vectors (a batch of permutations) solved together, and, with
    several workers, small enough to share the work evenly and ordered from the largest
    spheres to the smallest (the costliest blocks do not come last). The spheres from the
    estimator's :meth:`~.BatchedClassifier.mixed_sizes_from` on share blocks of several
    sizes, in their order (see :meth:`.Neighbourhoods.blocks`).

    ``X`` is voxel-major, (n_mask_voxels, n_samples).
    """
    n_samples = X.shape[1]
    even = max(32, -(-neighbourhoods.n_spheres // (_TASKS_PER_WORKER * n_workers))) if n_workers > 1 else 4096

    def sphere_bytes(k: int) -> int:
        """One sphere's working memory with every label vector of the batch."""
        args = (n_samples, k, plan.n_folds, n_classes)
        return estimator.bytes_per_sphere(*args) + (n_label_sets - 1) * estimator.bytes_per_label_set(*args)

    per_block = {
        int(k): min(even, spheres_per_block(sphere_bytes(int(k)), memory_mb, n_workers))
        for k in np.unique(neighbourhoods.sizes)
    }
    blocks = list(neighbourhoods.blocks(lambda k: per_block[k], estimator.mixed_sizes_from(plan)))
    if n_workers > 1:  # largest spheres first: the blocks left at the end are the cheapest
        blocks.sort(key=lambda block: -block[1].shape[1])
    return blocks


def group_blocks(blocks, n_tasks):
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


def batched_block(X, vox, estimator, ys, n_classes, plan, metrics):
    """Per-fold scores of one block of equal-size spheres, shape (n_label_sets, spheres,
    folds, metrics): the decisions are computed once and scored by every metric.

    ``X`` is voxel-major, (n_mask_voxels, n_samples).
    """
    # the estimator gathers the spheres' samples (by default one contiguous gather of
    # whole rows, seen as (spheres, samples, voxels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if uses_predictions_only(metrics):
            decisions = estimator.many_fold_decisions_for_predictions_at(X, vox, ys, n_classes, plan)
        else:
            decisions = estimator.many_fold_decisions_at(X, vox, ys, n_classes, plan)
    return np.stack(
        [
            np.stack(
                [
                    np.column_stack(
                        [
                            batched_scores(
                                metric,
                                dec,
                                y[test],
                                n_classes,
                                estimator.proba_like if metric == "roc_auc" else None,
                            )  # fmt: skip
                            for dec, test in zip(folds, plan.test_indices)
                        ]
                    )
                    for metric in metrics
                ],
                axis=-1,
            )
            for y, folds in zip(ys, decisions)
        ]
    )


def batched_task(X, task, estimator, ys, n_classes, plan, metrics):
    """Run several blocks (in a worker); return their sphere ids and scores."""
    exit_with_parent()
    ids = np.concatenate([ids for ids, _ in task])
    scores = np.concatenate(
        [batched_block(X, vox, estimator, ys, n_classes, plan, metrics) for _, vox in task], axis=1
    )
    return ids, scores


@dataclass(frozen=True)
class ExactSpheres:
    """Per-fold scores of some spheres by the block path, in-process: the exact fallback of
    :func:`~fastsearchlight.sphere_sums.run_sphere_sums` (a picklable callable)."""

    X: np.ndarray
    neighbourhoods: Neighbourhoods
    estimator: BatchedClassifier
    n_classes: int
    plan: CVPlan
    metric: str
    memory_mb: float

    def __call__(self, ids: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Scores ``(len(ids), n_folds)`` of spheres ``ids`` for labels ``y``."""
        hoods = self.neighbourhoods
        sub = Neighbourhoods(hoods.adjacency[ids], hoods.seeds_ijk[ids])
        out = np.empty((len(ids), self.plan.n_folds))
        blocks = plan_blocks(self.X, sub, self.estimator, self.n_classes, self.plan, self.memory_mb, 1)
        for rows, vox in blocks:
            out[rows] = batched_block(
                self.X, vox, self.estimator, y[None, :], self.n_classes, self.plan, (self.metric,)
            )[0, ..., 0]
        return out

    def with_data(self, X: np.ndarray, neighbourhoods: Neighbourhoods | None = None) -> ExactSpheres:
        """The same, on other copies of the data (e.g. memory-mapped for worker processes)."""
        return replace(self, X=X, neighbourhoods=neighbourhoods or self.neighbourhoods)

"""The permutation loop: null maps of every permuted label vector, stored as they come."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._null_store import NullStore, fingerprint
from ._permutations import LabelPermutations, make_permutations

__all__ = ["fold_mean", "null_maps", "permutation_null"]


def fold_mean(fold_scores: np.ndarray) -> np.ndarray:
    """Mean over folds (last axis), with the same arithmetic for observed and null maps
    (each row contiguous, as nilearn's mean of one sphere's fold scores), so that the same
    fold scores always give the same map score."""
    return np.ascontiguousarray(fold_scores, dtype=np.float64).mean(axis=-1)


def null_maps(
    maps_for: Callable[[np.ndarray, str], np.ndarray],
    observed: np.ndarray,
    targets: np.ndarray,
    permutations: LabelPermutations,
    store: NullStore,
    batch: int,
) -> NullStore:
    """Fill ``store`` with the map of every permutation not done yet.

    Parameters
    ----------
    maps_for : callable
        ``maps_for(label_sets, description)`` gives the maps of label vectors, shape
        (n_label_sets, n_spheres): the searchlight's fold means (:func:`fold_mean`, as the
        observed map).
    observed : ndarray (n_spheres,)
        The observed map (fold means).
    targets : ndarray (n_samples,)
        The observed labels.
    permutations : LabelPermutations
    store : NullStore
        Where the maps go (a checkpoint resumes: its rows done are not recomputed).
    batch : int
        Permutations solved together.
    """
    labels = permutations.labels
    # a permutation that gives back the observed labels has the observed map: taken as it
    # is, not recomputed (enumerations always hold it; random draws may)
    unchanged = np.flatnonzero((labels == targets[None, :]).all(axis=1))
    if unchanged.size and not store.done[unchanged].all():
        store.write(unchanged, np.broadcast_to(observed, (unchanged.size, observed.size)))
    todo = np.flatnonzero(~store.done)
    for lo in range(0, todo.size, batch):
        rows = todo[lo : lo + batch]
        desc = f"permutations {lo + 1}-{lo + rows.size}/{todo.size}"
        store.write(rows, maps_for(labels[rows], desc))
    return store


def permutation_null(
    maps_for: Callable[[np.ndarray, str], np.ndarray],
    observed: np.ndarray,
    targets: np.ndarray,
    groups: np.ndarray | None,
    n_permutations: int,
    random_state,
    *,
    plan=None,
    permute: str = "blocks",
    analysis: tuple = (),
    checkpoint=None,
    batch: int = 32,
) -> tuple[LabelPermutations, NullStore]:
    """The permutations of a test and their null maps (see :func:`make_permutations` and
    :func:`null_maps`).

    ``analysis`` identifies the data and parameters, so that a checkpoint made for another
    analysis (or other permutations) is refused.
    """
    perms = make_permutations(targets, groups, n_permutations, random_state, plan, permute=permute)
    key = fingerprint(*analysis, perms.labels)
    store = NullStore(perms.n_permutations, observed.size, key, path=checkpoint)
    null_maps(maps_for, observed, targets, perms, store, batch)
    return perms, store

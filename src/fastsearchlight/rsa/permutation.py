"""Permutation test of model fit: condition labels permuted, the distances reused.

Relabelling the conditions by a permutation ``pi`` (condition ``c`` becomes ``pi[c]``)
moves the distance of pair ``(i, j)`` to pair ``(pi[i], pi[j])``: the RDM is reordered, not
recomputed. Every comparison is invariant to a common reordering of both vectors' entries,
so the fit of a permuted RDM to a model is the fit of the RDM to the model reordered the
other way; the sphere RDMs are transformed once and every permutation of every model is
one column of a matrix product. The same permutations serve every sphere, so the maximum
fit over the map is a family-wise statistic (Nichols & Holmes 2002). When there are no more
than ``n_permutations`` relabellings (``n_conditions!``), all are enumerated: an exact test.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ._design import pair_indices
from .evaluation import _CHUNK_ELEMENTS, transform_rdms

__all__ = ["ModelTest", "condition_permutations", "permutation_test", "permuted_models"]

#: null fits within this of the observed one count as equal to it (the same value up to
#: the rounding of a matrix product)
TIE_TOLERANCE = 1e-12


@dataclass
class ModelTest:
    """The result of a permutation test of model fit.

    Attributes
    ----------
    method : str
        The comparison.
    scores : ndarray (n_models, n_spheres)
        Observed fit of each model at each sphere.
    p_values, p_fwe : ndarray (n_models, n_spheres)
        Uncorrected p-values, and family-wise corrected ones by the maximum over spheres.
    max_null : ndarray (n_models, n_permutations)
        Largest fit over the spheres of each permuted RDM.
    permutations : ndarray of int (n_permutations, n_conditions)
        The relabellings (condition ``c`` becomes ``permutations[k, c]``).
    exhaustive : bool
        Whether every relabelling was used (then p-values are ``#{null >= observed} / N``,
        the identity among them; else ``(1 + #{null >= observed}) / (1 + N)``).
    null : ndarray (n_models, n_permutations, n_spheres) or None
        Every null fit, when asked for.
    """

    method: str
    scores: np.ndarray
    p_values: np.ndarray
    p_fwe: np.ndarray
    max_null: np.ndarray
    permutations: np.ndarray
    exhaustive: bool
    null: np.ndarray | None = None


def condition_permutations(n_conditions: int, n_permutations: int, random_state) -> tuple[np.ndarray, bool]:
    """Relabellings of the conditions: all of them when there are at most ``n_permutations``
    (in lexicographic order, the identity first), else ``n_permutations`` drawn at random.

    Returns
    -------
    permutations : ndarray of int (n, n_conditions)
    exhaustive : bool
    """
    if math.factorial(n_conditions) <= n_permutations:
        return np.array(list(itertools.permutations(range(n_conditions))), dtype=np.intp), True
    rng = np.random.default_rng(random_state)
    perms = np.array([rng.permutation(n_conditions) for _ in range(n_permutations)], dtype=np.intp)
    return perms, False


def permuted_models(models: np.ndarray, permutations: np.ndarray) -> np.ndarray:
    """Each model reordered so that its fit to an RDM is the fit of that RDM relabelled.

    Returns
    -------
    ndarray (n_models, n_permutations, n_pairs)
    """
    C = permutations.shape[1]
    rows, cols = pair_indices(C)
    index = np.zeros((C, C), dtype=np.intp)
    index[rows, cols] = index[cols, rows] = np.arange(len(rows))
    moved = index[permutations[:, rows], permutations[:, cols]]  # (n_perm, n_pairs)
    return models[:, moved]


def permutation_test(
    rdms: np.ndarray,
    models: np.ndarray,
    method: str,
    n_permutations: int,
    random_state=None,
    keep_null: bool = False,
) -> ModelTest:
    """Observed fits, null fits of relabelled RDMs, p-values and FWE p-values.

    Parameters
    ----------
    rdms : ndarray (n_spheres, n_pairs)
    models : ndarray (n_models, n_pairs)
    method : str
        A comparison of :data:`~.evaluation.COMPARISONS`.
    n_permutations : int
    random_state : int, Generator or None
    keep_null : bool
        Keep every null fit (n_models x n_permutations x n_spheres).

    Returns
    -------
    ModelTest
    """
    n_conditions = int(round((1 + np.sqrt(1 + 8 * rdms.shape[1])) / 2))
    perms, exhaustive = condition_permutations(n_conditions, n_permutations, random_state)
    n_models, n_perm, n_spheres = models.shape[0], len(perms), rdms.shape[0]
    # column 0 of each model: the model itself, in the same product as its permutations
    columns = np.concatenate([models[:, None, :], permuted_models(models, perms)], axis=1)
    right = transform_rdms(columns.reshape(n_models * (n_perm + 1), -1), method, scale=False)
    right = right.reshape(n_models, n_perm + 1, -1)
    scores = np.empty((n_models, n_spheres))
    count = np.zeros((n_models, n_spheres), dtype=np.int64)
    max_null = np.full((n_models, n_perm), -np.inf)
    null = np.empty((n_models, n_perm, n_spheres)) if keep_null else None
    step = max(1, _CHUNK_ELEMENTS // max(1, right.shape[2] + n_perm))
    for lo in range(0, n_spheres, step):
        chunk = np.asarray(rdms[lo : lo + step], dtype=np.float64)
        bad = ~np.all(np.isfinite(chunk), axis=1)
        left = transform_rdms(np.where(bad[:, None], 0.0, chunk), method)
        for m in range(n_models):
            fit = left @ right[m].T  # (chunk, 1 + n_perm)
            if method == "tau-a":
                np.clip(fit, -1.0, 1.0, out=fit)
            fit[bad] = np.nan
            obs, nul = fit[:, 0], fit[:, 1:]
            scores[m, lo : lo + step] = obs
            count[m, lo : lo + step] = np.sum(nul >= obs[:, None] - TIE_TOLERANCE, axis=1)
            max_null[m] = np.fmax(max_null[m], np.nanmax(nul, axis=0, initial=-np.inf))
            if keep_null:
                null[m, :, lo : lo + step] = nul.T
    ordered = np.sort(max_null, axis=1)
    exceed = np.stack([
        n_perm - np.searchsorted(ordered[m], scores[m] - TIE_TOLERANCE, side="left") for m in range(n_models)
    ])  # fmt: skip
    if exhaustive:
        p_values, p_fwe = count / n_perm, exceed / n_perm
    else:
        p_values, p_fwe = (1 + count) / (1 + n_perm), (1 + exceed) / (1 + n_perm)
    nan = np.isnan(scores)
    p_values[nan] = p_fwe[nan] = np.nan
    return ModelTest(method, scores, p_values, p_fwe, max_null, perms, exhaustive, null)

"""Population prevalence inference from first-level permutations (Allefeld, Görgen & Haynes
2016, NeuroImage 141:378-392).

A mean of accuracies over subjects says whether the *average* subject carries information,
which one strongly informative subject can produce. Prevalence inference asks instead
whether the information is present in *most* subjects: the prevalence gamma is the
fraction of the population in which the effect is present, and the test rejects the
"majority null hypothesis" gamma <= gamma0.

The statistic is the minimum over subjects of each voxel's score, m(v). Its null
distribution comes from second-level permutations: each combines one first-level
permutation map per subject (drawn at random, the observed labelling being one of each
subject's permutations), the first combination being the observed maps (the paper's
Algorithm, steps 1-4). Then, with N subjects (the paper's equations 24 and 25, and the
spatially extended versions with the maximum of m over the map):

- p_global(v) = #{j : m_j(v) >= m_1(v)} / P2, the global null "no subject has an effect";
  p_global_fwe(v) the same against max_v m_j(v), family-wise corrected;
- the majority null gamma <= gamma0 has p = ((1 - gamma0) p_global^(1/N) + gamma0)^N, so the
  largest gamma0 whose null is rejected at alpha is
  gamma0(v) = (alpha^(1/N) - p^(1/N)) / (1 - p^(1/N)), computed with the corrected p;
  where p_global_fwe > alpha nothing is rejected (gamma0 = 0 in the map).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PrevalenceResult", "gamma0_bound", "prevalence_inference", "prevalence_p"]


def prevalence_p(p_global: np.ndarray, gamma0: float, n_subjects: int) -> np.ndarray:
    """p-value of the majority null ``gamma <= gamma0`` from the global null's p-value
    (Allefeld et al. 2016, eq. 24)."""
    root = np.asarray(p_global, dtype=np.float64) ** (1.0 / n_subjects)
    return ((1.0 - gamma0) * root + gamma0) ** n_subjects


def gamma0_bound(p_global: np.ndarray, alpha: float, n_subjects: int) -> np.ndarray:
    """The largest gamma0 whose majority null is rejected at ``alpha`` (eq. 25); 0 where even
    the global null is not rejected."""
    root = np.asarray(p_global, dtype=np.float64) ** (1.0 / n_subjects)
    a = alpha ** (1.0 / n_subjects)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (a - root) / (1.0 - root)
    return np.where(root < a, g, 0.0)


@dataclass
class PrevalenceResult:
    """Outcome of :func:`prevalence_inference` (arrays over the common voxels)."""

    min_statistic: np.ndarray
    p_global: np.ndarray
    p_global_fwe: np.ndarray
    gamma0: np.ndarray  # from the corrected p
    gamma0_uncorrected: np.ndarray
    gamma0_max: float  # the largest gamma0 these permutations can reject
    n_second_level: int
    exhaustive: bool
    alpha: float


def _permutation_sets(observed, null, includes_observed) -> list[np.ndarray]:
    """Each subject's permutation set: index 0 is the observed map, then its null rows
    (without the observed one when they hold it already)."""
    n_voxels = observed[0].size
    sets = []
    for o, z, has in zip(observed, null, includes_observed):
        if z.ndim != 2 or z.shape[1] != n_voxels or o.shape != (n_voxels,):
            raise ValueError("every subject's maps must cover the same voxels")
        rows = np.arange(z.shape[0])
        if has:
            same = np.flatnonzero((np.asarray(z) == o[None, :]).all(axis=1))
            if same.size == 0:
                raise ValueError("an exhaustive permutation set lacks the observed map")
            rows = np.delete(rows, same[0])
        sets.append(rows)
    return sets


def _second_level_picks(sizes: list[int], n_permutations: int, random_state) -> tuple[np.ndarray, bool]:
    """One row per second-level permutation: the index of each subject's map in its set
    (0: the observed map); the first row is the observed combination. Every combination
    when there are no more than ``n_permutations``."""
    exhaustive = math.prod(sizes) <= n_permutations
    if exhaustive:
        # every combination, the observed one (all zeros) first
        grids = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
        return np.stack([g.ravel() for g in grids], axis=1), True
    rng = np.random.default_rng(random_state)
    picks = np.stack([rng.integers(0, s, size=n_permutations) for s in sizes], axis=1)
    picks[0] = 0
    return picks, False


def prevalence_inference(
    observed: list[np.ndarray],
    null: list[np.ndarray],
    *,
    includes_observed: list[bool] | None = None,
    n_permutations: int = 10000,
    alpha: float = 0.05,
    random_state=0,
    chunk: int = 32,
) -> PrevalenceResult:
    """Prevalence inference on a common set of voxels.

    Parameters
    ----------
    observed : list of ndarray (n_voxels,)
        Each subject's observed map.
    null : list of ndarray (n_permutations_k, n_voxels)
        Each subject's first-level permutation maps (may be memory maps).
    includes_observed : list of bool or None
        Per subject, whether its permutations already hold the observed labelling (an
        exhaustive enumeration); otherwise the observed map is added as one of them.
    n_permutations : int
        Second-level permutations P2 (the observed combination included); when the
        subjects' permutations combine in no more ways, every combination is used.
    alpha : float
        Level of the tests behind ``gamma0``.
    random_state : int, Generator or None
    """
    n_subjects = len(observed)
    if n_subjects < 2 or len(null) != n_subjects:
        raise ValueError("prevalence inference needs at least two subjects, each with null maps")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    if n_permutations < 2:
        raise ValueError(f"prevalence inference needs at least 2 permutations, got {n_permutations}")
    includes_observed = includes_observed or [False] * n_subjects
    observed = [np.asarray(o, dtype=np.float64) for o in observed]
    n_voxels = observed[0].size
    sets = _permutation_sets(observed, null, includes_observed)
    picks, exhaustive = _second_level_picks([1 + r.size for r in sets], n_permutations, random_state)
    n_second = len(picks)

    m_obs = np.min(np.stack(observed), axis=0)
    count = np.zeros(n_voxels)
    max_m = np.empty(n_second)
    for lo in range(0, n_second, chunk):
        block = picks[lo : lo + chunk]
        m = np.full((len(block), n_voxels), np.inf)
        for k in range(n_subjects):
            maps = np.empty((len(block), n_voxels))
            is_obs = block[:, k] == 0
            maps[is_obs] = observed[k]
            if (~is_obs).any():
                maps[~is_obs] = np.asarray(null[k][sets[k][block[~is_obs, k] - 1]], dtype=np.float64)
            np.minimum(m, maps, out=m)
        # scores are ratios of small integers; equal sums in another order differ by less
        count += (m >= m_obs[None, :] - 1e-9).sum(axis=0)
        max_m[lo : lo + chunk] = m.max(axis=1)
    p_global = count / n_second
    p_fwe = (max_m[None, :] >= m_obs[:, None] - 1e-9).sum(axis=1) / n_second
    gamma0_max = float(gamma0_bound(np.array([1.0 / n_second]), alpha, n_subjects)[0])
    return PrevalenceResult(
        min_statistic=m_obs, p_global=p_global, p_global_fwe=p_fwe,
        gamma0=gamma0_bound(p_fwe, alpha, n_subjects),
        gamma0_uncorrected=gamma0_bound(p_global, alpha, n_subjects),
        gamma0_max=gamma0_max, n_second_level=n_second, exhaustive=exhaustive, alpha=alpha,
    )  # fmt: skip


#: files written by :func:`run_prevalence`

"""RDMs of many spheres at once, with rsatoolbox's definitions.

With ``m_c`` the mean pattern of condition ``c`` over the sphere's ``n`` voxels and ``P``
the sphere's noise precision (the identity without noise):

- ``"euclidean"``: ``(m_i - m_j)' (m_i - m_j) / n``;
- ``"mahalanobis"``: ``(m_i - m_j)' P (m_i - m_j) / n``;
- ``"correlation"``: ``1 - r(m_i, m_j)``, the correlation across voxels;
- ``"crossnobis"``: leave one run out; with ``a`` the means over the other runs' samples and
  ``b`` those of the left-out run, ``(a_i - a_j)' P (b_i - b_j) / n``, averaged over runs.

Everything that does not depend on the sphere is computed once per voxel: the condition
means (or, for crossnobis, every fold's training and test means, from the per-(run,
condition) sums) and the residuals of the noise model. All but the correlation are then sums
over groups of patterns of ``w_g (a_gi - a_gj)' P (b_gi - b_gj) / n``, computed sphere by
sphere in compiled code (:mod:`._kernel`: each sphere's noise covariance, its Cholesky
factor, and the whitened differences of patterns). With the same number of samples of each
condition in every run, crossnobis needs no folds: ``R + 1`` groups of one side each (see
:func:`prepare`). Patterns are centred per voxel first (a shift that leaves these distances
unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..shared import exit_with_parent
from . import _kernel
from ._design import Design, pair_indices
from .noise import NoiseStatistics, noise_statistics

__all__ = ["Prepared", "block_rdms", "prepare", "rdm_task", "sphere_bytes"]

#: noise model names and the kernel's codes
_NOISE_CODES = {
    None: _kernel.IDENTITY,
    "diag": _kernel.DIAG,
    "full": _kernel.FULL,
    "shrinkage_eye": _kernel.SHRINKAGE_EYE,
    "shrinkage_diag": _kernel.SHRINKAGE_DIAG,
}


@dataclass(frozen=True)
class Prepared:
    """The per-voxel arrays every sphere's RDM is computed from.

    Attributes
    ----------
    method : str
    left : ndarray (n_mask_voxels, n_groups, n_conditions)
        Voxel-major patterns on the left of the precision, by group: the condition means
        (one group); each fold's training means (crossnobis); or, crossnobis with ``k_c``
        samples of condition ``c`` in every run, the sums over all runs and then each run's
        sums, divided by ``k_c`` (see :func:`prepare`).
    right : ndarray (n_mask_voxels, n_groups, n_conditions) or None
        The patterns on the right (each left-out run's means), or None: the same as ``left``.
    weights : ndarray (n_groups,)
        Each group's weight in the sum.
    noise : NoiseStatistics or None
    cell_residuals : bool
        Whether the residuals are the runs' patterns minus their mean over runs (one sample
        per run and condition, e.g. run-wise betas): then they are not stored but derived
        sphere by sphere.
    """

    method: str
    left: np.ndarray
    right: np.ndarray | None
    weights: np.ndarray
    noise: NoiseStatistics | None
    cell_residuals: bool = False

    @property
    def n_conditions(self) -> int:
        return self.left.shape[2]


def prepare(X: np.ndarray, design: Design, method: str, noise: str | None) -> Prepared:
    """Per-voxel patterns and noise statistics.

    With ``k_c`` samples of condition ``c`` in every run, fold ``r``'s crossnobis training
    mean is ``(T_c - S_rc) / ((R - 1) k_c)`` and its test mean ``S_rc / k_c`` (``S``: the
    per-(run, condition) sums, ``T``: their sum over runs), so the mean over folds of
    ``A_r' P B_r`` is ``(T~' P T~ - sum_r S~_r' P S~_r) / (R (R - 1))`` with ``T~ = T / k``
    and ``S~ = S / k``: ``R + 1`` symmetric groups instead of ``R`` folds of two sides.

    Parameters
    ----------
    X : ndarray (n_mask_voxels, n_samples)
        Voxel-major data, float64.
    design : Design
    method : str
    noise : str or None
        Noise model (used by "mahalanobis" and "crossnobis"; None: the identity).

    Returns
    -------
    Prepared
    """
    R, C = design.counts.shape
    cell = design.run_codes * C + design.condition_codes
    # distances between patterns do not change with a common shift: patterns are centred
    shift = None if method == "correlation" else X.mean(axis=1)
    sums = _cell_sums(X, cell, R * C, shift).reshape(-1, R, C)  # per (run, condition)
    counts = design.counts.astype(np.float64)
    balanced = method == "crossnobis" and bool(np.all(counts == counts[:1]))
    one_per_cell = balanced and bool(np.all(counts == 1))
    stats = None
    if noise is not None and method in ("mahalanobis", "crossnobis"):
        stats = noise_statistics(X, design.condition_codes, noise, design.noise_dof(), not one_per_cell)
    total = sums.sum(axis=1)
    if balanced:
        groups = np.empty((len(X), R + 1, C))
        groups[:, 0] = total
        groups[:, 1:] = sums
        groups /= counts[0]
        weights = np.r_[1.0, -np.ones(R)] / (R * (R - 1))
        return Prepared(method, groups, None, weights, stats, one_per_cell)
    n_total = counts.sum(axis=0)
    if method == "crossnobis":
        train = np.ascontiguousarray((total[:, None, :] - sums) / (n_total[None, :] - counts)[None])
        test = np.ascontiguousarray(sums / counts[None])
        return Prepared(method, train, test, np.full(R, 1.0 / R), stats)
    # C order, as the other cases (the kernel is compiled for one layout)
    return Prepared(method, np.ascontiguousarray((total / n_total)[:, None, :]), None, np.ones(1), stats)


def _cell_sums(X: np.ndarray, cell: np.ndarray, n_cells: int, shift: np.ndarray | None) -> np.ndarray:
    """Each voxel's sum over the samples of each cell, (n_voxels, n_cells) (0 for an empty
    cell), of the samples minus ``shift`` (one value per voxel): the samples sorted by cell,
    then summed by contiguous runs."""
    order = np.argsort(cell, kind="stable")
    ordered = X[:, order]
    if shift is not None:
        ordered -= shift[:, None]
    present, starts = np.unique(cell[order], return_index=True)
    if len(order) == n_cells == len(present):  # one sample per cell: the sums are the samples
        return ordered
    out = np.zeros((X.shape[0], n_cells))
    out[:, present] = np.add.reduceat(ordered, starts, axis=1)
    return out


def sphere_bytes(prepared: Prepared, n_voxels: int) -> int:
    """Working memory of one sphere of ``n_voxels`` voxels, in bytes (the correlation's
    patterns; the compiled distances need their RDM and a few scratch arrays per block)."""
    G, C = prepared.left.shape[1:]
    return 8 * (2 * n_voxels * G * C + 3 * C * C) + 512


def block_rdms(prepared: Prepared, vox: np.ndarray) -> np.ndarray:
    """The RDM vectors of a block of equal-size spheres, in float64.

    Parameters
    ----------
    prepared : Prepared
    vox : ndarray of int (n_spheres, n_voxels)

    Returns
    -------
    ndarray (n_spheres, n_pairs)
        Pairs in :func:`~._design.pair_indices` order.

    Raises
    ------
    numpy.linalg.LinAlgError
        A sphere's noise covariance is not positive definite.
    """
    rows, cols = pair_indices(prepared.n_conditions)
    if prepared.method == "correlation":
        m = prepared.left[vox][:, :, 0, :]  # (B, n, C)
        m = m - m.mean(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = m / np.sqrt(np.einsum("bvc,bvc->bc", m, m))[:, None, :]
        G = m.transpose(0, 2, 1) @ m
        return 1.0 - G[:, rows, cols]
    stats = prepared.noise
    none = np.empty(0)
    residuals = stats.residuals if stats is not None and stats.residuals is not None else np.empty((0, 0))
    symmetric = prepared.right is None
    rdms, ok = _kernel.block_distances(
        np.ascontiguousarray(vox, dtype=np.intp),
        prepared.left,
        prepared.left if symmetric else prepared.right,
        symmetric,
        prepared.weights,
        _NOISE_CODES[None if stats is None else stats.method],
        residuals,
        prepared.cell_residuals,
        none if stats is None else stats.sum_sq,
        none if stats is None else stats.sum_4,
        1 if stats is None else stats.n_samples,
        1 if stats is None else stats.dof,
        rows,
        cols,
    )
    if not ok.all():
        raise np.linalg.LinAlgError(
            f"the noise covariance of {int((~ok).sum())} sphere(s) is not positive definite."
        )
    return rdms


def rdm_task(prepared: Prepared, task: list, limit_blas: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """RDMs of several blocks (in a worker): their sphere ids and float32 RDM vectors.

    Many small products: BLAS runs on one thread (its threads would fight the workers);
    ``limit_blas=False`` when the caller has set that limit for the whole process.
    """
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    exit_with_parent()
    ids = np.concatenate([ids for ids, _ in task])
    with threadpool_limits(1, user_api="blas") if limit_blas else nullcontext():
        rdms = np.concatenate([block_rdms(prepared, vox) for _, vox in task]).astype(np.float32)
    return ids, rdms

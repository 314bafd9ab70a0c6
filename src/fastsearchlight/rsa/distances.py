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
condition) sums) and the residuals of the noise model. A block of equal-size spheres then
gathers its voxels' rows and computes, per sphere, one noise covariance (:mod:`.noise`), the
patterns whitened by its Cholesky factor, and one kernel ``K = sum over folds of A' P B``
(a single batched product over voxels and folds), from which
``d_ij = (K_ii + K_jj - K_ij - K_ji) / (n n_folds)``. Patterns are
centred per voxel first (a shift that leaves these distances unchanged and keeps the
kernel's cancellation small).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..shared import exit_with_parent
from ._design import Design, pair_indices
from .noise import NoiseStatistics, block_covariance, bytes_per_sphere, noise_statistics, whiten

__all__ = ["Prepared", "block_rdms", "prepare", "rdm_task", "sphere_bytes"]


@dataclass(frozen=True)
class Prepared:
    """The per-voxel arrays every sphere's RDM is computed from.

    Attributes
    ----------
    method : str
    train : ndarray (n_mask_voxels, n_folds, n_conditions)
        Voxel-major patterns on the left of the kernel: condition means (one fold), or each
        fold's training means (crossnobis).
    test : ndarray (n_mask_voxels, n_folds, n_conditions)
        The patterns on the right (the same array but for crossnobis: each left-out run's
        means).
    noise : NoiseStatistics or None
    cells : ndarray (n_mask_voxels, n_runs, n_conditions) or None
        Crossnobis with the same number of samples of each condition in every run: the
        per-(run, condition) sums, from which every fold's kernel follows at once (see
        :func:`_balanced_kernel`); ``train`` and ``test`` are then not used.
    cell_scale : ndarray (n_conditions, n_conditions) or None
        The kernel's scale, ``1 / (R (R - 1) k_c k_d)`` (``k``: samples per run).
    cell_residuals : bool
        Whether the residuals are the cells minus their mean over runs (one sample per run
        and condition, e.g. run-wise betas): then they are not stored but derived per block.
    cell_totals : ndarray (n_mask_voxels, n_conditions) or None
        The cells summed over runs.
    """

    method: str
    train: np.ndarray | None
    test: np.ndarray | None
    noise: NoiseStatistics | None
    cells: np.ndarray | None = None
    cell_scale: np.ndarray | None = None
    cell_residuals: bool = False
    cell_totals: np.ndarray | None = None

    @property
    def n_conditions(self) -> int:
        return (self.train if self.cells is None else self.cells).shape[2]


def prepare(X: np.ndarray, design: Design, method: str, noise: str | None) -> Prepared:
    """Per-voxel patterns and noise statistics.

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
    if balanced:
        k = counts[0]
        scale = 1.0 / (R * (R - 1) * np.outer(k, k))
        totals = np.ascontiguousarray(sums.sum(axis=1))
        return Prepared(method, None, None, stats, np.ascontiguousarray(sums), scale, one_per_cell, totals)
    total, n_total = sums.sum(axis=1), counts.sum(axis=0)
    if method == "crossnobis":
        train = (total[:, None, :] - sums) / (n_total[None, :] - counts)[None]
        test = np.ascontiguousarray(sums / counts[None])
    else:
        train = test = (total / n_total)[:, None, :]
    train = np.ascontiguousarray(train)
    return Prepared(method, train, train if method != "crossnobis" else test, stats)


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
    """Working memory of one sphere of ``n_voxels`` voxels, in bytes."""
    F, C = (prepared.train if prepared.cells is None else prepared.cells).shape[1:]
    noise = prepared.noise
    extra = 0 if noise is None else bytes_per_sphere(noise.method, n_voxels, noise.n_samples)
    return 8 * (4 * n_voxels * F * C + 3 * C * C) + extra + 512


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
    """
    B, n = vox.shape
    rows, cols = pair_indices(prepared.n_conditions)
    if prepared.method == "correlation":
        m = prepared.train[vox][:, :, 0, :]  # (B, n, C)
        m = m - m.mean(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = m / np.sqrt(np.einsum("bvc,bvc->bc", m, m))[:, None, :]
        G = m.transpose(0, 2, 1) @ m
        return 1.0 - G[:, rows, cols]
    if prepared.cells is not None:
        K = _balanced_kernel(prepared, vox)
    else:
        F, C = prepared.train.shape[1:]
        A = prepared.train[vox].reshape(B, n, F * C)
        right = A if prepared.method != "crossnobis" else prepared.test[vox].reshape(B, n, F * C)
        if prepared.noise is not None:
            cov = block_covariance(prepared.noise, vox)
            if right is A:
                A = right = whiten(cov, A)
            else:
                both = whiten(cov, np.concatenate([A, right], axis=2))
                A, right = both[:, :, : F * C], both[:, :, F * C :]
        K = A.reshape(B, n * F, C).transpose(0, 2, 1) @ right.reshape(B, n * F, C)  # summed over folds
        K /= F
    diag = np.einsum("bcc->bc", K)
    d = diag[:, rows] + diag[:, cols] - K[:, rows, cols] - K[:, cols, rows]
    return d / n


def _balanced_kernel(prepared: Prepared, vox: np.ndarray) -> np.ndarray:
    """The crossnobis kernel averaged over folds, from the per-(run, condition) sums.

    With ``k_c`` samples of condition ``c`` in every run, fold ``r``'s training mean is
    ``(T_c - S_rc) / ((R - 1) k_c)`` and its test mean ``S_rc / k_c`` (``T``: the sum over
    runs), so the mean over folds of ``A_r' P B_r`` is
    ``(T' P T - sum_r S_r' P S_r) / (R (R - 1) k_c k_d)``: one product for all folds.

    Returns
    -------
    ndarray (n_spheres, n_conditions, n_conditions)
    """
    B, n = vox.shape
    R, C = prepared.cells.shape[1:]
    M = prepared.cells[vox]  # (B, n, R, C)
    T = prepared.cell_totals[vox]  # (B, n, C)
    WM, WT = M.reshape(B, n, R * C), T
    if prepared.noise is not None:
        E = None
        if prepared.cell_residuals:  # one sample per cell: the residuals are the cells' deviations
            E = (M - T[:, :, None, :] * (1.0 / R)).reshape(B, n, R * C)
        both = whiten(block_covariance(prepared.noise, vox, E), np.concatenate([WM, T], axis=2))
        WM, WT = both[:, :, : R * C], both[:, :, R * C :]
    WM = np.ascontiguousarray(WM).reshape(B, n * R, C)
    within = WM.transpose(0, 2, 1) @ WM
    total = WT.transpose(0, 2, 1) @ WT
    return (total - within) * prepared.cell_scale


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

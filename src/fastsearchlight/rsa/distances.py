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
gathers its voxels' rows and computes, per sphere, one precision (:mod:`.noise`), ``P A``
and one kernel ``K = sum over folds of A' P B`` (a single batched product over voxels and
folds), from which ``d_ij = (K_ii + K_jj - K_ij - K_ji) / (n n_folds)``. Patterns are
centred per voxel first (a shift that leaves these distances unchanged and keeps the
kernel's cancellation small).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..shared import exit_with_parent
from ._design import Design, pair_indices
from .noise import NoiseStatistics, block_precision, bytes_per_sphere, noise_statistics

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
    """

    method: str
    train: np.ndarray
    test: np.ndarray
    noise: NoiseStatistics | None

    @property
    def n_conditions(self) -> int:
        return self.train.shape[2]


def _store(values: np.ndarray, shared: bool) -> np.ndarray:
    """``values`` as a C-contiguous array, in a memory-mapped file when ``shared`` (worker
    processes then map it by name instead of receiving a copy)."""
    if not shared:
        return np.ascontiguousarray(values)
    from ..shared import shared_empty

    out = shared_empty(values.shape, values.dtype)
    out[...] = values
    return out


def prepare(X: np.ndarray, design: Design, method: str, noise: str | None, shared: bool = False) -> Prepared:
    """Per-voxel patterns and noise statistics.

    Parameters
    ----------
    X : ndarray (n_mask_voxels, n_samples)
        Voxel-major data, float64.
    design : Design
    method : str
    noise : str or None
        Noise model (used by "mahalanobis" and "crossnobis"; None: the identity).
    shared : bool
        Keep the large arrays in memory-mapped files, for worker processes.

    Returns
    -------
    Prepared
    """
    R, C = design.counts.shape
    onehot = np.zeros((X.shape[1], R * C))
    onehot[np.arange(X.shape[1]), design.run_codes * C + design.condition_codes] = 1.0
    if method != "correlation":  # distances between patterns do not change with a common shift
        X = X - X.mean(axis=1, keepdims=True)
    sums = (X @ onehot).reshape(-1, R, C)  # per (run, condition)
    counts = design.counts.astype(np.float64)
    total, n_total = sums.sum(axis=1), counts.sum(axis=0)
    if method == "crossnobis":
        train = (total[:, None, :] - sums) / (n_total[None, :] - counts)[None]
        test = sums / counts[None]
    else:
        train = test = (total / n_total)[:, None, :]
    stats = None
    if noise is not None and method in ("mahalanobis", "crossnobis"):
        stats = noise_statistics(X, design.condition_codes, noise, design.noise_dof())
        if shared and stats.residuals is not None:
            stats = replace(stats, residuals=_store(stats.residuals, True))
    train = _store(train, shared)
    test = train if method != "crossnobis" else _store(test, shared)
    return Prepared(method, train, test, stats)


def sphere_bytes(prepared: Prepared, n_voxels: int) -> int:
    """Working memory of one sphere of ``n_voxels`` voxels, in bytes."""
    F, C = prepared.train.shape[1:]
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
    F, C = prepared.train.shape[1:]
    rows, cols = pair_indices(C)
    if prepared.method == "correlation":
        m = prepared.train[vox][:, :, 0, :]  # (B, n, C)
        m = m - m.mean(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = m / np.sqrt(np.einsum("bvc,bvc->bc", m, m))[:, None, :]
        G = m.transpose(0, 2, 1) @ m
        return 1.0 - G[:, rows, cols]
    A = prepared.train[vox].reshape(B, n, F * C)
    if prepared.noise is not None:
        P = block_precision(prepared.noise, vox)
        A = P[:, :, None] * A if P.ndim == 2 else P @ A
    right = A if prepared.method != "crossnobis" and prepared.noise is None else None
    right = prepared.test[vox].reshape(B, n * F, C) if right is None else right.reshape(B, n * F, C)
    K = A.reshape(B, n * F, C).transpose(0, 2, 1) @ right  # (B, C, C), summed over folds
    diag = np.einsum("bcc->bc", K)
    d = diag[:, rows] + diag[:, cols] - K[:, rows, cols] - K[:, cols, rows]
    return d / (n * F)


def rdm_task(prepared: Prepared, task: list) -> tuple[np.ndarray, np.ndarray]:
    """RDMs of several blocks (in a worker): their sphere ids and float32 RDM vectors."""
    from threadpoolctl import threadpool_limits

    exit_with_parent()
    ids = np.concatenate([ids for ids, _ in task])
    # many small products: one BLAS thread (its threads would fight the workers, or other work)
    with threadpool_limits(1, user_api="blas"):
        rdms = np.concatenate([block_rdms(prepared, vox) for _, vox in task]).astype(np.float32)
    return ids, rdms

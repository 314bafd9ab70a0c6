"""Noise precision of many spheres at once, as rsatoolbox's ``prec_from_measurements``.

The residuals are the samples minus their condition's mean (over all samples). For each
sphere, rsatoolbox estimates a covariance over the sphere's voxels from them and inverts it:

- ``"diag"``: the variances ``sum(e**2) / dof``;
- ``"full"``: the sample covariance ``E'E / dof``;
- ``"shrinkage_eye"``: Ledoit & Wolf (2004), towards a multiple of the identity, with
  ``s = E'E / N``, rescaled by ``N / dof``;
- ``"shrinkage_diag"``: Schäfer & Strimmer (2005), the off-diagonal entries of ``E'E / dof``
  shrunk towards zero by a weight ``lambda`` estimated from the data.

``N`` is the number of samples and ``dof`` is the one rsatoolbox uses,
``(n_conditions - 1) * samples per condition``. Here every quantity is computed for a block
of equal-size spheres at once: one Gram matrix ``E'E`` per sphere (a batched product), the
shrinkage weights from per-voxel sums and per-sample sums over the sphere; instead of the
inverse, a batched Cholesky factor ``L`` whitens the patterns (``a' P b`` is the inner product
of ``L^-1 a`` and ``L^-1 b``), half the work of inverting and multiplying. The shrinkage sums that rsatoolbox accumulates sample by sample (the squares of
the outer products) reduce to sums over samples of squared sphere sums, so no second
Gram matrix is needed.

One-voxel spheres, where rsatoolbox's shrinkage weights are 0/0 (NaN), get the variance,
which every shrinkage gives for a single voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NoiseStatistics", "block_covariance", "noise_statistics", "whiten"]

#: voxels handled at a time by :func:`noise_statistics`
_CHUNK_VOXELS = 2048


@dataclass(frozen=True)
class NoiseStatistics:
    """What the precision of every sphere is computed from.

    Attributes
    ----------
    method : str
        The noise model.
    residuals : ndarray (n_mask_voxels, n_samples)
        Voxel-major residuals (None for ``"diag"``, which needs the sums of squares alone).
    sum_sq : ndarray (n_mask_voxels,)
        Each voxel's sum of squared residuals.
    sum_4 : ndarray (n_mask_voxels,)
        Each voxel's sum of residuals to the fourth power.
    n_samples, dof : int
    flat : ndarray of bool (n_mask_voxels,)
        Voxels whose samples all equal their condition's first one (no residual variance).
    """

    method: str
    residuals: np.ndarray | None
    sum_sq: np.ndarray
    sum_4: np.ndarray
    n_samples: int
    dof: int
    flat: np.ndarray


def noise_statistics(
    X: np.ndarray, condition_codes: np.ndarray, method: str, dof: int, keep_residuals: bool = True
) -> NoiseStatistics:
    """Residuals around the condition means and their per-voxel sums.

    Parameters
    ----------
    X : ndarray (n_mask_voxels, n_samples)
        Voxel-major data.
    condition_codes : ndarray of int (n_samples,)
    method : str
        The noise model.
    dof : int
        rsatoolbox's degrees of freedom.
    keep_residuals : bool
        Keep the residuals (False when the caller gathers them otherwise).

    Returns
    -------
    NoiseStatistics
    """
    n_voxels, n_samples = X.shape
    n_conditions = int(condition_codes.max()) + 1
    onehot = np.zeros((n_samples, n_conditions))
    onehot[np.arange(n_samples), condition_codes] = 1.0
    first = np.array([np.flatnonzero(condition_codes == c)[0] for c in range(n_conditions)])[condition_codes]
    sum_sq, sum_4 = np.empty(n_voxels), np.empty(n_voxels)
    flat = np.empty(n_voxels, dtype=bool)
    keep = np.empty_like(X) if keep_residuals and method != "diag" else None
    # a few thousand voxels at a time: small temporaries, reused by the allocator
    for lo in range(0, n_voxels, _CHUNK_VOXELS):
        x = X[lo : lo + _CHUNK_VOXELS]
        residuals = x - ((x @ onehot) / onehot.sum(axis=0))[:, condition_codes]
        sq = residuals * residuals
        sum_sq[lo : lo + _CHUNK_VOXELS] = sq.sum(axis=1)
        sum_4[lo : lo + _CHUNK_VOXELS] = np.einsum("vt,vt->v", sq, sq)
        flat[lo : lo + _CHUNK_VOXELS] = np.all(x == x[:, first], axis=1)
        if keep is not None:
            keep[lo : lo + _CHUNK_VOXELS] = residuals
    return NoiseStatistics(method, keep, sum_sq, sum_4, n_samples, dof, flat)


def bytes_per_sphere(method: str | None, n_voxels: int, n_samples: int) -> int:
    """Working memory of one sphere's precision, in bytes."""
    if method is None:
        return 0
    if method == "diag":
        return 16 * n_voxels
    return 8 * (2 * n_voxels * n_samples + 6 * n_voxels * n_voxels)


def block_covariance(
    stats: NoiseStatistics, vox: np.ndarray, residuals: np.ndarray | None = None
) -> np.ndarray:
    """The noise covariance of each sphere of a block (whose inverse is rsatoolbox's precision).

    Parameters
    ----------
    stats : NoiseStatistics
    vox : ndarray of int (n_spheres, n_voxels)
        Mask-voxel indices of each sphere (a block of equal-size spheres).
    residuals : ndarray (n_spheres, n_voxels, n_samples) or None
        The block's residuals, when the caller has them (else gathered from ``stats``).

    Returns
    -------
    ndarray (n_spheres, n_voxels) for ``"diag"`` (the variances), else
    (n_spheres, n_voxels, n_voxels).
    """
    if stats.method == "diag":
        return stats.sum_sq[vox] / stats.dof
    E = stats.residuals[vox] if residuals is None else residuals  # (B, n, N)
    S = E @ E.transpose(0, 2, 1)  # (B, n, n)
    if stats.method == "full":
        return S / stats.dof
    if stats.method == "shrinkage_eye":
        return _shrink_eye(S, E, stats.n_samples, stats.dof)
    return _shrink_diag(S, E, stats, vox)


def whiten(cov: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``L^-1 X`` with ``cov = L L'`` (Cholesky), so that ``a' cov^-1 b`` is the inner product
    of the whitened ``a`` and ``b``; for variances (a diagonal covariance), ``X / sqrt(var)``.

    Parameters
    ----------
    cov : ndarray (B, n, n), or (B, n) for a diagonal covariance
    X : ndarray (B, n, m)

    Returns
    -------
    ndarray (B, n, m)
    """
    if cov.ndim == 2:
        return X / np.sqrt(cov)[:, :, None]
    return _forward_solve(np.linalg.cholesky(cov), X)


def _forward_solve(L: np.ndarray, X: np.ndarray, step: int = 16) -> np.ndarray:
    """Solve ``L W = X`` for batched lower-triangular ``L`` (B, n, n), by blocks of ``step``
    rows: each block's right-hand side minus the rows above, times the inverse of its small
    diagonal block (numpy has no batched triangular solve)."""
    n = L.shape[1]
    W = np.empty(X.shape)
    for lo in range(0, n, step):
        hi = min(lo + step, n)
        rhs = X[:, lo:hi] if lo == 0 else X[:, lo:hi] - L[:, lo:hi, :lo] @ W[:, :lo]
        W[:, lo:hi] = np.linalg.inv(L[:, lo:hi, lo:hi]) @ rhs
    return W


def _shrink_eye(S: np.ndarray, E: np.ndarray, n_samples: int, dof: int) -> np.ndarray:
    """Ledoit-Wolf shrinkage towards ``m I`` (rsatoolbox's ``_covariance_eye``)."""
    n = S.shape[-1]
    s = S / n_samples
    per_sample = (np.ones((E.shape[0], 1, E.shape[1])) @ (E * E))[:, 0, :]  # sum over the sphere of e**2
    frob = np.einsum("bjk,bjk->b", s, s)
    b2 = (np.einsum("bt,bt->b", per_sample, per_sample) / n_samples - frob) / n_samples
    m = np.trace(s, axis1=1, axis2=2) / n
    d2 = frob - n * m * m  # ||s - m I||^2
    b2 = np.minimum(d2, b2)
    safe = d2 > 0
    w = np.where(safe, b2 / np.where(safe, d2, 1.0), 0.0)
    cov = (1.0 - w)[:, None, None] * s
    idx = np.arange(n)
    cov[:, idx, idx] += (w * m)[:, None]
    return cov * (n_samples / dof)


def _shrink_diag(S: np.ndarray, E: np.ndarray, stats: NoiseStatistics, vox: np.ndarray) -> np.ndarray:
    """Schäfer-Strimmer shrinkage of the correlations towards zero (rsatoolbox's
    ``_covariance_diag``), from sums over the sphere."""
    N, dof = stats.n_samples, stats.dof
    n = S.shape[-1]
    d = stats.sum_sq[vox]  # the diagonal of S, (B, n)
    inv_sd = 1.0 / np.sqrt(d)
    rho = S * inv_sd[:, :, None] * inv_sd[:, None, :]
    # sum over j != k of s_mean**2, s_mean = dof * rho / (N - 1)
    off_sq = (np.einsum("bjk,bjk->b", rho, rho) - n) * (dof / (N - 1)) ** 2
    # sum over j != k of s2_mean = dof**2 * sum_t e_tj**2 e_tk**2 / (d_j d_k) / (N - 1)
    scaled = ((1.0 / d)[:, None, :] @ (E * E))[:, 0, :]  # (B, N): a batched product, faster than einsum
    both = np.einsum("bt,bt->b", scaled, scaled) - np.einsum("bv,bv->b", stats.sum_4[vox], 1.0 / (d * d))
    off_s2 = both * dof * dof / (N - 1)
    var_hat = N / dof**2 * (off_s2 - off_sq)
    safe = off_sq > 0
    lamb = np.where(safe, var_hat / np.where(safe, off_sq, 1.0), 1.0)
    lamb = np.clip(lamb, 0.0, 1.0)
    cov = (1.0 - lamb)[:, None, None] * (S / dof)
    idx = np.arange(n)
    cov[:, idx, idx] = d / dof
    return cov

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
``(n_conditions - 1) * samples per condition``. This module computes what every sphere shares
(the residuals, each voxel's sums of their squares and fourth powers); the compiled kernel
(:mod:`._kernel`) computes each sphere's covariance from them: one Gram matrix ``E'E`` of the
sphere's residuals, the shrinkage weights from per-voxel sums and per-sample sums over the
sphere (the sums that rsatoolbox accumulates sample by sample, the squares of the outer
products, reduce to sums over samples of squared sphere sums, so no second Gram matrix is
needed); instead of the inverse, its Cholesky factor ``L`` whitens the patterns (``a' P b``
is the inner product of ``L^-1 a`` and ``L^-1 b``).

One-voxel spheres, where rsatoolbox's shrinkage weights are 0/0 (NaN), get the variance,
which every shrinkage gives for a single voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["NoiseStatistics", "noise_statistics"]

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
    # a few thousand voxels at a time: small temporaries, reused by the allocator; the
    # products are too small for BLAS threads (which only wait on a busy machine)
    with threadpool_limits(1, user_api="blas"):
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

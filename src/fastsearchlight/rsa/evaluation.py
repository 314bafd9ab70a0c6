"""Model fit of many RDMs at once, as rsatoolbox's ``rdm.compare`` defines it.

Every method is an inner product of transformed RDM vectors, so each sphere's RDM is
transformed once and all models (and all permutations of a model) are compared with one
matrix product:

- ``"cosine"``: the vectors divided by their norms;
- ``"corr"``: centred, then divided by their norms (Pearson's r);
- ``"spearman"``: ranked (ties get their average rank), centred, divided by their norms;
- ``"tau-a"``: Kendall's tau-a, the sum over pairs of entries ``a < b`` of
  ``sign(x_a - x_b) * sign(y_a - y_b)``, divided by the number of such pairs: the vectors are
  transformed into their signs of differences (a vector of length ``n_pairs (n_pairs - 1) / 2``).

A vector of zero norm (a constant RDM for "corr" and "spearman") has a fit of 0, as in
rsatoolbox. Sphere RDMs holding NaN (correlation distance on a one-voxel sphere) give NaN.
"""

from __future__ import annotations

import numpy as np

__all__ = ["COMPARISONS", "check_models", "compare_rdms", "transform_rdms"]

#: model comparisons, with rsatoolbox's definitions
COMPARISONS = ("spearman", "tau-a", "corr", "cosine")
#: rows of RDM vectors transformed at a time (bounds the memory of tau-a's sign vectors)
_CHUNK_ELEMENTS = 1 << 23


def check_models(model_rdms, n_pairs: int) -> np.ndarray:
    """Model RDM vectors as a float64 (n_models, n_pairs) array, or a one-line ValueError.

    One model may be given as a vector, and models as square RDMs (n_models, n, n) too.
    """
    models = np.asarray(model_rdms, dtype=np.float64)
    n = int(round((1 + np.sqrt(1 + 8 * n_pairs)) / 2))
    if models.ndim == 1:
        models = models[None, :]
    elif models.ndim == 2 and models.shape == (n, n) and n_pairs != n:
        models = models[None]
    if models.ndim == 3 and models.shape[1:] == (n, n):
        rows, cols = np.triu_indices(n, 1)
        models = models[:, rows, cols]
    if models.ndim != 2 or models.shape[1] != n_pairs:
        raise ValueError(
            f"model_rdms must have shape (n_models, {n_pairs}) (one RDM vector of the {n} conditions' "
            f"{n_pairs} pairs per model, in squareform order), got {np.shape(model_rdms)}."
        )
    if not np.all(np.isfinite(models)):
        raise ValueError("model_rdms contain NaN or infinite values.")
    return models


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.sqrt(np.einsum("ij,ij->i", v, v))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm[:, None] > 0, v / np.where(norm > 0, norm, 1.0)[:, None], 0.0)


def _signs(v: np.ndarray) -> np.ndarray:
    a, b = np.triu_indices(v.shape[1], 1)
    out = np.sign(v[:, a] - v[:, b])
    return out / len(a)


def transform_rdms(vectors: np.ndarray, method: str, *, scale: bool = True) -> np.ndarray:
    """RDM vectors transformed so that the comparison is an inner product.

    Parameters
    ----------
    vectors : ndarray (n, n_pairs)
    method : str
        One of :data:`COMPARISONS`.
    scale : bool
        For "tau-a", divide the signs by the number of pairs of entries (on one side only).

    Returns
    -------
    ndarray (n, n_pairs), or (n, n_pairs (n_pairs - 1) / 2) for "tau-a"
    """
    from scipy.stats import rankdata

    v = np.asarray(vectors, dtype=np.float64)
    if method == "cosine":
        return _unit(v)
    if method == "corr":
        return _unit(v - v.mean(axis=1, keepdims=True))
    if method == "spearman":
        r = rankdata(v, axis=1, method="average")
        return _unit(r - r.mean(axis=1, keepdims=True))
    s = _signs(v)
    return s if scale else s * s.shape[1]


def compare_rdms(rdms: np.ndarray, models: np.ndarray, method: str) -> np.ndarray:
    """Fit of every model on every RDM.

    Parameters
    ----------
    rdms : ndarray (n_spheres, n_pairs)
        The spheres' RDM vectors (any float dtype; compared in float64).
    models : ndarray (n_models, n_pairs)
        Model RDM vectors (:func:`check_models`).
    method : str
        One of :data:`COMPARISONS`.

    Returns
    -------
    ndarray (n_models, n_spheres)
        NaN for spheres whose RDM holds NaN.
    """
    right = transform_rdms(models, method, scale=False).T
    width = right.shape[0]
    out = np.empty((models.shape[0], rdms.shape[0]))
    step = max(1, _CHUNK_ELEMENTS // max(1, width))
    for lo in range(0, rdms.shape[0], step):
        chunk = np.asarray(rdms[lo : lo + step], dtype=np.float64)
        bad = ~np.all(np.isfinite(chunk), axis=1)
        chunk = np.where(bad[:, None], 0.0, chunk)
        fit = transform_rdms(chunk, method) @ right
        fit[bad] = np.nan
        out[:, lo : lo + step] = fit.T
    if method == "tau-a":
        np.clip(out, -1.0, 1.0, out=out)
    return out

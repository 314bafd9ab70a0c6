"""p-values of a searchlight map from its null maps: voxel-wise, family-wise by the maximum
statistic, cluster-level by the largest null cluster, and TFCE."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

from ._tfce import TfceGraph, label_clusters

__all__ = ["SCORE_TOL", "PermutationResult", "clusters_above", "permutation_inference"]

#: tolerance when comparing scores: they are ratios of small integers (a few hundred test
#: samples), spaced far more than this, and sums of the same fold scores in another order
#: differ by far less
SCORE_TOL = 1e-9

#: neighbourhood of a voxel in a cluster, by connectivity
_STRUCTURE_RANK = {6: 1, 18: 2, 26: 3}


@dataclass
class PermutationResult:
    """Outcome of a permutation test on a searchlight map (all arrays over the spheres)."""

    p_values: np.ndarray
    p_fwe: np.ndarray
    max_null: np.ndarray
    cluster_threshold: float
    cluster_labels: np.ndarray  # cluster id of each sphere (0: none)
    clusters: list[dict]
    max_cluster_null: np.ndarray
    null_summary: dict
    tfce: np.ndarray | None = None  # TFCE of the observed map, per sphere
    p_fwe_tfce: np.ndarray | None = None
    max_tfce_null: np.ndarray | None = None


def clusters_above(values_3d: np.ndarray, threshold: float, structure) -> tuple[np.ndarray, np.ndarray]:
    """Clusters of voxels scoring at least ``threshold``: the label map and each size.

    ``structure`` connects grid voxels, or is a graph's adjacency (``values_3d`` then holds
    one value per node; see :func:`label_clusters`)."""
    labels, n = label_clusters(values_3d >= threshold - SCORE_TOL, structure)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return labels, sizes


@dataclass
class _PooledNull:
    """First pass over the null maps: exceedance counts, maxima, pooled distribution."""

    count: np.ndarray  # per sphere, null scores >= the observed one
    max_null: np.ndarray  # per permutation
    levels: np.ndarray  # distinct pooled null scores
    freq: np.ndarray  # how often each occurs

    @property
    def mean(self) -> float:
        return float((self.levels * self.freq).sum() / self.freq.sum())

    def threshold(self, alpha: float) -> float:
        """The smallest pooled null score exceeded with probability at most ``alpha``."""
        exceed = np.cumsum(self.freq[::-1])[::-1] / self.freq.sum()  # P(null >= level)
        ok = np.flatnonzero(exceed <= alpha)
        return float(self.levels[ok[0]]) if ok.size else float(self.levels[-1]) + 1e-6


def _pool(observed: np.ndarray, null, chunk: int) -> _PooledNull:
    n_perm, n_spheres = null.shape
    count = np.zeros(n_spheres)
    max_null = np.empty(n_perm)
    # pooled null distribution: scores are ratios of small integers, so few distinct values
    pooled: dict[float, int] = {}
    for lo in range(0, n_perm, chunk):
        block = np.asarray(null[lo : lo + chunk], dtype=np.float64)
        count += (block >= observed[None, :] - SCORE_TOL).sum(axis=0)
        # spheres whose fits failed score NaN (as nilearn): they take no part in the maxima
        max_null[lo : lo + chunk] = np.max(np.where(np.isnan(block), -np.inf, block), axis=1)
        values, counts = np.unique(np.round(block[~np.isnan(block)], 9), return_counts=True)
        for v, c in zip(values, counts):
            pooled[float(v)] = pooled.get(float(v), 0) + int(c)
    levels = np.array(sorted(pooled))
    freq = np.array([pooled[v] for v in levels], dtype=np.float64)
    return _PooledNull(count, max_null, levels, freq)


@dataclass
class _Maps:
    """Sphere values as volumes on the process mask's grid (or as they are, on a graph of
    the spheres), and their TFCE."""

    process_mask: np.ndarray | None
    structure: object  # a grid's structuring element, or the spheres' sparse adjacency
    baseline: float
    tfce_dh: object

    def volume(self, values: np.ndarray) -> np.ndarray:
        if self.process_mask is None:
            return np.asarray(values, dtype=np.float64)
        vol = np.full(self.process_mask.shape, -np.inf)
        vol[self.process_mask] = values
        return vol

    def of_spheres(self, layout: np.ndarray) -> np.ndarray:
        """The spheres' entries of a map laid out by :meth:`volume`."""
        return layout if self.process_mask is None else layout[self.process_mask]

    @cached_property
    def _tfce_graph(self) -> TfceGraph:
        return TfceGraph.of_mask(self.process_mask, self.structure)

    def tfce(self, values: np.ndarray) -> np.ndarray:
        """TFCE of the spheres' values minus the baseline, over the spheres' graph (found
        once for every map)."""
        return self._tfce_graph(np.asarray(values, dtype=np.float64) - self.baseline, dh=self.tfce_dh)


def _cluster_and_tfce_nulls(null, maps: _Maps, threshold, with_tfce: bool, chunk: int):
    """Second pass: the largest cluster (and the largest TFCE) of every null map."""
    n_perm = null.shape[0]
    max_cluster = np.zeros(n_perm)
    max_tfce = np.zeros(n_perm) if with_tfce else None
    for lo in range(0, n_perm, chunk):
        block = np.asarray(null[lo : lo + chunk], dtype=np.float64)
        for k, row in enumerate(block):
            _, sizes = clusters_above(maps.volume(row), threshold, maps.structure)
            max_cluster[lo + k] = sizes.max() if sizes.size else 0
            if with_tfce:
                max_tfce[lo + k] = maps.tfce(row).max(initial=0.0)
    return max_cluster, max_tfce


def _cluster_table(observed, sphere_labels, sizes, position, p_fwe, p_of_size):
    """The observed map's clusters, largest first and numbered by rank, and the label of
    each sphere's cluster (0: none). ``position(sphere)``: the sphere's centre in mm."""
    clusters = []
    for cid, size in enumerate(sizes, start=1):
        members = np.flatnonzero(sphere_labels == cid)
        peak = members[np.argmax(observed[members])]
        xyz = position(peak)
        clusters.append({
            "cluster": cid,
            "size": int(size),
            "peak_score": float(observed[peak]),
            "peak_x_mm": float(xyz[0]), "peak_y_mm": float(xyz[1]), "peak_z_mm": float(xyz[2]),
            "peak_p_fwe": float(p_fwe[peak]),
            "p_fwe_cluster": p_of_size(size),
        })  # fmt: skip
    clusters.sort(key=lambda c: (-c["size"], -c["peak_score"]))
    relabel = np.zeros(len(sizes) + 1, dtype=np.int64)
    for rank, c in enumerate(clusters, start=1):
        relabel[c["cluster"]] = rank
        c["cluster"] = rank
    return clusters, relabel[sphere_labels]


def _summary(pooled: _PooledNull, max_cluster, threshold, cluster_alpha, exhaustive, baseline) -> dict:
    """What the report says of the null distribution."""
    levels, freq = pooled.levels, pooled.freq
    return {
        "n_permutations": int(len(pooled.max_null)),
        "all arrangements enumerated": bool(exhaustive),
        "pooled null mean": pooled.mean,
        "TFCE baseline": baseline,
        "pooled null sd": float(np.sqrt(((levels - pooled.mean) ** 2 * freq).sum() / freq.sum())),
        "pooled null 95th percentile": float(levels[np.searchsorted(np.cumsum(freq) / freq.sum(), 0.95)]),
        "max-statistic 95th percentile": float(np.quantile(pooled.max_null, 0.95)),
        "cluster-forming threshold": threshold,
        "cluster-forming alpha": cluster_alpha,
        "max cluster size 95th percentile": float(np.quantile(max_cluster, 0.95)),
    }


def _space(process_mask, affine, connectivity: int, graph):
    """How spheres connect in clusters and where they are: a grid's structuring element, the
    process mask and the voxels' positions (mm); or a graph's adjacency, no mask, and the
    coordinates of its nodes."""
    if graph is not None:
        return graph.adjacency, None, lambda sphere: graph.coordinates[sphere]
    structure = ndimage.generate_binary_structure(3, _STRUCTURE_RANK[connectivity])
    ijk = np.argwhere(process_mask)
    return structure, process_mask, lambda sphere: affine[:3, :3] @ ijk[sphere] + affine[:3, 3]


def _tfce_p(maps: _Maps, observed: np.ndarray, max_tfce: np.ndarray, extra: float):
    """TFCE of the observed map and its family-wise p-values from each null map's maximum."""
    tfce_observed = maps.tfce(observed)
    # TFCE sums powers of cluster sizes and thresholds: equal maps give equal values,
    # and a relative tolerance absorbs the summation order of the same terms
    beaten = max_tfce[None, :] >= tfce_observed[:, None] * (1 - 1e-12)
    return tfce_observed, (extra + beaten.sum(axis=1)) / (extra + len(max_tfce))


def permutation_inference(
    observed: np.ndarray,
    null: np.ndarray,
    process_mask: np.ndarray | None,
    affine: np.ndarray | None,
    *,
    cluster_alpha: float = 0.001,
    connectivity: int = 26,
    chunk: int = 64,
    exhaustive: bool = False,
    with_tfce: bool = False,
    tfce_dh="auto",
    tfce_baseline: float | None = None,
    graph=None,
) -> PermutationResult:
    """p-values of a searchlight map from its permutation null.

    Parameters
    ----------
    observed : ndarray (n_spheres,)
        Observed scores, in the order of the process mask's voxels.
    null : ndarray (n_permutations, n_spheres)
        Null scores (may be a memory map; read in chunks of permutations).
    process_mask : ndarray of bool, 3D, or None with ``graph``
    affine : ndarray (4, 4), or None with ``graph``
    cluster_alpha : float
        Cluster-forming threshold: the ``1 - cluster_alpha`` quantile of the pooled null.
    connectivity : {6, 18, 26}
        Neighbourhood of voxels in a cluster.
    exhaustive : bool
        The null maps are all arrangements the design allows, the observed one among them:
        p-values are ``#{null >= observed} / P``, not ``(1 + #{null >= observed}) / (1 + P)``.
    with_tfce, tfce_dh, tfce_baseline
        Also TFCE (:func:`tfce`, step ``tfce_dh``) of every map minus ``tfce_baseline``
        (chance; None: the pooled null's mean), with family-wise p-values from the maximum
        TFCE of each null map.
    graph : object or None
        Spheres off a grid (a mesh's vertices): ``adjacency`` (sparse, spheres x spheres:
        neighbours in a cluster) and ``coordinates`` (spheres x 3, mm), instead of
        ``process_mask``, ``affine`` and ``connectivity``.

    Returns
    -------
    PermutationResult
        Voxel-wise p-values; ``p_fwe`` from the maximum over spheres of each null map;
        clusters above the threshold with p-values from each null map's largest cluster.
    """
    n_perm = null.shape[0]
    if n_perm == 0:
        raise ValueError("No permutations: nothing to infer from.")
    structure, process_mask, position = _space(process_mask, affine, connectivity, graph)
    observed = np.asarray(observed, dtype=np.float64)
    pooled = _pool(observed, null, chunk)
    # random draws count the observed labelling once more (Phipson & Smyth 2010); an
    # exhaustive enumeration holds it already
    extra = 0.0 if exhaustive else 1.0
    max_null = pooled.max_null
    p_values = (extra + pooled.count) / (extra + n_perm)
    p_fwe = (extra + (max_null[None, :] >= observed[:, None] - SCORE_TOL).sum(axis=1)) / (extra + n_perm)
    p_values[np.isnan(observed)] = np.nan  # no score, no test
    p_fwe[np.isnan(observed)] = np.nan
    threshold = pooled.threshold(cluster_alpha)
    baseline = pooled.mean if tfce_baseline is None else float(tfce_baseline)
    maps = _Maps(process_mask, structure, baseline, tfce_dh)
    max_cluster, max_tfce = _cluster_and_tfce_nulls(null, maps, threshold, with_tfce, chunk)
    tfce_observed, p_fwe_tfce = _tfce_p(maps, observed, max_tfce, extra) if with_tfce else (None, None)
    labels3d, sizes = clusters_above(maps.volume(observed), threshold, structure)
    clusters, sphere_labels = _cluster_table(
        observed, maps.of_spheres(labels3d), sizes, position, p_fwe,
        lambda size: float((extra + (max_cluster >= size).sum()) / (extra + n_perm)),
    )  # fmt: skip
    null_summary = _summary(pooled, max_cluster, threshold, cluster_alpha, exhaustive,
                            baseline if with_tfce else None)  # fmt: skip
    return PermutationResult(
        p_values=p_values, p_fwe=p_fwe, max_null=max_null, cluster_threshold=threshold,
        cluster_labels=sphere_labels, clusters=clusters, max_cluster_null=max_cluster,
        null_summary=null_summary, tfce=tfce_observed, p_fwe_tfce=p_fwe_tfce,
        max_tfce_null=max_tfce,
    )  # fmt: skip

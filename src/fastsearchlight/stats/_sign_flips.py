"""One-sample sign-flipping permutation test of maps (the group level).

Under the null hypothesis each subject's map minus chance is symmetric about zero, so the
signs of whole subject maps are exchangeable (Nichols & Holmes 2002). The statistic is the
one-sample t of every voxel; family-wise p-values come from the maximum over the map of
each sign-flipped t map (voxel level), of its largest supra-threshold cluster (cluster
level) and of its TFCE (Smith & Nichols 2009). With ``n`` subjects only ``2**n`` distinct
sign patterns exist: when that is no more than asked, every one of them is used, and the
test is exact (the smallest p-value is then ``2**-n``).
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, stats

from ..core import effective_n_jobs
from ._tfce import TfceGraph, label_clusters

__all__ = ["SignFlipResult", "sign_flip_test", "sign_patterns"]

#: clusters of voxels sharing a face, as nilearn's second-level cluster inference
CLUSTER_STRUCTURE = ndimage.generate_binary_structure(3, 1)


def sign_patterns(n_subjects: int, n_permutations: int, random_state) -> tuple[np.ndarray, bool]:
    """Sign patterns (n_patterns, n_subjects) of +1/-1, and whether they are all of them.

    All ``2**n_subjects`` patterns (the identity first) when that is no more than
    ``n_permutations``; otherwise ``n_permutations`` patterns drawn at random.
    """
    if n_subjects < 1:
        raise ValueError("the sign-flip test needs at least one subject")
    if n_permutations < 1:
        raise ValueError(f"the sign-flip test needs at least one permutation, got {n_permutations}")
    if n_subjects < 63 and 2**n_subjects <= n_permutations:
        flips = np.array(list(itertools.product((1.0, -1.0), repeat=n_subjects)))
        return flips, True
    rng = np.random.default_rng(random_state)
    return rng.choice(np.array([1.0, -1.0]), size=(n_permutations, n_subjects)), False


def one_sample_t(data: np.ndarray, signs: np.ndarray | None = None) -> np.ndarray:
    """One-sample t of each column of ``data`` (subjects x voxels), for each sign pattern.

    Flipping signs leaves every subject's squares unchanged, so only the means change:
    ``t = mean / sqrt((sum(x**2) - n mean**2) / (n (n - 1)))``.
    """
    n = data.shape[0]
    if signs is None:
        signs = np.ones((1, n))
    t = signs @ data
    t /= n  # the means
    ss = (data**2).sum(axis=0)
    # the standard error, in place (a map of temporaries per pattern would be the peak memory
    # of a 2 mm test)
    se = np.square(t)
    se *= -n
    se += ss
    np.maximum(se, 0.0, out=se)
    se /= (n - 1) * n
    np.sqrt(se, out=se)
    flat = se == 0.0  # a voxel equal in every subject: no spread, no evidence
    se[flat] = 1.0
    t /= se
    t[flat] = 0.0
    return t


@dataclass
class _TMaps:
    """t values as volumes of the mask (or as they are, on a graph of the tested points),
    their supra-threshold clusters and their TFCE."""

    mask: np.ndarray | None
    threshold_t: float | None
    tfce_dh: object
    graph: object = None  # sparse adjacency of the tested points (a mesh), or None: a grid
    with_tfce: bool = False
    tfce_graph: TfceGraph | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.with_tfce:  # found once, for every map (and every thread)
            self.tfce_graph = TfceGraph.of_mask(self.mask if self.graph is None else None, self.structure)

    @property
    def structure(self):
        return CLUSTER_STRUCTURE if self.graph is None else self.graph

    def volume(self, values: np.ndarray) -> np.ndarray:
        if self.graph is not None:
            return np.asarray(values, dtype=np.float64)
        vol = np.zeros(self.mask.shape)
        vol[self.mask] = values
        return vol

    def of_points(self, layout: np.ndarray) -> np.ndarray:
        return layout if self.graph is not None else layout[self.mask]

    def clusters(self, t_map: np.ndarray):
        labels, _ = label_clusters(self.volume(t_map) > self.threshold_t, self.structure)
        return labels, np.bincount(labels.ravel())[1:]

    def tfce(self, t_map: np.ndarray) -> np.ndarray:
        """TFCE of a t map over the tested points' graph (found once for every map)."""
        return self.tfce_graph(t_map, dh=self.tfce_dh)


def _null_maxima(data, flips, maps: _TMaps, with_tfce: bool, chunk: int, n_jobs: int = 1):
    """The maximum t, largest cluster and largest TFCE of every sign-flipped map; each map's
    clusters and TFCE in one of ``n_jobs`` threads (TFCE's sweep runs without the
    interpreter lock)."""
    n_flips = len(flips)
    max_t = np.empty(n_flips)
    max_size = np.zeros(n_flips)
    max_tfce = np.zeros(n_flips)

    def of_map(t_map: np.ndarray) -> tuple[float, float]:
        size = maps.clusters(t_map)[1].max(initial=0) if maps.threshold_t is not None else 0.0
        return size, (maps.tfce(t_map).max(initial=0.0) if with_tfce else 0.0)

    with ThreadPoolExecutor(n_jobs) if n_jobs > 1 else nullcontext() as pool:
        for lo in range(0, n_flips, chunk):
            t_block = one_sample_t(data, flips[lo : lo + chunk])
            max_t[lo : lo + chunk] = t_block.max(axis=1)
            found = list(pool.map(of_map, t_block) if pool is not None else map(of_map, t_block))
            max_size[lo : lo + len(found)] = [f[0] for f in found]
            max_tfce[lo : lo + len(found)] = [f[1] for f in found]
    return max_t, max_size, max_tfce


@dataclass
class SignFlipResult:
    """Outcome of :func:`sign_flip_test` (arrays over the mask's voxels)."""

    t: np.ndarray
    p_fwe: np.ndarray
    cluster_threshold_t: float | None
    p_cluster_fwe: np.ndarray | None  # the p-value of the cluster each voxel is in (1: none)
    tfce: np.ndarray | None
    p_fwe_tfce: np.ndarray | None
    n_permutations: int
    exhaustive: bool
    max_t_null: np.ndarray


def sign_flip_test(
    data: np.ndarray,
    mask: np.ndarray,
    *,
    n_permutations: int = 5000,
    random_state=0,
    cluster_threshold: float | None = 0.001,
    with_tfce: bool = False,
    tfce_dh="auto",
    chunk: int = 32,
    graph=None,
    n_jobs: int = 1,
) -> SignFlipResult:
    """One-sided one-sample test (mean > 0) of subject maps by sign flipping.

    Parameters
    ----------
    data : ndarray (n_subjects, n_voxels)
        Each subject's map minus chance, over the voxels of ``mask`` (C order).
    mask : ndarray of bool, 3D, or None with ``graph``
    n_permutations : int
        Sign patterns to draw; all ``2**n_subjects`` when that is no more.
    random_state : int, Generator or None
    cluster_threshold : float or None
        Cluster-forming threshold as an uncorrected one-sided p-value of the t
        distribution with ``n_subjects - 1`` degrees of freedom (voxels with t above the
        corresponding value); None: no cluster inference.
    with_tfce : bool
        Also TFCE of the t maps, with family-wise p-values.
    tfce_dh : "auto" or float
    chunk : int
        Sign patterns whose t maps are computed (and held) at once: about
        ``2 * chunk * n_voxels`` floats (105 MB for 32 patterns of a 2 mm brain).
    graph : scipy.sparse matrix or None
        Adjacency (n_voxels x n_voxels) of the tested points when they are not a grid's
        voxels (a mesh's vertices, connected by its edges): clusters and TFCE follow it,
        and ``mask`` is unused.
    n_jobs : int
        Threads that find the null maps' clusters and TFCE (-1: every core).

    Returns
    -------
    SignFlipResult
        p-values ``(1 + #{null >= observed}) / (1 + P)`` for random patterns, and
        ``#{null >= observed} / 2**n`` when every pattern (the identity among them) is used.
    """
    data = np.asarray(data, dtype=np.float64)
    n_subjects, n_voxels = data.shape
    if n_subjects < 2:
        raise ValueError("the one-sample t-test needs at least two subjects")
    if graph is not None:
        if graph.shape != (n_voxels, n_voxels):
            raise ValueError(f"data has {n_voxels} points, the graph's adjacency shape {graph.shape}")
    elif int(mask.sum()) != n_voxels:
        raise ValueError(f"data has {n_voxels} voxels, the mask {int(mask.sum())}")
    flips, exhaustive = sign_patterns(n_subjects, n_permutations, random_state)
    n_jobs = effective_n_jobs(n_jobs)
    n_flips = len(flips)
    threshold_t = None
    if cluster_threshold is not None:
        threshold_t = float(stats.t.isf(cluster_threshold, df=n_subjects - 1))
    maps = _TMaps(mask, threshold_t, tfce_dh, graph, with_tfce)
    max_t, max_size, max_tfce = _null_maxima(data, flips, maps, with_tfce, chunk, n_jobs)
    t_obs = one_sample_t(data)[0]
    extra = 0.0 if exhaustive else 1.0

    def p_of(null_max, observed):
        # the same arithmetic on the same numbers (the identity pattern) gives the same
        # value; the relative tolerance absorbs rounding of equal sums in another order
        beaten = null_max[None, :] >= observed[:, None] - 1e-12 * np.abs(observed[:, None])
        return (extra + beaten.sum(axis=1)) / (extra + n_flips)

    p_fwe = p_of(max_t, t_obs)
    p_cluster = None
    if threshold_t is not None:
        labels, sizes = maps.clusters(t_obs)
        p_size = p_of(max_size, sizes.astype(float)) if sizes.size else np.zeros(0)
        p_cluster = np.concatenate([[1.0], p_size])[maps.of_points(labels)]
    tfce_obs = p_tfce = None
    if with_tfce:
        tfce_obs = maps.tfce(t_obs)
        p_tfce = np.where(tfce_obs > 0, p_of(max_tfce, tfce_obs), 1.0)
    return SignFlipResult(
        t=t_obs, p_fwe=p_fwe, cluster_threshold_t=threshold_t, p_cluster_fwe=p_cluster,
        tfce=tfce_obs, p_fwe_tfce=p_tfce, n_permutations=n_flips, exhaustive=exhaustive,
        max_t_null=max_t,
    )  # fmt: skip

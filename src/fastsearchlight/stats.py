"""Permutation statistics for searchlight maps (Stelzer, Chen & Turner 2013, NeuroImage 65).

- :func:`make_permutations`: permuted label vectors, the same for every sphere. Labels are
  exchanged among whole blocks of a block design (or single samples) within runs; when the
  design allows few arrangements, all of them are enumerated and the test is exact.
- :class:`NullStore`: the null score maps, one row per permutation, in memory or in a
  memory-mapped checkpoint file that lets an interrupted run resume where it stopped. They
  are kept in float64, the observed scores' precision, so that a null score equal to the
  observed one is counted as such.
- :func:`permutation_inference`: voxel-wise p-values, family-wise error (FWE) corrected
  p-values by the maximum statistic over spheres, and cluster-level inference with a
  cluster-forming threshold taken from the pooled null distribution and a cluster-size null
  made of the largest cluster of each permutation.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

#: tolerance when comparing scores: they are ratios of small integers (a few hundred test
#: samples), spaced far more than this, and sums of the same fold scores in another order
#: differ by far less
SCORE_TOL = 1e-9
#: precision of stored null scores: the observed scores' own
NULL_DTYPE = np.float64


#: how labels are exchanged under the null hypothesis
PERMUTE_SCHEMES = ("blocks", "samples")


def exchangeability_blocks(
    y: np.ndarray, groups: np.ndarray | None, permute: str = "blocks"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The units whose labels are exchanged, per group.

    With ``permute="blocks"`` a block is a maximal run of consecutive samples (in sample
    order, within a group) that share a label: in a block design its volumes share the
    block's slow noise, so only whole blocks are exchangeable. With ``"samples"`` every
    sample is its own block.

    Returns
    -------
    list of (members, block_of_member)
        Per group (all samples when ``groups`` is None): the sample indices of the group in
        increasing order, and the block number (0, 1, ...) of each of them.
    """
    if permute not in PERMUTE_SCHEMES:
        raise ValueError(f"permute must be one of {PERMUTE_SCHEMES}, got {permute!r}.")
    y = np.asarray(y)
    n = len(y)
    if groups is None:
        members = [np.arange(n)]
    else:
        groups = np.asarray(groups)
        members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    out = []
    for idx in members:
        if permute == "samples":
            block = np.arange(idx.size)
        else:
            labels = y[idx]
            block = np.concatenate([[0], np.cumsum(labels[1:] != labels[:-1])])
        out.append((idx, block))
    return out


def _count_arrangements(block_labels: np.ndarray) -> int:
    """Distinct orderings of a multiset of labels: n! / prod(count_c!)."""
    _, counts = np.unique(block_labels, return_counts=True)
    total = math.factorial(int(counts.sum()))
    for c in counts:
        total //= math.factorial(int(c))
    return total


def _distinct_orderings(values: np.ndarray):
    """Every distinct ordering of a multiset, in lexicographic order of ranks (identity
    ordering of the sorted values first)."""
    ranks = np.unique(values, return_inverse=True)[1]
    uniq = np.unique(values)
    a = sorted(int(r) for r in ranks)
    while True:
        yield uniq[np.asarray(a)]
        # next permutation in lexicographic order (Knuth's algorithm L)
        i = len(a) - 2
        while i >= 0 and a[i] >= a[i + 1]:
            i -= 1
        if i < 0:
            return
        j = len(a) - 1
        while a[j] <= a[i]:
            j -= 1
        a[i], a[j] = a[j], a[i]
        a[i + 1 :] = reversed(a[i + 1 :])


@dataclass(frozen=True)
class LabelPermutations:
    """Permuted label vectors for a permutation test.

    Attributes
    ----------
    labels : ndarray (n_permutations, n_samples)
        One permuted label vector per row, in the labels' own values.
    exhaustive : bool
        True when every distinct arrangement the design allows was enumerated (the observed
        one among them): p-values are then ``#{null >= observed} / n_permutations``, exact.
        False for random draws: ``(1 + #{null >= observed}) / (1 + n_permutations)``.
    n_possible : int
        Number of distinct label arrangements the scheme allows.
    permute : str
        The scheme, ``"blocks"`` or ``"samples"``.
    n_blocks : int
        Number of exchangeable units over all groups.
    """

    labels: np.ndarray
    exhaustive: bool
    n_possible: int
    permute: str
    n_blocks: int

    @property
    def n_permutations(self) -> int:
        return int(self.labels.shape[0])

    @property
    def smallest_p(self) -> float:
        """The smallest p-value these permutations can give."""
        n = self.n_permutations
        return 1.0 / n if self.exhaustive else 1.0 / (n + 1)

    def describe(self) -> dict:
        """A summary for reports and ``summary.json``."""
        return {
            "scheme": self.permute,
            "exchangeable units": self.n_blocks,
            "distinct arrangements possible": (
                self.n_possible if self.n_possible < 10**15 else f"{float(self.n_possible):.3g}"
            ),
            "permutations": self.n_permutations,
            "all arrangements enumerated": self.exhaustive,
            "smallest possible p": self.smallest_p,
        }


def make_permutations(
    y: np.ndarray, groups: np.ndarray | None, n_permutations: int, random_state, plan=None,
    max_tries: int = 100, permute: str = "blocks",
) -> LabelPermutations:
    """Permuted label vectors, the same for every sphere.

    Labels are exchanged among the exchangeable units (:func:`exchangeability_blocks`) of
    each group (run), which keeps every run's design. When the design allows no more
    distinct arrangements than ``n_permutations``, all of them are enumerated (the observed
    one included) and the test is exact; otherwise ``n_permutations`` arrangements are
    drawn at random from ``random_state``. With a CV ``plan`` (classification), an
    arrangement whose training set of some fold would lack a class is left out (enumerated)
    or drawn again (random).

    Parameters
    ----------
    y : ndarray (n_samples,)
    groups : ndarray (n_samples,) or None
    n_permutations : int
        Permutations asked for (at most; fewer when the design allows fewer).
    random_state : int, Generator or None
    plan : CVPlan or None
    permute : {"blocks", "samples"}
    """
    if n_permutations < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}.")
    y = np.asarray(y)
    units = exchangeability_blocks(y, groups, permute)
    # the label of each block (a block's samples share it; with "samples", each sample's)
    block_labels = [y[idx][np.searchsorted(block, np.arange(block[-1] + 1))] for idx, block in units]
    n_possible = math.prod(_count_arrangements(b) for b in block_labels)
    n_blocks = sum(b.size for b in block_labels)
    classes = np.unique(y)

    def assemble(arrangement) -> np.ndarray:
        labels = y.copy()
        for (idx, block), values in zip(units, arrangement):
            labels[idx] = values[block]
        return labels

    def valid(labels) -> bool:
        return plan is None or all(
            np.unique(labels[train]).size == classes.size for train in plan.train_indices
        )

    if 0 < n_possible <= n_permutations:
        rows = [
            labels
            for arrangement in itertools.product(*(_distinct_orderings(b) for b in block_labels))
            if valid(labels := assemble(arrangement))
        ]  # fmt: skip
        out = np.stack(rows) if rows else np.empty((0, y.size), dtype=y.dtype)
        return LabelPermutations(out, True, n_possible, permute, n_blocks)

    rng = np.random.default_rng(random_state)
    out = np.empty((n_permutations, y.size), dtype=y.dtype)
    for p in range(n_permutations):
        for _ in range(max_tries):
            labels = assemble([b[rng.permutation(b.size)] for b in block_labels])
            if valid(labels):
                break
        else:
            raise ValueError(
                "Could not draw label permutations that keep every class in every training "
                "fold: use a cross-validation that leaves more samples in training."
            )
        out[p] = labels
    return LabelPermutations(out, False, n_possible, permute, n_blocks)


class NullStore:
    """Null score maps, one row per permutation, filled in any order.

    In memory by default; with ``path``, a memory-mapped file plus a small JSON record of
    the analysis' fingerprint and of the rows done, so that an interrupted run resumes.

    Parameters
    ----------
    n_permutations, n_spheres : int
    fingerprint : str
        Identifies the analysis (data, labels, parameters, seed); a checkpoint made for
        another analysis is refused.
    path : path-like or None
        Checkpoint file (``.npy`` data) — a ``.json`` record is kept beside it.
    """

    def __init__(self, n_permutations: int, n_spheres: int, fingerprint: str, path=None):
        self.n_permutations = n_permutations
        self.n_spheres = n_spheres
        self.fingerprint = fingerprint
        self.path = Path(path) if path is not None else None
        shape = (n_permutations, n_spheres)
        if self.path is None:
            self.scores = np.zeros(shape, dtype=NULL_DTYPE)
            self.done = np.zeros(n_permutations, dtype=bool)
            return
        self.record = self.path.with_suffix(".json")
        if self.path.exists() and self.record.exists():
            try:
                info = json.loads(self.record.read_text())
                scores = np.load(self.path, mmap_mode="r+")
            except (ValueError, OSError, EOFError) as exc:
                raise ValueError(
                    f"The checkpoint {self.path} (or its record {self.record.name}) cannot be "
                    f"read ({exc}): delete both files to start the permutations again."
                ) from None
            if info.get("dtype") != np.dtype(NULL_DTYPE).name or scores.dtype != NULL_DTYPE:
                raise ValueError(
                    f"The checkpoint {self.path} was written by an older version (null scores "
                    f"in {scores.dtype}): delete it to start the permutations again."
                )
            if info.get("fingerprint") != fingerprint or tuple(info.get("shape", ())) != shape:
                raise ValueError(
                    f"The checkpoint {self.path} belongs to another analysis (other data, labels, "
                    "parameters or seed): delete it or choose another checkpoint path."
                )
            self.scores = scores
            self.done = np.zeros(n_permutations, dtype=bool)
            self.done[info["done"]] = True
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.scores = np.lib.format.open_memmap(self.path, mode="w+", dtype=NULL_DTYPE, shape=shape)
            self.done = np.zeros(n_permutations, dtype=bool)
            self._save_record()

    def _save_record(self):
        tmp = self.record.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({
            "fingerprint": self.fingerprint,
            "dtype": np.dtype(NULL_DTYPE).name,
            "shape": [self.n_permutations, self.n_spheres],
            "done": np.flatnonzero(self.done).tolist(),
        }))  # fmt: skip
        os.replace(tmp, self.record)

    def write(self, rows: np.ndarray, scores: np.ndarray) -> None:
        """Store the null maps of permutations ``rows`` (data first, then the record)."""
        self.scores[rows] = scores
        self.done[rows] = True
        if self.path is not None:
            self.scores.flush()
            self._save_record()

    def remove(self) -> None:
        """Delete the checkpoint files (after a completed run)."""
        if self.path is not None:
            del self.scores
            for f in (self.path, self.record):
                if f.exists():
                    f.unlink()


def fingerprint(*parts) -> str:
    """A hash of arrays and values that identifies an analysis."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str(part.dtype).encode())
            h.update(str(part.shape).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode())
    return h.hexdigest()


def tfce(
    values: np.ndarray, structure: np.ndarray, *, E: float = 0.5, H: float = 2.0, dh="auto"
) -> np.ndarray:
    """Threshold-free cluster enhancement of the positive part of a map (Smith & Nichols 2009).

    Each voxel gets ``sum_h extent(h)**E * h**H`` over the thresholds ``h = dh, 2 dh, ...
    max``, where ``extent(h)`` is the size of the cluster (of voxels ``>= h``, connected by
    ``structure``) that holds it. As nilearn's TFCE (``permuted_ols(tfce=True)``) and
    fslmaths: the steps are not multiplied by ``dh``, and ``dh="auto"`` takes 100 steps
    up to the map's maximum; a number of steps outside [10, 1000] is clipped.

    Parameters
    ----------
    values : ndarray, 3D
        The map (NaN and values <= 0 are background).
    structure : ndarray (3, 3, 3) of bool
        Connectivity of voxels in a cluster.
    E, H : float
        Extent and height exponents.
    dh : "auto" or float
        Step between thresholds.

    Returns
    -------
    ndarray, 3D
        TFCE values (0 on background).
    """
    values = np.where(np.isfinite(values), values, 0.0)
    top = float(values.max()) if values.size else 0.0
    out = np.zeros(values.shape)
    if top <= 0:
        return out
    if isinstance(dh, str):
        if dh != "auto":
            raise ValueError(f"dh must be 'auto' or a positive number, got {dh!r}.")
        steps = 100
    else:
        if not dh > 0:
            raise ValueError(f"dh must be 'auto' or a positive number, got {dh!r}.")
        steps = round(top / dh)
    steps = min(max(steps, 10), 1000)
    for h in np.linspace(0.0, top, steps + 1)[1:]:
        labels, _ = ndimage.label(values >= h, structure=structure)
        extent = np.bincount(labels.ravel())
        extent[0] = 0
        out += (extent**E * h**H)[labels]
    return out


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


def _clusters(values_3d: np.ndarray, threshold: float, structure) -> tuple[np.ndarray, np.ndarray]:
    labels, n = ndimage.label(values_3d >= threshold - SCORE_TOL, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return labels, sizes


def permutation_inference(
    observed: np.ndarray,
    null: np.ndarray,
    process_mask: np.ndarray,
    affine: np.ndarray,
    *,
    cluster_alpha: float = 0.001,
    connectivity: int = 26,
    chunk: int = 64,
    exhaustive: bool = False,
    with_tfce: bool = False,
    tfce_dh="auto",
    tfce_baseline: float | None = None,
) -> PermutationResult:
    """p-values of a searchlight map from its permutation null.

    Parameters
    ----------
    observed : ndarray (n_spheres,)
        Observed scores, in the order of the process mask's voxels.
    null : ndarray (n_permutations, n_spheres)
        Null scores (may be a memory map; read in chunks of permutations).
    process_mask : ndarray of bool, 3D
    affine : ndarray (4, 4)
    cluster_alpha : float
        Cluster-forming threshold: the ``1 - cluster_alpha`` quantile of the null scores
        pooled over spheres and permutations.
    connectivity : {6, 18, 26}
        Neighbourhood of voxels in a cluster.
    exhaustive : bool
        The null maps are those of every arrangement the design allows, the observed one
        among them (:class:`LabelPermutations`): p-values are ``#{null >= observed} / P``.
    with_tfce : bool
        Also TFCE (:func:`tfce`) of every map minus ``tfce_baseline``, with family-wise
        p-values from the maximum TFCE of each null map.
    tfce_dh : "auto" or float
        TFCE's step between thresholds.
    tfce_baseline : float or None
        The score that TFCE takes as zero: chance. None: the mean of the pooled null
        scores, an estimate of chance for any score.

    Returns
    -------
    PermutationResult
        ``p_values`` uncorrected, ``(1 + #null >= observed) / (1 + P)`` per sphere for
        random permutations (``#null >= observed / P`` when exhaustive);
        ``p_fwe`` corrected by the maximum over spheres of each null map; clusters of
        spheres above the threshold with their size-based FWE p-values.
    """
    n_perm, n_spheres = null.shape
    if n_perm == 0:
        raise ValueError("No permutations: nothing to infer from.")
    structure = ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    observed = np.asarray(observed, dtype=np.float64)
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
    # random draws count the observed labelling once more (Phipson & Smyth 2010); an
    # exhaustive enumeration holds it already
    extra = 0.0 if exhaustive else 1.0
    p_values = (extra + count) / (extra + n_perm)
    p_fwe = (extra + (max_null[None, :] >= observed[:, None] - SCORE_TOL).sum(axis=1)) / (extra + n_perm)
    p_values[np.isnan(observed)] = np.nan  # no score, no test
    p_fwe[np.isnan(observed)] = np.nan

    levels = np.array(sorted(pooled))
    freq = np.array([pooled[v] for v in levels], dtype=np.float64)
    exceed = np.cumsum(freq[::-1])[::-1] / freq.sum()  # P(null >= level)
    ok = np.flatnonzero(exceed <= cluster_alpha)
    threshold = float(levels[ok[0]]) if ok.size else float(levels[-1]) + 1e-6

    def to_volume(values):
        vol = np.full(process_mask.shape, -np.inf)
        vol[process_mask] = values
        return vol

    pooled_mean = float((levels * freq).sum() / freq.sum())
    baseline = pooled_mean if tfce_baseline is None else float(tfce_baseline)

    def tfce_of(values):
        return tfce(to_volume(values - baseline), structure, dh=tfce_dh)[process_mask]

    max_cluster = np.zeros(n_perm)
    max_tfce = np.zeros(n_perm) if with_tfce else None
    for lo in range(0, n_perm, chunk):
        block = np.asarray(null[lo : lo + chunk], dtype=np.float64)
        for k, row in enumerate(block):
            _, sizes = _clusters(to_volume(row), threshold, structure)
            max_cluster[lo + k] = sizes.max() if sizes.size else 0
            if with_tfce:
                max_tfce[lo + k] = tfce_of(row).max(initial=0.0)
    tfce_observed = p_fwe_tfce = None
    if with_tfce:
        tfce_observed = tfce_of(observed)
        # TFCE sums powers of cluster sizes and thresholds: equal maps give equal values,
        # and a relative tolerance absorbs the summation order of the same terms
        beaten = max_tfce[None, :] >= tfce_observed[:, None] * (1 - 1e-12)
        p_fwe_tfce = (extra + beaten.sum(axis=1)) / (extra + n_perm)
    labels3d, sizes = _clusters(to_volume(observed), threshold, structure)
    ijk = np.argwhere(process_mask)
    sphere_labels = labels3d[process_mask]
    clusters = []
    for cid, size in enumerate(sizes, start=1):
        members = np.flatnonzero(sphere_labels == cid)
        peak = members[np.argmax(observed[members])]
        xyz = affine[:3, :3] @ ijk[peak] + affine[:3, 3]
        clusters.append({
            "cluster": cid,
            "size": int(size),
            "peak_score": float(observed[peak]),
            "peak_x_mm": float(xyz[0]), "peak_y_mm": float(xyz[1]), "peak_z_mm": float(xyz[2]),
            "peak_p_fwe": float(p_fwe[peak]),
            "p_fwe_cluster": float((extra + (max_cluster >= size).sum()) / (extra + n_perm)),
        })  # fmt: skip
    clusters.sort(key=lambda c: (-c["size"], -c["peak_score"]))
    # number clusters by rank (1 = largest), in the table and in the label map
    relabel = np.zeros(len(sizes) + 1, dtype=np.int64)
    for rank, c in enumerate(clusters, start=1):
        relabel[c["cluster"]] = rank
        c["cluster"] = rank
    sphere_labels = relabel[sphere_labels]
    null_summary = {
        "n_permutations": int(n_perm),
        "all arrangements enumerated": bool(exhaustive),
        "pooled null mean": pooled_mean,
        "TFCE baseline": baseline if with_tfce else None,
        "pooled null sd": float(np.sqrt(((levels - (levels * freq).sum() / freq.sum()) ** 2 * freq).sum() / freq.sum())),
        "pooled null 95th percentile": float(levels[np.searchsorted(np.cumsum(freq) / freq.sum(), 0.95)]),
        "max-statistic 95th percentile": float(np.quantile(max_null, 0.95)),
        "cluster-forming threshold": threshold,
        "cluster-forming alpha": cluster_alpha,
        "max cluster size 95th percentile": float(np.quantile(max_cluster, 0.95)),
    }
    return PermutationResult(
        p_values=p_values, p_fwe=p_fwe, max_null=max_null, cluster_threshold=threshold,
        cluster_labels=sphere_labels, clusters=clusters, max_cluster_null=max_cluster,
        null_summary=null_summary, tfce=tfce_observed, p_fwe_tfce=p_fwe_tfce,
        max_tfce_null=max_tfce,
    )  # fmt: skip

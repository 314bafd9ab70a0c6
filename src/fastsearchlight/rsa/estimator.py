"""The RSA searchlight estimator: an RDM per sphere, model maps, a permutation test."""

from __future__ import annotations

import time
from numbers import Real

import nibabel as nib
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .._fit_inputs import check_targets, read_inputs
from .._huge_pages import without_huge_pages
from .._validation import N_JOBS, VERBOSE, Interval, check_params
from ..core import (
    DEFAULT_MEMORY_MB,
    DaskSession,
    Threads,
    effective_n_jobs,
    make_executor,
    progress_bar,
    spheres_per_block,
)
from ..core._blocks import group_blocks
from ..images import load_func, masked_data
from ._design import METHODS, NOISE, make_design, pair_indices
from .distances import prepare, rdm_task, sphere_bytes
from .evaluation import COMPARISONS, check_models, compare_rdms
from .permutation import ModelTest, permutation_test

__all__ = ["RSASearchLight"]

#: working memory of one block of spheres: blocks this small stay in cache and reuse the
#: allocator's memory (larger blocks took a third more CPU time on the benchmark's workload)
_BLOCK_BYTES = 16 * 2**20


class RSASearchLight(BaseEstimator):
    """Representational similarity searchlight: the RDM of every sphere, at once.

    The distances, the noise precision and the model comparisons are rsatoolbox's
    (``rsatoolbox.rdm.calc_rdm``, ``rsatoolbox.data.noise.prec_from_measurements``,
    ``rsatoolbox.rdm.compare``), computed for blocks of equal-size spheres at once.

    Parameters
    ----------
    mask_img : Niimg-like or None, default=None
        Voxels whose signal enters the spheres (resampled onto the functional grid, nearest
        neighbour, if needed). None: every voxel.
    process_mask_img : Niimg-like or None, default=None
        Voxels at which a sphere is centred (default: ``mask_img``).
    radius : float, default=2.0
        Sphere radius in millimetres (the spheres of :class:`~fastsearchlight.SearchLight`).
    method : {"crossnobis", "euclidean", "correlation", "mahalanobis"}, default="crossnobis"
        The dissimilarity, as rsatoolbox defines and normalises it (squared distances
        divided by the number of voxels; crossnobis leaves one run out and averages the
        folds).
    noise : {None, "shrinkage_diag", "shrinkage_eye", "diag", "full"}, default=None
        Noise precision of each sphere for "mahalanobis" and "crossnobis", estimated from
        the residuals around the condition means as ``prec_from_measurements(dataset,
        obs_desc=<conditions>, method=noise)`` does on the sphere's data; None: the identity.
    n_jobs : int, default=1
        Threads (-1: all cores) of the "loky" backend (the blocks' array operations release
        the interpreter lock, so threads share the work without copying the data).
    memory_mb : float, default=512
        Working-memory budget of the blocks of spheres in flight, in MB.
    verbose : int, default=0
        Show a progress bar when > 0.
    backend : {"loky", "dask"}, default="loky"
        Where the blocks run, as for :class:`~fastsearchlight.SearchLight`.
    scheduler : distributed.Client, str or None, default=None
        The dask scheduler with ``backend="dask"``.

    Attributes
    ----------
    rdms_ : ndarray of float32 (n_spheres, n_pairs)
        RDM vector of each sphere; rows in the order of the process mask's voxels (C order),
        pairs in the upper triangle row by row (``squareform``'s and rsatoolbox's order).
    conditions_ : ndarray (n_conditions,)
        The conditions, sorted (rsatoolbox's order).
    pairs_ : ndarray of int (n_pairs, 2)
        The two conditions (indices into ``conditions_``) of each pair.
    runs_ : ndarray or None
        The runs, sorted.
    process_mask_ : ndarray of bool, 3D
    n_elements_ : int
    sphere_sizes_ : ndarray (n_spheres,)
    timings_ : dict
    """

    _parameter_constraints: dict = {
        "radius": [Interval(Real, 0, None, closed="left")],
        "method": list(METHODS),
        "noise": [None, *NOISE],
        "n_jobs": N_JOBS,
        "verbose": VERBOSE,
        "memory_mb": [Interval(Real, 0, None, closed="neither")],
        "backend": ["loky", "dask"],
    }

    def __init__(
        self,
        mask_img=None,
        process_mask_img=None,
        radius=2.0,
        method="crossnobis",
        noise=None,
        n_jobs=1,
        memory_mb=DEFAULT_MEMORY_MB,
        verbose=0,
        backend="loky",
        scheduler=None,
    ):
        self.mask_img = mask_img
        self.process_mask_img = process_mask_img
        self.radius = radius
        self.method = method
        self.noise = noise
        self.n_jobs = n_jobs
        self.memory_mb = memory_mb
        self.verbose = verbose
        self.backend = backend
        self.scheduler = scheduler

    def fit(self, imgs, conditions, runs=None) -> RSASearchLight:
        """Compute the RDM of every sphere.

        Parameters
        ----------
        imgs : Niimg-like, 4D
            Volumes or beta maps, one per sample.
        conditions : array-like (n_samples,)
            Condition of each sample.
        runs : array-like (n_samples,) or None
            Run of each sample (required by "crossnobis", whose folds leave one run out).

        Returns
        -------
        self
        """
        t0 = time.perf_counter()
        self._check_params()
        func = load_func(imgs)
        n_samples = func.shape[3]
        conditions = check_targets(conditions, n_samples, name="conditions")
        design = make_design(conditions, runs, n_samples, self.method, self.noise)
        inputs = read_inputs(func, conditions, runs, mask_img=self.mask_img,
                             process_mask_img=self.process_mask_img, radius=self.radius)  # fmt: skip
        X = masked_data(inputs.func, inputs.mask, dtype=np.float64, zero_fill=True).T  # voxel-major
        hoods = inputs.neighbourhoods
        self._check_noise_inputs(design, hoods)
        with without_huge_pages():  # the fit's fresh arrays (see _huge_pages.py)
            prepared = prepare(X, design, self.method, self.noise)
            self._check_noise_variance(prepared, hoods, inputs.mask)
            self.timings_ = {"prepare": time.perf_counter() - t0}
            t0 = time.perf_counter()
            self.rdms_ = self._compute(prepared, hoods)
            self.timings_["rdms"] = time.perf_counter() - t0
        rows, cols = pair_indices(design.n_conditions)
        self.conditions_, self.runs_ = design.conditions, design.runs
        self.pairs_ = np.column_stack([rows, cols])
        self.process_mask_ = inputs.process_mask
        self.n_elements_ = int(inputs.process_mask.sum())
        self.sphere_sizes_ = hoods.sizes
        self.neighbourhoods_ = hoods
        self._reference_img = nib.Nifti1Image(
            np.zeros(inputs.process_mask.shape, np.float32), inputs.process_affine
        )
        return self

    def _check_params(self) -> None:
        check_params(self.get_params(deep=False), self._parameter_constraints)
        if self.noise is not None and self.method not in ("mahalanobis", "crossnobis"):
            raise ValueError(
                f"noise={self.noise!r} applies to method='mahalanobis' or 'crossnobis', not {self.method!r}."
            )
        if self.backend == "dask":
            from ..core import import_distributed

            import_distributed()

    def _check_noise_inputs(self, design, hoods) -> None:
        """Refuse spheres too large for a full covariance, before computing."""
        rank = design.n_samples - design.n_conditions
        if self.noise == "full" and self.method in ("mahalanobis", "crossnobis") and hoods.sizes.max() > rank:
            raise ValueError(
                f"noise='full' needs spheres of at most {rank} voxels (the residuals' rank: samples "
                f"minus conditions), the largest has {int(hoods.sizes.max())}: use 'shrinkage_diag' "
                "or a smaller radius."
            )

    def _check_noise_variance(self, prepared, hoods, mask) -> None:
        """Refuse voxels without residual variance where the noise model divides by it."""
        if prepared.noise is None or self.noise == "shrinkage_eye":
            return
        used = np.zeros(len(prepared.noise.flat), dtype=bool)
        used[hoods.adjacency.indices] = True
        constant = np.flatnonzero(used & prepared.noise.flat)
        if len(constant):
            ijk = tuple(int(v) for v in np.argwhere(mask)[constant[0]])
            raise ValueError(
                f"{len(constant)} mask voxel(s) (e.g. voxel {ijk}) do not vary around their condition "
                f"means: noise={self.noise!r} cannot be estimated there; remove them from the mask."
            )

    def _compute(self, prepared, hoods) -> np.ndarray:
        """The RDMs of every sphere, block by block: in threads of this process (the blocks'
        products and gathers release the interpreter lock; BLAS held to one thread), or as
        tasks on a dask cluster."""
        from contextlib import ExitStack

        from threadpoolctl import threadpool_limits

        with ExitStack() as stack:
            if self.backend == "dask":
                session = DaskSession(self.scheduler)
                stack.callback(session.close)
                executor = make_executor("dask", None, session)
            else:
                executor = stack.enter_context(Threads(effective_n_jobs(self.n_jobs)))
                stack.enter_context(threadpool_limits(1, user_api="blas"))
            per_size = {
                int(k): min(
                    spheres_per_block(sphere_bytes(prepared, int(k)), self.memory_mb, executor.n_workers),
                    max(1, _BLOCK_BYTES // sphere_bytes(prepared, int(k))),
                )
                for k in np.unique(hoods.sizes)
            }
            blocks = list(hoods.blocks(lambda k: per_size[k]))
            tasks = (
                [[b] for b in blocks] if executor.n_tasks is None else group_blocks(blocks, executor.n_tasks)
            )
            data = executor.share(prepared, key=("rsa", id(prepared)))
            limit = executor.is_dask  # threads share the limit set here
            out = np.full((hoods.n_spheres, len(pair_indices(prepared.n_conditions)[0])), np.nan, np.float32)
            with progress_bar(hoods.n_spheres, self.verbose, "rsa searchlight") as bar:
                argsets = [(data, task, limit) for task in tasks]
                for _, (ids, rdms) in executor.map_unordered(rdm_task, argsets, name="fastsearchlight-rsa"):
                    out[ids] = rdms
                    bar.update(len(ids))
        return out

    def __sklearn_clone__(self):
        """An unfitted copy, as ``sklearn.base.clone`` makes it, sharing the dask ``scheduler``
        (a ``Client`` cannot be deep-copied)."""
        from sklearn.base import clone

        params = self.get_params(deep=False)
        return type(self)(**{k: v if k == "scheduler" else clone(v, safe=False) for k, v in params.items()})

    # ------------------------------------------------------------------ models
    def model_fit(self, model_rdms, method: str = "spearman") -> np.ndarray:
        """Fit of each model RDM at every sphere, as ``rsatoolbox.rdm.compare``.

        Parameters
        ----------
        model_rdms : array-like (n_models, n_pairs)
            Model RDM vectors in the order of ``pairs_`` (or square RDMs, n_models x n x n).
        method : {"spearman", "tau-a", "corr", "cosine"}, default="spearman"

        Returns
        -------
        ndarray (n_models, n_spheres)
        """
        check_is_fitted(self, "rdms_")
        _check_comparison(method)
        return compare_rdms(self.rdms_, check_models(model_rdms, self.rdms_.shape[1]), method)

    def evaluate(self, model_rdms, method: str = "spearman") -> list:
        """One map per model of its fit at every sphere (see :meth:`model_fit`).

        Returns
        -------
        list of Nifti1Image
            3D images on the process mask's grid, in the models' order (0 outside).
        """
        return [self.to_img(values) for values in self.model_fit(model_rdms, method)]

    def permutation_test(
        self,
        model_rdms,
        method: str = "spearman",
        n_permutations: int = 1000,
        random_state=0,
        keep_null: bool = False,
    ) -> ModelTest:
        """Permutation test of each model's fit: condition labels permuted (the same
        relabellings for every sphere, the RDMs reordered, not recomputed), with family-wise
        p-values from the maximum fit over the map (see :mod:`.permutation`).

        Parameters
        ----------
        model_rdms : array-like (n_models, n_pairs)
        method : {"spearman", "tau-a", "corr", "cosine"}, default="spearman"
        n_permutations : int, default=1000
            Relabellings; all ``n_conditions!`` of them when there are no more (exact test).
        random_state : int, Generator or None, default=0
        keep_null : bool, default=False
            Keep every null map (``null``).

        Returns
        -------
        ModelTest
            Per model and sphere: ``scores``, ``p_values``, ``p_fwe`` (see :meth:`to_img`).
        """
        check_is_fitted(self, "rdms_")
        _check_comparison(method)
        if (
            isinstance(n_permutations, bool)
            or not isinstance(n_permutations, (int, np.integer))
            or n_permutations < 1
        ):
            raise ValueError(f"n_permutations must be a positive int, got {n_permutations!r}.")
        models = check_models(model_rdms, self.rdms_.shape[1])
        return permutation_test(self.rdms_, models, method, int(n_permutations), random_state, keep_null)

    def to_img(self, values):
        """Values of the spheres (n_spheres,) as a 3D image on the process mask's grid."""
        from ..images import scores_to_img

        check_is_fitted(self, "rdms_")
        return scores_to_img(np.asarray(values, dtype=np.float64), self.process_mask_, self._reference_img)


def _check_comparison(method) -> None:
    if method not in COMPARISONS:
        raise ValueError(f"method must be one of {', '.join(map(repr, COMPARISONS))}, got {method!r}.")

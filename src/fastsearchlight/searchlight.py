"""The searchlight estimator: a drop-in for ``nilearn.decoding.SearchLight``."""

from __future__ import annotations

import time
import warnings
from copy import deepcopy

import nibabel as nib
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from nilearn.image import check_niimg_3d
from sklearn.utils.validation import check_is_fitted

from numbers import Integral, Real

from . import engine
from ._validation import N_JOBS, VERBOSE, Interval, check_params
from .cv import make_cv_plan
from .estimators import NAMES, batched_equivalent, is_classification, resolve_estimator
from .functional import batched_plan_ok, check_searchlight_estimator, uses_cv
from .images import (
    load_func, load_mask_on_grid, load_mask_own_grid, masked_data, nilearn_dtype, scores_to_img,
)  # fmt: skip
from .neighbourhoods import build_neighbourhoods
from .scoring import batched_metric, resolve_scoring
from .core import DaskSession, Problem, compute_scores, make_executor, voxel_major
from .stats import fold_mean
from .sphere_sums import supports_sphere_sums


def _check_targets(y, n_volumes: int, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        y = np.squeeze(y)
        if y.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {np.shape(y)}.")
    if len(y) != n_volumes:
        raise ValueError(
            f"{name} has {len(y)} entries but the functional images have {n_volumes} volumes: "
            "give exactly one label per volume."
        )
    if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    if y.dtype.kind == "O" and any(v is None for v in y):
        raise ValueError(f"{name} contains missing values (None).")
    return y


def _check_radius_fits(radius: float, func) -> None:
    """A radius no larger than the image's diagonal (beyond it, every sphere would hold the
    whole mask, and the sphere stencil would not fit in memory)."""
    import nibabel as nib

    corners = np.array(np.meshgrid(*[[0, n - 1] for n in func.shape[:3]])).reshape(3, -1).T
    xyz = nib.affines.apply_affine(func.affine, corners)
    extent = float(np.max(np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)))
    voxel = float(np.min(np.linalg.norm(func.affine[:3, :3], axis=0)))
    if radius > extent + voxel:
        raise ValueError(
            f"radius {radius:g} mm exceeds the image's extent ({extent:.1f} mm across): every "
            f"sphere would hold the whole mask; give a radius of at most {extent + voxel:.1f} mm."
        )

#: nilearn's regressor names
_REGRESSOR_NAMES = ("ridge", "ridge_regressor", "lasso", "lasso_regressor", "svr", "dummy_regressor")


class SearchLight(TransformerMixin, BaseEstimator):
    """Searchlight decoding, all spheres and folds solved at once.

    Takes nilearn's ``SearchLight`` arguments and gives its attributes, so code written for
    nilearn runs after changing the import. Classifiers with a batched equivalent (see
    :mod:`fastsearchlight.estimators`) run vectorised over spheres and folds; any other
    scikit-learn estimator or metric runs one fit per sphere and fold, in parallel.

    Parameters
    ----------
    mask_img : Niimg-like or None, default=None
        Voxels whose signal enters the spheres. Must be on the functional images' grid.
        None means every voxel of the image (as nilearn).
    process_mask_img : Niimg-like or None, default=None
        Voxels at which a sphere is centred (default: ``mask_img``). Same grid.
    radius : float, default=2.0
        Sphere radius in millimetres.
    estimator : str or scikit-learn estimator, default="svc"
        A name from :data:`fastsearchlight.estimators.NAMES` (nilearn's names mean what
        they mean in nilearn; "svc" is ``LinearSVC``) or an estimator instance.
    n_jobs : int, default=1
        Parallel workers (-1: all cores) of the "loky" backend; ignored by "dask".
    scoring : str, callable or None, default=None
        scikit-learn scoring; None is the estimator's ``score`` (accuracy).
    cv : int, splitter, iterable or None, default=None
        Cross-validation, as scikit-learn's ``check_cv`` reads it (None: 5 stratified
        folds). Folds are computed once and shared by every sphere.
    verbose : int, default=0
        Show a progress bar when > 0.
    random_state : int or None, default=0
        Seeds the permutations. As in nilearn, it is not passed to the estimator: named
        estimators that take a seed get nilearn's (0), which ``estimator_args`` may change.
    estimator_args : dict or None, default=None
        Extra constructor parameters of a named estimator.
    memory_mb : float, default=512
        Working-memory budget of the blocks of spheres in flight, in MB.
    n_permutations : int, default=0
        Label permutations for a permutation test (Stelzer et al. 2013): labels are
        exchanged within groups (runs) when ``groups`` are given, else across samples; the
        same permutations serve every sphere, so the maximum over the map is a valid
        family-wise statistic. ``random_state`` seeds them. When the design allows no more
        distinct arrangements than this, all of them are enumerated instead (an exact
        test; ``permutation_info_`` says so).
    permute : {"blocks", "samples"}, default="blocks"
        What is exchangeable under the null hypothesis. "blocks": the labels of whole
        blocks (maximal runs of consecutive samples with the same label within a run) are
        permuted among the blocks of each run, as a block design with slow (autocorrelated)
        noise requires. "samples": single samples' labels are permuted within runs, valid
        only when samples are exchangeable (e.g. randomised event-related designs or
        trial-wise estimates).
    tfce : bool, default=False
        With permutations, also threshold-free cluster enhancement (Smith & Nichols 2009;
        E=0.5, H=2, as nilearn computes it) of the map minus chance (the mean of the pooled
        null scores), with family-wise p-values from the maximum TFCE of each null map
        (``p_fwe_tfce_``, ``p_fwe_tfce_img_``).
    tfce_dh : "auto" or float, default="auto"
        TFCE's step between thresholds ("auto": 100 steps up to each map's maximum).
    checkpoint : path-like or None, default=None
        File (``.npy``) where null maps are stored as they are made; an interrupted run
        given the same file resumes where it stopped, with the same result.
    keep_checkpoint : bool, default=False
        Keep the checkpoint file after a completed run.
    keep_null : bool, default=False
        Keep every null map in ``null_scores_`` (n_permutations x n_spheres).
    cluster_alpha : float, default=0.001
        Cluster-forming threshold: the ``1 - cluster_alpha`` quantile of the pooled null.
    permutation_batch : int, default=32
        Permutations solved together per block of spheres.
    backend : {"loky", "dask"}, default="loky"
        Where the spheres are computed: "loky" runs in-process with ``n_jobs=1`` and in
        joblib processes otherwise; "dask" runs them as tasks on a dask.distributed cluster
        (``pip install "fastsearchlight[dask]"``). The data are sent to the workers once
        per fit and reused by every task, permutations included; a task lost with a worker
        is recomputed on another. The scores are identical whatever the backend.
    scheduler : distributed.Client, str or None, default=None
        With ``backend="dask"``: a ``Client``, a scheduler address (``"tcp://host:8786"``)
        or a cluster object (e.g. dask-jobqueue's ``SLURMCluster``); None uses the current
        default client (``distributed.get_client()``) and is an error if there is none.

    Attributes
    ----------
    scores_ : ndarray, 3D
        Mean cross-validated score of the sphere centred at each process-mask voxel, 0
        elsewhere.
    scores_img_ : Nifti1Image
        ``scores_`` as an image with the functional images' affine.
    masked_scores_ : ndarray (n_spheres,)
        Scores of the process-mask voxels, in the mask's order.
    fold_scores_ : ndarray (n_spheres, n_folds)
        Score of each sphere on each fold (``masked_scores_`` is their mean); one column
        for an estimator with ``nilearn_searchlight_uses_cv = False``, fitted and scored on
        all samples (as nilearn).
    fold_scores_img_ : Nifti1Image
        4D image of the per-fold scores.
    process_mask_ : ndarray of bool, 3D
    mask_img_ : Nifti1Image
    n_elements_ : int
        Number of spheres (process-mask voxels).
    sphere_sizes_ : ndarray (n_spheres,)
        Number of voxels in each sphere.
    classes_ : ndarray
        Class labels (classification only).
    p_values_, p_fwe_ : ndarray (n_spheres,)
        Permutation p-values, uncorrected and family-wise corrected (maximum statistic);
        also as images ``p_values_img_`` and ``p_fwe_img_``.
    permuted_labels_ : ndarray (n_permutations, n_samples)
        The permuted label vectors, one per null map.
    permutation_info_ : dict
        The scheme, the number of distinct arrangements it allows, whether all of them were
        enumerated, and the smallest possible p-value.
    tfce_, p_fwe_tfce_ : ndarray (n_spheres,)
        TFCE of the observed map and its family-wise p-values, with ``tfce=True``.
    clusters_ : list of dict
        Clusters of spheres above ``cluster_threshold_`` with size, peak and
        cluster-level FWE p-value (largest cluster of each null map).
    max_null_, max_cluster_null_ : ndarray (n_permutations,)
        Maximum score and largest cluster of each null map.
    null_summary_ : dict
        Summary of the null distribution.
    null_scores_ : ndarray (n_permutations, n_spheres) or None
        Every null map, with ``keep_null=True``.
    engine_ : {"batched", "generic"}
        Which path computed the scores.
    timings_ : dict
        Seconds spent preparing and computing.
    """

    _parameter_constraints: dict = {
        "radius": [Interval(Real, 0, None, closed="left")],
        "n_jobs": N_JOBS,
        "verbose": VERBOSE,
        "memory_mb": [Interval(Real, 0, None, closed="neither")],
        "n_permutations": [Interval(Integral, 0, None), None],
        "cluster_alpha": [Interval(Real, 0, 1, closed="neither")],
        "permutation_batch": [Interval(Integral, 1, None)],
        "keep_checkpoint": [bool],
        "keep_null": [bool],
    }

    def __init__(
        self,
        mask_img=None,
        process_mask_img=None,
        radius=2.0,
        estimator="svc",
        n_jobs=1,
        scoring=None,
        cv=None,
        verbose=0,
        random_state=0,
        estimator_args=None,
        memory_mb=engine.DEFAULT_MEMORY_MB,
        n_permutations=0,
        permute="blocks",
        tfce=False,
        tfce_dh="auto",
        checkpoint=None,
        keep_checkpoint=False,
        keep_null=False,
        cluster_alpha=0.001,
        permutation_batch=32,
        backend="loky",
        scheduler=None,
    ):
        self.mask_img = mask_img
        self.process_mask_img = process_mask_img
        self.radius = radius
        self.estimator = estimator
        self.n_jobs = n_jobs
        self.scoring = scoring
        self.cv = cv
        self.verbose = verbose
        self.random_state = random_state
        self.estimator_args = estimator_args
        self.memory_mb = memory_mb
        self.n_permutations = n_permutations
        self.permute = permute
        self.tfce = tfce
        self.tfce_dh = tfce_dh
        self.checkpoint = checkpoint
        self.keep_checkpoint = keep_checkpoint
        self.keep_null = keep_null
        self.cluster_alpha = cluster_alpha
        self.permutation_batch = permutation_batch
        self.backend = backend
        self.scheduler = scheduler

    # ------------------------------------------------------------------ preparation
    def _prepare(self, imgs, y, groups):
        """Check inputs; the masks and spheres."""
        t0 = time.perf_counter()
        func = load_func(imgs)
        _check_radius_fits(self.radius, func)
        n_volumes = func.shape[3]
        y = _check_targets(y, n_volumes)
        if groups is not None:
            groups = _check_targets(groups, n_volumes, name="groups")
        # as nilearn: the mask is resampled onto the functional grid (nearest neighbour);
        # spheres are centred at the process mask's voxels, by world coordinates, on the
        # process mask's own grid (by default the mask as given), where the maps are made
        if self.mask_img is None:
            mask = np.ones(func.shape[:3], dtype=bool)
        else:
            mask = load_mask_on_grid(self.mask_img, "mask_img", func)
        if self.process_mask_img is not None:
            process_mask, process_affine = load_mask_own_grid(self.process_mask_img, "process_mask_img")
        elif self.mask_img is not None:
            process_mask, process_affine = load_mask_own_grid(self.mask_img, "mask_img")
        else:
            process_mask, process_affine = mask, func.affine
        if process_mask.shape == func.shape[:3] and np.allclose(process_affine, func.affine, atol=1e-4):
            process_affine = func.affine  # the functional grid (the spheres from a stencil)
        neighbourhoods = build_neighbourhoods(
            mask, func.affine, process_mask, process_affine, float(self.radius)
        )
        self.timings_ = {"prepare": time.perf_counter() - t0}
        return func, mask, process_mask, process_affine, y, groups, neighbourhoods

    def fit(self, imgs, y, groups=None):
        """Run the searchlight.

        Parameters
        ----------
        imgs : Niimg-like, 4D
            Functional images, one volume per sample.
        y : array-like (n_volumes,)
            Target of each volume.
        groups : array-like (n_volumes,) or None
            Group (run) of each volume, for group-aware splitters such as
            ``LeaveOneGroupOut``.

        Returns
        -------
        self
        """
        check_params(self.get_params(deep=False), self._parameter_constraints)
        engine.check_backend(self.backend)
        self._check_permutation_params()
        if self.backend == "dask":
            engine.import_distributed()  # fail before reading the data when dask is missing
        # named estimators get nilearn's own parameters (its fixed seeds included)
        sk_estimator = resolve_estimator(self.estimator, self.estimator_args)
        if not isinstance(self.estimator, str):
            warnings.warn(
                "Use a custom estimator at your own risk of the process not working as intended.",
                UserWarning,
                stacklevel=2,
            )
        check_searchlight_estimator(sk_estimator, scoring=self.scoring, y=y)
        cross_validated = uses_cv(sk_estimator)
        classification = is_classification(sk_estimator)
        metric = resolve_scoring(self.scoring)
        batched = batched_equivalent(sk_estimator) if classification else None
        func, mask, process_mask, process_affine, y, groups, hoods = self._prepare(imgs, y, groups)
        t0 = time.perf_counter()
        if classification:
            classes, codes = np.unique(y, return_inverse=True)
            if len(classes) < 2:
                raise ValueError(
                    f"y holds a single class ({classes[0]!r}): decoding needs at least two."
                )
            self.classes_ = classes
        else:
            codes = y
        plan = make_cv_plan(self.cv, codes if classification else y, groups, classifier=classification)
        if classification:  # f1 and friends batch when one of two classes is 1 (their pos_label)
            metric = batched_metric(self.scoring, classes)
        if (
            cross_validated
            and batched is not None
            and metric is not None
            and batched_plan_ok(plan, codes, len(classes), metric)
        ):
            self.engine_ = "batched"
        else:
            # scikit-learn per sphere, as nilearn: also where a fold leaves a class out of
            # training or (ROC AUC) out of testing, which scikit-learn scores (or gives NaN)
            self.engine_ = "generic"
        # worker processes read the data from a memory-mapped file written once, rather
        # than from a copy joblib writes at every parallel call (threads need neither)
        shared = (
            self.backend == "loky"
            and engine.effective_n_jobs(self.n_jobs) > 1
            and not (self.engine_ == "batched" and supports_sphere_sums(batched, metric))
        )
        # the batched engine computes in float64; the generic one hands scikit-learn the
        # data in the dtype nilearn gives it (the images' float32, usually), so that its
        # scores are nilearn's to the bit
        dtype = np.float64 if self.engine_ == "batched" else nilearn_dtype(func, self.mask_img is not None)
        X = masked_data(func, mask, shared=shared, dtype=dtype, zero_fill=True)
        self.timings_["prepare"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        targets = codes if classification else y
        # one problem and one executor for the whole fit: the data are read (and on a
        # cluster scattered) once, and every task (observed labels, every batch of
        # permutations) reuses them and the label-independent work
        session = DaskSession(self.scheduler) if self.backend == "dask" else None
        executor = make_executor(self.backend, self.n_jobs, session)
        if self.engine_ == "batched":
            problem = Problem(voxel_major(X), hoods, plan, batched, (metric,), len(classes), self.memory_mb)
        else:
            problem = Problem(X, hoods, plan, sk_estimator, (self.scoring,))

        def scores_for(label_sets, desc):
            """Per-fold scores, shape (n_label_sets, n_spheres, n_folds)."""
            if self.engine_ != "batched" and classification:
                # scikit-learn sees the user's labels, not class codes (class weights, pos_label)
                label_sets = classes[label_sets]
            if not cross_validated:  # fitted and scored on all samples, as nilearn
                return np.stack([
                    engine.run_without_cv(X, hoods, sk_estimator, labels, groups, n_jobs=self.n_jobs,
                                          verbose=self.verbose, progress_desc=desc)
                    for labels in label_sets
                ])  # fmt: skip
            return compute_scores(problem, label_sets, executor, verbose=self.verbose, desc=desc)[..., 0]

        try:
            fold_scores = scores_for(targets[None, :], "searchlight")[0]
            self.timings_["searchlight"] = time.perf_counter() - t0
            self._permutation_test(scores_for, fold_scores, targets, groups, plan,
                                   X, hoods, process_mask, process_affine, classification)  # fmt: skip
        finally:
            if session is not None:
                session.close()

        self.cv_plan_ = plan
        self.estimator_ = sk_estimator
        self.batched_estimator_ = batched if self.engine_ == "batched" else None
        self.neighbourhoods_ = hoods
        self.sphere_sizes_ = hoods.sizes
        self.fold_scores_ = fold_scores
        self.masked_scores_ = fold_mean(fold_scores)
        self.process_mask_ = process_mask
        self.n_elements_ = int(process_mask.sum())
        self.scores_ = np.zeros(process_mask.shape)
        self.scores_[process_mask] = self.masked_scores_
        func_reference = func.slicer[..., 0]
        if process_affine is func.affine:
            self._reference_img = func_reference
        else:  # the maps live on the process mask's grid
            self._reference_img = nib.Nifti1Image(np.zeros(process_mask.shape, np.float32), process_affine)
        self._mask = mask
        if self.mask_img is None:
            self.mask_img_ = scores_to_img(np.ones(int(mask.sum())), mask, func_reference)
        else:  # as nilearn: the mask image given, with its dtype
            self.mask_img_ = check_niimg_3d(deepcopy(self.mask_img))
        return self

    def _check_permutation_params(self) -> None:
        """The permutation test's parameters, checked before any computation."""
        from .stats import PERMUTE_SCHEMES

        n_perm = self.n_permutations
        if n_perm is not None and (
            isinstance(n_perm, bool) or not isinstance(n_perm, (int, np.integer)) or n_perm < 0
        ):
            raise ValueError(f"n_permutations must be an integer >= 0, got {n_perm!r}.")
        if self.permute not in PERMUTE_SCHEMES:
            raise ValueError(f"permute must be one of {PERMUTE_SCHEMES}, got {self.permute!r}.")
        dh = self.tfce_dh
        if not (isinstance(dh, str) and dh == "auto") and not (
            isinstance(dh, (int, float, np.number)) and not isinstance(dh, bool)
            and np.isfinite(dh) and dh > 0
        ):  # fmt: skip
            raise ValueError(f"tfce_dh must be 'auto' or a positive number, got {dh!r}.")

    def fit_transform(self, imgs, y, groups=None):
        """Fit the searchlight, then :meth:`transform` the same images (as nilearn).

        Parameters
        ----------
        imgs : Niimg-like, 4D
        y : array-like (n_volumes,)
        groups : array-like (n_volumes,) or None

        Returns
        -------
        ndarray, 3D
        """
        return self.fit(imgs, y, groups=groups).transform(imgs)

    @property
    def _estimator_type(self) -> str:
        """"classifier" or "regressor" as the estimator is one (nilearn's rule), else ""."""
        if isinstance(self.estimator, str):
            if self.estimator in _REGRESSOR_NAMES:
                return "regressor"
            return "classifier" if self.estimator in NAMES else ""
        try:
            return getattr(self.estimator.__sklearn_tags__(), "estimator_type", None) or ""
        except AttributeError:
            return getattr(self.estimator, "_estimator_type", "") or ""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        kind = self._estimator_type
        if kind == "classifier":
            from sklearn.utils import ClassifierTags

            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags()
        elif kind == "regressor":
            from sklearn.utils import RegressorTags

            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        return tags

    def _permutation_test(self, scores_for, fold_scores, targets, groups, plan, X, hoods,
                          process_mask, affine, classification):  # fmt: skip
        """Null maps from label permutations, then p-values (see :mod:`fastsearchlight.stats`)."""
        from .stats import NullStore, fingerprint, make_permutations, null_maps, permutation_inference

        n_perm = int(self.n_permutations or 0)
        self.permuted_labels_ = None
        self.permutation_info_ = None
        if n_perm == 0:
            return
        t0 = time.perf_counter()
        perms = make_permutations(
            targets, groups, n_perm, self.random_state, plan if classification else None,
            permute=self.permute,
        )  # fmt: skip
        labels = perms.labels
        self.permuted_labels_ = self.classes_[labels] if classification else labels
        self.permutation_info_ = perms.describe()
        key = fingerprint(
            X.shape, fingerprint(X), targets, groups if groups is not None else "no groups",
            [np.asarray(t) for t in plan.test_indices], hoods.adjacency.indices,
            hoods.adjacency.indptr, repr(self.estimator), repr(self.estimator_args),
            self.scoring, float(self.radius), labels,
        )  # fmt: skip
        store = NullStore(perms.n_permutations, hoods.n_spheres, key, path=self.checkpoint)
        observed = fold_mean(fold_scores)
        null_maps(scores_for, observed, targets, perms, store, max(1, int(self.permutation_batch)))
        result = permutation_inference(
            observed, store.scores, process_mask, affine, cluster_alpha=self.cluster_alpha,
            exhaustive=perms.exhaustive, with_tfce=bool(self.tfce), tfce_dh=self.tfce_dh,
        )  # fmt: skip
        self.p_values_ = result.p_values
        self.p_fwe_ = result.p_fwe
        self.max_null_ = result.max_null
        self.max_cluster_null_ = result.max_cluster_null
        self.cluster_threshold_ = result.cluster_threshold
        self.cluster_labels_ = result.cluster_labels
        self.clusters_ = result.clusters
        self.null_summary_ = result.null_summary
        self.tfce_ = result.tfce
        self.p_fwe_tfce_ = result.p_fwe_tfce
        self.max_tfce_null_ = result.max_tfce_null
        self.null_scores_ = np.array(store.scores) if self.keep_null else None
        if self.checkpoint is not None and not self.keep_checkpoint:
            store.remove()
        self.timings_["permutations"] = time.perf_counter() - t0

    def _volume_img(self, values):
        check_is_fitted(self)
        return scores_to_img(values, self.process_mask_, self._reference_img)

    @property
    def p_values_img_(self):
        """Voxel-wise (uncorrected) permutation p-values as an image (1 outside the map)."""
        self._check_permuted()
        return scores_to_img(self.p_values_, self.process_mask_, self._reference_img, fill=1.0)

    @property
    def p_fwe_img_(self):
        """Family-wise corrected p-values (maximum statistic) as an image (1 outside the map)."""
        self._check_permuted()
        return scores_to_img(self.p_fwe_, self.process_mask_, self._reference_img, fill=1.0)

    @property
    def p_fwe_tfce_img_(self):
        """Family-wise corrected TFCE p-values as an image (1 outside the map)."""
        self._check_permuted()
        if self.p_fwe_tfce_ is None:
            raise AttributeError("TFCE was not computed: set tfce=True.")
        return scores_to_img(self.p_fwe_tfce_, self.process_mask_, self._reference_img, fill=1.0)

    @property
    def cluster_labels_img_(self):
        """Clusters above the cluster-forming threshold (0: none), as an image."""
        self._check_permuted()
        return scores_to_img(self.cluster_labels_.astype(float), self.process_mask_, self._reference_img)

    def _check_permuted(self):
        check_is_fitted(self)
        if getattr(self, "permuted_labels_", None) is None:
            raise AttributeError("No permutation test was run: set n_permutations > 0.")

    def __sklearn_clone__(self):
        """An unfitted copy, as ``sklearn.base.clone`` makes it, sharing the dask ``scheduler``.

        A ``Client`` cannot be deep-copied: the copy uses the same one.
        """
        from sklearn.base import clone

        params = self.get_params(deep=False)
        return type(self)(**{
            name: value if name == "scheduler" else clone(value, safe=False)
            for name, value in params.items()
        })  # fmt: skip

    def transform(self, imgs):
        """Apply the searchlight's estimator to new images, as nilearn's ``transform`` does.

        For each sphere the estimator is fitted on the images with placeholder labels (first
        half 0, second half 1) and the absolute mean of its ``decision_function`` is
        returned, through nilearn's own ``search_light`` so that the result is nilearn's.

        Parameters
        ----------
        imgs : Niimg-like, 4D

        Returns
        -------
        ndarray, 3D
        """
        from nilearn.decoding.searchlight import search_light

        check_is_fitted(self)
        func = load_func(imgs)
        mask = self._mask
        if func.shape[:3] != mask.shape:
            raise ValueError(
                f"The images have shape {func.shape[:3]}, the fitted mask {mask.shape}."
            )
        X = masked_data(func, mask, dtype=nilearn_dtype(func, self.mask_img is not None), zero_fill=True)
        values = search_light(
            X, None, clone(self.estimator_), self.neighbourhoods_.adjacency.tolil(), None,
            self.scoring, self.cv, engine.effective_n_jobs(self.n_jobs), 0,
        )  # fmt: skip
        out = np.zeros(self.process_mask_.shape)
        out[self.process_mask_] = values
        return np.abs(out)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "scores_")

    @property
    def scores_img_(self):
        """Mean scores as a 3D image on the functional images' grid."""
        check_is_fitted(self)
        return scores_to_img(self.masked_scores_, self.process_mask_, self._reference_img)

    @property
    def fold_scores_img_(self):
        """Per-fold scores as a 4D image (last axis: folds)."""
        check_is_fitted(self)
        return scores_to_img(self.fold_scores_, self.process_mask_, self._reference_img)

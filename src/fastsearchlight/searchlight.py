"""The searchlight estimator: a drop-in for ``nilearn.decoding.SearchLight``."""

from __future__ import annotations

import functools
import time
import warnings
from copy import deepcopy
from dataclasses import dataclass, fields
from numbers import Integral, Real

import nibabel as nib
import numpy as np
from nilearn.image import check_niimg_3d
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from . import engine
from ._fit_inputs import estimator_type
from ._searchlight_maps import MapsMixin, VolumeInputsMixin
from ._validation import N_JOBS, VERBOSE, Interval, check_params
from .core import (
    DaskSession,
    Problem,
    choose_measure,
    compute_scores,
    make_executor,
    prefers_threads,
    voxel_major,
)
from .cv import make_cv_plan
from .estimators import is_classification, resolve_estimator
from .functional import check_searchlight_estimator, uses_cv
from .images import load_func, masked_data, nilearn_dtype, scores_to_img
from .sphere_sums import supports_sphere_sums
from .stats import fingerprint, fold_mean


@dataclass
class _Fit:
    """What a fit computes with, once its inputs are read."""

    estimator: object  # the scikit-learn estimator
    measure: object  # its batched equivalent, or the estimator itself (per sphere)
    metrics: tuple
    classification: bool
    classes: np.ndarray | None
    targets: np.ndarray  # class codes (classification) or values
    plan: object
    cross_validated: bool
    X: np.ndarray  # the masked data, in the form the measure wants


class SearchLight(VolumeInputsMixin, MapsMixin, TransformerMixin, BaseEstimator):
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
        Where the spheres are computed: "loky" runs in-process with ``n_jobs=1`` and
        otherwise in threads of this process for the estimators whose fits run in compiled
        code ("svc"), in joblib processes for the others; "dask" runs them as tasks on a dask.distributed cluster
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
        "permute": ["blocks", "samples"],
        "tfce": [bool],
        "tfce_dh": ["auto", Interval(Real, 0, None, closed="neither")],
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
        t0 = time.perf_counter()
        sk_estimator = self._check_and_resolve(y)
        inputs = self._read_inputs(imgs, y, groups)
        self.timings_ = {"prepare": time.perf_counter() - t0}
        fit = self._route(sk_estimator, inputs)
        t0 = time.perf_counter()
        # one problem and one executor for the whole fit: the data are read (and on a
        # cluster scattered) once, and every task (observed labels, every batch of
        # permutations) reuses them and the label-independent work
        session = DaskSession(self.scheduler) if self.backend == "dask" else None
        executor = make_executor(
            self.backend,
            self.n_jobs,
            session,
            threads=prefers_threads(fit.measure, inputs.neighbourhoods, fit.plan),
        )
        scores_for = self._scores_function(fit, inputs, executor)
        try:
            fold_scores = scores_for(fit.targets[None, :], "searchlight")[0]
            self.timings_["searchlight"] = time.perf_counter() - t0
            self._permutation_test(scores_for, fold_scores, fit.targets, inputs.groups, fit.plan,
                                   fit.X, inputs.neighbourhoods, inputs.process_mask,
                                   inputs.process_affine, fit.classification)  # fmt: skip
        finally:
            if session is not None:
                session.close()
        self.cv_plan_ = fit.plan
        self.estimator_ = sk_estimator
        self.batched_estimator_ = fit.measure if self.engine_ == "batched" else None
        self._set_maps(inputs, fold_scores)
        return self

    def _check_and_resolve(self, y):
        """Every parameter checked before any data is read; the scikit-learn estimator."""
        check_params(self.get_params(deep=False), self._parameter_constraints)
        engine.check_backend(self.backend)
        if self.backend == "dask":
            engine.import_distributed()  # fail before reading the data when dask is missing
        # named estimators get nilearn's own parameters (its fixed seeds included)
        sk_estimator = resolve_estimator(self.estimator, self.estimator_args)
        if not isinstance(self.estimator, str):
            warnings.warn(
                "Use a custom estimator at your own risk of the process not working as intended.",
                UserWarning,
                stacklevel=3,
            )
        check_searchlight_estimator(sk_estimator, scoring=self.scoring, y=y)
        return sk_estimator

    def _route(self, sk_estimator, inputs) -> _Fit:
        """Targets, folds and the path (batched or per sphere); the masked data read in the
        form that path wants."""
        t0 = time.perf_counter()
        classification = is_classification(sk_estimator)
        y, classes = inputs.y, None
        if classification:
            classes, codes = np.unique(y, return_inverse=True)
            if len(classes) < 2:
                raise ValueError(f"y holds a single class ({classes[0]!r}): decoding needs at least two.")
            self.classes_ = classes
        targets = codes if classification else y
        plan = make_cv_plan(self.cv, targets, inputs.groups, classifier=classification)
        cross_validated = uses_cv(sk_estimator)
        measure, metrics = (
            choose_measure(sk_estimator, self.scoring, classes, targets, plan)
            if cross_validated
            else (sk_estimator, (self.scoring,))
        )
        batched_path = measure is not sk_estimator
        self.engine_ = "batched" if batched_path else "generic"
        # worker processes read the data from a memory-mapped file written once, rather
        # than from a copy joblib writes at every parallel call (threads need neither)
        shared = (
            self.backend == "loky"
            and engine.effective_n_jobs(self.n_jobs) > 1
            and not (batched_path and supports_sphere_sums(measure, metrics[0]))
            and not prefers_threads(measure, inputs.neighbourhoods, plan)
        )
        # the batched engine computes in float64; the generic one hands scikit-learn the
        # data in the dtype nilearn gives it (the images' float32, usually), so that its
        # scores are nilearn's to the bit
        X = self._masked_data(inputs, shared=shared, batched=batched_path)
        self.timings_["prepare"] += time.perf_counter() - t0
        return _Fit(
            sk_estimator, measure, metrics, classification, classes, targets, plan, cross_validated, X
        )

    def _scores_function(self, fit: _Fit, inputs, executor):
        """``scores_for(label_sets, description, maps=False)``: per-fold scores, shape
        (n_label_sets, n_spheres, n_folds), of label vectors in class codes; with ``maps``,
        their maps (the fold means, (n_label_sets, n_spheres)), reduced block by block so
        that a batch of permutations never holds every sphere's per-fold scores."""
        hoods = inputs.neighbourhoods
        data = voxel_major(fit.X) if self.engine_ == "batched" else fit.X
        n_classes = len(fit.classes) if fit.classification else 2
        problem = Problem(data, hoods, fit.plan, fit.measure, fit.metrics, n_classes, self.memory_mb)

        def scores_for(label_sets, desc, maps=False):
            if self.engine_ != "batched" and fit.classification:
                # scikit-learn sees the user's labels, not class codes (class weights, pos_label)
                label_sets = fit.classes[label_sets]
            if not fit.cross_validated:  # fitted and scored on all samples, as nilearn
                scores = np.stack([
                    engine.run_without_cv(fit.X, hoods, fit.estimator, labels, inputs.groups,
                                          n_jobs=self.n_jobs, verbose=self.verbose, progress_desc=desc)
                    for labels in label_sets
                ])  # fmt: skip
                return fold_mean(scores) if maps else scores
            first_metric = (lambda s: fold_mean(s[..., 0])) if maps else (lambda s: s[..., 0])
            return compute_scores(
                problem, label_sets, executor, verbose=self.verbose, desc=desc, reduce=first_metric
            )

        return scores_for

    def _set_maps(self, inputs, fold_scores) -> None:
        """The fitted maps, on the process mask's grid, and the masks."""
        func, mask, process_mask = inputs.func, inputs.mask, inputs.process_mask
        self.neighbourhoods_ = inputs.neighbourhoods
        self.sphere_sizes_ = inputs.neighbourhoods.sizes
        self.fold_scores_ = fold_scores
        self.masked_scores_ = fold_mean(fold_scores)
        self.process_mask_ = process_mask
        self.n_elements_ = int(process_mask.sum())
        self.scores_ = np.zeros(process_mask.shape)
        self.scores_[process_mask] = self.masked_scores_
        func_reference = func.slicer[..., 0]
        if inputs.process_affine is func.affine:
            self._reference_img = func_reference
        else:  # the maps live on the process mask's grid
            self._reference_img = nib.Nifti1Image(
                np.zeros(process_mask.shape, np.float32), inputs.process_affine
            )
        self._mask = mask
        if self.mask_img is None:
            self.mask_img_ = scores_to_img(np.ones(int(mask.sum())), mask, func_reference)
        else:  # as nilearn: the mask image given, with its dtype
            self.mask_img_ = check_niimg_3d(deepcopy(self.mask_img))

    @property
    def _estimator_type(self) -> str:
        """ "classifier" or "regressor" as the estimator is one (nilearn's rule), else ""."""
        return estimator_type(self.estimator)

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

    def _permutation_test(self, scores_for, fold_scores, targets, groups, plan, X, hoods,
                          process_mask, affine, classification):  # fmt: skip
        """Null maps from label permutations, then p-values (see :mod:`fastsearchlight.stats`)."""
        from .stats import permutation_inference, permutation_null

        self.permuted_labels_ = self.permutation_info_ = None
        if not self.n_permutations:
            return
        t0 = time.perf_counter()
        # what a checkpoint is checked against (without one, nothing: hashing the data takes
        # about a second on a whole brain)
        key = () if self.checkpoint is None else (
            X.shape, fingerprint(X), targets, groups if groups is not None else "no groups",
            [np.asarray(t) for t in plan.test_indices], hoods.adjacency.indices,
            hoods.adjacency.indptr, repr(self.estimator), repr(self.estimator_args),
            self.scoring, float(self.radius),
        )  # fmt: skip
        observed = fold_mean(fold_scores)
        maps_for = functools.partial(scores_for, maps=True)  # each batch's maps, block by block
        perms, store = permutation_null(
            maps_for, observed, targets, groups, int(self.n_permutations),
            self.random_state, plan=plan if classification else None, permute=self.permute,
            analysis=key, checkpoint=self.checkpoint, batch=max(1, int(self.permutation_batch)),
        )  # fmt: skip
        self.permuted_labels_ = self.classes_[perms.labels] if classification else perms.labels
        self.permutation_info_ = perms.describe()
        result = permutation_inference(
            observed, store.scores, process_mask, affine,
            cluster_alpha=self.cluster_alpha, exhaustive=perms.exhaustive,
            with_tfce=bool(self.tfce), tfce_dh=self.tfce_dh, **self._inference_space(),
        )  # fmt: skip
        for field in fields(result):  # p_values_, p_fwe_, clusters_, tfce_...
            setattr(self, field.name + "_", getattr(result, field.name))
        self.null_scores_ = np.array(store.scores) if self.keep_null else None
        if self.checkpoint is not None and not self.keep_checkpoint:
            store.remove()
        self.timings_["permutations"] = time.perf_counter() - t0

    def __sklearn_clone__(self):
        """An unfitted copy, as ``sklearn.base.clone`` makes it, sharing the dask ``scheduler``.

        A ``Client`` cannot be deep-copied: the copy uses the same one.
        """
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
            raise ValueError(f"The images have shape {func.shape[:3]}, the fitted mask {mask.shape}.")
        X = masked_data(func, mask, dtype=nilearn_dtype(func, self.mask_img is not None), zero_fill=True)
        values = search_light(
            X, None, clone(self.estimator_), self.neighbourhoods_.adjacency.tolil(), None,
            self.scoring, self.cv, engine.effective_n_jobs(self.n_jobs), 0,
        )  # fmt: skip
        out = np.zeros(self.process_mask_.shape)
        out[self.process_mask_] = values
        return np.abs(out)

"""The surface searchlight: discs on the cortical mesh, solved by the same engine as the
volume's spheres (:class:`SurfaceSearchLight`)."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from . import engine
from ._surface_inputs import SurfaceInputs, data_dtype, read_surface_inputs, surface_masked_data
from ._validation import Interval
from .searchlight import SearchLight
from .stats import fold_mean

__all__ = ["SurfaceSearchLight"]


class SurfaceSearchLight(SearchLight):
    """Searchlight decoding on the cortical mesh, all discs and folds solved at once.

    Each vertex of the mask is the centre of a disc: the mask vertices within ``radius`` mm
    of it along the mesh (``distance="geodesic"``) or in a straight line
    (``distance="euclidean"``, scikit-learn's ``radius_neighbors_graph`` on the mesh's
    coordinates, the rule of nilearn's surface searchlight example). Discs stay within
    their hemisphere. The estimators, metrics, executors, permutations and statistics are
    those of :class:`fastsearchlight.SearchLight`; clusters and TFCE connect the vertices
    by the mesh's edges.

    Parameters
    ----------
    mesh : nilearn PolyMesh, str or list of path-like
        The mesh the data are on: a ``PolyMesh`` (one or both hemispheres), the name of
        one nilearn ships (``"fsaverage5"``: the pial surface; ``"fsaverage5:inflated"``
        and the other mesh types of :func:`nilearn.datasets.load_fsaverage`), or the
        surface files of the hemispheres (``hemi-L``/``hemi-R`` or ``lh.``/``rh.`` in the
        names: an fsnative or fsLR mesh; :func:`fastsearchlight.spaces.surface.load_mesh`).
    mask : SurfaceImage, dict or None, default=None
        Vertices whose data enter the discs, and the discs' centres (nonzero: in), e.g. the
        cortex without the medial wall: a ``SurfaceImage`` with one value per vertex or a
        dict ``{"left": ..., "right": ...}`` of arrays or GIfTI files. None: every vertex.
    radius : float, default=10.0
        Disc radius in mm (0: each vertex alone).
    distance : {"geodesic", "euclidean"}, default="geodesic"
        Shortest paths along the mesh's edges (Dijkstra), or straight-line distances.
    estimator, n_jobs, scoring, cv, verbose, random_state, estimator_args, memory_mb, \
n_permutations, permute, tfce, tfce_dh, checkpoint, keep_checkpoint, keep_null, \
cluster_alpha, permutation_batch, backend, scheduler
        As in :class:`fastsearchlight.SearchLight`.

    Attributes
    ----------
    scores_img_ : SurfaceImage
        Mean cross-validated score of the disc centred at each mask vertex (0 elsewhere).
    fold_scores_img_ : SurfaceImage
        Per-fold scores (n_vertices, n_folds) per hemisphere.
    scores_ : ndarray (n_vertices,)
        The scores of every vertex, left hemisphere first.
    masked_scores_ : ndarray (n_spheres,)
        Scores of the mask vertices, left hemisphere first, in vertex order.
    fold_scores_ : ndarray (n_spheres, n_folds)
    process_mask_ : ndarray of bool (n_vertices,)
        The mask, left hemisphere first.
    mask_ : dict
        The mask of each hemisphere.
    mesh_ : PolyMesh
    n_elements_ : int
        Number of discs (mask vertices).
    sphere_sizes_ : ndarray (n_spheres,)
        Vertices in each disc.
    p_values_, p_fwe_, p_values_img_, p_fwe_img_, tfce_, p_fwe_tfce_, p_fwe_tfce_img_, \
clusters_, cluster_labels_img_, permuted_labels_, permutation_info_, null_summary_, \
max_null_, max_cluster_null_, null_scores_, classes_, engine_, timings_
        As in :class:`fastsearchlight.SearchLight`; images are ``SurfaceImage``, cluster
        peaks are mesh coordinates.
    """

    _parameter_constraints: dict = {
        **SearchLight._parameter_constraints,
        "radius": [Interval(Real, 0, None, closed="left")],
        "distance": ["geodesic", "euclidean"],
    }

    def __init__(
        self,
        mesh="fsaverage5",
        mask=None,
        radius=10.0,
        distance="geodesic",
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
        self.mesh = mesh
        self.mask = mask
        self.radius = radius
        self.distance = distance
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

    def fit(self, imgs, y, groups=None):
        """Run the searchlight on the mesh.

        Parameters
        ----------
        imgs : SurfaceImage, list of SurfaceImage or dict
            Surface data with samples on the last axis: a nilearn ``SurfaceImage``, a list
            of them (runs, concatenated), or ``{"left": ..., "right": ...}`` of arrays
            (n_vertices, n_samples) or GIfTI files (a list per hemisphere: runs).
        y : array-like (n_samples,)
        groups : array-like (n_samples,) or None

        Returns
        -------
        self
        """
        return super().fit(imgs, y, groups=groups)

    # the space's hooks of SearchLight.fit
    def _read_inputs(self, imgs, y, groups) -> SurfaceInputs:
        inputs = read_surface_inputs(
            imgs, y, groups, mesh=self.mesh, mask=self.mask, radius=self.radius, distance=self.distance
        )
        self._space = inputs.space
        return inputs

    def _masked_data(self, inputs, *, shared: bool, batched: bool) -> np.ndarray:
        return surface_masked_data(inputs, shared=shared, dtype=np.float64 if batched else data_dtype(inputs))

    def _inference_space(self) -> dict:
        return {"graph": self._space}

    def _set_maps(self, inputs, fold_scores) -> None:
        space = inputs.space
        self.neighbourhoods_ = inputs.neighbourhoods
        self.sphere_sizes_ = inputs.neighbourhoods.sizes
        self.fold_scores_ = fold_scores
        self.masked_scores_ = fold_mean(fold_scores)
        self.mesh_ = inputs.mesh
        self.mask_ = dict(space.masks)
        self.process_mask_ = np.concatenate([space.masks[h] for h in space.hemispheres])
        self.n_elements_ = int(self.process_mask_.sum())
        self.scores_ = np.concatenate(list(space.split(self.masked_scores_).values()))

    def _map_img(self, values, fill: float = 0.0):
        from nilearn.surface import SurfaceImage

        return SurfaceImage(self.mesh_, self._space.split(values, fill))

    def transform(self, imgs):
        """Apply the searchlight's estimator to new surface data, as ``SearchLight.transform``.

        Parameters
        ----------
        imgs : SurfaceImage, list of SurfaceImage or dict

        Returns
        -------
        ndarray (n_vertices,)
            Left hemisphere first; 0 off the mask.
        """
        from nilearn.decoding.searchlight import search_light

        from ._surface_inputs import read_surface_data

        check_is_fitted(self)
        data = read_surface_data(imgs)
        for hemi in self._space.hemispheres:
            if hemi not in data or data[hemi].shape[0] != self._space.n_vertices[hemi]:
                raise ValueError(f"the {hemi} hemisphere data do not match the fitted mesh.")
        X = np.concatenate([data[h][self._space.masks[h]] for h in self._space.hemispheres]).T
        values = search_light(
            X, None, clone(self.estimator_), self.neighbourhoods_.adjacency.tolil(), None,
            self.scoring, self.cv, engine.effective_n_jobs(self.n_jobs), 0,
        )  # fmt: skip
        out = np.zeros(self.process_mask_.shape)
        out[self.process_mask_] = values
        return np.abs(out)

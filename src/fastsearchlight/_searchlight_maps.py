"""The fitted searchlight's maps as images, and how a fit reads its space's inputs
(mixins of :class:`SearchLight`; another space, such as a mesh, overrides them)."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._fit_inputs import read_inputs
from .images import masked_data, nilearn_dtype, scores_to_img

__all__ = ["MapsMixin", "VolumeInputsMixin"]


class VolumeInputsMixin:
    """What a fit reads from a volume: images, masks, spheres, the masked data, and how
    clusters connect the spheres (the process mask's grid)."""

    def _read_inputs(self, imgs, y, groups):
        """The images, targets, masks and spheres of the fit."""
        return read_inputs(
            imgs, y, groups, mask_img=self.mask_img, process_mask_img=self.process_mask_img,
            radius=self.radius,
        )  # fmt: skip

    def _masked_data(self, inputs, *, shared: bool, batched: bool) -> np.ndarray:
        """The data of the mask, (n_samples, n_mask_voxels): float64 for the batched engine,
        the dtype nilearn hands its estimator for the generic one."""
        dtype = np.float64 if batched else nilearn_dtype(inputs.func, self.mask_img is not None)
        return masked_data(inputs.func, inputs.mask, shared=shared, dtype=dtype, zero_fill=True)

    def _inference_space(self) -> dict:
        """Extra arguments of ``permutation_inference``: none on the process mask's grid."""
        return {}


class MapsMixin:
    """Images of the fitted maps, on the process mask's grid (``_reference_img``); a space
    with other images (a mesh's) overrides :meth:`_map_img`."""

    def _map_img(self, values, fill: float = 0.0):
        """``values`` (one per sphere, first axis) as an image, ``fill`` elsewhere."""
        return scores_to_img(values, self.process_mask_, self._reference_img, fill=fill)

    def _volume_img(self, values):
        check_is_fitted(self)
        return self._map_img(values)

    @property
    def p_values_img_(self):
        """Voxel-wise (uncorrected) permutation p-values as an image (1 outside the map)."""
        self._check_permuted()
        return self._map_img(self.p_values_, fill=1.0)

    @property
    def p_fwe_img_(self):
        """Family-wise corrected p-values (maximum statistic) as an image (1 outside the map)."""
        self._check_permuted()
        return self._map_img(self.p_fwe_, fill=1.0)

    @property
    def p_fwe_tfce_img_(self):
        """Family-wise corrected TFCE p-values as an image (1 outside the map)."""
        self._check_permuted()
        if self.p_fwe_tfce_ is None:
            raise AttributeError("TFCE was not computed: set tfce=True.")
        return self._map_img(self.p_fwe_tfce_, fill=1.0)

    @property
    def cluster_labels_img_(self):
        """Clusters above the cluster-forming threshold (0: none), as an image."""
        self._check_permuted()
        return self._map_img(self.cluster_labels_.astype(float))

    def _check_permuted(self):
        check_is_fitted(self)
        if getattr(self, "permuted_labels_", None) is None:
            raise AttributeError("No permutation test was run: set n_permutations > 0.")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "scores_")

    @property
    def scores_img_(self):
        """Mean scores as a 3D image on the functional images' grid."""
        check_is_fitted(self)
        return self._map_img(self.masked_scores_)

    @property
    def fold_scores_img_(self):
        """Per-fold scores as a 4D image (last axis: folds)."""
        check_is_fitted(self)
        return self._map_img(self.fold_scores_)

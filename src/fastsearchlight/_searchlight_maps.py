"""The fitted searchlight's maps as images (a mixin of :class:`SearchLight`)."""

from __future__ import annotations

from sklearn.utils.validation import check_is_fitted

from .images import scores_to_img

__all__ = ["MapsMixin"]


class MapsMixin:
    """Images of the fitted maps, on the process mask's grid (``_reference_img``)."""

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

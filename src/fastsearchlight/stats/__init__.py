"""Permutation statistics for searchlight maps (Stelzer, Chen & Turner 2013, NeuroImage 65).

- :func:`make_permutations`: permuted label vectors, the same for every sphere. Labels are
  exchanged among whole blocks of a block design (or single samples) within runs; when the
  design allows few arrangements, all of them are enumerated and the test is exact.
- :func:`null_maps`: the permutation loop, filling a :class:`NullStore`: the null score
  maps, one row per permutation, in memory or in a memory-mapped checkpoint file that lets
  an interrupted run resume where it stopped. They are kept in float64, the observed
  scores' precision, so that a null score equal to the observed one is counted as such.
- :func:`permutation_inference`: voxel-wise p-values, family-wise error (FWE) corrected
  p-values by the maximum statistic over spheres, cluster-level inference with a
  cluster-forming threshold taken from the pooled null distribution and a cluster-size null
  made of the largest cluster of each permutation, and :func:`tfce` (:class:`TfceGraph`: the
  same over one graph for many maps).
- The group level: :func:`sign_flip_test` (one-sample t, sign flips, exact with few
  subjects) and :func:`prevalence_inference` (Allefeld, Goergen & Haynes 2016).
"""

from ._inference import (
    SCORE_TOL,
    PermutationResult,
    clusters_above,
    permutation_inference,
)
from ._null_maps import fold_mean, null_maps, permutation_null
from ._null_store import NULL_DTYPE, NullStore, fingerprint
from ._permutations import (
    PERMUTE_SCHEMES,
    LabelPermutations,
    exchangeability_blocks,
    make_permutations,
)
from ._prevalence import PrevalenceResult, gamma0_bound, prevalence_inference, prevalence_p
from ._sign_flips import SignFlipResult, one_sample_t, sign_flip_test, sign_patterns
from ._tfce import TfceGraph, tfce

__all__ = [
    "NULL_DTYPE",
    "PERMUTE_SCHEMES",
    "SCORE_TOL",
    "LabelPermutations",
    "NullStore",
    "PermutationResult",
    "PrevalenceResult",
    "SignFlipResult",
    "TfceGraph",
    "clusters_above",
    "exchangeability_blocks",
    "fingerprint",
    "fold_mean",
    "gamma0_bound",
    "make_permutations",
    "null_maps",
    "one_sample_t",
    "permutation_inference",
    "permutation_null",
    "prevalence_inference",
    "prevalence_p",
    "sign_flip_test",
    "sign_patterns",
    "tfce",
]

"""Representational similarity analysis searchlight (:class:`RSASearchLight`).

- :mod:`._design`: conditions, runs and the RDM's pairs, checked against the method;
- :mod:`.noise`: each sphere's noise precision (rsatoolbox's ``prec_from_measurements``);
- :mod:`.distances`: the RDMs of blocks of equal-size spheres (rsatoolbox's ``calc_rdm``);
- :mod:`.evaluation`: model fit (rsatoolbox's ``rdm.compare``);
- :mod:`.permutation`: the permutation test of model fit, the distances reused;
- :mod:`.estimator`: the estimator.

The estimator is imported on first use, so that worker processes, which unpickle the
block function of :mod:`.distances` only, start without scikit-learn and nibabel.
"""

from ._design import METHODS, NOISE, pair_indices
from .evaluation import COMPARISONS

__all__ = ["COMPARISONS", "METHODS", "NOISE", "ModelTest", "RSASearchLight", "pair_indices"]


def __getattr__(name: str):
    if name == "RSASearchLight":
        from .estimator import RSASearchLight

        return RSASearchLight
    if name == "ModelTest":
        from .permutation import ModelTest

        return ModelTest
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The group level's sign-flipping test (see :mod:`fastsearchlight.stats`)."""

from .stats._sign_flips import (
    CLUSTER_STRUCTURE,
    SignFlipResult,
    one_sample_t,
    sign_flip_test,
    sign_patterns,
)

__all__ = ["CLUSTER_STRUCTURE", "SignFlipResult", "one_sample_t", "sign_flip_test", "sign_patterns"]

"""Versions of fastsearchlight and of the libraries behind its results."""

from __future__ import annotations

import platform


def package_version() -> str:
    """fastsearchlight's version ("" if it cannot be read)."""
    try:
        from . import __version__
    except ImportError:  # pragma: no cover - the package always defines it
        return ""
    return str(__version__)


def software_versions() -> dict[str, str]:
    """The versions of Python, fastsearchlight and the libraries it computes with."""
    import nibabel as nib
    import nilearn
    import numpy as np
    import scipy
    import sklearn

    from . import __version__

    return {
        "fastsearchlight": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "nilearn": nilearn.__version__,
        "nibabel": nib.__version__,
    }

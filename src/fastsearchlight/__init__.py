"""fastsearchlight: searchlight decoding of fMRI data, all spheres and folds at once."""

from .searchlight import SearchLight

__version__ = "0.1.0"

__all__ = ["SearchLight", "__version__"]

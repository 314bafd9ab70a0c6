"""fastsearchlight: searchlight decoding of fMRI data, all spheres and folds at once."""

__version__ = "0.1.0"

__all__ = ["RSASearchLight", "SearchLight", "SurfaceSearchLight", "search_light", "__version__"]


def __getattr__(name: str):
    # imported on first use, so that worker processes, which unpickle functions of the
    # engine and estimators only, start without importing scikit-learn and nilearn
    if name == "SearchLight":
        from .searchlight import SearchLight

        return SearchLight
    if name == "SurfaceSearchLight":
        from .surface_searchlight import SurfaceSearchLight

        return SurfaceSearchLight
    if name == "search_light":
        from .functional import search_light

        return search_light
    if name == "RSASearchLight":
        from .rsa import RSASearchLight

        return RSASearchLight
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

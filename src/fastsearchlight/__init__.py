"""fastsearchlight: searchlight decoding of fMRI data, all spheres and folds at once."""

__version__ = "0.1.0"

"""Score maps read for the report: 3D images, their data made finite."""

from __future__ import annotations

import numpy as np


def _load_3d(img, name: str):
    """A Niimg-like input as a 3D image, or a TypeError/ValueError naming the argument."""
    from nilearn.image import check_niimg_3d

    from ..images import read_img

    img = read_img(img, name)
    try:
        return check_niimg_3d(img)
    except TypeError as exc:  # nilearn's DimensionError is a TypeError
        raise TypeError(f"{name} must be a 3D image: {exc}") from None
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise ValueError(f"Could not read {name}: {exc}") from None


def _finite_data(img) -> np.ndarray:
    """The image data as float64 with NaN and -inf set to 0 and +inf to the largest value."""
    data = np.asarray(img.dataobj, dtype=np.float64).copy()
    finite = np.isfinite(data)
    if not finite.all():
        top = data[finite].max() if finite.any() else 0.0
        data[np.isposinf(data)] = top
        data[~np.isfinite(data)] = 0.0
    return data

"""Input images: loading, checking and masking, with errors that name the problem."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from nilearn.image import check_niimg_3d, check_niimg_4d, new_img_like

from .io import InputError

AFFINE_TOL = 1e-4


def read_img(source, what: str):
    """An image file read whole into memory, or an :class:`InputError` naming the file.

    Every image given by the user goes through here: a missing file, a file that is not
    NIfTI, or a truncated or corrupted one (caught on reading, not later in the middle of
    the analysis) is one error that names the file. Images in memory (and anything that
    is not a path) are returned as they are.
    """
    if not isinstance(source, (str, Path)):
        return source
    import zlib

    import nibabel as nib

    path = Path(source)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, ValueError, TypeError, zlib.error, nib.filebasedimages.ImageFileError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"could not read {what} {path} ({reason}): is it a complete NIfTI file?") from None
    return img.__class__(data, img.affine, img.header)


def load_func(imgs):
    """A 4D Niimg-like input as a 4D image, or a ValueError/TypeError saying why not."""
    try:
        img = check_niimg_4d(read_img(imgs, "functional images"))
    except TypeError as exc:  # nilearn's DimensionError is a TypeError
        raise TypeError(f"The functional images must be 4D (x, y, z, volumes): {exc}") from None
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise ValueError(f"Could not read the functional images: {exc}") from None
    return img


def _read_mask_img(mask, name: str):
    try:
        return check_niimg_3d(read_img(mask, name))
    except TypeError as exc:
        raise TypeError(f"{name} must be a 3D image: {exc}") from None
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise ValueError(f"Could not read {name}: {exc}") from None


def on_grid(img, func_img) -> bool:
    """Whether a 3D image lies on the functional images' grid (shape and affine)."""
    return img.shape[:3] == func_img.shape[:3] and np.allclose(img.affine, func_img.affine, atol=AFFINE_TOL)


def load_mask_on_grid(mask, name: str, func_img) -> np.ndarray:
    """A 3D mask brought onto the functional images' grid, as nilearn's ``SearchLight`` does:
    resampled there with nearest-neighbour interpolation when it lies on another grid."""
    from nilearn.image import resample_img

    img = _read_mask_img(mask, name)
    if not on_grid(img, func_img):
        img = resample_img(
            img, target_affine=func_img.affine, target_shape=func_img.shape[:3],
            interpolation="nearest", force_resample=True, copy_header=True,
        )  # fmt: skip
    return _mask_data(img, name)


def load_mask_own_grid(mask, name: str):
    """A 3D mask on its own grid: its boolean data and its affine (a process mask's voxels
    are the spheres' centres, placed by their world coordinates)."""
    img = _read_mask_img(mask, name)
    return _mask_data(img, name), img.affine


def _mask_data(img, name: str) -> np.ndarray:
    data = np.asanyarray(img.dataobj)
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    data = data != 0
    if not data.any():
        raise ValueError(f"{name} is empty: it selects no voxel.")
    return data


def load_mask(mask, name: str, func_img):
    """A 3D mask on the functional images' grid, as a boolean array.

    Raises
    ------
    ValueError
        If the mask is not 3D, its shape or affine differ from the functional images', or
        it selects no voxel.
    """
    img = _read_mask_img(mask, name)
    if img.shape[:3] != func_img.shape[:3]:
        raise ValueError(
            f"{name} has shape {img.shape[:3]} but the functional images have shape "
            f"{func_img.shape[:3]}: resample the mask onto the functional grid first "
            "(nilearn.image.resample_to_img(mask, func, interpolation='nearest'))."
        )
    if not np.allclose(img.affine, func_img.affine, atol=AFFINE_TOL):
        raise ValueError(
            f"{name} and the functional images have different affines (voxel-to-world "
            "transforms): resample the mask onto the functional grid first "
            "(nilearn.image.resample_to_img(mask, func, interpolation='nearest'))."
        )
    return _mask_data(img, name)


def masked_data(
    func_img, mask: np.ndarray, *, shared: bool = False, dtype=np.float64, zero_fill: bool = False
) -> np.ndarray:
    """The functional data at the mask voxels, shape (n_volumes, n_mask_voxels).

    The array is the transpose of a C-contiguous (n_mask_voxels, n_volumes) array (voxel
    by voxel, the layout the engine reads).

    Parameters
    ----------
    func_img : Niimg-like, 4D
    mask : ndarray of bool, 3D
    shared : bool
        Store the data in a memory-mapped temporary file (removed when the array is
        garbage collected), which worker processes then map by name instead of receiving
        a copy.
    dtype : dtype, default=float64
        Data type of the result (see :func:`nilearn_dtype` for the one nilearn uses).
    zero_fill : bool, default=False
        Replace NaN and infinite values by zeros, with a warning (as nilearn does), instead
        of raising.

    Raises
    ------
    ValueError
        If a masked voxel holds NaN or infinite values and ``zero_fill`` is False.
    """
    data = np.asanyarray(func_img.dataobj)
    n_voxels, n_volumes = int(mask.sum()), data.shape[3]
    from ._huge_pages import empty_small_pages
    from .shared import shared_empty

    if shared:
        out = shared_empty((n_voxels, n_volumes), dtype)
    else:
        out = empty_small_pages((n_voxels, n_volumes), dtype)
    if data.flags.f_contiguous and not data.flags.c_contiguous:
        # a few volumes at a time: each volume is contiguous in a Fortran-ordered image
        # (NIfTI's layout), where a voxel's time series is scattered across the whole
        # array; the mask voxels (in the mask's C order) are taken from each volume by
        # position into a small buffer, so the only large new array is the output
        positions = np.ravel_multi_index(np.nonzero(mask), mask.shape, order="F")
        volumes = data.reshape(-1, n_volumes, order="F")  # a view: one column per volume
        step = _VOLUMES_PER_READ
        buffer = np.empty((min(step, n_volumes), n_voxels), dtype=data.dtype)
        bad = np.zeros(n_voxels, dtype=bool)
        for t0 in range(0, n_volumes, step):
            chunk = buffer[: min(step, n_volumes - t0)]
            for t in range(len(chunk)):
                np.take(volumes[:, t0 + t], positions, out=chunk[t])
            bad |= ~np.isfinite(chunk).all(axis=0)
            out[:, t0 : t0 + len(chunk)] = chunk.T
    else:
        out[...] = data[mask]
        bad = ~np.isfinite(out).all(axis=1)
    if bad.any() and zero_fill:
        rows = np.flatnonzero(bad)
        block = out[rows]
        block[~np.isfinite(block)] = 0
        out[rows] = block
        warnings.warn(
            f"The functional images hold NaN or infinite values in {rows.size} voxel(s) of the "
            "mask: they are replaced with zeros.",
            UserWarning,
            stacklevel=3,
        )
    elif bad.any():
        raise ValueError(
            f"The functional images hold NaN or infinite values in {int(bad.sum())} voxel(s) "
            "of the mask: remove them from the mask or clean the data."
        )
    return out.T  # (volumes, voxels)


def nilearn_dtype(func_img, masked: bool = True) -> np.dtype:
    """The dtype of the masked data nilearn's ``SearchLight`` hands its estimator: the
    images' own floating-point type (float32 for float32 images), float32 for integer
    images under a mask, and the images' dtype unchanged without a mask."""
    dtype = np.asanyarray(func_img.dataobj[..., :1]).dtype
    if not masked or dtype.kind == "f":
        return dtype
    return np.dtype(np.float32)


#: volumes read at a time by :func:`masked_data` (the buffer of a 44,000-voxel mask in
#: float32 is 2.8 MB)
_VOLUMES_PER_READ = 16


def scores_to_img(values: np.ndarray, mask: np.ndarray, reference_img, fill: float = 0.0):
    """A 3D (or 4D, for 2D ``values``) image with ``values`` at the mask voxels."""
    values = np.asarray(values)
    shape = mask.shape + values.shape[1:]
    out = np.full(shape, fill, dtype=np.float64)
    out[mask] = values
    return new_img_like(reference_img, out, affine=reference_img.affine, copy_header=False)

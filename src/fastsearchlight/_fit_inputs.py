"""What ``SearchLight.fit`` reads and checks before computing: targets, images, masks,
spheres; the estimator type nilearn reports."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .estimators import NAMES
from .images import load_func, load_mask_on_grid, load_mask_own_grid
from .neighbourhoods import Neighbourhoods, build_neighbourhoods

__all__ = ["Inputs", "check_targets", "estimator_type", "read_inputs"]


def check_targets(y, n_volumes: int, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        y = np.squeeze(y)
        if y.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {np.shape(y)}.")
    if len(y) != n_volumes:
        raise ValueError(
            f"{name} has {len(y)} entries but the functional images have {n_volumes} volumes: "
            "give exactly one label per volume."
        )
    if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    if y.dtype.kind == "O" and any(v is None for v in y):
        raise ValueError(f"{name} contains missing values (None).")
    return y


def check_radius_fits(radius: float, func) -> None:
    """A radius no larger than the image's diagonal (beyond it, every sphere would hold the
    whole mask, and the sphere stencil would not fit in memory)."""
    import nibabel as nib

    corners = np.array(np.meshgrid(*[[0, n - 1] for n in func.shape[:3]])).reshape(3, -1).T
    xyz = nib.affines.apply_affine(func.affine, corners)
    extent = float(np.max(np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)))
    voxel = float(np.min(np.linalg.norm(func.affine[:3, :3], axis=0)))
    if radius > extent + voxel:
        raise ValueError(
            f"radius {radius:g} mm exceeds the image's extent ({extent:.1f} mm across): every "
            f"sphere would hold the whole mask; give a radius of at most {extent + voxel:.1f} mm."
        )


#: nilearn's regressor names
_REGRESSOR_NAMES = ("ridge", "ridge_regressor", "lasso", "lasso_regressor", "svr", "dummy_regressor")


@dataclass
class Inputs:
    """The images, targets, masks and spheres of a fit."""

    func: object
    y: np.ndarray
    groups: np.ndarray | None
    mask: np.ndarray  # on the functional grid
    process_mask: np.ndarray  # on its own grid
    process_affine: np.ndarray  # ``func.affine`` itself when the process mask is on that grid
    neighbourhoods: Neighbourhoods


def read_inputs(imgs, y, groups, *, mask_img, process_mask_img, radius) -> Inputs:
    """Check the inputs; read the masks and build the spheres."""
    func = load_func(imgs)
    check_radius_fits(radius, func)
    n_volumes = func.shape[3]
    y = check_targets(y, n_volumes)
    if groups is not None:
        groups = check_targets(groups, n_volumes, name="groups")
    # as nilearn: the mask is resampled onto the functional grid (nearest neighbour);
    # spheres are centred at the process mask's voxels, by world coordinates, on the
    # process mask's own grid (by default the mask as given), where the maps are made
    if mask_img is None:
        mask = np.ones(func.shape[:3], dtype=bool)
    else:
        mask = load_mask_on_grid(mask_img, "mask_img", func)
    if process_mask_img is not None:
        process_mask, process_affine = load_mask_own_grid(process_mask_img, "process_mask_img")
    elif mask_img is not None:
        process_mask, process_affine = load_mask_own_grid(mask_img, "mask_img")
    else:
        process_mask, process_affine = mask, func.affine
    if process_mask.shape == func.shape[:3] and np.allclose(process_affine, func.affine, atol=1e-4):
        process_affine = func.affine  # the functional grid (the spheres from a stencil)
    hoods = build_neighbourhoods(mask, func.affine, process_mask, process_affine, float(radius))
    return Inputs(func, y, groups, mask, process_mask, process_affine, hoods)


def estimator_type(estimator) -> str:
    """ "classifier" or "regressor" as the estimator is one (nilearn's rule), else ""."""
    if isinstance(estimator, str):
        if estimator in _REGRESSOR_NAMES:
            return "regressor"
        return "classifier" if estimator in NAMES else ""
    try:
        return getattr(estimator.__sklearn_tags__(), "estimator_type", None) or ""
    except AttributeError:
        return getattr(estimator, "_estimator_type", "") or ""

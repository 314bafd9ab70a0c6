"""The study's inputs: functional images, labels, masks and the splitter, read and checked;
and the univariate F-test that the searchlight map is compared with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .images import read_img
from .io import InputError, read_labels


def parse_cv(spec: str, has_groups: bool = False):
    """A splitter from a short spec: ``auto``, ``kfold:4``, ``stratified:5``, ``logo``,
    ``groupkfold:3``.

    ``kfold`` and ``stratified`` do not shuffle (folds follow acquisition order, as
    scikit-learn's defaults); ``logo`` leaves one run out; ``auto`` is ``logo`` when the
    runs are known (``has_groups``), else ``kfold:4``.
    """
    from sklearn.model_selection import GroupKFold, KFold, LeaveOneGroupOut, StratifiedKFold

    name, _, arg = str(spec).partition(":")
    name = name.strip().lower()
    if name == "auto" and not arg:
        return LeaveOneGroupOut() if has_groups else KFold(4)
    makers = {"kfold": KFold, "stratified": StratifiedKFold, "groupkfold": GroupKFold}
    if name in ("logo", "leave-one-run-out", "loro"):
        if arg:
            raise InputError(f"cv {spec!r}: logo takes no number")
        return LeaveOneGroupOut()
    if name not in makers:
        raise InputError(f"unknown cv {spec!r}; use auto, kfold:N, stratified:N, groupkfold:N or logo")
    try:
        k = int(arg) if arg else 5
    except ValueError:
        raise InputError(f"cv {spec!r}: the number of folds must be an integer") from None
    if k < 2:
        raise InputError(f"cv {spec!r}: at least 2 folds")
    return makers[name](k)


def chance_level(scoring: str, n_classes: int) -> float:
    """Expected score of a classifier that knows nothing."""
    return 1.0 / n_classes if scoring in (None, "accuracy") else 0.5


def f_test_map(func_img, mask_img, y, groups):
    """-log10 p of a univariate F-test per voxel, data standardised per run, capped at 10.

    As nilearn's classic searchlight example: ``NiftiMasker(runs=..., standardize=...)`` then
    scikit-learn's ``f_classif``.
    """
    from nilearn.maskers import NiftiMasker
    from sklearn.feature_selection import f_classif

    masker = NiftiMasker(mask_img=mask_img, runs=groups, standardize="zscore_sample")
    X = masker.fit_transform(func_img)
    with np.errstate(divide="ignore", invalid="ignore"):
        _, p = f_classif(X, y)
        logp = -np.log10(p)
    logp = np.nan_to_num(logp, nan=0.0, posinf=10.0)
    logp = np.minimum(logp, 10.0)
    return masker.inverse_transform(logp)


def _load_mask(img, func_img, name: str, path):
    """A mask image, required to be on the functional images' grid."""
    from nilearn.image import check_niimg_3d

    try:
        img = check_niimg_3d(img)
    except (ValueError, TypeError) as exc:
        raise InputError(f"could not read {name} {path}: {exc}") from None
    if img.shape[:3] != func_img.shape[:3] or not np.allclose(img.affine, func_img.affine, atol=1e-4):
        raise InputError(
            f"{name} {Path(str(path)).name} has shape {img.shape[:3]} and the functional "
            f"images {func_img.shape[:3]} (or their affines differ): the mask must be on the "
            "functional grid"
        )
    return img


@dataclass
class StudyInputs:
    """What a study analyses: the volumes of the chosen conditions, their labels and runs,
    the masks on their grid, and the splitter."""

    func_img: Any  #: the 4D images as read (all volumes)
    func_sel: Any  #: the volumes analysed, float32
    mask_img: Any
    process_img: Any
    keep: np.ndarray  #: which volumes are analysed
    y: np.ndarray
    groups: np.ndarray | None
    cv: Any
    background: Any = None  #: the mean of the analysed volumes before cleaning (figures' background)
    details: dict = field(default_factory=dict)  #: facts for the summary (cleaning, samples)


def _labels(table, config, n_volumes: int):
    """Each volume's label and run (all volumes)."""
    if len(table) != n_volumes:
        hint = ""
        if {"onset", "duration"} <= set(table.columns):
            hint = (
                ": this looks like a BIDS events file (onset, duration); give the dataset with "
                "--bids DIR --subject S --task T, or a table of one row per volume"
            )
        raise InputError(
            f"labels table has {len(table)} rows but the functional images have {n_volumes} volumes{hint}"
        )
    labels = table[config.label_column].astype(str).to_numpy().astype(object)
    runs = table[config.group_column].to_numpy() if config.group_column is not None else None
    return labels, runs


def _masks(mask_src, process_src, func_sel, mask, process_mask, resample_mask: bool):
    """The mask and process mask on the grid of the analysed volumes."""
    from nilearn.image import resample_to_img

    if resample_mask:
        load = lambda p: resample_to_img(  # noqa: E731
            str(p) if isinstance(p, Path) else p, func_sel, interpolation="nearest",
            force_resample=True, copy_header=True,
        )  # fmt: skip
        return load(mask_src), load(process_src) if process_mask is not None else None
    mask_img = _load_mask(mask_src, func_sel, "mask", mask)
    if process_mask is None:
        return mask_img, None
    return mask_img, _load_mask(process_src, func_sel, "process mask", process_mask)


def read_inputs(func, labels, mask, process_mask, config, resample_mask: bool) -> StudyInputs:
    """Read and check a study's inputs (see :func:`fastsearchlight.study.run_study`)."""
    from ._assemble import assemble_inputs, header_t_r
    from .cleaning import read_confounds_table

    func_img = read_img(func, "functional images")
    if len(func_img.shape) != 4:
        raise InputError(f"functional images must be 4D, got shape {func_img.shape}")
    mask_src = read_img(mask, "mask")
    process_src = read_img(process_mask, "process mask") if process_mask is not None else None
    table = read_labels(labels, label_column=config.label_column, group_column=config.group_column)
    y_all, runs = _labels(table, config, func_img.shape[3])
    confounds = read_confounds_table(config.confounds) if getattr(config, "confounds", None) else None
    masks = lambda ref: _masks(mask_src, process_src, ref, mask, process_mask, resample_mask)  # noqa: E731
    return assemble_inputs(
        func_img, y_all, runs, masks, config, confounds=confounds,
        confounds_name=str(config.confounds) if confounds is not None else None, t_r=header_t_r(func_img),
    )  # fmt: skip

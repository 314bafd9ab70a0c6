"""The RSA study from one command: RDMs, model maps, a permutation test, figures, report."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from ..io import (
    InputError,
    output_folder,
    read_labels,
    save_img,
    save_json,
    select_conditions,
    staged_outputs,
)

__all__ = ["MODEL_FIT_DESCRIPTION", "read_models", "run_rsa_study"]

#: the NIfTI description of a model-fit map (``fastsearchlight group`` tests these against 0)
MODEL_FIT_DESCRIPTION = b"fastsearchlight model fit"


def read_models(path, conditions: np.ndarray) -> dict[str, np.ndarray]:
    """Model RDMs from a ``.npz`` file: one array per model (a vector of the pairs in
    ``squareform`` order, or a square RDM), the conditions in sorted order, or in the order
    of an optional ``conditions`` array of the file.

    Returns
    -------
    dict
        Model name -> RDM vector in the order of the sorted ``conditions``.
    """
    from .evaluation import check_models

    path = Path(path)
    if not path.is_file():
        raise InputError(f"models file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise InputError(
            f"could not read models file {path} ({exc}): is it a .npz of numeric arrays?"
        ) from None
    order = arrays.pop("conditions", None)
    n = len(conditions)
    if order is not None:
        order = order.astype(str)
        if sorted(order.tolist()) != sorted(conditions.tolist()):
            raise InputError(
                f"the models' conditions {order.tolist()} are not the data's {conditions.tolist()}"
            )
        where = np.searchsorted(conditions, order)  # position of each file condition in sorted order
    if not arrays:
        raise InputError(f"models file {path} holds no model")
    models = {}
    rows, cols = np.triu_indices(n, 1)
    for name, values in arrays.items():
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
            raise InputError(f"model name {name!r} in {path.name}: use letters, digits, '_' and '-' only")
        try:
            vector = check_models(values, n * (n - 1) // 2)[0]
        except ValueError as exc:
            raise InputError(f"model {name!r}: {exc}") from None
        if order is not None:  # to a square RDM in the file's order, then to sorted order
            square = np.zeros((n, n))
            square[rows, cols] = vector
            square = square + square.T
            sorted_square = np.empty_like(square)
            sorted_square[np.ix_(where, where)] = square
            vector = sorted_square[rows, cols]
        models[name] = vector
    return models


def _output_names(models: dict, permutations: int) -> list[str]:
    names = ["rdms.npy", "rdms.json", "process_mask.nii.gz", "best_rdm.png", "report.html", "summary.json"]
    for name in models:
        names += [f"model_{name}.nii.gz", f"model_{name}.png"]
        if permutations:
            names += [f"p_fwe_{name}.nii.gz", f"p_uncorrected_{name}.nii.gz"]
    return names


def _read_data(func, labels, conditions, label_column, run_column):
    """The selected volumes, their conditions and runs."""
    from nilearn.image import index_img

    from ..images import load_func, read_img

    table = read_labels(labels, label_column=label_column, group_column=run_column)
    keep = select_conditions(table, conditions, label_column=label_column)
    img = load_func(read_img(func, "functional images"))
    if img.shape[3] != len(table):
        raise InputError(
            f"the labels table has {len(table)} rows but the functional images {img.shape[3]} volumes"
        )
    if not keep.all():
        img = index_img(img, np.flatnonzero(keep))
    y = table[label_column].astype(str).to_numpy()[keep]
    runs = None if run_column is None else table[run_column].to_numpy()[keep]
    return img, y, runs


def run_rsa_study(func, labels, mask, out, *, models, conditions=None, process_mask=None,
                  label_column="labels", run_column="chunks", method="crossnobis", noise=None,
                  radius=5.6, comparison="spearman", permutations=0, seed=0, n_jobs=1,
                  memory_mb=512.0, force=False, quiet=False) -> dict:  # fmt: skip
    """Run an RSA searchlight study into the folder ``out`` (see ``fastsearchlight rsa -h``).

    Returns
    -------
    dict
        The study summary (also ``summary.json``).
    """
    from .estimator import RSASearchLight

    t_start = time.perf_counter()
    img, y, runs = _read_data(func, labels, conditions, label_column, run_column)
    model_rdms = read_models(models, np.unique(y))
    sl = RSASearchLight(mask, process_mask_img=process_mask, radius=radius, method=method, noise=noise,
                        n_jobs=n_jobs, memory_mb=memory_mb, verbose=0 if quiet else 1)  # fmt: skip
    names = _output_names(model_rdms, permutations)
    with output_folder(out, names, force=force) as out_dir, staged_outputs(out_dir, names) as staging:
        sl.fit(img, y, runs)
        stack = np.stack(list(model_rdms.values()))
        fits = sl.model_fit(stack, comparison)
        test = sl.permutation_test(stack, comparison, permutations, seed) if permutations else None
        summary = _summary(sl, model_rdms, fits, test, img, dict(
            method=method, noise=noise, radius=radius, comparison=comparison, permutations=permutations,
            seed=seed, conditions=sl.conditions_.tolist(), models=list(model_rdms)))  # fmt: skip
        _write_outputs(staging, sl, model_rdms, fits, test, img, summary)
        summary["timings"]["total"] = time.perf_counter() - t_start
        save_json(summary, staging / "summary.json")
        _write_report(staging, summary, model_rdms)
    return summary


def _summary(sl, models, fits, test, img, parameters) -> dict:
    from nibabel.affines import apply_affine

    from .._versions import software_versions

    results = {}
    for k, name in enumerate(models):
        best = int(np.nanargmax(fits[k]))
        entry = {
            "max fit": float(fits[k, best]),
            "peak position (mm)": [round(float(v), 2) for v in apply_affine(sl._reference_img.affine, sl.neighbourhoods_.seeds_ijk[best])],
            "mean fit": float(np.nanmean(fits[k])),
        }  # fmt: skip
        if test is not None:
            entry["spheres with FWE p < 0.05"] = int(np.sum(test.p_fwe[k] < 0.05))
            entry["smallest FWE p"] = float(np.nanmin(test.p_fwe[k]))
        results[name] = entry
    data = {"volumes": int(img.shape[3]), "spheres": int(sl.n_elements_), "conditions": len(sl.conditions_),
            "runs": None if sl.runs_ is None else len(sl.runs_),
            "mean sphere size": float(np.mean(sl.sphere_sizes_))}  # fmt: skip
    if test is not None:
        data["permutations"] = f"{len(test.permutations)} relabellings of the conditions" + (
            " (all of them: exact test)" if test.exhaustive else ""
        )
    timings = {k: round(float(v), 3) for k, v in sl.timings_.items()}
    return {"results": results, "parameters": parameters, "data": data, "timings": timings,
            "software": software_versions()}  # fmt: skip


def _fit_img(sl, values):
    img = sl.to_img(values)
    img.header["descrip"] = MODEL_FIT_DESCRIPTION
    return img


def _write_outputs(staging: Path, sl, models, fits, test, img, summary) -> None:
    from nilearn.image import mean_img

    from ..report import plot_searchlight
    from ._figures import plot_rdm

    np.save(staging / "rdms.npy", sl.rdms_)
    conds = sl.conditions_.tolist()
    save_json({
        "rows": "spheres centred at the voxels of process_mask.nii.gz, in C order",
        "conditions": conds, "pairs": [[conds[i], conds[j]] for i, j in sl.pairs_],
        "method": summary["parameters"]["method"], "noise": summary["parameters"]["noise"],
    }, staging / "rdms.json")  # fmt: skip
    save_img(sl.to_img(np.ones(sl.n_elements_)), staging / "process_mask.nii.gz")
    mean = mean_img(img, copy_header=True)
    for k, name in enumerate(models):
        save_img(_fit_img(sl, fits[k]), staging / f"model_{name}.nii.gz")
        plot_searchlight(_fit_img(sl, fits[k]), mean, staging / f"model_{name}.png",
                         title=f"fit of model {name} ({summary['parameters']['comparison']})", chance=0.0)  # fmt: skip
        if test is not None:
            for kind, p in (("p_fwe", test.p_fwe[k]), ("p_uncorrected", test.p_values[k])):
                save_img(sl.to_img(-np.log10(p)), staging / f"{kind}_{name}.nii.gz")
    first = next(iter(models))
    best = int(np.nanargmax(fits[0]))
    plot_rdm(sl.rdms_[best], conds, staging / "best_rdm.png",
             title=f"RDM of the sphere that best fits model {first} ({summary['parameters']['method']})")  # fmt: skip


def _write_report(staging: Path, summary: dict, models: dict) -> None:
    from ..report import write_report

    figures = {f"Fit of model {name}": f"model_{name}.png" for name in models}
    figures["RDM of the best sphere (first model)"] = "best_rdm.png"
    write_report(staging, summary, figures=figures, title="RSA searchlight report")

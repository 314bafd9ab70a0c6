"""Group level: one-sample test of per-subject score maps against chance.

Each subject's map minus chance is tested with a one-sample t statistic and sign-flipping
permutations (valid when the maps' deviations from chance are symmetric under the null;
:mod:`fastsearchlight.sign_flips`): maximum-t family-wise corrected voxel p-values, with a
cluster-forming threshold cluster-size corrected p-values, and optionally TFCE. With few
subjects every sign pattern is used (an exact test), and the outputs say so.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ._options import GROUP_CLUSTER_THRESHOLD, GROUP_PERMUTATIONS
from ._versions import software_versions
from .images import read_img
from .io import InputError, output_folder, save_img, save_json, save_table, staged_outputs

__all__ = ["GROUP_OUTPUTS", "TFCE_OUTPUT", "load_maps", "run_group"]

GROUP_OUTPUTS = (
    "group_mean_scores.nii.gz",
    "group_t.nii.gz",
    "group_logp_fwe.nii.gz",
    "group_logp_cluster_fwe.nii.gz",
    "group_mean_scores.png",
    "group_logp_fwe.png",
    "group_clusters.tsv",
    "report.html",
    "summary.json",
)


#: file the group test with TFCE adds
TFCE_OUTPUT = "group_logp_tfce_fwe.nii.gz"


def load_maps(paths):
    """Per-subject score maps, checked to share one grid."""
    if len(paths) < 2:
        raise InputError("the group test needs at least two subjects' maps")
    imgs = []
    for p in paths:
        img = read_img(Path(p), "score map")
        if len(img.shape) != 3:
            raise InputError(f"score map {p} must be 3D, got shape {img.shape}")
        imgs.append(img)
    ref = imgs[0]
    for p, img in zip(paths, imgs):
        if img.shape != ref.shape or not np.allclose(img.affine, ref.affine, atol=1e-4):
            raise InputError(
                f"score map {p} is not in the same space as {paths[0]} (shape {img.shape} vs "
                f"{ref.shape}, or another affine): resample the maps to one template first"
            )
    return imgs


def run_group(
    maps,
    out_dir,
    *,
    chance: float = 0.5,
    mask=None,
    n_permutations: int = GROUP_PERMUTATIONS,
    cluster_threshold: float | None = GROUP_CLUSTER_THRESHOLD,
    random_state: int = 0,
    n_jobs: int = 1,
    force: bool = False,
    quiet: bool = False,
    tfce: bool = False,
    tfce_dh="auto",
    background=None,
) -> dict:
    """Second-level one-sample permutation test of score maps against ``chance``.

    Parameters
    ----------
    maps : list of path-like
        One score map per subject (same space).
    out_dir : path-like
    chance : float
        Chance level subtracted from every map.
    mask : path-like or None
        Voxels tested (default: voxels nonzero in every map).
    n_permutations : int
        Sign-flipping permutations; when ``2**n_subjects`` is no more, every sign pattern
        is used instead (an exact test).
    cluster_threshold : float or None
        Cluster-forming threshold in p (uncorrected); None: no cluster inference.
    n_jobs : int
        Threads that find the null maps' clusters and TFCE (-1: every core); the results do
        not depend on it.
    tfce : bool
        Also TFCE of the t maps with family-wise p-values (``group_logp_tfce_fwe.nii.gz``).
    tfce_dh : "auto" or float
    background : path-like or None
        Background of the figures; None: the mean of the subjects' ``mean_img.nii.gz``
        beside their maps (study folders) when all have one on the maps' grid, else
        nilearn's MNI152 template.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    from numbers import Integral, Real

    from ._validation import N_JOBS, Interval, check_params

    t_start = time.perf_counter()
    check_params(
        {"chance": chance, "n_permutations": n_permutations, "cluster_threshold": cluster_threshold,
         "n_jobs": n_jobs},
        {"chance": [Interval(Real, None, None)], "n_permutations": [Interval(Integral, 1, None)],
         "cluster_threshold": [Interval(Real, 0, 1, closed="neither"), None], "n_jobs": N_JOBS},
    )  # fmt: skip
    imgs = load_maps([str(m) for m in maps])
    data = np.stack([np.asarray(i.dataobj, dtype=np.float64) for i in imgs])
    finite = data[np.isfinite(data)]
    # RSA model-fit maps (correlations, tested against 0) may lie within [0, 1] too
    model_fits = all(
        bytes(i.header.get("descrip", b"")).startswith(b"fastsearchlight model fit") for i in imgs
    )
    if not model_fits and finite.size and finite.min() >= 0 and finite.max() <= 1 and not 0 < chance < 1:
        raise InputError(
            f"chance {chance:g} is outside (0, 1), the range of the maps' scores (accuracy, "
            "balanced accuracy or ROC AUC): give the chance level of the subjects' scoring, "
            "e.g. 0.5 for two balanced classes"
        )
    names = GROUP_OUTPUTS + ((TFCE_OUTPUT,) if tfce else ())
    with output_folder(out_dir, names, force=force) as out:
        summary = _group_into(out, maps, imgs, data, chance, mask, n_permutations, cluster_threshold,
                              random_state, t_start, tfce, tfce_dh, names, background, n_jobs)  # fmt: skip
    return summary


def _background(maps, imgs, background):
    """The figures' background and what it is (see :func:`run_group`)."""
    if background is not None:
        return read_img(Path(background), "background"), str(background)
    means = [Path(m).parent / "mean_img.nii.gz" for m in maps]
    if all(p.is_file() for p in means):
        loaded = [nib.load(p) for p in means]
        if all(
            i.shape[:3] == imgs[0].shape and np.allclose(i.affine, imgs[0].affine, atol=1e-4) for i in loaded
        ):
            data = np.mean([np.asarray(i.dataobj, dtype=np.float32) for i in loaded], axis=0)
            return nib.Nifti1Image(data, imgs[0].affine), "mean of the subjects' mean images"
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=2), "nilearn's MNI152 template"


def _group_mask(data: np.ndarray, imgs, mask):
    """The voxels tested: ``mask``, or those nonzero and finite in every map."""
    if mask is None:
        mask_data = np.all(data != 0, axis=0) & np.all(np.isfinite(data), axis=0)
        if not mask_data.any():
            raise InputError("no voxel is nonzero in every map: give --mask")
        return nib.Nifti1Image(mask_data.astype(np.uint8), imgs[0].affine)
    mask_img = read_img(Path(mask) if isinstance(mask, str) else mask, "group mask")
    if mask_img.shape[:3] != imgs[0].shape:
        raise InputError("the group mask is not on the maps' grid")
    return mask_img


def _group_into(out, maps, imgs, data, chance, mask, n_permutations, cluster_threshold, random_state,
                t_start, tfce, tfce_dh, names, background=None, n_jobs=1) -> dict:  # fmt: skip
    """The group level, written into the locked folder ``out`` (see :func:`run_group`)."""
    from nilearn.image import new_img_like

    from .stats import sign_flip_test

    mask_img = _group_mask(data, imgs, mask)
    mask_data = np.asarray(mask_img.dataobj) > 0
    centred = data[:, mask_data] - float(chance)
    result = sign_flip_test(
        centred, mask_data, n_permutations=int(n_permutations), random_state=random_state,
        cluster_threshold=cluster_threshold, with_tfce=tfce, tfce_dh=tfce_dh, n_jobs=n_jobs,
    )  # fmt: skip
    if result.exhaustive and result.n_permutations < n_permutations:
        warnings.warn(
            f"{len(imgs)} subjects allow only {result.n_permutations} distinct sign flips: all "
            f"of them were used instead of {n_permutations} (an exact test; the smallest "
            f"possible p is {1 / result.n_permutations:.3g}).",
            stacklevel=2,
        )

    def to_img(values, fill=0.0):
        vol = np.full(mask_data.shape, fill)
        vol[mask_data] = values
        return new_img_like(imgs[0], vol)

    mean_data = np.where(mask_data, data.mean(axis=0), 0.0)
    maps_out = {
        "group_mean_scores.nii.gz": new_img_like(imgs[0], mean_data),
        "group_t.nii.gz": to_img(result.t),
        "group_logp_fwe.nii.gz": to_img(-np.log10(result.p_fwe)),
        "group_logp_cluster_fwe.nii.gz":
            to_img(-np.log10(result.p_cluster_fwe)) if result.p_cluster_fwe is not None else to_img(0.0),
        **({TFCE_OUTPUT: to_img(-np.log10(result.p_fwe_tfce))} if tfce else {}),
    }  # fmt: skip
    logp = np.asarray(maps_out["group_logp_fwe.nii.gz"].dataobj)
    sig = logp > -np.log10(0.05)
    clusters = _significant_regions(imgs[0], sig, mean_data, chance)
    summary = {
        "name": "group level",
        "parameters": {
            "subjects": len(imgs), "chance": chance, "permutations": int(n_permutations),
            "cluster-forming threshold (p)": cluster_threshold, "test": "one-sample t, "
            "one-sided, sign flipping", "seed": random_state, "tfce": bool(tfce),
        },
        "sign flips": {
            "used": result.n_permutations,
            "distinct possible": 2 ** len(imgs),
            "all enumerated": result.exhaustive,
            "smallest possible p": 1.0 / (result.n_permutations + (0 if result.exhaustive else 1)),
            "cluster-forming t": result.cluster_threshold_t,
        },
        "data": {"maps": [str(m) for m in maps], "grid shape": list(imgs[0].shape),
                 "voxels tested": int(np.asarray(mask_img.dataobj).astype(bool).sum())},
        "results": _group_results(result, mean_data, logp, sig, maps_out, tfce),
        "timings": {},
        "software": software_versions(),
        "outputs": list(names),
    }  # fmt: skip
    bg, summary["data"]["figure background"] = _background(maps, imgs, background)
    _write_group(out, names, maps_out, clusters, summary, chance, t_start, bg)
    return summary


def _significant_regions(ref, sig: np.ndarray, mean_data: np.ndarray, chance: float) -> pd.DataFrame:
    """The regions of voxels with FWE p < 0.05, described by their mean scores."""
    from nilearn.image import new_img_like

    from . import report

    if not sig.any():
        return pd.DataFrame(columns=report.TOP_REGION_COLUMNS)
    img = new_img_like(ref, np.where(sig, mean_data, 0.0))
    return report.top_regions(img, chance=chance, threshold=chance + 1e-12)


def _group_results(result, mean_data, logp, sig, maps_out: dict, tfce: bool) -> dict:
    """The ``results`` section of the group summary."""
    logp_cluster = np.asarray(maps_out["group_logp_cluster_fwe.nii.gz"].dataobj)
    return {
        "max mean score": float(mean_data.max()),
        "voxels with FWE p < 0.05": int(sig.sum()),
        "min FWE p": float(10 ** -logp.max()) if logp.size else 1.0,
        "voxels in clusters with cluster FWE p < 0.05": int((logp_cluster > -np.log10(0.05)).sum()),
        **({"voxels with TFCE FWE p < 0.05": int((result.p_fwe_tfce < 0.05).sum())} if tfce else {}),
    }


def _write_group(out: Path, names, maps_out: dict, clusters, summary: dict, chance: float,
                 t_start: float, bg=None) -> None:  # fmt: skip
    """Maps, table, figures, report and summary, staged then moved into ``out`` together."""
    from . import plotting, report
    from .report._answer import rounded

    with staged_outputs(out, names) as staging:
        for name, img in maps_out.items():
            save_img(img, staging / name)
        save_table(clusters, staging / "group_clusters.tsv")
        mean_map = maps_out["group_mean_scores.nii.gz"]
        cuts = plotting.map_cuts(mean_map)  # both figures show the same slices
        plotting.plot_searchlight(mean_map, bg, staging / "group_mean_scores.png",
                                  title="Mean score over subjects", chance=chance, cuts=cuts)  # fmt: skip
        plotting.plot_logp(maps_out["group_logp_fwe.nii.gz"], bg, staging / "group_logp_fwe.png",
                           title="-log10 FWE p (sign flipping)", cuts=cuts, vmax=None)  # fmt: skip
        summary["timings"]["total"] = time.perf_counter() - t_start
        report.write_report(
            staging, summary, title="Group-level searchlight report", figures={},
            answer={"Mean score over subjects": "group_mean_scores.png",
                    "-log10 family-wise corrected p, one-sample test against chance": "group_logp_fwe.png"},
            headline=f"{summary['parameters']['subjects']} subjects: {summary['results']['voxels with FWE p < 0.05']} "
            f"voxels with family-wise corrected p < 0.05 (best mean score {summary['results']['max mean score']:.2f}, "
            f"chance {chance:g}).",
            tables={"Significant regions (voxel FWE p < 0.05)": rounded(clusters)}, force=True,
        )  # fmt: skip
        save_json(summary, staging / "summary.json")

"""Population prevalence inference (Allefeld, Görgen & Haynes 2016) from the study folders of
several subjects: the file-level runner of :func:`fastsearchlight.stats.prevalence_inference`
(whose module docstring gives the method)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .stats._prevalence import PrevalenceResult, gamma0_bound, prevalence_inference, prevalence_p

__all__ = [
    "PREVALENCE_OUTPUTS", "PrevalenceResult", "gamma0_bound", "prevalence_inference", "prevalence_p",
    "run_prevalence",
]  # fmt: skip


PREVALENCE_OUTPUTS = (
    "p_global.nii.gz",
    "p_global_fwe.nii.gz",
    "prevalence_gamma0.nii.gz",
    "min_scores.nii.gz",
    "prevalence_gamma0.png",
    "p_global_fwe.png",
    "report.html",
    "summary.json",
)


class _Columns:
    """A subject's null rows, read on demand, restricted to the common voxels."""

    def __init__(self, null, cols):
        self.null, self.cols, self.shape = null, np.flatnonzero(cols), (null.shape[0], int(cols.sum()))
        self.ndim = 2

    def __getitem__(self, rows):
        return np.asarray(self.null[rows])[:, self.cols]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.null)[:, self.cols]


def _read_records(folders) -> tuple[list[dict], np.ndarray]:
    """The subjects' permutation records, checked to share one grid, and their common voxels."""
    from ._permutation_record import load_permutation_record
    from .io import InputError

    records = [load_permutation_record(f) for f in folders]
    ref = records[0]
    for folder, rec in zip(folders, records):
        if rec["process_mask"].shape != ref["process_mask"].shape or not np.allclose(
            rec["affine"], ref["affine"], atol=1e-4
        ):
            raise InputError(
                f"the maps in {folder} are not on the grid of those in {folders[0]}: prevalence "
                "inference needs the subjects' searchlights in one space"
            )
    common = np.logical_and.reduce([rec["process_mask"] for rec in records])
    if not common.any():
        raise InputError("the subjects' maps share no voxel")
    return records, common


def run_prevalence(
    folders,
    out_dir,
    *,
    n_permutations: int = 10000,
    alpha: float = 0.05,
    random_state: int = 0,
    force: bool = False,
) -> dict:
    """Prevalence inference from the study folders of several subjects.

    Each folder must hold the outputs of a study run with permutations (its null maps,
    ``null_scores.npy``, and ``permutation_record.npz``), on one grid. The voxels tested
    are those every subject's map covers.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    import time

    import nibabel as nib

    from .io import InputError, output_folder

    t0 = time.perf_counter()
    if len(folders) < 2:
        raise InputError("prevalence inference needs at least two subjects' study folders")
    if not 0 < alpha < 1:
        raise InputError(f"alpha must lie in (0, 1), got {alpha!r}")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int) or n_permutations < 2:
        raise InputError(f"prevalence inference needs at least 2 permutations, got {n_permutations!r}")
    records, common = _read_records(folders)
    if any("mesh" in rec for rec in records):  # surface studies (surface_prevalence.py)
        from .surface_prevalence import check_same_mesh

        check_same_mesh(folders, records)
    columns = [common[rec["process_mask"]] for rec in records]
    observed = [rec["observed"][cols] for rec, cols in zip(records, columns)]
    null = [_Columns(rec["null"], cols) for rec, cols in zip(records, columns)]
    result = prevalence_inference(
        observed, null, includes_observed=[rec["exhaustive"] for rec in records],
        n_permutations=n_permutations, alpha=alpha, random_state=random_state,
    )  # fmt: skip

    if "mesh" in records[0]:
        from .surface_prevalence import write_surface_prevalence

        summary = _prevalence_summary(folders, records, common, result, alpha, random_state)
        return write_surface_prevalence(out_dir, folders, records, common, result, summary, alpha, force, t0)
    affine = records[0]["affine"]

    def img(values):
        vol = np.zeros(common.shape, dtype=np.float32)
        vol[common] = values
        return nib.Nifti1Image(vol, affine)

    summary = _prevalence_summary(folders, records, common, result, alpha, random_state)
    with output_folder(out_dir, PREVALENCE_OUTPUTS, force=force) as out:
        _write_prevalence(out, result, img, summary, alpha, t0)
    return summary


def _prevalence_summary(folders, records, common, result, alpha, random_state) -> dict:
    """The summary written to ``summary.json``."""
    from ._versions import software_versions

    return {
        "name": "prevalence inference",
        "parameters": {
            "subjects": len(records),
            "second-level permutations": result.n_second_level,
            "all combinations enumerated": result.exhaustive,
            "alpha": alpha,
            "seed": random_state,
            "method": "Allefeld, Goergen & Haynes 2016 (minimum "
            "statistic over subjects, first-level permutations)",
        },
        "data": {
            "folders": [str(f) for f in folders],
            "grid shape": list(common.shape),
            "voxels tested": int(common.sum()),
            "first-level permutations": [int(rec["null"].shape[0]) for rec in records],
        },
        "results": {
            "largest gamma0 these permutations can reject": round(result.gamma0_max, 4),
            "voxels with global-null FWE p < alpha": int((result.p_global_fwe < alpha).sum()),
            "voxels where a majority (gamma0 >= 0.5) is established, FWE": int((result.gamma0 >= 0.5).sum()),
            "max gamma0": float(result.gamma0.max()),
        },  # fmt: skip
        "timings": {},
        "software": software_versions(),
        "outputs": list(PREVALENCE_OUTPUTS),
    }


def _write_prevalence(out, result, img, summary, alpha, t0) -> None:
    """Maps, figures, report and summary, staged then moved into ``out`` together."""
    import time

    from . import plotting, report
    from .group import _background
    from .io import save_img, save_json, staged_outputs

    with staged_outputs(out, PREVALENCE_OUTPUTS) as staging:
        neglog = lambda p: img(-np.log10(p))  # noqa: E731
        save_img(neglog(result.p_global), staging / "p_global.nii.gz")
        save_img(neglog(result.p_global_fwe), staging / "p_global_fwe.nii.gz")
        save_img(img(result.gamma0), staging / "prevalence_gamma0.nii.gz")
        save_img(img(result.min_statistic), staging / "min_scores.nii.gz")
        # on the subjects' mean images (or the MNI152 template), with the same cuts
        bg, summary["data"]["figure background"] = _background(
            [Path(f) / "searchlight_scores.nii.gz" for f in summary["data"]["folders"]],
            [img(result.gamma0)],
            None,
        )
        cuts = plotting.map_cuts(neglog(result.p_global_fwe))
        plotting.plot_logp(img(result.gamma0), bg, staging / "prevalence_gamma0.png", cuts=cuts,
                           title=f"Prevalence lower bound gamma0 (FWE, alpha {alpha})")  # fmt: skip
        plotting.plot_logp(neglog(result.p_global_fwe), bg, staging / "p_global_fwe.png", cuts=cuts,
                           title="Global null, -log10 FWE p (minimum statistic)")  # fmt: skip
        summary["timings"]["total"] = time.perf_counter() - t0
        report.write_report(
            staging, summary, title="Prevalence inference report",
            figures={
                "Largest prevalence gamma0 whose majority null is rejected (FWE)": "prevalence_gamma0.png",
                "Global null (no subject has an effect), -log10 FWE p": "p_global_fwe.png",
            },
            force=True,
        )  # fmt: skip
        save_json(summary, staging / "summary.json")

"""Population prevalence inference on the cortical mesh: ``fastsearchlight group --prevalence``
with the folders of surface studies (``fastsearchlight surface --permutations``).

The inference is the volume's (:func:`fastsearchlight.stats.prevalence_inference`, run by
:func:`fastsearchlight.prevalence.run_prevalence` on each subject's null maps); here the
subjects' studies are checked to share one mesh and the maps are written as GIfTI per
hemisphere, with surface figures.
"""

from __future__ import annotations

import time

import numpy as np

from .io import InputError

__all__ = ["SURFACE_PREVALENCE_MAPS", "check_same_mesh", "write_surface_prevalence"]

#: the maps (one GIfTI per hemisphere each): -log10 p of the global null, uncorrected and
#: FWE; the prevalence bound gamma0; the minimum score over subjects
SURFACE_PREVALENCE_MAPS = ("p_global", "p_global_fwe", "prevalence_gamma0", "min_scores")
_FIGURES = ("prevalence_gamma0_surface.png", "p_global_fwe_surface.png")


def _mesh_of(record: dict) -> tuple:
    # "fsaverage5" and "fsaverage5:inflated" number their vertices alike; a mesh of files is
    # the same mesh only with the same files
    text = str(record["mesh"])
    return (
        text if text.startswith("[") else text.partition(":")[0],
        tuple(map(str, record["hemispheres"])),
        tuple(record["n_vertices"]),
    )


def check_same_mesh(folders, records) -> None:
    """Every study on the mesh of the first (and every study a surface study)."""
    if not all("mesh" in rec for rec in records):
        raise InputError(
            "prevalence inference takes the folders of volume studies or of surface studies, not both"
        )
    ref = _mesh_of(records[0])
    for folder, rec in zip(folders, records):
        if _mesh_of(rec) != ref:
            raise InputError(
                f"the maps in {folder} ({_mesh_of(rec)[0]}, {', '.join(_mesh_of(rec)[1])}) are not on the mesh "
                f"of those in {folders[0]} ({ref[0]}, {', '.join(ref[1])}): prevalence inference needs one mesh"
            )


def write_surface_prevalence(
    out_dir, folders, records, common, result, summary: dict, alpha: float, force: bool, t0: float
) -> dict:
    """GIfTI maps, figures, report and summary of a prevalence inference on surface studies.

    Parameters
    ----------
    out_dir : path-like
    folders : list of path-like
    records : list of dict
        The studies' permutation records (with ``mesh``, ``hemispheres``, ``n_vertices``).
    common : ndarray of bool
        The vertices tested (every hemisphere's, concatenated).
    result : PrevalenceResult
    summary : dict
        The volume's summary of the same inference, completed here.
    alpha : float
    force : bool
    t0 : float
        ``time.perf_counter()`` at the start.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    from nilearn.surface import PolyMesh, SurfaceImage

    from . import report
    from .io import output_folder, save_json, staged_outputs
    from .report._surface import plot_surface_map
    from .spaces.surface import load_mesh, mesh_from_record
    from .surface_study import _save_gifti

    mesh_name, hemis, counts = _mesh_of(records[0])
    mesh_name = mesh_from_record(mesh_name)  # a name, or the files of the mesh
    mesh = load_mesh(mesh_name)
    names = tuple(f"{m}_hemi-{h[0].upper()}.func.gii" for m in SURFACE_PREVALENCE_MAPS for h in hemis)
    names += _FIGURES + ("report.html", "summary.json")
    starts = np.cumsum([0, *counts])

    def img(values):
        full = np.zeros(common.shape, dtype=np.float64)
        full[common] = values
        parts = PolyMesh(**{h: mesh.parts[h] for h in hemis})
        return SurfaceImage(parts, {h: full[starts[k] : starts[k + 1]] for k, h in enumerate(hemis)})

    summary["data"]["mesh"] = mesh_name
    summary["data"]["vertices tested"] = summary["data"].pop("voxels tested")
    summary["data"].pop("grid shape", None)
    summary["outputs"] = list(names)
    with output_folder(out_dir, names, force=force) as out, staged_outputs(out, names) as staging:
        maps = {
            "p_global": -np.log10(result.p_global), "p_global_fwe": -np.log10(result.p_global_fwe),
            "prevalence_gamma0": result.gamma0, "min_scores": result.min_statistic,
        }  # fmt: skip
        for stem, values in maps.items():
            _save_gifti(img(values), staging, stem)
        plot_surface_map(img(result.gamma0), staging / _FIGURES[0], mesh_name=mesh_name, vmin=0, vmax=1,
                         title=f"Prevalence lower bound gamma0 (FWE, alpha {alpha})", cmap="hot")  # fmt: skip
        plot_surface_map(img(maps["p_global_fwe"]), staging / _FIGURES[1], mesh_name=mesh_name, cmap="hot",
                         title="Global null, -log10 FWE p (minimum statistic)")  # fmt: skip
        summary["timings"]["total"] = time.perf_counter() - t0
        report.write_report(
            staging, summary, title="Prevalence inference report (surface)",
            figures={
                "Largest prevalence gamma0 whose majority null is rejected (FWE)": _FIGURES[0],
                "Global null (no subject has an effect), -log10 FWE p": _FIGURES[1],
            },
            force=True,
        )  # fmt: skip
        save_json(summary, staging / "summary.json")
    return summary

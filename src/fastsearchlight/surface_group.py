"""Group level on the cortical mesh: one-sample sign-flip test of per-subject surface score
maps against chance, with voxel (vertex) FWE, cluster and TFCE inference along the mesh's
edges (:func:`run_surface_group`; ``fastsearchlight group`` with GIfTI maps)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ._versions import software_versions
from .io import InputError, output_folder, save_json, staged_outputs

__all__ = ["SURFACE_GROUP_OUTPUTS", "pair_hemispheres", "run_surface_group"]

SURFACE_GROUP_OUTPUTS = tuple(
    f"{stem}_hemi-{h}.func.gii"
    for stem in ("group_mean_scores", "group_t", "group_logp_fwe", "group_logp_cluster_fwe")
    for h in ("L", "R")
) + ("group_mean_scores_surface.png", "group_logp_fwe_surface.png", "report.html", "summary.json")
_TFCE_OUTPUTS = ("group_logp_tfce_fwe_hemi-L.func.gii", "group_logp_tfce_fwe_hemi-R.func.gii")


def pair_hemispheres(maps) -> list[dict]:
    """Each subject's maps by hemisphere: a ``hemi-L`` file and its ``hemi-R`` sibling (the
    same name with ``hemi-R``), given either or both."""
    subjects: dict = {}
    for m in map(Path, maps):
        name = m.name
        if "hemi-L" in name:
            key = m.with_name(name.replace("hemi-L", "hemi-X"))
        elif "hemi-R" in name:
            key = m.with_name(name.replace("hemi-R", "hemi-X"))
        else:
            raise InputError(f"surface map {m} needs hemi-L or hemi-R in its name")
        subjects[str(key)] = {
            h: Path(str(key).replace("hemi-X", f"hemi-{h[0].upper()}")) for h in ("left", "right")
        }
    for parts in subjects.values():
        for path in parts.values():
            if not path.exists():
                raise InputError(
                    f"surface map {path} does not exist (both hemispheres of every subject are needed)"
                )
    return list(subjects.values())


def _load(subjects, mesh) -> dict:
    from nilearn.surface import load_surf_data

    data = {}
    for hemi in ("left", "right"):
        rows = []
        for s in subjects:
            try:
                values = np.asarray(load_surf_data(str(s[hemi])), dtype=np.float64)
            except Exception as exc:  # nilearn raises many kinds for unreadable files
                raise InputError(f"cannot read surface map {s[hemi]}: {exc}") from None
            if values.shape != (mesh.parts[hemi].n_vertices,):
                raise InputError(f"surface map {s[hemi]} has shape {values.shape}, not one value per vertex of the mesh "
                                 f"({mesh.parts[hemi].n_vertices})")  # fmt: skip
            rows.append(values)
        data[hemi] = np.stack(rows)
    return data


def run_surface_group(
    maps, out_dir, *, mesh="fsaverage5", chance: float = 0.5, n_permutations: int = 5000,
    cluster_threshold: float | None = 0.001, random_state: int = 0, force: bool = False,
    tfce: bool = False, tfce_dh="auto",
) -> dict:  # fmt: skip
    """Second-level one-sample sign-flip test of surface score maps against ``chance``.

    Parameters
    ----------
    maps : list of path-like
        Each subject's ``..._hemi-L.func.gii`` (its ``hemi-R`` sibling is read with it).
    out_dir : path-like
    mesh : str or list of path-like
        The mesh of the maps (a name nilearn loads, or the surface files of the hemispheres);
        clusters and TFCE follow its edges, within each hemisphere.
    chance, n_permutations, cluster_threshold, random_state, tfce, tfce_dh
        As in :func:`fastsearchlight.group.run_group`; the vertices tested are those nonzero
        and finite in every map.

    Returns
    -------
    dict
        The summary written to ``summary.json``.
    """
    from scipy import sparse

    from .spaces.surface import load_mesh, mesh_adjacency
    from .stats import sign_flip_test

    t_start = time.perf_counter()
    try:
        polymesh = load_mesh(mesh)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    subjects = pair_hemispheres(maps)
    if len(subjects) < 2:
        raise InputError("the group test needs at least two subjects' maps")
    names = SURFACE_GROUP_OUTPUTS + (_TFCE_OUTPUTS if tfce else ())
    with output_folder(out_dir, names, force=force) as out:
        data = _load(subjects, polymesh)
        tested = {h: np.all((d != 0) & np.isfinite(d), axis=0) for h, d in data.items()}
        if not any(t.any() for t in tested.values()):
            raise InputError("no vertex is nonzero in every map")
        graph = sparse.block_diag(
            [mesh_adjacency(polymesh.parts[h])[t][:, t] for h, t in tested.items()], format="csr"
        )
        centred = np.concatenate([data[h][:, tested[h]] for h in data], axis=1) - float(chance)
        result = sign_flip_test(centred, None, graph=graph, n_permutations=int(n_permutations),
                                random_state=random_state, cluster_threshold=cluster_threshold,
                                with_tfce=tfce, tfce_dh=tfce_dh)  # fmt: skip
        if result.exhaustive and result.n_permutations < n_permutations:
            warnings.warn(f"{len(subjects)} subjects allow only {result.n_permutations} distinct sign flips: all of "
                          "them were used (an exact test).", stacklevel=2)  # fmt: skip
        maps_out = _maps(data, tested, result, tfce)
        summary = {
            "name": "group level on the surface",
            "parameters": {"subjects": len(subjects), "chance": chance, "permutations": int(n_permutations),
                           "cluster-forming threshold (p)": cluster_threshold, "mesh": mesh, "seed": random_state,
                           "test": "one-sample t, one-sided, sign flipping; clusters along the mesh's edges",
                           "tfce": bool(tfce)},
            "sign flips": {"used": result.n_permutations, "all enumerated": result.exhaustive,
                           "cluster-forming t": result.cluster_threshold_t},
            "data": {"maps": [str(s["left"]) for s in subjects],
                     "vertices tested": {h: int(t.sum()) for h, t in tested.items()}},
            "results": {"max mean score": float(max(d.mean(axis=0).max() for d in data.values())),
                        "vertices with FWE p < 0.05": int((result.p_fwe < 0.05).sum()),
                        "vertices in clusters with cluster FWE p < 0.05":
                            int((result.p_cluster_fwe < 0.05).sum()) if result.p_cluster_fwe is not None else 0,
                        **({"vertices with TFCE FWE p < 0.05": int((result.p_fwe_tfce < 0.05).sum())} if tfce else {})},
            "timings": {},
            "software": software_versions(),
            "outputs": list(names),
        }  # fmt: skip
        _write(out, names, polymesh, maps_out, summary, mesh, chance, t_start)
        return summary


def _maps(data, tested, result, tfce: bool) -> dict:
    """The output maps, full per hemisphere: stem -> {hemi: values}."""
    offsets, start = {}, 0
    for h, t in tested.items():
        offsets[h] = (start, start + int(t.sum()))
        start += int(t.sum())

    def full(values):
        out = {}
        for h, t in tested.items():
            v = np.zeros(t.shape)
            v[t] = values[offsets[h][0] : offsets[h][1]]
            out[h] = v
        return out

    maps = {
        "group_mean_scores": {h: np.where(tested[h], d.mean(axis=0), 0.0) for h, d in data.items()},
        "group_t": full(result.t),
        "group_logp_fwe": full(-np.log10(result.p_fwe)),
        "group_logp_cluster_fwe": full(
            -np.log10(result.p_cluster_fwe) if result.p_cluster_fwe is not None else np.zeros(len(result.t))
        ),  # fmt: skip
    }
    if tfce:
        maps["group_logp_tfce_fwe"] = full(-np.log10(result.p_fwe_tfce))
    return maps


def _write(out, names, polymesh, maps_out, summary, mesh, chance, t_start) -> None:
    import nibabel as nib
    from nilearn.surface import SurfaceImage

    from . import report
    from .report._surface import plot_surface_map

    with staged_outputs(out, names) as staging:
        for stem, parts in maps_out.items():
            for h, values in parts.items():
                array = nib.gifti.GiftiDataArray(values.astype(np.float32), intent="NIFTI_INTENT_ESTIMATE")
                nib.save(
                    nib.gifti.GiftiImage(darrays=[array]), staging / f"{stem}_hemi-{h[0].upper()}.func.gii"
                )
        mean = {h: np.where(v != 0, v - chance, 0.0) for h, v in maps_out["group_mean_scores"].items()}
        plot_surface_map(SurfaceImage(polymesh, mean), staging / "group_mean_scores_surface.png",
                         title="Mean score over subjects minus chance", mesh_name=mesh)  # fmt: skip
        plot_surface_map(SurfaceImage(polymesh, maps_out["group_logp_fwe"]), staging / "group_logp_fwe_surface.png",
                         title="-log10 FWE p (sign flipping)", mesh_name=mesh, cmap="hot", vmin=0)  # fmt: skip
        summary["timings"]["total"] = time.perf_counter() - t_start
        report.write_report(
            staging, summary, title="Group-level surface searchlight report", force=True,
            figures={"Mean score over subjects minus chance": "group_mean_scores_surface.png",
                     "-log10 family-wise corrected p, one-sample test against chance": "group_logp_fwe_surface.png"},
            tables={"Vertices tested": pd.DataFrame(summary["data"]["vertices tested"], index=[0])},
        )  # fmt: skip
        save_json(summary, staging / "summary.json")

"""RSA searchlight: fastsearchlight's RSASearchLight and rsatoolbox's own searchlight path,
side by side in one run.

Workload: the simulated Haxby-sized volume of ``run_benchmarks.py`` (40 x 64 x 64 grid of
3.5 x 3.75 x 3.75 mm voxels, ~44,000 mask voxels), 8 conditions x 12 runs (one sample per
condition and run, as run-wise betas: 96 samples), crossnobis distances (leave one run out)
with ``shrinkage_diag`` noise precision per sphere, radius 5.6 mm and 10 mm.

- fastsearchlight: ``RSASearchLight(method="crossnobis", noise="shrinkage_diag", n_jobs=2)``
  on the whole brain, the first fit in this process and a second; then with ``n_jobs=1``
  (one core, as rsatoolbox's loop).
- rsatoolbox: ``rsatoolbox.util.searchlight.get_volume_searchlight`` on the whole mask (its
  radius in voxels chosen to give spheres of the same mean size, every mask voxel a centre,
  spheres truncated at the mask), then, per sphere, a ``Dataset``,
  ``prec_from_measurements(..., method="shrinkage_diag")`` and ``calc_rdm(...,
  method="crossnobis", cv_descriptor=<runs>)`` (rsatoolbox's searchlight RDM function takes
  no noise), on a random subset of spheres, scaled per sphere to the whole brain.

Agreement: rsatoolbox's RDMs of a random subset of this package's spheres against ``rdms_``.

Usage::

    python benchmarks/rsa_searchlight.py [--subset 300] [--radii 5.6 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
from _results import cpu_model, write_result

HERE = Path(__file__).resolve().parent
CONDITIONS = ("bottle", "cat", "chair", "face", "house", "scissors", "scrambled", "shoe")
#: rsatoolbox's radius (in voxels) giving spheres of about the same mean size as ours
RSATOOLBOX_RADIUS = {5.6: 1.6, 10.0: 2.8}


def dataset():
    from fastsearchlight.simulate import simulate_haxby_like

    ds = simulate_haxby_like(n_runs=12, n_per_class_per_run=1, conditions=CONDITIONS, random_state=0)
    return ds.func_img, ds.mask_img, ds.labels["labels"].to_numpy(), ds.labels["chunks"].to_numpy()


def rsatoolbox_rdm(data, conditions, runs):
    """One sphere the way rsatoolbox computes it: Dataset, noise precision, crossnobis."""
    from rsatoolbox.data import Dataset
    from rsatoolbox.data.noise import prec_from_measurements
    from rsatoolbox.rdm import calc_rdm

    ds = Dataset(data, obs_descriptors={"conditions": conditions, "runs": runs})
    prec = prec_from_measurements(ds, obs_desc="conditions", method="shrinkage_diag")
    rdm = calc_rdm(ds, method="crossnobis", descriptor="conditions", noise=prec, cv_descriptor="runs")
    return rdm.dissimilarities[0]


def time_ours(func, mask, y, runs, radius: float) -> dict:
    from fastsearchlight import RSASearchLight

    out = {}
    for key, n_jobs in (("first", 2), ("second", 2), ("one_core", 1)):
        sl = RSASearchLight(mask, radius=radius, method="crossnobis", noise="shrinkage_diag", n_jobs=n_jobs)
        t0 = time.perf_counter()
        sl.fit(func, y, runs)
        out[key] = time.perf_counter() - t0
    out.update(sl=sl, spheres=sl.n_elements_, mean_size=float(sl.sphere_sizes_.mean()))
    return out


def time_rsatoolbox(func, mask, y, runs, radius_vox: float, n_subset: int) -> dict:
    from rsatoolbox.util.searchlight import get_volume_searchlight

    mask_data = np.asarray(mask.dataobj) > 0
    t0 = time.perf_counter()
    centres, neighbours = get_volume_searchlight(mask_data, radius=radius_vox, threshold=0.0,
                                                 truncate_at_boundary=True)  # fmt: skip
    t_centres = time.perf_counter() - t0
    data = np.asarray(func.dataobj, dtype=np.float64).reshape(-1, func.shape[3]).T  # samples x voxels
    pick = np.random.default_rng(0).choice(len(neighbours), n_subset, replace=False)
    t0 = time.perf_counter()
    for k in pick:
        rsatoolbox_rdm(data[:, neighbours[k]], y, runs)
    per_sphere = (time.perf_counter() - t0) / n_subset
    n = len(neighbours)
    return {"spheres": n, "centres_s": t_centres, "per_sphere_s": per_sphere, "whole_s": t_centres + per_sphere * n,
            "mean_size": float(np.mean([len(v) for v in neighbours]))}  # fmt: skip


def agreement(sl, func, y, runs, n: int = 100) -> float:
    """Largest error of ``rdms_`` against rsatoolbox on the same spheres, relative to each RDM's scale."""
    from fastsearchlight.images import load_mask_on_grid, masked_data

    X = masked_data(func, load_mask_on_grid(sl.mask_img, "mask", func), dtype=np.float64)
    worst = 0.0
    for s in np.random.default_rng(1).choice(sl.n_elements_, n, replace=False):
        ref = rsatoolbox_rdm(X[:, sl.neighbourhoods_.voxels(s)], y, runs)
        worst = max(worst, float(np.max(np.abs(sl.rdms_[s] - ref)) / np.max(np.abs(ref))))
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subset", type=int, default=300, help="rsatoolbox spheres timed per radius")
    parser.add_argument("--radii", type=float, nargs="+", default=[5.6, 10.0])
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    load = os.getloadavg()
    func, mask, y, runs = dataset()
    rows = []
    for radius in args.radii:
        ours = time_ours(func, mask, y, runs, radius)
        theirs = time_rsatoolbox(
            func, mask, y, runs, RSATOOLBOX_RADIUS.get(radius, radius / 3.66), args.subset
        )
        scaled = (
            theirs["per_sphere_s"] * ours["spheres"]
            + theirs["centres_s"] * ours["spheres"] / theirs["spheres"]
        )
        rows.append({
            "radius_mm": radius, "spheres": ours["spheres"], "mean_size": ours["mean_size"],
            "rsatoolbox_mean_size": theirs["mean_size"], "ours_first_s": ours["first"],
            "ours_second_s": ours["second"], "ours_one_core_s": ours["one_core"], "rsatoolbox_centres_s": theirs["centres_s"],
            "rsatoolbox_ms_per_sphere": 1000 * theirs["per_sphere_s"], "rsatoolbox_whole_s": scaled,
            "ratio_first": scaled / ours["first"], "ratio_second": scaled / ours["second"],
            "ratio_one_core": scaled / ours["one_core"],
            "max_rel_error": agreement(ours["sl"], func, y, runs),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "load": load, "python": platform.python_version(),
            "numpy": np.__version__, "rsatoolbox": _version("rsatoolbox")}  # fmt: skip
    write_result(
        HERE / "results" / "rsa_searchlight.json", json.dumps({"machine": info, "rows": rows}, indent=1)
    )
    write_result(HERE / "results" / "rsa_searchlight.md", table(rows, info, args))
    print(table(rows, info, args))
    return 0


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def table(rows: list[dict], info: dict, args) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores (shared with other work); load average at start "
        f"{', '.join(f'{v:.2f}' for v in info['load'])}; Python {info['python']}, numpy {info['numpy']}, "
        f"rsatoolbox {info['rsatoolbox']}.",
        "",
        f"Workload: {rows[0]['spheres']} spheres (every mask voxel), 96 samples (8 conditions x 12 runs), "
        "crossnobis (leave one run out) with shrinkage_diag noise per sphere; fastsearchlight n_jobs=2; "
        f"rsatoolbox timed on {args.subset} random spheres and scaled per sphere.",
        "",
        "| radius (mm) | voxels per sphere (ours / rsatoolbox) | rsatoolbox ms per sphere | rsatoolbox whole brain s (est.) "
        "| fastsearchlight s (first fit) | ratio | second fit s (ratio) | n_jobs=1 s (ratio) "
        "| largest relative difference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['radius_mm']:g} | {r['mean_size']:.1f} / {r['rsatoolbox_mean_size']:.1f} | "
            f"{r['rsatoolbox_ms_per_sphere']:.2f} | {r['rsatoolbox_whole_s']:.0f} | {r['ours_first_s']:.2f} | "
            f"{r['ratio_first']:.0f}x | {r['ours_second_s']:.2f} ({r['ratio_second']:.0f}x) | "
            f"{r['ours_one_core_s']:.2f} ({r['ratio_one_core']:.0f}x) | {r['max_rel_error']:.1e} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

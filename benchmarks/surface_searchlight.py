"""The surface searchlight on fsaverage5, side by side with nilearn's surface recipe in one run.

Workload: both hemispheres of fsaverage5 (20,484 vertices, every one a disc centre), 216
samples (12 runs x 9 faces and 9 houses, simulated with two planted patches:
:func:`fastsearchlight.simulate_surface.simulate_surface`), discs of 10 mm geodesic radius
on the pial mesh, svc (nilearn's ``LinearSVC``), ``KFold(4)`` by default, n_jobs=2.

nilearn has no surface searchlight class; its surface example runs ``search_light`` (from
``nilearn.decoding.searchlight``) on an adjacency matrix of the mesh. Here it gets the same
geodesic discs and the same ``n_jobs``, on a random subset of discs: its whole-map time is
its fixed cost per call (timed on 2 discs) plus its time per disc on the subset times the
number of discs, both timed after an untimed call in which its workers import it (a cost
paid once, which scaled per disc would inflate its estimate). Ours is timed twice in the
same process: first as a user's first fit costs (the discs built, the worker processes
started: the headline ratio), then again (discs cached, workers running, as nilearn's calls
find them). Also timed: building the discs
(geodesic and euclidean) of both hemispheres, without the cache. The compiled kernels are
loaded from numba's cache (filled by a small untimed fit when empty, as after installation).

Usage::

    python benchmarks/surface_searchlight.py [--nilearn-spheres 400] [--cv kfold|logo]
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


def build_times(mesh) -> dict:
    """Seconds to build the discs of both hemispheres, uncached."""
    from fastsearchlight.spaces import surface

    out = {}
    for distance in ("geodesic", "euclidean"):
        surface._CACHE.clear()
        t0 = time.perf_counter()
        sizes = [np.diff(surface.vertex_discs(part, 10.0, distance).indptr) for part in mesh.parts.values()]
        out[distance] = (time.perf_counter() - t0, float(np.concatenate(sizes).mean()))
    surface._CACHE.clear()
    return out


def nilearn_recipe(X, y, groups, adjacency, pick, cv, estimator) -> tuple[np.ndarray, float]:
    """nilearn's ``search_light`` on the discs ``pick``: scores and seconds."""
    from nilearn.decoding.searchlight import search_light

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear's convergence warnings
        t0 = time.perf_counter()
        scores = search_light(X, y, estimator, adjacency[pick].tolil(), groups=groups, cv=cv, n_jobs=2)
        return scores, time.perf_counter() - t0


def main(argv=None) -> int:
    from scipy import sparse
    from sklearn.model_selection import KFold, LeaveOneGroupOut
    from sklearn.svm import LinearSVC

    from fastsearchlight import SurfaceSearchLight
    from fastsearchlight.estimators import resolve_estimator
    from fastsearchlight.simulate_surface import simulate_surface
    from fastsearchlight.spaces import surface
    from fastsearchlight.spaces.surface import load_mesh

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nilearn-spheres", type=int, default=400)
    parser.add_argument("--cv", choices=("kfold", "logo"), default="kfold")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    cv = KFold(4) if args.cv == "kfold" else LeaveOneGroupOut()
    ds = simulate_surface()
    mesh = load_mesh("fsaverage5")
    y, groups = ds.labels["labels"].to_numpy(), ds.labels["chunks"].to_numpy()
    builds = build_times(mesh)
    # not timed: a small fit that fills numba's cache of the compiled SVM kernel when it is
    # empty (the first call after installation compiles it; later processes load it)
    few = {h: np.arange(p.n_vertices) < 50 for h, p in mesh.parts.items()}
    SurfaceSearchLight(mesh, mask=few, radius=10.0, estimator="svc", cv=cv).fit(ds.data, y, groups=groups)
    surface._CACHE.clear()  # the first fit builds its discs and starts its workers
    times = []
    for _ in range(2):
        ours = SurfaceSearchLight(mesh, radius=10.0, estimator="svc", cv=cv, n_jobs=2)
        t0 = time.perf_counter()
        ours.fit(ds.image(), y, groups=groups)
        times.append(time.perf_counter() - t0)
    ours_s, ours_warm_s = times
    X = np.concatenate([ds.data["left"], ds.data["right"]]).T
    adjacency = ours.neighbourhoods_.adjacency  # no mask: every vertex, left then right
    assert sparse.issparse(adjacency) and adjacency.shape == (X.shape[1], X.shape[1])
    pick = np.sort(np.random.default_rng(0).choice(X.shape[1], args.nilearn_spheres, replace=False))
    svc = resolve_estimator("svc", None)
    nilearn_recipe(X, y, groups, adjacency, pick[:2], cv, svc)  # its workers import nilearn (not timed)
    _, nilearn_fixed_s = nilearn_recipe(X, y, groups, adjacency, pick[:2], cv, svc)
    ref, nilearn_s = nilearn_recipe(X, y, groups, adjacency, pick, cv, svc)
    tight, _ = nilearn_recipe(
        X, y, groups, adjacency, pick, cv, LinearSVC(dual=False, tol=1e-10, max_iter=100000)
    )
    n = ours.n_elements_
    nilearn_per_disc = max(nilearn_s - nilearn_fixed_s, 0.0) / (len(pick) - 2)
    nilearn_whole = nilearn_fixed_s + nilearn_per_disc * n
    same = float(np.mean(ours.masked_scores_[pick] == ref))
    same_tight = float(np.mean(np.isclose(ours.masked_scores_[pick], tight, rtol=0, atol=1e-12)))
    truth = np.concatenate([ds.truth["left"], ds.truth["right"]])
    result = {
        "machine": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
        "load_average_start": [round(v, 2) for v in load],
        "load_average_end": [round(v, 2) for v in os.getloadavg()], "cv": repr(cv), "n_spheres": n,
        "mean_disc_vertices": float(ours.sphere_sizes_.mean()), "n_samples": len(y),
        "fastsearchlight_s": ours_s, "fastsearchlight_second_fit_s": ours_warm_s,
        "fastsearchlight_timings_second_fit": ours.timings_,
        "nilearn_spheres_timed": len(pick), "nilearn_discs_mean_vertices": float(ours.sphere_sizes_[pick].mean()), "nilearn_s_subset": nilearn_s, "nilearn_s_fixed": nilearn_fixed_s,
        "nilearn_s_whole_est": nilearn_whole,
        "speed_ratio": nilearn_whole / ours_s, "speed_ratio_second_fit": nilearn_whole / ours_warm_s, "identical_to_nilearn": same, "identical_to_tight_linearsvc": same_tight,
        "build_geodesic_s": builds["geodesic"][0], "build_euclidean_s": builds["euclidean"][0],
        "mean_score_in_patches": float(ours.scores_[truth].mean()), "mean_score_elsewhere": float(ours.scores_[~truth].mean()),
    }  # fmt: skip
    end = result["load_average_end"]
    lines = [
        "# Surface searchlight: fsaverage5, side by side with nilearn's surface recipe",
        "",
        f"Machine: {result['machine']}, {result['cores']} cores, Python {result['python']}; load average "
        f"at start {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}, at the end {end[0]:.2f}, {end[1]:.2f}, "
        f"{end[2]:.2f} (shared machine).",
        "",
        f"Workload: {n} discs (both hemispheres of fsaverage5), {ours.sphere_sizes_.mean():.1f} vertices on "
        f"average (10 mm geodesic, pial mesh), {len(y)} samples (simulated, 12 runs), {cv!r}, svc, n_jobs=2 "
        f"for both. nilearn's `search_light` on the same discs: its fixed cost per call ({nilearn_fixed_s:.2f} s, "
        f"timed on 2 discs) plus its time per disc on {len(pick)} random discs "
        f"({ours.sphere_sizes_[pick].mean():.1f} vertices on average) times {n} discs.",
        "",
        "| | seconds (whole map) | discs/s |",
        "|---|---|---|",
        f"| fastsearchlight `SurfaceSearchLight`, first fit (discs built, workers started) | {ours_s:.1f} "
        f"| {n / ours_s:.0f} |",
        f"| fastsearchlight, second fit in the same process (discs cached, workers running) | {ours_warm_s:.1f} "
        f"| {n / ours_warm_s:.0f} |",
        f"| nilearn `search_light` (est.) | {nilearn_whole:.0f} | {1 / nilearn_per_disc:.1f} |",
        "",
        f"Speed ratio: {result['speed_ratio']:.0f}x (first fit; {result['speed_ratio_second_fit']:.0f}x the "
        f"second). Discs with the same score as nilearn's (liblinear, "
        f"default tolerance): {same:.1%}; as a tightly solved LinearSVC (primal, tol 1e-10): {same_tight:.1%}.",
        "",
        f"Building the discs of both hemispheres (uncached): geodesic {builds['geodesic'][0]:.2f} s "
        f"({builds['geodesic'][1]:.1f} vertices a disc), euclidean {builds['euclidean'][0]:.2f} s "
        f"({builds['euclidean'][1]:.1f}).",
    ]
    text = "\n".join(lines)
    print(text)
    stem = "surface_searchlight" if args.cv == "kfold" else "surface_searchlight_logo"
    write_result(HERE / "results" / f"{stem}.md", text)
    write_result(HERE / "results" / f"{stem}.json", json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

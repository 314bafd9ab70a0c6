"""Run-wise betas with large spheres (more voxels than training samples), side by side with
nilearn in one run.

The workload of run-wise condition betas: 8 runs x 4 conditions (32 samples, 4 classes),
leave one run out (28 training samples), 2 mm voxels, radius 6 mm (about 100-123 voxels a
sphere), svc. Here every sphere has more voxels than training samples, where this package
solves the Newton steps from the training samples' Gram matrix. fastsearchlight runs on
every sphere of a simulated 30 x 36 x 30 grid; nilearn (n_jobs=2) on a random subset,
scaled per sphere.

Usage::

    python benchmarks/runwise_betas.py [--nilearn-spheres 150]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
from _results import cpu_model, write_result

HERE = Path(__file__).resolve().parent


def dataset():
    from fastsearchlight.simulate import simulate_haxby_like

    return simulate_haxby_like(
        shape=(30, 36, 30), voxel_size=(2.0, 2.0, 2.0), n_runs=8, n_per_class_per_run=1,
        conditions=("a", "b", "c", "d"), n_regions=1, region_radius_mm=8.0, random_state=0,
    )  # fmt: skip


def main(argv=None) -> int:
    import nibabel as nib
    from nilearn.decoding import SearchLight as NilearnSearchLight
    from sklearn.model_selection import LeaveOneGroupOut

    from fastsearchlight import SearchLight

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nilearn-spheres", type=int, default=150)
    args = parser.parse_args(argv)
    load = os.getloadavg()
    ds = dataset()
    y, groups = ds.labels["labels"].to_numpy(), ds.labels["chunks"].to_numpy()
    common = dict(radius=6.0, cv=LeaveOneGroupOut(), estimator="svc", n_jobs=2)
    ours = SearchLight(mask_img=ds.mask_img, **common)
    t0 = time.perf_counter()
    ours.fit(ds.func_img, y, groups=groups)
    ours_s = time.perf_counter() - t0
    mask = np.asarray(ds.mask_img.dataobj) > 0
    rng = np.random.default_rng(0)
    voxels = np.argwhere(mask)
    pick = voxels[rng.choice(len(voxels), args.nilearn_spheres, replace=False)]
    process = np.zeros(mask.shape, np.uint8)
    process[tuple(pick.T)] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear's convergence warnings
        ref = NilearnSearchLight(
            ds.mask_img, process_mask_img=nib.Nifti1Image(process, ds.mask_img.affine), **common
        )
        t0 = time.perf_counter()
        ref.fit(ds.func_img, y, groups=groups)
        nilearn_s = time.perf_counter() - t0
        # the exact optimum, for agreement: liblinear's primal solver, tightly
        from sklearn.svm import LinearSVC

        tight = NilearnSearchLight(
            ds.mask_img, process_mask_img=nib.Nifti1Image(process, ds.mask_img.affine),
            **{**common, "estimator": LinearSVC(dual=False, tol=1e-10, max_iter=100000)},
        ).fit(ds.func_img, y, groups=groups)  # fmt: skip
    n = ours.n_elements_
    same_tight = np.isclose(ours.scores_[process > 0], tight.scores_[process > 0], rtol=0, atol=1e-12)
    nilearn_whole = nilearn_s / args.nilearn_spheres * n
    same = np.isclose(ours.scores_[process > 0], ref.scores_[process > 0], rtol=0, atol=1e-12)
    lines = [
        "# Run-wise betas, large spheres (d > n): side by side with nilearn",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average at start {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}.",
        "",
        f"Workload: {n} spheres of {ours.sphere_sizes_.mean():.0f} voxels on average (2 mm, radius 6 mm), "
        "32 samples (8 runs x 4 conditions), 4 classes, LeaveOneGroupOut, svc, n_jobs=2. nilearn "
        f"timed on {args.nilearn_spheres} random spheres and scaled per sphere.",
        "",
        "| | seconds (whole map) | spheres/s |",
        "|---|---|---|",
        f"| fastsearchlight | {ours_s:.1f} | {n / ours_s:.0f} |",
        f"| nilearn (est.) | {nilearn_whole:.0f} | {args.nilearn_spheres / nilearn_s:.1f} |",
        "",
        f"Speed ratio: {nilearn_whole / ours_s:.0f}x. Spheres with the same score as nilearn's "
        f"(liblinear's dual solver, default tolerance): {same.mean():.1%}; with a tightly solved "
        f"LinearSVC (primal, tol 1e-10): {same_tight.mean():.1%}.",
    ]
    text = "\n".join(lines)
    print(text)
    write_result(HERE / "results" / "runwise_betas.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

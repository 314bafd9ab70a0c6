"""Family-wise false-positive rates of the permutation schemes, measured on null data.

Simulates data sets with no signal that look like block-design fMRI: spatially smooth
noise (5 mm FWHM), AR(1) noise along time within runs, blocks of consecutive volumes of
one condition in runs (:func:`fastsearchlight.simulate.simulate_haxby_like` with
``design="blocked"``). On each, runs a permutation searchlight with each scheme and records
whether anything comes out significant at 0.05:

- voxel-level FWE (maximum statistic over spheres);
- cluster-level FWE (cluster size, cluster-forming threshold at the null's 0.001 quantile);
- TFCE FWE (E=0.5, H=2, 100 steps, the map minus the pooled null's mean).

A valid scheme rejects somewhere in at most 5% of the null data sets. Rates are given
with exact (Clopper-Pearson) 95% binomial intervals.

Usage::

    python benchmarks/null_error_rates.py                    # 200 data sets, both schemes
    python benchmarks/null_error_rates.py --datasets 20      # shorter
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from _results import cpu_model, write_result

HERE = Path(__file__).resolve().parent

#: the null data sets' design (one searchlight fit each is about a second on one core)
DESIGN = {
    "shape": (12, 14, 12), "voxel_size": (3.5, 3.75, 3.75), "n_runs": 6,
    "n_per_class_per_run": 16, "block_length": 8, "temporal_ar1": 0.6,
    "smoothness_fwhm_mm": 5.0, "design": "blocked", "n_regions": 0,
}  # fmt: skip
ESTIMATOR = "gnb"
RADIUS = 5.6


def one_dataset(seed: int, schemes, n_permutations: int) -> dict:
    """Whether each scheme rejects anywhere on the null data set ``seed``."""
    from sklearn.model_selection import LeaveOneGroupOut

    from fastsearchlight import SearchLight
    from fastsearchlight.simulate import simulate_haxby_like

    ds = simulate_haxby_like(**DESIGN, random_state=seed)
    y = ds.labels["labels"].to_numpy()
    groups = ds.labels["chunks"].to_numpy()
    out = {"seed": seed}
    for scheme in schemes:
        sl = SearchLight(
            mask_img=ds.mask_img, radius=RADIUS, estimator=ESTIMATOR, cv=LeaveOneGroupOut(),
            n_permutations=n_permutations, permute=scheme, random_state=seed, tfce=True,
        )  # fmt: skip
        sl.fit(ds.func_img, y, groups=groups)
        out[scheme] = {
            "voxel": bool((sl.p_fwe_ < 0.05).any()),
            "cluster": bool(any(c["p_fwe_cluster"] < 0.05 for c in sl.clusters_)),
        }
        out[scheme]["tfce"] = bool((sl.p_fwe_tfce_ < 0.05).any())
    return out


def interval(k: int, n: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 95% interval of a binomial proportion."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", type=int, default=200)
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--schemes", nargs="+", default=["blocks", "samples"])
    parser.add_argument("--n-jobs", type=int, default=2, help="data sets computed in parallel")
    parser.add_argument("--out", default=str(HERE / "results" / "null_error_rates.md"))
    args = parser.parse_args(argv)

    from joblib import Parallel, delayed

    load = os.getloadavg()
    t0 = time.perf_counter()
    rows = Parallel(n_jobs=args.n_jobs)(
        delayed(one_dataset)(seed, args.schemes, args.permutations) for seed in range(args.datasets)
    )
    seconds = time.perf_counter() - t0
    levels = [lvl for lvl in ("voxel", "cluster", "tfce") if lvl in rows[0][args.schemes[0]]]
    n = len(rows)
    lines = [
        "# Family-wise false-positive rates on null data",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.python_version()}; load "
        f"average at start {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}; {seconds:.0f} s in all.",
        "",
        f"Null data: {n} data sets, {DESIGN['shape']} grid of {DESIGN['voxel_size']} mm voxels, "
        f"{DESIGN['n_runs']} runs of {2 * DESIGN['n_per_class_per_run']} volumes in blocks of "
        f"{DESIGN['block_length']} (2 conditions, block order random within runs), AR(1) noise "
        f"rho = {DESIGN['temporal_ar1']}, spatial smoothness {DESIGN['smoothness_fwhm_mm']} mm "
        f"FWHM, no signal. Searchlight: {ESTIMATOR}, radius {RADIUS} mm, LeaveOneGroupOut, "
        f"{args.permutations} permutations per data set. Rejection: anything significant at "
        "FWE p < 0.05. 95% intervals: Clopper-Pearson.",
        "",
        "| scheme | "
        + " | ".join(f"{lvl} FWE: data sets rejecting | rate [95% CI]" for lvl in levels)
        + " |",
        "|---|" + "---|---|" * len(levels),
    ]
    summary = {"design": DESIGN, "datasets": n, "permutations": args.permutations, "rates": {}}
    for scheme in args.schemes:
        cells = []
        for lvl in levels:
            k = sum(r[scheme][lvl] for r in rows)
            lo, hi = interval(k, n)
            cells += [f"{k} / {n}", f"{k / n:.3f} [{lo:.3f}, {hi:.3f}]"]
            summary["rates"].setdefault(scheme, {})[lvl] = {"rejecting": k, "rate": k / n, "ci95": [lo, hi]}
        lines.append(f"| {scheme} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    write_result(Path(args.out), text)
    write_result(Path(args.out).with_suffix(".json"), json.dumps({**summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

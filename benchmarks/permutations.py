"""Permutation-test timings on the whole-brain, Haxby-sized workload (issue 4).

Runs ``SearchLight(n_permutations=N)`` on the simulated whole brain of
:func:`fastsearchlight.simulate.simulate_haxby_like` (40 x 64 x 64, ~44,000 spheres,
216 volumes, 12 runs, radius 5.6 mm, KFold(4), labels of single volumes permuted within runs,
as the simulated design is randomised volume by volume), each
configuration in its own process so that its peak memory is its own, and prints a table.

Usage::

    python benchmarks/permutations.py                       # svc x 100, gnb x 1000, lda x 1000
    python benchmarks/permutations.py --runs svc:10 gnb:50  # shorter runs (estimator:permutations)
    python benchmarks/permutations.py --quick               # small grid, smoke test
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _results import write_result

HERE = Path(__file__).resolve().parent


def measure(estimator: str, n_perm: int, quick: bool, n_jobs: int) -> dict:
    from sklearn.model_selection import KFold

    from fastsearchlight import SearchLight
    from fastsearchlight.simulate import simulate_haxby_like

    ds = simulate_haxby_like(shape=(16, 24, 24) if quick else (40, 64, 64), random_state=0)
    y = ds.labels["labels"].to_numpy()
    groups = ds.labels["chunks"].to_numpy()
    sl = SearchLight(mask_img=ds.mask_img, radius=5.6, cv=KFold(4), estimator=estimator,
                     n_permutations=n_perm, n_jobs=n_jobs, random_state=0,
                     permute="samples")  # fmt: skip
    t0 = time.perf_counter()
    sl.fit(ds.func_img, y, groups=groups)
    seconds = time.perf_counter() - t0
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024.0  # fmt: skip
    return {
        "estimator": estimator, "permutations": n_perm, "spheres": int(sl.n_elements_),
        "seconds": seconds, "searchlight_s": sl.timings_["searchlight"],
        "permutations_s": sl.timings_.get("permutations", 0.0), "peak_rss_mb": rss,
        "fwe_significant": int((sl.p_fwe_ < 0.05).sum()),
        "truth_voxels": int((np.asarray(ds.truth_img.dataobj) > 0).sum()),
        "n_jobs": n_jobs,
    }  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", nargs="+", default=["svc:100", "gnb:1000", "lda:1000"])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.quick, args.n_jobs)))
        return 0
    sys.path.insert(0, str(HERE))
    from run_benchmarks import machine

    info = machine()
    rows = []
    for spec in args.runs:
        est, n = spec.split(":")
        cmd = [sys.executable, __file__, "--one", est, n, "--n-jobs", str(args.n_jobs)]
        cmd += ["--quick"] if args.quick else []
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(
            f"{est} x {n}: {r['seconds']:.1f} s, peak {r['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True
        )
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores; load average at start "
        f"{', '.join(f'{x:.2f}' for x in info['load_average_at_start'])}; numpy {info['numpy']}.",
        "",
        f"Workload: {rows[0]['spheres']} spheres, 216 volumes, radius 5.6 mm, KFold(4), labels "
        f"of single volumes permuted within 12 runs, null maps in float64, n_jobs={args.n_jobs}.",
        "",
        "| estimator | permutations | total s | s per permutation | sphere fits/s | peak RSS (MB) | FWE-significant spheres |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = r["permutations_s"] / max(1, r["permutations"])
        fits = r["spheres"] * 4 * r["permutations"] / max(1e-9, r["permutations_s"])
        lines.append(f"| {r['estimator']} | {r['permutations']} | {r['seconds']:.0f} | {per:.2f} | "
                     f"{fits:,.0f} | {r['peak_rss_mb']:.0f} | {r['fwe_significant']} |")  # fmt: skip
    text = "\n".join(lines)
    print(text)
    write_result(HERE / "results" / ("permutations-quick.md" if args.quick else "permutations.md"), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Cost of distribution: a permutation test in-process, in joblib processes and on a dask cluster.

Workload: a volume simulated by :func:`fastsearchlight.simulate.simulate_haxby_like`
(216 volumes, two classes in 12 runs), radius 5.6 mm, KFold(4), the observed labels plus
``--permutations`` label permutations (``permutation_batch=32``), for each estimator:

- in-process (``n_jobs=1``);
- joblib processes (``backend="loky"``, ``n_jobs=2``);
- a ``LocalCluster`` of 2 worker processes of 1 thread each on the loopback interface
  (``backend="dask"``), started once before the timings (its start-up is reported apart).

The three results are checked to be identical (scores, null maps, p-values). The overhead of
distribution is the dask time minus the joblib time (same parallelism), and the dask time
over the in-process time.

Usage::

    python benchmarks/dask_overhead.py                              # 20 x 32 x 32, 50 permutations
    python benchmarks/dask_overhead.py --shape 40 64 64             # the simulated whole brain
    python benchmarks/dask_overhead.py --estimators gnb --permutations 20 --out overhead.md
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
from _results import cpu_model


def machine() -> str:
    cpu = cpu_model()
    import dask
    import distributed
    import sklearn

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, load average at start {load}; Python "
        f"{platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"dask {dask.__version__}, distributed {distributed.__version__}"
    )


def fit(ds, estimator: str, n_permutations: int, **kw):
    from sklearn.model_selection import KFold

    from fastsearchlight import SearchLight

    y = ds.labels["labels"].to_numpy()
    groups = ds.labels["chunks"].to_numpy()
    sl = SearchLight(mask_img=ds.mask_img, radius=5.6, cv=KFold(4), estimator=estimator,
                     n_permutations=n_permutations, random_state=0, keep_null=True, **kw)  # fmt: skip
    t0 = time.perf_counter()
    sl.fit(ds.func_img, y, groups=groups)
    return sl, time.perf_counter() - t0


def identical(a, b) -> bool:
    return all(
        np.array_equal(getattr(a, k), getattr(b, k))
        for k in ("fold_scores_", "null_scores_", "p_values_", "p_fwe_")
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", type=int, nargs=3, default=[20, 32, 32], metavar=("X", "Y", "Z"))
    parser.add_argument("--permutations", type=int, default=50)
    parser.add_argument("--estimators", nargs="+", default=["gnb", "svc"])
    parser.add_argument("--out", type=Path, default=None, help="also write the table here (markdown)")
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    from fastsearchlight.simulate import simulate_haxby_like

    info = machine()
    ds = simulate_haxby_like(shape=tuple(args.shape), random_state=0)
    n_spheres = int(np.asarray(ds.mask_img.dataobj).astype(bool).sum())
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)  # fmt: skip
    client = Client(cluster)
    client.wait_for_workers(2)
    startup = time.perf_counter() - t0
    # one small fit on the cluster and in joblib processes first, so that neither the
    # workers' imports nor the start of joblib's process pool is timed
    warm = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0, random_state=0)
    for estimator in args.estimators:
        fit(warm, estimator, 2, backend="dask", scheduler=client)
        fit(warm, estimator, 2, n_jobs=2)

    rows = []
    try:
        for estimator in args.estimators:
            serial, t_serial = fit(ds, estimator, args.permutations)
            loky, t_loky = fit(ds, estimator, args.permutations, n_jobs=2)
            on_dask, t_dask = fit(ds, estimator, args.permutations, backend="dask", scheduler=client)
            same = identical(serial, loky) and identical(serial, on_dask)
            rows.append(
                f"| {estimator} | {t_serial:.1f} | {t_loky:.1f} | {t_dask:.1f} | "
                f"{t_dask - t_loky:+.1f} s ({t_dask / t_loky:.2f}x) | {t_dask / t_serial:.2f}x | "
                f"{'yes' if same else 'NO'} |"
            )
            print(rows[-1], flush=True)
    finally:
        client.close()
        cluster.close()

    x_mb = ds.labels.shape[0] * n_spheres * 8 / 2**20
    lines = [
        f"Machine: {info}.",
        "",
        f"Workload: {'x'.join(map(str, args.shape))} grid, {n_spheres} spheres, {ds.labels.shape[0]} "
        f"volumes ({x_mb:.0f} MB of data sent to each worker once per fit), radius 5.6 mm, KFold(4), "
        f"observed labels + {args.permutations} permutations (batches of 32). LocalCluster of 2 "
        f"workers x 1 thread started in {startup:.1f} s (not counted below). One run each; "
        "other processes share the machine, so the timings are noisy.",
        "",
        "| estimator | in-process s | joblib n_jobs=2 s | dask 2 workers s | dask - joblib | "
        "dask / in-process | identical results |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    text = "\n".join(lines)
    print()
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

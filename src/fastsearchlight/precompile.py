"""Compile the package's kernels ahead of their first use, several at a time.

The compiled kernels (numba, ``cache=True``) are compiled on their first call after an
install and cached on disk; a first fit of ``svc`` then waits about a minute, and the other
estimators 25-40 s each. :func:`precompile` (``fastsearchlight precompile``) makes those
first calls on a tiny simulated data set, one group of kernels per process, so that they
compile side by side on a machine's cores: before a study, when building a container or a
cluster's environment, or before the test suite. With the cache filled it only loads it.

Which kernels a call compiles depends on its types (data read-only in worker processes,
array layouts), not on the path the data take at run time, so each group makes the calls an
analysis makes: in this process and in worker processes, with and without permutations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial

__all__ = ["GROUPS", "precompile"]


def _dataset():
    """A small simulated volume, its mask, a process mask of 12 voxels (the calls' types, not
    their size, decide what compiles), labels and runs."""
    import nibabel as nib
    import numpy as np

    from .simulate import simulate_haxby_like

    ds = simulate_haxby_like(shape=(9, 10, 9), n_regions=1, region_radius_mm=5.0, random_state=3)
    inside = np.argwhere(np.asarray(ds.mask_img.dataobj) > 0)
    process = np.zeros(ds.mask_img.shape, np.uint8)
    process[tuple(inside[len(inside) // 2 :][:12].T)] = 1
    process = nib.Nifti1Image(process, ds.mask_img.affine)
    return ds.func_img, ds.mask_img, process, ds.labels["labels"].to_numpy(), ds.labels["chunks"].to_numpy()


def _fits(estimator: str, radii=(4.0, 12.0), n_permutations: int = 0) -> None:
    """Fits of ``estimator`` in this process and with two workers: at ``radii`` on all
    samples (fewer voxels than training samples, and more), on 40 samples (more), and on
    values so large that the SVM's normal equations give way to its SVD path."""
    import warnings

    import nibabel as nib
    import numpy as np
    from sklearn.model_selection import KFold

    from .searchlight import SearchLight

    img, mask, process, y, _ = _dataset()
    data = np.asarray(img.dataobj, dtype=np.float64)
    few = nib.Nifti1Image(data[..., :40], img.affine)
    large = nib.Nifti1Image(data * 1e5, img.affine)
    runs = [(img, y, r) for r in radii] + [(few, y[:40], radii[-1]), (large, y, radii[0])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n_jobs in (1, 2):
            for data_img, labels, radius in runs:
                SearchLight(mask_img=mask, process_mask_img=process, radius=radius, estimator=estimator, cv=KFold(4),
                            n_jobs=n_jobs, n_permutations=n_permutations, random_state=0).fit(data_img, labels)  # fmt: skip


def _statistics() -> None:
    """TFCE, clusters, the surface discs and the RSA distances."""
    import numpy as np
    from scipy import ndimage

    from .rsa import RSASearchLight
    from .spaces.surface import load_mesh, vertex_discs
    from .stats import tfce

    tfce(np.random.default_rng(0).standard_normal((6, 6, 6)), ndimage.generate_binary_structure(3, 1))
    vertex_discs(load_mesh("fsaverage5").parts["left"], 4.0, "geodesic")
    img, mask, process, y, runs = _dataset()
    for n_jobs in (1, 2):
        for method, noise in (("crossnobis", "shrinkage_diag"), ("mahalanobis", "diag"), ("euclidean", None)):
            RSASearchLight(mask_img=mask, process_mask_img=process, radius=6.0, method=method, noise=noise,
                           n_jobs=n_jobs).fit(img, y, runs=runs)  # fmt: skip


#: groups of kernels, each compiled in one process: name -> the calls that compile them,
#: longest first (with an empty cache, on a 2-core machine: about a minute each, the
#: statistics about 20 s)
GROUPS: dict[str, tuple[Callable[[], None], ...]] = {
    "ridge_lda": tuple(
        partial(_fits, name) for name in ("ridge_classifier", "ridge_classifier_fixed", "lda")
    ),
    "logistic": (partial(_fits, "logistic_regression"), partial(_fits, "logistic", radii=(4.0,))),
    "svc": (partial(_fits, "svc", n_permutations=2),),
    "correlation_statistics": (partial(_fits, "correlation", n_permutations=2), _statistics),
}


def precompile(groups: Sequence[str] | None = None, n_jobs: int = 2) -> dict[str, float]:
    """Compile (or load from the cache) the kernels of ``groups``, ``n_jobs`` processes at a
    time.

    Parameters
    ----------
    groups : sequence of str or None
        Names of :data:`GROUPS` (None: all).
    n_jobs : int
        Processes compiling at once (each compiles one group, then exits).

    Returns
    -------
    dict
        Seconds each group took, in its process.
    """
    names = list(GROUPS) if groups is None else list(groups)
    unknown = sorted(set(names) - set(GROUPS))
    if unknown:
        raise ValueError(f"Unknown kernel groups {unknown}; use some of {list(GROUPS)}.")
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer, got {n_jobs!r}.")
    import subprocess
    import sys
    import tempfile

    waiting, running, seconds = list(names), {}, {}
    while waiting or running:
        while waiting and len(running) < n_jobs:  # longest first
            name = waiting.pop(0)
            # outputs to files, not pipes: a pipe not read until the end could fill and stall it
            out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
            process = subprocess.Popen(
                [sys.executable, "-m", __name__, name], stdout=out, stderr=err, text=True
            )
            running[name] = process, out, err
        for name, (process, out, err) in list(running.items()):
            if process.poll() is None:
                continue
            del running[name]
            out.seek(0)
            err.seek(0)
            printed, errors = out.read(), err.read()
            out.close()
            err.close()
            if process.returncode != 0:
                for other, _, _ in running.values():
                    other.kill()
                raise RuntimeError(f"compiling the kernels of {name!r} failed:\n{errors.strip()}")
            seconds[name] = float(printed.split()[-1])
        time.sleep(0.05)
    return {name: seconds[name] for name in names}


if __name__ == "__main__":  # one group, in its own process (see precompile)
    import sys

    start = time.perf_counter()
    for call in GROUPS[sys.argv[1]]:
        call()
    print(time.perf_counter() - start)

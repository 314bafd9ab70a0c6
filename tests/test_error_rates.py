"""False-positive rates of the permutation schemes on null data that look like block-design
fMRI (a small, time-bounded version of ``benchmarks/null_error_rates.py``)."""

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut

from fastsearchlight import SearchLight
from fastsearchlight.simulate import simulate_haxby_like

N_SETS = 24


def rejects(seed: int, permute: str) -> dict:
    ds = simulate_haxby_like(
        shape=(10, 12, 10), n_runs=6, n_per_class_per_run=16, block_length=8, design="blocked",
        temporal_ar1=0.6, n_regions=0, random_state=seed,
    )  # fmt: skip
    sl = SearchLight(mask_img=ds.mask_img, radius=5.6, estimator="gnb", cv=LeaveOneGroupOut(),
                     n_permutations=50, permute=permute, random_state=seed, tfce=True)  # fmt: skip
    sl.fit(ds.func_img, ds.labels["labels"].to_numpy(), groups=ds.labels["chunks"].to_numpy())
    return {
        "voxel": bool((sl.p_fwe_ < 0.05).any()),
        "cluster": any(c["p_fwe_cluster"] < 0.05 for c in sl.clusters_),
        "tfce": bool((sl.p_fwe_tfce_ < 0.05).any()),
    }


def test_block_permutations_hold_the_level_where_single_volumes_do_not():
    blocks = [rejects(seed, "blocks") for seed in range(N_SETS)]
    samples = [rejects(seed, "samples") for seed in range(N_SETS)]
    for level in ("voxel", "cluster", "tfce"):
        k_blocks = sum(r[level] for r in blocks)
        k_samples = sum(r[level] for r in samples)
        # at a true rate of 5%, 4 or more of 24 happens with probability 3%
        assert k_blocks <= 3, (level, k_blocks)
        # single volumes of autocorrelated blocks are not exchangeable: a null far too narrow
        assert k_samples >= 10, (level, k_samples)
    assert np.mean([r["voxel"] for r in samples]) > 0.4

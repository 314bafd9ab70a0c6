"""The permutation test of model fit: against brute-force recomputation, and on null data."""

import numpy as np
import pytest
from rsa_cases import design, volume

from fastsearchlight import RSASearchLight
from fastsearchlight.rsa.evaluation import compare_rdms
from fastsearchlight.rsa.permutation import condition_permutations


def _relabelled_fit(sl, img, mask, conditions, runs, perm):
    """The RDMs recomputed from the data with condition c relabelled perm[c]."""
    codes = np.searchsorted(sl.conditions_, conditions)
    new = sl.conditions_[perm[codes]]
    return RSASearchLight(mask, radius=sl.radius, method=sl.method, noise=sl.noise).fit(img, new, runs).rdms_


@pytest.mark.parametrize("n_conditions,n_permutations,method", [(4, 1000, "spearman"), (5, 25, "tau-a")])
def test_null_maps_and_p_values_equal_brute_force(n_conditions, n_permutations, method):
    conditions, runs = design(n_conditions=n_conditions, n_runs=3, per_run=2, seed=4)
    img, mask = volume(conditions, shape=(6, 6, 5), seed=4, signal=0.4)
    sl = RSASearchLight(mask, radius=4.0, method="crossnobis", noise="diag").fit(img, conditions, runs)
    rng = np.random.default_rng(1)
    models = rng.standard_normal((2, sl.rdms_.shape[1]))
    res = sl.permutation_test(models, method, n_permutations=n_permutations, random_state=3, keep_null=True)
    assert res.exhaustive == (n_conditions == 4)
    n_perm = len(res.permutations)
    assert n_perm == (24 if n_conditions == 4 else n_permutations)
    null = np.stack([
        compare_rdms(_relabelled_fit(sl, img, mask, conditions, runs, perm), models, method)
        for perm in res.permutations
    ], axis=1)  # fmt: skip
    np.testing.assert_allclose(res.null, null, rtol=0, atol=1e-10)
    observed = compare_rdms(sl.rdms_, models, method)
    np.testing.assert_allclose(res.scores, observed, rtol=0, atol=1e-12)
    count = np.sum(null >= observed[:, None, :] - 1e-12, axis=1)
    exceed = np.sum(null.max(axis=2)[:, :, None] >= observed[:, None, :] - 1e-12, axis=1)
    if res.exhaustive:
        np.testing.assert_array_equal(res.p_values, count / n_perm)
        np.testing.assert_array_equal(res.p_fwe, exceed / n_perm)
    else:
        np.testing.assert_array_equal(res.p_values, (1 + count) / (1 + n_perm))
        np.testing.assert_array_equal(res.p_fwe, (1 + exceed) / (1 + n_perm))
    np.testing.assert_allclose(res.max_null, null.max(axis=2), rtol=0, atol=1e-12)


def test_enumeration():
    perms, exhaustive = condition_permutations(3, 6, 0)
    assert exhaustive and len({tuple(p) for p in perms}) == 6 and list(perms[0]) == [0, 1, 2]
    perms, exhaustive = condition_permutations(3, 5, 0)
    assert not exhaustive and perms.shape == (5, 3)


def test_family_wise_error_on_null_data():
    """On data without condition effects, the FWE test rejects anywhere in at most 5% of
    the data sets (binomial bound); with planted patterns that follow the model, it finds
    them."""
    conditions, runs = design(n_conditions=5, n_runs=3, per_run=2, seed=0)
    n_sets, rejections = 60, 0
    model = None
    for seed in range(n_sets):
        img, mask = volume(conditions, shape=(6, 6, 5), seed=100 + seed, signal=0.0)
        sl = RSASearchLight(mask, radius=4.0, method="crossnobis").fit(img, conditions, runs)
        if model is None:
            model = np.random.default_rng(0).standard_normal((1, sl.rdms_.shape[1]))
        res = sl.permutation_test(model, "spearman", n_permutations=99, random_state=seed)
        rejections += bool(np.any(res.p_fwe <= 0.05))
    # P(Binomial(60, 0.05) >= 9) < 0.005
    assert rejections <= 8, f"{rejections} / {n_sets} null data sets rejected"
    geometry = np.random.default_rng(1).standard_normal((5, 3))
    img, mask = volume(conditions, shape=(6, 6, 5), seed=7, signal=3.0, geometry=geometry)
    sl = RSASearchLight(mask, radius=4.0, method="crossnobis").fit(img, conditions, runs)
    rows, cols = np.triu_indices(5, 1)
    truth = np.sum((geometry[rows] - geometry[cols]) ** 2, axis=1)[None]
    res = sl.permutation_test(truth, "spearman", n_permutations=99, random_state=0)
    assert np.mean(res.p_values <= 0.05) > 0.5 and res.p_fwe.min() <= 0.05

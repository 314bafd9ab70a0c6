"""Model fit against rsatoolbox's rdm.compare."""

import numpy as np
import pytest

from fastsearchlight.rsa.evaluation import COMPARISONS, check_models, compare_rdms

pytest.importorskip("rsatoolbox")


def _reference(rdms, models, method):
    from rsatoolbox.rdm import RDMs, compare

    return compare(RDMs(models), RDMs(rdms), method=method)


@pytest.fixture(scope="module")
def rdms_and_models():
    rng = np.random.default_rng(5)
    n_pairs = 28
    rdms = rng.standard_normal((60, n_pairs)).astype(np.float32)
    rdms[:5] = np.round(rdms[:5])  # ties within an RDM
    models = np.vstack([
        rng.standard_normal(n_pairs),
        rng.integers(0, 3, n_pairs),  # a categorical model: many ties
        np.arange(n_pairs) % 2,
        -np.arange(n_pairs, dtype=float),
    ]).astype(float)  # fmt: skip
    return rdms, models


@pytest.mark.parametrize("method", COMPARISONS)
def test_compare_matches_rsatoolbox(rdms_and_models, method):
    rdms, models = rdms_and_models
    ours = compare_rdms(rdms, models, method)
    ref = _reference(rdms.astype(np.float64), models, method)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", COMPARISONS)
def test_constant_rdm(method):
    """A constant RDM (zero norm once centred) fits 0 for "corr" and "spearman", as
    rsatoolbox gives it compared alone; rsatoolbox 0.3.2 garbles the other RDMs' fits when
    such an RDM is compared with them (np.putmask fills by position), so the reference is
    computed one RDM at a time here."""
    rng = np.random.default_rng(0)
    rdms = np.vstack([np.full(10, 2.0), rng.standard_normal(10), np.zeros(10)])
    models = rng.standard_normal((2, 10))
    ours = compare_rdms(rdms, models, method)
    for k in range(len(rdms)):
        np.testing.assert_allclose(ours[:, k], _reference(rdms[k : k + 1], models, method)[:, 0], atol=1e-10)


def test_nan_rdms_give_nan():
    rdms = np.array([[1.0, np.nan, 2.0], [1.0, 3.0, 2.0]])
    out = compare_rdms(rdms, np.array([[1.0, 2.0, 3.0]]), "spearman")
    assert np.isnan(out[0, 0]) and np.isfinite(out[0, 1])


def test_check_models():
    vector = np.arange(1.0, 7.0)
    square = np.zeros((4, 4))
    square[np.triu_indices(4, 1)] = vector
    np.testing.assert_array_equal(check_models(square + square.T, 6), [vector])
    np.testing.assert_array_equal(check_models([square + square.T] * 2, 6), [vector, vector])
    np.testing.assert_array_equal(check_models([1, 2, 3], 3), [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match=r"model_rdms must have shape \(n_models, 3\)"):
        check_models(np.ones((2, 4)), 3)
    with pytest.raises(ValueError, match="NaN"):
        check_models([1.0, np.nan, 2.0], 3)

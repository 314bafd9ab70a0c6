"""RSASearchLight: every sphere's RDM against rsatoolbox, maps, executors, bad inputs."""

import nibabel as nib
import numpy as np
import pytest
from rsa_cases import CASES, assert_close_to_scale, design, reference_rdm, sphere_data, volume
from sklearn.base import clone

from fastsearchlight import RSASearchLight


@pytest.fixture(scope="module")
def dataset():
    conditions, runs = design(n_conditions=5, n_runs=4, per_run=2, seed=1)
    img, mask = volume(conditions, seed=1)
    return img, mask, conditions, runs


@pytest.mark.parametrize("method,noise", CASES)
def test_every_sphere_matches_rsatoolbox(dataset, method, noise):
    pytest.importorskip("rsatoolbox")
    img, mask, conditions, runs = dataset
    sl = RSASearchLight(mask, radius=5.0, method=method, noise=noise).fit(img, conditions, runs)
    assert sl.rdms_.dtype == np.float32 and sl.rdms_.shape == (sl.n_elements_, 10)
    assert list(sl.conditions_) == sorted(set(conditions))
    rng = np.random.default_rng(0)
    for sphere in rng.choice(sl.n_elements_, 25, replace=False):
        ref, _ = reference_rdm(sphere_data(sl, img, sphere), conditions, runs, method, noise)
        assert_close_to_scale(sl.rdms_[sphere], ref, 1e-6)


def test_rows_pairs_and_maps(dataset):
    img, mask, conditions, runs = dataset
    process = np.zeros(mask.shape, dtype=np.uint8)
    process[2:4, 3:6, 2] = 1
    sl = RSASearchLight(mask, process_mask_img=nib.Nifti1Image(process, mask.affine), radius=4.0,
                        method="euclidean").fit(img, conditions)  # fmt: skip
    np.testing.assert_array_equal(sl.neighbourhoods_.seeds_ijk, np.argwhere(process))
    np.testing.assert_array_equal(sl.pairs_, np.column_stack(np.triu_indices(5, 1)))
    models = np.random.default_rng(2).standard_normal((2, 10))
    fits = sl.model_fit(models, "corr")
    maps = sl.evaluate(models, "corr")
    assert len(maps) == 2 and maps[0].shape == mask.shape
    np.testing.assert_allclose(maps[1].get_fdata()[process > 0], fits[1])
    assert np.all(maps[0].get_fdata()[process == 0] == 0)
    np.testing.assert_array_equal(maps[0].affine, mask.affine)


def test_executors_and_budget_give_the_same_rdms(dataset):
    img, mask, conditions, runs = dataset
    kw = dict(radius=5.0, method="crossnobis", noise="shrinkage_diag")
    ref = RSASearchLight(mask, **kw).fit(img, conditions, runs).rdms_
    tiny = RSASearchLight(mask, memory_mb=0.01, **kw).fit(img, conditions, runs).rdms_
    two = RSASearchLight(mask, n_jobs=2, **kw).fit(img, conditions, runs).rdms_
    np.testing.assert_array_equal(tiny, ref)
    np.testing.assert_array_equal(two, ref)


def _fit(dataset, conditions=None, runs="same", radius=5.0, **params):
    img, mask, conds, rns = dataset
    return RSASearchLight(mask, radius=radius, **params).fit(
        img, conds if conditions is None else conditions, rns if isinstance(runs, str) else runs
    )


@pytest.mark.parametrize(
    "params,change,match",
    [
        ({"method": "crossnobis"}, {"runs": None}, "crossnobis' needs runs"),
        ({"method": "euclidean", "noise": "diag"}, {}, "noise='diag' applies to method='mahalanobis'"),
        ({"method": "cosine"}, {}, "method must be"),
        ({"noise": "ledoit"}, {}, "noise must be"),
        ({"method": "crossnobis"}, {"runs": np.ones(40)}, "at least two runs"),
        ({"method": "euclidean"}, {"conditions": np.zeros(40)}, "at least two"),
        ({"method": "euclidean"}, {"conditions": np.zeros(39)}, "conditions has 39 entries"),
        (
            {"method": "mahalanobis", "noise": "full"},
            {"radius": 7.0},
            "noise='full' needs spheres of at most 35",
        ),
    ],
)
def test_bad_inputs(dataset, params, change, match):
    with pytest.raises(ValueError, match=match):
        _fit(dataset, **change, **params)


def test_condition_missing_from_a_run(dataset):
    img, mask, conditions, runs = dataset
    conditions = conditions.copy()
    conditions[(runs == 2) & (conditions == "a")] = "b"
    with pytest.raises(ValueError, match="condition 'a' has no sample in run 2"):
        RSASearchLight(mask, radius=5.0).fit(img, conditions, runs)
    with pytest.raises(ValueError, match="same number of samples"):
        RSASearchLight(mask, radius=5.0, method="mahalanobis", noise="diag").fit(img, conditions, runs)
    # methods without folds take the runs (an empty (run, condition) cell) and ignore them
    pytest.importorskip("rsatoolbox")
    sl = RSASearchLight(mask, radius=5.0, method="euclidean").fit(img, conditions, runs)
    for sphere in (0, 17, 40):
        ref, _ = reference_rdm(sphere_data(sl, img, sphere), conditions, runs, "euclidean", None)
        assert_close_to_scale(sl.rdms_[sphere], ref, 1e-6)


def test_constant_voxel_with_noise(dataset):
    img, mask, conditions, runs = dataset
    data = img.get_fdata(dtype=np.float32)
    data[3, 3, 3] = 5.0
    flat = nib.Nifti1Image(data, img.affine)
    with pytest.raises(ValueError, match=r"1 mask voxel\(s\) \(e.g. voxel \(3, 3, 3\)\) do not vary"):
        RSASearchLight(mask, radius=5.0, noise="shrinkage_diag").fit(flat, conditions, runs)
    sl = RSASearchLight(mask, radius=5.0, noise="shrinkage_eye").fit(flat, conditions, runs)
    assert np.all(np.isfinite(sl.rdms_))


def test_dask_backend_gives_the_same_rdms(dataset):
    distributed = pytest.importorskip("distributed")
    img, mask, conditions, runs = dataset
    kw = dict(radius=5.0, method="crossnobis", noise="shrinkage_eye")
    ref = RSASearchLight(mask, **kw).fit(img, conditions, runs).rdms_
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        est = RSASearchLight(mask, backend="dask", scheduler=client, **kw)
        assert clone(est).scheduler is client and clone(est).get_params()["noise"] == "shrinkage_eye"
        got = est.fit(img, conditions, runs).rdms_
    np.testing.assert_array_equal(got, ref)

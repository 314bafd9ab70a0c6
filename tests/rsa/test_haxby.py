"""On the real Haxby 2001 data (whole brain at 25 mm): conditions are the 8 categories,
runs the 12 chunks; every sphere's RDM and every model fit against rsatoolbox."""

import numpy as np
import pytest
from rsa_cases import BRAIN25_DIR, assert_close_to_scale, reference_rdm, sphere_data

from fastsearchlight import RSASearchLight
from fastsearchlight.rsa.evaluation import COMPARISONS

pytest.importorskip("rsatoolbox")


@pytest.fixture(scope="module")
def haxby():
    if not (BRAIN25_DIR / "bold.nii.gz").exists():
        pytest.skip(f"real data not found in {BRAIN25_DIR}")
    import nibabel as nib
    import pandas as pd
    from nilearn.image import index_img

    labels = pd.read_csv(BRAIN25_DIR / "labels.txt", sep=" ")
    keep = (labels["labels"] != "rest").to_numpy()
    func = index_img(str(BRAIN25_DIR / "bold.nii.gz"), keep)
    func = nib.Nifti1Image(np.asarray(func.dataobj, dtype=np.float32), func.affine)
    return (
        func,
        nib.load(BRAIN25_DIR / "mask_brain.nii.gz"),
        labels["labels"].to_numpy()[keep],
        labels["chunks"].to_numpy()[keep],
    )


@pytest.mark.parametrize("method,noise", [("crossnobis", "shrinkage_diag"), ("correlation", None)])
def test_haxby_rdms_and_model_fits_match_rsatoolbox(haxby, method, noise):
    from rsatoolbox.rdm import RDMs, compare

    func, mask, conditions, runs = haxby
    sl = RSASearchLight(mask, radius=40.0, method=method, noise=noise).fit(func, conditions, runs)
    assert len(sl.conditions_) == 8 and sl.rdms_.shape == (129, 28)
    assert sl.sphere_sizes_.max() > 10
    for sphere in range(sl.n_elements_):
        ref, order = reference_rdm(sphere_data(sl, func, sphere), conditions, runs, method, noise)
        assert list(order) == list(sl.conditions_)
        assert_close_to_scale(sl.rdms_[sphere], ref, 1e-6)
    # models: a face/house/other-objects categorical model and a random one
    faces = np.isin(sl.conditions_, ["face", "cat"]).astype(float)
    categorical = (faces[sl.pairs_[:, 0]] != faces[sl.pairs_[:, 1]]).astype(float)
    models = np.vstack([categorical, np.random.default_rng(0).random(28)])
    for comparison in COMPARISONS:
        ref = compare(RDMs(models), RDMs(sl.rdms_.astype(np.float64)), method=comparison)
        np.testing.assert_allclose(sl.model_fit(models, comparison), ref, rtol=0, atol=1e-10)

"""The public plotting API: cuts through the strongest result shared by every figure, a
sequential colormap from 0 for -log10 p, the histogram of sphere scores."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from fastsearchlight import plotting

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def blob():
    rng = np.random.default_rng(0)
    shape = (12, 14, 10)
    ii, jj, kk = np.indices(shape)
    data = (
        0.5
        + 0.02 * rng.standard_normal(shape)
        + 0.4 * np.exp(-((ii - 8) ** 2 + (jj - 4) ** 2 + (kk - 6) ** 2) / 4)
    )
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-18, -20, -15]
    return nib.Nifti1Image(data.astype(np.float32), affine)


def test_map_cuts_are_nilearns_through_the_strongest_result(blob):
    from nilearn.plotting import find_xyz_cut_coords

    mode, coords = plotting.map_cuts(blob)
    assert mode == "ortho"
    np.testing.assert_allclose(coords, find_xyz_cut_coords(blob))
    peak = nib.affines.apply_affine(blob.affine, (8, 4, 6))
    assert np.all(np.abs(np.asarray(coords) - peak) <= 3.0)  # within a voxel of the planted peak


def test_single_slice_is_cut_in_its_plane():
    img = nib.Nifti1Image(np.ones((8, 6, 1), np.float32), np.diag([2.0, 2.0, 4.0, 1.0]))
    assert plotting.map_cuts(img) == ("z", [0.0])


def test_figures_share_cuts_and_logp_is_sequential(blob, tmp_path, monkeypatch):
    import nilearn.plotting

    calls = []
    original = nilearn.plotting.plot_img

    def spy(img, **kwargs):
        calls.append(kwargs)
        return original(img, **kwargs)

    monkeypatch.setattr(nilearn.plotting, "plot_img", spy)
    cuts = plotting.map_cuts(blob)
    logp = nib.Nifti1Image(np.asarray(blob.dataobj) * 6, blob.affine)
    plotting.plot_searchlight(blob, blob, tmp_path / "map.png", chance=0.5, cuts=cuts)
    plotting.plot_logp(logp, blob, tmp_path / "logp.png", cuts=cuts)
    plotting.plot_f_scores(logp, None, tmp_path / "f.png")  # its own cuts: through its strongest result
    assert calls[0]["cut_coords"] == calls[1]["cut_coords"] == cuts[1]
    assert calls[2]["cut_coords"] == plotting.map_cuts(logp)[1]
    assert calls[1]["cmap"] == calls[2]["cmap"] == "viridis" and calls[1]["vmin"] == 0.0
    assert calls[0]["cmap"] == "inferno" and calls[0]["vmin"] == 0.5
    assert all(c["colorbar"] for c in calls) and calls[0]["bg_img"] is not None
    for name in ("map.png", "logp.png", "f.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE


def test_score_histogram(tmp_path):
    from matplotlib.image import imread

    scores = np.r_[np.random.default_rng(1).normal(0.5, 0.05, 300), np.nan]
    path = plotting.plot_score_histogram(scores, tmp_path / "h" / "hist.png", chance=0.5)
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.std() > 0.01
    with pytest.raises(ValueError, match="no finite value"):
        plotting.plot_score_histogram([np.nan], tmp_path / "x.png")

"""Figures, region table and HTML report (fastsearchlight.report), on small synthetic maps."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.affines import apply_affine

from fastsearchlight.report import (
    TOP_REGION_COLUMNS,
    plot_f_scores,
    plot_null_distribution,
    plot_searchlight,
    top_regions,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANCE = 0.5
BLOB_PEAK = (3, 4, 5)  # voxel of the planted peak in the volume
SMALL_PEAK = (8, 10, 1)  # a second, weaker blob


def _affine(sizes, origin):
    affine = np.diag([*sizes, 1.0])
    affine[:3, 3] = origin
    return affine


@pytest.fixture(scope="module")
def volume():
    """A (10, 12, 8) score map: chance-level noise, a strong blob and a weaker one."""
    shape = (10, 12, 8)
    affine = _affine((-2.0, 2.5, 3.0), (10.0, -20.0, -12.0))
    rng = np.random.default_rng(0)
    ii, jj, kk = np.indices(shape)
    mask = np.ones(shape, dtype=bool)
    mask[0] = False  # a face of the grid outside the searched voxels
    scores = CHANCE + 0.02 * rng.standard_normal(shape)
    d2 = (ii - BLOB_PEAK[0]) ** 2 + (jj - BLOB_PEAK[1]) ** 2 + (kk - BLOB_PEAK[2]) ** 2
    scores += 0.4 * np.exp(-d2 / 2.0)
    d2 = (ii - SMALL_PEAK[0]) ** 2 + (jj - SMALL_PEAK[1]) ** 2 + (kk - SMALL_PEAK[2]) ** 2
    scores += 0.25 * np.exp(-d2 / 0.5)
    scores = np.where(mask, scores, 0.0)
    mean = np.where(mask, 1000.0 + 50 * rng.standard_normal(shape), 0.0)
    f_map = np.where(mask, np.clip(20 * (scores - CHANCE), 0, None), 0.0)
    return {
        "scores": nib.Nifti1Image(scores.astype(np.float32), affine),
        "mean": nib.Nifti1Image(mean.astype(np.float32), affine),
        "f": nib.Nifti1Image(f_map.astype(np.float32), affine),
    }


@pytest.fixture(scope="module")
def single_slice():
    """A (40, 20, 1) map shaped like the Haxby slice, with a blob at voxel (25, 8, 0)."""
    shape = (40, 20, 1)
    affine = _affine((-3.1, 3.75, 3.75), (60.45, -35.625, 0.0))
    rng = np.random.default_rng(1)
    ii, jj, _ = np.indices(shape)
    mask = ((ii - 20) / 19) ** 2 + ((jj - 10) / 9.5) ** 2 < 1
    scores = CHANCE + 0.03 * rng.standard_normal(shape)
    scores += 0.35 * np.exp(-((ii - 25) ** 2 + (jj - 8) ** 2) / 3.0)
    scores = np.where(mask, scores, 0.0)
    mean = np.where(mask, 800.0 + 80 * rng.standard_normal(shape), 20.0)
    return {
        "scores": nib.Nifti1Image(scores.astype(np.float32), affine),
        "mean": nib.Nifti1Image(mean.astype(np.float32), affine),
        "f": nib.Nifti1Image(np.clip(30 * (scores - CHANCE), 0, None).astype(np.float32), affine),
        "peak": (25, 8, 0),
    }


def _check_png(path, min_side=100):
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) >= min_side
    # Not a blank canvas: many distinct colours.
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 20
    return pixels


# --- figures ---------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["volume", "single_slice"])
def test_plot_searchlight(data, request, tmp_path):
    maps = request.getfixturevalue(data)
    out = plot_searchlight(
        maps["scores"], maps["mean"], tmp_path / "searchlight.png", title="Scores", chance=CHANCE
    )
    assert out == tmp_path / "searchlight.png"
    _check_png(out)


def test_plot_searchlight_edge_cases(volume, tmp_path):
    # All scores below chance, NaNs, no background, parent folder created.
    data = np.asarray(volume["scores"].dataobj).copy() * 0.5
    data[1, 1, 1] = np.nan
    img = nib.Nifti1Image(data, volume["scores"].affine)
    out = plot_searchlight(img, None, tmp_path / "sub" / "low.png", chance=CHANCE)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    # An all-zero map still gives a figure.
    zero = nib.Nifti1Image(np.zeros((10, 12, 8), np.float32), volume["scores"].affine)
    assert plot_searchlight(zero, volume["mean"], tmp_path / "zero.png").is_file()


@pytest.mark.parametrize("data", ["volume", "single_slice"])
def test_plot_f_scores(data, request, tmp_path):
    maps = request.getfixturevalue(data)
    f_data = np.asarray(maps["f"].dataobj).copy()
    f_data.flat[np.argmax(f_data)] = np.inf  # p = 0
    f_img = nib.Nifti1Image(f_data, maps["f"].affine)
    out = plot_f_scores(f_img, maps["mean"], tmp_path / "f_scores.png", title="F-test")
    _check_png(out)


def test_plot_searchlight_rejects_4d(volume, tmp_path):
    img4d = nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4))
    with pytest.raises(TypeError, match="scores_img must be a 3D image"):
        plot_searchlight(img4d, volume["mean"], tmp_path / "x.png")


def test_plot_null_distribution(tmp_path):
    null = np.random.default_rng(0).normal(0.6, 0.03, size=10)
    out = plot_null_distribution(null, 0.72, tmp_path / "null.png")
    _check_png(out)
    out = plot_null_distribution(
        list(null) + [np.nan], None, tmp_path / "null2.png", threshold=0.65, xlabel="max F"
    )
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(ValueError, match="no finite value"):
        plot_null_distribution([np.nan], 0.7, tmp_path / "null3.png")


def test_plotting_keeps_a_chosen_backend(tmp_path):
    # In a fresh interpreter: a backend chosen by the user is kept; otherwise Agg is used.
    code = (
        "import sys, matplotlib\n"
        "{select}"
        "from fastsearchlight.report import plot_null_distribution\n"
        "plot_null_distribution([0.5, 0.6, 0.7], 0.8, sys.argv[1])\n"
        "print(matplotlib.get_backend().lower())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY")}
    env["MPLCONFIGDIR"] = str(tmp_path / "mplconfig")
    for select, expected in [("matplotlib.use('svg')\n", "svg"), ("", "agg")]:
        result = subprocess.run(
            [sys.executable, "-c", code.format(select=select), str(tmp_path / "n.png")],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        )
        assert result.stdout.strip().splitlines()[-1] == expected


# --- top regions -----------------------------------------------------------------------


def test_top_regions_finds_planted_blob(volume):
    img = volume["scores"]
    table = top_regions(img, chance=CHANCE)
    assert list(table.columns) == TOP_REGION_COLUMNS
    assert len(table) >= 2
    best = table.iloc[0]
    assert (best.peak_i, best.peak_j, best.peak_k) == BLOB_PEAK
    expected_mm = apply_affine(img.affine, BLOB_PEAK)
    np.testing.assert_allclose([best.peak_x_mm, best.peak_y_mm, best.peak_z_mm], expected_mm)
    np.testing.assert_allclose(best.peak_score, np.asarray(img.dataobj)[BLOB_PEAK])
    assert best.n_voxels > 1
    assert CHANCE < best.mean_score <= best.peak_score
    second = table.iloc[1]
    assert (second.peak_i, second.peak_j, second.peak_k) == SMALL_PEAK
    assert table["cluster"].tolist() == list(range(1, len(table) + 1))
    assert table["peak_score"].is_monotonic_decreasing
    assert table["n_voxels"].dtype == np.int64 and table["peak_i"].dtype == np.int64
    # Default threshold: the 95th percentile of the in-map scores (above chance here).
    data = np.asarray(img.dataobj)
    expected_threshold = np.percentile(data[data != 0], 95)
    assert table.attrs["threshold"] == pytest.approx(expected_threshold)
    assert (table["mean_score"] >= expected_threshold - 1e-6).all()


def test_top_regions_options(volume):
    img = volume["scores"]
    assert len(top_regions(img, chance=CHANCE, n=1)) == 1
    big = top_regions(img, chance=CHANCE, min_voxels=3)
    assert (big["n_voxels"] >= 3).all()
    # A low threshold joins the noise into one large cluster holding the peak.
    low = top_regions(img, chance=CHANCE, threshold=0.0)
    assert low.attrs["threshold"] == 0.0
    assert low.iloc[0].peak_score == pytest.approx(np.asarray(img.dataobj).max())
    assert (low["peak_score"] > CHANCE).all()
    # chance=None: no floor, the threshold is the percentile alone.
    assert not top_regions(img, chance=None).empty
    with pytest.raises(ValueError, match="min_voxels"):
        top_regions(img, chance=CHANCE, min_voxels=0)
    with pytest.raises(ValueError, match="n must be"):
        top_regions(img, chance=CHANCE, n=0)


def test_top_regions_single_slice(single_slice):
    img = single_slice["scores"]
    table = top_regions(img, chance=CHANCE)
    best = table.iloc[0]
    assert (best.peak_i, best.peak_j, best.peak_k) == single_slice["peak"]
    np.testing.assert_allclose(
        [best.peak_x_mm, best.peak_y_mm, best.peak_z_mm],
        apply_affine(img.affine, single_slice["peak"]),
    )


def test_top_regions_empty(volume):
    affine = volume["scores"].affine
    zero = top_regions(nib.Nifti1Image(np.zeros((10, 12, 8), np.float32), affine), chance=0.5)
    assert zero.empty and list(zero.columns) == TOP_REGION_COLUMNS
    # A map entirely at or below chance has no region either.
    low = np.full((10, 12, 8), 0.4, np.float32)
    below = top_regions(nib.Nifti1Image(low, affine), chance=0.5)
    assert below.empty and list(below.columns) == TOP_REGION_COLUMNS
    assert below["peak_i"].dtype == np.int64


# --- HTML report -----------------------------------------------------------------------


def _summary():
    return {
        "parameters": {"radius_mm": 5.6, "estimator": "svc", "cv": "LeaveOneGroupOut"},
        "data": {"func": "<script>alert(1)</script>", "n_volumes": 216, "shape": (40, 20, 1)},
        "results": {"max_score": 0.8889, "n_spheres": 530, "p_fwe": None},
        "timings": {"searchlight_s": 1.234567, "total_s": 3.5},
        "software": {"fastsearchlight": "0.1.0", "numpy": np.__version__},
        "permutations": {"n": 100, "null": {"mean": 0.61, "q95": 0.66}},
        "notes": "first & second",
    }


def test_write_report(tmp_path, volume):
    for name in ("searchlight.png", "f_scores.png"):
        (tmp_path / name).write_bytes(PNG_SIGNATURE)
    regions = top_regions(volume["scores"], chance=CHANCE)
    clusters = pd.DataFrame({"label": ["a<b>", "c"], "<i>size</i>": [3, 1]})
    path = write_report(
        tmp_path,
        _summary(),
        figures={"Searchlight accuracy": "searchlight.png", "F-test": "f_scores.png"},
        tables={"Top regions": regions, "Clusters": clusters},
    )
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert '<img src="searchlight.png"' in text
    assert '<img src="f_scores.png"' in text
    assert "<figcaption>Searchlight accuracy</figcaption>" in text
    # Escaped, never live markup.
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "a&lt;b&gt;" in text and "first &amp; second" in text
    assert "&lt;i&gt;size&lt;/i&gt;" in text and "<i>" not in text
    # Sections and tables.
    for heading in (
        "Parameters",
        "Data",
        "Results",
        "Timings",
        "Software",
        "Permutations",
        "Notes",
        "Top regions",
        "Clusters",
    ):
        assert f">{heading}</h2>" in text
    assert text.index(">Results</h2>") < text.index(">Figures</h2>") < text.index(">Software</h2>")
    for column in TOP_REGION_COLUMNS:
        assert f"<th>{column}</th>" in text
    assert "LeaveOneGroupOut" in text and "40, 20, 1" in text and "0.8889" in text
    assert "q95" in text  # nested mapping rendered
    # Offline: no external resources.
    assert "http://" not in text and "https://" not in text and "<link" not in text
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_write_report_refuses_overwrite(tmp_path):
    (tmp_path / "searchlight.png").write_bytes(PNG_SIGNATURE)
    figures = {"Searchlight": "searchlight.png"}
    path = write_report(tmp_path, {"results": {"v": 1}}, figures=figures)
    with pytest.raises(FileExistsError, match="report.html"):
        write_report(tmp_path, {"results": {"v": 2}}, figures=figures)
    assert ">1</td>" in path.read_text(encoding="utf-8")
    write_report(tmp_path, {"results": {"v": 2}}, figures=figures, force=True)
    assert ">2</td>" in path.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "searchlight.png"]


def test_write_report_figure_paths(tmp_path):
    out = tmp_path / "out"
    (out / "figs").mkdir(parents=True)
    (out / "figs" / "my map.png").write_bytes(PNG_SIGNATURE)
    text = write_report(
        out,
        {},
        figures={"Absolute": out / "figs" / "my map.png"},
        tables={"Empty": pd.DataFrame(columns=TOP_REGION_COLUMNS)},
        filename="index.html",
    ).read_text(encoding="utf-8")
    assert '<img src="figs/my%20map.png"' in text
    assert "No rows." in text
    with pytest.warns(UserWarning, match="does not exist"):
        write_report(out, {}, figures={"Missing": "missing.png"}, filename="b.html")
    with pytest.raises(ValueError, match="not inside the output folder"):
        write_report(out, {}, figures={"Outside": tmp_path / "x.png"}, filename="c.html")
    with pytest.raises(ValueError, match="plain file name"):
        write_report(out, {}, figures={}, filename="../d.html")

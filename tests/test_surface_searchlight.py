"""SurfaceSearchLight: nilearn's surface recipe's scores, hemispheres, masks, statistics,
inputs and errors."""

import warnings

import nibabel as nib
import numpy as np
import pytest
from nilearn.decoding.searchlight import search_light
from nilearn.surface import InMemoryMesh, PolyMesh, SurfaceImage
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GroupKFold, KFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import NearestNeighbors
from sklearn.svm import LinearSVC
from surface_meshes import planted_data, sheet, two_sheets

from fastsearchlight import SurfaceSearchLight
from fastsearchlight.spaces.surface import vertex_discs


def _recipe(img, y, estimator, radius, cv, masks=None, adjacency_of=None):
    """nilearn's surface searchlight recipe, hemisphere by hemisphere: the radius
    neighbours of the mesh coordinates as the adjacency of nilearn's ``search_light``."""
    scores = []
    for hemi, part in img.mesh.parts.items():
        coords = np.asarray(part.coordinates)
        X = np.asarray(img.data.parts[hemi]).T
        if adjacency_of is None:
            adjacency = NearestNeighbors(radius=radius).fit(coords).radius_neighbors_graph(coords)
        else:
            adjacency = adjacency_of(part)
        if masks is not None:
            keep = np.flatnonzero(masks[hemi])
            X, adjacency = X[:, keep], adjacency[keep][:, keep]
        scores.append(search_light(X, y, estimator, adjacency.tolil(), cv=cv, n_jobs=1))
    return np.concatenate(scores)


@pytest.mark.parametrize("estimator", [RidgeClassifier(alpha=10.0), GaussianNB()])
def test_euclidean_scores_equal_nilearns_surface_recipe(estimator):
    img, y, groups, _ = planted_data(two_sheets(10), centre=45, patch_mm=5.0, effect=0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a custom estimator is used
        sl = SurfaceSearchLight(
            two_sheets(10), radius=4.5, distance="euclidean", estimator=estimator, cv=KFold(3)
        )
        sl.fit(img, y)
    expected = _recipe(img, y, estimator, 4.5, KFold(3))
    assert sl.engine_ == "batched"
    np.testing.assert_array_equal(sl.masked_scores_, expected)
    np.testing.assert_array_equal(sl.scores_, expected)  # no mask: every vertex
    assert sl.fold_scores_.shape == (200, 3) and sl.masked_scores_.max() > 0.8
    scores_img = sl.scores_img_
    assert isinstance(scores_img, SurfaceImage)
    np.testing.assert_array_equal(scores_img.data.parts["right"], expected[100:])
    assert sl.fold_scores_img_.data.parts["left"].shape == (100, 3)


def test_geodesic_scores_equal_nilearns_search_light_on_the_geodesic_discs():
    img, y, groups, _ = planted_data(two_sheets(9), centre=40, patch_mm=4.0, effect=0.5, seed=2)
    masks = {"left": np.arange(81) % 5 != 2, "right": np.arange(81) >= 20}  # e.g. a medial wall out
    mask_img = SurfaceImage(img.mesh, {h: m.astype(np.float32) for h, m in masks.items()})
    est = RidgeClassifier(alpha=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sl = SurfaceSearchLight(img.mesh, mask=mask_img, radius=5.0, estimator=est, cv=GroupKFold(4))
        sl.fit(img, y, groups=groups)
    expected = _recipe(img, y, est, None, list(GroupKFold(4).split(y, y, groups)), masks,
                       adjacency_of=lambda part: vertex_discs(part, 5.0, "geodesic"))  # fmt: skip
    np.testing.assert_array_equal(sl.masked_scores_, expected)
    assert sl.n_elements_ == int(masks["left"].sum() + masks["right"].sum())
    assert (sl.scores_img_.data.parts["left"][~masks["left"]] == 0).all()
    np.testing.assert_array_equal(sl.process_mask_, np.concatenate([masks["left"], masks["right"]]))
    # no disc holds a masked-out vertex, nor one of the other hemisphere
    assert sl.neighbourhoods_.adjacency.shape == (sl.n_elements_, sl.n_elements_)


def test_a_planted_patch_is_recovered_and_nothing_else_is_fwe_significant():
    mesh = two_sheets(12)
    img, y, groups, patch = planted_data(mesh, centre=78, patch_mm=5.0, effect=0.8, seed=4)
    sl = SurfaceSearchLight(mesh, radius=4.0, estimator="gnb", cv=GroupKFold(4), n_permutations=99,
                            permute="samples", tfce=True)  # fmt: skip
    sl.fit(img, y, groups=groups)
    coords = np.asarray(mesh.parts["left"].coordinates)
    near = np.linalg.norm(coords - coords[78], axis=1) <= 5.0 + 4.0 + 1.0  # patch + disc + jitter
    significant = sl.p_fwe_img_.data.parts["left"] < 0.05
    assert significant[78] and significant.sum() >= 5
    assert not significant[~near].any()
    assert not (sl.p_fwe_img_.data.parts["right"] < 0.05).any()
    assert (sl.p_fwe_tfce_img_.data.parts["left"][patch] < 0.05).all()
    top = sl.clusters_[0]
    assert top["p_fwe_cluster"] < 0.05 and top["peak_x_mm"] == pytest.approx(coords[78, 0], abs=6)
    labels = sl.cluster_labels_img_.data.parts["left"]
    assert labels[78] == 1 and not (sl.cluster_labels_img_.data.parts["right"] == 1).any()
    # the same data without the patch: nothing significant
    null_img, *_ = planted_data(mesh, centre=78, patch_mm=5.0, effect=0.0, seed=4)
    null = SurfaceSearchLight(mesh, radius=4.0, estimator="gnb", cv=GroupKFold(4), n_permutations=99,
                              permute="samples", tfce=True).fit(null_img, y, groups=groups)  # fmt: skip
    assert null.p_fwe_.min() >= 0.05 and null.p_fwe_tfce_.min() >= 0.05
    assert all(c["p_fwe_cluster"] >= 0.05 for c in null.clusters_)


def test_a_vertex_alone_and_a_left_hemisphere_only_mesh():
    base = sheet(6)
    coords = np.vstack([base.coordinates, [[30.0, 30.0, 30.0]]])  # in no triangle
    mesh = PolyMesh(left=InMemoryMesh(coords, np.asarray(base.faces)))
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 12)
    data = rng.standard_normal((37, 24))
    data[36] += 10 * y  # the lone vertex tells the classes apart
    sl = SurfaceSearchLight(mesh, radius=3.0, estimator="lda", cv=KFold(3)).fit(
        SurfaceImage(mesh, {"left": data}), y
    )
    assert sl.sphere_sizes_[36] == 1 and sl.scores_[36] == 1.0
    assert set(sl.scores_img_.data.parts) == {"left"}
    alone = SurfaceSearchLight(mesh, radius=0.0, estimator="lda", cv=KFold(3)).fit(
        SurfaceImage(mesh, {"left": data}), y
    )
    assert (alone.sphere_sizes_ == 1).all()


def test_gifti_files_and_runs_as_input(tmp_path):
    mesh = two_sheets(6)
    img, y, groups, _ = planted_data(mesh, centre=14, patch_mm=3.0, effect=0.7, n_samples=24, seed=5)
    paths = {}
    for hemi in ("left", "right"):
        data = np.asarray(img.data.parts[hemi], dtype=np.float32)
        paths[hemi] = []
        for run in range(2):  # two runs per hemisphere, samples concatenated
            darrays = [nib.gifti.GiftiDataArray(col) for col in data[:, run * 12 : (run + 1) * 12].T]
            path = tmp_path / f"run-{run}_hemi-{hemi[0].upper()}.func.gii"
            nib.save(nib.gifti.GiftiImage(darrays=darrays), path)
            paths[hemi].append(str(path))
    kwargs = dict(radius=3.0, estimator="svc", cv=KFold(3))
    from_files = SurfaceSearchLight(mesh, **kwargs).fit(paths, y)
    halves = [SurfaceImage(mesh, {h: np.asarray(img.data.parts[h])[:, s] for h in img.data.parts})
              for s in (slice(0, 12), slice(12, 24))]  # fmt: skip
    from_images = SurfaceSearchLight(mesh, **kwargs).fit(halves, y)
    as_float32 = SurfaceImage(mesh, {h: np.asarray(v, np.float32) for h, v in img.data.parts.items()})
    np.testing.assert_array_equal(
        from_files.masked_scores_, SurfaceSearchLight(mesh, **kwargs).fit(as_float32, y).masked_scores_
    )
    np.testing.assert_array_equal(
        from_images.masked_scores_, SurfaceSearchLight(mesh, **kwargs).fit(img, y).masked_scores_
    )
    # the batched LinearSVC gives scikit-learn's scores
    svc = LinearSVC(tol=1e-10, max_iter=100000)
    expected = _recipe(img, y, svc, None, KFold(3), adjacency_of=lambda p: vertex_discs(p, 3.0, "geodesic"))
    np.testing.assert_array_equal(from_images.masked_scores_, expected)


def test_mesh_given_as_surface_files(tmp_path):
    # the hemispheres' surface files (as an fsnative mesh from fMRIPrep) give the discs and
    # scores of the same mesh given as a PolyMesh
    mesh = two_sheets(6)
    img, y, _, _ = planted_data(mesh, centre=14, patch_mm=3.0, effect=0.7, n_samples=24, seed=5)
    files = []
    for hemi in ("left", "right"):
        part = mesh.parts[hemi]
        coords = np.asarray(part.coordinates, dtype=np.float32)  # as GIfTI stores them
        files.append(tmp_path / f"sub-01_hemi-{hemi[0].upper()}_pial.surf.gii")
        nib.save(nib.gifti.GiftiImage(darrays=[
            nib.gifti.GiftiDataArray(coords, intent="NIFTI_INTENT_POINTSET"),
            nib.gifti.GiftiDataArray(np.asarray(part.faces, np.int32), intent="NIFTI_INTENT_TRIANGLE"),
        ]), files[-1])  # fmt: skip
    same = PolyMesh(**{h: InMemoryMesh(np.asarray(mesh.parts[h].coordinates, np.float32).astype(np.float64),
                                       mesh.parts[h].faces) for h in ("left", "right")})  # fmt: skip
    data = {h: np.asarray(v) for h, v in img.data.parts.items()}
    kwargs = dict(radius=3.0, estimator="gnb", cv=KFold(3))
    from_files = SurfaceSearchLight(files[::-1], **kwargs).fit(data, y)
    expected = SurfaceSearchLight(same, **kwargs).fit(data, y)
    np.testing.assert_array_equal(from_files.sphere_sizes_, expected.sphere_sizes_)
    np.testing.assert_array_equal(from_files.scores_, expected.scores_)
    assert list(from_files.mesh_.parts) == ["left", "right"]


def test_nan_values_are_zeroed_with_a_warning():
    mesh = two_sheets(5)
    img, y, _, _ = planted_data(mesh, centre=12, patch_mm=2.0, n_samples=16)
    data = {h: np.array(v) for h, v in img.data.parts.items()}
    data["right"][3, 2] = np.nan
    with pytest.warns(UserWarning, match="NaN or infinite values in 1 vertex"):
        SurfaceSearchLight(mesh, radius=2.0, estimator="gnb", cv=KFold(2)).fit(SurfaceImage(mesh, data), y)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(distance="cityblock"), "distance"),
        (dict(radius=-1.0), "radius"),
        (dict(mesh="fsaverage_tiny"), "unknown mesh"),
        (dict(mesh=two_sheets(6)), "have 25 vertices, its mesh 36"),
        (dict(mask={"left": np.zeros(25), "right": np.zeros(25)}), "the mask is empty"),
        (dict(mask={"left": np.ones(25)}), "the mask has no right hemisphere"),
        (dict(mask={"left": np.ones(24), "right": np.ones(25)}), "one value per vertex"),
    ],
)
def test_bad_parameters_give_one_line_errors(change, message):
    mesh = two_sheets(5)
    img, y, _, _ = planted_data(mesh, centre=12, patch_mm=2.0, n_samples=16)
    params = dict(mesh=mesh, radius=2.0, estimator="gnb", cv=KFold(2)) | change
    with pytest.raises(ValueError, match=message) as info:
        SurfaceSearchLight(**params).fit(img, y)
    assert "\n" not in str(info.value)


def test_bad_inputs_give_one_line_errors(tmp_path):
    mesh = two_sheets(5)
    img, y, _, _ = planted_data(mesh, centre=12, patch_mm=2.0, n_samples=16)
    sl = SurfaceSearchLight(mesh, radius=2.0, estimator="gnb", cv=KFold(2))
    left = np.asarray(img.data.parts["left"])
    cases = [
        (img, y[:-1], "y has 15 entries"),
        ({"left": left}, y, "the data hold hemispheres"),
        ({"left": left, "right": left[:, :-1]}, y, "different numbers of samples"),
        ({"left": left, "middle": left}, y, "'left' and/or 'right'"),
        ({"left": str(tmp_path / "missing.gii"), "right": left}, y, "does not exist"),
        (np.zeros((25, 16)), y, "SurfaceImage"),
    ]
    (tmp_path / "bad.gii").write_text("not a gifti file")
    cases.append(({"left": str(tmp_path / "bad.gii"), "right": left}, y, "cannot read left"))
    for imgs, labels, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            sl.fit(imgs, labels)
        assert "\n" not in str(info.value)


def test_worker_processes_clone_and_transform_give_the_same_maps():
    from sklearn.base import clone

    mesh = two_sheets(7)
    img, y, groups, _ = planted_data(mesh, centre=24, patch_mm=4.0, effect=0.6, n_samples=24, seed=6)
    one = SurfaceSearchLight(mesh, radius=4.0, estimator="svc", cv=KFold(3), n_jobs=1)
    two = clone(one).set_params(n_jobs=2)
    assert two.get_params()["mesh"].n_vertices == mesh.n_vertices and two.n_jobs == 2
    np.testing.assert_array_equal(one.fit(img, y).masked_scores_, two.fit(img, y).masked_scores_)
    # transform: nilearn's search_light on the fitted discs, as SearchLight.transform
    values = one.transform(img)
    X = np.concatenate([np.asarray(img.data.parts[h]) for h in ("left", "right")]).T
    expected = search_light(
        X, None, clone(one.estimator_), one.neighbourhoods_.adjacency.tolil(), None, None, KFold(3), 1, 0
    )
    np.testing.assert_array_equal(values, np.abs(expected))
    with pytest.raises(ValueError, match="do not match the fitted mesh"):
        one.transform({"left": X.T[:49], "right": X.T[:48]})


def test_a_checkpoint_resumes_only_the_same_analysis(tmp_path):
    mesh = two_sheets(6)
    img, y, groups, _ = planted_data(mesh, centre=14, patch_mm=3.0, effect=0.5, n_samples=24, seed=7)
    path = tmp_path / "null.npy"
    kwargs = dict(
        radius=3.0, estimator="gnb", cv=KFold(3), n_permutations=30, checkpoint=path, keep_checkpoint=True
    )
    first = SurfaceSearchLight(mesh, **kwargs).fit(img, y)
    store = np.load(path)
    store[:] = 0.25  # a completed checkpoint is read, not recomputed: its null maps are used
    np.save(path, store)
    resumed = SurfaceSearchLight(mesh, **kwargs).fit(img, y)
    np.testing.assert_array_equal(resumed.max_null_, np.full(30, 0.25))
    assert not np.array_equal(first.max_null_, resumed.max_null_)
    with pytest.raises(ValueError, match="checkpoint"):  # another analysis (distance) refuses it
        SurfaceSearchLight(mesh, distance="euclidean", **kwargs).fit(img, y)

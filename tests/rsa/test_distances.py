"""The RDMs of blocks of spheres (float64) against rsatoolbox's calc_rdm, sphere by sphere."""

import numpy as np
import pytest
from rsa_cases import CASES, assert_close_to_scale, design, reference_rdm

from fastsearchlight.rsa._design import make_design
from fastsearchlight.rsa.distances import block_rdms, prepare

pytest.importorskip("rsatoolbox")


#: samples of each condition in each run: the same in every run (the crossnobis kernel of all
#: folds at once), one (the residuals derived from the per-run means), or run by run (fold by fold)
LAYOUTS = {"two per run": 2, "one per run": 1, "unequal runs": [1, 3, 2, 2]}


@pytest.fixture(scope="module", params=list(LAYOUTS))
def random_spheres(request):
    conditions, runs = design(n_conditions=5, n_runs=4, per_run=LAYOUTS[request.param], seed=3)
    rng = np.random.default_rng(3)
    n_voxels = 40
    codes = np.unique(conditions, return_inverse=True)[1]
    X = 1000.0 + rng.standard_normal((n_voxels, len(codes)))
    X += 0.6 * rng.standard_normal((n_voxels, 5))[:, codes]  # condition patterns
    X[:10] += 0.8 * rng.standard_normal((1, len(codes)))  # correlated noise in some voxels
    blocks = [np.stack([rng.choice(n_voxels, size, replace=False) for _ in range(4)]) for size in (1, 2, 9)]
    return X, conditions, runs, blocks


@pytest.mark.parametrize("method,noise", CASES)
def test_block_rdms_match_rsatoolbox(random_spheres, method, noise):
    X, conditions, runs, blocks = random_spheres
    prepared = prepare(X, make_design(conditions, runs, X.shape[1], method, noise), method, noise)
    counts = np.unique(np.column_stack([conditions, runs]), axis=0, return_counts=True)[1]
    balanced = method == "crossnobis" and len(set(counts)) == 1
    n_runs = len(set(runs))
    # groups: all runs' sums and each run's (balanced crossnobis), folds, or the means
    assert prepared.left.shape[1] == (n_runs + 1 if balanced else n_runs if method == "crossnobis" else 1)
    assert (prepared.right is None) == (method != "crossnobis" or balanced)
    assert prepared.cell_residuals == (balanced and counts.max() == 1)
    for vox in blocks:
        if vox.shape[1] == 1 and (method == "correlation" or noise in ("shrinkage_diag", "shrinkage_eye")):
            continue  # rsatoolbox gives NaN there (0/0); see test_one_voxel_spheres
        ours = block_rdms(prepared, vox)
        for b in range(len(vox)):
            ref, order = reference_rdm(X[vox[b]].T, conditions, runs, method, noise)
            assert list(order) == sorted(set(conditions))
            assert_close_to_scale(ours[b], ref, 1e-8)


@pytest.mark.parametrize("noise", ["shrinkage_diag", "shrinkage_eye"])
def test_one_voxel_spheres(random_spheres, noise):
    """Where rsatoolbox's shrinkage weight is 0/0, a single voxel's precision is 1/variance
    (any shrinkage of a 1 x 1 covariance), i.e. the "diag" noise model."""
    X, conditions, runs, blocks = random_spheres
    vox = blocks[0]
    ours = block_rdms(
        prepare(X, make_design(conditions, runs, X.shape[1], "crossnobis", noise), "crossnobis", noise), vox
    )
    for b in range(len(vox)):
        ref, _ = reference_rdm(X[vox[b]].T, conditions, runs, "crossnobis", "diag")
        assert_close_to_scale(ours[b], ref, 1e-8)


def test_correlation_of_one_voxel_is_nan(random_spheres):
    X, conditions, runs, blocks = random_spheres
    ours = block_rdms(
        prepare(X, make_design(conditions, runs, X.shape[1], "correlation", None), "correlation", None),
        blocks[0],
    )
    assert np.all(np.isnan(ours))


def test_covariance_not_positive_definite_raises(random_spheres):
    """A voxel without residuals (its samples equal their condition's mean, exactly: integer
    values) makes the full covariance singular: an error, not NaN or a wrong RDM."""
    X, conditions, runs, _ = random_spheres
    codes = np.unique(conditions, return_inverse=True)[1]
    X = X.copy()
    X[0] = 3.0 * codes
    prepared = prepare(
        X, make_design(conditions, runs, X.shape[1], "crossnobis", "full"), "crossnobis", "full"
    )
    block_rdms(prepared, np.array([[1, 2, 3]]))  # spheres without the voxel are fine
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        block_rdms(prepared, np.array([[1, 2, 3], [0, 2, 3]]))

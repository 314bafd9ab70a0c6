"""Group-level sign-flip test with TFCE on a 2 mm brain: fastsearchlight and nilearn side by
side in one run.

Workload: nilearn's MNI152 grey-matter mask at 2 mm (``load_mni152_gm_mask(resolution=2)``,
about 204,000 voxels, shipped inside nilearn), 16 subjects' searchlight maps: chance (0.5)
plus spatially smooth noise (Gaussian, 1.5 voxels) plus a planted effect in two spheres.

- fastsearchlight: ``sign_flip_test(with_tfce=True, cluster_threshold=0.001)`` on the maps
  masked by nilearn's ``apply_mask``, 6-connectivity
  clusters and TFCE (``dh="auto"``: 100 steps), ``n_jobs=2`` (threads for the null maps'
  clusters and TFCE).
- nilearn: ``non_parametric_inference(..., tfce=True, threshold=0.001, n_jobs=2)``, the
  same maps, mask and one-sample design; fewer permutations (its TFCE labels the map afresh
  at each threshold).

Each tool runs twice, with few and with more permutations: the time per permutation is the
difference over the difference in permutations, and the fixed cost (masking, the observed
map, the graph) what the first run took beyond its permutations; the estimate for 5,000
permutations is the fixed cost plus 5,000 times the cost of one.

Agreement: the observed t map and its TFCE against nilearn's ``t`` and ``tfce`` maps.

Usage::

    python benchmarks/group_tfce.py [--permutations 50 500] [--nilearn-permutations 2 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
from _results import cpu_model, write_result

HERE = Path(__file__).resolve().parent


def subject_maps(n_subjects: int = 16, seed: int = 0):
    """Chance plus smooth noise plus two planted regions, one image per subject."""
    import nibabel as nib
    from nilearn.datasets import load_mni152_gm_mask
    from scipy import ndimage

    mask_img = load_mni152_gm_mask(resolution=2)
    mask = np.asarray(mask_img.dataobj) > 0
    rng = np.random.default_rng(seed)
    ijk = np.argwhere(mask)
    effect = np.zeros(mask.shape)
    for centre in ijk[rng.choice(len(ijk), 2, replace=False)]:
        dist = np.linalg.norm(np.indices(mask.shape).T - centre, axis=-1).T
        effect[dist <= 4] = 0.03
    imgs = []
    for _ in range(n_subjects):
        noise = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.5)
        noise *= 0.05 / noise[mask].std()
        imgs.append(nib.Nifti1Image(((0.5 + effect + noise) * mask).astype(np.float32), mask_img.affine))
    return imgs, mask_img


def ours(imgs, mask_img, n_perm: int) -> tuple[float, object]:
    from nilearn.masking import apply_mask

    from fastsearchlight.stats import sign_flip_test

    t0 = time.perf_counter()
    data = apply_mask(imgs, mask_img) - 0.5
    mask = np.asarray(mask_img.dataobj) > 0
    res = sign_flip_test(
        data, mask, n_permutations=n_perm, random_state=0, cluster_threshold=0.001, with_tfce=True, n_jobs=2
    )
    return time.perf_counter() - t0, res


def theirs(imgs, mask_img, n_perm: int) -> tuple[float, dict]:
    import pandas as pd
    from nilearn.glm.second_level import non_parametric_inference

    shifted = [
        type(img)(
            np.asarray(img.dataobj, dtype=np.float64) - 0.5 * (np.asarray(mask_img.dataobj) > 0), img.affine
        )
        for img in imgs
    ]
    design = pd.DataFrame({"intercept": np.ones(len(imgs))})
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = non_parametric_inference(
            shifted, design_matrix=design, mask=mask_img, n_perm=n_perm, two_sided_test=False,
            random_state=0, n_jobs=2, threshold=0.001, tfce=True,
        )  # fmt: skip
    return time.perf_counter() - t0, out


def _per_permutation(run, imgs, mask_img, counts) -> tuple[float, float, object]:
    """(fixed seconds, seconds per permutation, last result) from runs at two counts."""
    (n_lo, n_hi) = counts
    t_lo, _ = run(imgs, mask_img, n_lo)
    t_hi, res = run(imgs, mask_img, n_hi)
    per = (t_hi - t_lo) / (n_hi - n_lo)
    return max(t_lo - n_lo * per, 0.0), per, res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--permutations", type=int, nargs=2, default=[50, 500])
    parser.add_argument("--nilearn-permutations", type=int, nargs=2, default=[2, 20])
    parser.add_argument("--subjects", type=int, default=16)
    args = parser.parse_args()
    imgs, mask_img = subject_maps(args.subjects)
    mask = np.asarray(mask_img.dataobj) > 0
    load = os.getloadavg()
    fixed_ours, per_ours, res = _per_permutation(ours, imgs, mask_img, args.permutations)
    fixed_theirs, per_theirs, out = _per_permutation(theirs, imgs, mask_img, args.nilearn_permutations)
    load_end = os.getloadavg()
    t_ref = np.asarray(out["t"].dataobj)[mask]
    tfce_ref = np.asarray(out["tfce"].dataobj)[mask]
    result = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, load average {load[0]:.2f} at the start, "
        f"{load_end[0]:.2f} at the end",
        "python": platform.python_version(),
        "voxels": int(mask.sum()),
        "subjects": args.subjects,
        "ours_permutations": args.permutations,
        "ours_fixed_s": round(fixed_ours, 2),
        "ours_s_per_permutation": round(per_ours, 4),
        "nilearn_permutations": args.nilearn_permutations,
        "nilearn_fixed_s": round(fixed_theirs, 2),
        "nilearn_s_per_permutation": round(per_theirs, 4),
        "ratio_per_permutation": round(per_theirs / per_ours, 1),
        "t_max_abs_diff": float(np.abs(res.t - t_ref).max()),
        "tfce_max_rel_diff": float(np.abs(res.tfce - tfce_ref).max() / max(tfce_ref.max(), 1e-300)),
        "ours_5000_permutations_min_est": round((fixed_ours + 5000 * per_ours) / 60, 1),
        "nilearn_5000_permutations_min_est": round((fixed_theirs + 5000 * per_theirs) / 60, 1),
    }
    lines = [
        "# Group sign-flip test with TFCE, 2 mm grey-matter mask: side by side with nilearn",
        "",
        f"Machine: {result['machine']}; Python {result['python']}.",
        "",
        "| tool | permutations run | fixed s | s per permutation | 5,000 permutations (est.) |",
        "|---|---|---|---|---|",
        f"| fastsearchlight `sign_flip_test` (n_jobs=2) | {args.permutations[0]}, {args.permutations[1]} | "
        f"{fixed_ours:.1f} | {per_ours:.3f} | {result['ours_5000_permutations_min_est']} min |",
        f"| nilearn `non_parametric_inference` (n_jobs=2) | {args.nilearn_permutations[0]}, "
        f"{args.nilearn_permutations[1]} | {fixed_theirs:.1f} | {per_theirs:.3f} | "
        f"{result['nilearn_5000_permutations_min_est']} min |",
        "",
        f"Ratio per permutation: {result['ratio_per_permutation']}x. {result['voxels']} voxels, "
        f"{args.subjects} subjects, cluster-forming p 0.001, TFCE with 100 steps, 6-connectivity. "
        f"Observed t map: max |diff| {result['t_max_abs_diff']:.1e}; observed TFCE: max diff "
        f"{result['tfce_max_rel_diff']:.1e} of the largest.",
    ]
    print("\n".join(lines))
    write_result(HERE / "results" / "group_tfce.json", json.dumps(result, indent=2))
    write_result(HERE / "results" / "group_tfce.md", "\n".join(lines))


if __name__ == "__main__":
    main()

"""The design of an RSA searchlight: conditions, runs, and the pairs of an RDM."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Design", "make_design", "pair_indices"]

#: dissimilarity measures, with rsatoolbox's definitions
METHODS = ("euclidean", "correlation", "mahalanobis", "crossnobis")
#: noise models of rsatoolbox's ``prec_from_measurements``
NOISE = ("shrinkage_diag", "shrinkage_eye", "diag", "full")


def pair_indices(n_conditions: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each pair of conditions in an RDM vector: the upper triangle, row
    by row (the order of ``scipy.spatial.distance.squareform`` and rsatoolbox)."""
    return np.triu_indices(n_conditions, 1)


@dataclass(frozen=True)
class Design:
    """Conditions and runs of the samples, as codes.

    Attributes
    ----------
    conditions : ndarray (n_conditions,)
        Condition names, sorted (the order of rsatoolbox's RDMs).
    condition_codes : ndarray of int (n_samples,)
    runs : ndarray (n_runs,) or None
        Run names, sorted; None without runs.
    run_codes : ndarray of int (n_samples,)
        Run of each sample (all 0 without runs).
    counts : ndarray of int (n_runs, n_conditions)
        Samples of each condition in each run.
    """

    conditions: np.ndarray
    condition_codes: np.ndarray
    runs: np.ndarray | None
    run_codes: np.ndarray
    counts: np.ndarray

    @property
    def n_conditions(self) -> int:
        return len(self.conditions)

    @property
    def n_runs(self) -> int:
        return self.counts.shape[0]

    @property
    def n_samples(self) -> int:
        return len(self.condition_codes)

    def noise_dof(self) -> int:
        """Degrees of freedom rsatoolbox's ``prec_from_measurements`` divides by:
        ``(n_conditions - 1) * samples per condition``."""
        return (self.n_conditions - 1) * (self.n_samples // self.n_conditions)


def _codes(values: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        names, codes = np.unique(values, return_inverse=True)
    except TypeError:
        raise ValueError(f"{name} mixes values that cannot be sorted (e.g. numbers and text).") from None
    return names, codes.reshape(-1)


def make_design(conditions, runs, n_samples: int, method: str, noise: str | None) -> Design:
    """Check the conditions and runs of the samples against the method and the noise model.

    Parameters
    ----------
    conditions : array-like (n_samples,)
    runs : array-like (n_samples,) or None
    n_samples : int
        Number of samples (volumes) of the data.
    method : str
        One of :data:`METHODS`.
    noise : str or None
        One of :data:`NOISE`, or None.

    Returns
    -------
    Design

    Raises
    ------
    ValueError
        One line naming the problem: fewer than two conditions, crossnobis without runs or
        with a condition missing from a run, a noise model on unequal numbers of samples per
        condition.
    """
    from .._fit_inputs import check_targets

    conditions = check_targets(conditions, n_samples, name="conditions")
    names, codes = _codes(conditions, "conditions")
    if len(names) < 2:
        raise ValueError(f"conditions hold {len(names)} distinct value(s): an RDM needs at least two.")
    if runs is None:
        if method == "crossnobis":
            raise ValueError(
                "method='crossnobis' needs runs: give the run of each sample (fit(..., runs=...))."
            )
        run_names, run_codes = None, np.zeros(n_samples, dtype=np.intp)
    else:
        runs = check_targets(runs, n_samples, name="runs")
        run_names, run_codes = _codes(runs, "runs")
    counts = np.zeros((1 if run_names is None else len(run_names), len(names)), dtype=np.int64)
    np.add.at(counts, (run_codes, codes), 1)
    if method == "crossnobis":
        if counts.shape[0] < 2:
            raise ValueError("method='crossnobis' needs at least two runs: all samples are in one run.")
        missing = np.argwhere(counts == 0)
        if len(missing):
            r, c = missing[0]
            raise ValueError(
                f"condition {names[c].item()!r} has no sample in run {run_names[r].item()!r}: crossnobis needs "
                f"every condition in every run ({len(missing)} (run, condition) pairs are empty)."
            )
    if noise is not None:
        per_condition = counts.sum(axis=0)
        if np.any(per_condition != per_condition[0]):
            raise ValueError(
                "the noise estimate (rsatoolbox's prec_from_measurements) needs the same number of "
                f"samples for every condition, got {dict(zip(names.tolist(), per_condition.tolist()))}."
            )
        if per_condition[0] < 2:
            raise ValueError("the noise estimate needs at least two samples per condition.")
    return Design(names, codes, run_names, run_codes, counts)

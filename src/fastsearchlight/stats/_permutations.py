"""Permuted label vectors for a permutation test: what is exchangeable, and all or random
arrangements of it."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PERMUTE_SCHEMES", "LabelPermutations", "exchangeability_blocks", "make_permutations"]

#: how labels are exchanged under the null hypothesis
PERMUTE_SCHEMES = ("blocks", "samples")


def exchangeability_blocks(
    y: np.ndarray, groups: np.ndarray | None, permute: str = "blocks"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The units whose labels are exchanged, per group.

    With ``permute="blocks"`` a block is a maximal run of consecutive samples (in sample
    order, within a group) that share a label: in a block design its volumes share the
    block's slow noise, so only whole blocks are exchangeable. With ``"samples"`` every
    sample is its own block.

    Returns
    -------
    list of (members, block_of_member)
        Per group (all samples when ``groups`` is None): the sample indices of the group in
        increasing order, and the block number (0, 1, ...) of each of them.
    """
    if permute not in PERMUTE_SCHEMES:
        raise ValueError(f"permute must be one of {PERMUTE_SCHEMES}, got {permute!r}.")
    y = np.asarray(y)
    n = len(y)
    if groups is None:
        members = [np.arange(n)]
    else:
        groups = np.asarray(groups)
        members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    out = []
    for idx in members:
        if permute == "samples":
            block = np.arange(idx.size)
        else:
            labels = y[idx]
            block = np.concatenate([[0], np.cumsum(labels[1:] != labels[:-1])])
        out.append((idx, block))
    return out


def _count_arrangements(block_labels: np.ndarray) -> int:
    """Distinct orderings of a multiset of labels: n! / prod(count_c!)."""
    _, counts = np.unique(block_labels, return_counts=True)
    total = math.factorial(int(counts.sum()))
    for c in counts:
        total //= math.factorial(int(c))
    return total


def _distinct_orderings(values: np.ndarray):
    """Every distinct ordering of a multiset, in lexicographic order of ranks (identity
    ordering of the sorted values first)."""
    ranks = np.unique(values, return_inverse=True)[1]
    uniq = np.unique(values)
    a = sorted(int(r) for r in ranks)
    while True:
        yield uniq[np.asarray(a)]
        # next permutation in lexicographic order (Knuth's algorithm L)
        i = len(a) - 2
        while i >= 0 and a[i] >= a[i + 1]:
            i -= 1
        if i < 0:
            return
        j = len(a) - 1
        while a[j] <= a[i]:
            j -= 1
        a[i], a[j] = a[j], a[i]
        a[i + 1 :] = reversed(a[i + 1 :])


@dataclass(frozen=True)
class LabelPermutations:
    """Permuted label vectors for a permutation test.

    Attributes
    ----------
    labels : ndarray (n_permutations, n_samples)
        One permuted label vector per row, in the labels' own values.
    exhaustive : bool
        True when every distinct arrangement the design allows was enumerated (the observed
        one among them): p-values are then ``#{null >= observed} / n_permutations``, exact.
        False for random draws: ``(1 + #{null >= observed}) / (1 + n_permutations)``.
    n_possible : int
        Number of distinct label arrangements the scheme allows.
    permute : str
        The scheme, ``"blocks"`` or ``"samples"``.
    n_blocks : int
        Number of exchangeable units over all groups.
    """

    labels: np.ndarray
    exhaustive: bool
    n_possible: int
    permute: str
    n_blocks: int

    @property
    def n_permutations(self) -> int:
        return int(self.labels.shape[0])

    @property
    def smallest_p(self) -> float:
        """The smallest p-value these permutations can give."""
        n = self.n_permutations
        return 1.0 / n if self.exhaustive else 1.0 / (n + 1)

    def describe(self) -> dict:
        """A summary for reports and ``summary.json``."""
        return {
            "scheme": self.permute,
            "exchangeable units": self.n_blocks,
            "distinct arrangements possible": (
                self.n_possible if self.n_possible < 10**15 else f"{float(self.n_possible):.3g}"
            ),
            "permutations": self.n_permutations,
            "all arrangements enumerated": self.exhaustive,
            "smallest possible p": self.smallest_p,
        }


def make_permutations(
    y: np.ndarray,
    groups: np.ndarray | None,
    n_permutations: int,
    random_state,
    plan=None,
    max_tries: int = 100,
    permute: str = "blocks",
) -> LabelPermutations:
    """Permuted label vectors, the same for every sphere.

    Labels are exchanged among the exchangeable units (:func:`exchangeability_blocks`) of
    each group (run), which keeps every run's design. When the design allows no more
    distinct arrangements than ``n_permutations``, all of them are enumerated (the observed
    one included) and the test is exact; otherwise ``n_permutations`` arrangements are
    drawn at random from ``random_state``. With a CV ``plan`` (classification), an
    arrangement whose training set of some fold would lack a class is left out (enumerated)
    or drawn again (random).

    Parameters
    ----------
    y : ndarray (n_samples,)
    groups : ndarray (n_samples,) or None
    n_permutations : int
        Permutations asked for (at most; fewer when the design allows fewer).
    random_state : int, Generator or None
    plan : CVPlan or None
    permute : {"blocks", "samples"}
    """
    if n_permutations < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}.")
    y = np.asarray(y)
    units = exchangeability_blocks(y, groups, permute)
    # the label of each block (a block's samples share it; with "samples", each sample's)
    block_labels = [y[idx][np.searchsorted(block, np.arange(block[-1] + 1))] for idx, block in units]
    n_possible = math.prod(_count_arrangements(b) for b in block_labels)
    n_blocks = sum(b.size for b in block_labels)
    classes = np.unique(y)

    def assemble(arrangement) -> np.ndarray:
        labels = y.copy()
        for (idx, block), values in zip(units, arrangement):
            labels[idx] = values[block]
        return labels

    def valid(labels) -> bool:
        return plan is None or all(
            np.unique(labels[train]).size == classes.size for train in plan.train_indices
        )

    if 0 < n_possible <= n_permutations:
        rows = [
            labels
            for arrangement in itertools.product(*(_distinct_orderings(b) for b in block_labels))
            if valid(labels := assemble(arrangement))
        ]  # fmt: skip
        out = np.stack(rows) if rows else np.empty((0, y.size), dtype=y.dtype)
        return LabelPermutations(out, True, n_possible, permute, n_blocks)

    rng = np.random.default_rng(random_state)
    out = np.empty((n_permutations, y.size), dtype=y.dtype)
    for p in range(n_permutations):
        for _ in range(max_tries):
            labels = assemble([b[rng.permutation(b.size)] for b in block_labels])
            if valid(labels):
                break
        else:
            raise ValueError(
                "Could not draw label permutations that keep every class in every training "
                "fold: use a cross-validation that leaves more samples in training."
            )
        out[p] = labels
    return LabelPermutations(out, False, n_possible, permute, n_blocks)

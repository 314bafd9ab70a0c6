"""Fold statistics shared by the batched estimators built on class sums.

Gaussian naive Bayes and the correlation classifier start from per-class training sums of
every fold: class counts, sums, sums of squares. This module computes them; the compiled
LDA kernel (:mod:`._lda_kernel`) reads its sample layout from the same blocks.

- *Blocks*: statistics of a fold's training set (per-class counts, sums, cross-products)
  are sums of the same statistics over disjoint blocks of samples. The samples are
  grouped into blocks that every fold either uses entirely for training or not at all
  (same class, same train/test membership in every fold); block statistics are computed
  once per sphere and each fold's training statistics are obtained by adding the blocks
  it trains on, or by subtracting from the total the blocks it does not train on,
  whichever is shorter. For the usual partitions of the samples (k-fold,
  leave-one-run-out) there are ``n_folds x n_classes`` blocks, so computing every fold's
  statistics costs about as much as computing them once on all samples.
- *Layout*: spheres are processed in slabs that fit in the processor's cache, with the
  samples in block order along the first axis, ``(n_samples, n_spheres, n_features)``:
  sums over samples, centring and per-sphere scalings then run over long contiguous
  rows. (This is also the layout of the blocks the searchlight engine passes, whose
  ``(n_spheres, n_samples, n_features)`` array is a transposed view of it.)
- *Class-centred data*: each sample is stored relative to a reference sample of its
  class (:func:`gather_centered`), which keeps sums of squares accurate on raw BOLD
  values and makes a feature that is constant within a class exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..cv import CVPlan

#: size in bytes of the data of a slab of spheres processed at once (so that the
#: temporaries stay in the processor's cache)
SLAB_BYTES = 2 * 2**20


@dataclass(frozen=True)
class FoldBlocks:
    """Grouping of the samples into blocks shared by every fold of a CV plan.

    A block is a set of samples of one class that have the same role (train, test or
    unused) in every fold. Samples are reordered by class, then block, so that every
    class and every block is a contiguous range. Build it with :func:`make_fold_blocks`.

    Attributes
    ----------
    order : ndarray of int, shape (n_samples,)
        Sample indices in block order.
    bounds : ndarray of int, shape (n_blocks + 1,)
        Block ``b`` holds positions ``bounds[b]:bounds[b + 1]`` of ``order``.
    block_class : ndarray of int, shape (n_blocks,)
        Class of each block.
    class_bounds : ndarray of int, shape (n_classes + 1,)
        Class ``c`` holds positions ``class_bounds[c]:class_bounds[c + 1]``; its first
        sample is the class's reference sample.
    train_mask : ndarray of bool, shape (n_folds, n_blocks)
        Whether a block belongs to a fold's training set.
    sample_train : ndarray of bool, shape (n_folds, n_samples)
        Whether a sample (in block order) belongs to a fold's training set.
    train_counts : ndarray of shape (n_folds, n_classes)
        Number of training samples of each class in each fold.
    test_pieces : list of list of (slice or ndarray of int, int)
        Per fold, ``(rows, class)`` pairs: contiguous runs of positions holding test
        samples of one class (or, when they are scattered, an array of positions per
        class).
    test_unsort : list of ndarray of int
        Per fold, indices into the test samples in piece order that give them in the
        order of ``plan.test_indices``.
    """

    order: np.ndarray
    bounds: np.ndarray
    block_class: np.ndarray
    class_bounds: np.ndarray
    train_mask: np.ndarray
    sample_train: np.ndarray
    train_counts: np.ndarray
    test_pieces: list[list[tuple]]
    test_unsort: list[np.ndarray]
    _sum_plans: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_blocks(self) -> int:
        return len(self.block_class)

    @property
    def n_folds(self) -> int:
        return self.train_mask.shape[0]

    @property
    def n_classes(self) -> int:
        return self.train_counts.shape[1]

    def class_slice(self, c: int) -> slice:
        """Positions of the samples of class ``c``."""
        return slice(int(self.class_bounds[c]), int(self.class_bounds[c + 1]))

    def block_slices(self, used_only: bool = False) -> Iterator[tuple[int, int, slice]]:
        """Yield ``(block, class, slice)`` for every block (or every training block)."""
        used = self.train_mask.any(axis=0)
        for b in range(self.n_blocks):
            if used_only and not used[b]:
                continue
            yield b, int(self.block_class[b]), slice(int(self.bounds[b]), int(self.bounds[b + 1]))

    def fold_class_sums(self, block_stats: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Sum block statistics over each fold's training blocks, class by class.

        Parameters
        ----------
        block_stats : ndarray of shape (n_blocks, ...)
            One statistic per block (e.g. sums, cross-products); blocks that train no
            fold may hold anything.
        out : ndarray of shape (n_folds, n_classes, ...), optional
            Where to write the result.

        Returns
        -------
        ndarray of shape (n_folds, n_classes, ...)
        """
        if out is None:
            out = np.empty((self.n_folds, self.n_classes) + block_stats.shape[1:])
        for c in range(self.n_classes):
            self._fold_sums(block_stats, self.block_class == c, out[:, c])
        return out

    def fold_sums(self, block_stats: np.ndarray) -> np.ndarray:
        """Sum block statistics over each fold's training blocks, all classes together.

        Parameters
        ----------
        block_stats : ndarray of shape (n_blocks, ...)

        Returns
        -------
        ndarray of shape (n_folds, ...)
        """
        out = np.empty((self.n_folds,) + block_stats.shape[1:])
        self._fold_sums(block_stats, np.ones(self.n_blocks, dtype=bool), out)
        return out

    def _fold_sums(self, block_stats: np.ndarray, subset: np.ndarray, out: np.ndarray) -> None:
        """``out[f]`` = sum of ``block_stats`` over the blocks of ``subset`` training fold
        ``f``: the training blocks are added, or the others subtracted from the total,
        whichever involves fewer blocks."""
        key = subset.tobytes()
        plan = self._sum_plans.get(key)
        if plan is None:
            members = np.flatnonzero(subset & self.train_mask.any(axis=0))
            plan = []
            for f in range(self.n_folds):
                inc = members[self.train_mask[f, members]]
                exc = members[~self.train_mask[f, members]]
                plan.append((True, exc) if len(exc) < len(inc) else (False, inc))
            plan = (members, plan)
            self._sum_plans[key] = plan
        members, per_fold = plan
        total = None
        for f, (subtract, rows) in enumerate(per_fold):
            if subtract:
                if total is None:
                    total = _add_rows(block_stats, members)
                if len(rows):
                    np.subtract(total, _add_rows(block_stats, rows), out=out[f])
                else:
                    out[f] = total
            else:
                out[f] = _add_rows(block_stats, rows)

    def test_decisions(self, fun: Callable[..., np.ndarray], f: int) -> np.ndarray:
        """Decisions on the test samples of fold ``f``, in plan order.

        Parameters
        ----------
        fun : callable
            ``fun(rows, c)`` returns the decisions ``(n_spheres, n_rows, ...)`` of the
            samples of class ``c`` at positions ``rows`` (a slice or an index array, to
            apply to block-ordered data as ``U[rows]``).
        f : int

        Returns
        -------
        ndarray of shape (n_spheres, n_test, ...)
        """
        parts = [fun(rows, c) for rows, c in self.test_pieces[f]]
        dec = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return dec[:, self.test_unsort[f]]


def _add_rows(stats: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Sum of ``stats[rows]`` along the first axis (a view when there is one row)."""
    if len(rows) == 0:
        return np.zeros(stats.shape[1:])
    acc = stats[rows[0]]
    if len(rows) > 1:
        acc = acc + stats[rows[1]]
        for r in rows[2:]:
            acc += stats[r]
    return acc


def make_fold_blocks(y: np.ndarray, n_classes: int, plan: CVPlan) -> FoldBlocks:
    """Group the samples of a CV plan into blocks (see :class:`FoldBlocks`).

    Parameters
    ----------
    y : ndarray of int of shape (n_samples,)
        Class codes in ``0 .. n_classes-1``, for the ``n_classes`` classes.
    n_classes : int
    plan : CVPlan

    Returns
    -------
    FoldBlocks

    Raises
    ------
    ValueError
        If a class is absent from a fold's training set (the fitted classifier would
        then have fewer classes than the others).
    """
    y = np.asarray(y)
    n_samples = plan.n_samples
    if y.shape != (n_samples,):
        raise ValueError(f"y has shape {y.shape}, the CV plan expects ({n_samples},).")
    if n_classes < 2:
        raise ValueError("At least two classes are needed.")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError("Class codes must lie in 0 .. n_classes-1.")
    n_folds = plan.n_folds
    train = np.zeros((n_folds, n_samples), dtype=bool)
    test = np.zeros((n_folds, n_samples), dtype=bool)
    for f in range(n_folds):
        train[f, plan.train_indices[f]] = True
        test[f, plan.test_indices[f]] = True
    train_counts = np.stack([np.bincount(y[tr], minlength=n_classes) for tr in plan.train_indices]).astype(
        np.float64
    )
    if np.any(train_counts == 0):
        raise ValueError("Every class must be present in the training set of every fold.")

    # role of a sample in every fold; the first fold testing it comes first so that,
    # within a class, each fold's test samples are contiguous when the test sets are
    # disjoint
    first_test = np.where(test.any(axis=0), test.argmax(axis=0), n_folds)
    role = np.concatenate([first_test[None, :], train, test]).T.astype(np.int64)
    _, role_id = np.unique(role, axis=0, return_inverse=True)
    role_id = role_id.ravel()
    order = np.lexsort((np.arange(n_samples), role_id, y))
    r_sorted, y_sorted = role_id[order], y[order]
    new_block = np.ones(n_samples, dtype=bool)
    new_block[1:] = (r_sorted[1:] != r_sorted[:-1]) | (y_sorted[1:] != y_sorted[:-1])
    starts = np.flatnonzero(new_block)
    class_bounds = np.searchsorted(y_sorted, np.arange(n_classes + 1))
    train_sorted = train[:, order]
    test_sorted = test[:, order]

    test_pieces, test_unsort = _test_pieces(order, class_bounds, test_sorted, plan)
    return FoldBlocks(
        order=order,
        bounds=np.append(starts, n_samples),
        block_class=y_sorted[starts],
        class_bounds=class_bounds,
        train_mask=train_sorted[:, starts],
        sample_train=train_sorted,
        train_counts=train_counts,
        test_pieces=test_pieces,
        test_unsort=test_unsort,
    )


def _test_pieces(
    order: np.ndarray, class_bounds: np.ndarray, test_sorted: np.ndarray, plan: CVPlan
) -> tuple[list[list[tuple]], list[np.ndarray]]:
    """Each fold's test samples as runs of block-ordered positions of one class.

    Parameters
    ----------
    order : ndarray of int (n_samples,)
        Sample indices in block order.
    class_bounds : ndarray of int (n_classes + 1,)
        Positions of each class in block order.
    test_sorted : ndarray of bool (n_folds, n_samples)
        Whether a sample (in block order) is in a fold's test set.
    plan : CVPlan

    Returns
    -------
    test_pieces, test_unsort
        As in :class:`FoldBlocks`.
    """
    n_samples = len(order)
    inv = np.empty(n_samples, dtype=np.intp)
    inv[order] = np.arange(n_samples)
    test_pieces, test_unsort = [], []
    for f in range(plan.n_folds):
        pieces, positions = [], []
        for c in range(len(class_bounds) - 1):
            lo, hi = int(class_bounds[c]), int(class_bounds[c + 1])
            pos = lo + np.flatnonzero(test_sorted[f, lo:hi])
            if not len(pos):
                continue
            breaks = np.flatnonzero(np.diff(pos) != 1) + 1
            if len(breaks) < 4:
                for run in np.split(pos, breaks):
                    pieces.append((slice(int(run[0]), int(run[-1]) + 1), c))
            else:  # scattered test samples: gather them
                pieces.append((pos, c))
            positions.append(pos)
        positions = np.concatenate(positions)
        # position of each plan-ordered test sample among the pieces' samples
        rank = np.empty(n_samples, dtype=np.intp)
        rank[positions] = np.arange(len(positions))
        test_pieces.append(pieces)
        test_unsort.append(rank[inv[plan.test_indices[f]]])
    return test_pieces, test_unsort


def sphere_slabs(
    n_spheres: int, n_samples: int, n_features: int, slab_bytes: int | None = None
) -> Iterator[slice]:
    """Yield slices of spheres whose data take about ``slab_bytes`` each."""
    if n_spheres <= 0:
        return
    if slab_bytes is None:
        slab_bytes = SLAB_BYTES
    step = max(8, slab_bytes // max(1, 8 * n_samples * n_features))
    n_slabs = -(-n_spheres // step)
    step = -(-n_spheres // n_slabs)  # even slabs
    for start in range(0, n_spheres, step):
        yield slice(start, min(start + step, n_spheres))


def gather(X: np.ndarray, blocks: FoldBlocks) -> np.ndarray:
    """Samples in block order along the first axis.

    Parameters
    ----------
    X : ndarray of shape (n_spheres, n_samples, n_features)
    blocks : FoldBlocks

    Returns
    -------
    ndarray of shape (n_samples, n_spheres, n_features)
    """
    return X.transpose(1, 0, 2)[blocks.order]


def gather_centered(X: np.ndarray, blocks: FoldBlocks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples in block order, each relative to the reference sample of its class.

    Parameters
    ----------
    X, blocks
        As for :func:`gather`.

    Returns
    -------
    U : ndarray of shape (n_samples, n_spheres, n_features)
        ``X - ref[class]``, samples in block order.
    ref : ndarray of shape (n_classes, n_spheres, n_features)
        The reference (first) sample of each class.
    shift : ndarray of shape (n_classes, n_spheres, n_features)
        ``ref[c] - ref[0]``: adding ``shift[c]`` to a centred sample of class ``c``
        gives it in the common frame ``X - ref[0]``.

    Notes
    -----
    Working relative to a sample of the same class keeps sums of squares accurate for
    raw BOLD values and makes a feature that is constant within a class exactly zero, so
    that its variance is exactly zero.
    """
    U = gather(X, blocks)
    ref = U[blocks.class_bounds[:-1]]
    for c in range(blocks.n_classes):
        U[blocks.class_slice(c)] -= ref[c]
    return U, ref, ref - ref[0]


def block_sums(U: np.ndarray, blocks: FoldBlocks) -> np.ndarray:
    """Per-block sums over samples, shape (n_blocks, n_spheres, n_features)."""
    out = np.zeros((blocks.n_blocks,) + U.shape[1:])
    for b, _, sl in blocks.block_slices(used_only=True):
        np.sum(U[sl], axis=0, out=out[b])
    return out


def block_sums_of_squares(U: np.ndarray, blocks: FoldBlocks) -> np.ndarray:
    """Per-block sums of squares over samples, shape (n_blocks, n_spheres, n_features)."""
    out = np.zeros((blocks.n_blocks,) + U.shape[1:])
    for b, _, sl in blocks.block_slices(used_only=True):
        np.einsum("nsp,nsp->sp", U[sl], U[sl], out=out[b])
    return out


def block_grams(U: np.ndarray, blocks: FoldBlocks, out: np.ndarray | None = None) -> np.ndarray:
    """Per-block cross-products ``Ub.T @ Ub`` of each sphere, shape
    (n_blocks, n_spheres, p, p) (written to ``out`` if given)."""
    p = U.shape[2]
    if out is None:
        out = np.zeros((blocks.n_blocks, U.shape[1], p, p))
    used = blocks.train_mask.any(axis=0)
    for b, _, sl in blocks.block_slices():
        if used[b]:
            Ub = U[sl]
            np.matmul(Ub.transpose(1, 2, 0), Ub.transpose(1, 0, 2), out=out[b])
        else:
            out[b] = 0.0
    return out

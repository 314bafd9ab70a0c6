"""Batched linear discriminant analysis, and the fold statistics shared by the estimators.

:class:`BatchedLDA` reproduces scikit-learn's
``LinearDiscriminantAnalysis(solver="lsqr", shrinkage=...)`` fitted on every sphere and
every fold.

The first part of the module holds the machinery the batched estimators share.

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

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from numbers import Real

import numpy as np

from ..cv import CVPlan
from .base import BatchedClassifier

_EPS = np.finfo(np.float64).eps

#: size in bytes of the data of a slab of spheres processed at once (so that the
#: temporaries stay in the processor's cache)
SLAB_BYTES = 2 * 2**20


# ---------------------------------------------------------------------------------------
# Fold statistics shared by the batched estimators
# ---------------------------------------------------------------------------------------


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
        Class codes in ``0 .. n_classes-1``.
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
    train_counts = np.stack(
        [np.bincount(y[tr], minlength=n_classes) for tr in plan.train_indices]
    ).astype(np.float64)
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

    inv = np.empty(n_samples, dtype=np.intp)
    inv[order] = np.arange(n_samples)
    test_pieces, test_unsort = [], []
    for f in range(n_folds):
        pieces, positions = [], []
        for c in range(n_classes):
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


class Workspace:
    """Buffers reused from one slab of spheres to the next.

    Large temporaries allocated afresh for every slab cost page faults; the estimators
    take the largest of those that are written in place (cross-products) from here.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple) -> np.ndarray:
        """An uninitialised float64 array of ``shape``, the same memory for a name."""
        size = int(np.prod(shape))
        buf = self._buffers.get(name)
        if buf is None or buf.size < size:
            buf = self._buffers[name] = np.empty(size)
        return buf[:size].reshape(shape)


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
    X : ndarray of shape (n_spheres, n_samples, n_features)
    blocks : FoldBlocks

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


def linear_test_decisions(
    U: np.ndarray, shift: np.ndarray, blocks: FoldBlocks, f: int, W: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """Linear decisions ``(X - ref[0]) @ W + b`` on the test samples of fold ``f``.

    Parameters
    ----------
    U : ndarray of shape (n_samples, n_spheres, p)
        Class-centred data in block order (see :func:`gather_centered`).
    shift : ndarray of shape (n_classes, n_spheres, p)
    blocks : FoldBlocks
    f : int
    W : ndarray of shape (n_spheres, p, k)
    b : ndarray of shape (n_spheres, k)

    Returns
    -------
    ndarray of shape (n_spheres, n_test, k), test samples in plan order.
    """
    off = np.einsum("csp,spk->csk", shift, W)
    off += b

    def piece(rows, c):
        d = np.matmul(U[rows].transpose(1, 0, 2), W)
        d += off[c][:, None, :]
        return d

    return blocks.test_decisions(piece, f)


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


def diagonal_view(A: np.ndarray) -> np.ndarray:
    """Writable view of the diagonals of a C-contiguous stack of square matrices."""
    p = A.shape[-1]
    return A.reshape(A.shape[:-2] + (p * p,))[..., :: p + 1]


def solve_batched(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``A @ x = B`` for a stack of small symmetric positive definite systems.

    Parameters
    ----------
    A : ndarray of shape (..., p, p)
    B : ndarray of shape (..., p, k)

    Returns
    -------
    ndarray of shape (..., p, k)

    Notes
    -----
    One and two features use the closed forms (much faster than a LAPACK call per
    system); larger systems use :func:`numpy.linalg.solve`.
    """
    p = A.shape[-1]
    if p == 1:
        return B / A
    if p == 2:
        a, b, d = A[..., 0, 0, None], A[..., 0, 1, None], A[..., 1, 1, None]
        det = a * d - b * b
        x0 = (d * B[..., 0, :] - b * B[..., 1, :]) / det
        x1 = (a * B[..., 1, :] - b * B[..., 0, :]) / det
        return np.stack([x0, x1], axis=-2)
    return np.linalg.solve(A, B)


# ---------------------------------------------------------------------------------------
# Linear discriminant analysis
# ---------------------------------------------------------------------------------------


class BatchedLDA(BatchedClassifier):
    """Linear discriminant analysis for every sphere and fold at once.

    Reproduces ``sklearn.discriminant_analysis.LinearDiscriminantAnalysis(
    solver="lsqr", shrinkage=shrinkage, priors=priors)``: class means and a
    within-class covariance estimated on each fold's training set, ``coef = cov^-1 @
    means.T`` and ``intercept = -0.5 * diag(means @ coef) + log(priors)``; for two
    classes the decision is the difference of the class-1 and class-0 rows.

    Parameters
    ----------
    solver : {"lsqr"}, default="lsqr"
        Only the least-squares solver is reproduced (the decisions of ``"eigen"`` are
        the same up to rounding when the covariance is invertible).
    shrinkage : "auto", float in [0, 1] or None, default="auto"
        Shrinkage of each class covariance, as scikit-learn applies it:

        - ``"auto"``: Ledoit-Wolf shrinkage of the standardised class data, rescaled to
          the data's units (a feature that is constant within a class keeps the scale 1,
          as scikit-learn's ``StandardScaler`` does);
        - float ``s``: ``(1 - s) * cov + s * trace(cov) / p * I``;
        - None: the empirical (biased) class covariance.

        The class covariances are averaged with the class priors as weights.
    priors : array-like of shape (n_classes,) or None, default=None
        Class priors; by default the class frequencies of the fold's training set.

    Notes
    -----
    With ``shrinkage=None`` (or 0) the covariance is singular when a feature has no
    within-class variance; scikit-learn's least-squares solution then gives such a
    feature a zero weight (its singular value is below the ``lstsq`` cut-off), which is
    reproduced by removing the features whose pooled variance is at most ``eps`` times the
    covariance trace. Other rank deficiencies (more features than training samples,
    collinear features) are not reproduced: the covariance is assumed invertible
    otherwise.
    """

    reference = "sklearn.discriminant_analysis.LinearDiscriminantAnalysis(solver='lsqr')"

    def __init__(
        self,
        solver: str = "lsqr",
        shrinkage: str | float | None = "auto",
        priors: np.ndarray | None = None,
    ) -> None:
        self.solver = solver
        self.shrinkage = shrinkage
        self.priors = priors

    def _check_params(self, n_classes: int) -> np.ndarray | None:
        if self.solver != "lsqr":
            raise ValueError(f"Only solver='lsqr' is implemented, got {self.solver!r}.")
        s = self.shrinkage
        if isinstance(s, str):
            if s != "auto":
                raise ValueError(f"shrinkage must be 'auto', a float or None, got {s!r}.")
        elif s is not None:
            if not isinstance(s, Real) or not 0.0 <= float(s) <= 1.0:
                raise ValueError(f"shrinkage must lie in [0, 1], got {s!r}.")
        if self.priors is None:
            return None
        priors = np.asarray(self.priors, dtype=np.float64).ravel()
        if priors.shape != (n_classes,):
            raise ValueError("The number of priors must match the number of classes.")
        if np.any(priors < 0):
            raise ValueError("priors must be non-negative")
        if abs(priors.sum() - 1.0) > 1e-5:
            warnings.warn("The priors do not sum to 1. Renormalizing", UserWarning)
            priors = priors / priors.sum()
        return priors

    def fold_decisions(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, plan: CVPlan
    ) -> list[np.ndarray]:
        """Fit every sphere on every fold's training set; decide on its test set.

        Parameters
        ----------
        X : ndarray of shape (n_spheres, n_samples, n_features)
        y : ndarray of int of shape (n_samples,)
        n_classes : int
        plan : CVPlan

        Returns
        -------
        list of ndarray, one per fold
            ``decision_function`` values: ``(n_spheres, n_test)`` for two classes, else
            ``(n_spheres, n_test, n_classes)``.
        """
        priors = self._check_params(n_classes)
        X = np.asarray(X, dtype=np.float64)
        n_spheres, n_samples, n_features = X.shape
        blocks = make_fold_blocks(y, n_classes, plan)
        binary = n_classes == 2
        outs = [
            np.empty((n_spheres, len(te)) if binary else (n_spheres, len(te), n_classes))
            for te in plan.test_indices
        ]
        ws = Workspace()
        for sl in sphere_slabs(n_spheres, n_samples, n_features):
            for f, dec in enumerate(self._slab(X[sl], blocks, priors, ws)):
                outs[f][sl] = dec
        return outs

    def _slab(
        self, X: np.ndarray, blocks: FoldBlocks, priors: np.ndarray | None, ws: Workspace
    ) -> list[np.ndarray]:
        """Decisions of every fold (test samples in plan order) for a slab of spheres."""
        n_spheres, _, p = X.shape
        n_classes, n_folds = blocks.n_classes, blocks.n_folds
        U, ref, shift = gather_centered(X, blocks)  # (n, S, p), (C, S, p)

        counts = blocks.train_counts  # (F, C)
        inv_n = 1.0 / counts
        # training class means relative to the class reference, (F, C, S, p)
        mean_u = blocks.fold_class_sums(block_sums(U, blocks))
        mean_u *= inv_n[:, :, None, None]
        if priors is None:
            prior = counts / counts.sum(axis=1, keepdims=True)
        else:
            prior = np.broadcast_to(priors, (n_folds, n_classes))

        shrinkage = self.shrinkage
        if shrinkage == "auto":
            bg = block_grams(U, blocks, ws.get("grams", (blocks.n_blocks, n_spheres, p, p)))
            G = blocks.fold_class_sums(bg, ws.get("G", (n_folds, n_classes, n_spheres, p, p)))
            var = diagonal_view(G) * inv_n[:, :, None, None] - mean_u * mean_u
            # StandardScaler's scale, with its rule for (near-)constant features
            mean_raw = ref[None] + mean_u
            nfc = counts[:, :, None, None]
            constant = var <= nfc * _EPS * var + (nfc * mean_raw * _EPS) ** 2
            scale2 = np.where(constant, 1.0, var)
            shrink, mu = self._ledoit_wolf(U, blocks, G, mean_u, var, scale2)
            alpha = prior[:, :, None] * (1.0 - shrink)  # (F, C, S)
            # pooled = sum_c alpha_c cov_c + diag(sum_c prior_c shrink_c mu_c scale2_c)
            pooled = np.einsum("fcs,fcsij->fsij", alpha * inv_n[:, :, None], G)
            diag_add = np.einsum("fcs,fcsj->fsj", prior[:, :, None] * shrink * mu, scale2)
        else:
            s = 0.0 if shrinkage is None else float(shrinkage)
            # class weights do not depend on the sphere: combine the block cross-products
            # straight into the pooled matrix
            bg = block_grams(U, blocks, ws.get("grams", (blocks.n_blocks, n_spheres, p, p)))
            wb = np.where(
                blocks.train_mask,
                (1.0 - s) * (prior * inv_n)[:, blocks.block_class],
                0.0,
            )
            pooled = np.tensordot(wb, bg, axes=(1, 0))  # (F, S, p, p)
            alpha = np.broadcast_to(((1.0 - s) * prior)[:, :, None], mean_u.shape[:3])
            diag_add = None
            if s != 0.0:
                bdiag = np.ascontiguousarray(diagonal_view(bg))
                var = blocks.fold_class_sums(bdiag) * inv_n[:, :, None, None] - mean_u * mean_u
                tr = np.einsum("fc,fcsj->fs", s * prior, var) / p
                diag_add = np.broadcast_to(tr[:, :, None], tr.shape + (p,))
        # remove the weighted outer products of the class means (rank n_classes)
        am = mean_u * alpha[..., None]
        pooled -= np.matmul(am.transpose(0, 2, 3, 1), mean_u.transpose(0, 2, 1, 3))
        if diag_add is not None:
            diagonal_view(pooled)[...] += diag_add

        keep = None
        # features without within-class variance (constant voxels without shrinkage, or
        # every voxel of a sphere of constant data) get a zero weight, as the minimum-norm
        # least-squares solution of scikit-learn's "lsqr" solver gives them
        pvar = diagonal_view(pooled)
        null = pvar <= _EPS * pvar.sum(axis=-1, keepdims=True)
        if null.any():
            keep = ~null
            pooled *= keep[..., :, None] & keep[..., None, :]
            diagonal_view(pooled)[...] += null

        # class means in the common frame X - ref[0], (F, S, C, p)
        means = (shift[None] + mean_u).transpose(0, 2, 1, 3)
        log_prior = np.log(prior)  # (F, C)
        decisions = []
        if n_classes == 2:
            rhs = means[:, :, 1] - means[:, :, 0]  # (F, S, p)
            if keep is not None:
                rhs *= keep
            w = solve_batched(pooled, rhs[..., None])  # (F, S, p, 1)
            mid = 0.5 * (means[:, :, 0] + means[:, :, 1])
            b = np.matmul(mid[:, :, None, :], w)[..., 0]  # (F, S, 1)
            b *= -1.0
            b += (log_prior[:, 1] - log_prior[:, 0])[:, None, None]
            for f in range(n_folds):
                d = linear_test_decisions(U, shift, blocks, f, w[f], b[f])
                decisions.append(d[..., 0])
            return decisions

        g = ref[0]  # (S, p): origin of the common frame
        rhs = np.empty(means.shape[:2] + (p, n_classes + 1))
        rhs[..., :n_classes] = means.transpose(0, 1, 3, 2)
        rhs[..., n_classes] = g
        if keep is not None:
            rhs *= keep[..., None]
        sol = solve_batched(pooled, rhs)  # (F, S, p, C + 1)
        v, h = sol[..., :n_classes], sol[..., n_classes]  # cov^-1 (m_c - g), cov^-1 g
        coef = v + h[..., None]  # (F, S, p, C): scikit-learn's coef_.T
        # intercept in the common frame: -0.5 (m_c - g).v_c + 0.5 g.h + log prior_c
        icpt = -0.5 * np.einsum("fscp,fspc->fsc", means, v)
        icpt += 0.5 * np.einsum("sp,fsp->fs", g, h)[..., None]
        icpt += log_prior[:, None, :]
        for f in range(n_folds):
            decisions.append(linear_test_decisions(U, shift, blocks, f, coef[f], icpt[f]))
        return decisions

    @staticmethod
    def _ledoit_wolf(
        U: np.ndarray,
        blocks: FoldBlocks,
        G: np.ndarray,
        mean_u: np.ndarray,
        var: np.ndarray,
        scale2: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ledoit-Wolf shrinkage of the standardised training data of each fold and class.

        With ``z = (x - mean) / scale`` (``scale2 = scale**2``), ``R`` the covariance of
        ``z`` and ``mu = trace(R) / p``, the shrinkage is ``min(beta, delta) / delta``
        (0 if ``beta`` is 0, and 0 for a single feature) with ``delta = ||R - mu I||^2 /
        p`` and ``beta = (mean_i ||z_i||^4 - ||R||^2) / (p n)``.

        Parameters
        ----------
        U : ndarray of shape (n_spheres, n_samples, p)
            Class-centred data in block order.
        blocks : FoldBlocks
        G : ndarray of shape (n_folds, n_classes, n_spheres, p, p)
            Training cross-products of ``U``.
        mean_u, var, scale2 : ndarray of shape (n_folds, n_classes, n_spheres, p)
            Training means of ``U``, variances and squared scales.

        Returns
        -------
        shrinkage, mu : ndarray of shape (n_folds, n_classes, n_spheres)
        """
        n_folds, n_classes, n_spheres, p = mean_u.shape
        inv_n = (1.0 / blocks.train_counts)[:, :, None]  # (F, C, 1)
        w = 1.0 / scale2
        mu = np.einsum("fcsj,fcsj->fcs", var, w) / p
        if p == 1:
            return np.zeros(mu.shape), mu

        # ||R||_F^2 from the cross-products without forming R (Sigma = G / n - m m^T):
        # sum_jk w_j w_k Sigma_jk^2
        #   = w.(G*G).w / n^2 - 2 (w m).G.(w m) / n + (sum_j w_j m_j^2)^2
        wm = w * mean_u
        wmm = np.einsum("fcsj,fcsj->fcs", wm, mean_u)
        delta_ = np.einsum("fcsi,fcsi->fcs", np.einsum("fcsij,fcsj->fcsi", G * G, w), w)
        delta_ *= inv_n**2
        Gwm = np.einsum("fcsij,fcsj->fcsi", G, wm)
        delta_ -= 2.0 * inv_n * np.einsum("fcsi,fcsi->fcs", Gwm, wm)
        delta_ += wmm * wmm
        delta = (delta_ - p * mu * mu) / p

        # sum over the training samples of ||z_i||^4, with
        # ||z_i||^2 = sum_j w_j u_ij^2 - 2 sum_j w_j m_j u_ij + sum_j w_j m_j^2
        W = w.transpose(1, 2, 3, 0)  # (C, S, p, F)
        WM = (-2.0 * wm).transpose(1, 2, 3, 0)
        K = wmm.transpose(1, 2, 0)[:, :, None, :]  # (C, S, 1, F)
        fourth = np.empty((n_folds, n_classes, n_spheres))
        for c in range(n_classes):
            sl = blocks.class_slice(c)
            Uc = U[sl].transpose(1, 0, 2)  # (S, n_c, p)
            q = np.matmul(Uc * Uc, W[c])
            q += np.matmul(Uc, WM[c])
            q += K[c]  # (S, n_c, F): ||z_i||^2 for every sample of the class and fold
            q *= q
            # keep the folds in which the sample trains
            fourth[:, c] = np.einsum("snf,fn->fs", q, blocks.sample_train[:, sl].astype(np.float64))
        beta = (fourth * inv_n - delta_) * (inv_n / p)
        beta = np.minimum(beta, delta)
        with np.errstate(divide="ignore", invalid="ignore"):
            shrink = np.where(beta == 0, 0.0, beta / delta)
        return shrink, mu

    def bytes_per_sphere(
        self, n_samples: int, n_features: int, n_folds: int, n_classes: int
    ) -> int:
        """Peak working memory per sphere: the input block and the decisions (the
        temporaries are bounded by the slab size, see :data:`SLAB_BYTES`)."""
        return 8 * n_samples * (n_features + 2 * n_classes)

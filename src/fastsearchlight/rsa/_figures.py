"""The RDM of a sphere as a matrix figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_rdm(vector: np.ndarray, conditions, path, *, title: str = "") -> Path:
    """Draw an RDM vector (``squareform`` order) as a square matrix with condition labels.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    from matplotlib.figure import Figure

    n = len(conditions)
    square = np.zeros((n, n))
    rows, cols = np.triu_indices(n, 1)
    square[rows, cols] = square[cols, rows] = vector
    fig = Figure(figsize=(1.6 + 0.45 * n, 1.2 + 0.45 * n))
    ax = fig.add_subplot()
    image = ax.imshow(square, cmap="viridis")
    ax.set_xticks(range(n), [str(c) for c in conditions], rotation=90)
    ax.set_yticks(range(n), [str(c) for c in conditions])
    fig.colorbar(image, ax=ax, shrink=0.8, label="dissimilarity")
    ax.set_title(title, fontsize=8, wrap=True)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path

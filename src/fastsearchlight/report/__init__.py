"""Figures and the HTML report of a searchlight study.

The figures follow nilearn's classic searchlight example: the cross-validated score map
over the mean functional image (:func:`plot_searchlight`), the univariate F-test map
(:func:`plot_f_scores`) and, for permutation tests, the null distribution of the maximum
statistic (:func:`plot_null_distribution`). :func:`top_regions` lists the best-scoring
clusters of a map, and :func:`write_report` puts figures, tables and the study summary on
one self-contained HTML page.

Plotting works without a display: matplotlib's Agg backend is selected when no backend
has been chosen yet, and every figure is a standalone :class:`matplotlib.figure.Figure`
that is saved to disk and never shown or registered with pyplot.

The work is shared by private modules: ``_figures`` (the figures), ``_regions`` (the
region table), ``_html`` (the page) and ``_maps`` (reading the maps).
"""

from __future__ import annotations

from ._figures import plot_f_scores, plot_null_distribution, plot_searchlight
from ._html import write_report
from ._regions import TOP_REGION_COLUMNS, top_regions

__all__ = [
    "TOP_REGION_COLUMNS",
    "plot_f_scores",
    "plot_null_distribution",
    "plot_searchlight",
    "top_regions",
    "write_report",
]

"""The answer of a study at a glance: a one-sentence headline, and tables with rounded numbers."""

from __future__ import annotations

__all__ = ["display_p", "headline", "rounded"]


def headline(summary: dict, scoring: str) -> str:
    """The answer in one sentence, at the top of the report."""
    r = summary["results"]
    x, y, z = (round(v) for v in r["peak position (mm)"])
    text = (
        f"Best {scoring} {r['max score']:.2f} (chance {r['chance level']:.2f}) at "
        f"x={x}, y={y}, z={z} mm; {r['spheres above chance']} of {r['spheres']} spheres above chance."
    )
    test = summary.get("permutation test")
    if test:
        text += (
            f" {test['spheres with FWE p < 0.05 (max statistic)']} spheres with family-wise corrected "
            f"p < 0.05 ({summary['parameters']['n_permutations']} permutations asked)."
        )
    return text


def rounded(table):
    """A table's scores to 3 decimals and its coordinates to whole millimetres."""
    shown = table.copy()
    for col in shown.columns:
        if col.endswith("_mm"):
            shown[col] = shown[col].round(0).astype("int64")
        elif shown[col].dtype.kind == "f":
            shown[col] = shown[col].round(3)
    shown.attrs = {k: round(v, 3) if isinstance(v, float) else v for k, v in table.attrs.items()}
    return shown


def display_p(table, columns, smallest: float):
    """The table with its p-value columns as text: rounded, and "<= 1/(N+1)" where the
    observed value beat every permutation (the smallest p the test can give)."""
    shown = table.copy()
    for col in columns:
        shown[col] = [f"<= {smallest:.3g}" if p <= smallest * (1 + 1e-9) else f"{p:.3g}" for p in table[col]]
    return shown

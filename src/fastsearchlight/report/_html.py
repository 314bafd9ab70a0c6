"""The HTML page of a study: figures, tables and the study summary, readable offline."""

from __future__ import annotations

import html
import math
import numbers
import os
import uuid
import warnings
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from .._versions import package_version

__all__ = ["write_report"]

_MAIN_SECTIONS = ("results", "parameters", "data")
_LAST_SECTIONS = ("timings", "software")
_MAX_ITEMS = 50
_MAX_DEPTH = 6

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       background: #fafafa; margin: 0; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em 2em 3em; background: #fff; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-top: 1.2em; }
nav { font-size: 0.9em; color: #555; margin-bottom: 1em; }
nav a { color: #2a5db0; text-decoration: none; margin-right: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f1f1f1; }
table.kv > tbody > tr > th { width: 14em; font-weight: 600; }
table.kv td { word-break: break-word; }
table.nested { margin: 0; font-size: 1em; }
table.data td { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0 1.6em; }
.answer { display: flex; flex-wrap: wrap; gap: 0 1.5em; align-items: flex-start; }
.answer figure { margin: 0.6em 0 1em; flex: 1 1 100%; }
.answer figure.half { flex: 1 1 calc(50% - 1.5em); min-width: 320px; }
p.headline { font-size: 1.12em; background: #f4f7fb; border-left: 4px solid #2a5db0; padding: 0.5em 0.8em; }
figure img { max-width: 100%; height: auto; border: 1px solid #ccc; }
figcaption { font-size: 0.92em; color: #444; margin-top: 0.3em; }
.note, footer { color: #666; font-size: 0.88em; }
footer { margin-top: 3em; border-top: 1px solid #ddd; padding-top: 0.5em; }
""".strip()


def _format_float(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def _render_value(value, depth: int = 0) -> str:
    """A summary value as escaped HTML: scalars as text, mappings as nested tables."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return "&mdash;"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return _format_float(float(value))
    if isinstance(value, str):
        return html.escape(value).replace("\n", "<br>")
    if depth >= _MAX_DEPTH:
        return html.escape(str(value))
    if isinstance(value, Mapping):
        if not value:
            return "&mdash;"
        return _kv_table(value, css_class="kv nested", depth=depth + 1)
    if isinstance(value, pd.DataFrame):
        return _frame_html(value)
    if isinstance(value, pd.Series):
        value = value.to_dict()
        return _kv_table(value, css_class="kv nested", depth=depth + 1) if value else "&mdash;"
    if isinstance(value, np.ndarray) and value.size > _MAX_ITEMS:
        return html.escape(f"array of shape {value.shape}, dtype {value.dtype}")
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        if not items:
            return "&mdash;"
        more = len(items) - _MAX_ITEMS
        items = items[:_MAX_ITEMS]
        rendered = [_render_value(item, depth + 1) for item in items]
        scalar = all(item is None or isinstance(item, (str, numbers.Number, np.generic)) for item in items)
        if scalar and all("<br>" not in r for r in rendered):
            text = ", ".join(rendered)
            return text + (f", &hellip; ({more} more)" if more > 0 else "")
        body = "".join(f"<li>{r}</li>" for r in rendered)
        if more > 0:
            body += f"<li>&hellip; ({more} more)</li>"
        return f"<ul>{body}</ul>"
    return html.escape(str(value))


def _kv_table(mapping: Mapping, *, css_class: str = "kv", depth: int = 0) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{_render_value(val, depth)}</td></tr>"
        for key, val in mapping.items()
    )
    return f'<table class="{css_class}"><tbody>{rows}</tbody></table>'


def _frame_html(frame: pd.DataFrame) -> str:
    default_index = isinstance(frame.index, pd.RangeIndex) and frame.index.name is None
    return frame.to_html(
        escape=True,
        index=not default_index,
        border=0,
        classes="data",
        na_rep="\u2014",
        float_format=lambda x: f"{x:.4g}",
    )


def _heading(key) -> str:
    text = str(key).replace("_", " ").strip() or str(key)
    return html.escape(text[:1].upper() + text[1:])


def _anchor(prefix: str, key, used: set[str]) -> str:
    base = "".join(c if c.isalnum() else "-" for c in str(key).lower()).strip("-") or "section"
    anchor = f"{prefix}-{base}"
    i = 2
    while anchor in used:
        anchor = f"{prefix}-{base}-{i}"
        i += 1
    used.add(anchor)
    return anchor


def _figure_src(out_dir: Path, name) -> str:
    """``name`` as a URL relative to ``out_dir``; warns if the file does not exist."""
    root = Path(os.path.abspath(out_dir))
    full = Path(os.path.normpath(root / name))  # an absolute ``name`` replaces ``root``
    if not full.is_relative_to(root):
        # The same folder may be spelled through a symbolic link.
        full, root = full.resolve(), root.resolve()
    if not full.is_relative_to(root) or full == root:
        raise ValueError(f"Figure {str(name)!r} is not inside the output folder {out_dir}.")
    rel = full.relative_to(root)
    if not full.is_file():
        warnings.warn(f"Figure file {full} does not exist; the report links to it anyway.", stacklevel=5)
    return html.escape(quote(rel.as_posix(), safe="/"), quote=True)


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{heading}</h2>\n{body}\n</section>'


def _section_body(value) -> str:
    if isinstance(value, Mapping):
        return _kv_table(value) if value else '<p class="note">(empty)</p>'
    if isinstance(value, pd.DataFrame):
        return _frame_html(value)
    return f"<p>{_render_value(value)}</p>"


def write_report(
    out_dir: str | os.PathLike,
    summary: Mapping,
    *,
    figures: Mapping[str, str | os.PathLike],
    tables: Mapping[str, pd.DataFrame] | None = None,
    filename: str = "report.html",
    force: bool = False,
    title: str = "Searchlight report",
    answer: Mapping[str, str | os.PathLike] | None = None,
    headline: str | None = None,
) -> Path:
    """Write a self-contained HTML report of a study into its output folder.

    The page needs no network: CSS is inline, there is no script, and figures are linked
    by paths relative to ``out_dir`` so the folder can be moved or archived as a whole.
    Sections, in order: the answer (``headline`` and the ``answer`` figures), results,
    tables, figures, parameters, data, any other top-level summary key (in the summary's
    order), timings, software. A mapping section is a
    two-column table; nested mappings become nested tables, lists comma-separated text.
    Every string from the summary and the tables is HTML-escaped.

    The page is written to a temporary file in ``out_dir`` and moved into place with
    :func:`os.replace`, so a reader never sees a half-written report.

    Parameters
    ----------
    out_dir : str or path-like
        Output folder of the study (created if missing).
    summary : mapping
        Study summary. The keys "parameters", "data", "results", "timings" and "software"
        are expected to hold flat mappings; any other key becomes a section of its own.
    figures : mapping of str to str or path-like
        Caption -> figure file name inside ``out_dir`` (relative, or absolute inside it).
        A missing file gives a warning and is linked anyway.
    tables : mapping of str to pandas.DataFrame or None, default=None
        Heading -> table, e.g. ``{"Top regions": top_regions(...)}``.
    filename : str, default="report.html"
        Name of the page inside ``out_dir``.
    force : bool, default=False
        Overwrite an existing page.
    title : str, default="Searchlight report"
        Page title.
    answer : mapping of str to str or path-like, or None, default=None
        Caption -> figure shown first, in the "Answer" section (the map, the corrected
        maps, the histogram of scores); the first full width, the others side by side.
    headline : str or None, default=None
        One sentence opening the page: the answer in words.

    Returns
    -------
    pathlib.Path
        Path of the written page.

    Raises
    ------
    FileExistsError
        If the page exists and ``force`` is False.
    ValueError
        If ``filename`` is not a plain file name or a figure lies outside ``out_dir``.
    """
    out_dir = Path(out_dir)
    if not filename or filename in (".", "..") or Path(filename).name != filename:
        raise ValueError(f"filename must be a plain file name, got {filename!r}.")
    if not isinstance(summary, Mapping):
        raise TypeError(f"summary must be a mapping, got {type(summary).__name__}.")
    target = out_dir / filename
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists; pass force=True to overwrite it.")
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = _sections(out_dir, summary, figures, tables)
    if answer or headline:
        body = f'<p class="headline">{html.escape(headline)}</p>' if headline else ""
        body += _figures_body(out_dir, answer or {}, layout=True)
        sections.insert(0, ("s-answer", "Answer", body))
    page = _page(title, sections)
    _write_page(out_dir, filename, target, page)
    return target


def _sections(out_dir: Path, summary: Mapping, figures, tables) -> list[tuple[str, str, str]]:
    """The page's sections, ``(anchor, heading, body)``, in the order :func:`write_report` says."""
    used: set[str] = set()
    sections: list[tuple[str, str, str]] = []

    def add_summary_section(key) -> None:
        sections.append((_anchor("s", key, used), _heading(key), _section_body(summary[key])))

    for key in ("results",):
        if key in summary:
            add_summary_section(key)
    for heading, frame in (tables or {}).items():
        sections.append((_anchor("t", heading, used), html.escape(str(heading)), _table_body(heading, frame)))
    if figures:
        sections.append((_anchor("s", "figures", used), "Figures", _figures_body(out_dir, figures)))
    for key in _MAIN_SECTIONS[1:]:
        if key in summary:
            add_summary_section(key)
    for key in summary:
        if key not in _MAIN_SECTIONS and key not in _LAST_SECTIONS:
            add_summary_section(key)
    for key in _LAST_SECTIONS:
        if key in summary:
            add_summary_section(key)
    return sections


def _figures_body(out_dir: Path, figures: Mapping, *, layout: bool = False) -> str:
    """The figures, each with its caption (``layout``: the first full width, the others in pairs)."""
    parts = []
    for i, (caption, name) in enumerate(figures.items()):
        src = _figure_src(out_dir, name)
        cap = html.escape(str(caption))
        css = ' class="half"' if layout and i > 0 else ""
        parts.append(f'<figure{css}><img src="{src}" alt="{cap}"><figcaption>{cap}</figcaption></figure>')
    body = "\n".join(parts)
    return f'<div class="answer">\n{body}\n</div>' if layout else body


def _table_body(heading, frame) -> str:
    """A table, with a note of its scalar ``attrs`` (such as the threshold used)."""
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"Table {heading!r} must be a pandas DataFrame, got {type(frame).__name__}.")
    body = _frame_html(frame)
    if frame.empty:
        body += '\n<p class="note">No rows.</p>'
    notes = {
        k: v for k, v in frame.attrs.items() if v is None or isinstance(v, (str, numbers.Number, np.generic))
    }
    if notes:
        text = "; ".join(f"{html.escape(str(k))}: {_render_value(v)}" for k, v in notes.items())
        body += f'\n<p class="note">{text}</p>'
    return body


def _page(title: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole HTML page."""
    nav = " ".join(f'<a href="#{anchor}">{heading}</a>' for anchor, heading, _ in sections)
    version = package_version()
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>\n{_CSS}\n</style>",
            "</head>",
            "<body>",
            "<main>",
            f"<h1>{html.escape(title)}</h1>",
            f"<nav>{nav}</nav>" if nav else "",
            *(_section(anchor, heading, body) for anchor, heading, body in sections),
            "<footer>Generated by fastsearchlight"
            + (f" {html.escape(version)}" if version else "")
            + f" on {html.escape(generated)}.</footer>",
            "</main>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _write_page(out_dir: Path, filename: str, target: Path, page: str) -> None:
    """Write ``page`` to a temporary file in ``out_dir``, then move it to ``target``."""
    tmp = out_dir / f".{filename}.{uuid.uuid4().hex}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(page)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

"""Tables as pictures: the naive Bayes parameter chart, and a few rows as markdown, CSV or PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pmodel.plots._common import TABLE_PNG_MAX_ROWS, _new_figure, _prepare, _hspace, _save


def parameter_table_plot(table: pd.DataFrame, path, *, title: str | None = None) -> Path:
    """One horizontal bar chart per feature: each value's probability.

    Parameters
    ----------
    table : DataFrame
        Columns ``feature, value, count, probability``, as from
        ``CategoricalNaiveBayes.parameter_table(schema)``; values of a feature
        are drawn top to bottom in table order.
    path : str or Path
    title : str, optional

    Returns
    -------
    Path
    """
    missing = {"feature", "value", "count", "probability"} - set(table.columns)
    if missing:
        raise ValueError(f"parameter table needs columns feature, value, count, probability; "
                         f"missing {sorted(missing)}")
    if len(table) == 0:
        raise ValueError("parameter table is empty")
    path = _prepare(path)
    features = list(dict.fromkeys(table["feature"]))
    sizes = [int((table["feature"] == f).sum()) for f in features]
    bar_in, gap_in, top_in, bottom_in = 0.26, 0.45, 0.75, 0.55
    panels_in = [bar_in * (s + 0.4) for s in sizes]
    height = sum(panels_in) + gap_in * (len(features) - 1) + top_in + bottom_in
    fig = _new_figure(7.5, height)
    gs = fig.add_gridspec(len(features), 1, height_ratios=panels_in,
                          hspace=_hspace(height - top_in - bottom_in, len(features), gap_in),
                          left=0.3, right=0.97, top=1 - top_in / height, bottom=bottom_in / height)
    axes = []
    for g, (feature, size) in enumerate(zip(features, sizes)):
        ax = fig.add_subplot(gs[g], sharex=axes[0] if axes else None)
        axes.append(ax)
        rows = table[table["feature"] == feature]
        p = rows["probability"].to_numpy(dtype=np.float64)
        counts = rows["count"].to_numpy()
        n_total = int(np.nansum(counts))
        y = np.arange(size)
        ax.barh(y, np.nan_to_num(p, nan=0.0), height=0.7, color="#4c78a8")
        ax.set_yticks(y, [str(v) for v in rows["value"]], fontsize=9)
        ax.set_ylim(size - 0.4, -0.6)
        for yi, pi, ci in zip(y, p, counts):
            label = "n/a" if pi != pi else f"{pi:.2f}"
            label += f"  ({int(ci)}/{n_total})"
            inside = pi == pi and pi > 0.72
            ax.text(pi - 0.01 if inside else (0 if pi != pi else pi) + 0.01, yi, label,
                    va="center", ha="right" if inside else "left", fontsize=8,
                    color="white" if inside else "black")
        ax.set_title(f"{feature}  (N = {n_total})", fontsize=10, loc="left", pad=3)
        ax.tick_params(axis="x", labelbottom=False)
        ax.grid(axis="x", color="#dddddd", lw=0.6)
        ax.set_axisbelow(True)
    axes[0].set_xlim(0, 1)
    axes[-1].tick_params(axis="x", labelbottom=True)
    axes[-1].set_xlabel("probability (count / N, with smoothing)", fontsize=9)
    fig.suptitle(title or "Naive Bayes parameters: P(value) per feature", fontsize=12,
                 y=1 - 0.15 / height, va="top")
    return _save(fig, path)


# ---------------------------------------------------------------------------
# Rows as a table
# ---------------------------------------------------------------------------

def rows_table(df: pd.DataFrame, path, *, caption: str | None = None, highlight=None) -> Path:
    """Write rows as markdown (``.md``), CSV (``.csv``) or a PNG picture of a table (``.png``).

    CSV keeps every value exactly (``pd.read_csv`` gives the frame back);
    markdown and PNG show floats to 6 significant digits. The index is not
    written. A PNG shows at most 40 rows and says how many it left out.

    Parameters
    ----------
    df : DataFrame
    path : str or Path
        Its suffix picks the format.
    caption : str, optional
        PNG only: a line above the table (default: the row count).
    highlight : sequence of bool, optional
        PNG only: rows to shade (e.g. copies of training rows).

    Returns
    -------
    Path
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".md", ".csv", ".png"):
        raise ValueError(f"rows_table writes .md, .csv or .png, got {path.name!r}")
    path = _prepare(path)
    if suffix == ".csv":
        df.to_csv(path, index=False, lineterminator="\n")
        return path
    cells = [[_cell_text(v) for v in row] for row in df.itertuples(index=False)]
    header = [str(c) for c in df.columns]
    if suffix == ".md":
        def line(values):
            return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"
        lines = [line(header), "|" + "|".join(" --- " for _ in header) + "|"]
        lines += [line(r) for r in cells]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path
    shown = cells[:TABLE_PNG_MAX_ROWS]
    widths = [max([len(h)] + [len(r[j]) for r in shown]) for j, h in enumerate(header)]
    total = max(sum(widths), 1)
    fig_w = min(max(0.085 * total + 0.6, 4.0), 24.0)
    row_in, top_in = 0.27, 0.35
    fig_h = row_in * (len(shown) + 1) + top_in + 0.1
    fig = _new_figure(fig_w, fig_h)
    ax = fig.add_axes((0.01, 0.1 / fig_h, 0.98, 1 - (top_in + 0.1) / fig_h))
    ax.axis("off")
    tab = ax.table(cellText=shown or None, colLabels=header, cellLoc="left", colLoc="left",
                   colWidths=[w / total for w in widths], bbox=(0, 0, 1, 1))
    tab.auto_set_font_size(False)
    tab.set_fontsize(9)
    for (r, _), cell in tab.get_celld().items():
        cell.set_edgecolor("#bbbbbb")
        if r == 0:
            cell.set_facecolor("#e8e8e8")
            cell.get_text().set_fontweight("bold")
        elif highlight is not None and r - 1 < len(highlight) and highlight[r - 1]:
            cell.set_facecolor("#fde0c5")
    head = f"{len(df)} rows"
    if len(df) > len(shown):
        head += f" (first {len(shown)} shown)"
    fig.suptitle(caption or head, fontsize=9, y=1 - 0.07 / fig_h, va="top")
    return _save(fig, path)


def _cell_text(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "n/a" if v != v else f"{v:.6g}"
    return str(v)

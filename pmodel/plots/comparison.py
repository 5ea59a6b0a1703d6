"""Every family on every dataset: one bar panel per (dataset, metric)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pmodel.plots._common import _new_figure, _prepare, _hspace, _save


_BETTER = {
    "heldout_loglik": "higher is better",
    "kl_to_truth": "lower is better",
    "kl_to_truth_estimate": "lower is better (a Monte-Carlo estimate)",
    "out_of_support_rate": "lower is better",
    "on_land_rate": "higher is better",
    "land_coverage": "closer to 1 is better",
    "novelty_rate": "higher is better",
    "valid_rate": "higher is better",
}


#: A family with only a bound on a metric shows the bound in its place, marked as one:
#: metric -> (the bound's column, which side of the true value it lies on).
BOUNDS = {"kl_to_truth": ("kl_to_truth_bound", "upper"),
          "kl_to_truth_estimate": ("kl_to_truth_bound_estimate", "upper"),
          "heldout_loglik": ("heldout_loglik_bound", "lower")}


class Bound(float):
    """A bar's value that is a bound on the metric, not the metric: ``side`` is "upper"
    (the true value is at most this) or "lower" (at least this). Compares as the float."""

    side: str

    def __new__(cls, value: float, side: str):
        out = super().__new__(cls, value)
        out.side = side
        return out


def comparison_panels(df: pd.DataFrame, metrics) -> dict:
    """What :func:`comparison_plot` draws: the bars of every (dataset, metric) panel.

    Returns
    -------
    dict
        ``{(dataset, metric): [(label, value), ...]}``, datasets and families in
        order of first appearance. Every family appears in every dataset's
        panels; ``value`` is a float, ``inf``/``-inf`` kept, NaN for a NaN, a
        non-numeric value, a missing column or a family with no row there. Where a
        family has no value but a bound on it (:data:`BOUNDS`: a VAE's or a
        diffusion model's ``heldout_loglik_bound``), ``value`` is that bound, a
        :class:`Bound`.
        A family with several rows for a dataset gets one bar per row,
        labelled ``"family #k"``.
    """
    for col in ("dataset", "entry"):
        if col not in df.columns:
            raise ValueError(f"comparison_plot needs a {col!r} column, got columns {list(df.columns)}")
    metrics = list(metrics)
    if not metrics or len(df) == 0:
        raise ValueError("comparison_plot needs at least one metric and one row")
    families = list(dict.fromkeys(df["entry"]))
    out = {}
    for ds in dict.fromkeys(df["dataset"]):
        sub = df[df["dataset"] == ds]
        bars = []  # (label, row or None)
        for fam in families:
            rows = sub[sub["entry"] == fam]
            if len(rows) == 0:
                bars.append((str(fam), None))
            for k, (_, row) in enumerate(rows.iterrows()):
                bars.append((str(fam) if len(rows) == 1 else f"{fam} #{k + 1}", row))
        for metric in metrics:
            out[(ds, metric)] = [(label, _metric_value(row, metric)) for label, row in bars]
    return out


def comparison_plot(df: pd.DataFrame, path, *, metrics=("heldout_loglik", "kl_to_truth"),
                    title: str | None = None) -> Path:
    """Every family on every dataset: a grid of bar charts, rows = datasets, columns = metrics.

    Finite values are bars with their value written beside them. An infinite
    value is a hatched bar from 0 to the panel's edge labelled ``inf`` or
    ``-inf``; a NaN, a missing column or a family with no row for a dataset
    is written ``n/a``. Nothing is dropped: the bars are
    :func:`comparison_panels`.

    Parameters
    ----------
    df : DataFrame
        One row per child run, columns ``dataset``, ``family`` and the metrics.
    path : str or Path
    metrics : sequence of str
    title : str, optional

    Returns
    -------
    Path
    """
    metrics = list(metrics)
    panels = comparison_panels(df, metrics)
    path = _prepare(path)
    datasets = list(dict.fromkeys(ds for ds, _ in panels))
    n_bars = [len(panels[(ds, metrics[0])]) for ds in datasets]

    bar_in, gap_in, top_in, bottom_in = 0.3, 0.6, 0.8, 0.4
    heights = [bar_in * (n + 0.6) for n in n_bars]
    fig_h = sum(heights) + gap_in * (len(datasets) - 1) + top_in + bottom_in
    fig_w = 2.0 + 4.2 * len(metrics)
    fig = _new_figure(fig_w, fig_h)
    gs = fig.add_gridspec(len(datasets), len(metrics), height_ratios=heights,
                          left=2.0 / fig_w, right=1 - 0.25 / fig_w, top=1 - top_in / fig_h,
                          bottom=bottom_in / fig_h, wspace=0.12,
                          hspace=_hspace(fig_h - top_in - bottom_in, len(datasets), gap_in))
    for r, ds in enumerate(datasets):
        for c, metric in enumerate(metrics):
            ax = fig.add_subplot(gs[r, c])
            bars = panels[(ds, metric)]
            values = np.array([v for _, v in bars], dtype=np.float64)
            sides = [getattr(v, "side", None) for _, v in bars]
            _bar_panel(ax, [label for label, _ in bars], values, show_labels=(c == 0), sides=sides)
            better = _BETTER.get(metric)
            ax.set_title(f"{ds}: {metric}" + (f"  ({better})" if better else "")
                         + ("\npale, '<=' / '>=': a bound, the family has no exact value"
                            if any(sides) else ""), fontsize=9.5, loc="left")
    fig.suptitle(title or "Every family on every dataset", fontsize=12, y=1 - 0.15 / fig_h,
                 va="top")
    return _save(fig, path)


def _metric_value(row, metric: str) -> float:
    value = _number(row, metric)
    if np.isnan(value) and metric in BOUNDS:
        column, side = BOUNDS[metric]
        bound = _number(row, column)
        if not np.isnan(bound):
            return Bound(bound, side)
    return value


def _number(row, metric: str) -> float:
    if row is None or metric not in row.index:
        return float("nan")
    try:
        return float(row[metric])
    except (TypeError, ValueError):
        return float("nan")


def _bar_panel(ax, labels: list[str], values: np.ndarray, *, show_labels: bool,
               sides: list[str | None] | None = None) -> None:
    finite = values[np.isfinite(values)]
    lo = min(0.0, float(finite.min())) if finite.size else 0.0
    hi = max(0.0, float(finite.max())) if finite.size else 0.0
    span = hi - lo if hi > lo else 1.0
    # room for the value labels; an infinite bar runs past every finite one to the edge
    x_lo = lo - 0.3 * span if lo < 0 else 0.0
    x_hi = hi + 0.3 * span if hi > 0 else 0.0
    if np.isneginf(values).any():
        x_lo = lo - 0.45 * span
    if np.isposinf(values).any():
        x_hi = hi + 0.45 * span
    if np.isnan(values).any():
        x_hi = max(x_hi, 0.25 * span)  # "n/a" is written right of 0
    if x_hi <= x_lo:  # every bar 0 (no held-out row out of support): a unit scale
        x_hi = x_lo + 1.0
    y = np.arange(len(values))
    sides = sides or [None] * len(values)
    for yi, v, side in zip(y, values, sides):
        if np.isfinite(v):
            # a bound: pale and hatched, its value written "<= x" (upper) or ">= x" (lower)
            ax.barh(yi, v, height=0.65, color="#b9cde3" if side else "#4c78a8",
                    edgecolor="#4c78a8" if side else None, hatch=".." if side else None,
                    linewidth=0.6 if side else 0)
            number = f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
            mark = {"upper": "<= ", "lower": ">= "}.get(side, "")
            ax.text(v, yi, f" {mark}{number} ", va="center",
                    ha="left" if v >= 0 else "right", fontsize=8,
                    style="italic" if side else "normal")
        elif np.isnan(v):
            ax.text(0, yi, " n/a", va="center", ha="left", fontsize=8, color="#555555",
                    style="italic")
        else:
            edge = x_hi if v > 0 else x_lo
            ax.barh(yi, edge, height=0.65, color="#f6d5d5", edgecolor="#b2182b", hatch="///",
                    linewidth=0.8)
            ax.text(edge, yi, "inf " if v > 0 else " -inf", va="center",
                    ha="right" if v > 0 else "left", fontsize=8.5, fontweight="bold",
                    color="#b2182b", bbox=dict(facecolor="white", edgecolor="none", pad=0.5))
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(len(values) - 0.4, -0.6)
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(y, labels if show_labels else [""] * len(labels), fontsize=8.5)
    ax.tick_params(axis="x", labelsize=8)
    if not finite.size and not np.isinf(values).any():
        ax.set_xticks([])  # nothing to measure: no scale
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)

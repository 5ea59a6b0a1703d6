"""The leaderboard: every (dataset, family) result ranked, as text or Markdown.

The rule, one for the terminal and the MLflow descriptions. Within a dataset the
rows are grouped by the chapter's taxonomy of density, in this order:

1. explicit density, exact likelihood (tractable: counting, autoregressive,
   flows, mixtures): by ``kl_to_truth`` ascending where the truth is known, ties
   by held-out log-likelihood descending; else by ``heldout_loglik`` descending;
2. explicit density, a lower bound (approximate: VAE, diffusion): by
   ``kl_to_truth_bound`` ascending (an upper bound on the KL) where the truth is
   known, else by ``heldout_loglik_bound`` descending;
3. implicit density (GAN: samples only): by the dataset's sample score
   (``valid_rate``, ``on_land_rate`` or ``novelty_rate``) descending;
4. failed runs.

A bound is never ranked against an exact value: the groups are not merged.
Each row says which kind of likelihood it shows: an exact value, ``>= x`` (a
lower bound: the true value is at least this) or ``none``; its KL cell is exact,
``<= x`` (an upper bound, from a lower bound on log p) or ``-``.

Examples
--------
>>> from pmodel.records import RunResult
>>> rows = [RunResult("d", "f", "a", "a", {}, metrics={"kl_to_truth": 2.0}),
...         RunResult("d", "f", "b", "b", {}, metrics={"kl_to_truth": 1.0})]
>>> [r.label for r in ranked(rows)["d"]]
['b', 'a']
"""

from __future__ import annotations

import math

from pmodel.records import RunResult


def loglik_kind(result: RunResult) -> str:
    """``"exact"``, ``"lower_bound"`` or ``"none"``: the result's own
    ``log_prob_kind`` when it has one, else read off its metrics."""
    kind = result.log_prob_kind
    if kind:
        return kind
    metrics = result.metrics or {}
    if "heldout_loglik" in metrics or "kl_to_truth" in metrics:
        return "exact"
    if "heldout_loglik_bound" in metrics or "kl_to_truth_bound" in metrics:
        return "lower_bound"
    return "none"


def loglik_value(result: RunResult) -> float:
    """The held-out log-likelihood the row ranks on: exact, else the bound, else NaN."""
    metrics = result.metrics or {}
    kind = loglik_kind(result)
    key = {"exact": "heldout_loglik", "lower_bound": "heldout_loglik_bound"}.get(kind)
    value = metrics.get(key, math.nan) if key else math.nan
    return math.nan if value is None else float(value)


def _desc(value: float) -> float:
    """A sort key for 'higher first' that puts NaN last and -inf after every finite value."""
    return math.inf if math.isnan(value) else -value


def rank_key(result: RunResult, by_kl: bool) -> tuple:
    """Sort key: the taxonomy group first (exact, bound, none, failed), then the group's rule."""
    if result.error:
        return (3,)
    metrics = result.metrics or {}
    kind = loglik_kind(result)
    if kind == "none":
        extra = metrics.get(_extra_column([result]), math.nan)
        return (2, _desc(math.nan if extra is None else float(extra)))
    group = 0 if kind == "exact" else 1
    ll = loglik_value(result)
    if by_kl:
        kl = metrics.get("kl_to_truth" if kind == "exact" else "kl_to_truth_bound", math.nan)
        kl = math.inf if kl is None or math.isnan(kl) else float(kl)
        return (group, 0, kl, _desc(ll))
    return (group, 1, _desc(ll))


GROUPS = ("explicit density, exact likelihood (tractable)",
          "explicit density, a lower bound on the likelihood (approximate)",
          "implicit density: samples only, no likelihood",
          "failed")


def group_of(result: RunResult) -> str:
    """The row's taxonomy group, one of :data:`GROUPS`."""
    return GROUPS[rank_key(result, False)[0]]


def ranked(results: list[RunResult]) -> dict[str, list[RunResult]]:
    """Results grouped by dataset (first-seen order), each dataset's rows in their
    taxonomy groups (exact, bound, none, failed), each group best first."""
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(r.dataset, []).append(r)
    out = {}
    for dataset, rows in groups.items():
        by_kl = ranks_by_kl(rows)
        out[dataset] = sorted(rows, key=lambda r: rank_key(r, by_kl))
    return out


def ranks_by_kl(rows: list[RunResult]) -> bool:
    return any("kl_to_truth" in (r.metrics or {}) or "kl_to_truth_bound" in (r.metrics or {})
               for r in rows)


def fmt(value) -> str:
    """A number for people: 4 significant digits, ``inf``/``-inf``, ``-`` for absent or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def loglik_text(result: RunResult) -> str:
    """The likelihood cell: ``-4.21`` (exact), ``>= -5.3`` (a bound) or ``none``."""
    kind = loglik_kind(result)
    if kind == "none":
        return "none"
    value = fmt(loglik_value(result))
    return f">= {value}" if kind == "lower_bound" and value != "-" else value


def _extra_column(rows: list[RunResult]) -> str:
    metrics = [r.metrics or {} for r in rows]
    return next((k for k in ("valid_rate", "on_land_rate") if any(k in m for m in metrics)),
                "novelty_rate")


COLUMNS = ("kl_to_truth", "heldout_loglik", "in_support", "out_of_support_rate")

FOOTNOTE = ("heldout_loglik: mean nats per held-out example over ALL of them (-inf when one has "
            "p = 0); '>= x' is a lower bound (the family has no exact likelihood), 'none' a family "
            "with no likelihood; '<= x' in kl_to_truth is an upper bound on the KL, from that lower "
            "bound. in_support: the same mean over the examples with p > 0 only, read with "
            "out_of_support_rate (the share with p = 0).")


def kl_text(result: RunResult) -> str:
    """The KL cell: exact, ``<= x`` (an upper bound, from a lower bound on log p) or ``-``."""
    m = result.metrics or {}
    if "kl_to_truth" in m:
        return fmt(m["kl_to_truth"])
    if "kl_to_truth_bound" in m:
        value = fmt(m["kl_to_truth_bound"])
        return f"<= {value}" if value != "-" else value
    return "-"


def _cells(r: RunResult, extra: str) -> list[str]:
    m = r.metrics or {}
    return [kl_text(r), loglik_text(r), fmt(m.get("heldout_loglik_in_support")),
            fmt(m.get("out_of_support_rate")), fmt(m.get(extra))]


def _rule(rows: list[RunResult]) -> str:
    return ("by KL to the truth, lower first" if ranks_by_kl(rows)
            else "by held-out log-likelihood, higher first")


def _headed(rows: list[RunResult]) -> list[tuple[str | None, RunResult]]:
    """(heading or None, row): a heading before each taxonomy group, when a dataset's rows
    fall in more than one group other than 'failed'."""
    groups = [group_of(r) for r in rows]
    several = len(set(groups) - {GROUPS[-1]}) > 1
    out, last = [], None
    for g, r in zip(groups, rows):
        out.append((g if several and g != last else None, r))
        last = g
    return out


LABEL_WIDTH_MAX = 60  # longer labels (an entry's every hyperparameter) end in "..."


def _clip(label: str, width: int) -> str:
    return label if len(label) <= width else label[:width - 3] + "..."


def as_text(results: list[RunResult]) -> str:
    """The terminal's leaderboard: one table per dataset, best first."""
    lines = []
    for dataset, rows in ranked(results).items():
        extra = _extra_column(rows)
        lines.append(f"\n{dataset} (best first, {_rule(rows)})")
        w = min(max([34] + [len(r.label) for r in rows]), LABEL_WIDTH_MAX)
        lines.append(f"  {'family':<{w}} {'taxonomy':<15} {'kl_to_truth':>11} {'heldout_loglik':>14} "
                     f"{'in_support':>10} {'out_of_support':>14} {extra:>13}")
        for heading, r in _headed(rows):
            if heading:
                lines.append(f"  -- {heading}")
            if r.error:
                lines.append(f"  {_clip(r.label, w):<{w}} FAILED: {r.error.splitlines()[0][:80]}")
                continue
            kl, ll, ins, oos, ex = _cells(r, extra)
            lines.append(f"  {_clip(r.label, w):<{w}} {r.taxonomy or '-':<15} {kl:>11} {ll:>14} {ins:>10} {oos:>14} "
                         f"{ex:>13}")
    lines.append("\n(" + FOOTNOTE + ")")
    return "\n".join(lines)


def as_markdown(results: list[RunResult], names: dict | None = None) -> str:
    """The same leaderboard in Markdown; ``names`` maps (dataset, label) to a run name."""
    names = names or {}
    parts = []
    for dataset, rows in ranked(results).items():
        extra = _extra_column(rows)
        parts.append(f"**{dataset}**, best first, {_rule(rows)}:\n")
        parts.append(f"| # | run | kl_to_truth | heldout_loglik | in support | out_of_support_rate "
                     f"| {extra} |")
        parts.append("|---|---|---|---|---|---|---|")
        for k, (heading, r) in enumerate(_headed(rows), 1):
            if heading:
                parts.append(f"| | *{heading}* | | | | | |")
            name = names.get((dataset, r.label), r.label)
            if r.error:
                parts.append(f"| {k} | {name} | FAILED | | | | |")
                continue
            cells = " | ".join(c.replace("|", "\\|") for c in _cells(r, extra))
            parts.append(f"| {k} | {name} | {cells} |")
        parts.append("")
    parts.append("*" + FOOTNOTE + "*")
    return "\n".join(parts)


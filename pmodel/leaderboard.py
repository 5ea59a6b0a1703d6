"""The leaderboard: every (dataset, family) result ranked, as text or Markdown.

The rule, one for the terminal and the MLflow descriptions:

- where the truth is known (``kl_to_truth`` present on the dataset), by
  ``kl_to_truth`` ascending, ties by held-out log-likelihood descending;
- else by the held-out log-likelihood descending: an exact value
  (``heldout_loglik``) before a lower bound (``heldout_loglik_bound``), both
  before a family with neither;
- failed runs last.

Each row says which kind of likelihood it shows: ``exact``, ``bound`` (a
lower bound: the true value is at least this) or ``none``.

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
    if "heldout_loglik" in metrics:
        return "exact"
    if "heldout_loglik_bound" in metrics:
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
    if result.error:
        return (3,)
    metrics = result.metrics or {}
    ll = loglik_value(result)
    kind_order = {"exact": 0, "lower_bound": 1}.get(loglik_kind(result), 2)
    if by_kl:
        kl = metrics.get("kl_to_truth", math.nan)
        kl = math.inf if kl is None or math.isnan(kl) else float(kl)
        return (0, kl, _desc(ll))
    return (1, kind_order, _desc(ll))


def ranked(results: list[RunResult]) -> dict[str, list[RunResult]]:
    """Results grouped by dataset (first-seen order), each group best first."""
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(r.dataset, []).append(r)
    out = {}
    for dataset, rows in groups.items():
        by_kl = ranks_by_kl(rows)
        out[dataset] = sorted(rows, key=lambda r: rank_key(r, by_kl))
    return out


def ranks_by_kl(rows: list[RunResult]) -> bool:
    return any("kl_to_truth" in (r.metrics or {}) for r in rows)


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
            "with no likelihood. in_support: the same mean over the examples with p > 0 only, read "
            "with out_of_support_rate (the share with p = 0).")


def _cells(r: RunResult, extra: str) -> list[str]:
    m = r.metrics or {}
    return [fmt(m.get("kl_to_truth")), loglik_text(r), fmt(m.get("heldout_loglik_in_support")),
            fmt(m.get("out_of_support_rate")), fmt(m.get(extra))]


def _rule(rows: list[RunResult]) -> str:
    return ("by KL to the truth, lower first" if ranks_by_kl(rows)
            else "by held-out log-likelihood, higher first")


def as_text(results: list[RunResult]) -> str:
    """The terminal's leaderboard: one table per dataset, best first."""
    lines = []
    for dataset, rows in ranked(results).items():
        extra = _extra_column(rows)
        lines.append(f"\n{dataset} (best first, {_rule(rows)})")
        lines.append(f"  {'family':<34} {'taxonomy':<15} {'kl_to_truth':>11} {'heldout_loglik':>14} "
                     f"{'in_support':>10} {'out_of_support':>14} {extra:>13}")
        for r in rows:
            if r.error:
                lines.append(f"  {r.label:<34} FAILED: {r.error.splitlines()[0][:80]}")
                continue
            kl, ll, ins, oos, ex = _cells(r, extra)
            lines.append(f"  {r.label:<34} {r.taxonomy or '-':<15} {kl:>11} {ll:>14} {ins:>10} {oos:>14} "
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
        for k, r in enumerate(rows, 1):
            name = names.get((dataset, r.label), r.label)
            if r.error:
                parts.append(f"| {k} | {name} | FAILED | | | | |")
                continue
            cells = " | ".join(c.replace("|", "\\|") for c in _cells(r, extra))
            parts.append(f"| {k} | {name} | {cells} |")
        parts.append("")
    parts.append("*" + FOOTNOTE + "*")
    return "\n".join(parts)


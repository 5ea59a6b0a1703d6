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
   (``valid_rate``, ``on_land_rate`` or ``novelty_rate``) descending, ties (on
   images most often at a strict ``valid_rate`` of 0) by ``near_render_rate``
   then ``near_render_rate_16`` descending;
4. failed runs;
5. skipped pairs: a family that cannot hold the dataset (its joint table would
   not fit in memory) was not fitted; the row says why. Neither a success nor a
   failure.

The last columns are that sample score and, on image datasets, what the eye
accepts: ``near8`` and ``near16`` (``near_render_rate``, ``near_render_rate_16``)
and ``d_median`` (``median_render_distance``).

A bound is never ranked against an exact value: the groups are not merged.

Uncertainty: a ranking column (``kl_to_truth``, ``heldout_loglik``, the sample
score) whose metric has a standard error (``<metric>_se``) gets a ``±`` column
beside it; over several seeds ``±`` is instead the standard deviation across
seeds (``<metric>_sd``) and the value the mean. A row whose ranking score differs
from the row above it by less than ``2 sqrt(se1^2 + se2^2)`` (:data:`INDISTINCT`,
its standard error combined with the other row's, an exact value counting as
se 0) is marked ``[~ above]``: the two are not told apart by the data.
Each row says which kind of likelihood it shows: an exact value, ``>= x`` (a
lower bound: the true value is at least this) or ``none``; its KL cell is exact,
``<= x`` (an upper bound, from a lower bound on log p) or ``-``. Where P_data is
too large to sum over (a big Bayesian network) the KL is a Monte-Carlo estimate,
shown ``x ± se`` with its standard error (``kl_to_truth_estimate``) and ranked by
its value.

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

from pmodel.glossary import md_cell
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


def _number(value) -> float:
    """A metric as a float, NaN when absent."""
    return math.nan if value is None else float(value)


def _desc(value: float) -> float:
    """A sort key for 'higher first' that puts NaN last and -inf after every finite value."""
    return math.inf if math.isnan(value) else -value


def rank_key(result: RunResult, by_kl: bool) -> tuple:
    """Sort key: the taxonomy group first (exact, bound, none, failed, skipped), then the
    group's rule."""
    if result.skip:
        return (4,)
    if result.error:
        return (3,)
    metrics = result.metrics or {}
    kind = loglik_kind(result)
    if kind == "none":
        return (2, *(_desc(_number(metrics.get(k)))
                     for k in (_extra_column([result]), "near_render_rate", "near_render_rate_16")))
    group = 0 if kind == "exact" else 1
    ll = loglik_value(result)
    if by_kl:
        name = "kl_to_truth" if kind == "exact" else "kl_to_truth_bound"
        kl = metrics.get(name, metrics.get(f"{name}_estimate", math.nan))
        kl = math.inf if kl is None or math.isnan(kl) else float(kl)
        return (group, 0, kl, _desc(ll))
    return (group, 1, _desc(ll))


GROUPS = ("explicit density, exact likelihood (tractable)",
          "explicit density, a lower bound on the likelihood (approximate)",
          "implicit density: samples only, no likelihood",
          "failed",
          "skipped: the family cannot hold this data")


def group_of(result: RunResult) -> str:
    """The row's taxonomy group, one of :data:`GROUPS`."""
    return GROUPS[rank_key(result, False)[0]]


def ranked(results: list[RunResult]) -> dict[str, list[RunResult]]:
    """Results grouped by dataset (first-seen order), each dataset's rows in their
    taxonomy groups (exact, bound, none, failed, skipped), each group best first."""
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(r.dataset, []).append(r)
    out = {}
    for dataset, rows in groups.items():
        by_kl = ranks_by_kl(rows)
        out[dataset] = sorted(rows, key=lambda r: rank_key(r, by_kl))
    return out


KL_METRICS = ("kl_to_truth", "kl_to_truth_bound", "kl_to_truth_estimate", "kl_to_truth_bound_estimate")


def ranks_by_kl(rows: list[RunResult]) -> bool:
    return any(k in (r.metrics or {}) for r in rows for k in KL_METRICS)


def fmt(value) -> str:
    """A number for people: 4 significant digits, ``inf``/``-inf``, ``-`` for absent or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def spread(metrics: dict, key: str) -> tuple[float, str] | None:
    """``(value, "sd")`` from ``<key>_sd`` (a mean over seeds), else ``(value, "se")`` from
    ``<key>_se``, else None (an exact value, none recorded, or a spread of 0)."""
    for suffix in ("sd", "se"):
        value = (metrics or {}).get(f"{key}_{suffix}")
        # 0 says nothing a reader can use ("1 ± 0" for a share of 1): shown as no spread
        if value is not None and math.isfinite(float(value)) and float(value) > 0:
            return float(value), suffix
    return None


def pm_text(metrics: dict, key: str) -> str:
    """The ``±`` cell of ``key``: ``± 0.021`` (2 significant digits), or "" without one."""
    s = spread(metrics, key)
    return "" if s is None else f"± {s[0]:.2g}"


def ranking_key(result: RunResult, by_kl: bool) -> str | None:
    """The metric a row is ranked on within its group: the KL (exact or its bound) where the
    truth is known, else the held-out log-likelihood (exact or bound), else the sample score."""
    kind = loglik_kind(result)
    if result.error:
        return None
    if kind == "none":
        return _extra_column([result])
    if by_kl:
        return "kl_to_truth" if kind == "exact" else "kl_to_truth_bound"
    return "heldout_loglik" if kind == "exact" else "heldout_loglik_bound"


#: Two rows are not told apart when their ranking scores differ by less than this many
#: combined standard errors, sqrt(se1^2 + se2^2).
INDISTINCT = 2.0
CLOSE = "[~ above]"
CLOSE_NOTE = (f"{CLOSE}: this row's ranking score differs from the row above by less than "
              f"{INDISTINCT:g} sqrt(se1^2 + se2^2), their standard errors combined (an exact value "
              "counting as se 0): the data do not tell the two apart.")
SPREAD_NOTE = ("±: the standard error of an estimate (held-out means: sd / sqrt(n) over the "
               "held-out examples; a share of samples: sqrt(p (1 - p) / n); a Monte-Carlo bound "
               "holds its draws' noise too); none beside an exact value, nor where it is 0 (a share of 0 or "
               "1, or seeds that agree).")
SEEDS_NOTE = ("Over several seeds each value is the mean over the seeds and ± their standard "
              "deviation (data, fit and samples redrawn per seed).")


def indistinct_from_above(rows: list[RunResult], by_kl: bool) -> set[int]:
    """Indexes i of ``rows`` (ranked) whose ranking score is within :data:`INDISTINCT` combined
    standard errors of row i - 1's, both in the same taxonomy group, both finite, at least
    one with a standard error (``<metric>_se``; means over seeds, which carry an sd, are not
    judged)."""
    out = set()
    for i in range(1, len(rows)):
        a, b = rows[i - 1], rows[i]
        key = ranking_key(b, by_kl)
        if key is None or key != ranking_key(a, by_kl) or group_of(a) != group_of(b):
            continue
        va, vb = (_number((r.metrics or {}).get(key)) for r in (a, b))
        if not (math.isfinite(va) and math.isfinite(vb)):
            continue
        sa, sb = (spread(r.metrics, key) for r in (a, b))
        if any(s is not None and s[1] == "sd" for s in (sa, sb)) or (sa is None and sb is None):
            continue
        se = math.hypot(sa[0] if sa else 0.0, sb[0] if sb else 0.0)
        if abs(va - vb) < INDISTINCT * se:
            out.add(i)
    return out


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


#: Beside valid_rate on image datasets, with their short headers: what the eye accepts.
NEAR_COLUMNS = {"near_render_rate": "near8", "near_render_rate_16": "near16",
                "median_render_distance": "d_median"}


def _sample_columns(rows: list[RunResult]) -> list[str]:
    """The last columns: the dataset's sample score, then the near-render scores some row has."""
    extra = _extra_column(rows)
    if extra != "valid_rate":
        return [extra]
    return [extra, *(k for k in NEAR_COLUMNS if any(k in (r.metrics or {}) for r in rows))]


COLUMNS = ("kl_to_truth", "heldout_loglik", "in_support", "out_of_support_rate")

FOOTNOTE = ("heldout_loglik: mean nats per held-out example over ALL of them (-inf when one has "
            "p = 0); '>= x' is a lower bound (the family has no exact likelihood), 'none' a family "
            "with no likelihood; '<= x' in kl_to_truth is an upper bound on the KL, from that lower "
            "bound. in_support: the same mean over the examples with p > 0 only, read with "
            "out_of_support_rate (the share with p = 0).")

NEAR_FOOTNOTE = ("near8 / near16: near_render_rate / near_render_rate_16, the share of samples "
                 "within 8 / 16 grey levels RMS of their nearest valid render (valid_rate is "
                 "stricter: about 1 level for most avatars); d_median: median_render_distance, in "
                 "grey levels.")


def _footnote(tables: list[list[str]]) -> str:
    """The footnote, explaining the near-render columns when some table shows them."""
    return FOOTNOTE + (" " + NEAR_FOOTNOTE if any(len(cols) > 1 for cols in tables) else "")


def _pm(value, se) -> str:
    """``x ± se``: the value to 4 significant digits, its standard error to 2."""
    text = fmt(value)
    if text in ("-", "inf", "-inf") or se is None or math.isnan(se):
        return text
    return f"{text} ± {se:.2g}"


def kl_text(result: RunResult) -> str:
    """The KL cell: exact, ``<= x`` (an upper bound, from a lower bound on log p), ``x ± se``
    (a Monte-Carlo estimate with its standard error), ``<= x ± se`` or ``-``."""
    m = result.metrics or {}
    if "kl_to_truth" in m:
        return fmt(m["kl_to_truth"])
    if "kl_to_truth_bound" in m:
        value = fmt(m["kl_to_truth_bound"])
        return f"<= {value}" if value != "-" else value
    for name, head in (("kl_to_truth_estimate", ""), ("kl_to_truth_bound_estimate", "<= ")):
        if name in m:
            text = _pm(m[name], m.get(f"{name}_se"))
            return head + text if text != "-" else text
    return "-"


def estimated(results: list[RunResult]) -> bool:
    """Whether some row's KL is a Monte-Carlo estimate."""
    return any(k in (r.metrics or {}) for r in results
               for k in ("kl_to_truth_estimate", "kl_to_truth_bound_estimate"))


ESTIMATE_NOTE = ("x ± se in kl_to_truth: a Monte-Carlo estimate of the KL with its standard error, "
                 "where P_data has too many states to sum over (100,000 draws from P_data, the same "
                 "for every model of the dataset); the other values are exact.")


def _cells(r: RunResult, extra: list[str]) -> list[str]:
    m = r.metrics or {}
    return [kl_text(r), loglik_text(r), fmt(m.get("heldout_loglik_in_support")),
            fmt(m.get("out_of_support_rate")), *(fmt(m.get(k)) for k in extra)]


CAPPED = "[stopped by seconds]"
CAPPED_NOTE = (f"{CAPPED}: the fit's seconds cap ended its training before its epochs or steps did, so "
               "its numbers depend on the machine's speed and load; give it a larger seconds or fewer epochs.")


def capped(result: RunResult) -> bool:
    """Whether the fit's seconds cap, not its budget of epochs or steps, ended its training."""
    return bool((result.metrics or {}).get("stopped_by_seconds"))


def _first_clause(text: str, limit: int = 100) -> str:
    """The reason's first clause (up to its first comma or parenthesis), at most ``limit``
    characters: the terminal's row; the whole text is on the parent run."""
    head = text.split(", more than")[0].split(" (")[0]
    return head if len(head) <= limit else head[:limit - 3] + "..."


def _rule(rows: list[RunResult]) -> str:
    return ("by KL to the truth, lower first" if ranks_by_kl(rows)
            else "by held-out log-likelihood, higher first")


def _headed(rows: list[RunResult]) -> list[tuple[str | None, RunResult]]:
    """(heading or None, row): a heading before each taxonomy group, when a dataset's rows
    fall in more than one group other than 'failed' and 'skipped'."""
    groups = [group_of(r) for r in rows]
    several = len(set(groups) - set(GROUPS[3:])) > 1
    out, last = [], None
    for g, r in zip(groups, rows):
        out.append((g if several and g != last else None, r))
        last = g
    return out


LABEL_WIDTH_MAX = 60  # longer labels (an entry's every hyperparameter) end in "..."


def _clip(label: str, width: int) -> str:
    return label if len(label) <= width else label[:width - 3] + "..."


def _pm_columns(rows: list[RunResult], extra: list[str]) -> dict[str, bool]:
    """Which ranking columns get a ``±`` column: those some row has a spread for."""
    keys = {"kl": ("kl_to_truth", "kl_to_truth_bound"), "ll": ("heldout_loglik", "heldout_loglik_bound"),
            "extra": (extra[0],)}
    return {col: any(spread(r.metrics, k) is not None for r in rows for k in ks) for col, ks in keys.items()}


def _pm_cell(r: RunResult, col: str, extra: list[str]) -> str:
    m = r.metrics or {}
    if col == "kl":
        return pm_text(m, "kl_to_truth" if "kl_to_truth" in m else "kl_to_truth_bound")
    if col == "ll":
        return pm_text(m, "heldout_loglik" if loglik_kind(r) == "exact" else "heldout_loglik_bound")
    return pm_text(m, extra[0])


def _notes(results: list[RunResult], tables: list[list[str]], marked: bool, spreads: bool) -> list[str]:
    """The footnotes under the tables (as plain sentences)."""
    notes = [_footnote(tables)]
    if spreads:
        seeds = any(k.endswith("_sd") for r in results for k in (r.metrics or {}))
        notes.append(SPREAD_NOTE + (" " + SEEDS_NOTE if seeds else ""))
    if marked:
        notes.append(CLOSE_NOTE)
    if estimated(results):
        notes.append(ESTIMATE_NOTE)
    if any(capped(r) for r in results):
        notes.append(CAPPED_NOTE)
    return notes


def as_text(results: list[RunResult]) -> str:
    """The terminal's leaderboard: one table per dataset, best first."""
    lines, tables, marked, spreads = [], [], False, False
    for dataset, rows in ranked(results).items():
        extra = _sample_columns(rows)
        tables.append(extra)
        pm = _pm_columns(rows, extra)
        spreads |= any(pm.values())
        close = indistinct_from_above(rows, ranks_by_kl(rows))
        widths = [13] + [8] * (len(extra) - 1)  # the near-render columns: short headers, 4 digits
        heads = [extra[0]] + [NEAR_COLUMNS[k] for k in extra[1:]]

        def pm_col(col: str, cell: str) -> str:  # a ± column, when the table has one
            return f" {cell:<9}" if pm[col] else ""

        lines.append(f"\n{dataset} (best first, {_rule(rows)})")
        w = min(max([34] + [len(r.label) for r in rows]), LABEL_WIDTH_MAX)
        k = max([11] + [len(kl_text(r)) for r in rows if not r.error and not r.skip])
        lines.append(f"  {'family':<{w}} {'taxonomy':<15} {'kl_to_truth':>{k}}{pm_col('kl', '')} "
                     f"{'heldout_loglik':>14}{pm_col('ll', '')} "
                     f"{'in_support':>10} {'out_of_support':>14} "
                     + " ".join(f"{h:>{n}}" + (pm_col("extra", "") if i == 0 else "")
                                for i, (h, n) in enumerate(zip(heads, widths))))
        for i, (heading, r) in enumerate(_headed(rows)):
            if heading:
                lines.append(f"  -- {heading}")
            if r.skip:
                lines.append(f"  {_clip(r.label, w):<{w}} SKIPPED: {_first_clause(r.skip)}")
                continue
            if r.error:
                lines.append(f"  {_clip(r.label, w):<{w}} FAILED: {r.error.splitlines()[0][:80]}")
                continue
            kl, ll, ins, oos, *ex = _cells(r, extra)
            marks = (f"  {CLOSE}" if i in close else "") + (f"  {CAPPED}" if capped(r) else "")
            marked |= i in close
            lines.append(f"  {_clip(r.label, w):<{w}} {r.taxonomy or '-':<15} {kl:>{k}}"
                         f"{pm_col('kl', _pm_cell(r, 'kl', extra))} {ll:>14}"
                         f"{pm_col('ll', _pm_cell(r, 'll', extra))} {ins:>10} {oos:>14} "
                         + " ".join(f"{c:>{n}}" + (pm_col("extra", _pm_cell(r, "extra", extra)) if j == 0 else "")
                                    for j, (c, n) in enumerate(zip(ex, widths))) + marks)
    lines += [""] + [f"({note})" for note in _notes(results, tables, marked, spreads)]
    return "\n".join(lines)


def as_markdown(results: list[RunResult], names: dict | None = None) -> str:
    """The same leaderboard in Markdown; ``names`` maps (dataset, label) to a run name.
    A ranking cell with a spread reads ``x ± se`` (or ``± sd`` over seeds). Every cell
    goes through :func:`md_cell`, so every row has the header's number of cells."""
    names = names or {}
    parts, tables, marked, spreads = [], [], False, False
    for dataset, rows in ranked(results).items():
        extra = _sample_columns(rows)
        tables.append(extra)
        spreads |= any(_pm_columns(rows, extra).values())
        close = indistinct_from_above(rows, ranks_by_kl(rows))
        heads = [extra[0]] + [NEAR_COLUMNS[k] for k in extra[1:]]
        blank = " |" * (4 + len(extra))  # the cells after the run's
        parts.append(f"**{dataset}**, best first, {_rule(rows)}:\n")
        parts.append("| # | run | kl_to_truth | heldout_loglik | in support | out_of_support_rate | "
                     + " | ".join(heads) + " |")
        parts.append("|---|---|---|---|---|---|" + "---|" * len(extra))
        for k, (heading, r) in enumerate(_headed(rows), 1):
            if heading:
                parts.append(f"| | *{heading}* |{blank}")
            name = md_cell(names.get((dataset, r.label), r.label))
            if r.skip:
                parts.append(f"| {k} | {name} | SKIPPED: {md_cell(r.skip)} |{blank[2:]}")
                continue
            if r.error:
                parts.append(f"| {k} | {name} | FAILED |{blank[2:]}")
                continue
            cells = _cells(r, extra)
            for j, col in ((0, "kl"), (1, "ll"), (4, "extra")):
                pm = _pm_cell(r, col, extra)
                cells[j] = f"{cells[j]} {pm}" if pm and cells[j] != "-" else cells[j]
            cells = " | ".join(md_cell(c) for c in cells)
            flags = (" " + CAPPED if capped(r) else "") + (" " + CLOSE if k - 1 in close else "")
            marked |= k - 1 in close
            parts.append(f"| {k} | {name}{flags} | {cells} |")
        parts.append("")
    parts.append("\n\n".join(f"*{note}*" for note in _notes(results, tables, marked, spreads)))
    return "\n".join(parts)

"""Repeats over seeds: each (dataset, family)'s metrics as a mean and a standard deviation.

An experiment with ``seeds: [0, 1, 2]`` runs once per seed, each seed drawing its
own data, fit and samples (as synthcity's ``repeats``). :func:`over_seeds` turns
the per-seed results into one row per (dataset, family entry)::

    <metric>     the mean over the seeds
    <metric>_sd  the sample standard deviation over the seeds (ddof 1; with 2 or more)
    n_seeds      how many seeds the row is over (the seeds whose run succeeded)

A metric is averaged only when every successful seed recorded it. An infinite
value stays infinite (the mean of [inf, 0.5] is inf) and has no sd; a NaN makes
the mean NaN. The per-seed standard errors (``<metric>_se``) are not averaged:
beside a mean over seeds the spread is the sd.

Examples
--------
>>> r = [RunResult("d", "f", "a", "a", {}, metrics={"kl_to_truth": v}, seed=s)
...      for s, v in enumerate([1.0, 2.0, 3.0])]
>>> over_seeds(r)[0].metrics
{'kl_to_truth': 2.0, 'kl_to_truth_sd': 1.0, 'n_seeds': 3.0}
"""

from __future__ import annotations

import numpy as np

from pmodel.records import RunResult

SD_SUFFIX, SE_SUFFIX = "_sd", "_se"


def mean_and_sd(values) -> tuple[float, float | None]:
    """The mean of ``values`` and their sample sd (ddof 1); sd None with fewer than 2 values
    or when a value is not finite (the mean is then inf, -inf or nan as numpy gives it)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        mean = float(np.mean(v))
    if len(v) < 2 or not np.isfinite(v).all():
        return mean, None
    return mean, float(np.std(v, ddof=1))


def over_seeds(results: list[RunResult]) -> list[RunResult]:
    """One row per (dataset, label), in first-seen order, its metrics the mean over the seeds'
    results with ``<metric>_sd`` beside each, and ``n_seeds``; a row whose every seed failed
    keeps the first error. Seeds that failed are named in the row's notes."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.dataset, r.label), []).append(r)
    out = []
    for rows in groups.values():
        ok = [r for r in rows if not r.error]
        failed = [r for r in rows if r.error]
        first = (ok or rows)[0]
        notes = tuple(f"seed {r.seed} failed: {r.error.splitlines()[0][:200]}" for r in failed)
        base = RunResult(first.dataset, first.family, first.label, first.entry, first.params,
                         log_prob_kind=first.log_prob_kind, taxonomy=first.taxonomy, notes=notes)
        if not ok:
            out.append(base.with_(error=f"failed on every seed; {failed[0].error}"))
            continue
        metrics: dict[str, float] = {}
        for key in ok[0].metrics:
            if key.endswith(SE_SUFFIX) or not all(key in r.metrics for r in ok):
                continue
            mean, sd = mean_and_sd([r.metrics[key] for r in ok])
            metrics[key] = mean
            if sd is not None:
                metrics[key + SD_SUFFIX] = sd
        metrics["n_seeds"] = float(len(ok))
        out.append(base.with_(metrics=metrics))
    return out


def seeds_text(seeds) -> str:
    """``"seeds 0, 1, 2"``."""
    return "seeds " + ", ".join(str(s) for s in seeds)


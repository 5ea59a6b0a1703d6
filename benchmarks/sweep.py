"""The sweep on threads and on Dask: wall time of the fits, and the same scores.

Run:  .venv/bin/python benchmarks/sweep.py [--seeds 0 1 2] [--workers 2]

experiments/sweep.yaml is 38 (dataset, family) fits per seed (multinomial
and naive Bayes, six alphas, two grid sizes on land, and the box, on fashion
and land); a sweep over seeds is one flow run per seed (``--set seed=N``).
For each seed the flow runs, with every cache bypassed (refresh=True, so
every split, fit, sample and score is computed):

- ``threads``: Prefect's thread pool in this process (the default runner);
- ``dask``: ``make_task_runner("dask")``, what ``pmodel run --runner dask``
  does: a local cluster of ``--workers`` processes with one thread each,
  started for the flow run and closed after it, so its workers import
  pmodel and load the land mask in every run;
- ``dask-address``: the same cluster size started once by this script and
  reached by address (``--dask-address``): warm workers, as with an existing
  cluster.

Printed per run: the flow's fit phase (split, fit, sample and score of every
(dataset, family): the parent run's time_split_fit_sample_score_seconds) and
the whole flow; then the speed-ups over threads, and whether every recorded
score (all metrics but the *_seconds timings) is identical across runners.
Last, what explains the figures: each runner's cost per task (no-op tasks)
and its wall time on GIL-bound tasks (pure Python), where processes help.

What to expect on a small machine: pmodel's fits are numpy that releases
the GIL, about 0.1 s each, so 2 threads already use 2 cores, and each task
run on a Dask worker costs tens of milliseconds more than on a thread (its
own Prefect API calls, serialisation, a second process). Dask pays off with
more cores than one machine has (a cluster by address) or with long tasks
that hold the GIL.

Everything happens in a fresh PMODEL_HOME and PREFECT_HOME; Prefect's
temporary server is started once and PREFECT_API_URL pointed at it, so the
Dask workers report to it (see flows/runners.py). The data for every seed is
built, and the parent process warmed up (Great Expectations, MLflow, the land
mask), before anything is timed.
"""

from __future__ import annotations

import argparse

from pmodel.records import Outcome
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "experiments" / "sweep.yaml"


def scores(outcome: dict) -> dict:
    """{(dataset, label): {metric: value}} without the timings."""
    return {(r.dataset, r.label): {k: v for k, v in r.metrics.items()
                                         if not k.endswith("_seconds")}
            for r in outcome.results}


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def differences(base: dict, other: dict) -> list[str]:
    out = []
    for key in sorted(set(base) | set(other)):
        x, y = base.get(key), other.get(key)
        if x is None or y is None or set(x) != set(y):
            out.append(f"{key}: metrics {sorted(x or {})} vs {sorted(y or {})}")
            continue
        out.extend(f"{key} {m}: {x[m]!r} vs {y[m]!r}" for m in sorted(x) if not same(x[m], y[m]))
    return out


def _noop(i: int) -> int:
    return i


def _spin(i: int, seconds: float) -> int:
    """Pure Python for ``seconds`` of this thread's CPU: holds the GIL throughout."""
    t, x = time.thread_time(), 0
    while time.thread_time() - t < seconds:
        x += 1
    return i


def overhead(make: dict, runners: list[str], n_noop: int = 100, n_spin: int = 8,
             spin_s: float = 1.0) -> None:
    """Wall time of trivial tasks (the runner's cost per task) and of GIL-bound ones."""
    from prefect import flow, task

    noop, spin = task(_noop), task(_spin)

    @flow
    def tasks(kind: str, n: int) -> list:
        futures = [noop.submit(i) if kind == "noop" else spin.submit(i, spin_s) for i in range(n)]
        return [f.result() for f in futures]

    print(f"\nper-task cost and GIL-bound work ({n_noop} no-op tasks; {n_spin} tasks of "
          f"{spin_s:.1f} s pure Python each)")
    for name in runners:
        tasks.with_options(task_runner=make[name]())("noop", 4)  # warm
        t = time.perf_counter()
        tasks.with_options(task_runner=make[name]())("noop", n_noop)
        per_task = (time.perf_counter() - t) / n_noop
        t = time.perf_counter()
        tasks.with_options(task_runner=make[name]())("spin", n_spin)
        print(f"  {name:<13} {1000 * per_task:5.0f} ms a task   GIL-bound: "
              f"{time.perf_counter() - t:5.1f} s for {n_spin * spin_s:.0f} s of CPU", flush=True)


def run(run_experiment, task_runner, seed: int, store: str, overrides: list[str]) -> tuple[float, dict]:
    t = time.perf_counter()
    state = run_experiment.with_options(task_runner=task_runner)(
        str(EXPERIMENT), overrides=[*overrides, f"seed={seed}"], tracking_uri=store, refresh=True,
        return_state=True)
    wall = time.perf_counter() - t
    outcome = state.result(raise_on_failure=False)
    if not isinstance(outcome, Outcome) or outcome.failures:
        raise SystemExit(f"the sweep failed (seed {seed}): "
                         f"{outcome if not isinstance(outcome, Outcome) else outcome.failures}")
    return wall, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runners", nargs="+", default=["threads", "dask", "dask-address"],
                        choices=["threads", "dask", "dask-address"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override the sweep's config, as pmodel run --set "
                        "(e.g. n_samples=50000 for heavier tasks)")
    parser.add_argument("--no-overhead", action="store_true",
                        help="skip the per-task cost and GIL-bound measurements")
    parser.add_argument("--cold", action="store_true",
                        help="no untimed warm-up run: the first timed runs pay this process's "
                        "one-time costs")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pmodel-sweep-"))
    home = tmp / "home"
    home.mkdir()
    os.environ.update(PMODEL_HOME=str(home), PREFECT_HOME=str(tmp / "prefect"),
                      PMODEL_CACHE_DIR=os.environ.get("PMODEL_CACHE_DIR", str(REPO / "data" / "cache")),
                      PREFECT_LOGGING_LEVEL="WARNING")
    os.environ.pop("PREFECT_API_URL", None)
    if (REPO / "data" / "manifest.json").exists():
        shutil.copytree(REPO / "data", home / "data", ignore=shutil.ignore_patterns("cache", "builds"))
    sys.path.insert(0, str(REPO))

    from flows.runtime import configure_runtime, start_embedded_prefect

    configure_runtime()
    from prefect.settings import (PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
                                  temporary_settings)

    from flows.experiment import run_experiment
    from flows.runners import make_task_runner, quiet_dask_logging
    from pmodel.config import load_experiment
    from pmodel.datasets.build import ensure_built
    from pmodel.problems import builtin_truth

    config = load_experiment(EXPERIMENT, args.set)
    print(f"{EXPERIMENT.name}{' ' + ' '.join(args.set) if args.set else ''}: "
          f"{len(config.runs())} (dataset, family) fits per seed, seeds "
          f"{args.seeds}; {os.cpu_count()} CPUs; Dask: {args.workers} worker processes x 1 thread; "
          f"load average {os.getloadavg()[0]:.2f} (other work on the machine skews the figures)")
    t = time.perf_counter()
    for seed in args.seeds:
        ensure_built(load_experiment(EXPERIMENT, [*args.set, f"seed={seed}"]).build_config(),
                     progress=False)
    import great_expectations  # noqa: F401
    import mlflow  # noqa: F401

    builtin_truth("land")
    url = start_embedded_prefect()
    print(f"set-up (data for every seed, imports, land mask, Prefect's server): "
          f"{time.perf_counter() - t:.1f} s\n")

    store = "sqlite:///" + str(home / "mlruns" / "mlflow.db")
    rows, results = [], {}
    cluster = None
    try:
        with temporary_settings({PREFECT_API_URL: url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}), \
                quiet_dask_logging():
            if "dask-address" in args.runners:
                from distributed import LocalCluster

                t = time.perf_counter()
                cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, env={"PREFECT_API_URL": url})
                print(f"started a LocalCluster at {cluster.scheduler_address} for dask-address "
                      f"in {time.perf_counter() - t:.1f} s\n")
            make = {"threads": lambda: make_task_runner("threads"),
                    "dask": lambda: make_task_runner("dask", n_workers=args.workers),
                    "dask-address": lambda: make_task_runner("dask", cluster.scheduler_address)}
            if not args.cold:  # one-time costs of this process and of the long-lived workers
                t = time.perf_counter()
                for name in ("threads", "dask-address"):
                    if name in args.runners:
                        run(run_experiment, make[name](), args.seeds[0], store, args.set)
                print(f"warm-up (untimed): threads and dask-address once each on seed "
                      f"{args.seeds[0]}: {time.perf_counter() - t:.1f} s\n")
            print(f"{'seed':>4}  {'runner':<13}{'fit phase':>10}{'flow':>9}")
            for seed in args.seeds:
                for name in args.runners:
                    wall, outcome = run(run_experiment, make[name](), seed, store, args.set)
                    fit = outcome.timings["split_fit_sample_score"]
                    rows.append((seed, name, fit, wall))
                    results[seed, name] = scores(outcome)
                    print(f"{seed:>4}  {name:<13}{fit:>9.1f}s{wall:>8.1f}s", flush=True)
            if not args.no_overhead:
                overhead(make, [n for n in args.runners if n != "dask"])
    finally:
        if cluster is not None:
            cluster.close()

    print(f"\nin all ({len(args.seeds)} seeds, {len(args.seeds) * len(config.runs())} fits per runner)")
    total = {name: (sum(r[2] for r in rows if r[1] == name), sum(r[3] for r in rows if r[1] == name))
             for name in args.runners}
    for name, (fit, wall) in total.items():
        speed = ""
        if name != "threads" and "threads" in total:
            speed = (f"   speed-up over threads: fit phase x{total['threads'][0] / fit:.2f}, "
                     f"flow x{total['threads'][1] / wall:.2f}")
        print(f"  {name:<13} fit phase {fit:7.1f} s   flow {wall:7.1f} s{speed}")

    base = args.runners[0]
    bad = [f"seed {seed} {name}: {d}" for seed in args.seeds for name in args.runners[1:]
           for d in differences(results[seed, base], results[seed, name])]
    n_metrics = sum(len(m) for seed in args.seeds for m in results[seed, base].values())
    if bad:
        print(f"\nscores DIFFER from {base}:\n  " + "\n  ".join(bad[:20]))
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(1)
    print(f"\nscores: identical on every runner ({n_metrics} metrics per runner, timings excluded)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

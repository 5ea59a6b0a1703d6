"""End to end: wall time of `pmodel run chapter1`, cold and warm, and where it goes.

Run:  .venv/bin/python benchmarks/run_chapter1.py [--baseline REV] [--repeat N]

``--baseline REV`` measures the same runs on another commit too (checked out in a
temporary git worktree, run with this venv), and prints both side by side.
``--repeat N`` runs each of cold and warm N times and prints the median (default 3):
on a 2-core machine a single run moves by seconds with whatever else is running.

cold = the data is present (copied from the project's data/, or built) but every
cache is empty and the MLflow store is new; warm = the same run again (every
fit, sample and score cached). Each run is a fresh `pmodel` process, as a user
runs it. Beside them, the fixed costs, each in a fresh process: importing
prefect, mlflow and great_expectations, starting Prefect's temporary server,
loading the land mask. The flow's phases come from the parent run's
time_*_seconds metrics in MLflow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def fresh_process(code: str, env: dict) -> float:
    """Seconds a fresh Python process takes to run ``code`` (interpreter start excluded)."""
    out = subprocess.run([PY, "-c", f"import time; t = time.perf_counter()\n{code}\n"
                          "print(time.perf_counter() - t)"], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


# `pmodel run` in this process, and its peak resident memory printed at exit
_RUN = ("import atexit, resource, sys\n"
        "atexit.register(lambda: print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
        " file=sys.stderr))\n"
        "sys.path.insert(0, '.')\n"
        "from flows.cli import main\n"
        "sys.exit(main(sys.argv[1:]))")


def peak_rss_gb(stderr: str) -> float:
    line = next(line for line in stderr.splitlines()[::-1] if line.startswith("PEAK_RSS_KB"))
    return int(line.split()[1]) / 1024**2


def pmodel_run(env: dict, checkout: Path = REPO, *args: str) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run([PY, "-c", _RUN, "run", "chapter1", *args], cwd=checkout, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"pmodel run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return wall, out.stdout + f"\npeak memory {peak_rss_gb(out.stderr):.2f} GB"


def parent_timings(home: Path) -> list[dict]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri="sqlite:///" + str(home / "mlruns" / "mlflow.db"))
    exp = client.get_experiment_by_name("chapter1")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`pmodel.config` != ''",
                              order_by=["attributes.start_time ASC"])
    return [{k.removeprefix("time_").removesuffix("_seconds"): v for k, v in r.data.metrics.items()
             if k.startswith("time_")} for r in runs]


def measure(checkout: Path, repeat: int) -> dict:
    """Cold (--refresh: every step recomputed) and warm runs of chapter1 in a fresh home,
    ``repeat`` times each, alternating; the median wall time of each and its flow phases."""
    import statistics

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = {**os.environ, "PMODEL_HOME": str(home), "PREFECT_HOME": str(Path(tmp) / "prefect"),
               "PMODEL_CACHE_DIR": str(REPO / "data" / "cache"), "PMODEL_TEMPORARY_PREFECT": "1"}
        env.pop("PREFECT_API_URL", None)
        if (REPO / "data" / "manifest.json").exists():
            shutil.copytree(REPO / "data", home / "data", ignore=shutil.ignore_patterns("cache", "builds"))
        first, _ = pmodel_run(env, checkout)  # builds nothing (data copied); fills every cache
        walls = {"cold": [], "warm": []}
        memory = {"cold": [], "warm": []}
        for _ in range(repeat):
            for kind, args in (("cold", ("--refresh",)), ("warm", ())):
                wall, out = pmodel_run(env, checkout, *args)
                walls[kind].append(wall)
                memory[kind].append(float(out.rsplit("peak memory ", 1)[1].split()[0]))
        timings = parent_timings(home)[1:]  # the first run's, then cold, warm, cold, warm ...
        out = {"first": first}
        for i, label in enumerate(("cold", "warm")):
            runs = timings[i::2]
            median = statistics.median(walls[label])
            k = walls[label].index(sorted(walls[label])[len(walls[label]) // 2])
            out[label] = {"wall": median, "all": walls[label], "phases": runs[k],
                          "memory": max(memory[label])}
        return out


def report(label: str, m: dict) -> None:
    print(f"\n{label}: first run on a new store (data present) {m['first']:.1f} s")
    for kind in ("cold", "warm"):
        r = m[kind]
        flow = sum(r["phases"].values())
        print(f"  {kind}: {r['wall']:5.1f} s wall (median of {', '.join(f'{w:.1f}' for w in r['all'])}); "
              f"in the flow {flow:.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in r['phases'].items())}); "
              f"outside the flow (imports, Prefect start and stop) {r['wall'] - flow:.1f} s; "
              f"peak memory of the pmodel process {r['memory']:.2f} GB")


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="another commit to measure beside this checkout")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PREFECT_HOME": str(Path(tmp) / "prefect"), "PMODEL_HOME": tmp}
        env.pop("PREFECT_API_URL", None)
        fixed = {
            "import prefect": fresh_process("import prefect", env),
            "import mlflow": fresh_process("import mlflow", env),
            "import great_expectations": fresh_process("import great_expectations", env),
            "load the land mask + count the region": fresh_process(
                "from pmodel.datasets.land import LandData; LandData()", env),
            "start Prefect's temporary server (fresh db)": fresh_process(
                "from flows.runtime import configure_runtime, start_embedded_prefect\n"
                "configure_runtime(); start_embedded_prefect()", env),
            "start Prefect's temporary server (existing db)": fresh_process(
                "from flows.runtime import configure_runtime, start_embedded_prefect\n"
                "configure_runtime(); start_embedded_prefect()", env),
        }
    print("fixed costs (each in a fresh process)")
    for what, seconds in fixed.items():
        print(f"  {what:<48} {seconds:6.1f} s")
    print("\npmodel run chapter1 (15 fits: 3 datasets x 5 families); cold = --refresh, "
          "warm = every step cached")
    report(f"this checkout ({_rev(REPO)})", measure(REPO, args.repeat))
    if args.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp) / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.baseline], cwd=REPO,
                           check=True, capture_output=True)
            try:
                report(f"baseline {args.baseline} ({_rev(tree)})", measure(tree, args.repeat))
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO,
                               capture_output=True)


def _rev(checkout: Path) -> str:
    out = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=checkout, capture_output=True,
                         text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=checkout,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip()[:60] + (" + uncommitted changes" if dirty else "")


if __name__ == "__main__":
    main()

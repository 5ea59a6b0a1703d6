"""End to end: wall time of `pmodel run chapter1`, cold and warm, and where it goes.

Run:  .venv/bin/python benchmarks/run_chapter1.py

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


def pmodel_run(env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run([PY, "-m", "flows.cli", "run", "chapter1"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"pmodel run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return wall, out.stdout


def parent_timings(home: Path) -> list[dict]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri="sqlite:///" + str(home / "mlruns" / "mlflow.db"))
    exp = client.get_experiment_by_name("chapter1")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`pmodel.config` != ''",
                              order_by=["attributes.start_time ASC"])
    return [{k.removeprefix("time_").removesuffix("_seconds"): v for k, v in r.data.metrics.items()
             if k.startswith("time_")} for r in runs]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = {**os.environ, "PMODEL_HOME": str(home), "PREFECT_HOME": str(Path(tmp) / "prefect"),
               "PMODEL_CACHE_DIR": str(REPO / "data" / "cache")}
        env.pop("PREFECT_API_URL", None)
        if (REPO / "data" / "manifest.json").exists():
            shutil.copytree(REPO / "data", home / "data", ignore=shutil.ignore_patterns("cache", "builds"))

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

        cold, cold_out = pmodel_run(env)
        warm, warm_out = pmodel_run(env)
        timings = parent_timings(home)
        print("\npmodel run chapter1 (15 fits: 3 datasets x 5 families)")
        for label, wall, t in (("cold", cold, timings[0]), ("warm", warm, timings[1])):
            flow = sum(t.values())
            print(f"  {label}: {wall:6.1f} s wall; in the flow {flow:.1f} s "
                  f"({', '.join(f'{k} {v:.1f}' for k, v in t.items())}); outside the flow "
                  f"(imports, Prefect start and stop) {wall - flow:.1f} s")
        print("\nlast lines of the warm run:")
        print("\n".join(warm_out.strip().splitlines()[-3:]))


if __name__ == "__main__":
    main()

"""How long validation takes (prints figures; not a test).

In a fresh temporary ``PMODEL_HOME``: builds the built-in datasets at the tiny
experiment's sizes, then times

- ``pmodel validate KIND FILE`` as a user runs it (a new process each: GX's import
  and context included), for fashion, land and pixels, and a fashion CSV with a
  bad row (the failing case, whose report and page list the offending rows);
- the same three validations in one warm process (what a flow pays per file);
- the ingest-and-validate step of ``tests/experiments/tiny.yaml`` run for real
  (``time_ingest_validate_seconds`` on its parent run; ``--refresh``, so nothing
  is skipped as validated before).

    .venv/bin/python benchmarks/validation.py [REPEAT]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(repeat: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "PMODEL_HOME": str(tmp / "home"), "PREFECT_HOME": str(tmp / "prefect"),
               "PMODEL_TEMPORARY_PREFECT": "1"}
        env.pop("PREFECT_API_URL", None)
        env.setdefault("PMODEL_CACHE_DIR", str(REPO / "data" / "cache"))
        os.environ.update({k: env[k] for k in ("PMODEL_HOME", "PMODEL_CACHE_DIR")})

        from pmodel.datasets import fashion
        from pmodel.datasets.build import BuildConfig, build_all

        from pmodel.problems import builtin_files

        build_all(BuildConfig(seed=1, n_train=20, n_heldout=100), out_dir=tmp / "data", progress=False)
        files = {name: builtin_files(name, tmp / "data")["train"] for name in ("fashion", "land", "pixels")}
        bad = tmp / "bad.csv"
        rows = fashion.read_csv(files["fashion"])
        rows.loc[4, "clothing_color"] = "Purple"
        fashion.write_csv(rows, bad)
        cases = [*files.items(), ("fashion", bad)]

        print("pmodel validate (a new process each), seconds: median of", repeat)
        for kind, path in cases:
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "flows.cli", "validate", kind, str(path)],
                                      cwd=REPO, env=env, capture_output=True, text=True)
                times.append(time.perf_counter() - t)
            print(f"  {kind:8s} {path.name:10s} exit {done.returncode}  {statistics.median(times):.2f}")

        from tasks.validation import validate

        validate(*cases[0])  # GX imported and its context made
        print("validate() in a warm process, seconds: median of", repeat)
        for kind, path in cases:
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                validate(kind, path)
                times.append(time.perf_counter() - t)
            print(f"  {kind:8s} {path.name:10s} {statistics.median(times):.3f}")

        uri = "sqlite:///" + str(tmp / "mlflow.db")
        done = subprocess.run([sys.executable, "-m", "flows.cli", "run",
                               str(REPO / "tests" / "experiments" / "tiny.yaml"), "--refresh",
                               "--tracking-uri", uri], cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:])
            return
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name("tiny")
        parent = next(r for r in client.search_runs([experiment.experiment_id])
                      if "mlflow.parentRunId" not in r.data.tags)
        print("tiny run (3 datasets), time_ingest_validate_seconds: "
              f"{parent.data.metrics['time_ingest_validate_seconds']:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)

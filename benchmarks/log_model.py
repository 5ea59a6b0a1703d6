"""What logging a fitted model as an MLflow pyfunc (tasks/models.py) adds to each child run.

Run:  .venv/bin/python benchmarks/log_model.py [--runs N]

Fits naive Bayes on 200 fashion rows and the multinomial on 50 pixel images, then, on a fresh
SQLite store in a temporary folder, logs each model to N runs with 30 scores linked to it (as
tasks/record.py logs a child's), and times that: the first call (imports), then the median and
the slowest of the rest. Compare with the time of the scores alone (the line "scores only").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()

    from pmodel.datasets import fashion, pixels
    from pmodel.families import make_family
    from pmodel.families.domains import CategoricalDomain, ImageDomain
    from tasks import models, tracking

    rng = np.random.default_rng(0)
    fitted = {
        "fashion naive_bayes": make_family("naive_bayes", CategoricalDomain(fashion.SCHEMA.shape),
                                           alpha=1.0).fit(fashion.sample_codes(200, rng=rng)),
        "pixels multinomial": make_family("multinomial", ImageDomain(32, 32), alpha=1.0).fit(
            pixels.load_renders(progress=False)[:50]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        uri = "sqlite:///" + str(Path(tmp) / "mlflow.db")
        experiment = tracking.get_or_create_experiment(uri, "log-model-benchmark")
        seconds = []
        for i in range(args.runs):
            run_id = tracking.start_run(uri, experiment, f"scores only {i}")
            t = time.perf_counter()
            tracking.log_batch(uri, run_id, metrics={f"score_{j}": float(j) for j in range(30)})
            seconds.append(time.perf_counter() - t)
            tracking.end_run(uri, run_id, "FINISHED")
        print(f"scores only: median {statistics.median(seconds):.2f} s over {len(seconds)} runs")
        for name, model in fitted.items():
            folder = model.save(Path(tmp) / name / models.ARTIFACT_KEY)
            seconds = []
            for i in range(args.runs):
                run_id = tracking.start_run(uri, experiment, f"{name} {i}")
                t = time.perf_counter()  # as tasks/record.py does: the model, then its scores
                model_id = models.log_pyfunc_model(uri, run_id, folder, params={"alpha": 1.0})
                tracking.log_batch(uri, run_id, metrics={f"score_{j}": float(j) for j in range(30)},
                                   model_id=model_id)
                seconds.append(time.perf_counter() - t)
                tracking.end_run(uri, run_id, "FINISHED")
            size = sum(p.stat().st_size for p in folder.iterdir()) / 1e3
            print(f"{name} ({size:.0f} kB saved): first {seconds[0]:.2f} s, then median "
                  f"{statistics.median(seconds[1:]):.2f} s, max {max(seconds[1:]):.2f} s "
                  f"over {len(seconds) - 1} runs")


if __name__ == "__main__":
    main()

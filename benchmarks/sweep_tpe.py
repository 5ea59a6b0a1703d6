"""pmodel sweep on the land flow: TPE + pruning against the hand-set flow of taxonomy.yaml.

Run:  .venv/bin/python benchmarks/sweep_tpe.py [--trials 30] [--n-train 80000] [--epochs 28]
                                               [--n-samples 5000] [--jobs 1] [--pruner median]

(benchmarks/sweep.py is another benchmark: the experiment sweep.yaml on threads and Dask.)

The goal (issue 18): a sweep of 30 trials of the spline flow on land finds a KL to the truth at
least as good as the hand-set one (experiments/taxonomy.yaml's flow entry), in less time than
30 full fits, thanks to pruning. Printed:

- the hand-set flow: its KL and its fit time, fitted here on the same split as the trials
  (``pmodel.evaluate.run_family``, the flow's own path);
- the sweep (``flows.sweep.run_sweep``, for real: Prefect, MLflow, the Optuna study): each
  trial's state, KL or the epoch it was pruned at, and its training seconds; the best KL;
- the training seconds the trials spent, against what the same trials would have spent
  unpruned (each pruned trial's seconds scaled to the whole budget of epochs: its seconds
  per epoch times the epochs), and against ``trials`` hand-set fits.

``--n-train``, ``--epochs`` and ``--n-samples`` shrink the problem for a small machine (the
hand-set entry is shrunk the same way, so the comparison stays fair). Everything happens in a
fresh PMODEL_HOME; nothing is timed before the data is built.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "experiments" / "taxonomy.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--n-train", type=int, default=None, help="default: taxonomy.yaml's (80000)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the flow entry's (28)")
    parser.add_argument("--n-samples", type=int, default=None, help="default: taxonomy.yaml's (5000)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--pruner", default="median", choices=("median", "halving", "none"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pmodel-sweep-tpe-"))
    home = tmp / "home"
    home.mkdir()
    os.environ.update(PMODEL_HOME=str(home), PREFECT_HOME=str(tmp / "prefect"),
                      PMODEL_CACHE_DIR=os.environ.get("PMODEL_CACHE_DIR", str(REPO / "data" / "cache")),
                      PREFECT_LOGGING_LEVEL="WARNING")
    os.environ.pop("PREFECT_API_URL", None)
    sys.path.insert(0, str(REPO))
    from flows.runtime import configure_runtime, start_embedded_prefect

    configure_runtime()
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.sweep import base_params, run_sweep
    from pmodel.config import load_experiment
    from pmodel.evaluate import run_family
    from pmodel.problems import load_problem

    config = load_experiment(EXPERIMENT)
    flow_index = next(i for i, s in enumerate(config.families) if s.family == "flow")
    overrides = []
    if args.n_train:
        overrides.append(f"datasets.land.n_train={args.n_train}")
    if args.epochs:
        overrides.append(f"families.{flow_index}.points.epochs={args.epochs}")
    if args.n_samples:
        overrides.append(f"datasets.land.n_samples={args.n_samples}")
    config = load_experiment(EXPERIMENT, overrides)
    hand, _ = base_params(config, "flow", "land")
    print(f"taxonomy.yaml{' ' + ' '.join(overrides) if overrides else ''}\nhand-set flow on land: {hand}\n"
          f"{args.trials} trials, {args.jobs} at once, pruner {args.pruner}; {os.cpu_count()} CPUs, load "
          f"average {os.getloadavg()[0]:.2f} (other work on the machine skews the figures)\n", flush=True)

    url = start_embedded_prefect()
    with temporary_settings({PREFECT_API_URL: url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        t = time.perf_counter()
        out = run_sweep(str(EXPERIMENT), "flow", "land", args.trials, n_jobs=args.jobs, pruner=args.pruner,
                        overrides=overrides, tracking_uri="sqlite:///" + str(home / "mlflow.db"))
        sweep_wall = time.perf_counter() - t
    problem = load_problem(out.problem_path)
    t = time.perf_counter()
    handset = run_family("flow", hand, problem, n_samples=config.n_samples_for("land"), seed=config.seed)
    hand_wall = time.perf_counter() - t
    hand_fit = handset.metrics["fit_seconds"]
    print(f"hand-set: kl_to_truth {handset.metrics['kl_to_truth']:.5f}, fit {hand_fit:.1f} s "
          f"(fit, sample and score {hand_wall:.1f} s)\n", flush=True)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=out.tracking_uri)
    epochs = hand.get("epochs")
    spent = unpruned = 0.0
    print(f"{'trial':>5}  {'state':<9}{'kl_to_truth':>12}{'epochs':>8}{'train s':>9}  hyperparameters")
    for trial in out.trials:
        run = client.get_run(trial.run_id)
        seconds = run.data.metrics["fit_seconds"]
        done = int(run.data.metrics.get("pruned_at_epoch", epochs))
        spent += seconds
        unpruned += seconds * epochs / done
        kl = f"{trial.value:.5f}" if trial.value is not None else "-"
        print(f"{trial.number:>5}  {trial.state:<9}{kl:>12}{done:>8}{seconds:>9.1f}  {trial.params}")
    best = out.best
    print(f"\nbest of the sweep: kl_to_truth {best['value']:.5f} (trial {best['number']}); hand-set "
          f"{handset.metrics['kl_to_truth']:.5f}: "
          f"{'as good or better' if best['value'] <= handset.metrics['kl_to_truth'] else 'WORSE'}")
    print(f"training time: {spent:.0f} s with pruning; the same trials unpruned about {unpruned:.0f} s "
          f"(x{unpruned / max(spent, 1e-9):.2f}); {args.trials} hand-set fits {args.trials * hand_fit:.0f} s "
          f"({args.trials * hand_wall:.0f} s with their samples and scores)")
    print(f"the sweep's wall time: {sweep_wall:.0f} s (fits, samples, scores of the finished trials, "
          f"child runs, data and Prefect); {out.seconds:.0f} s in the flow")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The chapter's families on the default datasets: every score, one table.

Run:  .venv/bin/python benchmarks/chapter1_scores.py [--data DIR] [--n-samples N] [--seed N]

Builds the default datasets first when they are missing (``pmodel data build``).
"""

from __future__ import annotations

import argparse
import math
import time

from pmodel import paths
from pmodel.datasets.build import BuildConfig, build_all
from pmodel.evaluate import run_family
from pmodel.problems import load_builtin

FAMILIES = {
    "fashion": [("box", {}), ("multinomial", {"alpha": 0.0}), ("multinomial", {"alpha": 1.0}),
                ("naive_bayes", {"alpha": 0.0}), ("naive_bayes", {"alpha": 1.0})],
    "pixels": [("box", {}), ("multinomial", {"alpha": 0.0}), ("multinomial", {"alpha": 1.0}),
               ("naive_bayes", {"alpha": 0.0}), ("naive_bayes", {"alpha": 1.0})],
    "land": [("box", {}), ("multinomial", {"alpha": 0.0, "cell_deg": 10.0}),
             ("multinomial", {"alpha": 1.0, "cell_deg": 10.0}),
             ("naive_bayes", {"alpha": 0.0, "bin_deg": 10.0}),
             ("naive_bayes", {"alpha": 1.0, "bin_deg": 10.0})],
}
COLUMNS = ["heldout_loglik", "heldout_loglik_in_support", "out_of_support_rate", "heldout_bits_per_dim", "entropy_truth",
           "kl_to_truth", "on_land_rate", "land_coverage", "prdc_precision", "prdc_recall",
           "prdc_density", "prdc_coverage", "box_sea_share", "land_outside_box_share",
           "novelty_rate", "unique_rate", "valid_rate", "n_valid_combinations", "n_parameters"]


def fmt(v):
    if v is None:
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--n-samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = paths.data_dir() if args.data is None else args.data
    if not (paths.data_dir() / "manifest.json").exists() and args.data is None:
        build_all(BuildConfig(), progress=True, log=print)
    for dataset, families in FAMILIES.items():
        t = time.perf_counter()
        problem = load_builtin(dataset, data)
        print(f"\n== {dataset}: {len(problem.train)} train, {len(problem.heldout)} held out "
              f"(loaded in {time.perf_counter() - t:.1f} s)")
        for name, params in families:
            result = run_family(name, params, problem, n_samples=args.n_samples, seed=args.seed)
            shown = {k: fmt(result.metrics.get(k)) for k in COLUMNS if k in result.metrics}
            print(f"{name} {params}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))


if __name__ == "__main__":
    main()

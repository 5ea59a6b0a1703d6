"""Throughput of fitting, sampling and scoring each family, with plain baselines.

Run:  .venv/bin/python benchmarks/families.py [--max-rows 1e7] [--max-images 1e5] [--max-points 1e7]

Prints, for growing sizes and each (family, hyperparameters): seconds and
examples per second for fit(X), sample(n) and log_prob(X) on n examples;
beside them, in the same run, the same counting done by pandas
(`DataFrame.value_counts`, per-column `Series.value_counts`) and the on-land
check done by the `global_land_mask` package's own `is_land`.
Figures depend on the machine: compare rows of one run, not runs of two machines.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from pmodel.datasets import fashion, land, pixels
from pmodel.families import CategoricalDomain, ImageDomain, PointsDomain, make_family

FAMILIES = {
    "categorical": [("box", {}), ("multinomial", {"alpha": 1.0}), ("naive_bayes", {"alpha": 1.0})],
    "image": [("box", {}), ("multinomial", {"alpha": 1.0}), ("naive_bayes", {"alpha": 1.0})],
    "points": [("box", {}), ("multinomial", {"alpha": 1.0, "cell_deg": 1.0}),
               ("naive_bayes", {"alpha": 1.0, "bin_deg": 1.0})],
}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def row(kind, n, what, seconds):
    rate = n / seconds if seconds > 0 else float("inf")
    print(f"{kind:<12} {n:>10,} {what:<56} {seconds:>9.4f} s {rate:>14,.0f} /s", flush=True)


def sizes(lo, hi):
    return [int(10**e) for e in range(int(np.log10(lo)), int(np.log10(hi)) + 1)]


def bench_kind(kind, domain, data_of, sizes_, extra=None):
    rng = np.random.default_rng(0)
    for n in sizes_:
        X = data_of(n, rng)
        for name, params in FAMILIES[kind]:
            label = f"{name}{params if params else ''}"
            model = make_family(name, domain, **params)
            t_fit, _ = timed(lambda: model.fit(X))
            t_sample, S = timed(lambda: model.sample(n, rng=np.random.default_rng(1)))
            t_score, _ = timed(lambda: model.log_prob(X))
            row(kind, n, f"{label} fit", t_fit)
            row(kind, n, f"{label} sample", t_sample)
            row(kind, n, f"{label} log_prob", t_score)
        if extra:
            extra(n, X)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-rows", type=float, default=1e7)
    parser.add_argument("--max-images", type=float, default=1e5)
    parser.add_argument("--max-points", type=float, default=1e7)
    args = parser.parse_args(argv)
    print(f"{'kind':<12} {'n':>10} {'what':<56} {'time':>11} {'throughput':>16}")

    # -- fashion rows ------------------------------------------------------
    def fashion_baseline(n, X):
        df = pd.DataFrame(X, columns=fashion.COLUMNS)
        t, _ = timed(lambda: df.value_counts())
        row("categorical", n, "baseline pandas DataFrame.value_counts", t)
        t, _ = timed(lambda: [df[c].value_counts() for c in df.columns])
        row("categorical", n, "baseline pandas per-column value_counts", t)

    bench_kind("categorical", CategoricalDomain(fashion.SCHEMA.shape),
               lambda n, rng: fashion.sample_codes(n, rng=rng),
               sizes(1e3, args.max_rows), fashion_baseline)

    # -- avatar images -----------------------------------------------------
    renders = pixels.load_renders(progress=True)
    bench_kind("image", ImageDomain(32, 32),
               lambda n, rng: renders[fashion.SCHEMA.cell_index(fashion.sample_codes(n, rng=rng))],
               sizes(1e2, args.max_images))

    # -- land points -------------------------------------------------------
    t, truth = timed(lambda: land.LandData())
    print(f"(land mask loaded and region counted in {t:.1f} s)")

    def land_baseline(n, X):
        from global_land_mask import globe

        t, a = timed(lambda: land.is_land(X[:, 0], X[:, 1]))
        row("points", n, "pmodel land.is_land", t)
        t, b = timed(lambda: globe.is_land(X[:, 1].copy(), X[:, 0].copy()))
        row("points", n, "baseline global_land_mask.is_land", t)
        assert np.array_equal(a, b)
        t, _ = timed(lambda: truth.sample(n, rng=np.random.default_rng(2)))
        row("points", n, "P_data sample (uniform on land)", t)

    r = truth.region
    bench_kind("points", PointsDomain(r.lon_min, r.lon_max, r.lat_min, r.lat_max),
               lambda n, rng: truth.sample(n, rng=rng), sizes(1e3, args.max_points), land_baseline)


if __name__ == "__main__":
    main()

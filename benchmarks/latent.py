"""Latent variables and dependencies without deep learning: the figures of issue 9.

Run:  nice -n 10 .venv/bin/python benchmarks/latent.py [--seeds N]

1. Chow-Liu on fashion at 5000 and 50 training rows: is the true tree recovered, KL to the
   truth, beside naive Bayes and the truth's total correlation (what independence cannot see).
2. GMM and KDE against the chapter's families on 5000 land points: KL, on-land rate, coverage.
3. PCA, factor analysis and latent class on 2000 jars: latent R^2 per factor, MIG.
4. Fit time of each family, and how it grows when the training set grows x10.

Data are built (seeded) under data/builds/ when missing, as ``pmodel run`` builds them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pmodel.datasets import fashion
from pmodel.datasets.build import BuildConfig, ensure_built
from pmodel.evaluate import fit_model, sample_rng
from pmodel.problems import load_builtin
from pmodel.scores.latent import mutual_information_gap, readout_scores

TRUE_TREE = {frozenset(e) for e in [("hair_type", "hair_color"), ("hair_color", "accessories_type"),
                                    ("hair_type", "clothing_type"), ("clothing_type", "clothing_color")]}


def problem(name: str, n_train: int, seed: int = 0, n_heldout: int = 5000, with_truth: bool = True):
    folder = ensure_built(BuildConfig(seed=seed, n_train=n_train, n_heldout=n_heldout), [name], progress=False)
    return load_builtin(name, folder, with_truth=with_truth)


def total_correlation() -> float:
    p = fashion.probability_table()
    marg = [p.sum(axis=tuple(k for k in range(5) if k != j)) for j in range(5)]
    return float(sum(-(m * np.log(m)).sum() for m in marg) - fashion.entropy())


def chow_liu_section(seeds: int) -> None:
    print("\n== 1. Chow-Liu on fashion (KL to the truth, nats; alpha = 1) ==")
    print(f"truth: entropy {fashion.entropy():.4f}, total correlation {total_correlation():.4f} "
          "(naive Bayes cannot go below it)")
    print(f"{'n_train':>8} {'seed':>4} {'tree':>10} {'KL chow_liu':>12} {'KL naive_bayes':>15} "
          f"{'KL latent_class K=8':>20}")
    for n in (5000, 50):
        kls = []
        for seed in range(seeds):
            p = problem("fashion", n, seed)
            cl, _ = fit_model("chow_liu", {"alpha": 1.0}, p, seed=seed)
            nb, _ = fit_model("naive_bayes", {"alpha": 1.0}, p, seed=seed)
            lc, _ = fit_model("latent_class", {"n_components": 8, "alpha": 0.1}, p, seed=seed)
            tree = "true" if cl.tree_edges(fashion.COLUMNS) == TRUE_TREE else "other"
            k = [p.truth.kl(m) for m in (cl, nb, lc)]
            kls.append(k)
            print(f"{n:>8} {seed:>4} {tree:>10} {k[0]:>12.4f} {k[1]:>15.4f} {k[2]:>20.4f}")
        mean = np.mean(kls, axis=0)
        print(f"{n:>8} {'mean':>4} {'':>10} {mean[0]:>12.4f} {mean[1]:>15.4f} {mean[2]:>20.4f}"
              f"   (k/2N for the true tree's 102 parameters: {102 / (2 * n):.4f})")


def land_section() -> None:
    print("\n== 2. Land, 5000 training points (KL nats per deg^2 density; 5000 samples) ==")
    p = problem("land", 5000)
    print(f"truth entropy {p.truth.entropy():.4f}")
    print(f"{'family':<32} {'KL':>8} {'on_land':>8} {'coverage':>9} {'fit s':>7} {'KL s':>6}")
    for name, params in [("box", {}), ("multinomial", {"alpha": 1.0, "cell_deg": 1.0}),
                         ("naive_bayes", {"alpha": 1.0, "bin_deg": 1.0}),
                         ("gmm", {"n_components": 20}), ("kde", {})]:
        model, fit_s = fit_model(name, params, p, seed=0)
        t = time.perf_counter()
        kl = p.truth.kl(model)
        kl_s = time.perf_counter() - t
        s = p.truth.sample_scores(model.sample(5000, rng=sample_rng(0)))
        label = name + " " + " ".join(f"{k}={v}" for k, v in params.items())
        extra = f" (h = {model.bandwidth_:.2f} deg)" if name == "kde" else ""
        print(f"{label:<32} {kl:>8.4f} {s['on_land_rate']:>8.3f} {s['land_coverage']:>9.3f} "
              f"{fit_s:>7.1f} {kl_s:>6.1f}{extra}")


def jars_section() -> None:
    print("\n== 3. Jars, 2000 training images (latent scores on 5000 held-out) ==")
    p = problem("jars", 2000)
    print(f"{'family':<44} {'R2 height':>9} {'R2 width':>9} {'MIG':>6} {'bits/dim':>9} {'fit s':>7}")
    for name, params in [("pca", {"n_components": 2}), ("pca", {"n_components": 8}),
                         ("pca", {"n_components": 16}), ("factor_analysis", {"n_components": 2}),
                         ("factor_analysis", {"n_components": 8}),
                         ("latent_class", {"n_components": 24, "alpha": 0.01, "n_init": 2}),
                         ("latent_class", {"n_components": 50, "alpha": 0.01, "n_init": 2})]:
        model, fit_s = fit_model(name, params, p, seed=0)
        zt, zh = model.encode(p.train), model.encode(p.heldout)
        r2 = readout_scores(zt, zh, p.factors["train"], p.factors["heldout"], p.factor_names)
        mig, _ = mutual_information_gap(zh, p.factors["heldout"])
        bpd = -model.log_prob(p.heldout).mean() / (1024 * np.log(2))
        kind = "bound" if model.log_prob_kind == "lower_bound" else "exact"
        label = name + " " + " ".join(f"{k}={v}" for k, v in params.items())
        print(f"{label:<44} {r2['latent_r2_height']:>9.3f} {r2['latent_r2_width']:>9.3f} {mig:>6.3f} "
              f"{bpd:>9.3f} {fit_s:>7.1f}  ({kind})")


def timing_section() -> None:
    print("\n== 4. Fit time (s) and growth when the training set grows x10 ==")
    cases = [("fashion", 500, "chow_liu", {"alpha": 1.0}), ("fashion", 500, "naive_bayes", {"alpha": 1.0}),
             ("fashion", 500, "latent_class", {"n_components": 8, "alpha": 0.1}),
             ("land", 500, "gmm", {"n_components": 20}), ("land", 500, "kde", {}),
             ("jars", 200, "pca", {"n_components": 8}), ("jars", 200, "factor_analysis", {"n_components": 8}),
             ("jars", 200, "latent_class", {"n_components": 24, "alpha": 0.01, "n_init": 2})]
    print(f"{'family':<16} {'data':<8} {'n':>6} {'fit s':>8} {'n x10':>6} {'fit s':>8} {'ratio':>6}")
    for data, n, name, params in cases:
        times = []
        for size in (n, 10 * n):
            p = problem(data, size, n_heldout=100, with_truth=False)
            _, fit_s = fit_model(name, params, p, seed=0)
            times.append(fit_s)
        print(f"{name:<16} {data:<8} {n:>6} {times[0]:>8.3f} {10 * n:>6} {times[1]:>8.3f} "
              f"{times[1] / times[0]:>6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the Chow-Liu figures")
    parser.add_argument("--only", nargs="*", choices=["chow_liu", "land", "jars", "timing"])
    args = parser.parse_args()
    sections = {"chow_liu": lambda: chow_liu_section(args.seeds), "land": land_section,
                "jars": jars_section, "timing": timing_section}
    for name, run in sections.items():
        if not args.only or name in args.only:
            run()


if __name__ == "__main__":
    main()

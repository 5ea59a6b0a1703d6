"""The deep families against issue 16's goals: the taxonomy run's wall time, each fit's
epochs, steps and samples per second, the scores, and each goal with its figure and PASS or MISS.

Two ways to run, two profiles:

    # the CPU profile as a user runs it: `pmodel run taxonomy` in a fresh process (a temporary
    # PMODEL_HOME, data built from the seed), figures read back from what MLflow recorded
    nice -n 10 .venv/bin/python benchmarks/deep.py
    nice -n 10 .venv/bin/python benchmarks/deep.py --again   # and a second run: are the numbers equal?

    # any profile straight through pmodel.evaluate.run_family, no Prefect, MLflow or Great
    # Expectations (a GPU machine that has torch but not the rest): one process per fit
    python benchmarks/deep.py --direct experiments/taxonomy-gpu.yaml --jobs 6 --json out.json

``--direct`` builds the experiment's built-in datasets in a temporary folder, fits every
(dataset, family) pair on the experiment's device (``--set device=...`` as the CLI), and
prints the same table and the goals of the profile (``--goals cpu|gpu``, by default from the
file's name).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PY = sys.executable
DEEP = ("autoregressive", "flow", "vae", "gan", "diffusion")
#: metrics compared between two runs of the CPU profile (what the leaderboard shows)
COMPARED = ("kl_to_truth", "kl_to_truth_bound", "heldout_loglik", "heldout_loglik_bound", "valid_rate",
            "near_render_rate", "near_render_rate_16", "on_land_rate", "novelty_rate", "train_epochs")


# ---------------------------------------------------------------------------
# The CPU profile through the CLI
# ---------------------------------------------------------------------------

def run_taxonomy(env: dict, experiment: str = "taxonomy") -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run([PY, "-m", "flows.cli", "run", experiment], cwd=REPO, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode not in (0, 1):
        raise SystemExit(f"pmodel run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return wall, out.stdout


def recorded_rows(home: Path, experiment: str = "taxonomy") -> list[dict]:
    """The last run's children as rows: tags (dataset, family, taxonomy, log_prob_kind, device)
    and metrics."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri="sqlite:///" + str(home / "mlruns" / "mlflow.db"))
    exp = client.get_experiment_by_name(experiment)
    parent = client.search_runs([exp.experiment_id], filter_string="tags.`pmodel.config` != ''",
                                order_by=["attributes.start_time DESC"], max_results=1)[0]
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return [{"dataset": r.data.tags["dataset"], "family": r.data.tags["family"],
             "taxonomy": r.data.tags.get("taxonomy", ""), "kind": r.data.tags.get("log_prob_kind", ""),
             "device": r.data.tags.get("device", ""), "n_drawn": float(r.data.params.get("n_samples", "nan")),
             "status": "ok" if r.info.status == "FINISHED" else r.info.status, **r.data.metrics}
            for r in children]


def cli_profile(again: bool) -> list[dict]:
    runs = []
    for i in range(2 if again else 1):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            home.mkdir()
            env = {**os.environ, "PMODEL_HOME": str(home), "PREFECT_HOME": str(Path(tmp) / "prefect"),
                   "PMODEL_CACHE_DIR": str(REPO / "data" / "cache")}
            env.pop("PREFECT_API_URL", None)
            wall, out = run_taxonomy(env)
            rows = recorded_rows(home)
        print(f"\nrun {i + 1}: pmodel run taxonomy took {wall:.0f} s ({wall / 60:.1f} min)")
        table(rows)
        if i == 0:
            lines = out.strip().splitlines()
            first = next((j for j, line in enumerate(lines) if "(best first" in line), max(len(lines) - 60, 0))
            print("\nthe run's leaderboard, as printed:\n" + "\n".join(lines[first:]))
        runs.append((wall, rows))
    wall, rows = runs[0]
    goals_cpu(rows, wall)
    if again:
        deep_same, close = compare(runs[0][1], runs[1][1])
        _goal(deep_same, "two runs: every deep family's numbers equal bit for bit ("
              + ", ".join(COMPARED[:4]) + ", ...)")
        _goal(close, "two runs: every family's numbers equal to 1e-9 relative (multithreaded BLAS may "
              "reorder the sums of PCA and factor analysis)")
        print(f"run 2 took {runs[1][0] / 60:.1f} min (run 1 {runs[0][0] / 60:.1f} min)")
    return rows


def compare(a: list[dict], b: list[dict]) -> tuple[bool, bool]:
    """(every compared metric of every deep family equal bit for bit, every metric of every
    family equal to 1e-9 relative); prints each difference."""
    key = lambda r: (r["dataset"], r["family"])
    bb = {key(r): r for r in b}
    deep_same = close = True
    for r in a:
        for m in COMPARED:
            x, y = r.get(m), bb.get(key(r), {}).get(m)
            if x == y or (x is not None and y is not None and x != x and y != y):
                continue
            print(f"  differs: {key(r)} {m}: {x!r} vs {y!r}")
            deep_same &= r["family"] not in DEEP
            close &= x is not None and y is not None and abs(x - y) <= 1e-9 * max(abs(x), abs(y))
    return deep_same, close


# ---------------------------------------------------------------------------
# Any profile through run_family (no Prefect, MLflow or Great Expectations)
# ---------------------------------------------------------------------------

def _fit_one(args) -> dict:
    name, dataset, spec_family, params, data_dir, n_samples, seed = args
    from pmodel.evaluate import run_family
    from pmodel.problems import load_builtin

    t = time.perf_counter()
    problem = load_builtin(name, Path(data_dir) / dataset)
    try:
        res = run_family(spec_family, params, problem, n_samples=n_samples, seed=seed)
    except Exception as exc:  # noqa: BLE001 - the table shows which fit failed and why
        return {"dataset": dataset, "family": spec_family, "status": f"failed: {exc}"[:200]}
    m = dict(res.metrics)
    model = res.model
    m["wall_seconds"] = time.perf_counter() - t
    if getattr(res.samples, "ndim", 0) == 3:      # images: the first 32 samples for --pictures
        m["_first_samples"] = res.samples[:32].astype("uint8")
    return {"n_drawn": float(n_samples), "dataset": dataset, "family": spec_family, "taxonomy": getattr(model, "taxonomy", ""),
            "kind": model.log_prob_kind, "device": getattr(model, "device_info_", {}).get("device", ""),
            "device_name": getattr(model, "device_info_", {}).get("device_name", ""), "status": "ok", **m}


#: the order fits start in with --direct: the slow deep fits first (so a deadline cuts the
#: cheap ones), pixels before land before jars
_FIRST = {"pixels": 0, "land": 1, "jars": 2}


def _order(item) -> tuple:
    name, dataset, family = item[0], item[1], item[2]
    return (family not in DEEP, _FIRST.get(name, 3), DEEP.index(family) if family in DEEP else 0)


def direct_profile(path: Path, overrides: list[str], jobs: int, only_deep: bool,
                   deadline: float | None = None, json_path: str | None = None,
                   pictures_dir: str | None = None) -> tuple[float, list[dict]]:
    """Every (dataset, family) pair of the experiment, ``jobs`` fits at a time, the slow deep
    fits first. Each row is written to ``json_path`` as it ends; at ``deadline`` seconds the
    fits still running are stopped and listed as such."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    from pmodel.config import load_experiment
    from pmodel.datasets.build import build_all

    config = load_experiment(path, overrides)
    tmp = Path(tempfile.mkdtemp(prefix="pmodel-direct-"))
    t0 = time.perf_counter()
    work = []
    for dataset, spec in config.runs():
        ds = config.datasets[dataset]
        if only_deep and spec.family not in DEEP:
            continue
        folder = tmp / dataset
        if not folder.exists():
            build_all(config.build_config(dataset), out_dir=folder, names=[ds.builtin], progress=False)
        work.append((ds.builtin, dataset, spec.family, config.params_for(spec, ds.kind), str(tmp),
                     config.n_samples_for(dataset), config.seed))
    work.sort(key=_order)
    print(f"{len(work)} fits of {path.name}, data built in {time.perf_counter() - t0:.0f} s; "
          f"{jobs} at a time", flush=True)
    rows, pictures = [], {}
    pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"))
    pending = {pool.submit(_fit_one, w): w for w in work}
    while pending:
        left = None if deadline is None else deadline - (time.perf_counter() - t0)
        done, _ = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
        if not done:
            break
        for fut in done:
            row = fut.result()
            pending.pop(fut)
            pictures.setdefault(row["dataset"], {})[row["family"]] = row.pop("_first_samples", None)
            rows.append(row)
            print(f"  done at {time.perf_counter() - t0:.0f} s: {row['dataset']} {row['family']} "
                  f"({row['status']}, {row.get('wall_seconds', 0):.0f} s)", flush=True)
            if json_path:
                Path(json_path).write_text(json.dumps(rows, indent=1, default=str))
    for w in pending.values():
        rows.append({"dataset": w[1], "family": w[2], "status": f"stopped at the {deadline:.0f} s deadline"})
    if pending:
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    if pictures_dir:
        write_pictures(pictures, Path(pictures_dir))
    return time.perf_counter() - t0, rows


def write_pictures(pictures: dict, out: Path) -> None:
    """One PNG per image dataset: a row of its first 32 samples per family, the family's
    name on the left."""
    import numpy as np
    from PIL import Image, ImageDraw

    out.mkdir(parents=True, exist_ok=True)
    for dataset, by_family in pictures.items():
        by_family = {f: x for f, x in sorted(by_family.items()) if x is not None}
        if not by_family:
            continue
        h, w = next(iter(by_family.values())).shape[1:]
        pad, label = 2, 110
        canvas = Image.new("L", (label + 32 * (w + pad), len(by_family) * (h + pad)), 255)
        draw = ImageDraw.Draw(canvas)
        for i, (family, x) in enumerate(by_family.items()):
            y0 = i * (h + pad)
            draw.text((4, y0 + h // 2 - 6), family, fill=0)
            for j, img in enumerate(np.asarray(x)[:32]):
                canvas.paste(Image.fromarray(img), (label + j * (w + pad), y0))
        canvas.save(out / f"samples-{dataset}.png")


# ---------------------------------------------------------------------------
# The table and the goals
# ---------------------------------------------------------------------------

def fmt(v, digits=3):
    return "-" if v is None else f"{v:.{digits}f}"


def table(rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: (r["dataset"], r.get("taxonomy", ""), r["family"]))
    head = (f"{'dataset':8} {'family':15} {'kind':11} {'device':7} {'fit s':>6} {'epochs':>6} {'steps':>6} "
            f"{'stop@s':>6} {'smp/s':>7} {'bits/dim':>8} {'KL':>9} {'land':>6} {'valid':>6} {'near8':>6} "
            f"{'near16':>6} {'med d':>6} {'val+nov':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        g = r.get
        bits = g("heldout_bits_per_dim", g("heldout_bits_per_dim_bound"))
        kl = g("kl_to_truth", g("kl_to_truth_bound"))
        kl_text = ("<=" if g("kl_to_truth") is None and kl is not None else "") + fmt(kl)
        per_s = g("n_drawn") / g("sample_seconds") if g("sample_seconds") else None
        print(f"{r['dataset']:8} {r['family']:15} {g('kind', ''):11} {g('device', '')[:7]:7} "
              f"{fmt(g('fit_seconds'), 1):>6} {fmt(g('train_epochs'), 0):>6} {fmt(g('train_steps'), 0):>6} "
              f"{fmt(g('stopped_by_seconds'), 0):>6} {fmt(per_s, 1):>7} {fmt(bits):>8} {kl_text:>9} "
              f"{fmt(g('on_land_rate')):>6} {fmt(g('valid_rate')):>6} {fmt(g('near_render_rate')):>6} "
              f"{fmt(g('near_render_rate_16')):>6} {fmt(g('median_render_distance'), 1):>6} "
              f"{fmt(g('valid_novel_rate')):>7}" + ("" if r["status"] == "ok" else f"  [{r['status']}]"))


def _bits(r: dict | None):
    r = r or {}
    return r.get("heldout_bits_per_dim", r.get("heldout_bits_per_dim_bound"))


def _best(by: dict, dataset: str, metric: str):
    found = [(f, by[(dataset, f)].get(metric)) for f in DEEP if (dataset, f) in by]
    found = [x for x in found if x[1] is not None]
    return max(found, key=lambda x: x[1], default=(None, None))


def goals_cpu(rows: list[dict], wall: float) -> None:
    by = {(r["dataset"], r["family"]): r for r in rows}
    print("\nGoals (issue 16, the CPU profile):")
    _goal(wall <= 15 * 60, f"the whole taxonomy run within 15 minutes: {wall / 60:.1f} min")
    capped = [f"{r['dataset']}/{r['family']}" for r in rows if r.get("stopped_by_seconds")]
    _goal(not capped, f"no fit stopped by seconds: {', '.join(capped) or 'none'}")
    ar = _bits(by.get(("pixels", "autoregressive")))
    _goal(ar is not None and ar <= 0.5, f"pixels: autoregressive at most 0.5 bits/dim: {fmt(ar)}")
    f, v = _best(by, "pixels", "near_render_rate_16")
    nb = by.get(("pixels", "naive_bayes"), {}).get("near_render_rate_16")
    _goal(v is not None and v >= 0.10 and nb == 0,
          f"pixels: the best deep family at least 0.10 near_render_rate_16: {f} {fmt(v)}; naive Bayes {fmt(nb)}")
    nb_bits = _bits(by.get(("pixels", "naive_bayes")))
    worse = [(f, _bits(by[("pixels", f)])) for f in DEEP if f != "gan" and ("pixels", f) in by]
    _goal(nb_bits is not None and all(b is not None and b < nb_bits for _, b in worse),
          f"pixels: every deep family below naive Bayes's {fmt(nb_bits)} bits/dim (a bound where it has one): "
          + ", ".join(f"{f} {fmt(b)}" for f, b in worse))
    f, v = _best(by, "jars", "near_render_rate")
    _goal(v is not None and v >= 0.5, f"jars: the best deep family at least 0.5 near_render_rate: {f} {fmt(v)}")
    fl = by.get(("land", "flow"), {})
    _goal((fl.get("kl_to_truth") or 9) < 0.2 and (fl.get("on_land_rate") or 0) > 0.9,
          f"land: flow KL below 0.2 with on-land above 0.9: KL {fmt(fl.get('kl_to_truth'))}, "
          f"on land {fmt(fl.get('on_land_rate'))}")


def goals_gpu(rows: list[dict], wall: float) -> None:
    by = {(r["dataset"], r["family"]): r for r in rows}
    print("\nGoals (issue 16, the GPU profile):")
    _goal(wall <= 10 * 60, f"the whole GPU profile within 10 minutes: {wall / 60:.1f} min")
    ar = by.get(("pixels", "autoregressive"), {})
    _goal((_bits(ar) or 9) <= 0.05 and (ar.get("valid_rate") or 0) >= 0.8 and (ar.get("valid_novel_rate") or 0) >= 0.2,
          f"pixels: PixelCNN at most 0.05 bits/dim, valid_rate >= 0.8, valid_novel_rate >= 0.2: "
          f"{fmt(_bits(ar))}, {fmt(ar.get('valid_rate'))}, {fmt(ar.get('valid_novel_rate'))}")
    d = by.get(("pixels", "diffusion"), {}).get("near_render_rate")
    _goal((d or 0) >= 0.9, f"pixels: diffusion near_render_rate at least 0.9: {fmt(d)}")
    g = by.get(("pixels", "gan"), {}).get("near_render_rate")
    _goal((g or 0) >= 0.6, f"pixels: GAN near_render_rate at least 0.6: {fmt(g)}")
    fl = by.get(("land", "flow"), {}).get("kl_to_truth")
    _goal((fl or 9) < 0.1, f"land: flow KL below 0.1: {fmt(fl)}")


def _goal(ok: bool, text: str) -> None:
    print(f"  {'PASS' if ok else 'MISS'}  {text}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--again", action="store_true", help="run the CPU profile twice and compare the numbers")
    ap.add_argument("--direct", metavar="EXPERIMENT_YAML", help="run this profile through run_family")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides (--direct)")
    ap.add_argument("--jobs", type=int, default=2, help="fits at a time (--direct)")
    ap.add_argument("--deep-only", action="store_true", help="only the deep families (--direct)")
    ap.add_argument("--goals", choices=("cpu", "gpu"), help="which goals (default: from the file name)")
    ap.add_argument("--json", metavar="PATH", help="write the rows as JSON, each as it ends (--direct)")
    ap.add_argument("--pictures", metavar="DIR", help="write samples-<dataset>.png of image fits (--direct)")
    ap.add_argument("--deadline", type=float, metavar="SECONDS",
                    help="stop the fits still running after this many seconds (--direct)")
    args = ap.parse_args()
    if not args.direct:
        cli_profile(args.again)
        return
    path = Path(args.direct)
    wall, rows = direct_profile(path, args.set, args.jobs, args.deep_only, args.deadline, args.json,
                                args.pictures)
    print(f"\n{path.name} through run_family: {wall:.0f} s ({wall / 60:.1f} min)")
    table(rows)
    (goals_gpu if (args.goals or ("gpu" if "gpu" in path.name else "cpu")) == "gpu" else
     lambda r, w: goals_cpu(r, w))(rows, wall)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()

"""Memory and wall time of `pmodel run` on big user files: land points and fashion rows.

Run:  .venv/bin/python benchmarks/scale.py [--sizes 2000000 10000000] [--kinds land fashion]

For each size it writes (once, kept under $PMODEL_SCALE_DIR, default
/tmp/pmodel-scale) a CSV of that many lon/lat points drawn uniformly on land
and a CSV of that many fashion rows drawn from P_data, then runs a fresh
`pmodel run` on an experiment with that one file as a user dataset (20% held
out, the chapter's five families, 5000 samples) in a fresh project folder and
Prefect home, under /usr/bin/time -v. It prints the wall time and the peak
resident memory of the `pmodel run` process (Prefect's temporary server is a
separate process and is not counted; it stays near 240 MB).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(os.environ.get("PMODEL_SCALE_REPO", Path(__file__).resolve().parents[1]))
PY = sys.executable
CHUNK = 1_000_000

FAMILIES = """\
families:
  - family: box
  - family: multinomial
    params: {alpha: 0.0}
    points: {cell_deg: 10.0}
  - family: multinomial
    params: {alpha: 1.0}
    points: {cell_deg: 10.0}
  - family: naive_bayes
    params: {alpha: 0.0}
    points: {bin_deg: 10.0}
  - family: naive_bayes
    params: {alpha: 1.0}
    points: {bin_deg: 10.0}
"""


def land_file(n: int, folder: Path) -> Path:
    from pmodel.datasets.land import LandData

    path = folder / f"land-{n}.csv"
    if not path.exists():
        truth, rng = LandData(), np.random.default_rng(0)
        tmp = path.with_suffix(".partial")
        with open(tmp, "w") as f:
            f.write("lon,lat\n")
            for s in range(0, n, CHUNK):
                X = truth.sample(min(CHUNK, n - s), rng=rng)
                np.savetxt(f, X, fmt="%.6f", delimiter=",")
        tmp.replace(path)
    return path


def fashion_file(n: int, folder: Path) -> Path:
    from pmodel.datasets import fashion

    path = folder / f"fashion-{n}.csv"
    if not path.exists():
        rng = np.random.default_rng(0)
        tmp = path.with_suffix(".partial")
        for s in range(0, n, CHUNK):
            df = fashion.sample(min(CHUNK, n - s), rng=rng)
            df.to_csv(tmp, index=False, header=(s == 0), mode="w" if s == 0 else "a",
                      lineterminator="\n")
        tmp.replace(path)
    return path


def run(kind: str, n: int, data: Path) -> dict:
    path = land_file(n, data) if kind == "land" else fashion_file(n, data)
    data_kind = "points" if kind == "land" else "categorical"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        exp = home / "scale.yaml"
        exp.write_text(f"name: scale-{kind}-{n}\nseed: 0\nn_samples: 5000\n"
                       f"datasets:\n  {kind}: {{kind: {data_kind}, train: {path}}}\n" + FAMILIES)
        env = {**os.environ, "PMODEL_HOME": str(home), "PREFECT_HOME": str(Path(tmp) / "prefect")}
        env.pop("PREFECT_API_URL", None)
        t = time.perf_counter()
        out = subprocess.run(["/usr/bin/time", "-v", PY, "-m", "flows.cli", "run", str(exp)],
                             cwd=REPO, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        peak_kb = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
        return {"kind": kind, "n": n, "exit": out.returncode, "wall": wall,
                "peak_gb": int(peak_kb.group(1)) / 2**20 if peak_kb else float("nan"),
                "file_mb": path.stat().st_size / 2**20,
                "tail": "" if out.returncode == 0 else (out.stdout[-2000:] + out.stderr[-3000:])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000_000, 10_000_000])
    parser.add_argument("--kinds", nargs="+", default=["land", "fashion"], choices=["land", "fashion"])
    args = parser.parse_args(argv)
    data = Path(os.environ.get("PMODEL_SCALE_DIR", "/tmp/pmodel-scale"))
    data.mkdir(parents=True, exist_ok=True)
    print(f"{'data':<8} {'rows':>11} {'file':>8} {'wall':>8} {'peak RSS':>9}  exit")
    for n in args.sizes:
        for kind in args.kinds:
            r = run(kind, n, data)
            print(f"{kind:<8} {n:>11,} {r['file_mb']:>6.0f}MB {r['wall']:>7.1f}s {r['peak_gb']:>7.2f}GB  "
                  f"{r['exit']}", flush=True)
            if r["tail"]:
                print(r["tail"])


if __name__ == "__main__":
    main()

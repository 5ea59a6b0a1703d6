"""The ``pmodel`` command line.

Exit codes: 0 success, 1 the data (or a run) failed, 2 a usage error.
Heavy imports (Great Expectations, Pillow, the land mask) happen inside the
subcommands, so ``pmodel --help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _cmd_data_build(args: argparse.Namespace) -> int:
    from pmodel.datasets.build import BuildConfig, build_all

    config = BuildConfig(seed=args.seed, n_train=args.n_train, n_heldout=args.n_heldout)
    out = Path(args.out) if args.out else None
    manifest_path = build_all(config, out_dir=out, progress=True, log=print)
    print(f"manifest: {manifest_path}")
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from tasks.validation import validate

    path = Path(args.path)
    if not path.exists():
        print(f"pmodel validate: {path} does not exist", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = validate(args.kind, path, missing=args.missing,
                          max_categories=args.max_categories)
    except ValueError as exc:  # an unusable KIND or schema file: a usage error
        print(f"pmodel validate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(report.summary())
    return EXIT_OK if report.success else EXIT_FAILED


def leaderboard(outcome: dict) -> str:
    """A short text table per dataset, best first: by KL to the truth where the
    truth is known, else by held-out log-likelihood (exact before a bound before
    none); each likelihood says whether it is exact, a bound or absent."""
    from pmodel.leaderboard import as_text

    if outcome.over_seeds:  # a run over several seeds: mean ± sd per (dataset, family)
        from pmodel.repeats import seeds_text

        return (f"\nmean ± sd over {len(outcome.seeds)} {seeds_text(outcome.seeds)} (each seed's data, "
                f"fit and samples its own; {len(outcome.results)} child runs, tagged with their seed)"
                + as_text(list(outcome.over_seeds)))
    return as_text(outcome.results)


def _cmd_run(args: argparse.Namespace) -> int:
    import time

    started = time.perf_counter()
    from flows.runtime import configure_runtime, reuse_local_server

    configure_runtime()
    if (reused := reuse_local_server()) is not None:  # before Prefect reads its settings
        print(f"pmodel run: using the Prefect server already running at {reused} "
              "(PMODEL_TEMPORARY_PREFECT=1 starts a temporary one instead)", file=sys.stderr)
    from pmodel.config import ConfigError, find_experiment, load_experiment

    from flows.runtime import experiments_dir

    if args.seeds:  # --seeds 0,1,2 is --set seeds=[0,1,2]
        args.set = [*(args.set or []), f"seeds=[{','.join(map(str, args.seeds))}]"]
    try:  # config errors are usage errors: report them before starting Prefect
        config = load_experiment(find_experiment(args.experiment, experiments_dir()), args.set or [])
    except ConfigError as exc:
        print(f"pmodel run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from flows.runtime import spawn_embedded_prefect, warm_up, write_problems

    if problems := write_problems(config, args.tracking_uri):  # read-only store or folders
        print("pmodel run: cannot write where the run must:\n"
              + "\n".join(f"  - {p}" for p in problems), file=sys.stderr)
        return EXIT_USAGE
    from flows.runners import RunnerError, check_dask_with_server, runner_session

    # an address alone means its Dask cluster; --runner threads with an address is refused
    runner = args.runner or ("dask" if args.dask_address else "threads")
    try:  # refuse what cannot work before starting anything
        note = check_dask_with_server(runner, args.dask_address)
    except RunnerError as exc:
        print(f"pmodel run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Prefect's temporary server starts now, while this process imports and validates
    server = spawn_embedded_prefect()
    if note:
        print(f"pmodel run: note: {note}", file=sys.stderr)
    warm_up({getattr(ds, "builtin", None) for ds in config.datasets.values()}, refresh=args.refresh)

    from prefect.settings import (PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
                                  temporary_settings)

    from flows.experiment import run_experiment
    from tasks import tracking

    # heartbeats detect crashed runs of deployments; an on-demand run in this
    # process has nobody watching them, and they cost a second a flow
    settings = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    if server is not None and PREFECT_API_URL.value():  # set in Prefect's profile: that one
        server.stop()
        server = None
    if server is not None:
        settings[PREFECT_API_URL] = os.environ["PREFECT_API_URL"] = server.wait_ready()
        print(f"pmodel run: Prefect's temporary server for this run is at {server.api_url} "
              "(`prefect server start` once, and runs reuse it)", file=sys.stderr)
    try:
        with temporary_settings(settings), runner_session(
                runner, args.dask_address,
                warn=lambda m: print(f"pmodel run: note: {m}", file=sys.stderr)) as runner:
            state = run_experiment.with_options(task_runner=runner)(
                args.experiment, overrides=args.set or [], tracking_uri=args.tracking_uri,
                refresh=args.refresh, system_metrics=args.system_metrics, return_state=True)
    except RunnerError as exc:
        print(f"pmodel run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # the server stops at exit, after Prefect's log and event workers have sent what they hold
    outcome = state.result(raise_on_failure=False)
    from pmodel.records import Outcome

    if not isinstance(outcome, Outcome):  # the flow itself crashed: the exception
        print(f"pmodel run: the experiment failed: {outcome}", file=sys.stderr)
        return EXIT_FAILED
    print(leaderboard(outcome))
    skipped = [r for r in outcome.results if r.skip]
    if skipped:  # neither a success nor a failure: said, and the exit code is not changed
        print(f"\n{len(skipped)} fit(s) skipped, the family cannot hold the data (not a failure):")
        for r in skipped:
            print(f"--- {r.dataset} / {r.label}: {r.skip}")
    timings = outcome.timings
    total = time.perf_counter() - started
    phases = ", ".join(f"{k} {v:.1f}" for k, v in timings.items())
    print(f"\ntime: {total:.1f} s in all; in the flow: {phases}; the rest "
          f"({total - sum(timings.values()):.1f} s) is starting Prefect, imports and shutdown")
    uri = outcome.tracking_uri
    print(f"\nMLflow: experiment {outcome.experiment!r}, parent run {outcome.parent_run_id}")
    print(f"  store: {uri}")
    print("  look:  pmodel ui   then open")
    print(f"    the runs:       "
          f"{tracking.experiment_url(uri, outcome.experiment_id, view=tracking.RUNS_VIEW)}")
    print(f"    this run:       "
          f"{tracking.run_url(uri, outcome.experiment_id, outcome.parent_run_id)}")
    if outcome.failures:
        print(f"\n{len(outcome.failures)} part(s) failed:", file=sys.stderr)
        for name, message in outcome.failures.items():
            print(f"--- {name}\n{message}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _cmd_sweep(args: argparse.Namespace) -> int:
    from flows.sweep import sweep_command

    return sweep_command(args)


def _cmd_ui(args: argparse.Namespace) -> int:
    import time

    started = time.perf_counter()
    from flows.runtime import configure_runtime

    configure_runtime()
    from flows import ui
    from tasks import tracking

    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    if tracking._is_server(uri):
        print(f"pmodel ui: {uri} is a tracking server: open it in a browser", file=sys.stderr)
        return EXIT_USAGE
    try:  # before preparing the store: a taken port is the commonest mistake
        ui.check_port_free(tracking.UI_HOST, args.port)
    except ui.PortTaken as exc:
        print(f"pmodel ui: {exc}", file=sys.stderr)
        return EXIT_FAILED
    tracking.prepare_store(uri)
    links = tracking.ui_links(uri, args.port)
    print(f"pmodel ui: starting the MLflow UI for {uri} ...", flush=True)

    def ready(seconds: float) -> None:
        print(f"MLflow UI ready on {tracking.ui_base_url(uri, args.port)} "
              f"({time.perf_counter() - started:.1f} s after `pmodel ui` started, "
              f"{seconds:.1f} s for the server); Ctrl-C stops it", flush=True)
        for name, url in links:
            print(f"  {name}: {url}", flush=True)

    return ui.serve(tracking.ui_command(uri, port=args.port), tracking.UI_HOST, args.port,
                    on_ready=ready, say=lambda m: print(m, file=sys.stderr, flush=True))


def _cmd_serve(args: argparse.Namespace) -> int:
    from flows.runtime import configure_runtime

    configure_runtime()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows import serve

    reachable, message = serve.check_server()
    updates = {}
    if not reachable:
        if not args.start_server:
            print(message, file=sys.stderr)
            return EXIT_FAILED
        api = serve.start_server(port=args.server_port)
        print(f"started a Prefect server: {api} (stop it with `prefect server stop`)")
        updates[PREFECT_API_URL] = api
    else:
        print(message)
    parameters = {"experiment": args.experiment} if args.experiment else {}
    if args.folder:
        parameters["folder"] = args.folder
    with temporary_settings(updates):
        try:
            serve.serve(only=args.only, interval_s=args.interval, parameters=parameters,
                        limit=args.limit)
        except ValueError as exc:
            print(f"pmodel serve: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            pass
    return EXIT_OK


def _cmd_data_add(args: argparse.Namespace) -> int:
    from flows.watch import add_data

    try:
        target = add_data(Path(args.path), args.folder)
    except FileNotFoundError as exc:
        print(f"pmodel data add: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"added {target}; the data-watch deployment picks it up at its next check")
    return EXIT_OK


def _cmd_sample(args: argparse.Namespace) -> int:
    """Samples from a recorded model (a run's, or a registered one's): PNGs, CSV rows or lon/lat
    points in --out."""
    import json

    import numpy as np

    from flows.runtime import configure_runtime

    configure_runtime()
    from tasks import tracking

    try:
        folder = tracking.download_model_folder(args.run, args.tracking_uri)
        from pmodel import load_model

        model = load_model(folder)
    except ValueError as exc:
        print(f"pmodel sample: {exc}", file=sys.stderr)
        return EXIT_FAILED
    samples = model.sample(args.n, rng=np.random.default_rng(args.seed))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if model.kind == "image":
        from pmodel.datasets import images

        names = images.write_png_folder(samples.astype(np.uint8), out)
        written = f"{len(names)} PNGs"
    elif model.kind == "points":
        from pmodel.datasets import land

        land.write_csv(samples, out / "samples.csv")
        written = "samples.csv (lon, lat)"
    else:
        import pandas as pd

        schema_file = folder / "schema.json"
        if schema_file.exists():
            from pmodel.datasets.schema import CategoricalSchema

            frame = CategoricalSchema.from_dict(json.loads(schema_file.read_text())).from_codes(samples)
        else:
            frame = pd.DataFrame(samples, columns=[f"column_{j}" for j in range(samples.shape[1])])
        frame.to_csv(out / "samples.csv", index=False, lineterminator="\n")
        written = "samples.csv"
    source = args.run if args.run.startswith("models:/") else f"run {args.run}"
    print(f"{model!r} from {source}: {args.n} samples (seed {args.seed}) -> {out}/ ({written})")
    return EXIT_OK


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _at_least_2(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be >= 2, got {value}")
    return value


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds >= 0 like 0,1,2, got {text!r}")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    from pmodel.datasets.build import BuildConfig
    from pmodel.datasets.schema import MAX_CATEGORIES, MISSING_LABEL, MISSING_POLICIES

    parser = argparse.ArgumentParser(
        prog="pmodel", description="Fit, sample and score generative models (Chapter 1 of "
        "Generative Deep Learning).")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="build the built-in datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    build = data_sub.add_parser(
        "build", help="write fashion, pixels and land (train + held-out) and a manifest")
    defaults = BuildConfig()
    build.add_argument("--out", help="output folder (default: the project's data/)")
    build.add_argument("--seed", type=_non_negative, default=defaults.seed,
                       help=f"random seed (default {defaults.seed})")
    build.add_argument("--n-train", type=_positive, default=defaults.n_train,
                       help=f"training rows/images/points per dataset (default {defaults.n_train}, "
                       "the chapter's)")
    build.add_argument("--n-heldout", type=_positive, default=defaults.n_heldout,
                       help=f"held-out rows/images/points per dataset (default {defaults.n_heldout})")
    build.set_defaults(func=_cmd_data_build)
    add = data_sub.add_parser(
        "add", help="copy a file or image folder into the watched data folder, atomically")
    add.add_argument("path", metavar="PATH")
    add.add_argument("--folder", default="data/incoming",
                     help="the watched folder (default data/incoming, in the project)")
    add.set_defaults(func=_cmd_data_add)

    run = sub.add_parser("run", help="run an experiment end to end (Prefect flow, MLflow records)",
                         description="EXPERIMENT is a name in experiments/ (e.g. chapter1) or the "
                         "path of an experiment YAML.")
    run.add_argument("experiment", metavar="EXPERIMENT")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a config value, e.g. --set seed=3 --set families.1.params.alpha=0.5")
    run.add_argument("--tracking-uri", default=None,
                     help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the project's "
                     "SQLite store)")
    run.add_argument("--refresh", action="store_true",
                     help="recompute every step instead of reusing cached results")
    run.add_argument("--seeds", type=_seed_list, default=None, metavar="S,S,...",
                     help="repeat the whole experiment (data, fits, samples) once per seed, e.g. 0,1,2; "
                     "the leaderboard shows each family's mean ± sd over the seeds")
    run.add_argument("--runner", choices=("threads", "dask"), default=None,
                     help="where the (dataset, family) tasks run: threads in this process "
                     "(default), or a Dask cluster")
    run.add_argument("--dask-address", default=None, metavar="tcp://HOST:PORT",
                     help="an existing Dask scheduler (with --runner dask; needs a Prefect server, "
                     "PREFECT_API_URL); without it --runner dask starts a local 2-worker cluster")
    run.add_argument("--system-metrics", action="store_true",
                     help="log MLflow's system metrics (CPU, memory, disk, network, GPU) on the parent "
                     "run while the flow runs")
    run.set_defaults(func=_cmd_run)

    swp = sub.add_parser("sweep", help="search a family's hyperparameters on a dataset (Optuna's TPE, "
                         "pruning deep fits on their validation loss)",
                         description="Trials of FAMILY on DATASET of EXPERIMENT, each a child run; the "
                         "study is kept in the project (sweeps/optuna.db), so the same command again "
                         "adds trials to it.")
    swp.add_argument("experiment", metavar="EXPERIMENT")
    swp.add_argument("--family", required=True)
    swp.add_argument("--dataset", required=True)
    swp.add_argument("--trials", type=_positive, required=True, help="trials to add to the study")
    swp.add_argument("--jobs", type=_positive, default=1, help="trials at once on the task runner (default 1)")
    swp.add_argument("--pruner", choices=("median", "halving", "none"), default="median")
    swp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    swp.add_argument("--tracking-uri", default=None)
    swp.add_argument("--runner", choices=("threads", "dask"), default=None)
    swp.add_argument("--dask-address", default=None, metavar="tcp://HOST:PORT")
    swp.set_defaults(func=_cmd_sweep)

    smp = sub.add_parser("sample", help="draw samples from the model a run recorded",
                         description="RUN is a child run id, runs:/ID/model, or a registered "
                         "model such as models:/EXPERIMENT-DATASET@champion (the best model of a "
                         "dataset): its model is loaded from MLflow and sampled; images become PNGs, "
                         "rows and points CSVs. The draws equal the model's pyfunc predict with "
                         "params {n, seed}.")
    smp.add_argument("run", metavar="RUN")
    smp.add_argument("-n", type=_positive, default=16, help="how many samples (default 16)")
    smp.add_argument("--out", required=True, help="output folder")
    smp.add_argument("--seed", type=_non_negative, default=0)
    smp.add_argument("--tracking-uri", default=None)
    smp.set_defaults(func=_cmd_sample)

    ui = sub.add_parser("ui", help="serve the MLflow UI on 127.0.0.1 for the project's store")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--tracking-uri", default=None)
    ui.set_defaults(func=_cmd_ui)

    srv = sub.add_parser(
        "serve", help="serve the deployments of prefect.yaml from this process (needs a Prefect server)",
        description="Serves chapter1-nightly, on-new-data and data-watch (or --only some) with their "
        "schedules, concurrency limits and triggers. Schedules fire only in a real Prefect server: set "
        "PREFECT_API_URL, or pass --start-server to start one on 127.0.0.1.")
    srv.add_argument("--start-server", action="store_true",
                     help="start a Prefect server on 127.0.0.1 when none is reachable")
    srv.add_argument("--server-port", type=int, default=4200)
    srv.add_argument("--only", nargs="+", metavar="NAME", help="serve only these deployments")
    srv.add_argument("--interval", type=float, default=None, metavar="SECONDS",
                     help="replace the schedules by this interval (to try it out)")
    srv.add_argument("--experiment", default=None,
                     help="the experiment the scheduled deployments run (default: prefect.yaml's)")
    srv.add_argument("--folder", default=None, help="the watched data folder (default data/incoming)")
    srv.add_argument("--limit", type=int, default=2, help="flow runs at once in this process")
    srv.set_defaults(func=_cmd_serve)

    val = sub.add_parser(
        "validate", help="validate a file or folder; exit 0 when valid, 1 when not",
        description="KIND is fashion, pixels, land, categorical (schema inferred from the "
        "data), images (a folder of same-sized grayscale PNGs of any size), or the path of a "
        "schema YAML for a categorical CSV. Prints each broken rule with its first offenders, "
        "the JSON report's path and the Great Expectations Data Docs page's (HTML).")
    val.add_argument("kind", metavar="KIND")
    val.add_argument("path", metavar="PATH")
    val.add_argument("--missing", choices=MISSING_POLICIES, default="error",
                     help="a categorical CSV: what an empty cell is (error: refused, the default; "
                     f"category: the category {MISSING_LABEL!r})")
    val.add_argument("--max-categories", type=_at_least_2, default=MAX_CATEGORIES, metavar="N",
                     help="a categorical CSV without a schema: the most distinct values a column may "
                     f"have (default {MAX_CATEGORIES}; more is likely an ID or free text)")
    val.set_defaults(func=_cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""watch_data: rerun the experiments whose data changed.

Checks a watched folder (by default ``data/incoming``); for every file (or
image folder) there that an experiment in experiments/ uses as a dataset:

- still being written (modified less than ``settle_seconds`` ago, or its size
  changed since the last check): wait, report it, trigger nothing;
- its digest equals the one logged by the last successful MLflow run that
  used it, or a run was already triggered for this digest: nothing to do;
- fails validation: report it (with the validation report), trigger nothing;
- otherwise: emit the event ``pmodel.data.changed`` and start a run of the
  ``run-experiment/on-new-data`` deployment for each experiment that uses it.

What was triggered is remembered in ``.cache/watch-state.json`` so a change is
acted on once, not at every check while the triggered run is still going.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from prefect import flow, get_run_logger

from pmodel import paths
from pmodel.config import ConfigError, UserDataset, load_experiment
from pmodel.datasets.digest import path_digest

ON_NEW_DATA = "run-experiment/on-new-data"
DEFAULT_FOLDER = "data/incoming"


def watched_folder(folder: str | Path = DEFAULT_FOLDER) -> Path:
    folder = Path(folder)
    return folder if folder.is_absolute() else paths.project_root() / folder


def experiments_using(folder: Path, experiments_dir: Path
                      ) -> dict[Path, list[tuple[Path, str, UserDataset]]]:
    """For every data file inside ``folder`` used by an experiment:
    [(experiment file, experiment name, the dataset's entry)]."""
    users: dict[Path, list[tuple[Path, str, UserDataset]]] = {}
    folder = folder.resolve()
    for path in sorted(experiments_dir.glob("*.yaml")):
        try:
            config = load_experiment(path)
        except ConfigError:
            continue  # a broken experiment file is reported when it is run
        for ds in config.datasets.values():
            if not isinstance(ds, UserDataset):
                continue
            for f in (ds.train, ds.heldout):
                if f is not None and Path(f).resolve().parent == folder:
                    users.setdefault(Path(f).resolve(), []).append((path, config.name, ds))
    return users


def _state_path() -> Path:
    return paths.project_root() / ".cache" / "watch-state.json"


def _load_state() -> dict:
    try:
        return json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return {}


def _save_state(state: dict) -> None:
    path = _state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(path)


def _size_and_mtime(path: Path) -> tuple[int, float]:
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        return sum(p.stat().st_size for p in files), max((p.stat().st_mtime for p in files), default=0.0)
    st = path.stat()
    return st.st_size, st.st_mtime


@flow(name="watch-data", flow_run_name="watch {folder}", log_prints=True)
def watch_data(folder: str = DEFAULT_FOLDER, settle_seconds: float = 5.0,
               tracking_uri: str | None = None) -> dict:
    """One check of the watched folder; returns what it found and did."""
    from flows.experiment import experiments_dir
    from tasks import tracking
    from tasks.steps import table_rules, validation_kind
    from tasks.validation import validate

    logger = get_run_logger()
    root = watched_folder(folder)
    root.mkdir(parents=True, exist_ok=True)
    uri = tracking.resolve_tracking_uri(tracking_uri)
    state = _load_state()
    seen = state.setdefault("seen", {})
    triggered_digests = state.setdefault("triggered", {})
    summary = {"triggered": [], "unchanged": [], "waiting": [], "invalid": [], "unused": []}
    users = experiments_using(root, experiments_dir())
    to_run: dict[str, Path] = {}
    changed: list[tuple[Path, str]] = []
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue  # partial copies of `pmodel data add`
        key = str(path.resolve())
        if path.resolve() not in users:
            summary["unused"].append(path.name)
            continue
        size_mtime = list(_size_and_mtime(path))
        previous = seen.get(key)
        seen[key] = size_mtime
        if time.time() - size_mtime[1] < settle_seconds or (previous and previous != size_mtime):
            summary["waiting"].append(path.name)
            logger.info(f"{path.name}: still being written; waiting")
            continue
        digest = path_digest(path)
        if triggered_digests.get(key) == digest:
            summary["unchanged"].append(path.name)
            continue
        stale = [exp for exp in users[path.resolve()]
                 if tracking.last_input_digest(uri, exp[1], path) != digest]
        if not stale:
            summary["unchanged"].append(path.name)
            continue
        ds = stale[0][2]  # the first experiment's rules: its schema, its missing policy
        rules = table_rules(ds.model_dump()) if ds.kind == "categorical" else {}
        schema = str(ds.schema_file) if ds.schema_file is not None else None
        report = validate(validation_kind(ds.kind, None, schema), path,
                          report_dir=paths.reports_dir() / "validation", **rules)
        if not report.success:
            summary["invalid"].append({"file": path.name, "report": str(report.report_path),
                                       "message": report.summary()})
            triggered_digests[key] = digest  # reported once; a fixed file has a new digest
            logger.error(f"{path.name} is not valid; no run started:\n{report.summary()}")
            continue
        changed.append((path, digest))
        for exp_file, _, _ in stale:
            to_run[str(exp_file)] = exp_file
    for path, digest in changed:
        _emit_changed(path, digest)
    for exp_file in to_run.values():
        _trigger(exp_file, logger)
        summary["triggered"].append(str(exp_file))
    for path, digest in changed:
        triggered_digests[str(path.resolve())] = digest
    _save_state(state)
    return summary


def _emit_changed(path: Path, digest: str) -> None:
    from prefect.events import emit_event

    emit_event(event="pmodel.data.changed",
               resource={"prefect.resource.id": f"pmodel.data.{path.name}",
                         "prefect.resource.name": path.name},
               payload={"path": str(path), "sha256": digest})


def _trigger(experiment_file: Path, logger) -> None:
    from prefect.deployments import run_deployment

    run = run_deployment(ON_NEW_DATA, parameters={"experiment": str(experiment_file)}, timeout=0,
                         as_subflow=False)  # its own run, not a part of this check
    logger.info(f"started {ON_NEW_DATA} for {experiment_file.name}: flow run {run.id}")


def add_data(source: Path, folder: str | Path = DEFAULT_FOLDER) -> Path:
    """Copy a file or image folder into the watched folder atomically: the
    watcher sees nothing, then the whole thing (never half a file)."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    root = watched_folder(folder)
    root.mkdir(parents=True, exist_ok=True)
    target = root / source.name
    partial = root / f".{source.name}.partial-{os.getpid()}"
    if source.is_dir():
        shutil.copytree(source, partial)
        if target.exists():
            old = root / f".{source.name}.old-{os.getpid()}"
            target.rename(old)
            partial.rename(target)
            shutil.rmtree(old)
        else:
            partial.rename(target)
    else:
        shutil.copy2(source, partial)
        os.utime(partial)  # a fresh mtime: the copy counts as new, settling starts now
        partial.replace(target)
    return target

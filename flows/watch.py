"""watch_data: rerun the experiments whose data changed.

Checks a watched folder (by default ``data/incoming``); for every file (or
image folder) there that an experiment in experiments/ uses as a dataset:

- still being written (modified less than ``settle_seconds`` ago, or its size
  changed since the last check): wait, report it, trigger nothing;
- its digest equals the one logged by the last successful MLflow run that
  used it, or a run was already triggered for this digest: nothing to do;
- fails validation: report it (with the validation report), trigger nothing;
- otherwise: emit the Prefect event ``pmodel.data.changed``, one per
  experiment that uses it (the experiment is the event's resource, the changed
  files its related resources).

The watcher starts no run itself: the ``run-experiment/on-new-data``
deployment carries a trigger on that event (declared in prefect.yaml), so
Prefect's server starts the rerun, with the experiment from the event, and
shows which event and automation started it.

Exactly one rerun per change: what was emitted is remembered in
``.cache/watch-state.json``, so a change is acted on once, not at every check
while the rerun is still going; and the event's id is a function of the change
(:func:`change_event_id`), so sending the same change again (a check that died
between emitting and saving its state) is dropped by the server as a duplicate
(its triggers remember the event ids of the last 30 minutes).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from prefect import flow, get_run_logger

from pmodel import paths
from pmodel.config import ConfigError, UserDataset, load_experiment
from pmodel.datasets.digest import path_digest

DEFAULT_FOLDER = "data/incoming"
#: The event the watcher emits; the trigger of on-new-data in prefect.yaml expects it.
DATA_CHANGED = "pmodel.data.changed"
#: Namespace of the events' ids (uuid5 of the change).
_EVENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://pmodel/events/" + DATA_CHANGED)


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
    # experiment file -> (its name, [(changed file, new digest, digest of its last run)])
    to_run: dict[Path, tuple[str, list[tuple[Path, str, str | None]]]] = {}
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
        last = {exp: tracking.last_input_digest(uri, name, path)
                for exp, name, _ in users[path.resolve()]}
        stale = [exp for exp in users[path.resolve()] if last[exp[0]] != digest]
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
        for exp_file, name, _ in stale:
            to_run.setdefault(exp_file, (name, []))[1].append((path, digest, last[exp_file]))
    unsent: set[Path] = set()
    for exp_file, (name, changes) in to_run.items():
        event = emit_changed(exp_file, name, changes)
        files = ", ".join(p.name for p, _, _ in changes)
        if event is None:  # no Prefect API to send it to: try again at the next check
            unsent.update(p for p, _, _ in changes)
            logger.error(f"{files} changed, but {DATA_CHANGED} for {name} could not be sent "
                         "(no Prefect API configured); no rerun started")
            continue
        summary["triggered"].append(str(exp_file))
        logger.info(f"{files} changed: emitted {DATA_CHANGED} for {name} (event {event.id}); "
                    "the trigger of run-experiment/on-new-data starts the rerun")
    for path, digest in changed:
        if path not in unsent:
            triggered_digests[str(path.resolve())] = digest
    _save_state(state)
    return summary


def change_event_id(experiment_file: Path, changes: list[tuple[Path, str, str | None]]) -> uuid.UUID:
    """The id of the event for one change of an experiment's data: the same change
    (same experiment, same files, same new digests, same digests of its last run)
    has the same id, and Prefect's server acts on an event id once."""
    key = "\n".join([str(Path(experiment_file).resolve())]
                    + sorted(f"{Path(p).resolve()}\t{new}\t{old}" for p, new, old in changes))
    return uuid.uuid5(_EVENT_NAMESPACE, key)


def emit_changed(experiment_file: Path, name: str, changes: list[tuple[Path, str, str | None]]):
    """Emit ``pmodel.data.changed`` for an experiment whose data changed; returns the event
    (None where no Prefect API is configured). The experiment is the resource (so an
    automation can match it), the changed files are related resources (role ``data``),
    and the payload holds what the trigger passes on: the experiment file."""
    from prefect.events import emit_event

    return emit_event(
        event=DATA_CHANGED,
        id=change_event_id(experiment_file, changes),
        resource={"prefect.resource.id": f"pmodel.experiment.{name}",
                  "prefect.resource.name": name},
        related=[{"prefect.resource.id": f"pmodel.data.{path.name}",
                  "prefect.resource.role": "data",
                  "prefect.resource.name": path.name} for path, _, _ in changes],
        payload={"experiment": str(experiment_file),
                 "files": [{"path": str(path), "sha256": digest, "previous_sha256": previous}
                           for path, digest, previous in changes]})


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

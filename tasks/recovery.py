"""Runs left RUNNING by a process that is gone are marked FAILED, with a note.

A `pmodel run` killed with SIGKILL (or by a power cut, or the OOM killer)
leaves its MLflow parent run, the child run it was logging, and its Prefect
flow run RUNNING forever. So every parent run records its owner, the tag
``pmodel.owner``::

    {"pid": 4242, "host": "lab-3", "start": "123456", "boot": "<boot id>", "flow_run": "<uuid>"}

(``start``: the process's start time in clock ticks since boot, from
/proc, so that a pid reused by another process is not taken for the owner;
``boot``: the kernel's boot id, so that a reboot is seen.) At the start of each
run, :func:`fail_dead_runs` finds the RUNNING runs of the store whose owner,
or whose parent's owner, was a process of this host that no longer exists,
and ends them FAILED with the note "marked failed: the process that ran it
(pid N on HOST) is gone" (tag ``pmodel.recovery`` and the run's
description); their Prefect flow run is set to CRASHED with the same note.

Left alone: runs of another host (their process cannot be checked from
here) and runs without an owner tag (made before pmodel recorded owners, or
by something else).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Callable

from tasks import tracking

OWNER_TAG = "pmodel.owner"
NOTE_TAG = "pmodel.recovery"
DESCRIPTION_TAG = "mlflow.note.content"
PARENT_TAG = "mlflow.parentRunId"


def process_start_time(pid: int) -> str | None:
    """Start time of a process in clock ticks since boot (/proc/PID/stat field 22);
    None when there is no such process (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 2, the name, may hold spaces


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def owner() -> dict:
    """This process, as recorded on the runs it starts."""
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "start": process_start_time(os.getpid()), "boot": _boot_id()}
    try:
        from prefect.runtime import flow_run

        me["flow_run"] = flow_run.id  # None outside a flow
    except Exception:
        me["flow_run"] = None
    return me


def owner_tags() -> dict[str, str]:
    """The tag to put on a parent run: ``{"pmodel.owner": <JSON of owner()>}``."""
    return {OWNER_TAG: json.dumps(owner(), sort_keys=True)}


def is_gone(recorded: dict) -> bool:
    """True when the recorded owner is certainly dead: a process of this host
    (same boot) whose pid is free or now names a process started at another
    time, or this host rebooted since. False when alive or on another host."""
    if recorded.get("host") != socket.gethostname() or not recorded.get("pid"):
        return False
    boot = _boot_id()
    if boot is not None and recorded.get("boot") not in (None, boot):
        return True  # rebooted since
    started = process_start_time(int(recorded["pid"]))
    return started is None or (recorded.get("start") is not None and started != recorded["start"])


def _owner_of(tags: dict[str, str]) -> dict | None:
    try:
        value = json.loads(tags[OWNER_TAG])
    except (KeyError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def fail_dead_runs(tracking_uri: str, *, log: Callable[[str], None] = print) -> list[str]:
    """End FAILED every RUNNING run of the store whose owning process is gone
    (children by their parent's owner); crash their Prefect flow runs.
    Returns the ids of the MLflow runs marked."""
    running = tracking.search_running_runs(tracking_uri)
    owners: dict[str, dict | None] = {}

    def owner_of(run: dict) -> dict | None:
        found = _owner_of(run["tags"])
        parent = run["tags"].get(PARENT_TAG)
        if found is None and parent:
            if parent not in owners:
                owners[parent] = _owner_of(tracking.run_tags(tracking_uri, parent))
            found = owners[parent]
        return found

    marked, flow_runs = [], {}
    for run in running:
        recorded = owner_of(run)
        if recorded is None or not is_gone(recorded):
            continue
        note = (f"marked failed: the process that ran it (pid {recorded['pid']} on "
                f"{recorded['host']}) is gone; found RUNNING by pid {os.getpid()}")
        before = run["tags"].get(DESCRIPTION_TAG, "")
        tracking.set_tags(tracking_uri, run["run_id"], {
            NOTE_TAG: note, DESCRIPTION_TAG: f"{before}\n\n{note}" if before else note})
        tracking.end_run(tracking_uri, run["run_id"], "FAILED")
        marked.append(run["run_id"])
        if PARENT_TAG not in run["tags"]:
            log(f"run {run['run_id']} ({run['tags'].get('mlflow.runName', '?')}) {note}")
        if recorded.get("flow_run"):
            flow_runs[recorded["flow_run"]] = note
    for flow_run_id, note in flow_runs.items():
        try:
            crash_flow_run(flow_run_id, note, log=log)
        except Exception as exc:  # the MLflow side is done; Prefect's is best effort
            log(f"could not set Prefect flow run {flow_run_id} to Crashed: {exc}")
    return marked


def crash_flow_run(flow_run_id: str, note: str, *, log: Callable[[str], None] = print) -> bool:
    """Set a Prefect flow run that is still RUNNING to CRASHED with ``note``
    (forced: its own process would have done it). False when not found or
    not running on the API in use."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            return False
        if flow_run.state is None or not flow_run.state.is_running():
            return False
        client.set_flow_run_state(flow_run_id, Crashed(message=note), force=True)
    log(f"Prefect flow run {flow_run.name} ({flow_run_id}) set to Crashed: {note}")
    return True

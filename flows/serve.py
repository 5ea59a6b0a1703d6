"""`pmodel serve`: the deployments of prefect.yaml, served from one process.

Prefect's scheduler runs only in a real server (the temporary embedded one
never fires schedules), so serving needs ``PREFECT_API_URL`` pointing at a
reachable server. :func:`check_server` says exactly how to get one, and
``pmodel serve --start-server`` starts it on 127.0.0.1.

Serving never pauses schedules on shutdown (a restart would leave them off),
limits how many runs execute at once, and keeps the concurrency limits of
prefect.yaml, so late runs of one deployment collapse into one. The triggers
of prefect.yaml (on-new-data's, on the event ``pmodel.data.changed``) are read
from there too, so one declaration serves ``prefect deploy`` and ``pmodel serve``;
the server makes each one an automation owned by its deployment.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pmodel import paths

SERVER_HELP = """No Prefect server is reachable{where}. Schedules and triggers only fire in a real server.
Start one on this machine and point pmodel at it:

    prefect server start --background
    prefect server status --wait
    export PREFECT_API_URL=http://127.0.0.1:4200/api

or let pmodel do it: pmodel serve --start-server"""


def prefect_yaml() -> Path:
    home = paths.project_root() / "prefect.yaml"
    return home if home.exists() else Path(__file__).resolve().parents[1] / "prefect.yaml"


def read_deployments(path: Path | None = None) -> list[dict]:
    """The deployment entries of prefect.yaml."""
    data = yaml.safe_load((path or prefect_yaml()).read_text())
    return list(data.get("deployments") or [])


def server_health(api_url: str, timeout: float = 3.0) -> bool:
    import httpx

    try:
        return httpx.get(api_url.rstrip("/") + "/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def check_server() -> tuple[bool, str]:
    """(reachable, message) for the configured PREFECT_API_URL."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return False, SERVER_HELP.format(where=" (PREFECT_API_URL is not set)")
    if not server_health(url):
        return False, SERVER_HELP.format(where=f" at {url}")
    return True, f"Prefect server at {url}"


def start_server(port: int = 4200, timeout_s: int = 120) -> str:
    """`prefect server start --background` on 127.0.0.1, then wait until it answers."""
    api = f"http://127.0.0.1:{port}/api"
    if server_health(api):
        return api
    prefect = [sys.executable, "-m", "prefect"]
    # the UI asks the API at PREFECT_UI_API_URL, which otherwise stays at port 4200 (or
    # PREFECT_API_URL) whatever --port says: its pages would show nothing on another port
    env = {**os.environ, "PREFECT_UI_API_URL": api}
    subprocess.run(prefect + ["server", "start", "--background", "--host", "127.0.0.1",
                              "--port", str(port)], check=True, env=env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server_health(api):
            return api
        time.sleep(1)
    raise RuntimeError(f"the Prefect server did not answer at {api} within {timeout_s} s; "
                       f"see `prefect server status`")


def _load_flow(entrypoint: str):
    file, name = entrypoint.split(":")
    path = Path(__file__).resolve().parents[1] / file
    module_name = f"flows.{Path(file).stem}" if Path(file).parent.name == "flows" else Path(file).stem
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return getattr(module, name)


def deployment_triggers(entry: dict) -> list:
    """The triggers of a prefect.yaml deployment entry, validated by Prefect's own schema
    (the one ``prefect deploy`` uses), each named as ``prefect deploy`` names it when the
    entry gives no name."""
    from pydantic import TypeAdapter

    from prefect.events import DeploymentTriggerTypes

    adapter = TypeAdapter(DeploymentTriggerTypes)
    return [adapter.validate_python({"name": f"{entry['name']}__automation_{i}", **spec})
            for i, spec in enumerate(entry.get("triggers") or [], start=1)]


def build_deployments(entries: list[dict], *, only: list[str] | None = None,
                      interval_s: float | None = None, parameters: dict | None = None):
    """RunnerDeployments for the entries (same names, parameters, schedules,
    concurrency limits and triggers as prefect.yaml). ``interval_s`` replaces the
    schedules of scheduled deployments (to try serving without waiting for the night);
    ``parameters`` override parameters where the flow takes them."""
    import inspect

    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    names = {e["name"] for e in entries}
    unknown = set(only or []) - names
    if unknown:
        raise ValueError(f"unknown deployment(s) {sorted(unknown)}; prefect.yaml has {sorted(names)}")
    deployments = []
    for entry in entries:
        if only and entry["name"] not in only:
            continue
        flow_obj = _load_flow(entry["entrypoint"])
        accepted = set(inspect.signature(flow_obj.fn).parameters)
        params = {**(entry.get("parameters") or {}),
                  **{k: v for k, v in (parameters or {}).items() if k in accepted}}
        schedules = entry.get("schedules") or []
        kwargs = {}
        if schedules and interval_s:
            kwargs["interval"] = interval_s
        elif schedules:
            kwargs["cron"] = [s["cron"] for s in schedules if "cron" in s] or None
            kwargs["interval"] = [s["interval"] for s in schedules if "interval" in s] or None
            kwargs = {k: v for k, v in kwargs.items() if v}
        limit = entry.get("concurrency_limit")
        if limit:
            kwargs["concurrency_limit"] = ConcurrencyLimitConfig(**limit)
        triggers = deployment_triggers(entry)
        if triggers:
            kwargs["triggers"] = triggers
        deployments.append(flow_obj.to_deployment(
            name=entry["name"], description=entry.get("description"), parameters=params, **kwargs))
    return deployments


def serve(*, only: list[str] | None = None, interval_s: float | None = None,
          parameters: dict | None = None, limit: int = 2) -> None:
    """Serve the deployments until interrupted; schedules are never paused on exit."""
    from prefect import serve as prefect_serve

    deployments = build_deployments(read_deployments(), only=only, interval_s=interval_s,
                                    parameters=parameters)
    prefect_serve(*deployments, pause_on_shutdown=False, limit=limit)

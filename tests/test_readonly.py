"""A read-only data folder or MLflow store: reported at once, with its path.

Tests run as root, for whom no permission bit stops a write; so the command
runs without root's power to override permission bits (``setpriv``), on
folders that no one may write (mode 555/444), which is what a user meets on a
read-only share.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "experiments" / "tiny.yaml"
NOBODY = 65534


def _as_other_user(argv: list[str]) -> list[str]:
    """Run so that permission bits bind, also when root (root ignores them): setpriv from
    util-linux drops root's power to override them (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH), keeping its uid, so the command still reads a checkout that only
    its owner may enter (a `mktemp -d` clone); else Python itself drops to nobody before
    exec (the checkout must then be readable by all)."""
    if os.geteuid() != 0:
        return argv  # an ordinary user: the permission bits bind already
    if shutil.which("setpriv") is not None:
        return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *argv]
    drop = (f"import os, sys; os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY}); "
            "os.execv(sys.argv[1], sys.argv[1:])")
    return [sys.executable, "-c", drop, *argv]


@pytest.fixture
def shared(renders):
    """A folder outside pytest's private tmp (which only root can enter), readable by all."""
    folder = Path(tempfile.mkdtemp(prefix="pmodel-readonly-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _env(home: Path, scratch: Path) -> dict:
    env = {**os.environ, "PMODEL_HOME": str(home), "PREFECT_HOME": str(scratch / "prefect"),
           "HOME": str(scratch), "MPLCONFIGDIR": str(scratch / "mpl")}
    env.pop("PREFECT_API_URL", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _project(shared: Path, *, built: bool) -> tuple[Path, Path]:
    """A project folder nobody can write (data built or not, an MLflow store) and
    a scratch folder anyone can."""
    from pmodel.datasets.build import BuildConfig, ensure_built

    home = shared / "home"
    (home / "mlruns").mkdir(parents=True)
    (home / "mlruns" / "mlflow.db").write_bytes(b"")
    if built:  # tiny.yaml's sizes
        ensure_built(BuildConfig(seed=1, n_train=20, n_heldout=100), ["fashion", "pixels", "land"], home / "data", progress=False)
    else:
        (home / "data").mkdir()
    for path in [home, *home.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)  # nobody may write, the owner neither
    scratch = shared / "scratch"
    scratch.mkdir(mode=0o777)
    scratch.chmod(0o777)
    return home, scratch


@pytest.mark.slow
def test_read_only_store_and_folders_are_reported_at_once(shared):
    home, scratch = _project(shared, built=True)
    result = subprocess.run(_as_other_user([sys.executable, "-m", "flows.cli", "run", str(TINY)]),
                            cwd=REPO, env=_env(home, scratch), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    err = result.stderr
    assert f"the MLflow store's database {home / 'mlruns' / 'mlflow.db'} is not writable" in err
    assert f"the MLflow store's folder {home / 'mlruns'} is not writable" in err
    assert f"the work folder (Prefect results, models, samples) {home / '.cache'}" in err
    assert "data folder" not in err  # the data is built: reading it is enough
    assert not (scratch / "prefect" / "prefect.db").exists()  # refused before Prefect's server started
    assert "Starting temporary server" not in result.stdout + err


@pytest.mark.slow
def test_a_read_only_data_folder_that_must_be_built_is_reported(shared):
    home, scratch = _project(shared, built=False)
    result = subprocess.run(_as_other_user([sys.executable, "-m", "flows.cli", "run", str(TINY)]),
                            cwd=REPO, env=_env(home, scratch), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2
    assert f"the data folder {home / 'data'} is not writable" in result.stderr
    assert "must be built there" in result.stderr


def test_built_data_in_a_read_only_folder_needs_no_write(shared):
    home, scratch = _project(shared, built=True)
    code = ("from pathlib import Path; from pmodel.datasets.build import BuildConfig, ensure_built; "
            f"print(ensure_built(BuildConfig(seed=1, n_train=20, n_heldout=100), ['fashion', 'pixels', 'land'], Path('{home / 'data'}')))")
    result = subprocess.run(_as_other_user([sys.executable, "-c", code]), cwd=REPO,
                            env=_env(home, scratch), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(home / "data" / "builds" / "seed1-train20-heldout100")

"""Fixed places in the project, independent of the caller's working directory.

The project root is ``$PMODEL_HOME`` when set, else the folder that holds the
``pmodel`` package (an editable install from a clone).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def project_root() -> Path:
    """The project folder: ``$PMODEL_HOME`` or the checkout pmodel runs from."""
    env = os.environ.get("PMODEL_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """Where built-in datasets are written and read (``<root>/data``)."""
    return project_root() / "data"


def cache_dir() -> Path:
    """Derived, reproducible caches (avatar renders, ...).

    ``$PMODEL_CACHE_DIR`` when set, else ``<root>/data/cache``.
    """
    env = os.environ.get("PMODEL_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return data_dir() / "cache"


def reports_dir() -> Path:
    """Validation reports and other run reports: ``<root>/reports``."""
    return project_root() / "reports"


def gx_dir() -> Path:
    """Great Expectations' file data context: suites, validation definitions,
    checkpoints, validation results and Data Docs (``<root>/gx``, git-ignored)."""
    return project_root() / "gx"


def atomic_write(path: Path, write) -> None:
    """Write a file through ``write(binary_file)`` under a unique temporary name beside
    ``path``, then rename it into place: readers never see half a file, and any number
    of writers of the same path, in any processes, never clash (the last rename wins)."""
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def unwritable(path: Path) -> Path | None:
    """What stops this process from writing ``path`` (a file or folder, existing
    or to be made): the path itself, or its nearest existing folder when it is
    to be created; None when writing would work. Checked with ``os.access``
    (so for this process's user; root passes, as it does in fact)."""
    path = Path(path)
    if path.exists():
        need = os.W_OK | (os.X_OK if path.is_dir() else 0)
        return None if os.access(path, need) else path
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return None if os.access(parent, os.W_OK | os.X_OK) else parent


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` between processes (no lock where there is no
    fcntl, as on Windows, where MLflow skips its own init lock too)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""Fixed places in the project, independent of the caller's working directory.

The project root is ``$PMODEL_HOME`` when set, else the folder that holds the
``pmodel`` package (an editable install from a clone).
"""

from __future__ import annotations

import os
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

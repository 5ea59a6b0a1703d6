"""Shared fixtures.

Every test runs with ``PMODEL_HOME`` in a temporary folder, so reports and
built data never land in the checkout, while the avatar render cache (slow to
make, reproducible) stays in the checkout's ``data/cache`` so that it is made
once per machine, not once per test run.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PMODEL_CACHE_DIR", os.environ.get("PMODEL_CACHE_DIR", str(REPO / "data" / "cache")))
        mp.setenv("PMODEL_HOME", str(tmp_path_factory.mktemp("pmodel-home")))
        # hermetic: `pmodel run` in tests never attaches to a Prefect server a developer runs
        mp.setenv("PMODEL_TEMPORARY_PREFECT", "1")
        yield


@pytest.fixture(scope="session")
def renders(_isolated_home) -> np.ndarray:
    """All 4032 avatar renders (rendered once per machine, then cached)."""
    from pmodel.datasets import pixels

    return pixels.load_renders(progress=False)


@pytest.fixture(scope="session")
def land_truth(_isolated_home):
    """Land P_data for the default region (loads the 0.9 GB mask once)."""
    from pmodel.datasets import land

    return land.LandData()


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory, _isolated_home):
    """Prefect's test harness (a temporary server and database), heartbeats off,
    results in a temporary folder; one for the whole session."""
    from prefect.settings import (PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
                                  PREFECT_RESULTS_LOCAL_STORAGE_PATH,
                                  PREFECT_SERVER_ANALYTICS_ENABLED, temporary_settings)
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    with prefect_test_harness(server_startup_timeout=120):
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
                                 PREFECT_RESULTS_LOCAL_STORAGE_PATH: storage,
                                 PREFECT_SERVER_ANALYTICS_ENABLED: False}):
            yield


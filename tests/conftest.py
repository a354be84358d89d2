"""Shared fixtures: where the real data sets live (never inside the repository, never downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``$ADVSEC_DATA`` if set, else ``<repo>/../shared/data`` if it exists; skip the test otherwise."""
    env = os.environ.get("ADVSEC_DATA")
    if env:
        return Path(env)
    shared = REPO.parent / "shared" / "data"
    if shared.is_dir():
        return shared
    pytest.skip(f"no data sets: ADVSEC_DATA is not set and {shared} does not exist")

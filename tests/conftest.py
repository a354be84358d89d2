"""Shared fixtures: where the real data sets live (never inside the repository, never downloaded), a skip
that fails under CI, and an environment every test leaves as it found it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    """Whether this is a CI run: ``CI=true``, as CI services and ``.ci/run`` set it."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def missing(reason: str) -> NoReturn:
    """Skip a test whose prerequisite this machine lacks, saying which; under CI fail it instead: CI installs
    everything and has the data sets, so a skip there would hide a test that never ran."""
    if in_ci():
        pytest.fail(f"{reason}; under CI=true this test must run, not skip", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``$ADVSEC_DATA`` if set, else ``<repo>/../shared/data``; a test needing it is skipped (failed under CI)
    where that folder does not exist."""
    env = os.environ.get("ADVSEC_DATA")
    folder = Path(env) if env else REPO.parent / "shared" / "data"
    if not folder.is_dir():
        source = f"ADVSEC_DATA={env}" if env else f"ADVSEC_DATA is not set and {folder}"
        missing(f"no data sets: {source} does not exist (set ADVSEC_DATA to the folder holding them)")
    return folder


# Float reductions may differ in their last bits between thread counts, and several tests compare runs made
# in different processes bit for bit: every test process uses one fixed count, every core (advsec.threads
# would otherwise share the cores with whatever else is running).
os.environ.setdefault("ADVSEC_THREADS", str(len(os.sched_getaffinity(0))))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests train into a cache of their own, never the user's ``~/.cache/advsec``."""
    os.environ["ADVSEC_CACHE"] = str(tmp_path_factory.mktemp("advsec-cache"))


def _read_by_advsec(name: str) -> bool:
    """The variables advsec and its tests read; libraries set their own on import (scikit-learn's ``KMP_*``),
    once a process, which is no test's doing."""
    return name.startswith("ADVSEC_") or name in ("CI", "OMP_NUM_THREADS")


@pytest.fixture(autouse=True)
def _environment_unchanged() -> Iterator[None]:
    """Each test leaves the variables advsec reads as it found them (``monkeypatch.setenv`` restores them):
    one left behind would change whichever tests run after it (``ADVSEC_DATA``: the data they read)."""
    before = {k: v for k, v in os.environ.items() if _read_by_advsec(k)}
    yield
    after = {k: v for k, v in os.environ.items() if _read_by_advsec(k)}
    if after != before:
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        for name in changed:  # the tests after it run as they would have
            if name in before:
                os.environ[name] = before[name]
            else:
                del os.environ[name]
        pytest.fail(f"the test left environment variables changed: {', '.join(changed)}", pytrace=False)


@pytest.fixture(scope="session")
def digits():
    from advsec.data.load import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def digits_models(digits):
    """The quickstart's two digits MLPs (standard and PGD-AT at eps 0.1), trained once per session."""
    import torch

    from advsec.progress import Progress
    from advsec.spec import load_spec
    from advsec.train import load_or_train

    spec = load_spec(REPO / "evaluations" / "quickstart.toml")
    models = {}
    for defense in spec.defenses:
        trained = load_or_train(
            digits,
            spec.model,
            defense.name,
            defense.params,
            defense.train,
            spec.seed,
            device=torch.device("cpu"),
            progress=Progress(quiet=True),
        )
        models[defense.label] = trained.model
    return models

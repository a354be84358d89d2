"""Changes meant to keep behaviour keep every per-sample row, bit for bit (see tests/golden.py): the
quickstart, a checkpoint brought by the user through `advsec evaluate`, and the escalation spec (reduced
here, whole under ``pytest -m slow``), against digests recorded on this kind of machine."""

from __future__ import annotations

import json

import pytest

from tests.golden import RECORDED, machine, run_cases


@pytest.fixture(scope="module")
def recorded() -> dict:
    found = json.loads(RECORDED.read_text())
    if found["machine"] != machine():
        pytest.skip(f"rows were recorded on {found['machine']}, this machine is {machine()}: kernels differ")
    return found["cases"]


@pytest.fixture(scope="module")
def digests(recorded, shared_data_dir, tmp_path_factory) -> dict:
    """The default suite's cases, run side by side once."""
    return run_cases(["quickstart", "checkpoint", "escalation"], tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("case", ["quickstart", "checkpoint", "escalation"])
def test_rows_are_the_recorded_ones(recorded, digests, case) -> None:
    for table, expected in recorded[case].items():
        assert digests[case][table] == expected, f"{case}: the {table} rows changed"


@pytest.mark.slow  # the whole escalation spec: several minutes
def test_the_whole_escalation_spec_keeps_its_rows(recorded, shared_data_dir, tmp_path) -> None:
    found = run_cases(["full_escalation"], tmp_path)["full_escalation"]
    for table, expected in recorded["full_escalation"].items():
        assert found[table] == expected, f"full_escalation: the {table} rows changed"

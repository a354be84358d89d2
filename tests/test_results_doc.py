"""docs/results.md is written by the benchmark scripts: each rewrites its own section and no other."""

import importlib.util
import re

import pytest

from tests.conftest import REPO

BENCHMARKS = REPO / "benchmarks"


@pytest.fixture(scope="module")
def common():
    """benchmarks/common.py, which the scripts import as a sibling module, not as part of a package."""
    spec = importlib.util.spec_from_file_location("benchmarks_common", BENCHMARKS / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _section(text, name):
    match = re.search(f"<!-- results: {name} -->\n(.*?)<!-- /results: {name} -->", text, re.S)
    assert match, f"no section {name}"
    return match.group(1)


def test_record_rewrites_only_its_own_section(common, tmp_path):
    path = tmp_path / "results.md"
    names = ["alpha", "beta", "gamma"]
    common.record("alpha", ["a table", "ratio 1.00"], path=path, sections=names, argv=["x.py", "--fast"])
    first = path.read_text()
    assert first.startswith(common.RESULTS_HEADER)
    assert "ratio 1.00" in _section(first, "alpha")
    assert "`python x.py --fast`" in _section(first, "alpha")
    for name in ("beta", "gamma"):
        assert f"Not run yet: run `python benchmarks/{name}.py`." in _section(first, name)

    common.record("beta", ["beta's table"], path=path, sections=names, argv=["y.py"])
    path.write_text(path.read_text().replace(common.RESULTS_HEADER, common.RESULTS_HEADER + "A note.\n"))
    common.record("alpha", ["ratio 2.00"], path=path, sections=names, argv=["x.py"])
    last = path.read_text()
    alpha = _section(last, "alpha")
    assert "ratio 2.00" in alpha and "ratio 1.00" not in alpha and "--fast" not in alpha
    assert "beta's table" in _section(last, "beta")
    assert "Not run yet" in _section(last, "gamma")
    assert "A note." in last  # text outside the markers is kept
    assert last.count("<!-- results: alpha -->") == 1


def test_record_keeps_another_section_byte_for_byte(common, tmp_path):
    path = tmp_path / "results.md"
    common.record("beta", ["beta's table"], path=path, sections=["alpha", "beta"], argv=["y.py"])
    before = _section(path.read_text(), "beta")
    common.record("alpha", ["again"], path=path, sections=["alpha", "beta"], argv=["x.py"])
    common.record("alpha", ["and again"], path=path, sections=["alpha", "beta"], argv=["x.py"])
    assert _section(path.read_text(), "beta") == before


def test_record_stamps_date_machine_and_command(common, tmp_path):
    path = tmp_path / "results.md"
    common.record(
        "alpha", ["x"], path=path, sections=["alpha"], argv=[str(BENCHMARKS / "alpha.py"), "--n", "3"]
    )
    alpha = _section(path.read_text(), "alpha")
    assert re.search(r"Measured \d{4}-\d\d-\d\d \d\d:\d\d UTC", alpha)
    assert "`python benchmarks/alpha.py --n 3`" in alpha  # relative to the repository, as typed from its root
    assert "cores" in alpha and "torch " in alpha and "torch threads " in alpha
    assert "```text\nx\n```" in alpha


def test_every_benchmark_records_its_section():
    """Each script hands what it prints to record() under its own name, and docs/results.md has a section
    (measured, or "not run yet") for each."""
    results = (REPO / "docs" / "results.md").read_text()
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if p.stem != "common")
    assert scripts
    for script in scripts:
        assert f'record("{script.stem}", ' in script.read_text(), f"{script.name} does not record its figures"
        section = _section(results, script.stem)
        assert "Not run yet" in section or "Measured " in section

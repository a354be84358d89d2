"""docs/results.md is written by the benchmark scripts: each rewrites its own section and no other."""

import ast
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


def _recorded(name: str) -> re.Pattern:
    """A section exactly as ``record`` writes it for ``benchmarks/<name>.py``: the stamp naming that script's
    command line, then one text block and nothing typed around it; or still "not run yet"."""
    stamp = (
        rf"Measured \d{{4}}-\d\d-\d\d \d\d:\d\d UTC with `python benchmarks/{name}\.py[^`\n]*`\non [^\n]*\.\n"
    )
    measured = stamp + r"\n```text\n(?:(?!```)[^\n]*\n)*```\n"
    unrun = rf"Not run yet: run `python benchmarks/{name}\.py`\.\n"
    return re.compile(rf"## {name}\n\n(?:{measured}|{unrun})")


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == name]


def _typed_figures(node: ast.AST) -> list[str]:
    """The string literals with a digit in ``node``, the computed fields of f-strings aside: figures typed."""
    computed = {id(n) for f in ast.walk(node) if isinstance(f, ast.FormattedValue) for n in ast.walk(f)}
    literals = [n for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return [n.value for n in literals if id(n) not in computed and re.search(r"\d", n.value)]


def test_every_benchmark_records_its_section(common, tmp_path):
    """Each script records what it printed, under its own name, and docs/results.md holds for each a section
    exactly as record() writes it (measured by that script, or "not run yet").

    What a test can check without running the scripts (hours): the script prints only through an Output
    and hands that Output's lines to record() (lines it computes may follow, as the reproductions' recipes
    do), never a typed string with a figure in it; the section is record()'s block, so nothing was typed
    around its text. An edit inside the text block would take rerunning the script to catch."""
    results = (REPO / "docs" / "results.md").read_text()
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if p.stem != "common")
    assert scripts
    for script in scripts:
        tree = ast.parse(script.read_text())
        assert not _calls(tree, "print"), f"{script.name} prints past its Output, so record() misses it"
        printed = {
            f"{ast.unparse(n.targets[0])}.lines"
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign) and ast.unparse(n.value) == "Output()"
        }
        assert _calls(tree, "record"), f"{script.name} does not record its figures"
        for call in _calls(tree, "record"):
            section, lines = call.args
            assert isinstance(section, ast.Constant) and section.value == script.stem, script.name
            recorded = {ast.unparse(n) for n in ast.walk(lines)}
            assert printed & recorded, f"{script.name} records what it did not print"
            assert not _typed_figures(lines), f"{script.name} records figures typed into it"
        assert _recorded(script.stem).fullmatch(_section(results, script.stem)), f"{script.stem}'s section"
    # The pattern is record()'s own shape, not a copy that could drift from it.
    path = tmp_path / "results.md"
    common.record(
        "alpha", ["a", "b 1.0"], path=path, sections=["alpha", "beta"], argv=["benchmarks/alpha.py"]
    )
    assert _recorded("alpha").fullmatch(_section(path.read_text(), "alpha"))
    assert _recorded("beta").fullmatch(_section(path.read_text(), "beta"))

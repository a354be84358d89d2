"""The code's shape: imports flow one way, and reading a finished run needs neither torch nor attacks."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "advsec"


def _module(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name.removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """advsec's modules and the advsec modules each imports anywhere in its body, functions included."""
    modules = {_module(path): path for path in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("advsec"):
                imported.add(node.module)
                imported |= {f"{node.module}.{alias.name}" for alias in node.names}  # submodules by name
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("advsec")}
        graph[name] = {target for n in imported if (target := resolve(n)) and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for successor in sorted(graph.get(node, ())):
            if cycle := visit(successor):
                return cycle
        path.pop()
        done.add(node)
        return None

    return next((cycle for node in sorted(graph) if (cycle := visit(node))), None)


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_advsec_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "advsec.runtime" in graph and "advsec.harness" in graph["advsec.runner"]  # the graph is real
    assert find_cycle(graph) is None


def test_the_protocols_use_the_runtime_not_each_others_internals() -> None:
    graph = import_graph()
    for protocol in ("advsec.certify", "advsec.replay", "advsec.unrestricted", "advsec.distributed"):
        assert "advsec.runtime" in graph[protocol] or protocol == "advsec.distributed"
    for protocol in ("advsec.certify", "advsec.replay", "advsec.unrestricted"):
        assert "advsec.harness" not in graph[protocol], protocol


READ_A_FINISHED_RUN = """
import sys
from pathlib import Path
from advsec.cli import _open_run, _print_results
from advsec.report import build_report
from advsec.compare import compare_runs
from advsec.results import RunResults
store = _open_run(sys.argv[1])
RunResults.read(store).to_json()
build_report(store, Path(sys.argv[2]))
compare_runs(store, store)
_print_results(store, as_json=False, extra={})
engine = ("torch.", "advsec.attack", "advsec.harness")
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(engine))
assert not loaded, loaded
"""


def test_reading_a_finished_run_loads_neither_torch_nor_the_attack_engine(tmp_path: Path) -> None:
    from tests.test_report import make_store

    make_store(tmp_path / "run.sqlite", "image", (1, 8, 8)).close()
    done = subprocess.run(
        [sys.executable, "-c", READ_A_FINISHED_RUN, str(tmp_path / "run.sqlite"), str(tmp_path / "report")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report" / "report.html").is_file()

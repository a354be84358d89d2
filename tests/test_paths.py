"""Nothing escapes its folder: a run's name is one plain folder name under reports/, labels never become
paths, and a damaged results store is named in one line by every command that reads it, and left as it was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from advsec.cli import main
from advsec.errors import SpecError
from advsec.report import build_report
from advsec.spec import load_spec, parse_spec, spec_from_dict
from tests.test_report import HOSTILE, make_hostile_store, make_store

GRID = (
    '[[defenses]]\nname = "standard"\n[[threats]]\nnorm = "linf"\neps = [0.1]\n[[attacks]]\nname = "fgsm"\n'
)
RAW = {
    "defenses": [{"name": "standard"}],
    "threats": [{"norm": "linf", "eps": [0.1]}],
    "attacks": [{"name": "fgsm"}],
}
RULE = (
    r"A run name becomes the folder reports/<name>/, so it must be a plain name: "
    r".*\. To write elsewhere, use --out$"
)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../../somewhere", "contains a path separator"),
        ("/abs/path", "contains a path separator"),
        ("a/b", "contains a path separator"),
        ("a\\\\b", "contains a path separator"),
        ("", "is empty or blank"),
        ("   ", "is empty or blank"),
        (".", "starts with '.'"),
        ("..", "starts with '.'"),
        (".hidden", "starts with '.'"),
        ("-rf", "starts with '-'"),
        ("a:b", "contains ':'"),
        ("a\\u0000b", "contains '\\x00'"),
        ("line\\nbreak", "contains '\\n'"),
        ("x ", "starts or ends with a space"),
        ("x" * 101, "is 101 bytes long, over 100"),
    ],
)
def test_a_name_that_is_not_a_plain_folder_name_is_refused(name, problem):
    toml = f'name = "{name}"\n{GRID}'
    with pytest.raises(SpecError, match=rf"^name: .* {re.escape(problem)}\. {RULE}") as caught:
        parse_spec(toml)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["my-eval", "demo run", "v1.2_final", "ε-sweep 8", "mnist.linf"])
def test_plain_names_are_kept_as_written(name):
    assert parse_spec(f'name = "{name}"\n{GRID}').name == name


@given(st.text(alphabet=st.sampled_from("./\\- _:~aZ9ε\x00\n") | st.characters(), max_size=12))
def test_every_accepted_name_is_one_folder_directly_under_reports(name):
    try:
        spec = spec_from_dict({"name": name, **RAW}, text="")
    except SpecError as error:
        assert str(error).startswith("name: ") and "--out" in str(error)
        return
    reports = Path("/srv/reports")
    assert Path(spec.name).name == spec.name and spec.name not in ("", ".", "..")
    assert (reports / spec.name).parent == reports and len(Path(spec.name).parts) == 1


def test_a_spec_file_whose_name_cannot_be_a_folder_says_to_set_name(tmp_path):
    path = tmp_path / ".hidden.toml"
    path.write_text(GRID)
    with pytest.raises(
        SpecError, match=r"^name \(none is set, so the spec file's name is used\): '\.hidden'"
    ):
        load_spec(path)
    path.write_text(f'name = "ok"\n{GRID}')
    assert load_spec(path).name == "ok"


def test_run_refuses_an_escaping_name_before_writing_anything(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "spec.toml").write_text(f'name = "../../escaped"\n{GRID}')
    result = CliRunner().invoke(main, ["run", "spec.toml"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith("advsec: error: name: '../../escaped' contains a path separator")
    assert result.stderr.count("\n") == 1
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "work",
        "work/spec.toml",
    ]


def test_labels_never_become_file_names(tmp_path, monkeypatch):
    """Labels holding markup and a path (``HOSTILE``) go into the report's text, not into its files' names."""
    store = make_hostile_store(tmp_path / "run" / "results.sqlite", monkeypatch)
    build_report(store, tmp_path / "run")
    made = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")}
    report = {"report.html", "report.md", "tradeoff.png", "robust_vs_eps.png", "examples.png"}
    report |= {"privacy_tradeoff.png"}  # its defenses have privacy figures
    sqlite = {"results.sqlite", "results.sqlite-wal", "results.sqlite-shm"}
    assert {f"run/{name}" for name in report} <= made <= {"run", *(f"run/{name}" for name in report | sqlite)}
    assert HOSTILE in (tmp_path / "run" / "report.md").read_text()  # it was there to be misused


# A damaged store: each way a file stops being a whole advsec store, and the reason SQLite gives for it.
DAMAGES = {
    "garbage": r"\(file is not a database\)",
    "truncated": r"\(database disk image is malformed\)",
    "page overwritten": r"\(damaged: .+\)",  # the file opens, its header and schema are whole
    "emptied": r"\(it holds no tables\)",
}


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> tuple[bytes, int, int]:
    """A finished run's store as bytes (closed: its WAL is in the file), its samples table's first page and
    the page size."""
    path = tmp_path_factory.mktemp("healthy") / "results.sqlite"
    store = make_store(path, "image", (1, 8, 8))
    page = store.db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'samples'").fetchone()[0]
    size = store.db.execute("PRAGMA page_size").fetchone()[0]
    store.close()
    return path.read_bytes(), page, size


def _damaged(tmp_path: Path, healthy: tuple[bytes, int, int], damage: str) -> Path:
    data, page, size = healthy
    start = (page - 1) * size
    damaged = {
        "garbage": b"not a results store " * 400,
        "truncated": data[: len(data) // 2],
        "page overwritten": data[:start] + b"\xff" * size + data[start + size :],
        "emptied": b"",
    }
    path = tmp_path / "damaged" / "results.sqlite"
    path.parent.mkdir()
    path.write_bytes(damaged[damage])
    return path


def _sidecars_change_nothing(path: Path) -> None:
    """No rollback journal beside the store, and any WAL SQLite left there is empty: nothing to replay."""
    assert not path.with_name(path.name + "-journal").exists()
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


@pytest.mark.parametrize("damage", list(DAMAGES))
@pytest.mark.parametrize(
    "command",
    [
        ["show", "{run}"],
        ["show", "{run}", "--json"],
        ["report", "{run}", "--out", "{out}"],
        ["compare", "{run}", "{good}", "--out", "{out}"],
        ["compare", "{good}", "{run}", "--out", "{out}"],
    ],
)
def test_a_damaged_store_is_named_in_one_line_and_left_as_it_was(tmp_path, healthy, damage, command):
    path = _damaged(tmp_path, healthy, damage)
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "results.sqlite").write_bytes(healthy[0])
    before = path.read_bytes()
    args = [arg.format(run=path.parent, good=tmp_path / "good", out=tmp_path / "out") for arg in command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    message = (
        rf"advsec: error: {re.escape(str(path))} is not a readable advsec results store {DAMAGES[damage]}\n"
    )
    assert re.fullmatch(message, result.stderr), result.stderr
    assert path.read_bytes() == before
    _sidecars_change_nothing(path)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["garbage", "page overwritten"])
def test_run_refuses_a_damaged_store_before_writing_to_it(tmp_path, healthy, damage):
    path = _damaged(tmp_path, healthy, damage)
    before = path.read_bytes()
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "r"\n{GRID}')
    result = CliRunner().invoke(main, ["run", str(spec), "--out", str(path.parent), "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith(f"advsec: error: cannot open the results store {path}: ")
    assert result.stderr.count("\n") == 1
    assert path.read_bytes() == before
    _sidecars_change_nothing(path)


def test_reading_a_healthy_store_writes_nothing_to_it(tmp_path, healthy):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.sqlite").write_bytes(healthy[0])
    for args in (
        ["show", run],
        ["report", run, "--out", tmp_path / "r"],
        ["compare", run, run, "--out", tmp_path / "c"],
    ):
        result = CliRunner().invoke(main, [str(arg) for arg in args])
        assert result.exit_code == 0, result.output
    assert (run / "results.sqlite").read_bytes() == healthy[0]
    _sidecars_change_nothing(run / "results.sqlite")

"""Nothing escapes its folder: a run's name is one plain folder name under reports/, labels never become
paths."""

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
from tests.test_report import HOSTILE, make_hostile_store

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
    sqlite = {"results.sqlite", "results.sqlite-wal", "results.sqlite-shm"}
    assert {f"run/{name}" for name in report} <= made <= {"run", *(f"run/{name}" for name in report | sqlite)}
    assert HOSTILE in (tmp_path / "run" / "report.md").read_text()  # it was there to be misused

"""The command line: one-line errors with exit 2, the quickstart end to end, show/report/train/attack."""

import base64
import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

import advsec
from advsec.cli import main
from tests.conftest import REPO


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and advsec.__version__ in result.output


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            '[[defenses]]\nname = "standart"\n',
            "defenses[0].name: unknown defense 'standart': did you mean 'standard'?",
        ),
        (
            '[[defenses]]\nname = "standard"\n[[threats]]\nnorm = "linf"\neps = [0.1]\n'
            '[[attacks]]\nname = "pgd"\nsteps = "ten"\n',
            "attacks[0].steps: expected int, got str 'ten'",
        ),
    ],
)
def test_spec_errors_are_one_line_with_exit_2(tmp_path, spec, message):
    path = tmp_path / "bad.toml"
    path.write_text(spec)
    result = subprocess.run(
        [sys.executable, "-m", "advsec.cli", "run", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"advsec: error: {message}"


def test_debug_shows_the_traceback(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[defenses]]\nname = "standart"\n')
    result = subprocess.run(
        [sys.executable, "-m", "advsec.cli", "--debug", "run", str(path)], capture_output=True, text=True
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_unknown_names_and_runs_are_usage_errors(tmp_path):
    result = invoke("attack", "--attack", "pgdd", "--eps", "0.1", "--out", tmp_path)
    assert result.exit_code == 2 and "did you mean 'pgd'" in result.output
    result = invoke("show", tmp_path / "nothing-here")
    assert result.exit_code == 2 and "no run found" in result.output
    result = invoke("train", "--model", "mpl")
    assert result.exit_code == 2 and "unknown model 'mpl': did you mean 'mlp'" in result.output


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    result = invoke("run", REPO / "evaluations" / "quickstart.toml", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.output)


def test_quickstart_writes_a_report_with_both_defenses_and_images(quickstart):
    out, payload = quickstart
    html = (out / "report.html").read_text()
    for defense in ("standard", "pgd-at"):
        assert defense in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 3
    assert all(base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n") for image in images)
    assert not re.search(r'(src|href)="https?://', html), "the report must work offline"
    for png in ("tradeoff.png", "robust_vs_eps.png", "examples.png"):
        assert (out / png).stat().st_size > 1000
    assert "standard" in (out / "report.md").read_text()
    assert payload["report"] == str(out / "report.html")


def test_quickstart_numbers_are_the_ones_the_paper_trail_predicts(quickstart):
    _, payload = quickstart
    defenses = {d["defense"]: d for d in payload["defenses"]}
    assert defenses["standard"]["clean_accuracy"] >= 0.95
    assert defenses["pgd-at"]["robust"]["linf:0.1"] > defenses["standard"]["robust"]["linf:0.1"]
    assert defenses["standard"]["robust"]["linf:0.3"] < 0.10


def test_show_and_report_read_the_store(quickstart, tmp_path):
    out, payload = quickstart
    shown = invoke("show", out, "--json")
    assert shown.exit_code == 0
    assert json.loads(shown.output)["defenses"] == payload["defenses"]
    table = invoke("show", out)
    assert "pgd-at" in table.output and "linf 0.1" in table.output
    rebuilt = invoke("report", out, "--out", tmp_path)
    assert rebuilt.exit_code == 0 and (tmp_path / "report.html").is_file()


def test_the_quickstart_describes_the_models_it_trained(quickstart):
    out, payload = quickstart
    described = {m["defense"]: m["description"] for m in payload["models"]}
    assert described["pgd-at"] | {"training": None} == {
        "source": "trained", "architecture": "mlp", "training": None,
        "defense": {"name": "pgd-at", "params": {"eps": 0.1, "steps": 7}},
    }  # fmt: skip
    training = described["pgd-at"]["training"]
    assert training["train"]["epochs"] == 30 and training["seed"] == 0
    assert all(d["train_seconds"] > 0 for d in payload["defenses"])  # trained here (or cached with its time)
    assert "model mlp (trained)" in (out / "report.md").read_text()


def test_train_and_attack_commands(tmp_path):
    trained = invoke("train", "--epochs", "5", "--json")
    assert trained.exit_code == 0, trained.output
    facts = json.loads(trained.output)
    assert facts["clean_accuracy"] > 0.8 and facts["checkpoint"].endswith(".safetensors")
    assert json.loads(invoke("train", "--epochs", "5", "--json").output)["cached"] is True
    attacked = invoke(
        "attack",
        "--epochs",
        "5",
        "--attack",
        "pgd",
        "-a",
        "steps=10",
        "--eps",
        "0.3",
        "--out",
        tmp_path,
        "--json",
        "--quiet",
    )
    assert attacked.exit_code == 0, attacked.output
    cell = next(c for c in json.loads(attacked.output)["cells"] if c["norm"] == "linf")
    assert cell["robust_accuracy"] < 0.1 and cell["attacks"][0]["backwards"] > 0


def test_list_shows_capabilities():
    result = invoke("list", "attacks", "--json")
    rows = {r["name"]: r for r in json.loads(result.output)["attacks"]}
    assert rows["pgd"]["targeted"] is True and rows["pgd"]["kind"] == "gradient"
    assert "standard" in invoke("list", "defenses").output

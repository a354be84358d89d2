"""The README's plugin example is real: it runs through --plugin and through an installed entry point."""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_registry import fake_distribution

SPEC = """
name = "plugin-check"
[train]
epochs = 10
[[defenses]]
name = "standard"
[[threats]]
norm = "linf"
eps = [0.1]
[[attacks]]
name = "rand-fgsm"
alpha = 0.3
[[attacks]]
name = "fgsm"
[evaluation]
cascade = false
"""


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The plugin file exactly as the README prints it."""
    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- plugin-example: (\S+) -->\n```python\n(.*?)```", readme, re.S)
    assert match, "the README lost its plugin example"
    folder = tmp_path_factory.mktemp("example")
    path = folder / match.group(1)
    path.write_text(match.group(2))
    return path


def _run(args, env=None):
    result = subprocess.run(
        [sys.executable, "-m", "advsec.cli", *args],
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _check(payload):
    cell = next(c for c in payload["cells"] if c["norm"] == "linf")
    rand_fgsm, fgsm = cell["attacks"]
    assert rand_fgsm["attack"] == "rand-fgsm" and rand_fgsm["backwards"] == rand_fgsm["attacked"]
    # A real attack: it breaks samples, and with part of its budget spent at random it is weaker than FGSM.
    assert rand_fgsm["robust_alone"] < cell["clean_accuracy"] - 0.05
    assert rand_fgsm["robust_alone"] > fgsm["robust_alone"]


def test_example_runs_as_a_plugin_file(example, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    out = _run(
        ["run", str(spec), "--plugin", str(example), "--out", str(tmp_path / "out"), "--json", "--no-report"]
    )
    _check(json.loads(out))
    listing = json.loads(_run(["list", "attacks", "--plugin", str(example), "--json"]))
    row = next(r for r in listing["attacks"] if r["name"] == "rand-fgsm")
    assert row["norms"] == ["linf"] and row["status"] == "ok"


def test_example_runs_as_an_installed_entry_point(example, tmp_path):
    site = tmp_path / "site"
    entry_points = "[advsec.attacks]\nrand-fgsm = rand_fgsm:RandFGSM\n"
    fake_distribution(site, "rand-fgsm-plugin", entry_points, {"rand_fgsm": example.read_text()})
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = _run(["run", str(spec), "--out", str(tmp_path / "out"), "--json", "--no-report"], env=env)
    _check(json.loads(out))


def test_example_refuses_a_norm_it_does_not_declare(example, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace('norm = "linf"', 'norm = "l2"'))
    result = subprocess.run(
        [sys.executable, "-m", "advsec.cli", "run", str(spec), "--plugin", str(example)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "attacks[0]: attack 'rand-fgsm' supports norms linf, but threats[0].norm is 'l2'" in result.stderr
    assert "Traceback" not in result.stderr

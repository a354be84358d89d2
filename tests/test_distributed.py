"""The Ray executor: one task per cell, and the same results table as the local executor."""

import os

import pytest
from click.testing import CliRunner

from advsec.cli import main
from tests.rows import stored_results

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'advsec[ray]')")

SPEC = """
name = "ray"
[train]
epochs = 10
[[defenses]]
name = "standard"
[[defenses]]
name = "weight-noise"
sigma = 0.2
[[threats]]
norm = "linf"
eps = [0.05, 0.1]
[[attacks]]
name = "fgsm"
[[attacks]]
name = "pgd"
steps = 10
[evaluation]
samples = 150
"""


@pytest.mark.slow  # starts a Ray cluster
def test_ray_gives_the_local_executors_table_cell_for_cell(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    runs = {}
    for executor in ("local", "ray"):
        out = tmp_path / executor
        result = CliRunner().invoke(
            main, ["run", str(spec), "--out", str(out), "--executor", executor, "--quiet"]
        )
        assert result.exit_code == 0, result.output
        runs[executor] = stored_results(out)
    assert len(runs["local"]) > 1000 and runs["ray"] == runs["local"]
    assert not ray.is_initialized()  # the local cluster it started is shut down again
    assert "ADVSEC_CACHE" in os.environ  # the workers were pointed at the same model cache


def test_an_address_without_the_ray_executor_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["run", "missing.toml", "--address", "auto"])
    assert result.exit_code == 2

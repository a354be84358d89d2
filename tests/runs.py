"""A small spec run through the CLI as a user runs it, and what it printed with --json."""

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from advsec.cli import main


def small_spec(*, epochs: int, seed: int = 0, samples: int = 100, tables: str = "") -> str:
    """A digits MLP under standard training, attacked by FGSM at linf 0.1, on ``samples`` test images; then
    ``tables`` (e.g. a ``[privacy]`` table). A seed no other test uses keeps its models out of their cache."""
    return f"""
seed = {seed}
[train]
epochs = {epochs}
[[defenses]]
name = "standard"
[[threats]]
norm = "linf"
eps = [0.1]
[[attacks]]
name = "fgsm"
[evaluation]
samples = {samples}
{tables}"""


def run_json(folder: Path, spec: str, out: str = "run", *options: str) -> dict[str, Any]:
    """Write ``spec`` into ``folder``, ``advsec run`` it into ``folder / out`` with ``--json`` (and
    ``options``) and return what it printed; a failed run fails the test with the run's output."""
    path = folder / "spec.toml"
    path.write_text(spec)
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(folder / out), "--json", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)

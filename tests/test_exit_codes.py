"""The README's exit-code table, on the README's own route (``advsec evaluate`` of a brought checkpoint):
2 for every error the user can fix, data included; 1 for a failure no input explains, such as an attack
that leaves its budget."""

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from advsec.cli import main
from tests.brought import evaluate_args, train_checkpoint

OVERSHOOT = '''
from dataclasses import dataclass

from advsec import Attack


@dataclass
class Overshoot(Attack):
    """Steps twice its budget: a bug in the attack, which the harness must stop on."""

    norms = ("linf",)

    def perturb(self, model, x, y, threat, *, target=None, generator=None):
        return (x + 2 * threat.eps).clamp(*threat.bounds)
'''


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("exit-codes")
    train_checkpoint(folder)
    data = dict(np.load(folder / "test.npz"))
    data["x"][3, 0, 2, 2] = np.nan
    np.savez(folder / "nan.npz", **data)
    (folder / "overshoot.py").write_text(OVERSHOOT)
    return folder


@pytest.mark.parametrize(
    ("data", "attack", "code", "message"),
    [
        ("missing.npz", "fgsm", 2, r"{folder}/missing\.npz: no such file"),
        ("nan.npz", "fgsm", 2, r"{folder}/nan\.npz: x holds NaN or Inf \(samples \[3\]\)"),
        ("test.npz", "overshoot", 1, r"attack 'overshoot' left its threat model on \d+ samples .*"),
    ],
    ids=["missing data", "data with NaN", "an attack leaving its budget"],
)  # fmt: skip
def test_the_command_line_exits_as_the_readme_table_says(folder, tmp_path, data, attack, code, message):
    args = evaluate_args(folder, folder / data, "0.1", tmp_path / "out", attack)
    result = CliRunner().invoke(main, [*args, "--plugin", str(folder / "overshoot.py")])
    assert result.exit_code == code, result.output
    expected = message.format(folder=re.escape(str(folder)))
    assert re.fullmatch(rf"advsec: error: {expected}\n", result.stderr), result.stderr

"""No silent wrong numbers on the user's model: each route the README prints (the notebook call, the
command, a spec) refuses a model that cannot be the one its owner meant, or says loudly what it assumed.

A plain PyTorch script trains an MLP on *normalized* digits, as users' pipelines do; every trap below is
one a user fell into with a model like it: no normalization, the architecture's initial weights, a budget
in pixel levels, an image folder numbered in another order, the first N samples of a file sorted by class.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import advsec
from advsec.admission import CHECKPOINT_CAUSES, TRAINING_CAUSES, CleanAccuracyError
from advsec.cli import main
from advsec.data.subset import draw_seed, stratified
from advsec.errors import SpecError
from tests.brought import MEAN, STD, trained_net

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class Folder:
    """The user's files: the architecture, its trained weights, the test split as .npz and as images."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.net, x, y = trained_net(root)
        # The digits it never saw, sorted by class as many saved test files are: the first are all zeros.
        order = torch.argsort(y[1500:], stable=True)
        self.x, self.y = x[1500:][order], y[1500:][order]
        np.savez(root / "test.npz", x=self.x.numpy(), y=self.y.numpy())
        for i, (image, label) in enumerate(zip(self.x, self.y, strict=True)):
            folder = root / "images" / NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (image[0] * 255).round().to(torch.uint8).numpy()
            Image.fromarray(pixels, mode="L").save(folder / f"{i:04d}.png")

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            return (self.net((x - MEAN) / STD).argmax(1) == y).float().mean().item()

    def command(self, *options: str, data: str = "test.npz") -> list[str]:
        """The README's command, on these files, with ``options``."""
        return ["evaluate", "--model", f"{self.root / 'nets.py'}:Net", "--data", str(self.root / data),
                "--eps", "8/255", "--attacks", "fgsm", *options]  # fmt: skip

    def weights(self) -> list[str]:
        return ["--weights", str(self.root / "net.safetensors")]

    def normalized(self) -> list[str]:
        return [*self.weights(), "--mean", str(MEAN), "--std", str(STD)]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    return Folder(tmp_path_factory.mktemp("user"))


def invoke(args: list[str], out: Path) -> tuple[int, str, str]:
    """The command as a user types it, into ``out``: its exit code, standard output and standard error."""
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    return result.exit_code, result.stdout, result.stderr


def json_warnings(stdout: str) -> list[str]:
    """Every warning ``--json`` printed: about the data, and about each model."""
    printed = json.loads(stdout)
    return [*printed["data"]["warnings"], *(w for model in printed["models"] for w in model["warnings"])]


def test_the_readme_command_with_its_normalization_matches_the_scripts_accuracy(files, tmp_path) -> None:
    code, stdout, stderr = invoke(
        [*files.command(*files.normalized(), "--samples", "100"), "--json"], tmp_path
    )
    assert code == 0, stderr
    [clean, _] = json.loads(stdout)["cells"]
    scored = stratified(files.y, 100, draw_seed("test", 0))
    assert clean["clean_accuracy"] == pytest.approx(files.accuracy(files.x[scored], files.y[scored]))
    assert "warning" not in stderr


def test_a_model_evaluated_without_normalization_says_so(files, tmp_path) -> None:
    code, stdout, stderr = invoke([*files.command(*files.weights()), "--json"], tmp_path / "bare")
    assert code == 0, stderr
    assert "no input normalization declared" in stderr  # said on stderr even when stdout is JSON
    assert [w for w in json_warnings(stdout) if "no input normalization declared" in w]
    assert "no input normalization declared" in (tmp_path / "bare" / "report.html").read_text()
    code, _, stderr = invoke(files.command(*files.weights()), tmp_path / "terminal")
    assert code == 0 and stderr.count("no input normalization declared") == 1
    assert (
        "no input normalization declared" in CliRunner().invoke(main, ["show", str(tmp_path / "bare")]).stdout
    )
    code, stdout, stderr = invoke([*files.command(*files.weights(), "--mean", "0", "--std", "1"), "--json"],
                                  tmp_path / "declared")  # fmt: skip
    assert code == 0 and "normalization" not in stderr  # declaring the identity silences it
    assert json_warnings(stdout) == []


def test_mean_without_std_is_refused(files, tmp_path) -> None:
    code, _, stderr = invoke(files.command(*files.weights(), "--mean", str(MEAN)), tmp_path)
    assert code == 2 and "--mean without --std" in stderr


def test_the_notebook_call_warns_without_normalization_and_matches_with_it(files, tmp_path, capsys) -> None:
    x, y = files.x, files.y
    plain = advsec.evaluate(files.net, x, y, eps=8 / 255, attacks="fgsm", out=tmp_path / "plain",
                            clean_check=False)  # fmt: skip
    assert "no input normalization declared" in capsys.readouterr().err
    assert plain.clean_accuracy != pytest.approx(files.accuracy(x, y))  # not the model its owner measured
    result = advsec.evaluate(files.net, x, y, eps=8 / 255, attacks="fgsm", mean=[MEAN], std=[STD],
                             out=tmp_path / "normalized")  # fmt: skip
    assert "warning" not in capsys.readouterr().err
    assert result.clean_accuracy == pytest.approx(files.accuracy(x, y))


def test_a_model_at_chance_stops_before_any_attack_naming_the_causes_in_order(files, tmp_path) -> None:
    code, stdout, stderr = invoke([*files.command("--weights", "initial"), "--json"], tmp_path / "initial")
    assert code == 2 and stdout == ""
    line = stderr.strip().splitlines()[-1]
    assert "not above chance for 10 classes" in line or "below chance" in line
    causes = [line.index(cause) for cause in ("normalized", "classes numbered", "channels", "untrained")]
    assert causes == sorted(causes)
    assert "--no-clean-check" in line
    assert not (tmp_path / "initial" / "report.html").exists()
    code, stdout, stderr = invoke([*files.command("--weights", "initial", "--no-clean-check"), "--json"],
                                  tmp_path / "anyway")  # fmt: skip
    assert code == 0, stderr
    assert json.loads(stdout)["cells"][0]["clean_accuracy"] < 0.3  # evaluated as asked


def test_the_notebook_call_refuses_a_model_at_chance(files) -> None:
    torch.manual_seed(1)
    untrained = type(files.net)()
    with pytest.raises(CleanAccuracyError, match=r"clean_check=False") as caught:
        advsec.evaluate(untrained, files.x, files.y, eps=8 / 255, attacks="fgsm", mean=[MEAN], std=[STD])
    assert CHECKPOINT_CAUSES in str(caught.value)
    result = advsec.evaluate(untrained, files.x, files.y, eps=8 / 255, attacks="fgsm", mean=[MEAN],
                             std=[STD], clean_check=False)  # fmt: skip
    assert result.clean_accuracy < 0.3


def test_a_stated_accuracy_the_run_does_not_reach_stops_it_in_all_three_routes(files, tmp_path) -> None:
    truth = files.accuracy(files.x, files.y)
    code, _, stderr = invoke(files.command(*files.normalized(), "--expect-clean", "0.999"), tmp_path / "a")
    assert code == 2 and "stated accuracy is 99.9 %" in stderr
    code, _, stderr = invoke(
        files.command(*files.normalized(), "--expect-clean", f"{truth:.3f}"), tmp_path / "b"
    )
    assert code == 0, stderr
    with pytest.raises(CleanAccuracyError, match="stated accuracy"):
        advsec.evaluate(files.net, files.x, files.y, eps=8 / 255, attacks="fgsm", mean=[MEAN], std=[STD],
                        expect_clean=0.999)  # fmt: skip
    kept = (tmp_path / "b" / "spec.toml").read_text()
    (tmp_path / "stated.toml").write_text(re.sub(r"expect_clean = [0-9.]+", "expect_clean = 0.5", kept))
    code, _, stderr = invoke(["run", str(tmp_path / "stated.toml")], tmp_path / "c")
    assert code == 2 and "stated accuracy is 50.0 %" in stderr
    code, _, stderr = invoke(["run", str(tmp_path / "stated.toml"), "--no-clean-check"], tmp_path / "d")
    assert code == 0, stderr


def test_an_architecture_without_weights_is_refused_unless_initial_weights_are_asked_for(files, tmp_path):
    code, _, stderr = invoke(files.command("--mean", str(MEAN), "--std", str(STD)), tmp_path)
    assert code == 2 and "without weights" in stderr and "--weights initial" in stderr


def test_a_budget_as_large_as_the_data_range_is_refused_with_a_hint(files, tmp_path) -> None:
    args = files.command(*files.normalized())
    pixels = [*args[: args.index("--eps")], "--eps", "8", *args[args.index("--eps") + 2 :]]
    code, _, stderr = invoke(pixels, tmp_path / "linf")
    assert code == 2 and "as large as the data's range" in stderr and "did you mean 8/255" in stderr
    with pytest.raises(SpecError, match="did you mean 8/255"):
        advsec.evaluate(files.net, files.x, files.y, eps=8, attacks="fgsm", mean=[MEAN], std=[STD])
    # ℓ2: the diameter of 8x8 inputs in [0, 1] is 8; budgets of 1 or more are normal there, and get no hint.
    with pytest.raises(SpecError, match="diameter") as caught:
        advsec.evaluate(files.net, files.x, files.y, eps=8, norm="l2", attacks="fgsm", mean=[MEAN], std=[STD])
    assert "did you mean" not in str(caught.value)
    result = advsec.evaluate(files.net, files.x, files.y, eps=1.5, norm="l2", attacks="pgd", mean=[MEAN],
                             std=[STD], out=tmp_path / "l2")  # fmt: skip
    assert 0 <= result.robust_accuracy[1.5] < result.clean_accuracy


def test_an_image_folder_in_another_class_order_is_named_and_given_its_order(files, tmp_path) -> None:
    def images(*options: str) -> list[str]:
        return [*files.command(*files.normalized(), "--grayscale", *options, "--json", data="images")]

    code, stdout, stderr = invoke(images("--no-clean-check"), tmp_path / "sorted")
    assert code == 0, stderr
    # Sorted, the folder names number the digits otherwise: eight is 0, five 1, ... six alone keeps its index.
    assert "classes numbered by their folders' names, sorted (0 eight, 1 five, 2 four" in stderr
    assert json.loads(stdout)["cells"][0]["clean_accuracy"] < 0.3
    assert [w for w in json_warnings(stdout) if "classes numbered by their folders' names" in w]
    assert (
        "classes numbered by their folders&#x27; names" in (tmp_path / "sorted" / "report.html").read_text()
    )
    assert json.loads(stdout)["data"]["classes"] == sorted(NAMES)
    code, stdout, stderr = invoke(images("--classes", ",".join(NAMES)), tmp_path / "given")
    assert code == 0, stderr
    assert "warning" not in stderr and json_warnings(stdout) == []
    assert json.loads(stdout)["data"]["class_order"] == "given by classes"
    assert "class order: given by classes" in (tmp_path / "given" / "report.html").read_text()
    assert stored_meta(tmp_path / "given", "classes") == list(NAMES)
    pixels = (files.x * 255).round() / 255  # what the PNGs hold
    assert json.loads(stdout)["cells"][0]["clean_accuracy"] == pytest.approx(files.accuracy(pixels, files.y))
    (tmp_path / "classes.txt").write_text("\n".join(NAMES[::-1]))  # a file reads like the list
    code, _, stderr = invoke(images("--classes", str(tmp_path / "classes.txt"), "--no-clean-check"),
                             tmp_path / "file")  # fmt: skip
    assert code == 0, stderr
    assert stored_meta(tmp_path / "file", "classes") == list(NAMES[::-1])


def stored_meta(out: Path, key: str) -> object:
    db = sqlite3.connect(out / "results.sqlite")
    value = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
    db.close()
    return json.loads(value)


def test_a_class_order_that_misses_a_folder_is_refused(files, tmp_path) -> None:
    args = files.command(*files.normalized(), "--grayscale", "--classes", ",".join(NAMES[:9]), data="images")
    code, _, stderr = invoke(args, tmp_path)
    assert code == 2 and "leaves out: nine" in stderr


def test_an_image_folder_needs_grayscale_for_a_one_channel_model(files, tmp_path) -> None:
    code, _, stderr = invoke(files.command(*files.normalized(), data="images"), tmp_path)
    assert code == 2 and "cannot take inputs shaped (3, 8, 8)" in stderr


def test_samples_are_drawn_from_every_class_not_the_first_in_the_file(files, tmp_path) -> None:
    code, stdout, stderr = invoke(
        [*files.command(*files.normalized(), "--samples", "50"), "--json"], tmp_path
    )
    assert code == 0, stderr
    evaluated = json.loads(stdout)["data"]["evaluated"]
    assert evaluated == stored_meta(tmp_path, "evaluated")
    page = (tmp_path / "report.html").read_text()
    assert f"50 of {len(files.y)} test samples, stratified by class, seed 0" in page
    db = sqlite3.connect(tmp_path / "results.sqlite")
    labels = [label for (label,) in db.execute("SELECT DISTINCT label FROM samples")]
    assert evaluated["rule"] == "stratified by class, seed 0" and evaluated["of"] == len(files.y)
    assert sorted(labels) == list(range(10))  # the file's first 50 are zeros and ones only
    assert set(evaluated["per_class"].values()) <= {4, 5, 6} and sum(evaluated["per_class"].values()) == 50
    first_cell = db.execute("SELECT cell FROM samples LIMIT 1").fetchone()[0]
    stored = [label for (label,) in db.execute("SELECT label FROM samples WHERE cell = ? ORDER BY idx",
                                               (first_cell,))]  # fmt: skip
    assert stored == files.y[torch.tensor(evaluated["indices"])].tolist()  # the indices are the ones scored


def test_a_collapsed_training_is_caught_like_a_wrong_checkpoint(tmp_path) -> None:
    spec = tmp_path / "collapsed.toml"
    spec.write_text(
        'name = "collapsed"\nseed = 3\n[train]\nepochs = 2\nlr = 50.0\n[[defenses]]\nname = "standard"\n'
        '[[threats]]\nnorm = "linf"\neps = [0.1]\n[[attacks]]\nname = "fgsm"\n[evaluation]\nsamples = 200\n'
    )
    code, _, stderr = invoke(["run", str(spec)], tmp_path / "a")
    assert code == 2 and "defense 'standard''s model" in stderr and TRAINING_CAUSES in stderr
    code, _, stderr = invoke(["run", str(spec), "--no-clean-check"], tmp_path / "b")
    assert code == 0, stderr

"""Where a run is, told where stderr is no terminal, and how long it will take, in seconds, up front."""

import json
import math
import re
import time

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import advsec
import advsec.forecast as forecast
from advsec.cli import main
from advsec.forecast import PassTimes, time_passes
from advsec.progress import LINE_EVERY, Pace, Progress

SPEC = """
name = "progress"
dataset = "digits"
model = "mlp"
seed = {seed}
[train]
epochs = 30
batch_size = 64
lr = 1e-3
[[defenses]]
name = "standard"
[[threats]]
norm = "linf"
eps = [0.05, 0.1]
[[attacks]]
name = "fgsm"
[[attacks]]
name = "pgd"
steps = 10
[evaluation]
samples = 100
"""
PREFIX = r"\[\d+:\d\d elapsed, ~[^\]]+ left\] "


def _spec(tmp_path, seed=0):
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(seed=seed))
    return str(path)


def test_without_a_terminal_a_run_logs_each_cell_and_stage_with_elapsed_and_left_and_quiet_logs_none(
    tmp_path,
):
    spec = _spec(tmp_path)
    result = CliRunner().invoke(main, ["run", spec, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert any(
        re.match(r"progress: estimated time: ~.+, from passes timed on this machine$", ln) for ln in lines
    )

    def logged(pattern):
        return [line for line in lines if re.fullmatch(PREFIX + pattern, line)]

    assert len(logged(r"standard clean: clean predictions on 100 samples")) == 1
    assert len(logged(r"standard clean: done in [\d.]+ s, \d+ of 100 correct, 1 of 3 cells")) == 1
    for index, eps in enumerate(["0.05", "0.1"], 2):
        title = f"standard linf ε={eps}"
        assert len(logged(f"{title}: 2 attack stages on 100 samples")) == 1
        assert len(logged(rf"{title}: fgsm done \(\d+ of 100 robust\), 1 of 2 stages")) == 1
        assert len(logged(rf"{title}: pgd done \(\d+ of 100 robust\), 2 of 2 stages")) == 1
        assert len(logged(rf"{title}: done in [\d.]+ s, \d+ of 100 robust, {index} of 3 cells")) == 1
    # Calm: a line as each cell starts and finishes and one per stage (and per follow-up attack), no more.
    follow_ups = len(logged(r".*, a follow-up \(.*\)"))
    assert len(logged(".*")) == 2 + 2 * 4 + follow_ups

    quiet = CliRunner().invoke(main, ["run", spec, "--out", str(tmp_path / "quiet"), "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert "elapsed" not in quiet.stderr and "estimated" not in quiet.stderr and quiet.stdout == ""


def test_json_stays_pure_and_its_estimate_has_seconds_beside_the_passes(tmp_path):
    result = CliRunner().invoke(main, ["run", _spec(tmp_path), "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    assert "elapsed" not in result.stderr
    cost = json.loads(result.stdout)["estimated_cost"]
    assert cost["attacks"] > 0 and cost["checks"] > 0  # the passes, as before
    seconds = cost["seconds"]
    assert (
        seconds["total"] > 0 and seconds["attacks"] > 0 and seconds["attacks_at_most"] >= seconds["attacks"]
    )
    parts = ("training", "shadows", "attacks", "certify", "replay", "checks")
    assert seconds["total"] == pytest.approx(sum(seconds[part] for part in parts))
    timed = cost["pass_seconds"]["standard"]
    assert timed["forward"] > 0 and timed["gradient"] > 0


def test_the_seconds_are_the_passes_priced_at_their_timed_cost_and_a_training_at_its_timed_steps(
    tmp_path, monkeypatch, digits
):
    # The timer injected: every sample's forward or query takes 1e-4 s, its gradient pass 2e-4 s (a forward
    # and a backward), so the attacks and checks cost exactly 1e-4 s a sample pass; a training step 0.5 s.
    monkeypatch.setattr(forecast, "time_passes", lambda network, x, frozen: PassTimes(1e-4, 2e-4, 1e-4))
    monkeypatch.setattr(forecast, "timed", lambda run, device: 0.5)
    spec = _spec(tmp_path, seed=733)  # a model no other test trains: this run trains it
    result = CliRunner().invoke(main, ["run", spec, "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    cost = json.loads(result.stdout)["estimated_cost"]
    seconds = cost["seconds"]
    assert seconds["training"] == pytest.approx(0.5 * 30 * math.ceil(len(digits.x_train) / 64))
    # Nothing to pilot before the model is trained: the attacks are priced at the bound.
    assert cost["pilot"]["cells"] == 0
    assert seconds["attacks"] == seconds["attacks_at_most"] == pytest.approx(1e-4 * cost["attacks"])
    assert seconds["checks"] == pytest.approx(1e-4 * cost["checks"])


class Sleepy(nn.Module):
    """A model whose every forward call takes at least ``delay`` seconds more than its network's."""

    def __init__(self, network: nn.Module, delay: float) -> None:
        super().__init__()
        self.network, self.delay = network, delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return self.network(x)


def test_a_slower_model_times_proportionally_slower_passes(digits_models, digits):
    network = digits_models["standard"]
    x = digits.x_test[:100]
    fast, slow = time_passes(Sleepy(network, 0.01), x), time_passes(Sleepy(network, 0.04), x)
    # A sleep never ends early: each pass of a batch takes its delay at least, per sample delay / batch.
    assert fast.forward >= 0.01 / len(x) and slow.gradient >= 0.04 / len(x)
    # Four times the delay, about four times the time: the network's own sub-millisecond passes and a
    # loaded machine's late wake-ups stay far inside these margins.
    assert 2 < slow.forward / fast.forward < 5 and 2 < slow.gradient / fast.gradient < 5


def test_a_model_that_breaks_at_once_is_forecast_from_its_pilot_far_below_the_bound(digits_models, digits):
    network = digits_models["standard"]
    x, y = digits.x_test[:128], digits.y_test[:128]
    found = advsec.evaluate(network, x, y, eps=0.5, attacks="worst-case", progress=True)
    cost = found.results.meta["estimated_cost"]
    seconds = cost["seconds"]
    assert cost["pilot"] == {"samples": 8, "cells": 1, "attacked_cells": 1}
    spent = sum(c.forwards + c.backwards for c in found.results.cells)
    assert found.robust_accuracy[0.5] < 0.05 and spent < cost["attacks"] / 10  # the bound overstates tenfold,
    assert seconds["attacks"] < seconds["attacks_at_most"] / 10  # the forecast does not
    unseen = advsec.evaluate(network, x, y, eps=0.5, attacks="worst-case").results.meta["estimated_cost"]
    assert unseen["pilot"]["cells"] == 0  # nobody reads a quiet run's forecast as it goes: no pilot to pay
    assert unseen["seconds"]["attacks"] == unseen["seconds"]["attacks_at_most"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_what_is_left_follows_how_long_the_finished_pieces_took():
    clock = Clock()
    pace = Pace([("train/a", "training", 10.0), ("cell/0", "attacks", 10.0), ("cell/1", "attacks", 10.0),
                 ("cell", "attacks", 0.0)], clock())  # fmt: skip
    assert pace.left(clock()) == pytest.approx(30.0)  # before anything ran: the forecast
    clock.now = 5.0
    assert pace.left(clock()) == pytest.approx(25.0)  # time spent on the first piece comes off it
    clock.now = 20.0
    pace.finish("train/a", clock())  # training took twice its forecast; the attacks are still trusted
    assert pace.left(clock()) == pytest.approx(20.0)
    clock.now = 50.0
    pace.finish("cell/0", clock())  # the first stage took three times its forecast
    # (30 s measured + 1 s of forecast weight) / (10 s forecast + 1 s): the next stage is priced so
    assert pace.left(clock()) == pytest.approx(10.0 * 31 / 11)
    clock.now = 60.0
    pace.finish("cell", clock())  # a cell's end finishes whatever of it is left
    assert pace.left(clock()) == 0.0


def test_a_long_task_logs_a_line_a_minute_at_most_without_a_terminal(capsys):
    clock = Clock()
    with Progress(clock=clock) as progress, progress.task("train standard", total=100, unit="steps") as task:
        for _ in range(100):
            clock.now += 1.0
            task.advance()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 100 // int(LINE_EVERY)
    assert lines[0] == "[1:00 elapsed, ~40 s left] train standard: 60 of 100 steps"

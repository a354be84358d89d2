"""Bad input gets a clear error before any compute: broken datasets, models that do not fit, fuzzed CLIs."""

import contextlib
import dataclasses
import tempfile

import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from advsec import registry
from advsec.cli import main
from advsec.data.load import check_dataset
from advsec.errors import InputError
from advsec.registry import Entry
from advsec.train import build_model


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: {"x_train": d.x_train.clone().index_fill_(0, torch.tensor([3]), float("nan"))},
         r"'digits' train inputs contain NaN or Inf \(samples \[3\]\)"),
        (lambda d: {"x_test": d.x_test * 2}, r"'digits' test inputs fall outside the bounds \[0.0, 1.0\]"),
        (lambda d: {"x_test": d.x_test[:, :, :4]}, r"test inputs are torch.float32 shaped \(364, 1, 4, 8\)"),
        (lambda d: {"y_train": d.y_train + 1}, r"train labels run from 1 to 10, but the dataset has 10"),
        (lambda d: {"y_test": d.y_test.float()}, r"'digits' test labels are torch.float32"),
    ],
)  # fmt: skip
def test_a_broken_dataset_is_refused_saying_which_split_and_what(digits, change, message):
    with pytest.raises(InputError, match=message):
        check_dataset(dataclasses.replace(digits, **change(digits)))


class ThreeClasses(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.linear = nn.Linear(int(torch.tensor(input_shape).prod()), 3)

    def forward(self, x):
        return self.linear(x.flatten(1))


class WrongInput(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.linear = nn.Linear(17, num_classes)

    def forward(self, x):
        return self.linear(x.flatten(1))


@pytest.mark.parametrize(
    ("model", "message"),
    [(ThreeClasses, r"model 'test-model' answers an input with outputs shaped \(3,\), but 'digits' has 10"),
     (WrongInput, r"model 'test-model' cannot take 'digits' inputs shaped \(1, 8, 8\): .*shapes")],
)  # fmt: skip
def test_a_model_that_does_not_fit_the_dataset_is_refused_before_training(
    digits, monkeypatch, model, message
):
    monkeypatch.setitem(
        registry.models._discover(), "test-model", Entry("test-model", "test", "test", loaded=model)
    )
    with pytest.raises(InputError, match=message):
        build_model("test-model", digits, 0)


COMMANDS = [
    "run",
    "certify",
    "show",
    "report",
    "compare",
    "list",
    "train",
    "attack",
]  # download needs internet
OPTIONS = ["--out", "--eps", "--attack", "--defense", "-a", "-d", "--samples", "--n", "--n0", "--alpha",
           "--device", "--epochs", "--seed", "--dataset", "--model", "--json", "--quiet", "--fresh",
           "--plugin", "--batch-size", "--norm", "--steps"]  # fmt: skip
VALUES = ["0.1", "-1", "0", "nan", "inf", "1e309", "pgd", "zzz", "steps=ten", "eps=-1", "=", "cuda", "l3",
          "missing.toml", "reports", ".", "", "digits", "mlp", "x" * 300, "--", "-"]  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(COMMANDS),
    st.lists(st.one_of(st.sampled_from(OPTIONS), st.sampled_from(VALUES), st.text(max_size=12)), max_size=5),
)
def test_fuzzed_command_lines_end_in_an_advsec_message_never_a_traceback(command, arguments):
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder):  # whatever it writes lands there
        result = CliRunner().invoke(
            main, [command, *arguments, "--quiet"] if command != "list" else [command]
        )
    assert result.exception is None or isinstance(result.exception, SystemExit), (result.exception, arguments)
    assert result.exit_code in (0, 1, 2) and "Traceback" not in result.output

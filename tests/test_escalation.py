"""Flags that act: defenses that hide their tricks behind a deterministic, differentiable, stateless
declaration are attacked again with what their flags call for, and end near the honest worst case."""

from pathlib import Path

import pytest
import torch

from advsec import registry
from advsec.escalate import MASKED_GRADIENTS, follow_ups
from advsec.progress import Progress
from advsec.report import build_report
from advsec.results import cell_summaries
from advsec.runner import run_spec
from advsec.spec import AttackSpec, parse_spec

CPU = torch.device("cpu")
QUIET = Progress(quiet=True)

# The shipped example's hidden tricks and their truthful twins (each deploys the standard network).
HIDDEN = Path(__file__).parent.parent / "evaluations" / "plugins" / "hidden_tricks.py"

SPEC = """
name = "escalation"
plugins = ["{plugin}"]
[train]
epochs = 15
[[defenses]]
name = "standard"
{defenses}
[[threats]]
norm = "linf"
eps = [0.1]
[[attacks]]
name = "pgd"
steps = 10
[evaluation]
samples = 100
"""


def _hidden_tricks() -> list[str]:
    """The example's defenses that hide a trick: each names its truthful twin (``honest_twin``)."""
    defined = registry.load_plugin_file(HIDDEN)
    return [name for _, name in defined if getattr(registry.defenses.get(name), "honest_twin", None)]


@pytest.fixture(scope="module")
def escalated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("escalation")
    tricks = _hidden_tricks()
    assert len(tricks) == 4, tricks  # rounding, noise, saturation, memory
    names = [*tricks, "declared-rounding", "declared-noise"]
    text = SPEC.format(plugin=HIDDEN, defenses="".join(f'[[defenses]]\nname = "{n}"\n' for n in names))
    store = run_spec(parse_spec(text, base_dir=folder), folder / "out", device=CPU, progress=QUIET)
    report = build_report(store, folder / "report").read_text()
    cells = {c.defense: c for c in cell_summaries(store) if c.norm == "linf"}
    return {"report": report, "tricks": tricks} | cells


def test_hidden_tricks_are_escalated_to_the_honest_worst_case(escalated) -> None:
    for hidden in escalated["tricks"]:
        honest = registry.defenses.get(hidden).honest_twin
        cell = escalated[hidden]
        assert cell.unescalated_robust_accuracy is not None, f"{hidden} was not escalated"
        assert cell.unescalated_robust_accuracy > cell.robust_accuracy + 0.1, hidden  # the flags mattered
        assert cell.robust_accuracy <= escalated[honest].robust_accuracy + 0.05, hidden
        assert all(a.escalation for a in cell.attacks[1:]), hidden  # what was added says why
    report = escalated["report"]
    for shown in ("Flags that acted", "square (escalated)", "undeclared statefulness"):
        assert shown in report


def test_a_truthful_defense_is_never_escalated(escalated) -> None:
    for truthful in ("standard", "declared-rounding", "declared-noise"):
        cell = escalated[truthful]
        assert cell.unescalated_robust_accuracy is None, truthful
        assert not any(a.escalation for a in cell.attacks), truthful


def test_escalation_can_be_turned_off(tmp_path: Path) -> None:
    defenses = '[[defenses]]\nname = "hidden-saturation"\n'
    text = SPEC.format(plugin=HIDDEN, defenses=defenses) + "escalate = false\n"
    store = run_spec(parse_spec(text, base_dir=tmp_path), tmp_path / "out", device=CPU, progress=QUIET)
    [cell] = [c for c in cell_summaries(store) if c.defense == "hidden-saturation" and c.norm == "linf"]
    assert cell.unescalated_robust_accuracy is None
    assert [a.attack for a in cell.attacks] == ["pgd"]


def test_a_follow_up_the_cascade_already_ran_is_not_run_twice() -> None:
    found = {MASKED_GRADIENTS: ["query attack beat gradient attacks"]}
    assert [a.name for a, _ in follow_ups(found, "linf")] == ["apgd-dlr", "square"]
    preset = (AttackSpec("apgd-ce", "apgd-ce", {}), AttackSpec("square", "square", {"queries": 5000}))
    assert [a.name for a, _ in follow_ups(found, "linf", preset)] == ["apgd-dlr"]

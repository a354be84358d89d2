"""Flags that act: a cell whose sanity checks point at masking is attacked again, on the samples it left
robust, with the attack each flag says is missing.

A flag names a cause, and each cause has its adaptive answer (Athalye, Carlini & Wagner 2018; Tramèr et
al. 2020, "On adaptive attacks to adversarial example defenses"):
- masked gradients (blind or non-finite gradients, an unbounded attack that cannot win, a loss an
  iterative attack could not raise, a query attack beating the gradient attacks): APGD on the margin
  (DLR) loss, which saturated logits cannot flatten, and Square, which needs no gradient at all;
- randomness (undeclared, or a declared one attacked without EOT): APGD through the expected prediction
  over draws (EOT), every attempt scored over repeated draws;
- state the defense did not declare: the model restored to how it was before the cell queried it, for
  every query, so neither the attack's probing nor the scoring query meets a model that remembers.
The follow-ups join the cascade after the spec's own attacks, labelled as escalated, so the report can show
the spec's number, the escalated one and what was added.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

import advsec.registry as registry
from advsec.defense import Expectation
from advsec.records import SanityCheck
from advsec.runtime import CountingModel, Views
from advsec.spec import AttackSpec, EvaluationConfig

MASKED_GRADIENTS = "masked gradients"
RANDOMNESS = "randomness"
STATE = "state"

# Which cause each flagged check points at.
CAUSES = {
    "zero or non-finite input gradient": MASKED_GRADIENTS,
    "accuracy under an unbounded attack": MASKED_GRADIENTS,
    "query attack beat gradient attacks": MASKED_GRADIENTS,
    "undeclared randomness": RANDOMNESS,
    "EOT attack beat the evaluation": RANDOMNESS,
    "undeclared statefulness": STATE,
}
LOSS_STALL = "loss not raised"  # one check per iterative gradient attack, named after it
ESCALATED = " (escalated)"  # appended to a follow-up attack's label


def causes(checks: list[SanityCheck]) -> dict[str, list[str]]:
    """The causes the flagged ``checks`` point at, each with the names of the checks that found it."""
    found: dict[str, list[str]] = {}
    for check in (c for c in checks if c.flagged):
        cause = MASKED_GRADIENTS if check.name.startswith(LOSS_STALL) else CAUSES.get(check.name)
        if cause is not None:
            found.setdefault(cause, []).append(check.name)
    return found


def follow_ups(
    found: dict[str, list[str]], norm: str, ran: tuple[AttackSpec, ...] = ()
) -> list[tuple[AttackSpec, str]]:
    """The attacks ``found`` calls for, each with the flags that called for it, that can attack ``norm`` and
    that the cell did not run already (``ran``: the same attack on the same view, whatever its settings).

    Gradient attacks run on the adaptive view (``adaptive=True``), which the escalated views make an
    expectation for randomness and a restored model for state; Square queries the deployed model as scored.
    """
    done = {(attack.name, attack.adaptive) for attack in ran}
    planned: list[tuple[str, bool, list[str]]] = []
    if RANDOMNESS in found or STATE in found:
        planned.append(("apgd-ce", True, found.get(RANDOMNESS, []) + found.get(STATE, [])))
    if MASKED_GRADIENTS in found:
        planned += [("apgd-dlr", True, found[MASKED_GRADIENTS]), ("square", False, found[MASKED_GRADIENTS])]
    return [
        (AttackSpec(name, name + ESCALATED, {}, adaptive=adaptive), "; ".join(reasons))
        for name, adaptive, reasons in planned
        if norm in registry.attacks.get(name).norms and (name, adaptive) not in done
    ]


def escalated_views(
    views: Views, pristine: tuple[nn.Module, nn.Module] | None, found: dict[str, list[str]],
    evaluation: EvaluationConfig,
) -> Views:  # fmt: skip
    """The views the follow-ups attack and score through: restored before every query where the model kept
    undeclared state (``pristine``: its deployed and adaptive views as they were before the cell's first
    query), an expectation over draws scored over repeated draws where it hid randomness."""
    deployed, adaptive = views.deployed, views.adaptive
    if STATE in found and pristine is not None:
        deployed, adaptive = (Restored(view, views.counted) for view in pristine)
    # A defense that declared its randomness is attacked through an expectation and scored over draws already.
    if RANDOMNESS in found and not isinstance(views.adaptive, Expectation):
        return replace(views, deployed=deployed, adaptive=Expectation(adaptive, evaluation.eot_draws),
                       draws=evaluation.repeats)  # fmt: skip
    return replace(views, deployed=deployed, adaptive=adaptive)


def pristine_views(views: Views) -> tuple[nn.Module, nn.Module]:
    """Copies of the deployed and adaptive views as they are now, sharing the counted network: the state a
    defense keeps lives in the modules it wraps around the network, and the passes still count."""
    return copy.deepcopy((views.deployed, views.adaptive), {id(views.counted): views.counted})


class Restored(nn.Module):
    """A view restored to a pristine copy before every query: what an attacker who holds a copy of the
    model, and resets it before each query, differentiates; and how a fresh query is answered."""

    def __init__(self, pristine: nn.Module, counted: CountingModel) -> None:
        super().__init__()
        self.pristine = pristine
        self.memo = {id(counted): counted}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return copy.deepcopy(self.pristine, dict(self.memo))(x)

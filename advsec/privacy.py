"""Privacy cost: how well an attacker tells a model's training samples (members) from unseen ones.

Song, Shokri & Mittal (2019, "Privacy Risks of Securing Machine Learning Models against Adversarial
Examples") found that adversarially trained models leak more membership than standard ones. Two signals,
each a threshold on the model's loss: on the benign input (Yeom et al. 2018), and at an adversarial example
within the report's budget (Song et al.'s robustness-based inference: members tend to stay confident under
attack). The threshold is fit on half of the samples and scored on the other half, so the figure is not
fit to the samples it reports. The advantage is TPR − FPR on balanced members and non-members: 0 is chance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attack import gradient_attack
from advsec.records import MembershipInference
from advsec.threat import ThreatModel

ADVERSARIAL_STEPS = 10


def membership_inference(
    model: nn.Module,
    members: tuple[torch.Tensor, torch.Tensor],
    nonmembers: tuple[torch.Tensor, torch.Tensor],
    *,
    threat: ThreatModel | None,
    batch: int,
) -> list[MembershipInference]:
    """The loss-threshold attack on benign inputs, and on adversarial ones when ``threat`` is given."""
    n = min(len(members[0]), len(nonmembers[0]))
    sets = [(x[:n], y[:n]) for x, y in (members, nonmembers)]
    found = [
        MembershipInference("loss", n, *threshold_attack(*(losses(model, x, y, batch) for x, y in sets)))
    ]
    if threat is not None:
        generator = torch.Generator(device=sets[0][0].device).manual_seed(0)
        attacked = [
            (gradient_attack(model, x, y, threat, steps=ADVERSARIAL_STEPS, step_fraction=1 / 4,
                             generator=generator, early_stop=False, keep_worst=False), y)
            for x, y in sets
        ]  # fmt: skip
        scores = (losses(model, x, y, batch) for x, y in attacked)
        found.append(MembershipInference("adversarial loss", n, *threshold_attack(*scores)))
    return found


@torch.no_grad()
def losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> torch.Tensor:
    if not len(x):
        return torch.empty(0)
    return torch.cat(
        [
            F.cross_entropy(model(xb), yb, reduction="none").cpu()
            for xb, yb in zip(x.split(batch), y.split(batch), strict=True)
        ]
    )


def threshold_attack(members: torch.Tensor, nonmembers: torch.Tensor) -> tuple[float, float]:
    """Balanced accuracy and advantage of "a member if its loss is at most t".

    t maximizes TPR − FPR on the even-indexed samples of both sets and is scored on the odd-indexed ones.
    """
    t = _best_threshold(members[0::2], nonmembers[0::2])
    held_members, held_nonmembers = members[1::2], nonmembers[1::2]
    if not len(held_members) or not len(held_nonmembers):
        return 0.5, 0.0
    advantage = (held_members <= t).float().mean().item() - (held_nonmembers <= t).float().mean().item()
    return (1 + advantage) / 2, advantage


def _best_threshold(members: torch.Tensor, nonmembers: torch.Tensor) -> float:
    """The cut between sorted losses where the share of members below it most exceeds that of others."""
    if not len(members) or not len(nonmembers):
        return float("-inf")
    scores = torch.cat([members, nonmembers])
    is_member = torch.cat([torch.ones(len(members)), torch.zeros(len(nonmembers))])
    order = scores.argsort()
    tpr = is_member[order].cumsum(0) / len(members)
    fpr = (1 - is_member[order]).cumsum(0) / len(nonmembers)
    best = int((tpr - fpr).argmax())
    return scores[order][best].item()

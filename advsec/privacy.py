"""Privacy cost: how well an attacker tells a model's training samples (members) from unseen ones.

Song, Shokri & Mittal (2019, "Privacy Risks of Securing Machine Learning Models against Adversarial
Examples") found that adversarially trained models leak more membership than standard ones. Three signals,
each a score per sample (higher: more likely a member): the model's loss on the benign input (Yeom et al.
2018), its loss at an adversarial example within the report's budget (Song et al.'s robustness-based
inference: members tend to stay confident under attack), and offline LiRA (:mod:`advsec.lira`), which
calibrates each sample's confidence against shadow models that never saw it.

A global threshold catches the easy members and reads as a few points of balanced advantage on every
model; what tells a leaky model from a private one is how many members are caught with almost no false
alarm (Carlini et al. 2022, "Membership Inference Attacks From First Principles"). So each signal reports
the TPR at 0.1 % and 1 % FPR (Clopper–Pearson 95 % interval over the members, the threshold taken as
given), the ROC AUC (DeLong's 95 % interval), and, for continuity, the balanced advantage TPR − FPR of a
threshold fit on half of the samples and scored on the other half. A TPR at 0.1 % FPR needs at least 1,000
non-members to let one through: with fewer, its threshold lies above every non-member (FPR 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from advsec.attack import gradient_attack
from advsec.lira import lira_scores, logit_confidence
from advsec.records import MembershipInference
from advsec.results import clopper_pearson
from advsec.threat import ThreatModel

ADVERSARIAL_STEPS = 10
FPRS = (0.001, 0.01)  # the false-positive rates each signal's TPR is read at
_Z = 1.959964  # the standard normal's 97.5 % quantile


def membership_inference(
    model: nn.Module,
    members: tuple[torch.Tensor, torch.Tensor],
    nonmembers: tuple[torch.Tensor, torch.Tensor],
    *,
    threat: ThreatModel | None,
    batch: int,
    shadows: Sequence[nn.Module] = (),
    shadow_seconds: float = 0.0,
) -> list[MembershipInference]:
    """The loss-threshold attack on benign inputs, on adversarial ones when ``threat`` is given, and
    offline LiRA when ``shadows`` (models that learned from none of these samples) are given; as many
    members as non-members, the first of each."""
    n = min(len(members[0]), len(nonmembers[0]))
    sets = [(x[:n], y[:n]) for x, y in (members, nonmembers)]
    found = [inference("loss", *(-losses(model, x, y, batch) for x, y in sets))]
    if threat is not None:
        generator = torch.Generator(device=sets[0][0].device).manual_seed(0)
        attacked = [
            (gradient_attack(model, x, y, threat, steps=ADVERSARIAL_STEPS, step_fraction=1 / 4,
                             generator=generator, early_stop=False, keep_worst=False), y)
            for x, y in sets
        ]  # fmt: skip
        found.append(inference("adversarial loss", *(-losses(model, x, y, batch) for x, y in attacked)))
    if shadows:
        x, y = torch.cat([sets[0][0], sets[1][0]]), torch.cat([sets[0][1], sets[1][1]])
        target = logit_confidence(model, x, y, batch)
        out = torch.stack([logit_confidence(shadow, x, y, batch) for shadow in shadows])
        scores = lira_scores(target, out)
        found.append(inference("lira", scores[:n], scores[n:], shadows=len(shadows),
                               shadow_seconds=shadow_seconds))  # fmt: skip
    return found


def inference(
    signal: str,
    members: torch.Tensor,
    nonmembers: torch.Tensor,
    *,
    shadows: int = 0,
    shadow_seconds: float = 0.0,
) -> MembershipInference:
    """One signal's figures from its scores (higher: more likely a member)."""
    accuracy, advantage = threshold_attack(-members, -nonmembers)
    auc, auc_low, auc_high = roc_auc(members, nonmembers)
    at = [tpr_at_fpr(members, nonmembers, fpr) for fpr in FPRS]
    return MembershipInference(
        signal, len(members), len(nonmembers), accuracy, advantage, auc, auc_low, auc_high,
        *at[0], *at[1], shadows=shadows, shadow_seconds=shadow_seconds,
    )  # fmt: skip


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


def tpr_at_fpr(members: torch.Tensor, nonmembers: torch.Tensor, fpr: float) -> tuple[float, float, float]:
    """The share of members scored above the highest threshold that lets through at most ``fpr`` of the
    non-members, and its Clopper–Pearson interval. Ties never count as caught, so the FPR reached is at
    most ``fpr``; with fewer than 1 / ``fpr`` non-members the threshold is the highest non-member's."""
    allowed = int(np.floor(fpr * len(nonmembers) + 1e-9))  # false positives the rate permits
    if allowed >= len(nonmembers):
        caught = len(members)
    else:
        threshold = nonmembers.sort(descending=True).values[allowed]
        caught = int((members > threshold).sum())
    low, high = clopper_pearson(caught, len(members))
    return caught / max(len(members), 1), low, high


def roc_auc(members: torch.Tensor, nonmembers: torch.Tensor) -> tuple[float, float, float]:
    """The ROC AUC (ties count half) with DeLong's 95 % interval, from mid-ranks (DeLong, DeLong &
    Clarke-Pearson 1988; Sun & Xu 2014's fast form), clipped to [0, 1]."""
    m, n = len(members), len(nonmembers)
    if not m or not n:
        return 0.5, 0.0, 1.0
    from scipy.stats import rankdata  # scipy.stats takes seconds to import; most runs never score membership

    pos, neg = members.double().numpy(), nonmembers.double().numpy()
    ranks = rankdata(np.concatenate([pos, neg]))
    beaten = (ranks[:m] - rankdata(pos)) / n  # per member: the share of non-members below it
    beating = 1 - (ranks[m:] - rankdata(neg)) / m  # per non-member: the share of members above it
    auc = float(beaten.mean())
    variance = (beaten.var(ddof=1) if m > 1 else 0.0) / m + (beating.var(ddof=1) if n > 1 else 0.0) / n
    spread = _Z * float(np.sqrt(variance))
    return auc, max(0.0, auc - spread), min(1.0, auc + spread)


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

"""A random ensemble: each query is answered by a randomly drawn member, a moving target for the attacker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advsec.defense import Bounds, Defense


class Members(nn.Module):
    """Independently initialized models side by side; their stacked logits are (members, n, classes)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members])


class Member(nn.Module):
    """The ``index``-th member of an ensemble whose forward stacks every member's logits."""

    def __init__(self, ensemble: nn.Module, index: int) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ensemble(x)[self.index]


class RandomMember(nn.Module):
    """Answers each sample of a query with one of ``size`` members drawn at random (torch's global
    generator)."""

    def __init__(self, ensemble: nn.Module, size: int) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.ensemble(x)
        chosen = torch.randint(len(logits), (len(x),)).to(x.device)
        return logits[chosen, torch.arange(len(x), device=x.device)]

    def members(self) -> list[nn.Module]:
        return [Member(self.ensemble, i) for i in range(self.size)]

    def snapshot(self) -> nn.Module:
        """The member that answers the next query, held still."""
        return self.members()[int(torch.randint(self.size, ()))]


@dataclass
class RandomEnsemble(Defense):
    """k models from different initializations, trained side by side; each query meets a random one.

    Every member is trained on its own cross-entropy (the mean of independent losses leaves their
    gradients independent). Deployed, each sample is answered by a member drawn afresh per query, so an
    attacker who found one member's mistake may not meet that member again.
    """

    stochastic = True

    members: int = 3

    def __post_init__(self) -> None:
        if self.members < 2:
            raise ValueError(f"members must be >= 2, got {self.members}")

    def network(self, build: Callable[[int], nn.Module]) -> nn.Module:
        return Members([build(i) for i in range(self.members)])

    def loss(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        bounds: Bounds,
        generator: torch.Generator | None = None,
        progress: float = 1.0,
    ) -> torch.Tensor:
        logits = model(x)
        return torch.stack([F.cross_entropy(member, y) for member in logits]).mean()

    def wrap(self, model: nn.Module, *, bounds: Bounds) -> nn.Module:
        return RandomMember(model, self.members)

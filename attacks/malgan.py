"""MalGAN (Hu & Tan 2017): a generator that learns to add features to malicious samples until a black-box
detector lets them through, fitted against a substitute detector trained on the detector's labels.

The paper's setting: binary API-call features, the generator G(m, z) outputs o and the adversarial sample
is max(m, o), so features only appear, never vanish; the black-box detector is queried for labels only,
and a substitute detector learns those labels on benign samples and on G's outputs as G trains, and G
descends the substitute's score. Here the features are Spambase's word frequencies under the ``words``
norm (:mod:`advsec.data.spambase`): G sees a sample (log1p of its 57 features, as a detector would) and a
noise vector ``z`` and outputs a share of the budget for each of the 48 words, a softmax, so its additions
are non-negative and total each sample's budget by construction; the threat model's projection then keeps
them add-only, within each word's room and within budget, whatever G outputs. Characters and capital runs
never move.

The detector is only ever called under ``torch.no_grad`` on detached inputs, and only its predicted class
is read: its answers are **labels only**, not scores. G's gradients come from the substitute alone (a
log1p MLP of ``substitute_width`` units, an attacker's guess at a detector's shape): it first learns the
detector's labels of ``distill_steps`` batches of training samples of both classes, then, after each of
G's steps, the labels of G's outputs beside a batch of the target class's training samples (the paper's
retraining on benign samples and generated malware). Fitting stops when ``stop_at`` of ``stop_samples``
held-out malicious training samples evade the detector itself (queried, every ``check_every`` batches),
or after ``max_steps`` batches. Attacking is then one forward pass of G per sample, with a fresh ``z``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attack import Loss, attack_objective
from advsec.generator import Generator
from advsec.models.tabular import Log1p, TabularMLP
from advsec.progress import Progress
from advsec.threat import ThreatModel, random_tensor

WORDS = 48  # Spambase's word frequencies are its first 48 features: the only ones the attacker may raise


class Additions(nn.Module):
    """G(x, z): each of the 48 words' share of the budget (a softmax) from log1p of ``x`` and noise ``z``."""

    def __init__(self, features: int, noise: int, hidden: int) -> None:
        super().__init__()
        self.noise = noise
        self.scale = Log1p()
        self.body = nn.Sequential(
            nn.Linear(features + noise, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, WORDS),
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([self.scale(x), z], dim=1)).softmax(dim=1)


def _perturbed(network: Additions, x: torch.Tensor, z: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """``x`` with G's word additions (shares of each sample's budget), projected into the threat model."""
    budget = threat.radius(x)  # first: it refuses inputs that are not Spambase's, with a message saying so
    added = torch.cat([budget * network(x, z), torch.zeros_like(x[:, WORDS:])], dim=1)
    return threat.project(x, x + added)


class Substitute:
    """A detector of the attacker's own that learns the black box's labels (never its scores or gradients)."""

    def __init__(self, detector: nn.Module, x: torch.Tensor, classes: int, width: int, lr: float) -> None:
        self.detector = detector
        self.model = TabularMLP(tuple(x.shape[1:]), classes, width).to(x.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.queries = 0

    def ask(self, x: torch.Tensor) -> torch.Tensor:
        """The black box's label for each sample of ``x``: a query, nothing more."""
        with torch.no_grad():
            self.queries += len(x)
            return self.detector(x.detach()).argmax(dim=1)

    def learn(self, x: torch.Tensor) -> None:
        """One step towards the black box's labels on ``x``."""
        x = x.detach()
        loss = F.cross_entropy(self.model(x), self.ask(x))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


@dataclass
class MalGAN(Generator):
    """A generator of word additions fitted against a substitute of a black-box detector (Hu & Tan 2017)."""

    norms: ClassVar[tuple[str, ...]] = ("words",)
    modalities: ClassVar[tuple[str, ...]] = ("tabular",)
    targeted = True

    batch_size: int = 128
    lr: float = 1e-3
    max_steps: int = 1500  # generator batches at most
    stop_at: float = 0.99  # stop once this share of the held-out malicious samples evades the detector
    stop_samples: int = 256  # malicious training samples held out to decide when to stop (at most a quarter)
    check_every: int = 50  # generator batches between two looks at them
    noise: int = 16  # the length of G's noise vector z
    hidden: int = 128  # G's hidden units per layer
    substitute_width: int = 128  # the substitute detector's hidden units per layer
    distill_steps: int = 400  # substitute batches on training samples before G starts
    margin: float = 5.0  # the substitute's logit margin is not pushed past this: fooled samples stop pulling
    loss: Loss = "cw"

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return Additions(input_shape[0], self.noise, self.hidden)

    def fit(
        self,
        network: nn.Module,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        target: int | None,
        progress: Progress,
    ) -> None:
        # What the attacker perturbs (the malicious samples: those not of the target class) and what the
        # substitute also sees of the other side (the target class's samples, or all without a target).
        malicious = torch.ones_like(y, dtype=torch.bool) if target is None else y != target
        benign = x if target is None else x[y == target]
        x_bad, y_bad = x[malicious], y[malicious]
        held = min(self.stop_samples, len(x_bad) // 4)
        held_out, kept = torch.randperm(len(x_bad), device=x.device).tensor_split([held])
        classes = max(int(y.max()), -1 if target is None else target) + 1
        substitute = Substitute(model, x, classes, self.substitute_width, self.lr)

        def draw(pool: torch.Tensor, count: int) -> torch.Tensor:
            return pool[torch.randint(0, len(pool), (count,), device=x.device)]

        with progress.task("distill a substitute detector", total=self.distill_steps) as task:
            for _ in range(self.distill_steps):
                substitute.learn(draw(x, self.batch_size))
                task.advance()
        step_of_g = torch.optim.Adam(network.parameters(), lr=self.lr)
        with progress.task("fit malgan", total=self.max_steps) as task:
            for step in range(1, self.max_steps + 1):
                batch = draw(kept, self.batch_size)
                clean, labels = x_bad[batch], y_bad[batch]
                aim = None if target is None else torch.full_like(labels, target)
                x_adv = _perturbed(
                    network, clean, torch.randn(len(clean), self.noise, device=x.device), threat
                )
                logits = substitute.model(x_adv)
                loss = -attack_objective(logits, labels, aim, self.loss).clamp(max=self.margin).mean()
                step_of_g.zero_grad(set_to_none=True)
                loss.backward()
                step_of_g.step()
                substitute.learn(torch.cat([x_adv, draw(benign, self.batch_size)]))
                task.advance()
                if step % self.check_every == 0:
                    check = x_bad[held_out], y_bad[held_out]
                    if self._evasion(network, substitute, threat, *check, target) >= self.stop_at:
                        break

    def _evasion(
        self,
        network: nn.Module,
        substitute: Substitute,
        threat: ThreatModel,
        x: torch.Tensor,
        y: torch.Tensor,
        target: int | None,
    ) -> float:
        """The share of ``x`` that G's additions take past the black box, by its labels."""
        network.eval()
        with torch.no_grad():
            x_adv = _perturbed(network, x, torch.randn(len(x), self.noise, device=x.device), threat)
        network.train()
        answers = substitute.ask(x_adv)
        evaded = answers != y if target is None else answers == target
        return evaded.float().mean().item()

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        *,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        with torch.no_grad():
            network = self.fitted()
            return _perturbed(
                network, x, random_tensor((len(x), network.noise), x, generator, normal=True), threat
            )

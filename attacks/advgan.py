"""AdvGAN (Xiao et al. 2018): a generator network learns to perturb, so attacking is one forward pass.

The generator G (the paper's: two stride-2 convolutions down, four residual blocks, two up, with batch norm;
ours adds the encoder's features to the decoder's, a U-Net's skips) maps an input to a perturbation
direction; a sample's perturbation is its budget radius times tanh(G(x)), projected by the threat model, so
every output is within budget and bounds by construction. G is trained against the fixed target model with
the paper's loss: an adversarial term (the CW margin, capped at ``margin`` so samples already fooled stop
dominating), ``alpha`` times a GAN term (a discriminator D tells clean inputs from adversarial ones;
least-squares GAN), and ``beta`` times a hinge on the perturbation's ℓ2 size above ``hinge`` of the ball's.
Batch norm in G and the margin loss matter: a plain five-layer generator maximizing cross-entropy barely
fooled an undefended MNIST model. So do the residual blocks: on Fashion-MNIST they raised test success, at
a lower cost per sample (width 8 with four blocks, against width 16 without). Fitting stops when the
success on ``stop_samples`` held-out training samples, checked every ``check_every`` batches, reaches
``stop_at``, or after ``max_steps`` batches. Held-out samples, because success on the training batches
themselves runs ahead of the test set's on small data: stopping on it ended fits on digits early.

G also sees each sample's label (``labelled``), as any untargeted attack does: from the image alone it
cannot tell which way is away from the true class when classes look alike (on Fashion-MNIST, shirts that
look like T-shirts, pullovers and coats were the ones it missed without the label). The label costs one
embedding added to G's code between encoder and decoder. Current figures: benchmarks/generator_speed.py,
written to docs/results.md.

With ``black_box`` the model is only queried, never differentiated: G trains against a surrogate
distilled from the model's answers, first on training inputs (``distill_steps`` batches), then on G's own
outputs as it learns (the paper's dynamic distillation), and success is measured on the model's answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from advsec.attack import Loss, attack_objective, fooled
from advsec.generator import Generator
from advsec.progress import Progress
from advsec.threat import ThreatModel, norm_of


def _layers(dims: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    """Convolution, transposed convolution and batch norm for images (2-D) or waveforms (1-D)."""
    if dims == 2:
        return nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d
    return nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d


def _perturbed(network: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """``x`` moved by G: each sample's budget radius times G's direction, projected into the threat model."""
    return threat.project(x, x + threat.radius(x) * network(x, y))


def _success(
    network: nn.Module,
    model: nn.Module,
    threat: ThreatModel,
    x: torch.Tensor,
    y: torch.Tensor,
    aim: torch.Tensor | None,
) -> float:
    """The share of ``x`` that G's perturbations take out of their class (or into ``aim``'s): what the
    attacked model answers, even when G trains against a surrogate."""
    network.eval()
    with torch.no_grad():
        logits = model(_perturbed(network, x, y, threat))
    network.train()
    return fooled(logits, y, aim).float().mean().item()


class Residual(nn.Module):
    """Two convolutions with batch norm, added to their input: the paper's generator has four."""

    def __init__(self, channels: int, dims: int) -> None:
        super().__init__()
        conv, _, norm = _layers(dims)
        self.body = nn.Sequential(
            conv(channels, channels, 3, padding=1), norm(channels), nn.ReLU(),
            conv(channels, channels, 3, padding=1), norm(channels),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class PerturbationNet(nn.Module):
    """An encoder-decoder (two stride-2 stages down, ``blocks`` residual blocks, two up) from an input to a
    direction in [-1, 1]; with ``classes``, each sample's label is added to its code between the two.

    Each decoder stage also adds the encoder's features of its size (a U-Net's skips, added rather than
    concatenated, so they cost next to nothing): a perturbation has to follow the input pixel by pixel, and
    a 7x7 code alone carries little of that. With them and the learning rate doubled to 2e-3, test success on
    Fashion-MNIST after the same number of batches rose in every fit we compared, at nearly no cost per batch.
    """

    def __init__(
        self, input_shape: tuple[int, ...], width: int = 16, blocks: int = 0, classes: int | None = None
    ) -> None:
        super().__init__()
        channels, dims = input_shape[0], len(input_shape) - 1
        conv, up, norm = _layers(dims)

        def block(layer: nn.Module, out: int) -> nn.Sequential:
            return nn.Sequential(layer, norm(out), nn.ReLU())

        self.down = nn.ModuleList([
            block(conv(channels, width, 3, padding=1), width),
            block(conv(width, 2 * width, 4, stride=2, padding=1), 2 * width),
            block(conv(2 * width, 4 * width, 4, stride=2, padding=1), 4 * width),
        ])  # fmt: skip
        self.label = None if classes is None else nn.Embedding(classes, 4 * width)
        self.middle = nn.Sequential(*(Residual(4 * width, dims) for _ in range(blocks)))
        self.up = nn.ModuleList([
            block(up(4 * width, 2 * width, 4, stride=2, padding=1), 2 * width),
            block(up(2 * width, width, 4, stride=2, padding=1), width),
        ])  # fmt: skip
        self.out = conv(width, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        features = []
        for stage in self.down:
            x = stage(x)
            features.append(x)
        if self.label is not None:
            if y is None:
                raise ValueError("this generator is conditioned on labels: pass each sample's label")
            x = x + self.label(y).view(*x.shape[:2], *[1] * (x.dim() - 2))
        x = self.middle(x)
        for stage, skip in zip(self.up, reversed(features[:-1]), strict=True):
            x = stage(x)
            if x.shape[2:] != skip.shape[2:]:  # sizes not divisible by 4 come back a little off
                x = F.interpolate(x, size=skip.shape[2:], mode="bilinear" if x.dim() == 4 else "linear")
            x = x + skip
        return torch.tanh(self.out(x))


class Surrogate(nn.Module):
    """A small classifier to distill the attacked model into: three convolutions, pooled, then two layers."""

    def __init__(self, input_shape: tuple[int, ...], classes: int, width: int = 32) -> None:
        super().__init__()
        dims = len(input_shape) - 1
        conv, _, _ = _layers(dims)
        pool = nn.AdaptiveAvgPool2d((4, 4)) if dims == 2 else nn.AdaptiveAvgPool1d(16)
        self.body = nn.Sequential(
            conv(input_shape[0], width, 3, padding=1),
            nn.ReLU(),
            conv(width, 2 * width, 4, stride=2, padding=1),
            nn.ReLU(),
            conv(2 * width, 2 * width, 4, stride=2, padding=1),
            nn.ReLU(),
            pool,
            nn.Flatten(),
            nn.Linear(2 * width * 16, 128),
            nn.ReLU(),
            nn.Linear(128, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Distilled:
    """A surrogate that learns to answer as the attacked model does, from its answers alone (no gradients)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, lr: float) -> None:
        self.model = model
        with torch.no_grad():
            classes = model(x[:1]).shape[1]
        self.surrogate = Surrogate(tuple(x.shape[1:]), classes).to(x.device)
        self.optimizer = torch.optim.Adam(self.surrogate.parameters(), lr=lr)

    def ask(self, x: torch.Tensor) -> torch.Tensor:
        """The attacked model's logits for ``x``: a query, nothing more."""
        with torch.no_grad():
            return self.model(x.detach())

    def learn(self, x: torch.Tensor, answers: torch.Tensor) -> None:
        """One step towards the model's output distribution on ``x``."""
        loss = F.cross_entropy(self.surrogate(x.detach()), answers.softmax(dim=1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


class Discriminator(nn.Module):
    """Tells clean inputs from perturbed ones: two stride-2 convolutions and a linear score."""

    def __init__(self, input_shape: tuple[int, ...], width: int = 16) -> None:
        super().__init__()
        conv, _, norm = _layers(len(input_shape) - 1)
        self.body = nn.Sequential(
            conv(input_shape[0], width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            conv(width, 2 * width, 4, stride=2, padding=1),
            norm(2 * width),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.LazyLinear(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).squeeze(1)


@dataclass
class AdvGAN(Generator):
    """A generator network fitted against the model (Xiao et al. 2018); untargeted or aimed at one class."""

    targeted = True
    norms = ("linf", "db")  # tanh bounds each coordinate: the ball is an ℓ∞ one

    batch_size: int = 128
    lr: float = 2e-3
    max_steps: int = 1000  # training batches at most
    stop_at: float = 0.99  # stop once this share of the held-out samples is fooled
    stop_samples: int = 256  # training samples held out to decide when to stop (at most a quarter)
    check_every: int = 20  # training batches between two looks at them
    alpha: float = 0.1  # the GAN term's weight
    beta: float = 0.01  # the hinge term's weight
    hinge: float = 0.5  # ℓ2 size allowed before the hinge bites, as a fraction of the ball's largest
    margin: float = 5.0
    loss: Loss = "cw"
    width: int = 8  # the generator's first layer's channels, doubled twice down to its residual blocks
    blocks: int = 4  # residual blocks between encoder and decoder
    labelled: bool = True  # G sees each sample's label as well as the sample (see the module's docstring)
    black_box: bool = False  # fit against a surrogate distilled from the model's answers: queries only
    distill_steps: int = 300  # surrogate batches on training inputs before G starts (black box only)

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return PerturbationNet(input_shape, self.width, self.blocks, num_classes if self.labelled else None)

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
        critic = Discriminator(tuple(x.shape[1:]), self.width).to(x.device)
        with torch.no_grad():
            critic.eval()(x[:1])  # materialize the lazy layer before its optimizer sees it
        critic.train()
        generator_step = torch.optim.Adam(network.parameters(), lr=self.lr, betas=(0.5, 0.999))
        critic_step = torch.optim.Adam(critic.parameters(), lr=self.lr, betas=(0.5, 0.999))
        held = min(self.stop_samples, len(x) // 4)
        held_out, kept = torch.randperm(len(x), device=x.device).tensor_split([held])
        check = (x[held_out], y[held_out], None if target is None else torch.full_like(y[held_out], target))
        attacked = model
        distilled = Distilled(model, x, self.lr) if self.black_box else None
        if distilled is not None:
            with progress.task("distill a surrogate", total=self.distill_steps) as task:
                for _ in range(self.distill_steps):
                    batch = x[torch.randint(0, len(x), (self.batch_size,), device=x.device)]
                    distilled.learn(batch, distilled.ask(batch))
                    task.advance()
            model = distilled.surrogate
        with progress.task("fit advgan", total=self.max_steps) as task:
            for step in range(1, self.max_steps + 1):
                batch = kept[torch.randint(0, len(kept), (self.batch_size,), device=x.device)]
                clean, labels = x[batch], y[batch]
                aim = None if target is None else torch.full_like(labels, target)
                x_adv = _perturbed(network, clean, labels, threat)

                real, fake = critic(clean), critic(x_adv.detach())
                critic_loss = F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(
                    fake, torch.zeros_like(fake)
                )
                critic_step.zero_grad(set_to_none=True)
                critic_loss.backward()
                critic_step.step()

                logits = model(x_adv)
                adversarial = -attack_objective(logits, labels, aim, self.loss).clamp(max=self.margin).mean()
                judged = critic(x_adv)
                gan = F.mse_loss(judged, torch.ones_like(judged))
                largest = norm_of(threat.radius(clean).expand_as(clean), "l2")
                hinge = F.relu(norm_of(x_adv - clean, "l2") / largest - self.hinge).mean()
                generator_loss = adversarial + self.alpha * gan + self.beta * hinge
                generator_step.zero_grad(set_to_none=True)
                generator_loss.backward()
                generator_step.step()
                task.advance()

                if distilled is not None:  # the surrogate learns from the attacked model's answers
                    distilled.learn(x_adv, distilled.ask(x_adv))
                due = step % self.check_every == 0
                if due and _success(network, attacked, threat, *check) >= self.stop_at:
                    break

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
            return _perturbed(self.fitted(), x, y, threat)

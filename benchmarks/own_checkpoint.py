"""A checkpoint trained outside advsec: advsec's worst-case evaluation beside torchattacks' AutoAttack.

    python benchmarks/own_checkpoint.py [--samples 1000] [--eps 0.1] [--epochs 2]

A plain PyTorch loop (no advsec) trains a small MNIST CNN on normalized inputs and saves its state dict as
safetensors; the test images go to an .npz. advsec evaluates that checkpoint from the files, as a user
would (`advsec.evaluate` on the same tensors: a [[models]] entry with mean/std), with the worst-case preset
(APGD-CE, APGD-T, Square 5,000); torchattacks' AutoAttack ("standard": APGD-CE, APGD-T, FAB-T, Square
5,000, its 10-step defaults) attacks the same model, samples and budget. Printed: robust accuracy of each
and the wall-time ratio, measured in one run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import Output, benchmark_parser, parse_benchmark_args, record
from torch import nn

MEAN, STD = 0.1307, 0.3081


class Net(nn.Module):
    """A small CNN of the user's own, not one of advsec's architectures."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Normalized(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - MEAN) / STD)


def train_outside_advsec(x: torch.Tensor, y: torch.Tensor, epochs: int) -> Net:
    torch.manual_seed(0)
    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(128):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net((x[batch] - MEAN) / STD), y[batch]).backward()
            optimizer.step()
    return net.eval()


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=2)
    args = parse_benchmark_args(parser)
    say = Output()

    import torchattacks
    from safetensors.torch import load_file, save_file

    import advsec
    from advsec.data.load import load_dataset

    mnist = load_dataset("mnist")  # only to read the idx files; the model never meets advsec's training
    net = train_outside_advsec(mnist.x_train, mnist.y_train, args.epochs)
    folder = Path(tempfile.mkdtemp(prefix="own-checkpoint-"))
    save_file(net.state_dict(), folder / "net.safetensors")
    x, y = mnist.x_test[: args.samples], mnist.y_test[: args.samples]
    np.savez(folder / "test.npz", x=x.numpy(), y=y.numpy())

    loaded = Net()
    loaded.load_state_dict(load_file(folder / "net.safetensors"))
    data = np.load(folder / "test.npz")
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    started = time.perf_counter()
    ours = advsec.evaluate(loaded, x, y, eps=args.eps, mean=[MEAN], std=[STD], out=folder / "advsec")
    ours_seconds = time.perf_counter() - started

    model = Normalized(loaded).eval()
    started = time.perf_counter()
    x_adv = torchattacks.AutoAttack(model, "Linf", eps=args.eps, version="standard", n_classes=10, seed=0)(
        x, y
    )
    theirs_seconds = time.perf_counter() - started
    with torch.no_grad():
        theirs = (model(x_adv).argmax(1) == y).float().mean().item()

    robust = ours.robust_accuracy[args.eps]
    say(f"MNIST CNN trained outside advsec ({args.epochs} epochs), {len(x)} test images, linf {args.eps:g}")
    say(f"clean accuracy: {ours.clean_accuracy:.3f}")
    say(f"{'evaluation':<44} {'robust':>8} {'seconds':>9}")
    say(f"{'advsec worst-case (APGD-CE, APGD-T, Square)':<44} {robust:>8.3f} {ours_seconds:>9.1f}")
    say(f"{'torchattacks AutoAttack (standard)':<44} {theirs:>8.3f} {theirs_seconds:>9.1f}")
    say(f"robust accuracy, advsec - torchattacks: {robust - theirs:+.3f}; "
        f"time ratio advsec / torchattacks: {ours_seconds / theirs_seconds:.2f}")  # fmt: skip
    record("own_checkpoint", say.lines)


if __name__ == "__main__":
    main()

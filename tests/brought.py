"""A checkpoint trained outside advsec, as the README's user brings one: ``nets.py``, ``net.safetensors``
and ``test.npz``, and the ``advsec evaluate`` command line that evaluates it."""

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

NET = """
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.body(x)
"""
MEAN, STD = 0.5, 0.25  # the normalization the network was trained under, applied inside it by advsec
TEST = slice(1500, 1700)  # the 200 digits test.npz holds; the network never saw them


def trained_net(folder: Path) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A plain PyTorch script, no advsec: write ``nets.py`` into ``folder``, train its MLP on the first
    1,500 digits, normalized (about 90 % accurate on the others, far from chance), save the weights as
    ``net.safetensors``; return the network and every digit, in [0, 1]."""
    from sklearn.datasets import load_digits

    (folder / "nets.py").write_text(NET)
    namespace: dict = {}
    exec(NET, namespace)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    net = namespace["Net"]()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net((x[:1500] - MEAN) / STD), y[:1500]).backward()
        optimizer.step()
    save_file(net.state_dict(), folder / "net.safetensors")
    return net.eval(), x, y


def train_checkpoint(folder: Path) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """:func:`trained_net`'s files and ``test.npz`` of 200 digits it never saw; the network and those."""
    net, x, y = trained_net(folder)
    np.savez(folder / "test.npz", x=x[TEST].numpy(), y=y[TEST].numpy())
    return net, x[TEST], y[TEST]


def evaluate_args(folder: Path, data: Path, eps: str, out: Path, attacks: str = "fgsm") -> list[str]:
    """The README's ``advsec evaluate`` of the checkpoint in ``folder`` on ``data``, quietly, attacked by FGSM
    unless told otherwise (the worst-case preset's Square would spend seconds per run)."""
    return ["evaluate", "--model", f"{folder / 'nets.py'}:Net", "--weights", str(folder / "net.safetensors"),
            "--mean", str(MEAN), "--std", str(STD), "--data", str(data), "--eps", eps, "--attacks", attacks,
            "--out", str(out), "--quiet"]  # fmt: skip

"""Which samples a run scores when it scores fewer than all of them: a seeded stratified draw.

Data files are often sorted by class (an image folder is read class by class, many ``.npz`` files were
saved that way), so "the first N" can be a few classes only, and a robust accuracy over them describes
those classes, not the model. Every subset advsec draws (``[evaluation] samples``, ``[certify] samples``,
``[replay] samples``, the members and non-members of membership inference) is instead drawn from each
class in proportion to its share, without replacement, by a generator seeded from the run's seed, and kept
in the data's own order.
"""

from __future__ import annotations

import torch

from advsec.keys import content_key, key_seed


def stratified(labels: torch.Tensor, count: int | None, seed: int) -> torch.Tensor:
    """The indices of ``count`` of ``labels``' samples, each class given its share of ``count`` (the
    largest remainders rounding up, ties to the lower class), drawn at random within the class; sorted.
    Every index, in order, when ``count`` is None or covers them all."""
    total = len(labels)
    if not drawn(count, total):
        return torch.arange(total)
    classes, sizes = torch.unique(labels, return_counts=True)
    exact = sizes.double() * count / total
    quota = exact.floor().long()
    short = count - int(quota.sum())
    # Largest remainders first; a stable sort keeps the lower class first among equal remainders.
    quota[torch.sort(quota - exact, stable=True).indices[:short]] += 1
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label, take in zip(classes.tolist(), quota.tolist(), strict=True):
        members = (labels == label).nonzero().squeeze(1)
        chosen.append(members[torch.randperm(len(members), generator=generator)[:take]])
    return torch.cat(chosen).sort().values


def drawn(count: int | None, total: int) -> bool:
    """Whether scoring ``count`` of ``total`` samples draws a subset. Results over a drawn subset are keyed
    apart from those stored when advsec scored the first ``count`` samples instead."""
    return count is not None and count < total


def subset_size(count: int | None, total: int) -> int:
    """How many of ``total`` samples scoring ``count`` of them scores: all for None, at most ``total``."""
    return count if drawn(count, total) else total


def draw_seed(purpose: str, seed: int) -> int:
    """The seed of the subset drawn for ``purpose`` ("test", "members") in a run seeded with ``seed``:
    different purposes draw independently."""
    return key_seed(content_key({"subset": purpose}), seed)


def describe(labels: torch.Tensor, chosen: torch.Tensor, classes: tuple[str, ...], seed: int) -> dict:
    """What a run stores about the samples it scored: how many of how many, how they were drawn, how many
    of each class, and their indices when they are not all of them."""
    subset = drawn(len(chosen), len(labels))
    counts = torch.bincount(labels[chosen], minlength=len(classes)).tolist()
    return {
        "samples": len(chosen),
        "of": len(labels),
        "rule": f"stratified by class, seed {seed}" if subset else "all, in order",
        "per_class": dict(zip(classes, counts, strict=True)),
        "indices": chosen.tolist() if subset else None,
    }

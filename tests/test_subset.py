"""The subsets a run scores are drawn from every class in proportion, never the first N of a file."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advsec.data.subset import describe, stratified


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    share=st.floats(0.0, 1.2),
    seed=st.integers(0, 2**31),
    shuffled=st.booleans(),
)
def test_each_class_gets_its_share_and_nothing_twice(sizes, share, seed, shuffled) -> None:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    if shuffled:
        labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    count = round(share * len(labels))
    chosen = stratified(labels, count, seed)
    assert len(chosen) == min(count, len(labels))
    assert chosen.tolist() == sorted(set(chosen.tolist()))  # sorted, each sample at most once
    assert torch.equal(stratified(labels, count, seed), chosen)  # the same draw for the same seed
    if len(chosen) < len(labels):
        got = torch.bincount(labels[chosen], minlength=len(sizes)).tolist()
        for n, taken in zip(sizes, got, strict=True):
            assert abs(taken - n * count / len(labels)) < 1  # within rounding of the class's share


def test_all_samples_in_order_when_none_are_left_out() -> None:
    labels = torch.tensor([2, 0, 1, 1])
    assert stratified(labels, None, 0).tolist() == stratified(labels, 9, 0).tolist() == [0, 1, 2, 3]
    assert describe(labels, torch.arange(4), ("a", "b", "c"), 0)["indices"] is None


def test_a_file_sorted_by_class_gives_every_class_and_seeds_give_other_draws() -> None:
    labels = torch.arange(10).repeat_interleave(100)  # sorted: the first 100 are all class 0
    chosen = stratified(labels, 100, 0)
    assert torch.bincount(labels[chosen]).tolist() == [10] * 10
    assert not torch.equal(chosen, stratified(labels, 100, 1))
    found = describe(labels, chosen, tuple("abcdefghij"), 0)
    assert found["per_class"] == dict.fromkeys("abcdefghij", 10)
    assert found["rule"] == "stratified by class, seed 0" and found["indices"] == chosen.tolist()


def test_membership_members_are_training_rows_drawn_by_class(digits) -> None:
    from advsec.defenses.standard import Standard
    from advsec.harness import scored_members
    from advsec.spec import DefenseSpec, TrainConfig
    from advsec.train import trained_on

    trained = DefenseSpec("standard", "standard", {}, TrainConfig())
    checkpoint = DefenseSpec("standard", "mine", {}, TrainConfig(), model="mine")
    learned = set(trained_on(digits, Standard(), 0).tolist())
    for defense, pool in ((trained, learned), (checkpoint, set(range(len(digits.y_train))))):
        members = scored_members(digits, defense, Standard(), 0, 200)
        assert len(set(members.tolist())) == 200 and set(members.tolist()) <= pool
        shares = torch.bincount(digits.y_train[torch.tensor(sorted(pool))], minlength=10) / len(pool)
        counts = torch.bincount(digits.y_train[members], minlength=10)
        assert ((counts - 200 * shares).abs() < 1).all()  # each class its share of the members

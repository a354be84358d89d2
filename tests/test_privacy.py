"""Privacy cost: membership inference finds a model that memorized its training set, not one that learned."""

import dataclasses

import pytest
import torch

from advsec.defenses.standard import Standard
from advsec.privacy import membership_inference, threshold_attack
from advsec.progress import Progress
from advsec.spec import TrainConfig
from advsec.threat import ThreatModel
from advsec.train import build_model, train
from tests.runs import run_json, small_spec

CPU = torch.device("cpu")


def test_the_threshold_attack_is_exact_on_separated_losses_and_chance_on_equal_ones():
    low, high = torch.linspace(0, 1, 100), torch.linspace(2, 3, 100)
    accuracy, advantage = threshold_attack(low, high)  # every member below every non-member
    # Worked by hand: the cut is fitted on the even-indexed losses, so it is the highest even-indexed
    # member's, low[98] = 98/99. Of the odd-indexed members scored, only low[99] = 1 lies above it: 49 of
    # 50 are caught (0.98) and no non-member is (0.0).
    assert advantage == pytest.approx(0.98, abs=1e-6)
    assert accuracy == pytest.approx(0.99, abs=1e-6)
    same = torch.rand(2000, generator=torch.Generator().manual_seed(0))
    accuracy, advantage = threshold_attack(same, same[torch.randperm(2000)])
    assert abs(advantage) < 0.06 and accuracy == (1 + advantage) / 2


def _trained(digits, samples: int | None, epochs: int):
    data = dataclasses.replace(digits, x_train=digits.x_train[:samples], y_train=digits.y_train[:samples])
    model = build_model("mlp", digits, 0)
    train(model, data, Standard(), TrainConfig(epochs=epochs, batch_size=32), 0, device=CPU,
          progress=Progress(quiet=True))  # fmt: skip
    found = membership_inference(
        model, (data.x_train[:300], data.y_train[:300]), (digits.x_test[:300], digits.y_test[:300]),
        threat=ThreatModel("linf", 0.1, digits.bounds), batch=256,
    )  # fmt: skip
    return {m.signal: m.advantage for m in found}


@pytest.mark.slow  # 3 s; leakage is measured by default in test_lira (LiRA beside this loss threshold)
def test_a_memorizing_model_leaks_membership_and_a_generalizing_one_does_not(digits):
    memorized = _trained(digits, samples=200, epochs=300)  # 200 samples, seen 300 times each
    generalized = _trained(digits, samples=None, epochs=30)
    assert memorized["loss"] > 0.25 and memorized["adversarial loss"] > 0.25
    assert abs(generalized["loss"]) < 0.1 and abs(generalized["adversarial loss"]) < 0.1


def test_every_defense_gets_a_privacy_cost_in_the_scorecard(tmp_path):
    (defense,) = run_json(tmp_path, small_spec(epochs=5))["defenses"]
    assert set(defense["privacy"]) == {"loss", "adversarial loss"}
    assert all(m["members"] == m["nonmembers"] == 100 and -1 <= m["advantage"] <= 1
               for m in defense["privacy"].values())  # fmt: skip
    assert "MI advantage (loss)" in (tmp_path / "run" / "report.md").read_text()

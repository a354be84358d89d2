"""What a model and a spec must show before anything is attacked, so that no number is silently wrong.

A model whose clean accuracy is not clearly above chance measures its loader, not its robustness: inputs
not normalized the way it was trained, classes numbered in another order, channels swapped, weights never
loaded. So does one far from the accuracy its owner states. Both stop the run (unless the check is turned
off on purpose), whoever trained the model: an adversarial training that collapsed is caught the same way.
A budget as large as the data's range makes every input reachable, and is refused where the spec meets
its data.
"""

from __future__ import annotations

import math

from advsec.data import Dataset
from advsec.errors import SpecError, UsageError
from advsec.results import clopper_pearson
from advsec.spec import ModelSpec, Spec

TURN_OFF = (
    "to evaluate it anyway, turn the check off: [evaluation] clean_check = false in a spec, --no-clean-check "
    "on the command line, clean_check=False in advsec.evaluate"
)
CHECKPOINT_CAUSES = (
    "inputs not normalized as in its training (declare mean and std), classes numbered in another order "
    "(give the class order), channels in another order (RGB/BGR, grayscale), untrained or unloaded weights"
)
TRAINING_CAUSES = (
    "too few epochs, a learning rate too high, or an adversarial budget the training collapsed under (a "
    "warm-up helps)"
)


class CleanAccuracyError(UsageError):
    """A model's clean accuracy says it is not the model its owner meant to evaluate."""


def check_clean_accuracy(
    where: str, correct: int, n: int, classes: int, *, expected: float | None, brought: bool
) -> None:
    """Refuse a model that gets ``correct`` of ``n`` clean samples right when the 95 % Clopper–Pearson
    interval of that rate does not lie above chance (1/``classes``), or does not contain the accuracy the
    user ``expected``. ``brought``: a model the user brought (a checkpoint, a module), not one advsec
    trained; it decides which causes the message names."""
    if n == 0:
        return
    low, high = clopper_pearson(correct, n)
    measured = f"clean accuracy {_percent(correct / n)} [{_percent(low)}, {_percent(high)}] on {n} samples"
    causes = f"usual causes, most likely first: {CHECKPOINT_CAUSES if brought else TRAINING_CAUSES}"
    chance = 1 / classes
    if low <= chance:
        side = "below" if high < chance else "not above"
        raise CleanAccuracyError(
            f"{where}: {measured}, {side} chance for {classes} classes ({_percent(chance)}); {causes}; "
            f"{TURN_OFF}"
        )
    if expected is not None and not low <= expected <= high:
        raise CleanAccuracyError(
            f"{where}: {measured}, but its stated accuracy is {_percent(expected)} (expect_clean), outside "
            f"that interval; {causes}; or the stated figure was measured on other samples; {TURN_OFF}"
        )


NO_NORMALIZATION = (
    "no input normalization declared, so it sees the data as stored; if it was trained on normalized inputs, "
    "declare their mean and std (mean 0 and std 1 say it was not, and silence this)"
)


def normalization_warning(entry: ModelSpec) -> str | None:
    """A warning for a model the user brought with no input normalization declared, else None."""
    return NO_NORMALIZATION if entry.mean is None and entry.std is None else None


def check_budgets(spec: Spec, dataset: Dataset) -> None:
    """Refuse an ℓ∞ or ℓ2 budget as large as the data's range: ℓ∞ ε ≥ high − low, or ℓ2 ε ≥ the diameter
    of the input box, leaves no constraint at all. An ℓ∞ ε above 1 on data in [0, 1] reads like pixel
    levels out of 255."""
    low, high = dataset.bounds
    width = high - low
    reach = {"linf": width, "l2": width * math.sqrt(math.prod(dataset.input_shape))}
    for i, threat in enumerate(spec.threats):
        if threat.norm not in reach:
            continue  # relative (dB), add-only (words) or area (patch) budgets have ranges of their own
        for eps in threat.eps:
            if eps < reach[threat.norm]:
                continue
            extent = "range" if threat.norm == "linf" else "diameter"
            pixels = threat.norm == "linf" and (low, high) == (0, 1)
            meant = f"; did you mean {eps:g}/255 = {eps / 255:.4g}?" if pixels else ""
            raise SpecError(
                f"threats[{i}].eps: {threat.norm} ε {eps:g} is as large as the data's {extent} "
                f"({reach[threat.norm]:.4g} for bounds [{low:g}, {high:g}]): every input in the box is "
                f"within reach, so no model could be robust{meant}"
            )


def _percent(rate: float) -> str:
    return f"{100 * rate:.1f} %"

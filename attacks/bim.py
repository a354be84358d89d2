"""BIM (Kurakin, Goodfellow & Bengio 2016): iterated FGSM from the clean input, no random start."""

from __future__ import annotations

from dataclasses import dataclass

from advsec.attacks.pgd import PGD


@dataclass
class BIM(PGD):
    """Basic iterative method: PGD without the random start, reaching 1.25·eps in total (Kurakin et al.)."""

    default_reach = 1.25
    steps: int = 10
    random_start: bool = False

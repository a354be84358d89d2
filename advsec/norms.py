"""The norms a budget can be given in, apart from the tensor code that enforces them (:mod:`advsec.threat`),
so that specs and reports can name them without importing torch."""

from __future__ import annotations

from typing import Literal

Norm = Literal["linf", "l2", "db", "snr", "words", "patch"]
NORMS: tuple[Norm, ...] = ("linf", "l2", "db", "snr", "words", "patch")
# The image norm each budget's ball has the shape of: the audio budgets are relative linf and l2 balls.
# ``words`` (Spambase, add-only: advsec.data.spambase) is an l1 ball on its word features, projected exactly
# and ascended on the steepest word (ThreatModel.ascend); "l2" here only names it for generic attacks.
# ``patch`` is an linf ball as wide as the input's bounds over one window of the input, nothing outside it.
GEOMETRY: dict[str, Literal["linf", "l2"]] = {
    "linf": "linf", "l2": "l2", "db": "linf", "snr": "l2", "words": "l2", "patch": "linf"
}  # fmt: skip

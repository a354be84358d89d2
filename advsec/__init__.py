"""advsec: an adversarial robustness and security testbed.

Public API for plugin authors: subclass :class:`Attack` or :class:`Defense` (as dataclasses), use the
:class:`ThreatModel` you are handed, and register the class through an entry point or ``--plugin FILE``.
For a model and tensors in memory: :func:`evaluate` (advsec.api).
"""

from advsec.version import __version__

__all__ = ["Attack", "Defense", "ThreatModel", "__version__", "evaluate", "gradient_attack"]


def __getattr__(name: str):  # the CLI imports advsec without paying for torch until it needs it
    if name in ("Attack", "gradient_attack"):
        from advsec import attack

        return getattr(attack, name)
    if name == "Defense":
        from advsec.defense import Defense

        return Defense
    if name == "evaluate":
        from advsec.api import evaluate

        return evaluate
    if name == "ThreatModel":
        from advsec.threat import ThreatModel

        return ThreatModel
    raise AttributeError(f"module 'advsec' has no attribute {name!r}")

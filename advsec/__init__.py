"""advsec: an adversarial robustness and security testbed.

Public API for plugin authors: subclass :class:`Attack` or :class:`Defense` (as dataclasses), use the
:class:`ThreatModel` you are handed, and register the class through an entry point or ``--plugin FILE``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("advsec")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["Attack", "Defense", "ThreatModel", "__version__", "gradient_attack"]


def __getattr__(name: str):  # the CLI imports advsec without paying for torch until it needs it
    if name in ("Attack", "gradient_attack"):
        from advsec import attack

        return getattr(attack, name)
    if name == "Defense":
        from advsec.defense import Defense

        return Defense
    if name == "ThreatModel":
        from advsec.threat import ThreatModel

        return ThreatModel
    raise AttributeError(f"module 'advsec' has no attribute {name!r}")

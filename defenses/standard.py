"""Standard training: cross-entropy on clean inputs, the undefended baseline."""

from __future__ import annotations

from dataclasses import dataclass

from advsec.defense import Defense


@dataclass
class Standard(Defense):
    """No defense: plain cross-entropy training on clean inputs."""

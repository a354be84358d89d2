"""Plugin registries: attacks, defenses, generators, datasets and models, all through one door.

Entries come from Python entry points (our built-ins are declared in our own pyproject exactly as a
third-party package declares its plugins) and from local files passed with ``--plugin FILE.py``. Nothing
is imported until it is used, so one broken plugin never breaks the others.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from advsec.errors import PluginError


@dataclass
class Entry:
    """One named plugin: where it comes from and, once loaded, the object (or the error)."""

    name: str
    target: str  # "module:attribute"
    source: str  # shown to users: which package or file declared it
    conflicts: list[str] = field(default_factory=list)  # other sources claiming the same name
    loaded: Any = None
    error: str | None = None

    def load(self) -> Any:
        if self.conflicts:
            sources = " and ".join(sorted([self.source, *self.conflicts]))
            raise PluginError(f"{self.name!r} is declared twice, by {sources}: uninstall or rename one")
        if self.loaded is None and self.error is None:
            try:
                module_name, _, attribute = self.target.partition(":")
                self.loaded = getattr(importlib.import_module(module_name), attribute)
            except PluginError:
                raise  # already a message for the user (an adapter's own did-you-mean, say)
            except Exception as exc:  # a plugin may fail in any way; report it, keep the others
                self.error = f"{type(exc).__name__}: {exc}"
        if self.error is not None:
            raise PluginError(f"plugin {self.name!r} from {self.source} is broken: {self.error}")
        return self.loaded


class Registry:
    """A name → :class:`Entry` map for one kind of plugin, filled from one entry-point group."""

    def __init__(self, kind: str, group: str, *also: str) -> None:
        self.kind = kind  # "attack", "defense", ...
        self.group = group
        self.groups = (group, *also)  # attacks also serve the generators: a spec names either the same way
        self._entries: dict[str, Entry] | None = None
        self._adapters: dict[str, str] = {}  # prefix → module with names() and load(name)

    def add_adapter(self, prefix: str, module: str) -> None:
        """Serve every ``prefix:NAME`` from ``module`` (imported only when such a name is used or listed)."""
        self._adapters[prefix] = module

    def _discover(self) -> dict[str, Entry]:
        if self._entries is None:
            self._entries = {}
            for point in (p for group in self.groups for p in entry_points(group=group)):
                distribution = point.dist.name if point.dist else "an unknown distribution"
                self._add(Entry(point.name, point.value, f"package {distribution}"))
        return self._entries

    def _add(self, entry: Entry) -> None:
        entries = self._discover()
        known = entries.get(entry.name)
        if known is None:
            entries[entry.name] = entry
        elif known.target != entry.target and entry.source not in known.conflicts:
            known.conflicts.append(entry.source)  # the same target seen twice is one plugin, not a clash

    def register(self, name: str, obj: Any, source: str) -> None:
        """Add an already-imported plugin object (from a ``--plugin`` file)."""
        target = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', name)}"
        self._add(Entry(name, target, source, loaded=obj))

    def names(self) -> list[str]:
        """Installed and file plugins; adapter names (``torchattacks:PGD``) are served on demand."""
        return sorted(name for name in self._discover() if name.partition(":")[0] not in self._adapters)

    def entries(self, *, adapted: bool = False) -> list[Entry]:
        """Every entry; with ``adapted``, also every ``prefix:NAME`` the adapters offer (imports them)."""
        own = [self._discover()[name] for name in self.names()]
        if not adapted:
            return own
        for prefix, module in self._adapters.items():
            try:
                names = importlib.import_module(module).names()
            # An adapter that cannot list its names (its library missing) must not break `advsec list`.
            except Exception as exc:
                own.append(
                    Entry(f"{prefix}:*", module, f"adapter {prefix}", error=f"{type(exc).__name__}: {exc}")
                )
                continue
            own += [self.entry(f"{prefix}:{name}") for name in names]
        return own

    def entry(self, name: str) -> Entry:
        entries = self._discover()
        prefix, colon, rest = name.partition(":")
        if colon and prefix in self._adapters and name not in entries:
            entries[name] = Entry(name, f"{self._adapters[prefix]}:load", f"adapter {prefix}")
            try:
                entries[name].loaded = importlib.import_module(self._adapters[prefix]).load(rest)
            except PluginError:
                del entries[name]
                raise
        if name not in entries:
            raise PluginError(unknown_name_message(self.kind, name, list(entries)))
        return entries[name]

    def get(self, name: str) -> Any:
        """The plugin object registered as ``name`` (imported now if needed)."""
        return self.entry(name).load()


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = (
        f"did you mean {' or '.join(repr(c) for c in close)}?"
        if close
        else f"known: {', '.join(sorted(known))}"
    )
    return f"unknown {kind} {name!r}: {hint}"


attacks = Registry("attack", "advsec.attacks", "advsec.generators")
defenses = Registry("defense", "advsec.defenses")
generators = Registry("generator", "advsec.generators")
datasets = Registry("dataset", "advsec.datasets")
models = Registry("model", "advsec.models")
attacks.add_adapter("torchattacks", "advsec.adapters.torchattacks")
REGISTRIES: dict[str, Registry] = {
    "attacks": attacks,
    "defenses": defenses,
    "generators": generators,
    "datasets": datasets,
    "models": models,
}


def plugin_name(cls: type) -> str:
    """A class's registry name when a file does not give one: ``TinyFGSM`` → ``tiny-fgsm``."""
    explicit = cls.__dict__.get("name")
    if isinstance(explicit, str):
        return explicit
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", cls.__name__).lower()


def load_plugin_file(path: str | Path) -> list[tuple[str, str]]:
    """Import a local plugin file and register every plugin class defined in it.

    Returns ``(registry, name)`` pairs for what was registered.
    """
    from advsec.attack import Attack
    from advsec.data import DatasetSource
    from advsec.defense import Defense
    from advsec.generator import Generator

    path = Path(path)
    if not path.is_file():
        raise PluginError(f"--plugin {path}: no such file")
    module_name = "advsec_plugin_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"--plugin {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise PluginError(f"--plugin {path} failed to import: {type(exc).__name__}: {exc}") from exc
    bases = {attacks: Attack, generators: Generator, defenses: Defense, datasets: DatasetSource}
    found = []
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != module_name or cls.__name__.startswith("_"):
            continue
        for registry, base in bases.items():
            if issubclass(cls, base):
                registry.register(plugin_name(cls), cls, f"file {path}")
                found.append((registry.group, plugin_name(cls)))
    if not found:
        raise PluginError(f"--plugin {path} defines no Attack, Defense or DatasetSource subclass")
    return found

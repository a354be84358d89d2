"""Plugin registries: attacks, defenses, generators, datasets and models, all through one door.

Entries come from Python entry points (our built-ins are declared in our own pyproject exactly as a
third-party package declares its plugins) and from local files passed with ``--plugin FILE.py`` or a spec's
``plugins = [...]``. Nothing is imported until it is used, so one broken plugin never breaks the others.

A plugin is checked against its contract when it is loaded: every method of the base class it overrides
must take what the harness passes, and every capability it declares (the base's ``ClassVar`` annotations:
``stochastic: bool``, ``norms: tuple[Norm, ...]``, ...) must have the declared type. A plugin that breaks
it is refused with the contract in the message, as a broken plugin (``advsec list`` shows it so).

Each entry also knows where it came from (:meth:`Registry.origin`, :func:`plugin_origins`): advsec itself,
a file (path and sha256 of the bytes executed) or an installed package (distribution name and version).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Literal

from advsec.errors import PluginError

OWN_DISTRIBUTION = "advsec"  # entry points it declares are the built-ins
# What an unrestricted attack provides besides the Attack contract (``unrestricted = True``).
UNRESTRICTED_CONTRACT = "advsec.unrestricted:MakesInputs"


@dataclass
class Entry:
    """One named plugin: where it comes from and, once loaded, the object (or the error)."""

    name: str
    target: str  # "module:attribute"
    source: str  # shown to users: which package or file declared it (and how a file was given)
    conflicts: list[str] = field(default_factory=list)  # other sources claiming the same name
    loaded: Any = None
    error: str | None = None  # the whole message the user sees when it is used
    origin: dict[str, Any] = field(default_factory=dict)  # see Registry.origin
    kind: str = "plugin"  # "attack", "defense", ...: how messages call it
    contract: str | None = None  # "module:Base" it must subclass and honour; None checks nothing
    checked: bool = False

    def load(self) -> Any:
        if self.conflicts:
            sources = " and ".join(sorted([self.source, *self.conflicts]))
            raise PluginError(f"{self.name!r} is declared twice, by {sources}: uninstall or rename one")
        if self.loaded is None and self.error is None:
            try:
                self.loaded = _import(self.target)
            except PluginError:
                raise  # already a message for the user (an adapter's own did-you-mean, say)
            except Exception as exc:  # a plugin may fail in any way; report it, keep the others
                self.error = f"plugin {self.name!r} from {self.source} is broken: {type(exc).__name__}: {exc}"
        if self.error is None and not self.checked and self.contract is not None:
            self.checked = True
            problems = contract_violations(self.loaded, _import(self.contract))
            if problems:
                self.error = f"{self.kind} {self.name!r} ({self.source}): {'. Also: '.join(problems)}"
        if self.error is not None:
            raise PluginError(self.error)
        return self.loaded


class Registry:
    """A name → :class:`Entry` map for one kind of plugin, filled from one entry-point group.

    ``contract`` ("module:Base") is the base class its plugins subclass; they are checked against it when
    loaded (:func:`contract_violations`), and a ``--plugin`` file's subclasses of it are registered here.
    """

    def __init__(self, kind: str, group: str, *also: str, contract: str | None = None) -> None:
        self.kind = kind  # "attack", "defense", ...
        self.group = group
        self.groups = (group, *also)  # attacks also serve the generators: a spec names either the same way
        self.contract = contract
        self._entries: dict[str, Entry] | None = None
        self._adapters: dict[str, str] = {}  # prefix → module with names() and load(name)

    def add_adapter(self, prefix: str, module: str) -> None:
        """Serve every ``prefix:NAME`` from ``module`` (imported only when such a name is used or listed)."""
        self._adapters[prefix] = module

    def base(self) -> type:
        """The class this registry's plugins subclass (imported now)."""
        if self.contract is None:
            raise TypeError(f"the {self.kind} registry has no contract class")
        return _import(self.contract)

    def _discover(self) -> dict[str, Entry]:
        if self._entries is None:
            self._entries = {}
            for point in (p for group in self.groups for p in entry_points(group=group)):
                source, origin = _distribution_origin(point.dist)
                self._add(self._entry(point.name, point.value, source, origin))
        return self._entries

    def _entry(self, name: str, target: str, source: str, origin: dict[str, Any], **more: Any) -> Entry:
        return Entry(name, target, source, origin=origin, kind=self.kind, contract=self.contract, **more)

    def _add(self, entry: Entry) -> None:
        entries = self._discover()
        known = entries.get(entry.name)
        if known is None:
            entries[entry.name] = entry
        elif known.target != entry.target and entry.source not in known.conflicts:
            known.conflicts.append(entry.source)  # the same target seen twice is one plugin, not a clash

    def register(self, name: str, obj: Any, source: str, origin: dict[str, Any] | None = None) -> None:
        """Add an already-imported plugin object (from a ``--plugin`` file); checked when first used."""
        target = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', name)}"
        self._add(self._entry(name, target, source, origin or {"source": "file"}, loaded=obj))

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
                source = f"adapter {prefix}"
                error = f"plugin {prefix + ':*'!r} from {source} is broken: {type(exc).__name__}: {exc}"
                own.append(self._entry(f"{prefix}:*", module, source, _adapter_origin(prefix, module),
                                       error=error))  # fmt: skip
                continue
            own += [self.entry(f"{prefix}:{name}") for name in names]
        return own

    def entry(self, name: str) -> Entry:
        entries = self._discover()
        prefix, colon, rest = name.partition(":")
        if colon and prefix in self._adapters and name not in entries:
            module = self._adapters[prefix]
            entries[name] = self._entry(
                name, f"{module}:load", f"adapter {prefix}", _adapter_origin(prefix, module)
            )
            try:
                entries[name].loaded = importlib.import_module(module).load(rest)
            except PluginError:
                del entries[name]
                raise
        if name not in entries:
            raise PluginError(unknown_name_message(self.kind, name, list(entries)))
        return entries[name]

    def get(self, name: str) -> Any:
        """The plugin object registered as ``name`` (imported and checked now if needed)."""
        return self.entry(name).load()

    def origin(self, name: str) -> dict[str, Any]:
        """Where ``name`` comes from, as recorded with a run's results:

        ``{"source": "built-in"}`` (declared by advsec itself), ``{"source": "file", "path": ABSOLUTE,
        "sha256": HEX}`` (a ``--plugin`` or spec ``plugins`` file, hashed as executed), or ``{"source":
        "package", "package": DISTRIBUTION, "version": VERSION}`` (a third-party entry point; an adapter's
        ``torchattacks:NAME`` adds ``"adapter": MODULE``). Does not import the plugin.
        """
        entry = self.entry(name)
        if entry.conflicts:
            entry.load()  # raises: a name declared twice has no single origin
        return dict(entry.origin)


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = (
        f"did you mean {' or '.join(repr(c) for c in close)}?"
        if close
        else f"known: {', '.join(sorted(known))}"
    )
    return f"unknown {kind} {name!r}: {hint}"


attacks = Registry("attack", "advsec.attacks", "advsec.generators", contract="advsec.attack:Attack")
defenses = Registry("defense", "advsec.defenses", contract="advsec.defense:Defense")
generators = Registry("generator", "advsec.generators", contract="advsec.generator:Generator")
datasets = Registry("dataset", "advsec.datasets", contract="advsec.data:DatasetSource")
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


def import_file(path: Path, where: str) -> tuple[ModuleType, str]:
    """Run a local Python file as a module of its own; the module and the sha256 of the bytes that ran.

    ``where`` names the file in messages (which file, and how the user gave it).
    """
    if not path.is_file():
        raise PluginError(f"{where}: no such file")
    module_name = "advsec_plugin_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{where}: not a Python file")
    code = path.read_bytes()
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while the file executes
    try:
        exec(compile(code, str(path), "exec"), module.__dict__)  # the very bytes hashed
    except Exception as exc:
        del sys.modules[module_name]
        raise PluginError(f"{where}: failed to import: {type(exc).__name__}: {exc}") from exc
    return module, hashlib.sha256(code).hexdigest()


def load_plugin_file(path: str | Path, *, via: str = "--plugin") -> list[tuple[str, str]]:
    """Import a local plugin file and register every plugin class defined in it.

    ``via`` says how the user gave the file (``--plugin``, or ``spec key plugins``), for every message
    about it. Returns ``(registry group, name)`` pairs for what was registered.
    """
    path = Path(path)
    where = f"file {path} via {via}"
    module, sha256 = import_file(path, where)
    module_name = module.__name__
    origin = {"source": "file", "path": str(path.resolve()), "sha256": sha256}
    found = []
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != module_name or cls.__name__.startswith("_"):
            continue
        for registry in REGISTRIES.values():
            if registry.contract is not None and issubclass(cls, registry.base()):
                registry.register(plugin_name(cls), cls, where, origin)
                found.append((registry.group, plugin_name(cls)))
    if not found:
        raise PluginError(f"{where}: defines no Attack, Defense or DatasetSource subclass")
    return found


# --- where entries come from ---------------------------------------------------------------------------


def _distribution_origin(dist: Any) -> tuple[str, dict[str, Any]]:
    """How to show an entry point's distribution, and its origin record."""
    if dist is None:
        return "package an unknown distribution", {"source": "package", "package": None, "version": None}
    name = dist.name
    if re.sub(r"[-_.]+", "-", name).lower() == OWN_DISTRIBUTION:
        return f"package {name}", {"source": "built-in"}
    return f"package {name}", {"source": "package", "package": name, "version": dist.version}


def _adapter_origin(prefix: str, module: str) -> dict[str, Any]:
    """An adapter serves another package's attacks: that package (named like the prefix) is the origin."""
    try:
        found = version(prefix)
    except PackageNotFoundError:
        found = None
    return {"source": "package", "package": prefix, "version": found, "adapter": module}


# --- the contract --------------------------------------------------------------------------------------

_MISSING = object()


def contract_violations(obj: Any, base: type) -> list[str]:
    """How ``obj`` breaks the plugin contract of ``base``; empty when it keeps it.

    The contract is read from the framework classes in ``obj``'s bases (those defined where a registry's
    contract class is: :class:`~advsec.attack.Attack`, :class:`~advsec.generator.Generator`,
    :class:`~advsec.defense.Defense` and its ``AdversarialTraining``/``InputTransform``,
    :class:`~advsec.data.DatasetSource`), nearest first; an unrestricted attack adds ``MakesInputs``:

    - each public method they define that ``obj`` overrides must take the calls the harness makes, those
      with only the required arguments and those with every argument (positional ones by position,
      keyword-only ones by name; ``*args``/``**kwargs`` take anything);
    - each ``ClassVar`` they annotate (a capability) must have that type: ``bool`` is a bool, not 1 or
      "yes"; a ``Literal`` one of its values; ``norms`` and ``modalities`` tuples of known norms and domains.
    """
    if not (isinstance(obj, type) and issubclass(obj, base)):
        return [f"is {obj!r}, not a subclass of {base.__module__}.{base.__qualname__}"]
    framework = {registry.base().__module__ for registry in REGISTRIES.values() if registry.contract}
    contracts = [c for c in obj.__mro__ if c.__module__ in framework]
    if getattr(obj, "unrestricted", False) is True:
        contracts.insert(0, _import(UNRESTRICTED_CONTRACT))
    problems: list[str] = []
    seen: set[str] = set()
    for contract in contracts:
        protocol = getattr(contract, "_is_protocol", False)
        for name, member in vars(contract).items():
            if name.startswith("_") or name in seen or not inspect.isfunction(member):
                continue
            seen.add(name)
            if protocol and name == "carriers" and getattr(obj, "source", None) != "carrier":
                continue  # only an attack that starts from carriers makes them (MakesInputs' docstring)
            if (problem := _method_problem(obj, name, member)) is not None:
                problems.append(problem)
        hints = typing.get_type_hints(contract)
        for name in inspect.get_annotations(contract):
            annotation = hints[name]
            if name in seen or not (protocol or typing.get_origin(annotation) is ClassVar):
                continue
            seen.add(name)
            if typing.get_origin(annotation) is ClassVar:
                annotation = typing.get_args(annotation)[0]
            annotation = _narrowed(name, annotation)
            value = getattr(obj, name, _MISSING)
            if value is _MISSING:
                if not (is_dataclass(obj) and name in {f.name for f in fields(obj)}):
                    problems.append(f"has no {name}; the contract is {name}: {_type_text(annotation)}")
            elif not _conforms(value, annotation):
                problems.append(f"{name} = {value!r}; the contract is {name}: {_type_text(annotation)}")
    return problems


def _method_problem(obj: type, name: str, contract: Any) -> str | None:
    """Why ``obj``'s ``name`` cannot take the calls ``contract`` (a base's method) describes, or None."""
    expected = _signature_text(name, contract, returns=True)
    raw = inspect.getattr_static(obj, name, _MISSING)
    if raw is contract:
        return None  # inherited as it is
    if raw is _MISSING:
        return f"has no {name}; the contract is {expected}"
    if isinstance(raw, staticmethod | classmethod):
        function, bound = raw.__func__, isinstance(raw, classmethod)
    elif callable(raw):
        function, bound = raw, inspect.isfunction(raw)  # a function is bound to the instance; else as is
    else:
        return f"{name} = {raw!r} is not a method; the contract is {expected}"
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None  # a callable without a signature (a builtin): nothing to check against
    given = list(inspect.signature(contract).parameters.values())[1:]  # without self
    positional = [p for p in given if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keywords = [p for p in given if p.kind is p.KEYWORD_ONLY]
    for every in (False, True):  # the fewest arguments the harness may pass, then all of them
        args = [None] * bound + [None for p in positional if every or p.default is p.empty]
        kwargs = {p.name: None for p in keywords if every or p.default is p.empty}
        try:
            signature.bind(*args, **kwargs)
        except TypeError:
            shown = _signature_text(name, function, returns=False)
            return f"{shown} cannot take what the harness passes; the contract is {expected}"
    return None


def _signature_text(name: str, function: Any, *, returns: bool) -> str:
    """``wrap(self, model, *, bounds) -> nn.Module``: parameters and defaults, as the source spells them."""
    signature = inspect.signature(function)
    bare = [p.replace(annotation=p.empty) for p in signature.parameters.values()]
    text = f"{name}{signature.replace(parameters=bare, return_annotation=signature.empty)}"
    result = signature.return_annotation
    if returns and result is not signature.empty:
        text += f" -> {result if isinstance(result, str) else _type_text(result)}"
    return text


def _narrowed(name: str, annotation: Any) -> Any:
    """The bases declare ``norms`` and ``modalities`` as ``tuple[str, ...]``; their strings must be norms a
    threat model knows and domains a dataset has."""
    from advsec.data import Dataset
    from advsec.threat import ThreatModel

    known = {"norms": (ThreatModel, "norm"), "modalities": (Dataset, "domain")}
    if name not in known or annotation != tuple[str, ...]:
        return annotation
    owner, attribute = known[name]
    return tuple[typing.get_type_hints(owner)[attribute], ...]


def _conforms(value: Any, annotation: Any) -> bool:
    """Whether ``value`` has the type ``annotation`` says (what this check cannot read, it lets pass)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(_conforms(v, a) for v, a in zip(value, args, strict=True))
    if origin in (list, set, frozenset):
        return isinstance(value, origin) and all(_conforms(v, args[0]) for v in value)
    if annotation in (int, float) and isinstance(value, bool):
        return False  # True is an int to Python, never a count or a size to a plugin
    if annotation is float:
        return isinstance(value, int | float)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _type_text(annotation: Any) -> str:
    """``tuple['linf' | 'l2' | 'db' | 'snr', ...]``, ``bool``, ``str | None``: a type as a user reads it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is None or annotation is type(None):
        return "None"
    if origin is Literal:
        return " | ".join(map(repr, args))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(map(_type_text, args))
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else _type_text(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    return getattr(annotation, "__qualname__", None) or str(annotation)


def _import(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)

"""Evaluation specs: TOML validated into frozen dataclasses, every error naming its key path.

One schema-driven validator (:func:`build`) serves the spec's own tables and every plugin's parameters,
so ``attacks[1].steps: expected int, got 'ten'`` reads the same whether the key is ours or a plugin's.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import advsec.registry as registry
from advsec.errors import AdvsecError, ParameterError, PluginError, SpecError
from advsec.norms import Norm
from advsec.registry import unknown_name_message

TargetMode = Literal["none", "random", "least-likely"]
Target = TargetMode | int  # an int aims every sample at that one class (its index), e.g. "hear a seven"


@dataclass(frozen=True)
class TrainConfig:
    """How a defense's model is trained (shared defaults in ``[train]``, overridable per defense)."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = 0.0
    # "cyclic": the learning rate rises linearly from 0 to `lr` over the first `peak` of training, then
    # falls linearly to 0 (Smith's one-cycle policy, as fast adversarial training uses it).
    schedule: Literal["constant", "cyclic"] = "constant"
    peak: float = 0.4

    def __post_init__(self) -> None:
        if not 0 < self.peak < 1:
            raise ValueError(f"peak must be strictly between 0 and 1, got {self.peak}")


@dataclass(frozen=True)
class DefenseSpec:
    name: str
    label: str
    params: dict[str, Any]
    train: TrainConfig
    family: str = ""  # the entry a sweep expanded this defense from (its label); reports draw it as a curve
    model: str | None = None  # the label of the user's [[models]] entry it deploys, instead of training one
    fine_tune: bool = False  # train that checkpoint further under this defense (training-time defenses)


@dataclass(frozen=True)
class ModelSpec:
    """A model the user brings (:mod:`advsec.user_models`): evaluated as it is, trained further only by a
    defense that asks to fine-tune it."""

    label: str
    architecture: str  # a registered model, "path/to/file.py:ClassName", or a torch.export "file.pt2"
    weights: str | None = None  # .safetensors, or a .pt/.pth state dict (weights only); none for .pt2
    params: dict[str, Any] = field(default_factory=dict)  # the architecture's constructor keywords
    mean: tuple[float, ...] | None = None  # input normalization the model expects, applied inside it
    std: tuple[float, ...] | None = None
    fingerprint: str | None = None  # a hash of an in-memory model's weights (advsec.evaluate); no files
    # The clean accuracy its owner measured: a run whose measured interval misses it stops (advsec.admission).
    expect_clean: float | None = None

    def __post_init__(self) -> None:
        if self.expect_clean is not None and not 0 <= self.expect_clean <= 1:
            raise ParameterError(
                "expect_clean", f"expected a clean accuracy between 0 and 1, got {self.expect_clean!r}"
            )


# A [[models]] entry's weights that asks, by name, for its architecture's initial ones.
INITIAL_WEIGHTS = "initial"


@dataclass(frozen=True)
class AttackSpec:
    name: str
    label: str
    params: dict[str, Any]
    target: Target = "none"
    adaptive: bool = False  # aimed at the defense's adaptive view (BPDA, EOT) rather than the model as is


@dataclass(frozen=True)
class ThreatSpec:
    norm: Norm
    eps: tuple[float, ...]
    aspect: float = 1.0  # a patch's height over its width (advsec.threat.ThreatModel.aspect)

    def __post_init__(self) -> None:
        if not 0 < self.aspect < float("inf"):  # also rejects NaN
            raise ParameterError(
                "aspect", f"expected a patch's height over its width, > 0, got {self.aspect!r}"
            )
        if self.aspect != 1.0 and self.norm != "patch":
            raise ParameterError(
                "aspect", f"only the patch norm has a shape; norm {self.norm!r} takes no aspect"
            )


EOT_AUTO = "auto"  # `[evaluation] eot_draws`: as many draws as each defense's randomness needs
EOT_MOST_DRAWS = 64  # the most draws "auto" gives an expectation


@dataclass(frozen=True)
class EvaluationConfig:
    """Which test samples are attacked and how the attacks combine."""

    samples: int | None = None  # first N test samples; all when unset
    batch_size: int = 512
    cascade: bool = True  # attack only samples every earlier attack left robust
    examples: int = 8  # adversarial examples kept per cell for the report
    # Defenses that are random or non-differentiable are attacked twice: as deployed ("naive") and
    # adaptively, through BPDA and an expectation over `eot_draws` draws of their randomness: "auto"
    # measures the draws per defense (advsec.defense.Expectation) and adds APGD-CE through it; a number
    # fixes the draws and keeps the adaptive stage to the spec's own attacks.
    adaptive: bool = True
    eot_draws: int | Literal["auto"] = EOT_AUTO
    # A random defense's predictions are evaluated this many times; a sample counts only if all agree.
    repeats: int = 5
    # A cell whose sanity checks flag masking, randomness or state is attacked again on its survivors
    # with the attacks those flags call for (advsec.escalate).
    escalate: bool = True
    # "auto": gradient attacks that confirm what they decide in float32 search in bfloat16 where the CPU
    # computes it natively (advsec.precision); "float32": every pass in float32.
    search_precision: Literal["auto", "float32"] = "auto"
    # A model whose clean accuracy is not clearly above chance, or misses its stated one, stops the run
    # before it is attacked (advsec.admission); false evaluates it anyway.
    clean_check: bool = True

    def __post_init__(self) -> None:
        if self.eot_draws != EOT_AUTO and self.eot_draws < 1:
            raise ValueError(f"eot_draws must be >= 1 or {EOT_AUTO!r}, got {self.eot_draws}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")

    @property
    def most_eot_draws(self) -> int:
        """The most draws an expectation averages: ``eot_draws``, or ``EOT_MOST_DRAWS`` for "auto"."""
        return EOT_MOST_DRAWS if self.eot_draws == EOT_AUTO else self.eot_draws


@dataclass(frozen=True)
class CertifyConfig:
    """Cohen et al.'s CERTIFY settings for every defense that can certify (``[certify]``).

    ``n0`` draws select the class, ``n`` further draws bound its probability from below at confidence
    1 − ``alpha``; ``samples`` are the first test samples, the ones ``[evaluation]`` attacks too.
    """

    n0: int = 100
    n: int = 10_000
    alpha: float = 0.001
    samples: int = 500
    batch_size: int = 1000  # noisy copies per forward pass

    def __post_init__(self) -> None:
        for key in ("n0", "n", "samples", "batch_size"):
            if getattr(self, key) < 1:
                raise ParameterError(key, f"expected an integer >= 1, got {getattr(self, key)}")
        if not 0 < self.alpha < 1:
            raise ParameterError("alpha", f"expected a level strictly between 0 and 1, got {self.alpha}")


@dataclass(frozen=True)
class ReplayConfig:
    """The sitting-duck protocol (``[replay]``, :mod:`advsec.replay`): adversarial examples crafted against
    the model at one moment are replayed after each of ``delays`` further queried samples.

    The attacker uses the ``[[attacks]]`` entries labelled in ``attacks`` (all when empty), untargeted, at
    the first threat's norm and ``eps`` (the report's budget when unset). ``samples`` are the first test
    samples; the rest of the test set is the traffic the model answers in between. Each replay is repeated
    ``repeats`` times from the same moment, with fresh randomness.
    """

    delays: tuple[int, ...] = (0, 1, 10, 100, 1000, 10_000)
    samples: int = 200
    repeats: int = 5
    attacks: tuple[str, ...] = ()
    eps: float | None = None

    def __post_init__(self) -> None:
        if (
            not self.delays
            or any(d < 0 for d in self.delays)
            or list(self.delays) != sorted(set(self.delays))
        ):
            raise ParameterError(
                "delays", f"expected distinct integers >= 0 in rising order, got {list(self.delays)}"
            )
        for key in ("samples", "repeats"):
            if getattr(self, key) < 1:
                raise ParameterError(key, f"expected an integer >= 1, got {getattr(self, key)}")
        if self.eps is not None and not self.eps > 0:
            raise ParameterError("eps", f"expected a budget > 0, got {self.eps}")


@dataclass(frozen=True)
class PrivacyConfig:
    """Membership inference (``[privacy]``, :mod:`advsec.privacy`): the loss thresholds always, and offline
    LiRA (:mod:`advsec.lira`) against ``shadows`` shadow models per defense when set; 0 leaves LiRA off, as
    each shadow costs one more training of the defense."""

    shadows: int = 0

    def __post_init__(self) -> None:
        if self.shadows == 1 or self.shadows < 0:
            raise ParameterError(
                "shadows", f"expected 0 (LiRA off) or at least 2 shadow models, got {self.shadows}"
            )


@dataclass(frozen=True)
class DetectionConfig:
    """A fake detector as deployed (``[detection]``, :mod:`advsec.detection`): each defense's model, trained
    on a data set of classes ("real", "fake"), flags an input as fake only when its score clears the
    threshold that flags ``false_alarm`` of the test split's real images, and every protocol evaluates it
    so: the grid's robust numbers are then its detection under attack."""

    false_alarm: float = 0.01

    def __post_init__(self) -> None:
        if not 0 <= self.false_alarm < 1:
            raise ParameterError(
                "false_alarm", f"expected a rate in [0, 1) of real images flagged, got {self.false_alarm}"
            )


@dataclass(frozen=True)
class ReportConfig:
    eps: float | None = None  # the budget of the trade-off chart; the middle of the first grid when unset


@dataclass(frozen=True)
class Spec:
    name: str
    dataset: str
    model: str
    seed: int
    defenses: tuple[DefenseSpec, ...]
    threats: tuple[ThreatSpec, ...]
    attacks: tuple[AttackSpec, ...]
    train: TrainConfig = TrainConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    report: ReportConfig = ReportConfig()
    certify: CertifyConfig | None = None  # certify the defenses that can (``advsec run`` does it too)
    replay: ReplayConfig | None = None  # the sitting-duck protocol (``advsec run`` runs it after the grid)
    privacy: PrivacyConfig = PrivacyConfig()  # membership inference: LiRA's shadow models, if any
    detection: DetectionConfig | None = None  # a fake detector thresholded at a false-alarm rate
    plugins: tuple[str, ...] = ()
    text: str = field(default="", compare=False)
    dataset_params: dict[str, Any] = field(default_factory=dict)  # a `[dataset]` table's, besides its name
    models: tuple[ModelSpec, ...] = ()  # the user's checkpoints, each a row of the grid like a defense

    def checkpoint(self, label: str) -> ModelSpec:
        """The ``[[models]]`` entry labelled ``label``."""
        return next(m for m in self.models if m.label == label)

    @property
    def report_eps(self) -> float:
        if self.report.eps is not None:
            return self.report.eps
        grid = self.threats[0].eps
        return grid[len(grid) // 2]


# The top-level keys and the plugin-entry keys that are ours rather than the plugin's.
_TOP = {
    "name",
    "dataset",
    "model",
    "models",
    "seed",
    "plugins",
    "train",
    "defenses",
    "threats",
    "attacks",
    "evaluation",
    "report",
    "certify",
    "replay",
    "privacy",
    "detection",
}
_DEFENSE_KEYS = {"name", "label", "train", "sweep", "model", "fine_tune"}
_ATTACK_KEYS = {"name", "label", "target"}

# Named cascades a spec can ask for with `[[attacks]] preset = "..."`; each attacks what the last left robust.
PRESETS: dict[str, list[dict[str, Any]]] = {
    # AutoAttack's recipe minus FAB-T: a gradient attack, its targeted variant, then a query attack that
    # gradient masking cannot fool.
    "worst-case": [{"name": "apgd-ce"}, {"name": "apgd-t"}, {"name": "square", "queries": 5000}],
}


def load_spec(path: str | Path) -> Spec:
    """Read and validate a TOML spec file (plugin files its ``plugins`` key lists are loaded first)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror}") from exc
    return parse_spec(text, default_name=path.stem, base_dir=path.parent)


def to_toml(raw: dict[str, Any]) -> str:
    """A spec table as TOML text that :func:`parse_spec` reads back the same: scalars first, then tables,
    then arrays of tables (the shapes specs have; nested tables inside them are written inline)."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in raw.items() if not _is_table(value)]
    for key, value in raw.items():
        tables = [value] if isinstance(value, dict) else value if _is_table(value) else []
        for table in tables:
            header = f"[{key}]" if isinstance(value, dict) else f"[[{key}]]"
            lines += ["", header, *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and bool(value) and isinstance(value[0], dict))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise SpecError(f"cannot write {value!r} as TOML")


def parse_spec(text: str, *, default_name: str = "run", base_dir: Path = Path(".")) -> Spec:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"spec is not valid TOML: {exc}") from exc
    return spec_from_dict(raw, text=text, default_name=default_name, base_dir=base_dir)


def spec_from_dict(
    raw: dict[str, Any], *, text: str, default_name: str = "run", base_dir: Path = Path(".")
) -> Spec:
    """Validate an already-parsed spec table (the CLI's one-off ``train``/``attack`` build one)."""
    _reject_unknown(raw, _TOP, "")
    plugins = tuple(str(base_dir / p) for p in coerce(raw.get("plugins", []), tuple[str, ...], "plugins"))
    for plugin in plugins:
        registry.load_plugin_file(plugin, via="spec key plugins")  # its messages say where it was named

    dataset, dataset_params = _dataset(raw, base_dir)
    model = _plugin_name(raw, "model", registry.models, default="mlp")
    train = build(TrainConfig, _table(raw, "train", ""), "train")
    models = tuple(
        _model(entry, f"models[{i}]", base_dir) for i, entry in enumerate(_array(raw, "models", []))
    )
    defenses = tuple(
        DefenseSpec("standard", m.label, {}, train, family=m.label, model=m.label) for m in models
    ) + tuple(
        defense
        for i, entry in enumerate(_array(raw, "defenses", [] if models else None))
        for defense in _defenses(entry, f"defenses[{i}]", train, models)
    )
    attacks = attack_specs(_array(raw, "attacks"))
    threats = tuple(
        build(ThreatSpec, entry, f"threats[{i}]") for i, entry in enumerate(_array(raw, "threats"))
    )
    _require_unique([d.label for d in defenses], "defenses", "label")
    _require_unique([a.label for a in attacks], "attacks", "label")
    for i, threat in enumerate(threats):
        if not threat.eps or any(not e > 0 for e in threat.eps):
            raise SpecError(
                f"threats[{i}].eps: expected a non-empty list of numbers > 0, got {list(threat.eps)}"
            )
        for other in threats[:i]:
            shared = sorted(set(other.eps) & set(threat.eps))
            if other.norm == threat.norm and other.aspect != threat.aspect and shared:
                raise SpecError(
                    f"threats[{i}].aspect: {threat.norm} at eps {shared} already has another aspect; results "
                    "are keyed by norm and eps, so give each shape eps of its own"
                )
        for j, attack in enumerate(attacks):
            if not registry.attacks.get(attack.name).unrestricted:  # they bring their own bound
                _check_capabilities(attack, threat, f"attacks[{j}]", f"threats[{i}]")

    spec = Spec(
        name=_run_name(raw, default_name),
        dataset=dataset,
        dataset_params=dataset_params,
        models=models,
        model=model,
        seed=coerce(raw.get("seed", 0), int, "seed"),
        defenses=defenses,
        threats=threats,
        attacks=attacks,
        train=train,
        evaluation=build(EvaluationConfig, _table(raw, "evaluation", ""), "evaluation"),
        report=build(ReportConfig, _table(raw, "report", ""), "report"),
        certify=build(CertifyConfig, _table(raw, "certify", ""), "certify") if "certify" in raw else None,
        replay=build(ReplayConfig, _table(raw, "replay", ""), "replay") if "replay" in raw else None,
        privacy=build(PrivacyConfig, _table(raw, "privacy", ""), "privacy"),
        detection=build(DetectionConfig, _table(raw, "detection", ""), "detection")
        if "detection" in raw
        else None,
        plugins=plugins,
        text=text,
    )
    if spec.report.eps is not None and not any(spec.report.eps in t.eps for t in threats):
        raise SpecError(f"report.eps: {spec.report.eps} is not in any threats[].eps grid")
    if spec.certify is not None:
        certifiable(defenses)  # refuse a [certify] table with nothing to certify before any compute
    if spec.replay is not None:
        replay_attacks(spec.attacks, spec.replay)  # refuse unknown or targeted attacks before any compute
    if spec.privacy.shadows:
        lira_trainable(spec.defenses, spec.models)
    return spec


def lira_trainable(defenses: tuple[DefenseSpec, ...], models: tuple[ModelSpec, ...]) -> None:
    """Refuse LiRA (``[privacy] shadows``) for a defense that deploys a ``[[models]]`` checkpoint: shadows
    must be trained the way the target was, and a checkpoint's recipe (its data order, epochs, optimizer,
    augmentations) is the user's, unknown to advsec; shadows of another recipe would calibrate the test
    against the wrong models, and the figures would mislead rather than be missing."""
    labels = [m.label for m in models]
    for defense in (d for d in defenses if d.model is not None):
        entry = f"models[{labels.index(defense.model)}] ({defense.model!r})"
        deploys = entry if defense.label == defense.model else f"defense {defense.label!r} deploys {entry}"
        tuned = ", fine-tuned from a start advsec did not train," if defense.fine_tune else ""
        raise SpecError(
            f"privacy.shadows: LiRA trains shadow models the way the target was trained, but {deploys} is "
            f"a checkpoint{tuned} whose training recipe advsec does not know, so no shadow would be its "
            "like. Remove [privacy] shadows (the checkpoint keeps its loss-threshold figures), or run LiRA "
            "on advsec-trained defenses in a spec without the checkpoint"
        )


# A run's name is the folder its results go to, reports/<name>/: one plain file name, never a path.
_NAME_CHARACTER = re.compile(r"[\w.\- ]")  # letters and digits (any script), '_', '.', '-', ' '
_NAME_BYTES = 100


def _run_name(raw: dict[str, Any], default_name: str) -> str:
    """The spec's ``name`` (else ``default_name``, its file's stem), refused unless a plain folder name."""
    name = coerce(raw.get("name", default_name), str, "name")
    if problem := _name_problem(name):
        given = "name" in raw
        where = "name" if given else "name (none is set, so the spec file's name is used)"
        fix = "" if given else '; set name = "..." in the spec'
        raise SpecError(
            f"{where}: {name!r} {problem}. A run name becomes the folder reports/<name>/, so it must be a "
            "plain name: letters, digits, '-', '_', '.' and spaces, no path separators, not starting with "
            f"'.' or '-'{fix}. To write elsewhere, use --out"
        )
    return name


def _name_problem(name: str) -> str | None:
    """What keeps ``name`` from being one plain folder name (None when nothing does)."""
    if not name.strip():
        return "is empty or blank"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if name[0] in ".-":
        return f"starts with {name[0]!r}"
    if odd := next((c for c in name if not _NAME_CHARACTER.fullmatch(c)), None):
        return f"contains {odd!r}"
    if name != name.strip():
        return "starts or ends with a space"
    if len(name.encode()) > _NAME_BYTES:
        return f"is {len(name.encode())} bytes long, over {_NAME_BYTES}"
    return None


def replay_attacks(attacks: tuple[AttackSpec, ...], replay: ReplayConfig) -> list[AttackSpec]:
    """The ``[[attacks]]`` entries ``[replay]`` crafts with (its labels; all when unset), all untargeted."""
    by_label = {a.label: a for a in attacks}
    for label in replay.attacks:
        if label not in by_label:
            raise SpecError(
                f"replay.attacks: no [[attacks]] entry is labelled {label!r}; "
                f"the labels are {', '.join(map(repr, by_label))}"
            )

    def crafts(attack: AttackSpec) -> bool:  # per sample, within a budget
        cls = registry.attacks.get(attack.name)
        return cls.kind != "generator" and not cls.unrestricted

    chosen = [by_label[label] for label in replay.attacks] or [a for a in attacks if crafts(a)]
    for attack in chosen:
        if not crafts(attack):
            raise SpecError(
                f"replay.attacks: {attack.label!r} is not a per-sample attack in a budget, as replay needs"
            )
        if attack.target != "none":
            raise SpecError(
                f"replay.attacks: {attack.label!r} is targeted; replay measures untargeted success"
            )
    return chosen


def certifiable(defenses: tuple[DefenseSpec, ...]) -> list[DefenseSpec]:
    """The defenses Cohen et al.'s certificate applies to (``certifiable``); an error when there are none."""
    found = [d for d in defenses if registry.defenses.get(d.name).certifiable]
    if not found:
        raise SpecError(
            'certify: no defense in the spec can certify; add one, e.g. [[defenses]] name = "smoothing"'
        )
    return found


def _model(entry: dict[str, Any], path: str, base_dir: Path) -> ModelSpec:
    """A ``[[models]]`` entry; its files are the spec file's folder's when relative."""
    model = build(ModelSpec, {k: v for k, v in entry.items() if k != "params"}, path)
    params = _table(entry, "params", path)
    named = model.weights in (None, INITIAL_WEIGHTS)
    files = {"weights": model.weights if named else str(base_dir / model.weights)}
    if model.architecture.endswith(".pt2") or ".py:" in model.architecture:
        files["architecture"] = str(base_dir / model.architecture)
    else:
        _plugin_name(entry, "architecture", registry.models, path=path)
    return dataclasses.replace(model, params=params, **files)


def _defenses(
    entry: dict[str, Any], path: str, train: TrainConfig, checkpoints: tuple[ModelSpec, ...]
) -> list[DefenseSpec]:
    """One defense, or one per value of the parameter its ``sweep`` table varies (a trade-off curve)."""
    name = _plugin_name(entry, "name", registry.defenses, path=path)
    params = {k: v for k, v in entry.items() if k not in _DEFENSE_KEYS}
    train = build(TrainConfig, _table(entry, "train", path), f"{path}.train", defaults=train)
    label = coerce(entry.get("label", name), str, f"{path}.label")
    model, fine_tune = _checkpoint(entry, name, path, checkpoints)
    deploys = {"family": label, "model": model, "fine_tune": fine_tune}
    sweep = _table(entry, "sweep", path)
    if not sweep:
        make_plugin(registry.defenses.get(name), params, path)  # validate now, before any compute
        return [DefenseSpec(name, label, params, train, **deploys)]
    if len(sweep) != 1:
        raise SpecError(f"{path}.sweep: sweep one parameter per entry (a curve), got {', '.join(sweep)}")
    [(key, values)] = sweep.items()
    where = f"{path}.sweep.{key}"
    if not isinstance(values, list) or len(values) < 2:
        raise SpecError(f"{where}: expected a list of at least two values, got {_describe(values)}")
    if key in params:
        raise SpecError(f"{where}: {key!r} is also set directly; set it in one place")
    cls = registry.defenses.get(name)
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    _reject_unknown(sweep, fields, f"{path}.sweep")
    out = []
    for i, value in enumerate(values):
        value = coerce(value, typing.get_type_hints(cls)[key], f"{where}[{i}]")
        swept = {**params, key: value}
        make_plugin(cls, swept, path)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        out.append(DefenseSpec(name, f"{label} {key}={shown}", swept, train, **deploys))
    return out


def _checkpoint(
    entry: dict[str, Any], name: str, path: str, checkpoints: tuple[ModelSpec, ...]
) -> tuple[str | None, bool]:
    """The ``[[models]]`` label a defense deploys (``model = "..."``) and whether it fine-tunes it.

    A checkpoint is evaluated as it is, so a defense that acts by training needs ``fine_tune = true``
    (training the checkpoint further with the defense's loss); one that builds its own networks (an
    ensemble) cannot start from one checkpoint at all."""
    fine_tune = coerce(entry.get("fine_tune", False), bool, f"{path}.fine_tune")
    if "model" not in entry:
        if fine_tune:
            raise SpecError(f"{path}.fine_tune: fine-tunes a [[models]] checkpoint; name it with model")
        return None, False
    label = coerce(entry["model"], str, f"{path}.model")
    labels = [m.label for m in checkpoints]
    if label not in labels:
        raise SpecError(f"{path}.model: {unknown_name_message('[[models]] label', label, labels)}")
    cls, base = registry.defenses.get(name), registry.defenses.base()
    if cls.network is not base.network:
        raise SpecError(
            f"{path}: {name!r} builds networks of its own, so it cannot deploy checkpoint {label!r}"
        )
    if fine_tune and next(m for m in checkpoints if m.label == label).architecture.endswith(".pt2"):
        raise SpecError(
            f"{path}.fine_tune: {label!r} is a torch.export archive, which cannot be trained; give its "
            "architecture and weights instead"
        )
    if cls.wrap is base.wrap and not fine_tune:
        raise SpecError(
            f"{path}: {name!r} acts by training the model, but model {label!r} is a checkpoint evaluated "
            "as it is; set fine_tune = true to train it further under this defense, wrap it in an "
            "inference-time defense (bit-depth, random-resize-pad, smoothing, the dynamic ones), or "
            "evaluate the checkpoint itself"
        )
    return label, fine_tune


def attack_specs(entries: list[dict[str, Any]]) -> tuple[AttackSpec, ...]:
    """``[[attacks]]`` tables (attacks or presets) as the spec would read them."""
    return tuple(attack for i, entry in enumerate(entries) for attack in _attacks(entry, f"attacks[{i}]"))


def _attacks(entry: dict[str, Any], path: str) -> list[AttackSpec]:
    """One attack, or the cascade a ``preset`` names."""
    if "preset" not in entry:
        return [_attack(entry, path)]
    _reject_unknown(entry, {"preset"}, path)
    preset = coerce(entry["preset"], str, f"{path}.preset")
    if preset not in PRESETS:
        raise SpecError(f"{path}.preset: {unknown_name_message('preset', preset, list(PRESETS))}")
    return [_attack(member, f"{path} (preset {preset}: {member['name']})") for member in PRESETS[preset]]


def _attack(entry: dict[str, Any], path: str) -> AttackSpec:
    name = _plugin_name(entry, "name", registry.attacks, path=path)
    params = {k: v for k, v in entry.items() if k not in _ATTACK_KEYS}
    cls = registry.attacks.get(name)
    make_plugin(cls, params, path)
    target = entry.get("target", "none")
    if target not in typing.get_args(TargetMode) and not (type(target) is int and target >= 0):
        raise SpecError(
            f"{path}.target: expected a class index (0, 1, …) or one of 'none', 'random', 'least-likely', "
            f"got {target!r}"
        )
    if target != "none" and not cls.targeted:
        raise SpecError(
            f"{path}.target: attack {name!r} is untargeted; remove 'target' or pick a targeted attack"
        )
    if cls.kind == "generator" and target in ("random", "least-likely"):
        raise SpecError(
            f"{path}.target: generator {name!r} learns one target before it attacks; give a class index"
        )
    if target == "none" and cls.needs_target:
        raise SpecError(
            f"{path}.target: attack {name!r} needs a target: a class index, 'random' or 'least-likely'"
        )
    label = coerce(entry.get("label", name if target == "none" else f"{name}-{target}"), str, f"{path}.label")
    return AttackSpec(name=name, label=label, params=params, target=target)


def _check_capabilities(attack: AttackSpec, threat: ThreatSpec, attack_path: str, threat_path: str) -> None:
    cls = registry.attacks.get(attack.name)
    if threat.norm not in cls.norms:
        raise SpecError(
            f"{attack_path}: attack {attack.name!r} supports norms {', '.join(cls.norms)}, "
            f"but {threat_path}.norm is {threat.norm!r}"
        )


def make_plugin(cls: type, params: dict[str, Any], path: str) -> Any:
    """Instantiate a plugin class from spec parameters, validated against its dataclass fields."""
    if not dataclasses.is_dataclass(cls):
        if params:
            raise SpecError(f"{path}: {cls.__name__} takes no parameters, got {', '.join(sorted(params))}")
        return cls()
    return build(cls, params, path)


def build(cls: type, table: dict[str, Any], path: str, defaults: Any = None) -> Any:
    """A ``cls`` dataclass instance from a TOML table; unknown keys and wrong types name their key path."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    _reject_unknown(table, set(fields), path)
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        key = f"{path}.{name}" if path else name
        if name in table:
            values[name] = coerce(table[name], hints[name], key)
        elif defaults is not None:
            values[name] = getattr(defaults, name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SpecError(f"{key}: required key is missing")
    try:
        return cls(**values)
    except ParameterError as exc:
        raise SpecError(f"{path}.{exc.key}: {exc.message}") from exc
    except AdvsecError as exc:
        raise SpecError(f"{path}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{path}: {exc}") from exc


def coerce(value: Any, annotation: Any, path: str) -> Any:
    """Check ``value`` against a type annotation (int, float, bool, str, Literal, Optional, tuple, list)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        if value not in args:
            raise SpecError(f"{path}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return coerce(value, option, path)
            except SpecError as exc:
                errors.append(exc)
        raise errors[0]
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise SpecError(f"{path}: expected a list, got {_describe(value)}")
        item = args[0] if args else Any
        items = [coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, float, str, bool) and (
        not isinstance(value, annotation) or (annotation is int and isinstance(value, bool))
    ):
        raise SpecError(f"{path}: expected {annotation.__name__}, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    kind = {dict: "a table", list: "a list"}.get(type(value))
    return kind or f"{type(value).__name__} {value!r}"


def _reject_unknown(table: dict[str, Any], known: set[str], path: str) -> None:
    for key in table:
        if key not in known:
            where = f"{path}.{key}" if path else key
            close = unknown_name_message("key", key, sorted(known)).split(": ", 1)[1]
            raise SpecError(f"{where}: unknown key ({close})")


def _table(raw: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise SpecError(f"{path + '.' if path else ''}{key}: expected a table, got {_describe(value)}")
    return value


def _array(raw: dict[str, Any], key: str, default: list[Any] | None = None) -> list[dict[str, Any]]:
    """The ``[[key]]`` tables; required (at least one) unless a ``default`` is given for its absence."""
    value = raw.get(key, default)
    if value is None:
        raise SpecError(f"{key}: required; add at least one [[{key}]] table")
    if value == [] and default is not None:
        return value
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise SpecError(f"{key}: expected one or more [[{key}]] tables, got {_describe(value)}")
    return value


def _plugin_name(
    raw: dict[str, Any], key: str, reg: registry.Registry, *, default: str | None = None, path: str = ""
) -> str:
    where = f"{path}.{key}" if path else key
    if key not in raw and default is None:
        raise SpecError(f"{where}: required key is missing")
    name = coerce(raw.get(key, default), str, where)
    try:
        reg.entry(name)
    except PluginError as exc:
        raise SpecError(f"{where}: {exc}") from exc
    return name


def _dataset(raw: dict[str, Any], base_dir: Path) -> tuple[str, dict[str, Any]]:
    """The dataset's name and parameters: ``dataset = "mnist"``, or a ``[dataset]`` table with a ``name`` and
    the plugin's fields (``path = "test.npz"``), validated now. A relative ``path`` is the spec file's."""
    entry = raw.get("dataset", "digits")
    if not isinstance(entry, dict):
        return _plugin_name(raw, "dataset", registry.datasets, default="digits"), {}
    name = _plugin_name(entry, "name", registry.datasets, path="dataset")
    params = {key: value for key, value in entry.items() if key != "name"}
    for key in ("path", "classes_file"):  # files a [dataset] table names are the spec file's when relative
        if isinstance(params.get(key), str):
            params[key] = str(base_dir / params[key])
    make_plugin(registry.datasets.get(name), params, "dataset")
    return name, params


def _require_unique(labels: list[str], array: str, key: str) -> None:
    seen: set[str] = set()
    for i, label in enumerate(labels):
        if label in seen:
            raise SpecError(f"{array}[{i}].{key}: {label!r} is used twice; give each entry its own label")
        seen.add(label)

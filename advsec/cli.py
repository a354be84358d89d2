"""The ``advsec`` command line. User errors print one line and exit 2; ``--debug`` shows the traceback."""

from __future__ import annotations

import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import click

from advsec.errors import AdvsecError, UsageError
from advsec.version import __version__

REPORTS = Path("reports")


class Budget(click.ParamType):
    """A budget as a number or a fraction, e.g. ``0.03`` or ``8/255``."""

    name = "EPS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        numerator, slash, denominator = str(value).partition("/")
        try:
            budget = float(numerator) / float(denominator) if slash else float(numerator)
        except (ValueError, ZeroDivisionError):
            self.fail(f"{value!r} is not a budget: give a number or a fraction like 8/255", param, ctx)
        if not budget > 0:
            self.fail(f"{value!r}: a budget must be > 0", param, ctx)
        return budget


class _Group(click.Group):
    """Turns advsec errors and Ctrl-C into one-line messages instead of tracebacks, each exiting with the
    code README's table gives it: the error's ``exit_code``, 130 for Ctrl-C."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AdvsecError as exc:
            if ctx.meta.get("debug"):
                raise
            click.echo(f"advsec: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except ValueError as exc:
            if "embedded null byte" not in str(exc):  # what os calls raise for a NUL in a path
                raise
            click.echo("advsec: error: a path contains a NUL byte, which no file name can hold", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo(
                "advsec: interrupted; finished cells are saved, run the same command to resume", err=True
            )
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="advsec")
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Adversarial robustness and security testbed: attack, defend, measure, report."""
    ctx.meta["debug"] = debug
    ctx.meta["started"] = time.monotonic()  # before a command's imports: the progress lines' elapsed time


def _plugin_option(f: Any) -> Any:
    return click.option(
        "--plugin",
        "plugins",
        multiple=True,
        type=click.Path(dir_okay=False),
        help="Load plugins from a local .py file.",
    )(f)


def _device_option(f: Any) -> Any:
    return click.option(
        "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
        help="auto: cuda when available.",
    )(f)  # fmt: skip


def _output_options(f: Any) -> Any:
    f = click.option("--json", "as_json", is_flag=True, help="Print results as JSON on stdout.")(f)
    quiet = "No progress bars, log lines or printed results (the store and report are still written)."
    return click.option("--quiet", "-q", is_flag=True, help=quiet)(f)


def _clean_check_option(f: Any) -> Any:
    return click.option(
        "--no-clean-check", "no_clean_check", is_flag=True,
        help="Attack a model even if its clean accuracy is not clearly above chance or off --expect-clean.",
    )(f)  # fmt: skip


def _without_clean_check(spec: Any, no_clean_check: bool) -> Any:
    """``spec`` with ``[evaluation] clean_check`` off when the command line says so."""
    from dataclasses import replace

    return replace(spec, evaluation=replace(spec.evaluation, clean_check=False)) if no_clean_check else spec


def _spec_options(f: Any) -> Any:
    """The SPEC argument and the --out its results go to."""
    f = click.option(
        "--out", type=click.Path(file_okay=False), help="Output directory [default: reports/<spec name>]."
    )(f)
    return click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))(f)


def _load_plugins(plugins: tuple[str, ...]) -> None:
    from advsec.registry import load_plugin_file

    for path in plugins:
        load_plugin_file(path)


def _device(name: str) -> Any:
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here")
    return torch.device(
        "cuda" if name == "auto" and torch.cuda.is_available() else "cpu" if name == "auto" else name
    )


@main.command()
@_spec_options
@click.option("--fresh", is_flag=True, help="Recompute every cell instead of resuming.")
@click.option("--no-report", is_flag=True, help="Only fill the results store.")
@click.option("--max-cost", type=float, help="Refuse to start if the estimated sample passes exceed this.")
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="ray: one task per cell on a Ray cluster (needs pip install 'advsec[ray]').",
)
@click.option("--address", help="With --executor ray: an existing cluster's address [default: start one].")
@_clean_check_option
@_plugin_option
@_device_option
@_output_options
def run(
    spec_path: str,
    out: str | None,
    fresh: bool,
    no_report: bool,
    max_cost: float | None,
    executor: str,
    address: str | None,
    no_clean_check: bool,
    plugins: tuple[str, ...],
    device: str,
    quiet: bool,
    as_json: bool,
) -> None:
    """Run an evaluation spec (TOML): train, attack, store per-sample results, write the report.

    It first prints what the run will cost, in sample passes (forward or backward passes of one sample)
    and in seconds on this machine; where stderr is no terminal it logs a line per cell and attack stage.
    """
    from advsec.spec import load_spec

    _load_plugins(plugins)
    spec = _without_clean_check(load_spec(spec_path), no_clean_check)
    out_dir = Path(out) if out else REPORTS / spec.name
    distributed = None
    if executor == "ray":
        from advsec.distributed import RayExecutor

        distributed = RayExecutor(address)
    elif address:
        raise click.UsageError("--address needs --executor ray")
    _execute(spec, out_dir, fresh, no_report, device, quiet, as_json, max_cost=max_cost, executor=distributed)


def _execute(
    spec: Any,
    out: Path,
    fresh: bool,
    no_report: bool,
    device: str,
    quiet: bool,
    as_json: bool,
    *,
    max_cost: float | None = None,
    executor: Any = None,
) -> None:
    from advsec.progress import Progress
    from advsec.runner import run_spec

    started = click.get_current_context().meta.get("started")
    with Progress(quiet=quiet or as_json, warnings=not quiet, started=started) as progress:
        store = run_spec(spec, out, device=_device(device), progress=progress, fresh=fresh, max_cost=max_cost,
                         executor=executor)  # fmt: skip
    _finish(store, out, no_report, quiet, as_json)


def _finish(store: Any, out: Path, no_report: bool, quiet: bool, as_json: bool) -> None:
    """Write the report (unless ``--no-report``), then print the results."""
    report = None
    if not no_report:
        from advsec.report import build_report

        report = build_report(store, out)
    _print_results(
        store, as_json, extra={"out": str(out), "report": str(report) if report else None}, quiet=quiet
    )


def _print_results(store: Any, as_json: bool, extra: dict[str, Any], quiet: bool = False) -> None:
    if quiet and not as_json:
        return
    from advsec.results import RunResults

    results = RunResults.read(store)
    if as_json:
        click.echo(json.dumps({**extra, **results.to_json()}, indent=2))
        return
    from advsec.terminal import (
        print_certificates,
        print_detection,
        print_replays,
        print_scorecard,
        print_unrestricted,
        print_warnings,
    )

    if results.cells:
        print_scorecard(results.meta.get("name", "run"), results.defenses, results.certified)
    print_warnings(results.warnings)
    if results.certified:
        print_certificates(results.certified)
    if results.replays:
        print_replays(results.replays)
    if results.unrestricted:
        print_unrestricted(results.unrestricted)
    if results.detection:
        print_detection(results.detection)
    if extra.get("report"):
        click.echo(f"report: {extra['report']}")


def _open_run(run_ref: str) -> Any:
    """A run's store, opened read-only: show, report and compare never write it, even when it is damaged."""
    from advsec.store import Store

    path = Path(run_ref)
    candidates = [path / "results.sqlite", path, REPORTS / run_ref / "results.sqlite"]
    for candidate in candidates:
        if candidate.is_file():
            return Store(candidate, readonly=True)
    raise UsageError(f"no run found at {run_ref!r} (looked for {', '.join(map(str, candidates[::2]))})")


@main.command()
@_spec_options
@click.option("--samples", type=int, help="Certify the first N test samples [default: [certify] samples].")
@click.option("--n0", type=int, help="Selection draws per sample [default: [certify] n0].")
@click.option("--n", type=int, help="Estimation draws per sample [default: [certify] n].")
@click.option("--alpha", type=float, help="Each certificate's error probability [default: [certify] alpha].")
@click.option("--batch-size", type=int, help="Noisy copies per forward pass [default: [certify] batch_size].")
@click.option("--no-report", is_flag=True, help="Only fill the results store.")
@_clean_check_option
@_plugin_option
@_device_option
@_output_options
def certify(
    spec_path: str,
    out: str | None,
    samples: int | None,
    n0: int | None,
    n: int | None,
    alpha: float | None,
    batch_size: int | None,
    no_report: bool,
    no_clean_check: bool,
    plugins: tuple[str, ...],
    device: str,
    quiet: bool,
    as_json: bool,
) -> None:
    """Certify the spec's smoothing defenses (Cohen et al.): certified accuracy against ℓ2 radius.

    Uses the spec's [certify] table (or its defaults), overridden by the options; resumes like run.
    """
    from dataclasses import replace

    from advsec.certify import Certification
    from advsec.errors import ParameterError
    from advsec.progress import Progress
    from advsec.protocol import run_side_protocol
    from advsec.runtime import Runtime
    from advsec.spec import CertifyConfig, load_spec
    from advsec.store import Store, claimed

    _load_plugins(plugins)
    spec = _without_clean_check(load_spec(spec_path), no_clean_check)
    options = {"samples": samples, "n0": n0, "n": n, "alpha": alpha, "batch_size": batch_size}
    try:
        settings = replace(
            spec.certify or CertifyConfig(), **{k: v for k, v in options.items() if v is not None}
        )
    except ParameterError as exc:
        raise UsageError(f"--{exc.key.replace('_', '-')}: {exc.message}") from exc
    out_dir = Path(out) if out else REPORTS / spec.name
    store = Store(out_dir / "results.sqlite")
    with claimed(store.path), Progress(quiet=quiet or as_json, warnings=not quiet) as progress:
        runtime = Runtime(spec, device=_device(device), progress=progress, store=store)
        run_side_protocol(Certification(settings), runtime)
    _finish(store, out_dir, no_report, quiet, as_json)


@main.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON on stdout.")
def show(run_ref: str, as_json: bool) -> None:
    """Print a run's results (RUN: a run directory or a name under reports/)."""
    store = _open_run(run_ref)
    _print_results(store, as_json, extra={"out": str(store.path.parent)})


@main.command()
@click.argument("run_ref", metavar="RUN")
@click.option(
    "--out", type=click.Path(file_okay=False), help="Where to write it [default: the run directory]."
)
def report(run_ref: str, out: str | None) -> None:
    """Rebuild a run's report from its store (no training, no attacks)."""
    from advsec.report import build_report

    store = _open_run(run_ref)
    click.echo(build_report(store, Path(out) if out else store.path.parent))


@main.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--out", type=click.Path(file_okay=False), help="Where to write compare.json and compare.md "
              "[default: reports/compare-A-vs-B].")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON on stdout.")
def compare(run_a: str, run_b: str, out: str | None, as_json: bool) -> None:
    """Compare two runs over the same test samples and budgets: accuracy deltas and per-sample flips.

    Samples match by content, however they were loaded; budgets match to the precision they were written
    with (8/255 and 0.031). Runs that are not comparable are refused with the reason, and exit 1."""
    from advsec.compare import compare_runs, to_markdown

    a, b = _open_run(run_a), _open_run(run_b)
    comparison = compare_runs(a, b)
    folder = Path(out) if out else REPORTS / f"compare-{a.path.parent.name}-vs-{b.path.parent.name}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compare.json").write_text(json.dumps(comparison, indent=2))
    (folder / "compare.md").write_text(to_markdown(comparison))
    if as_json:
        click.echo(json.dumps(comparison, indent=2))
        return
    from advsec.terminal import print_comparison

    print_comparison(comparison)
    click.echo(f"written: {folder / 'compare.md'}")


@main.command(name="list")
@click.argument(
    "kind", required=False, type=click.Choice(["attacks", "defenses", "generators", "datasets", "models"])
)
@_plugin_option
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def list_plugins(kind: str | None, plugins: tuple[str, ...], as_json: bool) -> None:
    """Show registered plugins and their capabilities (broken plugins with their error)."""
    from advsec.terminal import plugin_rows, print_plugin_table

    _load_plugins(plugins)
    kinds = [kind] if kind else ["attacks", "defenses", "generators", "datasets", "models"]
    if as_json:
        click.echo(json.dumps({k: plugin_rows(k) for k in kinds}, indent=2))
        return
    for k in kinds:
        print_plugin_table(k)


def _parse_params(pairs: tuple[str, ...], option: str) -> dict[str, Any]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {pair!r}: expected KEY=VALUE")
        try:
            params[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            params[key] = value  # a bare word is a string
    return params


def _one_off_spec(
    name: str,
    dataset: str,
    model: str,
    seed: int,
    defense: str,
    defense_params: tuple[str, ...],
    epochs: int | None,
    extra: dict[str, Any],
) -> Any:
    from advsec.spec import spec_from_dict

    entry = {"name": defense, **_parse_params(defense_params, "--defense-param")}
    if epochs is not None:
        entry["train"] = {"epochs": epochs}
    raw = {"name": name, "dataset": dataset, "model": model, "seed": seed, "defenses": [entry], **extra}
    return spec_from_dict(raw, text=json.dumps(raw, indent=2), default_name=name)


def _model_options(f: Any) -> Any:
    for option in reversed([
        click.option("--dataset", default="digits", show_default=True),
        click.option("--model", default="mlp", show_default=True),
        click.option("--defense", default="standard", show_default=True),
        click.option("--defense-param", "-d", multiple=True, metavar="KEY=VALUE", help="Defense parameter."),
        click.option("--epochs", type=int, help="Training epochs [default: the spec default]."),
        click.option("--seed", type=int, default=0, show_default=True),
    ]):  # fmt: skip
        f = option(f)
    return f


@main.command()
@_model_options
@_plugin_option
@_device_option
@_output_options
def train(
    dataset: str,
    model: str,
    defense: str,
    defense_param: tuple[str, ...],
    epochs: int | None,
    seed: int,
    plugins: tuple[str, ...],
    device: str,
    quiet: bool,
    as_json: bool,
) -> None:
    """Train (or load from the cache) one model under one defense and report its clean accuracy."""
    _load_plugins(plugins)
    spec = _one_off_spec(
        "train",
        dataset,
        model,
        seed,
        defense,
        defense_param,
        epochs,
        {"threats": [{"norm": "linf", "eps": [0.1]}], "attacks": [{"name": "fgsm"}]},
    )
    from advsec.data.load import load_dataset
    from advsec.progress import Progress
    from advsec.runtime import batched_logits
    from advsec.train import cache_dir, load_or_train

    data = load_dataset(spec.dataset, spec.dataset_params)
    chosen = spec.defenses[0]
    torch_device = _device(device)
    with Progress(quiet=quiet or as_json) as progress:
        trained = load_or_train(
            data,
            spec.model,
            chosen.name,
            chosen.params,
            chosen.train,
            spec.seed,
            device=torch_device,
            progress=progress,
        )
    predictions = (
        batched_logits(
            trained.model, data.x_test.to(torch_device), spec.evaluation.batch_size, data.num_classes
        )
        .argmax(1)
        .cpu()
    )
    result = {
        "dataset": dataset,
        "model": model,
        "defense": defense,
        "params": chosen.params,
        "clean_accuracy": (predictions == data.y_test).float().mean().item(),
        "train_seconds": trained.train_seconds,
        "cached": trained.cached,
        "checkpoint": str(cache_dir() / f"{trained.key}.safetensors"),
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
    elif not quiet:
        source = "from cache" if trained.cached else f"trained in {trained.train_seconds:.1f} s"
        click.echo(
            f"{defense} {model} on {dataset}: clean accuracy {100 * result['clean_accuracy']:.1f}% ({source})"
        )
        click.echo(f"checkpoint: {result['checkpoint']}")


@main.command()
@_model_options
@click.option("--attack", "attack_name", default="pgd", show_default=True)
@click.option("--attack-param", "-a", multiple=True, metavar="KEY=VALUE", help="Attack parameter.")
@click.option("--norm", type=click.Choice(["linf", "l2", "db", "snr"]), default="linf", show_default=True)
@click.option(
    "--target",
    default="none",
    show_default=True,
    metavar="CLASS|random|least-likely|none",
    help="Aim at a class (its index) or by a rule; the attack must be targeted.",
)
@click.option(
    "--eps",
    type=Budget(),
    multiple=True,
    required=True,
    help="Budget, e.g. 0.1 or 8/255 (repeat for a grid).",
)
@click.option("--samples", type=int, help="Attack N test samples, drawn by class.")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory [default: reports/attack].")
@_clean_check_option
@_plugin_option
@_device_option
@_output_options
def attack(
    dataset: str,
    model: str,
    defense: str,
    defense_param: tuple[str, ...],
    epochs: int | None,
    seed: int,
    attack_name: str,
    attack_param: tuple[str, ...],
    norm: str,
    target: str,
    eps: tuple[float, ...],
    samples: int | None,
    out: str | None,
    no_clean_check: bool,
    plugins: tuple[str, ...],
    device: str,
    quiet: bool,
    as_json: bool,
) -> None:
    """Attack one trained model with one attack (trains it first if not cached); writes a small report."""
    _load_plugins(plugins)
    extra: dict[str, Any] = {
        "threats": [{"norm": norm, "eps": list(eps)}],
        "attacks": [{"name": attack_name, **_parse_params(attack_param, "--attack-param")}],
    }
    if target != "none":
        extra["attacks"][0]["target"] = int(target) if target.isdigit() else target
    if samples is not None:
        extra["evaluation"] = {"samples": samples}
    spec = _one_off_spec("attack", dataset, model, seed, defense, defense_param, epochs, extra)
    spec = _without_clean_check(spec, no_clean_check)
    _execute(spec, Path(out) if out else REPORTS / "attack", False, False, device, quiet, as_json)


@main.command()
@click.option(
    "--model",
    "architecture",
    required=True,
    metavar="ARCH",
    help="Registered model name, path/to/file.py:ClassName, or a torch.export file.pt2.",
)
@click.option(
    "--weights",
    metavar="FILE|initial",
    help="A .safetensors file or a .pt/.pth state dict (read weights-only); 'initial' evaluates the "
    "architecture's initial weights on purpose.",
)
@click.option("--model-param", "-m", multiple=True, metavar="KEY=VALUE", help="Constructor keyword.")
@click.option("--mean", type=float, multiple=True, help="Input normalization the model expects, per channel.")
@click.option("--std", type=float, multiple=True, help="Its standard deviation, per channel.")
@click.option(
    "--expect-clean", type=float, help="The clean accuracy you measured (0-1); a run far from it stops."
)
@_clean_check_option
@click.option(
    "--data",
    required=True,
    metavar="DATA",
    help="An .npz file (x, y), an image folder (one subfolder per class), or a dataset name.",
)
@click.option(
    "--classes",
    metavar="A,B,…|FILE",
    help="The class names in the model's order, comma-separated or a file of one per line [default: an "
    "image folder's sorted folder names, an .npz's own classes].",
)
@click.option("--grayscale", is_flag=True, help="Read an image folder's images as one channel.")
@click.option("--bounds", type=float, nargs=2, help="The inputs' range [default: 0 1].")
@click.option("--eps", type=Budget(), multiple=True, required=True, help="Budget, e.g. 8/255 (repeatable).")
@click.option("--norm", type=click.Choice(["linf", "l2"]), default="linf", show_default=True)
@click.option(
    "--attacks",
    "attack_names",
    default="worst-case",
    show_default=True,
    help="A preset (worst-case) or attack names separated by commas.",
)
@click.option("--samples", type=int, help="Evaluate only the first N samples.")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory [default: reports/evaluate].")
@_plugin_option
@_device_option
@_output_options
def evaluate(
    architecture: str,
    weights: str | None,
    model_param: tuple[str, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    expect_clean: float | None,
    no_clean_check: bool,
    data: str,
    classes: str | None,
    grayscale: bool,
    bounds: tuple[float, float] | None,
    eps: tuple[float, ...],
    norm: str,
    attack_names: str,
    samples: int | None,
    out: str | None,
    plugins: tuple[str, ...],
    device: str,
    quiet: bool,
    as_json: bool,
) -> None:
    """Evaluate your own checkpoint on your own data: worst case per sample, the usual report. No spec to
    write: the spec it runs is printed, and kept as spec.toml in the output directory."""
    from advsec.spec import INITIAL_WEIGHTS, spec_from_dict, to_toml

    _load_plugins(plugins)
    named = weights if weights not in (None, INITIAL_WEIGHTS) else None
    model: dict[str, Any] = {"label": Path(named or architecture.rpartition(":")[0] or architecture).stem,
                             "architecture": _absolute(architecture)}  # fmt: skip
    if weights:
        model["weights"] = weights if weights == INITIAL_WEIGHTS else str(Path(weights).resolve())
    if model_param:
        model["params"] = _parse_params(model_param, "--model-param")
    if bool(mean) != bool(std):
        given, missing = ("--mean", "--std") if mean else ("--std", "--mean")
        raise UsageError(f"{given} without {missing}: give the normalization's mean and std together")
    if mean:
        model |= {"mean": list(mean), "std": list(std)}
    if expect_clean is not None:
        model["expect_clean"] = expect_clean
    attacks = (
        [{"preset": attack_names}]
        if attack_names == "worst-case"
        else [{"name": name.strip()} for name in attack_names.split(",")]
    )
    raw: dict[str, Any] = {
        "name": "evaluate",
        "dataset": _data_entry(data, bounds, _class_names(classes), grayscale),
        "models": [model],
        "threats": [{"norm": norm, "eps": list(eps)}],
        "attacks": attacks,
    }
    raw["evaluation"] = {"samples": samples} if samples is not None else {}
    if no_clean_check:
        raw["evaluation"]["clean_check"] = False
    if not raw["evaluation"]:
        del raw["evaluation"]
    text = to_toml(raw)
    spec = spec_from_dict(raw, text=text, default_name="evaluate")
    out_dir = Path(out) if out else REPORTS / "evaluate"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "spec.toml").write_text(text)
    if not (quiet or as_json):
        click.echo(f"# the spec this evaluation runs (kept as {out_dir / 'spec.toml'}):\n{text}", err=True)
    _execute(spec, out_dir, False, False, device, quiet, as_json)


def _absolute(architecture: str) -> str:
    """An architecture with its file's path made absolute (the spec is kept elsewhere)."""
    file, colon, name = architecture.rpartition(":")
    if colon and file.endswith(".py"):
        return f"{Path(file).resolve()}:{name}"
    return str(Path(architecture).resolve()) if architecture.endswith(".pt2") else architecture


def _data_entry(
    data: str, bounds: tuple[float, float] | None, classes: list[str] | None, grayscale: bool
) -> Any:
    """The spec's dataset for ``--data``: a file-backed plugin for a path, else a dataset's name."""
    path = Path(data)
    plugin = "npz" if path.suffix == ".npz" else "image-folder" if path.is_dir() else None
    given = {"--bounds": bounds is not None, "--classes": classes is not None, "--grayscale": grayscale}
    if plugin is None:
        if any(given.values()):
            raise UsageError(f"{next(k for k, v in given.items() if v)}: a named dataset declares its own")
        return data
    entry: dict[str, Any] = {"name": plugin, "path": str(path.resolve())}
    if bounds is not None:
        if plugin != "npz":
            raise UsageError("--bounds: an image folder's pixels are read into [0, 1]")
        entry["bounds"] = list(bounds)
    if grayscale:
        if plugin != "image-folder":
            raise UsageError("--grayscale: an .npz holds its inputs' channels as they are")
        entry["grayscale"] = True
    if classes is not None:
        entry["classes"] = classes
    return entry


def _class_names(classes: str | None) -> list[str] | None:
    """``--classes``: a file of one name per line, or names separated by commas."""
    if classes is None:
        return None
    path = Path(classes)
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        names = [name.strip() for name in classes.split(",")]
    if not all(names):
        raise UsageError(f"--classes {classes!r}: a class name is empty")
    return names


@main.command()
@click.argument("dataset", type=click.Choice(["mnist", "fashion-mnist", "fsdd", "cifar10"]))
@click.option(
    "--dir", "root", type=click.Path(file_okay=False), help="Data directory [default: $ADVSEC_DATA]."
)
def download(dataset: str, root: str | None) -> None:
    """Download a dataset's files and verify their sha256 (needs internet)."""
    from advsec.data import cifar10, fsdd
    from advsec.data import download as files

    folder = Path(root) if root else None
    own = {"fsdd": fsdd.download, "cifar10": cifar10.download}  # fetch an archive, then verify its content
    click.echo(own[dataset](folder) if dataset in own else files.download(dataset, folder))


if __name__ == "__main__":
    sys.exit(main())

"""A plugin that breaks the contract the harness relies on is refused when it is loaded, with the contract.

Each plugin file here has its own file and class names: file plugins stay registered for the session.
"""

import importlib.util
import json
import textwrap

import pytest
from click.testing import CliRunner

from advsec import registry
from advsec.cli import main
from advsec.errors import PluginError
from advsec.registry import contract_violations, load_plugin_file
from advsec.spec import parse_spec

WRAP_WITHOUT_BOUNDS = """
    from advsec import Defense

    class {name}(Defense):
        '''Wraps the model, but takes no bounds.'''

        def wrap(self, model):
            return model
"""


def plugin(tmp_path, stem: str, source: str) -> str:
    path = tmp_path / f"{stem}.py"
    path.write_text(textwrap.dedent(source))
    return str(path)


def refusal(kind: str, name: str) -> str:
    with pytest.raises(PluginError) as caught:
        registry.REGISTRIES[kind].get(name)
    return str(caught.value)


def test_every_built_in_plugin_keeps_the_contract():
    adapted = importlib.util.find_spec("torchattacks") is not None  # CI installs it; serves ~50 more
    checked = 0
    for kind, reg in registry.REGISTRIES.items():
        for entry in reg.entries(adapted=adapted and kind == "attacks"):
            obj = entry.load()  # raises the contract's message for any that breaks it
            if reg.contract is not None:
                assert contract_violations(obj, reg.base()) == [], entry.name
                checked += 1
    assert checked >= 40


def test_the_check_reaches_overrides_below_a_built_in():
    # A plugin may subclass a built-in; what it overrides is held to the framework base's contract.
    pgd = registry.attacks.get("pgd")
    bad = type("NarrowPGD", (pgd,), {"perturb": lambda self, model, x, y: x})
    assert contract_violations(bad, registry.attacks.base()) == [
        "perturb(self, model, x, y) cannot take what the harness passes; the contract is "
        "perturb(self, model, x, y, threat, *, target=None, generator=None) -> torch.Tensor"
    ]


def test_a_defense_whose_wrap_takes_no_bounds_is_refused_with_the_contract(tmp_path):
    path = plugin(tmp_path, "wrap_no_bounds", WRAP_WITHOUT_BOUNDS.format(name="WrapNoBounds"))
    assert ("advsec.defenses", "wrap-no-bounds") in load_plugin_file(path)  # listed, refused when used
    assert refusal("defenses", "wrap-no-bounds") == (
        f"defense 'wrap-no-bounds' (file {path} via --plugin): wrap(self, model) cannot take what the "
        "harness passes; the contract is wrap(self, model, *, bounds) -> nn.Module"
    )


@pytest.mark.parametrize(
    ("stem", "signature"),
    [
        ("perturb_no_threat", "self, model, x, y, *, target=None, generator=None"),
        ("perturb_no_target", "self, model, x, y, threat, generator=None"),
        ("perturb_no_generator", "self, model, x, y, threat, *, target=None"),
        ("perturb_needs_more", "self, model, x, y, threat, steps, *, target=None, generator=None"),
    ],
)
def test_an_attack_whose_perturb_cannot_take_the_call_is_refused(tmp_path, stem, signature):
    name = stem.replace("_", "-")
    cls = "".join(part.title() for part in stem.split("_"))
    path = plugin(tmp_path, stem, f"""
        from advsec import Attack

        class {cls}(Attack):
            '''Test attack.'''

            def perturb({signature}):
                return x
    """)  # fmt: skip
    load_plugin_file(path)
    assert refusal("attacks", name) == (
        f"attack {name!r} (file {path} via --plugin): perturb({signature}) cannot take what the harness "
        "passes; the contract is perturb(self, model, x, y, threat, *, target=None, generator=None) -> "
        "torch.Tensor"
    )


@pytest.mark.parametrize(
    ("stem", "base", "line", "expected"),
    [
        ("says_yes", "Defense", 'stochastic = "yes"', "stochastic = 'yes'; the contract is stochastic: bool"),
        ("says_one", "Attack", "targeted = 1", "targeted = 1; the contract is targeted: bool"),
        (
            "knows_l7",
            "Attack",
            'norms = ("linf", "l7")',
            "norms = ('linf', 'l7'); the contract is norms: "
            "tuple['linf' | 'l2' | 'db' | 'snr' | 'words' | 'patch', ...]",
        ),
        (
            "lists_norms",
            "Attack",
            'norms = ["linf"]',
            "norms = ['linf']; the contract is norms: "
            "tuple['linf' | 'l2' | 'db' | 'snr' | 'words' | 'patch', ...]",
        ),
        (
            "magic_kind",
            "Attack",
            'kind = "magic"',
            "kind = 'magic'; the contract is kind: 'gradient' | 'query' | 'generator'",
        ),
        (
            "video_defense",
            "Defense",
            'modalities = ("video",)',
            "modalities = ('video',); the contract is modalities: tuple['image' | 'audio' | 'tabular', ...]",
        ),
        ("streams_text", "Attack", 'streams = "no"', "streams = 'no'; the contract is streams: bool"),
    ],
)
def test_a_capability_of_the_wrong_type_is_refused(tmp_path, stem, base, line, expected):
    name = stem.replace("_", "-")
    cls = "".join(part.title() for part in stem.split("_"))
    path = plugin(tmp_path, stem, f"""
        from advsec import {base}

        class {cls}({base}):
            '''Test plugin.'''
            {line}
    """)  # fmt: skip
    load_plugin_file(path)
    kind = {"Attack": "attack", "Defense": "defense"}[base]
    assert refusal(f"{kind}s", name) == f"{kind} {name!r} (file {path} via --plugin): {expected}"


def test_every_problem_is_named_at_once(tmp_path):
    path = plugin(tmp_path, "two_problems", """
        from advsec import Defense

        class TwoProblems(Defense):
            '''Test defense.'''
            certifiable = "no"

            def loss(self, model, x, y, bounds):
                return model(x).sum()
    """)  # fmt: skip
    load_plugin_file(path)
    message = refusal("defenses", "two-problems")
    assert "loss(self, model, x, y, bounds) cannot take what the harness passes; the contract is " in message
    assert "loss(self, model, x, y, *, bounds, generator=None, progress=1.0) -> torch.Tensor" in message
    assert ". Also: certifiable = 'no'; the contract is certifiable: bool" in message


def test_plugins_that_take_more_than_the_contract_asks_are_accepted(tmp_path):
    path = plugin(tmp_path, "generous_plugins", """
        from dataclasses import dataclass
        from advsec import Attack, Defense

        @dataclass
        class GenerousAttack(Attack):
            '''Takes anything after the threat model.'''
            norms = ("l2",)
            targeted = True

            def perturb(self, model, x, y, threat, **kwargs):
                return x

        class ArgsAttack(Attack):
            '''Takes any positional arguments, and keywords it names, with an extra default.'''

            def perturb(self, *args, target=None, generator=None, restarts=1):
                return args[1]

        class GenerousDefense(Defense):
            '''Renames positional parameters and takes keywords through **kwargs.'''
            stochastic = True

            def loss(self, net, inputs, labels, **kwargs):
                return net(inputs).sum()

            def wrap(self, model, **kwargs):
                return model

            @staticmethod
            def adaptive(deployed):
                return deployed
    """)  # fmt: skip
    load_plugin_file(path)
    assert registry.attacks.get("generous-attack").norms == ("l2",)
    assert registry.attacks.get("args-attack").__name__ == "ArgsAttack"
    assert registry.defenses.get("generous-defense").stochastic is True


def test_unrestricted_attacks_answer_to_their_protocol(tmp_path):
    path = plugin(tmp_path, "bad_maker", """
        from advsec import Attack

        class BadMaker(Attack):
            '''Makes inputs from carriers, but cannot make carriers.'''
            unrestricted = True
            listener = 3

            def bound(self):
                return None
    """)  # fmt: skip
    load_plugin_file(path)
    message = refusal("attacks", "bad-maker")
    assert (
        "has no carriers; the contract is carriers(self, n, like, generator=None) -> torch.Tensor" in message
    )
    assert "bound(self) cannot take what the harness passes; the contract is bound(self, bounds)" in message
    assert "listener = 3; the contract is listener: str" in message


def test_list_shows_a_broken_plugin_with_its_error_and_exits_0(tmp_path):
    path = plugin(tmp_path, "listed_broken", WRAP_WITHOUT_BOUNDS.format(name="ListedBroken"))
    runner = CliRunner()
    listing = runner.invoke(main, ["list", "defenses", "--plugin", path, "--json"])
    assert listing.exit_code == 0, listing.output
    rows = {row["name"]: row for row in json.loads(listing.stdout)["defenses"]}
    assert rows["listed-broken"]["status"] == (
        f"broken: defense 'listed-broken' (file {path} via --plugin): wrap(self, model) cannot take what "
        "the harness passes; the contract is wrap(self, model, *, bounds) -> nn.Module"
    )
    assert rows["standard"]["status"] == "ok"
    table = runner.invoke(main, ["list", "defenses", "--plugin", path])
    assert table.exit_code == 0, table.output
    assert "listed-broken" in table.stdout and "broken: defense" in table.stdout
    assert "wrap(self, model, *, bounds)" in " ".join(table.stdout.replace("│", " ").split())


def test_a_command_that_uses_a_broken_plugin_fails_in_one_line(tmp_path):
    path = plugin(tmp_path, "used_broken", WRAP_WITHOUT_BOUNDS.format(name="UsedBroken"))
    result = CliRunner().invoke(
        main, ["attack", "--plugin", path, "--defense", "used-broken", "--eps", "0.1"]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"advsec: error: defense 'used-broken' (file {path} via --plugin): wrap(self, model) cannot take "
        "what the harness passes; the contract is wrap(self, model, *, bounds) -> nn.Module"
    ]
    assert "Traceback" not in result.output


SPEC = """
    plugins = ["{file}"]
    [[defenses]]
    name = "{defense}"
    [[threats]]
    norm = "linf"
    eps = [0.1]
    [[attacks]]
    name = "fgsm"
"""


def test_errors_about_a_file_from_a_spec_name_the_spec_key(tmp_path):
    plugin(tmp_path, "spec_broken", WRAP_WITHOUT_BOUNDS.format(name="SpecBroken"))
    with pytest.raises(PluginError) as caught:
        parse_spec(SPEC.format(file="spec_broken.py", defense="spec-broken"), base_dir=tmp_path)
    assert str(caught.value).startswith(
        f"defense 'spec-broken' (file {tmp_path / 'spec_broken.py'} via spec key plugins): wrap(self, model)"
    )
    plugin(tmp_path, "spec_unimportable", "import a_module_that_does_not_exist\n")
    with pytest.raises(PluginError, match="via spec key plugins: failed to import: ModuleNotFoundError"):
        parse_spec(SPEC.format(file="spec_unimportable.py", defense="standard"), base_dir=tmp_path)
    with pytest.raises(PluginError, match=r"spec_missing\.py via spec key plugins: no such file"):
        parse_spec(SPEC.format(file="spec_missing.py", defense="standard"), base_dir=tmp_path)
    with pytest.raises(PluginError, match=r"spec_missing\.py via --plugin: no such file"):
        load_plugin_file(tmp_path / "spec_missing.py")


def test_the_table_shows_brackets_in_a_message_as_they_are(tmp_path):
    path = plugin(tmp_path, "bracketed_kind", """
        from advsec import Attack

        class BracketedKind(Attack):
            '''A kind that reads like rich markup.'''
            kind = "[/red][bold]"
    """)  # fmt: skip
    table = CliRunner().invoke(main, ["list", "attacks", "--plugin", path])
    assert table.exit_code == 0, table.output
    assert "kind = '[/red][bold]'" in table.stdout

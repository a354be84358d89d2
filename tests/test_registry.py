"""Plugin discovery: entry points, local files, name clashes, broken plugins and where each came from."""

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest

from advsec import registry
from advsec.attack import Attack
from advsec.errors import PluginError
from advsec.registry import Registry, load_plugin_file, plugin_name
from advsec.runtime import plugin_origins
from advsec.spec import parse_spec


def fake_distribution(root, name: str, entry_points: str, modules: dict[str, str]) -> None:
    """An installed distribution on disk (dist-info + modules), as pip would leave it."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    fake_distribution(
        tmp_path,
        "clashing-plugins",
        """
        [advsec.attacks]
        broken-attack = advsec_test_broken:Broken
        pgd = advsec_test_clash:PGD
        fine-attack = advsec_test_clash:Fine
        """,
        {
            "advsec_test_broken": "import a_module_that_does_not_exist\n",
            "advsec_test_clash": """
                from advsec.attack import Attack
                class PGD(Attack):
                    '''An impostor PGD.'''
                class Fine(Attack):
                    '''A well-behaved third-party attack.'''
                    norms = ("l2",)
            """,
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtins_come_through_entry_points():
    assert {"fgsm", "pgd"} <= set(registry.attacks.names())
    assert {"standard", "pgd-at"} <= set(registry.defenses.names())
    assert {"digits", "mnist", "fashion-mnist"} <= set(registry.datasets.names())
    assert {"mlp", "lenet", "madry-cnn", "wong-cnn"} <= set(registry.models.names())
    assert registry.attacks.entry("pgd").source == "package advsec"
    assert issubclass(registry.attacks.get("pgd"), Attack)


def test_unknown_names_suggest_the_nearest():
    with pytest.raises(PluginError, match="unknown attack 'pgdd': did you mean 'pgd'"):
        registry.attacks.get("pgdd")
    with pytest.raises(PluginError, match=r"unknown defense 'zzz': known: bit-depth, .*, standard"):
        registry.defenses.get("zzz")


def test_third_party_entry_points_are_discovered(third_party):
    attacks = Registry("attack", "advsec.attacks")
    assert attacks.get("fine-attack").norms == ("l2",)
    assert attacks.entry("fine-attack").source == "package clashing-plugins"


def test_a_broken_plugin_is_reported_and_spares_the_others(third_party):
    attacks = Registry("attack", "advsec.attacks")
    with pytest.raises(
        PluginError, match="'broken-attack' from package clashing-plugins is broken: ModuleNotFound"
    ):
        attacks.get("broken-attack")
    assert attacks.get("fgsm") is registry.attacks.get("fgsm")


def test_two_plugins_with_one_name_is_an_error_naming_both(third_party):
    attacks = Registry("attack", "advsec.attacks")
    with pytest.raises(
        PluginError, match="'pgd' is declared twice, by package advsec and package clashing-plugins"
    ):
        attacks.get("pgd")


def test_list_shows_broken_and_clashing_plugins_beside_working_ones(third_party):
    env = {**os.environ, "PYTHONPATH": str(third_party)}
    result = subprocess.run(
        [sys.executable, "-m", "advsec.cli", "list", "attacks", "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    import json

    rows = {row["name"]: row for row in json.loads(result.stdout)["attacks"]}
    assert rows["broken-attack"]["status"].startswith("broken: ")
    assert "a_module_that_does_not_exist" in rows["broken-attack"]["status"]
    assert "declared twice" in rows["pgd"]["status"]
    assert rows["fgsm"]["status"] == "ok" and rows["fgsm"]["norms"] == ["linf", "l2", "db", "snr"]
    assert rows["fine-attack"]["status"] == "ok"


def test_plugin_file_registers_its_classes(tmp_path):
    path = tmp_path / "my_plugins.py"
    path.write_text(
        textwrap.dedent("""
        from dataclasses import dataclass
        from advsec import Attack, Defense

        @dataclass
        class NoisyFGSM(Attack):
            '''Test attack.'''
            scale: float = 1.0

        class _Helper(Attack):
            pass

        class HeavyDefense(Defense):
            name = "heavy"
    """)
    )
    found = load_plugin_file(path)
    assert ("advsec.attacks", "noisy-fgsm") in found and ("advsec.defenses", "heavy") in found
    assert registry.attacks.get("noisy-fgsm").__name__ == "NoisyFGSM"
    assert registry.attacks.entry("noisy-fgsm").source == f"file {path} via --plugin"
    assert "-helper" not in " ".join(registry.attacks.names())


def test_plugin_file_errors_are_clear(tmp_path):
    with pytest.raises(PluginError, match="no such file"):
        load_plugin_file(tmp_path / "missing.py")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match="failed to import: RuntimeError: boom"):
        load_plugin_file(broken)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(PluginError, match="defines no Attack"):
        load_plugin_file(empty)


@pytest.mark.parametrize(
    ("cls_name", "expected"), [("RandFGSM", "rand-fgsm"), ("PGD", "pgd"), ("MyNewAttack", "my-new-attack")]
)
def test_class_names_become_registry_names(cls_name, expected):
    assert plugin_name(type(cls_name, (Attack,), {})) == expected


@pytest.fixture
def packaged(tmp_path, monkeypatch):
    """A third-party distribution declaring an attack and a defense, seen by fresh global registries."""
    fake_distribution(
        tmp_path,
        "origin-plugins",
        """
        [advsec.attacks]
        far-attack = advsec_test_origin:Far
        [advsec.defenses]
        far-defense = advsec_test_origin:FarDefense
        """,
        {
            "advsec_test_origin": """
                from advsec.attack import Attack
                from advsec.defense import Defense
                class Far(Attack):
                    '''An attack from an installed package.'''
                class FarDefense(Defense):
                    '''A defense from an installed package.'''
            """
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for kind in ("attacks", "defenses"):
        old = registry.REGISTRIES[kind]
        fresh = Registry(old.kind, *old.groups, contract=old.contract)
        monkeypatch.setitem(registry.REGISTRIES, kind, fresh)
        monkeypatch.setattr(registry, kind, fresh)
    return tmp_path


def test_each_entry_says_where_it_came_from(packaged, tmp_path):
    assert registry.attacks.origin("pgd") == {"source": "built-in"}
    assert registry.datasets.origin("digits") == {"source": "built-in"}
    assert registry.attacks.origin("far-attack") == {
        "source": "package",
        "package": "origin-plugins",
        "version": "0.1",
    }
    path = tmp_path / "origin_file_plugin.py"
    path.write_text("from advsec import Attack\n\nclass OriginFileAttack(Attack):\n    '''From a file.'''\n")
    load_plugin_file(path)
    assert registry.attacks.origin("origin-file-attack") == {
        "source": "file",
        "path": str(path.resolve()),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def test_a_name_declared_twice_has_no_origin(third_party):
    attacks = Registry("attack", "advsec.attacks")
    with pytest.raises(PluginError, match="declared twice"):
        attacks.origin("pgd")


def test_plugin_origins_cover_everything_a_spec_uses(packaged, tmp_path):
    plugin = tmp_path / "origin_spec_plugins.py"
    plugin.write_text(
        textwrap.dedent("""
        from dataclasses import dataclass
        from advsec import Attack, Defense

        class SpecFileAttack(Attack):
            '''From a spec's plugins key.'''

        @dataclass
        class SpecFileDefense(Defense):
            '''From a spec's plugins key.'''
    """)
    )
    spec = parse_spec(
        textwrap.dedent("""
        plugins = ["origin_spec_plugins.py"]
        dataset = "digits"
        model = "mlp"
        [[defenses]]
        name = "standard"
        [[defenses]]
        name = "spec-file-defense"
        [[defenses]]
        name = "far-defense"
        [[threats]]
        norm = "linf"
        eps = [0.1]
        [[attacks]]
        name = "fgsm"
        [[attacks]]
        name = "spec-file-attack"
        [[attacks]]
        name = "far-attack"
        [[attacks]]
        name = "natural-gan"
        listener = "lenet"
    """),
        base_dir=tmp_path,
    )
    file = {
        "source": "file",
        "path": str(plugin.resolve()),
        "sha256": hashlib.sha256(plugin.read_bytes()).hexdigest(),
    }
    package = {"source": "package", "package": "origin-plugins", "version": "0.1"}
    built_in = {"source": "built-in"}
    assert plugin_origins(spec) == {
        "datasets": {"digits": built_in},
        "models": {"mlp": built_in, "lenet": built_in},  # lenet: natural-gan's listener
        "defenses": {"standard": built_in, "spec-file-defense": file, "far-defense": package},
        "attacks": {
            "fgsm": built_in,
            "spec-file-attack": file,
            "far-attack": package,
            "natural-gan": built_in,
        },
    }

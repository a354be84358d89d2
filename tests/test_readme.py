"""The README's plugin examples are real: the attack runs through --plugin and through an installed entry
point, the defense through --plugin with the signatures the harness calls; every relative link in the README
and docs/ leads to a file and heading that exist."""

import hashlib
import inspect
import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_registry import fake_distribution

SPEC = """
name = "plugin-check"
[train]
epochs = 10
[[defenses]]
name = "standard"
[[threats]]
norm = "linf"
eps = [0.1]
[[attacks]]
name = "rand-fgsm"
alpha = 0.3
[[attacks]]
name = "fgsm"
[evaluation]
cascade = false
"""


DEFENSE_SPEC = """
name = "defense-check"
[train]
epochs = 10
[[defenses]]
name = "dither"
[[threats]]
norm = "linf"
eps = [0.2]
[[attacks]]
name = "pgd"
steps = 10
[evaluation]
eot_draws = 4
repeats = 3
"""


def _readme_example(tmp_path_factory, marker):
    """The plugin file under ``<!-- {marker}: FILE -->`` exactly as the README prints it, saved as FILE."""
    readme = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- {marker}: (\S+) -->\n```python\n(.*?)```", readme, re.S)
    assert match, f"the README lost its {marker}"
    path = tmp_path_factory.mktemp(marker) / match.group(1)
    path.write_text(match.group(2))
    return path


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return _readme_example(tmp_path_factory, "plugin-example")


@pytest.fixture(scope="module")
def defense_example(tmp_path_factory):
    return _readme_example(tmp_path_factory, "defense-example")


def _run(args, env=None):
    result = subprocess.run(
        [sys.executable, "-m", "advsec.cli", *args],
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _check(payload):
    cell = next(c for c in payload["cells"] if c["norm"] == "linf")
    rand_fgsm, fgsm = cell["attacks"]
    assert rand_fgsm["attack"] == "rand-fgsm" and rand_fgsm["backwards"] == rand_fgsm["attacked"]
    # A real attack: it breaks samples, and with part of its budget spent at random it is weaker than FGSM.
    assert rand_fgsm["robust_alone"] < cell["clean_accuracy"] - 0.05
    assert rand_fgsm["robust_alone"] > fgsm["robust_alone"]


def test_example_runs_as_a_plugin_file(example, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    out = _run(["run", str(spec), "--plugin", str(example), "--out", str(tmp_path / "out"), "--json"])
    payload = json.loads(out)
    _check(payload)
    # The run records where its code came from: the file's bytes by hash, advsec's own as built-in.
    sha256 = hashlib.sha256(example.read_bytes()).hexdigest()
    origin = {"source": "file", "path": str(example.resolve()), "sha256": sha256}
    assert payload["plugins"]["attacks"] == {"rand-fgsm": origin, "fgsm": {"source": "built-in"}}
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"| attack | rand-fgsm | file | {example.resolve()} (sha256 {sha256[:16]}…) |" in report
    listing = json.loads(_run(["list", "attacks", "--plugin", str(example), "--json"]))
    row = next(r for r in listing["attacks"] if r["name"] == "rand-fgsm")
    assert row["norms"] == ["linf"] and row["status"] == "ok"


def test_example_runs_as_an_installed_entry_point(example, tmp_path):
    site = tmp_path / "site"
    entry_points = "[advsec.attacks]\nrand-fgsm = rand_fgsm:RandFGSM\n"
    fake_distribution(site, "rand-fgsm-plugin", entry_points, {"rand_fgsm": example.read_text()})
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = _run(["run", str(spec), "--out", str(tmp_path / "out"), "--json", "--no-report"], env=env)
    payload = json.loads(out)
    _check(payload)
    assert payload["plugins"]["attacks"]["rand-fgsm"] == {"source": "package", "package": "rand-fgsm-plugin",
                                                          "version": "0.1"}  # fmt: skip


def test_example_refuses_a_norm_it_does_not_declare(example, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace('norm = "linf"', 'norm = "l2"'))
    result = subprocess.run(
        [sys.executable, "-m", "advsec.cli", "run", str(spec), "--plugin", str(example)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "attacks[0]: attack 'rand-fgsm' supports norms linf, but threats[0].norm is 'l2'" in result.stderr
    assert "Traceback" not in result.stderr


def test_defense_example_declares_its_flags(defense_example):
    listing = json.loads(_run(["list", "defenses", "--plugin", str(defense_example), "--json"]))
    row = next(r for r in listing["defenses"] if r["name"] == "dither")
    assert row["status"] == "ok"
    flags = [row[flag] for flag in ("stochastic", "differentiable", "stateful", "certifiable")]
    assert flags == [True, False, False, False]


def test_defense_example_trains_and_is_attacked_naively_then_adaptively(defense_example, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(DEFENSE_SPEC)
    out = tmp_path / "out"
    args = ["run", str(spec), "--plugin", str(defense_example), "--out", str(out), "--json", "--no-report"]
    payload = json.loads(_run(args))
    (defense,) = payload["defenses"]
    assert defense["defense"] == "dither" and defense["stochastic"] is True
    # Its loss trains through the dither: the model still classifies the digits.
    assert defense["clean_accuracy"] > 0.8
    cell = next(c for c in payload["cells"] if c["eps"] == 0.2)
    # Non-differentiable and random: naive PGD first, then PGD through adaptive() (BPDA) and EOT.
    assert [a["attack"] for a in cell["attacks"]] == ["pgd", "pgd+BPDA+EOT4"]
    # Rounding's zero gradient blinds the naive attack; the adaptive view breaks most of what it left.
    assert cell["naive_robust_accuracy"] > cell["robust_accuracy"] + 0.3
    flagged = {check["name"]: check["flagged"] for check in cell["checks"]}
    assert flagged["loss not raised: pgd"] and not flagged["loss not raised: pgd+BPDA+EOT4"]


def test_readme_spec_example_is_a_valid_spec():
    from advsec.spec import parse_spec

    readme = (REPO / "README.md").read_text()
    match = re.search(r"## Evaluating a model\n.*?```toml\n(.*?)```", readme, re.S)
    assert match, "the README lost its spec example"
    spec = parse_spec(match.group(1))
    assert [d.name for d in spec.defenses] == ["standard", "fast-at"]
    assert [a.name for a in spec.attacks] == ["apgd-ce", "apgd-t", "square"]  # the preset the comment names


def _bare_signature(function):
    """``loss(self, model, x, y, *, bounds, generator=None, progress=1.0)``: as the README prints it."""
    signature = inspect.signature(function)
    bare = [p.replace(annotation=p.empty) for p in signature.parameters.values()]
    return f"{function.__name__}{signature.replace(parameters=bare, return_annotation=signature.empty)}"


def test_readme_gives_the_defense_signatures_the_harness_calls():
    from advsec.defense import Defense

    readme = (REPO / "README.md").read_text()
    for method in (Defense.loss, Defense.wrap, Defense.adaptive):
        assert f"`{_bare_signature(method)}`" in readme, _bare_signature(method)


DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _without_code(text):
    """Markdown outside fenced code blocks, where ``#`` starts a comment and ``[x](y)`` is no link."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _anchors(path):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    anchors, seen = [], {}
    for heading in re.findall(r"^#{1,6} (.+)$", _without_code(path.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.append(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(doc):
    links = re.findall(r"\]\(([^)\s]+)\)", _without_code(doc.read_text()))
    assert links or doc.name == "results.md", f"{doc.name} links nowhere"
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue  # https:, mailto:
        path, _, anchor = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        assert target.exists(), f"{doc.name}: {link} leads to no file"
        if anchor:
            assert anchor in _anchors(target), f"{doc.name}: {link} leads to no heading ({_anchors(target)})"


def test_readme_and_docs_link_to_each_other():
    readme = _without_code((REPO / "README.md").read_text())
    for page in DOCS[1:]:
        assert f"(docs/{page.name}" in readme, f"the README does not link to docs/{page.name}"
        if page.name != "results.md":
            assert "(../README.md" in page.read_text(), f"docs/{page.name} does not link back to the README"

"""Spec validation: every mistake is an advsec error naming its key path, never a traceback."""

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advsec.errors import AdvsecError, SpecError
from advsec.spec import load_spec, parse_spec
from tests.conftest import REPO

VALID = """
name = "t"
[[defenses]]
name = "standard"
[[threats]]
norm = "linf"
eps = [0.1]
[[attacks]]
name = "pgd"
steps = 5
"""


def test_quickstart_spec_is_valid():
    spec = load_spec(REPO / "evaluations" / "quickstart.toml")
    assert [d.label for d in spec.defenses] == ["standard", "pgd-at"]
    assert [a.name for a in spec.attacks] == ["fgsm", "pgd"]
    assert spec.report_eps == 0.1


@pytest.mark.parametrize("path", sorted((REPO / "evaluations").glob("*.toml")), ids=lambda path: path.stem)
def test_every_shipped_spec_is_valid(path):
    spec = load_spec(path)
    assert spec.defenses and (spec.threats or spec.detection or spec.privacy.shadows or spec.certify)


def test_minimal_spec_gets_defaults():
    spec = parse_spec(VALID)
    assert spec.dataset == "digits" and spec.model == "mlp" and spec.seed == 0
    assert spec.attacks[0].params == {"steps": 5}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("steps = 5", 'steps = "ten"'), r"attacks\[0\]\.steps: expected int, got str 'ten'"),
        (("steps = 5", "stesp = 5"), r"attacks\[0\]\.stesp: unknown key \(did you mean 'steps'\?\)"),
        (('name = "pgd"', 'name = "pgdd"'), r"attacks\[0\]\.name: unknown attack 'pgdd': did you mean 'pgd'"),
        (('name = "standard"', 'name = "standart"'), r"defenses\[0\]\.name: .*did you mean 'standard'"),
        (('norm = "linf"', 'norm = "l3"'), r"threats\[0\]\.norm: expected one of 'linf', 'l2'"),
        (("eps = [0.1]", "eps = [-0.1]"), r"threats\[0\]\.eps: expected a non-empty list of numbers > 0"),
        (("eps = [0.1]", "eps = 0.1"), r"threats\[0\]\.eps: expected a list, got float"),
        (
            ('name = "t"', 'name = "t"\nmodle = "mlp"'),
            r"modle: unknown key \(did you mean 'model' or 'models'\?\)",
        ),
        (('name = "t"', 'name = "t"\nmodel = "resnet-9000"'), r"model: unknown model 'resnet-9000'"),
        (
            ('name = "t"', 'name = "t"\n[evaluation]\nsamples = 1.5'),
            r"evaluation\.samples: expected int, got float",
        ),
        (('name = "t"', 'name = "t"\n[report]\neps = 0.3'), r"report\.eps: 0\.3 is not in any threats"),
        (
            ("steps = 5", 'steps = 5\ntarget = "random"\n[[attacks]]\nname = "pgd"\ntarget = "random"'),
            r"attacks\[1\]\.label: 'pgd-random' is used twice",
        ),
        (
            ("steps = 5", 'target = "nearest"'),
            r"attacks\[0\]\.target: expected a class index .* got 'nearest'",
        ),
        (("steps = 5", "target = -1"), r"attacks\[0\]\.target: expected a class index .* got -1"),
        (("steps = 5", "target = true"), r"attacks\[0\]\.target: expected a class index .* got True"),
        (
            ('name = "t"', 'name = "t"\n[replay]\nattacks = ["cw"]'),
            r"replay\.attacks: no \[\[attacks\]\] entry is labelled 'cw'; the labels are 'pgd'",
        ),
        (('name = "t"', 'name = "t"\n[replay]\ndelays = [10, 1]'), r"replay\.delays: expected distinct"),
        (('name = "t"', 'name = "t"\n[replay]\nrepeats = 0'), r"replay\.repeats: expected an integer >= 1"),
        (
            ("steps = 5", 'steps = 5\ntarget = "random"\n[replay]'),
            r"replay\.attacks: 'pgd-random' is targeted",
        ),
    ],
)
def test_mistakes_name_their_key_path(change, message):
    old, new = change
    with pytest.raises(SpecError, match=message):
        parse_spec(VALID.replace(old, new, 1))


def test_missing_tables_and_bad_toml_are_explained():
    with pytest.raises(SpecError, match=r"defenses: required; add at least one \[\[defenses\]\] table"):
        parse_spec('name = "x"')
    with pytest.raises(SpecError, match="not valid TOML"):
        parse_spec("name = ")
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec("/nonexistent/spec.toml")


def test_per_defense_training_overrides_the_shared_defaults():
    spec = parse_spec(
        VALID.replace('name = "standard"', 'name = "standard"\n[defenses.train]\nepochs = 3')
        + "[train]\nlr = 0.5\n"
    )
    assert spec.defenses[0].train.epochs == 3 and spec.defenses[0].train.lr == 0.5


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_yields_only_advsec_errors(text):
    with contextlib.suppress(AdvsecError):  # any other exception fails the test
        parse_spec(text)


SCALARS = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=5),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=200, deadline=None)
@given(
    key=st.sampled_from(["steps", "restarts", "loss", "step_fraction", "random_start", "label", "target"]),
    value=SCALARS,
)
def test_wrong_parameter_values_yield_only_advsec_errors(key, value):
    text = VALID.replace("steps = 5", f"{key} = {_toml(value)}")
    try:
        parse_spec(text)
    except AdvsecError as exc:
        assert "attacks[0]" in str(exc)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON escapes are valid TOML basic-string escapes
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return repr(value).replace("'", '"')


def test_worst_case_preset_expands_to_its_cascade():
    spec = parse_spec(VALID.replace('name = "pgd"\nsteps = 5', 'preset = "worst-case"'))
    assert [a.name for a in spec.attacks] == ["apgd-ce", "apgd-t", "square"]
    assert spec.attacks[2].params == {"queries": 5000}
    with pytest.raises(SpecError, match=r"attacks\[0\]\.preset: unknown preset 'worst': did you mean"):
        parse_spec(VALID.replace('name = "pgd"\nsteps = 5', 'preset = "worst"'))
    with pytest.raises(SpecError, match=r"attacks\[0\]\.steps: unknown key"):
        parse_spec(VALID.replace('name = "pgd"', 'preset = "worst-case"'))

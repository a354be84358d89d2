"""torchattacks served as ``torchattacks:NAME``: every class runs inside the threat model, on any bounds."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from advsec import registry
from advsec.adapters import torchattacks as adapter
from advsec.attack import attack_objective, best_targeted_objective, fooled
from advsec.cli import main
from advsec.errors import InputError, PluginError, SpecError
from advsec.progress import Progress
from advsec.runtime import CountingModel
from advsec.sanity import LOSS_STALL_LIMIT, loss_not_raised
from advsec.spec import load_spec, make_plugin, parse_spec
from advsec.threat import ThreatModel
from advsec.train import load_or_train
from tests.conftest import REPO

pytest.importorskip("torchattacks")

SHAPE = (3, 8, 8)  # 3 channels: PIFGSM, PIFGSMPP and TIFGSM build RGB kernels
# The fewest steps, queries and samples that still exercise each attack's whole loop.
FAST = {
    "APGD": {"steps": 3},
    "APGDT": {"steps": 3},
    "AutoAttack": {"version": "rand"},  # two APGDs; "standard" may add 5,000 Square queries
    "BIM": {"steps": 3},
    "CW": {"steps": 3},
    "DIFGSM": {"steps": 3},
    "DeepFool": {"steps": 3},
    "EADEN": {"max_iterations": 10, "binary_search_steps": 1},  # EAD needs max_iterations >= 10
    "EADL1": {"max_iterations": 10, "binary_search_steps": 1},
    "EOTPGD": {"steps": 3},
    "FAB": {"steps": 3},
    "JSMA": {"gamma": 0.05},
    "Jitter": {"steps": 3},
    "MIFGSM": {"steps": 3},
    "NIFGSM": {"steps": 3},
    "OnePixel": {"steps": 2, "popsize": 2},
    "PGD": {"steps": 3},
    "PGDL2": {"steps": 3},
    "PGDRS": {"steps": 3, "noise_batch_size": 2},
    "PGDRSL2": {"steps": 3, "noise_batch_size": 2},
    "PIFGSM": {"num_iter_set": 3},
    "PIFGSMPP": {"num_iter_set": 3},
    "Pixle": {"restarts": 2, "max_iterations": 3},
    "RFGSM": {"steps": 3},
    "SINIFGSM": {"steps": 3, "m": 2},
    "SPSA": {"nb_sample": 16, "max_batch_size": 16},
    "SparseFool": {"steps": 2},
    "Square": {"n_queries": 50},
    "TIFGSM": {"steps": 3},
    "TPGD": {"steps": 3},
    "UPGD": {"steps": 3},
    "VMIFGSM": {"steps": 3, "N": 2},
    "VNIFGSM": {"steps": 3, "N": 2},
}
CASES = [
    (name, norm, targeted)
    for name in adapter.names()
    for norm in adapter.load(name).norms
    for targeted in ([False, True] if adapter.load(name).targeted else [False])
]


def _random_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


@dataclasses.dataclass(frozen=True)
class Recorded(ThreatModel):
    """The threat model, keeping each point handed to its projection: what torchattacks itself returned,
    mapped back to the dataset's units, before the adapter projects it."""

    raw: list[torch.Tensor] = dataclasses.field(default_factory=list, compare=False, repr=False)

    def project(self, x, x_adv, radius=None):
        self.raw.append(x_adv.detach().clone())
        return super().project(x, x_adv, radius)


def _run(name, params, norm, eps, bounds, batch, seed, targeted=False):
    """Attack random inputs within ``bounds``; return the inputs, the adapter's output, torchattacks' own
    result before the adapter projected it, and the threat model."""
    generator = torch.Generator().manual_seed(seed)
    low, high = bounds
    x = low + (high - low) * torch.rand((batch, *SHAPE), generator=generator)
    model = _random_model(seed)
    with torch.no_grad():
        y = model(x).argmax(1)  # classified correctly, so that no attack stops before it starts
    threat = Recorded(norm, eps, bounds)
    attack = make_plugin(registry.attacks.get(f"torchattacks:{name}"), params, name)
    target = (y + 1) % 10 if targeted else None
    x_adv = attack.perturb(model, x, y, threat, target=target, generator=generator)
    (raw,) = threat.raw  # projected once, at the end
    return x, x_adv, raw, ThreatModel(norm, eps, bounds)


def _assert_inside(x, x_adv, threat):
    assert x_adv.shape == x.shape
    assert torch.isfinite(x_adv).all()
    distance = threat.distance(x, x_adv)
    assert (distance <= threat.eps + 1e-6).all(), distance.max().item()
    assert x_adv.min() >= threat.bounds[0] and x_adv.max() <= threat.bounds[1]


# Float32 rounding of the map to torchattacks' [0, 1] box and back, far below any budget tested.
RESCALING = 1e-5


def _budgeted(name: str) -> bool:
    """Whether the attack takes its budget (eps) from advsec; minimum-norm and l0 attacks have none."""
    return bool(adapter.load(name)._controls & {"eps", "max_epsilon"})


@pytest.mark.parametrize(("name", "norm", "targeted"), CASES)
def test_every_attack_runs_inside_its_threat_model(name, norm, targeted):
    x, x_adv, raw, threat = _run(name, FAST.get(name, {}), norm, 0.3, (-1.0, 1.0), 3, 0, targeted)
    _assert_inside(x, x_adv, threat)
    # torchattacks' own result, before the adapter projects it: always within the bounds (its box mapped
    # back), and within budget when the adapter handed it the budget (rescaled to its [0, 1] box) and the
    # norm. Minimum-norm and l0 attacks have no budget: the projection is what brings them inside.
    assert raw.min() >= threat.bounds[0] - 1e-6 and raw.max() <= threat.bounds[1] + 1e-6
    if _budgeted(name):
        assert not threat.violations(x, raw, tol=RESCALING).any(), threat.distance(x, raw).max().item()


@pytest.mark.parametrize("name", ["PGD", "PGDL2"])
@settings(max_examples=25, deadline=None)
@given(
    eps=st.floats(0.001, 1.5),
    batch=st.integers(1, 6),
    bounds=st.sampled_from([(-1.0, 1.0), (0.0, 1.0), (-0.5, 2.0)]),
    seed=st.integers(0, 999),
)
def test_budget_and_bounds_hold_for_any_eps_and_batch(name, eps, batch, bounds, seed):
    norm = adapter.load(name).norms[0]
    x, x_adv, raw, threat = _run(name, {"steps": 3}, norm, eps, bounds, batch, seed)
    _assert_inside(x, x_adv, threat)
    # the adapter's translation of budget and bounds, not the projection after it, keeps PGD inside
    assert not threat.violations(x, raw, tol=RESCALING).any(), threat.distance(x, raw).max().item()


def test_names_and_capabilities():
    served = adapter.names()
    assert len(served) >= 35 and "MultiAttack" not in served and "LGV" not in served
    assert adapter.load("PGD").norms == ("linf",) and adapter.load("PGDL2").norms == ("l2",)
    assert adapter.load("APGD").norms == ("linf", "l2") and adapter.load("CW").norms == ("l2",)
    assert adapter.load("PGD").targeted and not adapter.load("APGD").targeted
    assert not adapter.load("FAB").targeted  # its targeted mode mixes up targets
    assert adapter.load("Square").kind == "query" and adapter.load("PGD").kind == "gradient"
    assert adapter.load("PGD") is registry.attacks.get("torchattacks:PGD")  # built once
    assert adapter.load("PGD").__doc__.startswith("PGD in the paper 'Towards Deep Learning Models")


def test_alpha_is_a_length_in_input_units():
    """One step of alpha on [-1, 1] moves each coordinate by alpha, not by alpha·(high − low)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((4, *SHAPE), generator=generator) - 0.5  # far from the bounds: nothing is clipped
    attack = make_plugin(adapter.load("PGD"), {"steps": 1, "alpha": 0.05, "random_start": False}, "pgd")
    x_adv = attack.perturb(_random_model(0), x, torch.arange(4), ThreatModel("linf", 0.1, (-1.0, 1.0)))
    moved = (x_adv - x).abs()
    assert torch.allclose(moved[moved > 0], torch.tensor(0.05), atol=1e-6)


class _ModeProbe(nn.Module):
    """Records the training flag it sees on each forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[bool] = set()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.seen.add(self.training)
        return z


def test_reproducible_counted_and_leaves_global_state_and_mode_alone():
    probe = _ModeProbe()
    model = CountingModel(nn.Sequential(_random_model(0), probe)).train()
    x, y = torch.rand((5, *SHAPE)), torch.arange(5)
    attack = make_plugin(adapter.load("PGD"), {"steps": 4}, "pgd")
    threat = ThreatModel("linf", 0.1, (0.0, 1.0))
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    runs = [
        attack.perturb(model, x, y, threat, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 9)
    ]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])  # random start, seeded
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    assert model.forwards == model.backwards == 3 * 4 * 5  # 3 runs of 4 steps on 5 samples
    assert probe.seen == {True}  # attacked as handed over, never switched to eval()
    assert all(module.training for module in model.modules())


def test_inputs_it_cannot_attack_are_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    threat = ThreatModel("linf", 0.1, (0.0, 1.0))
    tifgsm = make_plugin(adapter.load("TIFGSM"), {}, "tifgsm")
    with pytest.raises(InputError, match="needs 3-channel images"):
        tifgsm.perturb(model, torch.rand(2, 1, 8, 8), torch.arange(2), threat)
    with pytest.raises(InputError, match=r"image batches shaped \(N, C, H, W\)"):
        tifgsm.perturb(model, torch.rand(2, 64), torch.arange(2), threat)
    upgd = make_plugin(adapter.load("UPGD"), {"loss": "dlr"}, "upgd")
    with pytest.raises(PluginError, match="cannot run targeted with loss = 'dlr'"):
        upgd.perturb(model, torch.rand(2, 1, 8, 8), torch.arange(2), threat, target=torch.ones(2).long())


@pytest.fixture(scope="module")
def standard(digits):
    """The quickstart's standard digits MLP, as ``digits_models["standard"]`` (the same cached model),
    without training its PGD-AT sibling, which this file never uses and which costs most of a minute."""
    spec = load_spec(REPO / "evaluations" / "quickstart.toml")
    (defense,) = [d for d in spec.defenses if d.label == "standard"]
    trained = load_or_train(
        digits,
        spec.model,
        defense.name,
        defense.params,
        defense.train,
        spec.seed,
        device=torch.device("cpu"),
        progress=Progress(quiet=True),
    )
    return trained.model


def test_pgd_agrees_with_ours_on_digits_in_both_domains(digits, standard):
    """torchattacks' PGD and ours, same start, steps and absolute step: the same robust accuracy, also
    on a [-1, 1] copy of model and data, where torchattacks must find the same points, rescaled."""
    model, x, y = standard, digits.x_test, digits.y_test

    class Rescaled(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.inner((z + 1) / 2)

    domains = [(model, x, (0.0, 1.0), 1.0), (Rescaled(model).eval(), 2 * x - 1, (-1.0, 1.0), 2.0)]
    found = []  # torchattacks' points in each domain, mapped back to [0, 1]
    for net, inputs, bounds, scale in domains:
        eps = 0.1 * scale
        threat = ThreatModel("linf", eps, bounds)
        ours = make_plugin(registry.attacks.get("pgd"), {"steps": 20, "random_start": False}, "pgd")
        theirs = make_plugin(
            adapter.load("PGD"), {"steps": 20, "random_start": False, "alpha": 2.5 / 20 * eps}, "t"
        )
        accuracy = {}
        for label, attack in (("ours", ours), ("theirs", theirs)):
            x_adv = attack.perturb(net, inputs, y, threat, generator=torch.Generator().manual_seed(0))
            assert not threat.violations(inputs, x_adv).any()
            with torch.no_grad():
                accuracy[label] = 100 * (net(x_adv).argmax(1) == y).float().mean().item()
        assert abs(accuracy["ours"] - accuracy["theirs"]) <= 1.0, (bounds, accuracy)
        found.append((x_adv - bounds[0]) / scale)
    same = ((found[0] - found[1]).flatten(1).abs().amax(dim=1) < 1e-4).float().mean().item()
    assert same > 0.95, same  # a float-level gradient sign flip may move a rare sample elsewhere


def test_targeted_pgd_reaches_its_targets(digits, standard):
    model = standard
    x, y = digits.x_test[:100], digits.y_test[:100]
    target = (y + 1) % 10
    attack = make_plugin(adapter.load("PGD"), {"steps": 40, "alpha": 0.02}, "pgd")
    x_adv = attack.perturb(model, x, y, ThreatModel("linf", 0.3, digits.bounds), target=target)
    with torch.no_grad():
        assert fooled(model(x_adv), y, target).float().mean().item() > 0.9


def test_unknown_name_suggests_the_closest():
    with pytest.raises(
        PluginError, match=r"unknown attack 'torchattacks:PDG': did you mean 'torchattacks:PGD'"
    ):
        registry.attacks.get("torchattacks:PDG")
    with pytest.raises(PluginError, match="torchattacks:LGV is not served: it trains surrogate models"):
        registry.attacks.get("torchattacks:LGV")


SPEC = """
[[defenses]]
name = "standard"
[[threats]]
norm = "linf"
eps = [0.1]
[[attacks]]
name = "torchattacks:PGD"
steps = 40
alpha = 0.01
"""


def test_spec_parameters_are_validated_like_our_own():
    assert parse_spec(SPEC).attacks[0].params == {"steps": 40, "alpha": 0.01}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("steps = 40", "stesp = 40"), r"attacks\[0\]\.stesp: unknown key \(did you mean 'steps'\?\)"),
        (("steps = 40", 'steps = "ten"'), r"attacks\[0\]\.steps: expected int, got str 'ten'"),
        (("steps = 40", "eps = 0.3"), r"attacks\[0\]\.eps: unknown key"),  # the budget is the threat's
        (('norm = "linf"', 'norm = "l2"'), r"attacks\[0\]: attack 'torchattacks:PGD' supports norms linf"),
        (
            ('"torchattacks:PGD"\nsteps = 40\nalpha = 0.01', '"torchattacks:Pixle"\npixel_mapping = "near"'),
            r"attacks\[0\]: torchattacks:Pixle rejects its parameters: ValueError: pixel_mapping must be",
        ),
        (
            ('"torchattacks:PGD"', '"torchattacks:PDG"'),
            r"attacks\[0\]\.name: .*did you mean 'torchattacks:PGD'",
        ),
    ],
)
def test_spec_mistakes_name_their_key_path(change, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(SPEC.replace(*change))


def test_list_shows_torchattacks_with_their_norms():
    done = subprocess.run(
        [sys.executable, "-m", "advsec.cli", "list", "attacks", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = {row["name"]: row for row in json.loads(done.stdout)["attacks"]}
    assert rows["torchattacks:PGD"]["status"] == "ok" and rows["torchattacks:PGD"]["norms"] == ["linf"]
    assert rows["torchattacks:CW"]["norms"] == ["l2"]
    assert rows["torchattacks:Square"]["kind"] == "query"
    assert not any(row["status"] != "ok" for name, row in rows.items() if name.startswith("torchattacks:"))


def test_without_torchattacks_load_says_how_to_install_and_list_still_works(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # what `import torchattacks` sees when missing
    monkeypatch.setattr(adapter, "_classes", {})  # nothing loaded yet
    with pytest.raises(PluginError, match=r"pip install --no-deps torchattacks==3\.5\.1"):
        adapter.load("PGD")
    monkeypatch.setattr(registry.attacks, "_entries", None)  # a fresh process: no adapted entry cached
    result = CliRunner().invoke(main, ["list", "attacks", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)["attacks"]}
    assert rows["pgd"]["status"] == "ok"
    broken = rows["torchattacks:*"]["status"]
    assert broken.startswith("broken") and "pip install --no-deps torchattacks==3.5.1" in broken


def test_each_attack_is_judged_on_the_objective_it_follows(digits, digits_models):
    logits = digits_models["standard"](digits.x_test[:32]).detach()
    y, target = digits.y_test[:32], (digits.y_test[:32] + 1) % 10
    followed = [("APGD", {"loss": "dlr"}, "dlr"), ("UPGD", {"loss": "margin"}, "cw"), ("CW", {}, "cw"),
                ("FAB", {}, "cw"), ("PGD", {}, "ce"), ("APGDT", {}, "dlr")]  # fmt: skip
    for name, params, loss in followed:
        judged = adapter.load(name)(**params).objective(logits, y, target)
        assert torch.equal(judged, attack_objective(logits, y, target, loss)), name
    best = adapter.load("APGDT")().objective(logits, y, None)
    assert torch.equal(best, best_targeted_objective(logits, y, None, "dlr"))


@pytest.mark.parametrize("name", ["APGD", "APGDT", "FAB", "CW"])
def test_an_attack_that_returns_its_failures_unmoved_is_not_flagged_for_them(digits, digits_models, name):
    # Like the original AutoAttack, these hand back the clean input wherever they fail, so on the PGD-trained
    # MLP nearly every robust output equals its input: its loss cannot have risen, and says nothing.
    model = nn.Sequential(nn.Flatten(), digits_models["pgd-at"])
    x, y = digits.x_test[:64], digits.y_test[:64]
    correct = model(x).argmax(1) == y
    x, y = x[correct], y[correct]
    attack = adapter.load(name)(**FAST.get(name, {}))
    x_adv = attack.perturb(model, x, y, ThreatModel("linf", 0.05, digits.bounds),
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    with torch.no_grad():
        robust = model(x_adv).argmax(1) == y
    unmoved = (x_adv == x).flatten(1).all(1)
    assert (robust & unmoved).float().mean() > LOSS_STALL_LIMIT
    assert loss_not_raised(attack, model, x, x_adv, y) / len(x) <= LOSS_STALL_LIMIT

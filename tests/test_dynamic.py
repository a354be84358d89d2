"""Dynamic models: moving targets, their snapshots, and the sitting-duck protocol that measures them."""

import json

import torch
from click.testing import CliRunner

from advsec.cli import main
from advsec.defenses.gaussian_noise import GaussianNoise
from advsec.defenses.standard import Standard
from advsec.progress import Progress
from advsec.results import cell_summaries, replay_summaries, transfer_summaries
from advsec.runner import run_spec
from advsec.spec import TrainConfig, load_spec, parse_spec
from advsec.store import Store
from advsec.train import load_or_train

CPU = torch.device("cpu")
QUIET = Progress(quiet=True)
QUICKSTART_TRAINING = TrainConfig(epochs=30, batch_size=64, lr=1e-3)


ENSEMBLE = """
name = "ensemble"
[train]
epochs = 20
[[defenses]]
name = "random-ensemble"
members = 3
[[threats]]
norm = "linf"
eps = [0.05]
[[attacks]]
name = "fgsm"
[evaluation]
adaptive = false
"""


def test_a_random_ensemble_trains_distinct_members_and_answers_with_a_random_one(digits, tmp_path):
    spec = parse_spec(ENSEMBLE)
    defense = spec.defenses[0]
    trained = load_or_train(
        digits, "mlp", defense.name, defense.params, defense.train, 0, device=CPU, progress=QUIET
    )
    # Off the data (inputs under heavy noise) the members disagree, so which one answers matters.
    x = (
        digits.x_test + 0.4 * torch.randn(digits.x_test.shape, generator=torch.Generator().manual_seed(0))
    ).clamp(0, 1)
    with torch.no_grad():
        assert ((trained.network(digits.x_test).argmax(2) == digits.y_test).float().mean(1) > 0.9).all()
        votes = trained.network(x).argmax(2)  # (members, n)
        assert (votes != votes[0]).any()  # distinct members, not copies
        torch.manual_seed(0)
        answers = torch.stack([trained.model(x).argmax(1) for _ in range(5)])
    assert (answers != answers[0]).any()  # a moving target: the same query meets different members
    assert ((answers[:, None] == votes[None]).any(1)).all()  # every answer is some member's vote
    store = run_spec(spec, tmp_path, device=CPU, progress=QUIET)
    cells = cell_summaries(store)
    assert all(c.robust_accuracy <= c.robust_accuracy_single for c in cells)  # worst of 5 ≤ first
    # Strictly lower under attack: FGSM's examples fool some members and not others, and each of the 5
    # evaluations (repeats) draws every sample's member afresh. A sample the first draw left robust with one
    # of three members fooled escapes the 4 later draws with chance (2/3)^4 = 0.2, so equal accuracies would
    # need every such sample to escape: here 7 of 364 did not (86.0 % first draw, 84.1 % worst case).
    (attacked,) = [c for c in cells if c.norm == "linf"]
    assert attacked.robust_accuracy < attacked.robust_accuracy_single


def test_weight_noise_moves_the_model_at_every_forward_and_still_learns(digits):
    trained = load_or_train(digits, "mlp", "weight-noise", {"sigma": 0.1}, QUICKSTART_TRAINING, 0,
                            device=CPU, progress=QUIET)  # fmt: skip
    with torch.no_grad():
        first, second = trained.model(digits.x_test), trained.model(digits.x_test)
        accuracy = (first.argmax(1) == digits.y_test).float().mean().item()
    assert not torch.allclose(first, second)  # fresh weights per call
    assert accuracy > 0.9
    assert type(trained.defense).stochastic


def test_rekey_holds_still_between_keys_and_moves_when_probed(digits):
    trained = load_or_train(digits, "mlp", "rekey", {"sigma": 0.1, "every": 100}, QUICKSTART_TRAINING, 0,
                            device=CPU, progress=QUIET)  # fmt: skip
    assert type(trained.defense).stateful and type(trained.defense).stochastic
    model, x = trained.model, digits.x_test
    with torch.no_grad():
        first = model(x[:40])
        key = model.key
        model(x[40:80])  # 80 samples so far: same key
        assert model.key == key
        again = model(x[:40])  # a repeated query: new key, new weights
        second_key = model.key
        assert second_key != key and not torch.allclose(first, again)
        model(x[80:160])  # fresh queries, past `every` samples under this key: new key
        assert model.key not in (key, second_key)
        accuracy = (model(x[200:300]).argmax(1) == digits.y_test[200:300]).float().mean().item()
    assert accuracy > 0.9


def test_drift_holds_still_within_a_moment_and_wanders_off_with_queries(digits):
    trained = load_or_train(digits, "mlp", "drift", {"sigma": 0.2, "half_life": 100}, QUICKSTART_TRAINING, 0,
                            device=CPU, progress=QUIET)  # fmt: skip
    assert type(trained.defense).stateful and type(trained.defense).stochastic
    model, x, y = trained.model, digits.x_test, digits.y_test
    torch.manual_seed(0)
    with torch.no_grad():
        now = model.snapshot()(x)
        model.advance(1)
        near = model.snapshot()(x)
        model.advance(10_000)  # 100 half-lives: a model unrelated to the one of that moment
        far = model.snapshot()(x)
        assert (near - now).abs().mean() < (far - now).abs().mean() / 5
        assert torch.equal(model(x), far)  # the next query meets the weights of the moment it arrives
        # The walk's spread is weight noise's: sigma times each weight tensor's RMS.
        for name, weight in trained.network.named_parameters():
            if weight.numel() >= 1000:
                spread = model.offsets[name].pow(2).mean().sqrt() / weight.pow(2).mean().sqrt()
                assert abs(spread.item() - 0.2) < 0.02, name
        accuracy = []
        for _ in range(3):
            model.advance(500)
            accuracy.append((model(x).argmax(1) == y).float().mean().item())
    assert min(accuracy) > 0.9  # it moves, and it stays accurate


def test_a_moving_model_can_be_held_still_and_a_static_one_is_its_own_snapshot(digits, digits_models):
    x = digits.x_test[:40]
    # The very models the tests above trained (same settings, so the cache serves them): none trains twice.
    (ensemble,) = parse_spec(ENSEMBLE).defenses
    moving = {
        "weight-noise": ({"sigma": 0.1}, QUICKSTART_TRAINING),
        "rekey": ({"sigma": 0.1, "every": 100}, QUICKSTART_TRAINING),  # 40 samples: one key
        "random-ensemble": (ensemble.params, ensemble.train),
        "drift": ({"sigma": 0.2, "half_life": 100}, QUICKSTART_TRAINING),
    }
    torch.manual_seed(0)
    for name, (params, training) in moving.items():
        trained = load_or_train(digits, "mlp", name, params, training, 0, device=CPU, progress=QUIET)
        live = trained.model
        with torch.no_grad():
            snapshot = trained.defense.snapshot(live)
            held = snapshot(x)
            assert torch.equal(snapshot(x), held), name  # held still
            if name == "rekey":
                assert torch.equal(live(x), held)  # under the same key, the live model answers alike
            if name == "random-ensemble":
                assert any(torch.equal(held, member) for member in trained.network(x))  # one of its members
    standard = digits_models["standard"]
    assert Standard().snapshot(standard) is standard
    assert GaussianNoise().snapshot(GaussianNoise().wrap(standard, bounds=digits.bounds)) is None


REPLAY = """
name = "replay"
[train]
epochs = 20
[[defenses]]
name = "standard"
[[defenses]]
name = "drift"
sigma = 0.3
half_life = 20
[[defenses]]
name = "random-ensemble"
members = 3  # ENSEMBLE's, trained alike: the cache serves it
[[defenses]]
name = "rekey"
sigma = 0.3
every = 200
[[threats]]
norm = "linf"
eps = [0.1]
[[attacks]]
name = "pgd"
steps = 10
[[attacks]]
name = "square"
queries = 100
[evaluation]
samples = 100
repeats = 2
[replay]
delays = [0, 10, 50, 1000]
samples = 100
repeats = 3
"""


def test_replay_protocol_a_sitting_duck_stays_fooled_a_drifting_model_escapes(tmp_path):
    spec_file = tmp_path / "replay.toml"
    spec_file.write_text(REPLAY)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["run", str(spec_file), "--out", str(out), "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)["replay"]
    store = Store(out / "results.sqlite")
    replays = replay_summaries(store)
    assert len(printed) == len(replays)
    by = {(r.defense, r.attack, r.mode): r for r in replays}
    assert set(by) == {
        ("standard", "pgd", "snapshot"), ("standard", "square", "queries"),
        ("drift", "pgd", "snapshot"), ("drift", "pgd", "eot"), ("drift", "square", "queries"),
        ("random-ensemble", "pgd", "snapshot"), ("random-ensemble", "pgd", "eot"),
        ("random-ensemble", "square", "queries"),
        ("rekey", "pgd", "snapshot"), ("rekey", "pgd", "eot"), ("rekey", "square", "queries"),
    }  # fmt: skip
    # A static model is a sitting duck: the same success at every delay, exactly, and as crafted.
    duck = by["standard", "pgd", "snapshot"]
    assert duck.crafted > 0.3
    assert {p.success for p in duck.replay.values()} == {duck.crafted}
    assert len({p.success for p in by["standard", "square", "queries"].replay.values()}) == 1
    # A drifting model answers the next query as the snapshot would, then moves away from the attacker.
    drift = by["drift", "pgd", "snapshot"]
    assert drift.replay[0].success == drift.crafted
    assert drift.replay[1000].success < drift.crafted - 0.1
    # A re-keying model holds its key while fewer than `every` (200) samples are queried: 50 of traffic and
    # the 100 replayed still meet the key of the snapshot; past 200, a new key meets them.
    rekey = by["rekey", "pgd", "snapshot"]
    assert rekey.replay[0].success == rekey.replay[50].success == rekey.crafted
    assert rekey.replay[1000].success < rekey.crafted - 0.1
    for r in replays:  # dynamic models' numbers come with intervals around them
        for p in r.replay.values():
            low, high = p.interval
            assert low <= p.success <= high and high - low > 0.01
    # Each ensemble member's adversarial examples fool that member more than any other one.
    (matrix,) = transfer_summaries(store, ["random-ensemble"]).values()
    assert len(matrix) == 3
    assert all(row[i] > other for i, row in enumerate(matrix) for j, other in enumerate(row) if j != i)
    assert not transfer_summaries(store, ["standard", "drift"])
    html = (out / "report.html").read_text()
    assert "Sitting-duck replay" in html and "Transfer between the members of random-ensemble" in html
    # Resumable: a second run finds every defense replayed and recomputes nothing.
    run_spec(load_spec(spec_file), out, device=CPU, progress=QUIET)
    assert replay_summaries(store) == replays

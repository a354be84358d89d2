"""Cost estimates: printed before a run, an upper bound on what it spends, and --max-cost refuses early."""

import json

from click.testing import CliRunner

from advsec.cli import main
from advsec.cost import attack_passes, fit_passes, training_passes
from advsec.data.load import load_dataset
from advsec.spec import AttackSpec, parse_spec
from advsec.train import cache_dir

SPEC = """
name = "cost"
[train]
epochs = 3
[[defenses]]
name = "standard"
[[defenses]]
name = "weight-noise"
[[threats]]
norm = "linf"
eps = [0.05, 0.2]
[[attacks]]
name = "fgsm"
[[attacks]]
name = "pgd"
steps = 10
restarts = 2
[[attacks]]
name = "square"
queries = 200
[evaluation]
samples = 100
"""


def test_each_plugin_is_priced_from_its_own_budget_fields():
    spec = parse_spec(
        SPEC + '[[defenses]]\nname = "pgd-at"\nsteps = 3\n[[defenses]]\nname = "random-ensemble"\n'
    )
    fgsm, pgd, square = spec.attacks
    assert (attack_passes(fgsm), attack_passes(pgd), attack_passes(square)) == (2 * 2, 2 * 11 * 2, 200)
    # APGD-T runs its 100 steps once per target class it aims at, the 9 likeliest wrong ones by default
    assert attack_passes(AttackSpec("apgd-t", "apgd-t", {})) == 2 * 101 * 9
    standard, _, pgd_at, ensemble = spec.defenses
    assert (training_passes(standard), training_passes(pgd_at), training_passes(ensemble)) == (2, 8, 6)
    digits = load_dataset("digits")  # generators are charged their fit once: steps × batch, or epochs
    advgan = AttackSpec("advgan", "advgan", {"max_steps": 50, "batch_size": 16})
    universal = AttackSpec("universal-audio", "universal-audio", {"epochs": 3})
    assert (fit_passes(advgan, digits), fit_passes(universal, digits), fit_passes(pgd, digits)) == (
        2 * 50 * 16,
        2 * 3 * len(digits.x_train),
        0,
    )


def test_the_estimate_is_printed_bounds_what_the_run_spends_and_drops_to_zero_once_done(tmp_path):
    spec = tmp_path / "spec.toml"
    # Fewer samples and queries than SPEC's: the bound holds per sample and per query, and Square through
    # weight noise's expectation (10 fresh weight draws a query) is most of this run's time.
    spec.write_text(SPEC.replace("samples = 100", "samples = 30").replace("queries = 200", "queries = 50"))
    result = CliRunner().invoke(main, ["run", str(spec), "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    spent = sum(c["forwards"] + c["backwards"] for c in printed["cells"])
    assert 0 < spent <= printed["estimated_cost"]["attacks"]
    again = CliRunner().invoke(main, ["run", str(spec), "--out", str(tmp_path / "run")])
    assert "estimated cost: 0 sample passes (nothing left to do)" in again.output


def test_max_cost_refuses_before_training_anything(tmp_path, monkeypatch):
    # A cache of its own, empty: in the session's cache another test may have trained these models already,
    # and a refusal that came after training would then have nothing left to train.
    cache = tmp_path / "cache"
    monkeypatch.setenv("ADVSEC_CACHE", str(cache))
    assert cache_dir().is_relative_to(cache)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(main, ["run", str(spec), "--out", str(tmp_path / "run"), "--max-cost", "1e5"])
    assert result.exit_code == 2
    assert "over --max-cost 1e+05; shrink [evaluation] samples" in result.output
    assert not [path for path in cache.rglob("*") if path.is_file()]

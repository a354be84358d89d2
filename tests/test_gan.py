"""A GAN on both sides: natural adversarial examples from its latent space, and Defense-GAN broken by BPDA."""

import pytest
import torch

from advsec import registry
from advsec.data.load import load_dataset
from advsec.errors import InputError
from advsec.gan import UsesGan
from advsec.progress import Progress
from advsec.protocol import run_side_protocol
from advsec.report import build_report
from advsec.results import cell_summaries, unrestricted_summaries
from advsec.runner import run_spec
from advsec.runtime import Runtime, deployed_key, trained_model_key
from advsec.spec import make_plugin, parse_spec
from advsec.train import cache_dir
from advsec.unrestricted import Unrestricted

CPU = torch.device("cpu")
QUIET = Progress(quiet=True)
GAN = "gan_epochs = 20\ninverter_epochs = 10"  # digits has 1,437 training images: more passes than MNIST

DEFENDED = f"""
seed = 0
[train]
epochs = 20
[[defenses]]
name = "standard"
[[defenses]]
name = "defense-gan"
{GAN}
[[threats]]
norm = "linf"
eps = [0.3]
[[attacks]]
name = "pgd"
steps = 20
[evaluation]
samples = 100
eot_draws = 2
repeats = 2
"""
# natural-gan against the standard model only: every query to Defense-GAN is a descent of its own
NATURAL = f"""
seed = 0
[train]
epochs = 20
[[defenses]]
name = "standard"
[[threats]]
norm = "linf"
eps = [0.3]
[[attacks]]
name = "natural-gan"
{GAN}
[evaluation]
samples = 100
"""


@pytest.fixture(scope="module")
def fought(tmp_path_factory):
    """Both runs, in a model cache of their own: the GANs fitted in it are these runs' alone, whatever other
    tests of the session fitted before."""
    out = tmp_path_factory.mktemp("gan")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADVSEC_CACHE", str(tmp_path_factory.mktemp("gan-cache")))
        store = run_spec(parse_spec(DEFENDED), out, device=CPU, progress=QUIET)
        natural = Runtime(parse_spec(NATURAL), device=CPU, progress=QUIET, store=store)
        run_side_protocol(Unrestricted(), natural)
        fitted = sorted(path.name for path in cache_dir().glob("gan-*.safetensors"))
    return store, out, fitted


@pytest.mark.slow  # shares a GAN and inverter fitted for half a minute (see the decode test)
def test_one_gan_is_fitted_and_shared_by_the_attack_and_the_defense(fought):
    *_, fitted = fought
    assert len(fitted) == 1, fitted


@pytest.mark.slow  # shares a GAN and inverter fitted for half a minute (see the decode test)
def test_defense_gan_stops_naive_gradients_and_falls_under_bpda(fought):
    store, *_ = fought
    cells = {c.defense: c for c in cell_summaries(store) if c.norm == "linf"}
    defended = cells["defense-gan"]
    assert [a.attack for a in defended.attacks] == ["pgd", "pgd+BPDA+EOT2"]
    assert defended.clean_accuracy > 0.7  # the projection keeps most digits readable
    assert defended.naive_robust_accuracy > cells["standard"].robust_accuracy + 0.3
    assert defended.robust_accuracy < defended.naive_robust_accuracy - 0.3


def test_defense_gan_deploys_the_standard_network_but_its_results_are_keyed_by_its_own_settings(digits):
    spec = parse_spec(DEFENDED)
    standard, defended = spec.defenses
    fewer = parse_spec(DEFENDED.replace("inverter_epochs = 10", "inverter_epochs = 10\nsteps = 5", 1))
    assert trained_model_key(spec, digits, defended) == trained_model_key(spec, digits, standard)
    assert deployed_key(spec, digits, defended) != deployed_key(fewer, digits, fewer.defenses[1])


@pytest.mark.slow  # shares a GAN and inverter fitted for half a minute (see the decode test)
def test_natural_gan_fools_the_model_with_images_the_listener_still_reads(fought):
    store, out, _ = fought
    runs = {r.defense: r for r in unrestricted_summaries(store)}
    standard = runs["standard"]
    assert standard.source == "test" and standard.norm == "l2" and standard.aimed >= 80
    assert standard.rates["fooled"] >= 0.9
    # Most nearby GAN images that fool the model fool the listener too (they show another digit), but the
    # listener keeps the class in far more than the 1 in 10 it would for made images of random digits.
    assert standard.rates["listener_kept"] >= 0.2 and standard.rates["natural"] >= 0.15
    assert standard.fit_seconds > 0 and 0 < standard.median_distance < 8  # the diagonal of [0, 1]^64
    for row in store.unrestricted("standard", "natural-gan"):
        assert row["label"] >= 0 and row["target"] == -1
    for _, source, made in store.unrestricted_examples("standard", "natural-gan"):
        assert made.min() >= 0 and made.max() <= 1 and made.shape == source.shape
    report = build_report(store, out / "report").with_suffix(".md").read_text()
    assert "Made from test inputs" in report and "| standard | natural-gan | " in report
    assert (out / "report" / "made.png").stat().st_size > 0


def test_the_gan_decodes_any_code_to_an_image_in_bounds_and_reloads_identically(digits):
    settings = UsesGan(gan_epochs=1, inverter_epochs=1)
    fitted = settings.prepare(digits, seed=3, device=CPU, progress=QUIET)
    again = UsesGan(gan_epochs=1, inverter_epochs=1)
    assert again.prepare(digits, seed=3, device=CPU, progress=QUIET) == fitted  # from the cache
    codes = 10 * torch.randn(256, settings.latent)  # far outside the training distribution too
    images = settings.fitted_gan().decode(codes)
    assert images.shape == (256, *digits.input_shape) and images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, again.fitted_gan().decode(codes))


def test_the_gan_plugins_refuse_audio_with_a_message():
    attack = make_plugin(registry.attacks.get("natural-gan"), {}, "natural-gan")
    images = load_dataset("digits")
    audio = type(images)(**{**images.__dict__, "domain": "audio"})  # the same tensors, declared audio
    with pytest.raises(InputError, match="needs images"):
        attack.prepare(audio, seed=0, device=CPU, progress=QUIET)

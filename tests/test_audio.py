"""Audio: the FSDD spoken digits, verified file by file, and models that hear them through the waveform."""

import shutil
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from advsec import registry
from advsec.channel import Channel
from advsec.data.fsdd import FSDD, RECORDINGS, download, read_recordings, verify
from advsec.defenses.random_resample import RandomResample
from advsec.errors import DataError, InputError
from advsec.models.audio import M5, LogMel, LogMelCNN, ShiftAndGain, mel_filterbank
from advsec.progress import Progress
from advsec.report import build_report
from advsec.results import cell_summaries, unrestricted_summaries
from advsec.runner import run_spec
from advsec.spec import TrainConfig, make_plugin, parse_spec
from advsec.threat import ThreatModel
from advsec.train import load_or_train
from tests.conftest import missing

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def fsdd(shared_data_dir):
    if not (shared_data_dir / "fsdd" / "recordings").is_dir():
        missing(f"no FSDD recordings in {shared_data_dir / 'fsdd'}")
    return FSDD().load(shared_data_dir)


def test_fsdd_splits_by_recording_index_into_one_second_waveforms_in_bounds(fsdd, shared_data_dir):
    assert fsdd.x_train.shape == (2700, 1, 8000) and fsdd.x_test.shape == (300, 1, 8000)
    assert fsdd.domain == "audio" and fsdd.sample_rate == 8000 and fsdd.bounds == (-1.0, 1.0)
    assert fsdd.x_train.abs().max() <= 1 and fsdd.x_test.abs().amax(dim=2).min() > 0.01  # no silent clips
    assert fsdd.y_test.bincount().tolist() == [30] * 10  # 6 speakers × 5 recordings per digit
    _, digits, indices = read_recordings(shared_data_dir / "fsdd" / "recordings", 8000)
    assert sorted(d for d, i in zip(digits, indices, strict=True) if i < 5) == sorted(fsdd.y_test.tolist())


def _linked_copy(source, target):
    """The recordings folder as links, so one file can be swapped without copying 21 MB."""
    (target / "recordings").mkdir(parents=True)
    for wav in (source / "recordings").glob("*.wav"):
        (target / "recordings" / wav.name).symlink_to(wav)
    shutil.copy(source / "SHA256SUMS", target / "SHA256SUMS")


def test_a_tampered_or_missing_recording_is_named(shared_data_dir, tmp_path):
    source = shared_data_dir / "fsdd"
    if not (source / "SHA256SUMS").is_file():
        missing(f"no FSDD manifest in {source}")
    _linked_copy(source, tmp_path / "fsdd")
    victim = tmp_path / "fsdd" / "recordings" / "7_theo_3.wav"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.unlink()
    victim.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"recordings/7_theo_3.wav differ.*advsec download fsdd"):
        verify(tmp_path / "fsdd")
    victim.unlink()
    with pytest.raises(DataError, match=f"found {RECORDINGS - 1} recordings .* expected {RECORDINGS}"):
        verify(tmp_path / "fsdd")


def test_download_keeps_only_verified_recordings(shared_data_dir, tmp_path):
    source = shared_data_dir / "fsdd" / "recordings"
    if not source.is_dir():
        missing(f"no FSDD recordings in {source}")
    release = "free-spoken-digit-dataset-1.0.10"  # laid out like the GitHub release archive
    for name, swapped in (("good.zip", b""), ("bad.zip", b"not audio")):
        with zipfile.ZipFile(tmp_path / name, "w") as zipped:
            zipped.writestr(f"{release}/README.md", "FSDD")
            for wav in source.glob("*.wav"):
                member = f"{release}/recordings/{wav.name}"
                if swapped and wav.name == "0_george_0.wav":
                    zipped.writestr(member, swapped)
                else:
                    zipped.write(wav, member)
    folder = download(tmp_path / "data", url=(tmp_path / "good.zip").as_uri())
    assert folder == tmp_path / "data" / "fsdd" and verify(folder).is_dir()
    with pytest.raises(DataError, match="do not match the published sha256 sums"):
        download(tmp_path / "other", url=(tmp_path / "bad.zip").as_uri())
    assert not (tmp_path / "other" / "fsdd").exists()  # nothing unverified is moved into place


def test_the_mel_filterbank_tiles_the_spectrum_with_triangles():
    filters = mel_filterbank(8000, 256, 40)
    assert filters.shape == (40, 129) and (filters >= 0).all() and (filters.amax(dim=1) > 0.5).all()
    peaks = filters.argmax(dim=1)
    assert (peaks[1:] >= peaks[:-1]).all() and peaks[-1] > 100  # rising centres, up to near Nyquist


def test_features_computed_inside_the_model_let_gradients_reach_the_waveform():
    x = (0.1 * torch.randn(2, 1, 8000)).requires_grad_(True)
    assert LogMel()(x).shape == (2, 1, 40, 63)
    model = LogMelCNN((1, 8000), 10).eval()
    (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()


def test_augmentation_happens_in_training_only():
    x = 0.5 * torch.randn(4, 1, 8000).clamp(-1, 1)
    augment = ShiftAndGain()
    assert torch.equal(augment.eval()(x), x)
    torch.manual_seed(0)
    moved = augment.train()(x)
    assert not torch.equal(moved, x) and moved.abs().max() <= 1


QUICK = TrainConfig(epochs=4, lr=3e-3, schedule="cyclic", weight_decay=1e-4)


@pytest.mark.slow  # 18 s of training; audio keeps data, feature, channel and attack-budget tests by default
def test_m5_learns_the_spoken_digits_in_a_few_epochs(fsdd):
    trained = load_or_train(fsdd, "m5", "standard", {}, QUICK, 0, device=CPU, progress=Progress(quiet=True))
    assert isinstance(trained.network, M5)
    with torch.no_grad():
        accuracy = (trained.model(fsdd.x_test).argmax(1) == fsdd.y_test).float().mean().item()
    assert accuracy > 0.7  # 25 epochs reach 98 %: see tests/test_reproductions.py


LOUDNESS = """
name = "loudness"
dataset = "fsdd"
model = "m5"
[train]
epochs = 4
lr = 3e-3
schedule = "cyclic"
weight_decay = 1e-4
[[defenses]]
name = "standard"
[[threats]]
norm = "db"
eps = [30, 45, 60]
[[threats]]
norm = "snr"
eps = [40]
[[attacks]]
name = "pgd"
steps = 10
[evaluation]
samples = 60
"""


@pytest.mark.slow  # tens of seconds of audio fits; run with -m slow
def test_quieter_budgets_leave_more_robust_accuracy_and_every_attempt_stays_below_its_level(
    fsdd, shared_data_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("ADVSEC_DATA", str(shared_data_dir))
    store = run_spec(parse_spec(LOUDNESS), tmp_path, device=CPU, progress=Progress(quiet=True))
    cells = {(c.norm, c.eps): c for c in cell_summaries(store)}
    loud, middle, quiet = (cells["db", d].robust_accuracy for d in (30.0, 45.0, 60.0))
    assert loud <= middle <= quiet and loud < quiet
    for (norm, eps), cell in cells.items():
        for attempt in store.attempts(cell.cell):  # distances are stored in dB: below -D, or an SNR above
            assert attempt["distance"] <= -eps + 1e-3 if norm == "db" else attempt["distance"] >= eps - 1e-3


@pytest.mark.slow  # needs the trained M5 above
def test_band_noise_stays_in_its_band_and_still_fools_the_model(fsdd):
    trained = load_or_train(fsdd, "m5", "standard", {}, QUICK, 0, device=CPU, progress=Progress(quiet=True))
    for parameter in trained.network.parameters():
        parameter.requires_grad_(False)
    x, y = fsdd.x_test[:60], fsdd.y_test[:60]
    threat = ThreatModel("db", 30, fsdd.bounds)
    attack = make_plugin(registry.attacks.get("band-noise"), {"low": 0.5, "high": 1.0}, "band-noise")
    x_adv = attack.perturb(trained.model, x, y, threat)
    assert not threat.violations(x, x_adv).any()
    power = torch.fft.rfft(x_adv - x, dim=-1).abs().square()
    below = power[..., : power.shape[-1] // 2 - 1].sum() / power.sum()  # under 2 kHz
    assert below < 1e-6
    with torch.no_grad():
        clean = (trained.model(x).argmax(1) == y).float().mean()
        attacked = (trained.model(x_adv).argmax(1) == y).float().mean()
    assert attacked < clean - 0.3


def test_the_simulated_channel_is_random_differentiable_and_the_identity_when_switched_off():
    x = (0.3 * torch.randn(4, 1, 8000, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    silent_room = Channel(gain_db=(0.0, 0.0), max_delay=0.0, wet=0.0, snr_db=(300.0, 300.0))
    assert torch.allclose(silent_room(x), x, atol=1e-5)
    room = Channel()
    first, second = room(x), room(x)
    assert not torch.allclose(first, second)  # a fresh room per call
    noisy = Channel(gain_db=(0.0, 0.0), max_delay=0.0, wet=0.0, snr_db=(20.0, 20.0))(x)
    snr = 20 * torch.log10(x.flatten(1).norm(dim=1) / (noisy - x).flatten(1).norm(dim=1))
    assert torch.allclose(snr, torch.full((4,), 20.0), atol=0.5)
    probe = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(room(probe).square().sum(), probe)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


HEAR_A_SEVEN = (
    LOUDNESS.replace("eps = [30, 45, 60]", "eps = [30]")
    .replace('[[threats]]\nnorm = "snr"\neps = [40]\n', "")
    .replace('name = "pgd"\nsteps = 10', 'name = "audio-targeted"\nsteps = 60\ntarget = 7')
)


@pytest.mark.slow  # tens of seconds of audio fits; run with -m slow
def test_audio_targeted_makes_the_model_hear_a_seven_at_minus_30_db_and_then_gets_quieter(
    fsdd, shared_data_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("ADVSEC_DATA", str(shared_data_dir))
    store = run_spec(parse_spec(HEAR_A_SEVEN), tmp_path, device=CPU, progress=Progress(quiet=True))
    cell = next(c for c in cell_summaries(store) if c.norm == "db")
    [stage] = cell.attacks
    assert stage.targeted_success >= 0.9
    attempts = store.attempts(cell.cell)
    heard = [a["distance"] for a in attempts if a["pred"] == 7]
    assert max(a["distance"] for a in attempts) <= -30 + 1e-3
    # each success shrinks the bound: the sevens it found sit well below the budget, not on it
    assert sorted(heard)[len(heard) // 2] < -35


UNIVERSAL = (
    LOUDNESS.replace("eps = [30, 45, 60]", "eps = [40]")
    .replace('[[threats]]\nnorm = "snr"\neps = [40]\n', "")
    .replace('name = "pgd"\nsteps = 10', 'name = "universal-audio"\nepochs = 3\n[[attacks]]\nname = "noise"')
    + "cascade = false\n"
)


@pytest.mark.slow  # tens of seconds of audio fits; run with -m slow
def test_a_universal_perturbation_fitted_on_training_clips_fools_unseen_ones_more_than_noise(
    fsdd, shared_data_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("ADVSEC_DATA", str(shared_data_dir))
    first = run_spec(parse_spec(UNIVERSAL), tmp_path / "a", device=CPU, progress=Progress(quiet=True))
    cell = next(c for c in cell_summaries(first) if c.norm == "db")
    universal, noise = cell.attacks
    assert universal.fit_seconds > 0 and not universal.fit_cached and noise.fit_seconds is None
    assert universal.robust_alone < noise.robust_alone - 0.1  # test clips, never seen while fitting
    assert max(a["distance"] for a in first.attempts(cell.cell)) <= -30 + 1e-3
    # what it learned is stored for the report: one clip-shaped waveform in the unit ball (noise learns none)
    [learned] = first.learned(cell.cell).values()
    assert learned.shape == first.examples(cell.cell)[0][1].shape and 0 < np.abs(learned).max() <= 1 + 1e-6
    # a second run loads the fit from the cache and plays exactly the same perturbation
    again = run_spec(parse_spec(UNIVERSAL), tmp_path / "b", device=CPU, progress=Progress(quiet=True))
    repeat = next(c for c in cell_summaries(again) if c.norm == "db")
    assert repeat.attacks[0].fit_cached and repeat.attacks[0].fit_seconds == universal.fit_seconds
    assert again.attempts(repeat.cell) == first.attempts(cell.cell)


HIDDEN = (
    LOUDNESS.replace("eps = [30, 45, 60]", "eps = [30]")
    .replace('[[threats]]\nnorm = "snr"\neps = [40]\n', "")
    .replace('name = "pgd"\nsteps = 10', 'name = "hidden-command"\ntarget = 7\nsteps = 60')
    .replace("samples = 60", "samples = 30")
)


@pytest.mark.slow  # tens of seconds of audio fits; run with -m slow
def test_a_hidden_command_is_noise_the_model_hears_as_a_seven_and_a_second_model_does_not(
    fsdd, shared_data_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("ADVSEC_DATA", str(shared_data_dir))
    spec = parse_spec(HIDDEN)
    store = run_spec(spec, tmp_path, device=CPU, progress=Progress(quiet=True))
    assert all(cell["attacks"] == [] for cell in store.cells())  # never mixed into robust accuracy
    [run] = unrestricted_summaries(store)
    assert run.samples == 30 and run.listener == "m5"
    assert run.rates["heard"] >= 0.9 and run.rates["listener_heard"] <= 0.3
    rows = store.unrestricted("standard", "hidden-command-7")
    assert all(r["target"] == 7 and r["distance"] <= -10 + 1e-3 for r in rows)  # 10 dB under the noise
    report = build_report(store, tmp_path / "report").with_suffix(".md").read_text()
    assert "## Unrestricted attacks" in report and "| standard | hidden-command-7 | " in report
    idx, carrier, made = store.unrestricted_examples("standard", "hidden-command-7")[0]
    first = rows[idx]
    heard = f"{first['carrier_pred']} → {first['pred']} (listener {first['listener_pred']})"
    assert f"standard · hidden-command-7 · {heard}" in report and "[carrier](made-0-0-carrier.wav)" in report
    _, played = wavfile.read(tmp_path / "report" / "made-0-0-made.wav")  # the made clip, as stored
    assert np.allclose(played / 32767, made.reshape(-1), atol=1 / 32767) and not np.allclose(made, carrier)
    # A later run into the same --out that makes no unrestricted inputs shows none of these rows; one
    # that makes them again finds them done (same wall time: nothing made anew).
    bounded_only = replace(spec, attacks=tuple(a for a in spec.attacks if a.name != "hidden-command"))
    run_spec(bounded_only, tmp_path, device=CPU, progress=Progress(quiet=True))
    assert unrestricted_summaries(store) == []
    again = build_report(store, tmp_path / "again").with_suffix(".md").read_text()
    assert "## Unrestricted attacks" not in again
    run_spec(spec, tmp_path, device=CPU, progress=Progress(quiet=True))
    assert unrestricted_summaries(store) == [run]


@pytest.mark.slow  # 8 s; over-the-air keeps its budget property test (test_attacks) by default
def test_an_over_the_air_perturbation_survives_rooms_that_undo_plain_pgd(fsdd):
    trained = load_or_train(fsdd, "m5", "standard", {}, QUICK, 0, device=CPU, progress=Progress(quiet=True))
    for parameter in trained.network.parameters():
        parameter.requires_grad_(False)
    x, y = fsdd.x_test[::10], fsdd.y_test[::10]
    threat = ThreatModel("db", 30, fsdd.bounds)
    room = Channel(snr_db=(20.0, 40.0))

    def error_in_rooms(x_adv: torch.Tensor) -> float:
        with torch.no_grad():
            return (
                torch.stack([trained.model(room(x_adv)).argmax(1) != y for _ in range(8)])
                .float()
                .mean()
                .item()
            )

    torch.manual_seed(0)
    crafted = {
        name: make_plugin(registry.attacks.get(name), params, name).perturb(trained.model, x, y, threat)
        for name, params in (("pgd", {"steps": 20}), ("over-the-air", {"steps": 20, "draws": 4}))
    }
    with torch.no_grad():
        assert all((trained.model(x_adv).argmax(1) != y).float().mean() > 0.9 for x_adv in crafted.values())
    # both fool the model as it hears a clip directly; played through rooms, plain PGD's partly wears off
    assert error_in_rooms(crafted["over-the-air"]) > error_in_rooms(crafted["pgd"]) + 0.15


def test_random_resampling_is_random_differentiable_and_removes_the_top_of_the_band():
    defense = RandomResample(min_rate=0.5)
    t = torch.arange(8000, dtype=torch.float32)
    low, high = torch.sin(2 * torch.pi * 0.05 * t), torch.sin(2 * torch.pi * 0.49 * t)  # 400 Hz, 3.92 kHz
    torch.manual_seed(0)
    x = (0.4 * (low + high)).expand(4, 1, 8000).clone().requires_grad_(True)
    first, second = defense.transform(x, (-1.0, 1.0)), defense.transform(x, (-1.0, 1.0))
    assert first.shape == x.shape and not torch.allclose(first, second)  # a fresh rate per clip and call
    (grad,) = torch.autograd.grad(first.square().sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    power = torch.fft.rfft(first.detach(), dim=-1).abs().square()
    assert (power[..., 400] > 100 * power[..., 3920]).all()  # above the band of any rate under 0.98: cut
    with pytest.raises(InputError, match=r"needs waveforms shaped \(N, channels, samples\)"):
        defense.transform(torch.zeros(2, 8000), (-1.0, 1.0))

"""The user's own model: a checkpoint trained outside advsec is evaluated exactly as it is."""

import hashlib
import html
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from advsec.data.subset import draw_seed, stratified
from advsec.errors import AdvsecError, SpecError
from advsec.progress import Progress
from advsec.results import RunResults, cell_summaries
from advsec.runner import run_spec
from advsec.spec import parse_spec

CPU = torch.device("cpu")
QUIET = Progress(quiet=True)

NET = """
from torch import nn


class Net(nn.Module):
    def __init__(self, hidden=32):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.body(x)
"""

MODELS = {
    "safetensors": 'architecture = "net.py:Net"\nweights = "net.safetensors"',
    "state-dict": 'architecture = "net.py:Net"\nweights = "net.pt"',
    "exported": 'architecture = "net.pt2"',
}
NORMALIZATION = "mean = [0.5]\nstd = [0.25]\nparams = {hidden = 24}"


def spec_text(models: str, defenses: str = "") -> str:
    return f"""
name = "own"
[dataset]
name = "npz"
path = "test.npz"
{models}
{defenses}
[[threats]]
norm = "linf"
eps = [0.05, 0.1]
[[attacks]]
name = "fgsm"
[[attacks]]
name = "pgd"
steps = 10
[evaluation]
samples = 120
"""


def model_entry(label: str, files: str, extra: str = NORMALIZATION) -> str:
    return f'[[models]]\nlabel = "{label}"\n{files}\n{extra if "pt2" not in files else ""}\n'


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A plain PyTorch script, no advsec: train on normalized digits, save three ways, measure accuracy."""
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("own")
    (folder / "net.py").write_text(NET)
    namespace: dict = {}
    exec(NET, namespace)
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(digits.target)
    x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]
    torch.manual_seed(0)
    net = namespace["Net"](hidden=24)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net((x_train - 0.5) / 0.25), y_train).backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        scored = stratified(y_test, 120, draw_seed("test", 0))  # the samples `samples = 120` evaluates
        accuracy = (net((x_test[scored] - 0.5) / 0.25).argmax(1) == y_test[scored]).sum().item() / 120
    np.savez(folder / "test.npz", x=x_test.numpy(), y=y_test.numpy())
    np.savez(folder / "members.npz", x=x_test.numpy(), y=y_test.numpy(), x_train=x_train.numpy(),
             y_train=y_train.numpy())  # fmt: skip
    torch.save(net.state_dict(), folder / "net.pt")
    save_file(net.state_dict(), folder / "net.safetensors")

    class Normalized(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return net((x - 0.5) / 0.25)

    batch = torch.export.Dim("batch")
    exported = torch.export.export(Normalized(), (x_test[:4],), dynamic_shapes=({0: batch},))
    torch.export.save(exported, folder / "net.pt2")
    return folder, accuracy


def evaluate(folder: Path, text: str, out: str = "out"):
    spec = parse_spec(text, base_dir=folder)
    return run_spec(spec, folder / out, device=CPU, progress=QUIET)


def test_a_checkpoint_saved_three_ways_gets_the_scripts_accuracy_and_one_table(checkpoint) -> None:
    folder, accuracy = checkpoint
    models = "".join(model_entry(label, files) for label, files in MODELS.items())
    cells = cell_summaries(evaluate(folder, spec_text(models)))
    by_model = {label: [c for c in cells if c.defense == label] for label in MODELS}
    for label, own in by_model.items():
        assert own[0].norm == "none" and own[0].clean_accuracy == accuracy, label
        assert own[0].privacy == []  # a checkpoint's training set is unknown: no membership inference
    tables = {label: [(c.norm, c.eps, c.robust_accuracy) for c in own] for label, own in by_model.items()}
    assert tables["safetensors"] == tables["state-dict"] == tables["exported"]
    assert tables["safetensors"][2][2] < tables["safetensors"][1][2] < accuracy  # attacks really attack


def _logits(folder: Path, x: np.ndarray) -> torch.Tensor:
    """The checkpoint's logits on raw inputs ``x``, computed here as the user's script does, not by advsec."""
    from safetensors.torch import load_file

    namespace: dict = {}
    exec(NET, namespace)
    net = namespace["Net"](hidden=24)
    net.load_state_dict(load_file(folder / "net.safetensors"))
    with torch.no_grad():
        return net.eval()((torch.tensor(x) - 0.5) / 0.25)


def _scored(labels: np.ndarray, purpose: str) -> torch.Tensor:
    """The 120 samples a run seeded 0 scores for ``purpose`` ("test", "members"), drawn by class."""
    return stratified(torch.tensor(labels), 120, draw_seed(purpose, 0))


def test_an_inference_time_defense_wraps_a_checkpoint_and_a_training_one_is_refused(checkpoint) -> None:
    folder, _ = checkpoint
    test = np.load(folder / "test.npz")
    scored = _scored(test["y"], "test")
    one_bit = np.round(test["x"][scored])  # 1 bit over the bounds [0, 1]: each pixel to 0 or 1, halves to 0
    expected = (_logits(folder, one_bit).argmax(1) == torch.tensor(test["y"][scored])).sum().item() / 120
    models = model_entry("mine", MODELS["safetensors"])
    wrapped = '[[defenses]]\nname = "bit-depth"\nbits = 1\nmodel = "mine"\n'
    results = RunResults.read(evaluate(folder, spec_text(models, wrapped), out="wrapped"))
    mine, squeezed = (
        next(c for c in results.cells if c.defense == d and c.norm == "none") for d in ("mine", "bit-depth")
    )
    # the deployed model is the checkpoint, normalization included, behind the 1-bit squeeze
    assert squeezed.clean_accuracy == expected != mine.clean_accuracy
    # both rows are the user's checkpoint, nobody trained it; the wrapped one is named by its defense
    described = {m.defense: m.description for m in results.models}
    assert described["mine"]["defense"] is None
    assert described["bit-depth"]["defense"] == {"name": "bit-depth", "params": {"bits": 1}}
    assert described["bit-depth"]["weights_sha256"] == sha256(folder / "net.safetensors")
    assert [d.train_seconds for d in results.defenses] == [None, None]
    with pytest.raises(SpecError, match=r"acts by training the model.*fine_tune = true"):
        parse_spec(spec_text(models, '[[defenses]]\nname = "pgd-at"\nmodel = "mine"\n'), base_dir=folder)
    with pytest.raises(SpecError, match="did you mean 'mine'"):
        parse_spec(spec_text(models, '[[defenses]]\nname = "bit-depth"\nmodel = "mien"\n'), base_dir=folder)


def test_a_training_time_defense_fine_tunes_a_checkpoint_when_asked(checkpoint) -> None:
    folder, _ = checkpoint
    models = model_entry("mine", MODELS["safetensors"])
    tuned = '[[defenses]]\nname = "pgd-at"\nlabel = "tuned"\nmodel = "mine"\nfine_tune = true\neps = 0.1\n'
    tuned += "steps = 5\ntrain = {epochs = 10, lr = 1e-2}\n"
    text = spec_text(models, tuned).replace("test.npz", "members.npz")
    before = (folder / "net.safetensors").read_bytes()
    results = evaluate(folder, text, out="tuned")
    robust = {(c.defense, c.eps): c.robust_accuracy for c in cell_summaries(results)}
    assert robust["tuned", 0.1] > robust["mine", 0.1] + 0.1  # PGD fine-tuning made the checkpoint robust
    assert (folder / "net.safetensors").read_bytes() == before  # the user's file is never written
    again = evaluate(folder, text, out="tuned-again")  # the fine-tuned weights come from the cache
    assert {(c.defense, c.eps): c.robust_accuracy for c in cell_summaries(again)} == robust


def test_fine_tuning_is_refused_where_it_cannot_mean_anything(checkpoint) -> None:
    folder, _ = checkpoint
    models = model_entry("mine", MODELS["safetensors"]) + model_entry("graph", MODELS["exported"])
    refusals = {
        '[[defenses]]\nname = "pgd-at"\nfine_tune = true\n': "name it with model",
        '[[defenses]]\nname = "pgd-at"\nmodel = "graph"\nfine_tune = true\n': "cannot be trained",
        '[[defenses]]\nname = "random-ensemble"\nmodel = "mine"\nfine_tune = true\n': "networks of its own",
    }
    for defense, message in refusals.items():
        with pytest.raises(SpecError, match=message):
            parse_spec(spec_text(models, defense), base_dir=folder)


def test_a_checkpoint_given_its_training_split_gets_a_privacy_column(checkpoint, monkeypatch) -> None:
    import advsec.harness
    from advsec.privacy import losses

    folder, _ = checkpoint
    calls = []
    infer = advsec.harness.membership_inference
    monkeypatch.setattr(
        advsec.harness, "membership_inference", lambda *a, **k: calls.append((a, k)) or infer(*a, **k)
    )
    text = spec_text(model_entry("mine", MODELS["safetensors"])).replace("test.npz", "members.npz")
    [clean, *_] = cell_summaries(evaluate(folder, text, out="members"))
    assert [m.signal for m in clean.privacy] == ["loss", "adversarial loss"]
    assert all(m.members == m.nonmembers == 120 for m in clean.privacy)
    # The count alone held with test rows as members: the members scored must be 120 rows of the training
    # split given, drawn by class, and the non-members the 120 test samples scored ...
    data = np.load(folder / "members.npz")
    drawn = [(data[f"x{split}"], data[f"y{split}"], _scored(data[f"y{split}"], purpose))
             for split, purpose in (("_train", "members"), ("", "test"))]  # fmt: skip
    expected = [(torch.tensor(x[rows]), torch.tensor(y[rows])) for x, y, rows in drawn]
    [((model, *scored), options)] = calls
    for (x, y), (want_x, want_y), role in zip(scored, expected, ("members", "non-members"), strict=True):
        assert torch.equal(x, want_x) and torch.equal(y, want_y), f"the {role} are other rows"
    # ... and the loss signal's stored AUC is theirs.
    member, nonmember = (-losses(model, x, y, options["batch"]) for x, y in expected)
    pairs = member[:, None] - nonmember[None, :]
    auc = (pairs > 0).double().mean() + 0.5 * (pairs == 0).double().mean()
    assert clean.privacy[0].auc == pytest.approx(auc.item(), abs=1e-9)


class RunsCode:
    """What a malicious checkpoint pickles: unpickling it would run a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_checkpoint_never_runs_and_says_how_to_convert(checkpoint, tmp_path) -> None:
    folder, _ = checkpoint
    marker = tmp_path / "ran"
    with (folder / "evil.pt").open("wb") as handle:
        pickle.dump({"body.1.weight": RunsCode(marker)}, handle)
    text = spec_text(model_entry("evil", 'architecture = "net.py:Net"\nweights = "evil.pt"'))
    with pytest.raises(AdvsecError, match=r"refused.*safetensors"):
        evaluate(folder, text, out="evil")
    assert not marker.exists()


def test_a_mis_keyed_state_dict_names_its_keys(checkpoint) -> None:
    folder, _ = checkpoint
    state = torch.load(folder / "net.pt", weights_only=True)
    state["head.weight"] = state.pop("body.3.weight")
    state["body.1.bias"] = torch.zeros(7)
    torch.save(state, folder / "miskeyed.pt")
    text = spec_text(model_entry("bad", 'architecture = "net.py:Net"\nweights = "miskeyed.pt"'))
    with pytest.raises(AdvsecError) as caught:
        evaluate(folder, text, out="miskeyed")
    message = str(caught.value)
    assert "missing: body.3.weight" in message and "unexpected: head.weight" in message
    assert "mis-shaped: body.1.bias (7,) (model: (24,))" in message


@pytest.mark.parametrize(
    ("forward", "expected"),
    [
        ("return self.body(x).softmax(1)", "returns probabilities"),
        ("return self.body(x)[:, :3]", "expected 10 logits"),
        ("return self.body(x[:, :, :4])", "cannot take inputs shaped"),
    ],
)
def test_a_model_that_does_not_answer_in_logits_is_refused_before_any_attack(
    checkpoint, forward: str, expected: str
) -> None:
    folder, _ = checkpoint
    (folder / "odd.py").write_text(NET.replace("return self.body(x)", forward))
    text = spec_text(model_entry("odd", 'architecture = "odd.py:Net"\nweights = "net.safetensors"'))
    with pytest.raises(AdvsecError, match=expected):
        evaluate(folder, text, out="odd")


def test_advsec_evaluate_needs_no_spec_and_prints_the_one_it_ran(checkpoint, tmp_path) -> None:
    from click.testing import CliRunner

    from advsec.cli import main

    folder, accuracy = checkpoint
    args = ["evaluate", "--model", f"{folder / 'net.py'}:Net", "-m", "hidden=24",
            "--weights", str(folder / "net.safetensors"), "--mean", "0.5", "--std", "0.25",
            "--data", str(folder / "test.npz"),
            "--eps", "8/255", "--attacks", "fgsm,pgd", "--samples", "120"]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a"), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [clean, attacked] = json.loads(result.output)["cells"]
    assert clean["clean_accuracy"] == accuracy and attacked["eps"] == pytest.approx(8 / 255, abs=1e-15)
    kept = tmp_path / "a" / "spec.toml"
    again = CliRunner().invoke(main, ["run", str(kept), "--out", str(tmp_path / "b"), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["cells"][1]["robust_accuracy"] == attacked["robust_accuracy"]
    bad = CliRunner().invoke(main, [*args[:-6], "--eps", "8/0"])
    assert bad.exit_code == 2 and "not a budget" in bad.output


def in_memory(folder: Path, samples: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The checkpoint and the first test samples as a notebook holds them: a module and tensors."""
    namespace: dict = {}
    exec(NET, namespace)
    net = namespace["Net"](hidden=24)
    net.load_state_dict(torch.load(folder / "net.pt", weights_only=True))
    data = np.load(folder / "test.npz")
    return net, torch.from_numpy(data["x"])[:samples], torch.from_numpy(data["y"])[:samples]


class NormalizedNet(nn.Module):
    """The checkpoint as torchattacks sees it: normalization inside, inputs in [0, 1]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 0.5) / 0.25)


@pytest.mark.slow  # AutoAttack's Square spends 5,000 queries on every robust sample, ours too
def test_advsec_evaluate_in_memory_is_no_weaker_than_torchattacks_autoattack(checkpoint) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    import advsec

    folder, accuracy = checkpoint
    net, x, y = in_memory(folder, 120)
    result = advsec.evaluate(net, x, y, eps=0.1, mean=[0.5], std=[0.25])
    assert result.clean_accuracy == accuracy and net.training  # the user's module is left as it was
    assert result.robust[0.1].mean() == result.robust_accuracy[0.1] < accuracy
    model = NormalizedNet(net).eval()
    autoattack = torchattacks.AutoAttack(
        model, norm="Linf", eps=0.1, version="standard", n_classes=10, seed=0
    )
    x_adv = autoattack(x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    with torch.no_grad():
        theirs = (model(x_adv).argmax(1) == y).float().mean().item()
    print(f"advsec worst-case {result.robust_accuracy[0.1]:.3f}, torchattacks AutoAttack {theirs:.3f}")
    assert result.robust_accuracy[0.1] <= theirs + 0.01


def test_the_readme_notebook_example_runs_as_printed(checkpoint, capsys) -> None:
    import re

    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- own-model-example -->\n```python\n(.*?)```", readme, re.S)
    assert match, "the README lost its own-model example"
    net, x, y = in_memory(checkpoint[0], 12)
    example = {"model": net.eval(), "x_test": x, "y_test": y}  # trained on inputs normalized by 0.5, 0.25
    exec(match.group(1), example)
    result = example["result"]
    assert result.clean_accuracy > 0.8 and 0 <= result.robust_accuracy[8 / 255] < result.clean_accuracy
    with torch.no_grad():  # the normalization the README declares is the one the model was trained with
        assert result.clean_accuracy == (NormalizedNet(net)(x).argmax(1) == y).float().mean().item()
    printed = capsys.readouterr()
    assert printed.out.startswith(str(result.robust_accuracy[8 / 255])) and "warning" not in printed.err


def by_class(folder: Path) -> tuple[torch.Tensor, torch.Tensor, Path]:
    """The test split sorted by class, whose first samples are all one class: as tensors and as an npz."""
    data = np.load(folder / "test.npz")
    order = np.argsort(data["y"], kind="stable")
    x, y = torch.from_numpy(data["x"][order]), torch.from_numpy(data["y"][order])
    np.savez(folder / "by-class.npz", x=x.numpy(), y=y.numpy())
    return x, y, folder / "by-class.npz"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def robust_vs_eps_axes(monkeypatch: pytest.MonkeyPatch) -> list:
    """The axes of every robust-accuracy-vs-ε figure the reports built from now on draw."""
    from advsec.report import figures

    drawn, png = [], figures._png

    def keep(fig):
        drawn.extend(ax for ax in fig.axes if ax.get_title().startswith("Robust accuracy vs"))
        return png(fig)

    monkeypatch.setattr(figures, "_png", keep)
    return drawn


def drawn_points(ax) -> list[tuple[list[float], str]]:
    """Each line the figure drew in data coordinates (not the report budget's or chance's): its ε values
    and its line style."""
    return [(list(line.get_xdata()), line.get_linestyle()) for line in ax.get_lines()
            if line.get_transform() == ax.transData]  # fmt: skip


def stored_classes(out: Path, y: torch.Tensor) -> set[int]:
    """The true classes of the examples an attacked cell of the run in ``out`` kept."""
    from advsec.store import Store

    store = Store(out / "results.sqlite", readonly=True)
    cell = next(c["cell"] for c in store.cells() if c["norm"] != "none")
    return {int(y[i]) for i, _, _ in store.examples(cell)}


def scorecard_of(page: str) -> tuple[list[str], list[str]]:
    from tests.test_report import Tables

    header, row = Tables(page).tables[0]
    return header, row


def test_the_report_of_advsec_evaluate_describes_the_checkpoint_as_it_was_given(
    checkpoint, tmp_path, monkeypatch
) -> None:
    from click.testing import CliRunner

    from advsec.cli import main

    folder, _ = checkpoint
    _, y, data = by_class(folder)
    axes = robust_vs_eps_axes(monkeypatch)
    out = tmp_path / "run"
    args = ["evaluate", "--model", f"{folder / 'net.py'}:Net", "-m", "hidden=24",
            "--weights", str(folder / "net.safetensors"), "--mean", "0.5", "--std", "0.25",
            "--data", str(data), "--eps", "8/255", "--attacks", "fgsm,pgd", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    [model], [defense], [_, attacked] = payload["models"], payload["defenses"], payload["cells"]
    architecture, weights = sha256(folder / "net.py"), sha256(folder / "net.safetensors")
    assert model["description"] | {"architecture": None} == {
        "source": "checkpoint", "architecture": None, "architecture_sha256": architecture,
        "weights": str(folder / "net.safetensors"), "weights_sha256": weights, "model_params": {"hidden": 24},
        "normalization": {"mean": [0.5], "std": [0.25]}, "defense": None,
    }  # fmt: skip
    assert defense["train_seconds"] is None  # nobody trained it
    page = (out / "report.html").read_text()
    for text in (html.unescape(page), (out / "report.md").read_text()):
        assert f"sha256 {architecture}" in text and f"sha256 {weights}" in text
        assert "Normalization: mean [0.5], std [0.25]" in text and "model net.py:Net" in text
        assert "mlp" not in text and "standard" not in text  # no architecture nor training it never had
    header, row = scorecard_of(page)
    low, high = attacked["robust_interval"]
    robust = f"{100 * attacked['robust_accuracy']:.1f}% [{100 * low:.1f}%, {100 * high:.1f}%]"
    assert row[:2] == ["net", "checkpoint, as given"] and row[header.index("ℓ∞ ε=8/255")] == robust
    assert "Train s" not in header
    # the terminal's scorecard: the interval too, and no training time
    shown = CliRunner().invoke(main, ["show", str(out)], catch_exceptions=False).output
    terminal = f"{100 * attacked['robust_accuracy']:.1f} [{100 * low:.1f}–{100 * high:.1f}]"
    assert terminal in shown and "train s" not in shown
    # one budget is points: the robust accuracy at 8/255 and the clean accuracy at 0, no line between them
    [ax] = axes
    assert sorted(drawn_points(ax)) == [([0.0], "None"), ([pytest.approx(8 / 255)], "None")]
    assert len(stored_classes(out, y)) > 1  # the first samples are all one class; the examples are not


def test_the_report_of_the_notebook_route_describes_the_model_in_memory(checkpoint, tmp_path) -> None:
    import advsec
    from advsec.results import budget_key
    from advsec.user_models import weights_fingerprint

    net, _, _ = in_memory(checkpoint[0], 0)
    x, y, _ = by_class(checkpoint[0])
    model = NormalizedNet(net).eval()
    result = advsec.evaluate(model, x[:40], y[:40], eps=8 / 255, out=tmp_path / "nb", report=True)
    [described] = result.results.to_json()["models"]
    assert described["description"] == {"source": "in memory", "architecture": "NormalizedNet",
                                         "weights_fingerprint": weights_fingerprint(model),
                                         "normalization": None, "defense": None}  # fmt: skip
    page = result.report.read_text()
    text = html.unescape(page)
    assert f"Weights fingerprint {weights_fingerprint(model)}" in text
    assert "Normalization: none declared" in text
    assert "model NormalizedNet (in memory)" in text and "mlp" not in text and "standard" not in text
    header, row = scorecard_of(page)
    assert row[1] == "in memory, as given" and "Train s" not in header
    low, high = result.results.defenses[0].robust_interval[budget_key("linf", 8 / 255)]
    assert row[header.index("ℓ∞ ε=8/255")].endswith(f"[{100 * low:.1f}%, {100 * high:.1f}%]")
    assert len(stored_classes(result.out, y)) > 1

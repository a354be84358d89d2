"""Published results, reproduced through the CLI's code paths (slow: `pytest -m slow`; needs shared data).

Each test runs a spec from evaluations/ (cut to the defenses it checks) and asserts what was measured here,
with the published figure in the docstring. Figures and times are in the issue notes.
"""

import tomllib
from pathlib import Path

import pytest
import torch

from advsec.progress import Progress
from advsec.results import cell_summaries, certified_summaries
from advsec.runner import run_spec
from advsec.spec import Spec, spec_from_dict
from tests.conftest import REPO

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")


def spec_from(name: str, keep: set[str], **overrides: object) -> Spec:
    """An evaluation spec restricted to the defenses labelled ``keep``, tables replaced by ``overrides``."""
    text = (REPO / "evaluations" / f"{name}.toml").read_text()
    raw = tomllib.loads(text)
    raw["defenses"] = [d for d in raw["defenses"] if d.get("label", d["name"]) in keep]
    raw.update(overrides)
    return spec_from_dict(raw, text=text, default_name=name)


@pytest.fixture(autouse=True)
def _data(shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVSEC_DATA", str(shared_data_dir))


def test_randomized_smoothing_certifies_mnist_at_radius_half(tmp_path):
    """Cohen et al.: LeNet, sigma 0.25, n = 100,000 → 96.7 % certified at r = 0.5; target here ≥ 94 %."""
    spec = spec_from("smoothing-mnist", {"smoothing σ=0.25"}, threats=[{"norm": "l2", "eps": [0.5]}])
    store = run_spec(spec, tmp_path, device=CPU, progress=Progress(quiet=True))
    [certified] = certified_summaries(store)
    assert certified.certified["0.5"] >= 0.94


def test_fast_adversarial_training_on_mnist(tmp_path):
    """Wong et al.: clean 98.50, PGD-50x10 88.77 at eps 0.3. Measured here 98.2 / 84.0 (issue 5 asks ≥ 85,
    not yet met); this guards what advsec reaches: clean ≥ 98 and PGD-50x10 ≥ 80 on 1,000 images."""
    spec = spec_from("mnist-linf", {"fast-at"}, threats=[{"norm": "linf", "eps": [0.3]}])
    store = run_spec(spec, tmp_path, device=CPU, progress=Progress(quiet=True))
    cell = next(c for c in cell_summaries(store) if c.norm == "linf")
    pgd = next(a for a in cell.attacks if a.attack == "pgd-50x10")
    assert cell.clean_accuracy >= 0.98
    assert pgd.robust_after >= 0.80


def test_pgd_adversarial_training_on_mnist(tmp_path):
    """Madry et al.: clean 98.8, PGD-100 with restarts 89.3 at eps 0.3 (ours: docs/results.md). Trained at the
    full budget from the first batch, this recipe collapsed into a constant classifier; with its warm-up it
    must keep clean >= 98 and PGD-50x10 >= 88 on 1,000 images. About 15 minutes on 2 cores."""
    spec = spec_from("mnist-linf", {"pgd-at"}, threats=[{"norm": "linf", "eps": [0.3]}],
                     attacks=[{"name": "pgd", "label": "pgd-50x10", "steps": 50, "restarts": 10,
                               "step_fraction": 0.0333}])  # fmt: skip
    store = run_spec(spec, tmp_path, device=CPU, progress=Progress(quiet=True))
    cell = next(c for c in cell_summaries(store) if c.norm == "linf")
    assert cell.clean_accuracy >= 0.98
    assert cell.robust_accuracy >= 0.88


def test_m5_hears_the_spoken_digits(tmp_path):
    """Issue 7 asks one FSDD model ≥ 97 % trained in ≤ 3 min on 2 cores; M5 measured 98.3 % in 64 s."""
    spec = spec_from("fsdd-linf", {"standard"}, threats=[{"norm": "linf", "eps": [0.001]}])
    store = run_spec(spec, tmp_path, device=CPU, progress=Progress(quiet=True))
    clean = next(c for c in cell_summaries(store) if c.norm == "none")
    assert clean.clean_accuracy >= 0.97

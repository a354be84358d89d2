"""The report in a real browser: headless Chromium loads report.html offline, without errors or requests."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from advsec.harness import run_spec
from advsec.progress import Progress
from advsec.report import build_report
from advsec.spec import parse_spec
from tests.browser import chromium, visit

pytestmark = pytest.mark.skipif(
    chromium() is None, reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)"
)

# Every kind of section: a sortable defense table, a random defense's repeated evaluation and adaptive
# attacks, sanity checks, all figures, and the sitting-duck replay.
SPEC = """
name = "browser"
[train]
epochs = 10
[[defenses]]
name = "standard"
[[defenses]]
name = "weight-noise"
sigma = 0.2
[[threats]]
norm = "linf"
eps = [0.05, 0.1]
[[attacks]]
name = "pgd"
steps = 5
[evaluation]
samples = 60
[replay]
delays = [0, 10]
samples = 40
repeats = 2
"""

IMAGES_LOADED = "[...document.images].map(i => i.complete && i.naturalWidth > 0)"
SORTS = """(() => {
  const table = document.querySelector("table.sortable");
  const column = [...table.tHead.rows[0].cells].findIndex(c => c.textContent.startsWith("Clean"));
  const read = () => [...table.tBodies[0].rows].map(r => parseFloat(r.cells[column].textContent));
  table.tHead.rows[0].cells[column].click();
  const first = read();
  table.tHead.rows[0].cells[column].click();
  return [first, read()];
})()"""


def test_the_report_loads_offline_in_chromium_without_errors(tmp_path):
    from advsec.replay import replay_spec

    spec = parse_spec(SPEC)
    store = run_spec(spec, tmp_path, device=torch.device("cpu"), progress=Progress(quiet=True))
    replay_spec(spec, store, device=torch.device("cpu"), progress=Progress(quiet=True))
    page = build_report(store, tmp_path / "report")

    seen = visit(page, {"images": IMAGES_LOADED, "sorted": SORTS})

    assert seen.errors == []
    assert all(url.startswith(("file:", "data:")) for url in seen.requests), seen.requests
    assert len(seen.evaluations["images"]) == page.read_text().count("<img") >= 4  # figures, incl. replay
    assert all(seen.evaluations["images"])
    first, second = seen.evaluations["sorted"]  # a click sorts the column, a second click reverses it
    assert sorted(first) in (first, first[::-1]) and second == first[::-1]
    pixels = imread(io.BytesIO(seen.screenshot))
    assert pixels.shape[0] > 1000 and pixels.shape[1] >= 1200  # the whole page, not a blank viewport
    assert np.std(pixels[..., :3]) > 0.05 and (pixels[..., :3] < 0.5).mean() > 0.005  # text and figures

"""The report in a real browser: headless Chromium loads report.html offline, without errors or requests."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from advsec.progress import Progress
from advsec.report import build_report
from advsec.runner import run_spec
from advsec.spec import parse_spec
from tests.browser import chromium, visit
from tests.conftest import missing


@pytest.fixture(autouse=True)
def _chromium() -> None:
    """Skips without Chromium, except in CI (``CI=true``), where a browser test that did not run fails."""
    if chromium() is None:
        missing("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")


# Every kind of section: a sortable defense table (three rows), a random defense's repeated evaluation and
# adaptive attacks, sanity checks, all figures, and the sitting-duck replay.
SPEC = """
name = "browser"
[train]
epochs = 10
[[defenses]]
name = "standard"
[[defenses]]
name = "weight-noise"
sigma = 0.2
[[defenses]]
name = "fgsm-at"
eps = 0.1
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
# The first numeric column whose values all differ and are not yet in order either way: read, clicked
# once, clicked again.
SORTS = """(() => {
  const table = document.querySelector("table.sortable"), headers = [...table.tHead.rows[0].cells];
  const read = column => [...table.tBodies[0].rows].map(r =>
    parseFloat(r.cells[column].textContent.replace(/[,%]/g, "")));
  const rising = v => v.every((x, i) => i === 0 || v[i - 1] <= x);
  const ordered = v => rising(v) || rising(v.map(x => -x));
  const column = headers.findIndex((_, c) => {
    const v = read(c);
    return v.every(x => !isNaN(x)) && new Set(v).size === v.length && !ordered(v);
  });
  if (column < 0) return null;
  const before = read(column);
  headers[column].click();
  const first = read(column);
  headers[column].click();
  return {header: headers[column].textContent, before, first, second: read(column)};
})()"""


def test_the_report_loads_offline_in_chromium_without_errors(tmp_path):
    spec = parse_spec(SPEC)
    store = run_spec(spec, tmp_path, device=torch.device("cpu"), progress=Progress(quiet=True))
    page = build_report(store, tmp_path / "report")

    seen = visit(page, {"images": IMAGES_LOADED, "sorted": SORTS})

    assert seen.errors == []
    assert all(url.startswith(("file:", "data:")) for url in seen.requests), seen.requests
    assert len(seen.evaluations["images"]) == page.read_text().count("<img") >= 4  # figures, incl. replay
    assert all(seen.evaluations["images"])
    # A click sorts the column high to low, a second click low to high: checked against its values, on
    # three rows or more that were in neither order before, so a mere reversal of rows cannot pass.
    sort = seen.evaluations["sorted"]
    assert sort is not None, "no column of distinct numbers out of order to sort"
    assert len(sort["before"]) >= 3, sort
    assert sort["first"] == sorted(sort["before"], reverse=True), sort
    assert sort["second"] == sorted(sort["before"]), sort
    pixels = imread(io.BytesIO(seen.screenshot))
    assert pixels.shape[0] > 1000 and pixels.shape[1] >= 1200  # the whole page, not a blank viewport
    assert np.std(pixels[..., :3]) > 0.05 and (pixels[..., :3] < 0.5).mean() > 0.005  # text and figures

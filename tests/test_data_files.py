"""Datasets from the user's files: an .npz, an image folder (PNG/JPEG) and CIFAR-10's binary batches.

Every fixture is written by the test itself (a few samples); nothing is downloaded: the CIFAR-10 download is
served a fake archive from a ``file://`` mirror. Each kind loads through ``load_dataset`` and runs end to
end from a spec's ``[dataset]`` table; each bad file is refused with a message naming it.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from advsec.cli import main
from advsec.data import cifar10
from advsec.data.load import load_dataset
from advsec.errors import DataError, SpecError
from advsec.progress import Progress
from advsec.results import cell_summaries
from advsec.runner import run_spec
from advsec.spec import load_spec

CPU = torch.device("cpu")
SPEC = """
name = "{name}"
model = "mlp"
seed = 0

[dataset]
{dataset}

[train]
epochs = 2
batch_size = 16
lr = 0.01

[[defenses]]
name = "standard"

[[threats]]
norm = "linf"
eps = [0.02]

[[attacks]]
name = "fgsm"
"""


def separable(rng: np.random.Generator, n: int, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 1x8x8 inputs in [0, 1]: faint noise, and a bright band in the rows of the sample's class."""
    y = np.arange(n) % classes
    x = rng.random((n, 1, 8, 8), dtype=np.float32) * 0.2
    for i, label in enumerate(y):
        x[i, 0, 2 * label : 2 * label + 2] = 0.9
    return x, y


def run_dataset_spec(tmp_path: Path, dataset: str) -> float:
    """Run a spec training an MLP for 2 epochs on ``dataset`` (a [dataset] table's body): clean accuracy."""
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC.format(name=tmp_path.name, dataset=dataset))
    store = run_spec(load_spec(spec_file), tmp_path / "out", device=CPU, progress=Progress(quiet=True))
    cells = cell_summaries(store)
    assert {cell.eps for cell in cells} >= {0.02} and all(cell.n for cell in cells)
    return cells[0].clean_accuracy


def refusal(name: str, params: dict) -> str:
    with pytest.raises(DataError) as caught:
        load_dataset(name, params)
    return str(caught.value)


# --- npz ------------------------------------------------------------------------------------------------


def test_an_npz_with_both_splits_loads_as_stored_and_runs_from_a_spec(tmp_path):
    rng = np.random.default_rng(0)
    x_train, y_train = separable(rng, 60)
    x, y = separable(rng, 30)
    np.savez(tmp_path / "data.npz", x=x, y=y, x_train=x_train, y_train=y_train)

    dataset = load_dataset("npz", {"path": str(tmp_path / "data.npz")})
    assert torch.equal(dataset.x_test, torch.from_numpy(x)) and torch.equal(
        dataset.y_test, torch.from_numpy(y)
    )
    assert torch.equal(dataset.x_train, torch.from_numpy(x_train)) and dataset.y_train.dtype == torch.int64
    assert dataset.classes == ("0", "1", "2") and dataset.bounds == (0.0, 1.0) and dataset.domain == "image"
    rebounded = load_dataset("npz", {"path": str(tmp_path / "data.npz"), "bounds": [0, 2]})
    assert rebounded.fingerprint != dataset.fingerprint  # a cached model never outlives the declared facts

    # The spec names the file relative to itself, and the run trains and attacks on it.
    assert run_dataset_spec(tmp_path, 'name = "npz"\npath = "data.npz"') >= 0.8


def test_an_npz_without_a_training_split_has_an_empty_one_and_its_own_class_names(tmp_path):
    x, y = separable(np.random.default_rng(1), 6)
    np.savez(tmp_path / "eval.npz", x=x[:, 0], y=y, classes=np.array(["top", "middle", "bottom"]))
    dataset = load_dataset("npz", {"path": str(tmp_path / "eval.npz")})
    assert dataset.x_train.shape == (0, 1, 8, 8) and dataset.y_train.shape == (0,)
    assert dataset.x_test.shape == (6, 1, 8, 8)  # (N, H, W): one channel added
    assert dataset.classes == ("top", "middle", "bottom")
    declared = ["a", "b", "c"]
    message = refusal("npz", {"path": str(tmp_path / "eval.npz"), "classes": declared})
    assert "eval.npz: classes lists ['top', 'middle', 'bottom'], but the spec declares" in message


def test_uint8_pixels_are_scaled_to_the_unit_interval_or_kept_for_bounds_0_255(tmp_path):
    pixels = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    np.savez(tmp_path / "pixels.npz", x=pixels, y=np.array([0, 1]))
    path = str(tmp_path / "pixels.npz")
    scaled = load_dataset("npz", {"path": path})
    assert torch.equal(scaled.x_test, torch.from_numpy(pixels.astype(np.float32)) / 255.0)
    raw = load_dataset("npz", {"path": path, "bounds": [0, 255]})
    assert torch.equal(raw.x_test, torch.from_numpy(pixels.astype(np.float32)))
    assert raw.bounds == (0.0, 255.0)
    message = refusal("npz", {"path": path, "bounds": [-1, 1]})
    assert message.startswith(f"{path}: x is uint8") and "[-1.0, 1.0]" in message


def test_audio_arrays_get_a_channel_and_keep_their_rate(tmp_path):
    waves = np.sin(np.linspace(0, 20, 4 * 100, dtype=np.float32)).reshape(4, 100)
    np.savez(tmp_path / "clips.npz", x=waves, y=np.array([0, 1, 0, 1]))
    params = {"path": str(tmp_path / "clips.npz"), "domain": "audio", "bounds": [-1, 1], "sample_rate": 8000}
    dataset = load_dataset("npz", params)
    assert dataset.x_test.shape == (4, 1, 100) and dataset.domain == "audio" and dataset.sample_rate == 8000


BAD_NPZ = {
    "nan.npz": (
        {"x": np.array([0.5, np.nan, 0.5, np.inf]).reshape(4, 1, 1, 1), "y": [0] * 4},
        "samples [1, 3]",
    ),
    "labels.npz": ({"x": np.zeros((3, 1, 2, 2), np.float32), "y": [0, 1, 12]}, "y holds labels 0..12"),
    "negative.npz": ({"x": np.zeros((2, 1, 2, 2), np.float32), "y": [0, -1]}, "negative label -1"),
    "int-inputs.npz": ({"x": np.zeros((2, 1, 2, 2), np.int32), "y": [0, 1]}, "x is int32"),
    "float-labels.npz": ({"x": np.zeros((2, 1, 2, 2), np.float32), "y": [0.0, 1.0]}, "y is float64"),
    "short-labels.npz": ({"x": np.zeros((3, 1, 2, 2), np.float32), "y": [0, 1]}, "expected 3 integer"),
    "bounds.npz": ({"x": np.full((2, 1, 2, 2), 200, np.float32), "y": [0, 1]}, "outside the declared bounds"),
    "nhwc.npz": ({"x": np.zeros((2, 8, 8, 3), np.float32), "y": [0, 1]}, "channels last"),
    "flat.npz": ({"x": np.zeros((2, 4), np.float32), "y": [0, 1]}, "expected image inputs shaped"),
    "no-labels.npz": ({"x": np.zeros((2, 1, 2, 2), np.float32)}, "no array y"),
    "extra.npz": ({"x": np.zeros((2, 1, 2, 2), np.float32), "y": [0, 1], "X": [1]}, "unexpected arrays X"),
    "half-train.npz": (
        {"x": np.zeros((2, 1, 2, 2), np.float32), "y": [0, 1], "x_train": np.zeros((2, 1, 2, 2), np.float32)},
        "holds x_train but no y_train",
    ),
    "train-shape.npz": (
        {
            "x": np.zeros((2, 1, 2, 2), np.float32),
            "y": [0, 1],
            "x_train": np.zeros((2, 1, 3, 3), np.float32),
            "y_train": [0, 1],
        },
        "x_train samples are shaped (1, 3, 3) but x samples (1, 2, 2)",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_NPZ))
def test_a_bad_npz_is_refused_naming_the_file(tmp_path, name):
    arrays, expected = BAD_NPZ[name]
    np.savez(tmp_path / name, **{key: np.asarray(value) for key, value in arrays.items()})
    params = {"path": str(tmp_path / name)}
    if name == "labels.npz":
        params["classes"] = [str(c) for c in range(10)]
    message = refusal("npz", params)
    assert message.startswith(f"{tmp_path / name}: ") and expected in message
    if name == "labels.npz":
        assert message.endswith("labels.npz: y holds labels 0..12 but classes lists 10")


def test_a_truncated_or_missing_npz_is_refused_naming_the_file(tmp_path):
    np.savez(tmp_path / "whole.npz", x=np.zeros((2, 1, 2, 2), np.float32), y=np.array([0, 1]))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:300])
    assert refusal("npz", {"path": str(tmp_path / "cut.npz")}).startswith(f"{tmp_path / 'cut.npz'}: ")
    assert refusal("npz", {"path": str(tmp_path / "none.npz")}) == f"{tmp_path / 'none.npz'}: no such file"
    np.save(tmp_path / "single.npy", np.zeros(3))
    assert "expected an .npz archive" in refusal("npz", {"path": str(tmp_path / "single.npy")})


class _Payload:
    """Unpickling this would create ``marker``: the proof that a loader ran code from a data file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


def test_an_npz_that_needs_unpickling_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    payload = np.empty(2, dtype=object)
    payload[:] = [_Payload(marker), _Payload(marker)]
    np.savez(tmp_path / "pickled.npz", x=payload, y=np.array([0, 1]))  # numpy pickles object arrays
    message = refusal("npz", {"path": str(tmp_path / "pickled.npz")})
    assert "pickled.npz: array x holds Python objects" in message and "never unpickles" in message
    assert not marker.exists()


def test_a_spec_with_a_wrong_npz_key_names_the_key_path(tmp_path):
    with pytest.raises(SpecError, match=r"dataset\.colour: unknown key"):
        load_dataset("npz", {"path": "x.npz", "colour": "red"})
    with pytest.raises(SpecError, match=r"dataset\.bounds: expected \[low, high\] with low < high"):
        load_dataset("npz", {"path": "x.npz", "bounds": [1, 0]})


# --- image folders --------------------------------------------------------------------------------------

COLOURS = {"blue": (20, 40, 230), "red": (230, 30, 20)}  # sorted names: blue is class 0, red class 1


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (8, 8), seed: int = 0):
    """An RGB image of ``colour`` with a little noise, ``size`` (height, width), as PNG or JPEG by suffix."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.integers(-15, 16, (*size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return pixels


def write_folder(folder: Path, per_class: int, seed: int = 0) -> dict[Path, np.ndarray]:
    """``per_class`` images per class, alternating PNG and JPEG; returns each PNG's pixels."""
    written = {}
    for name, colour in COLOURS.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            path = folder / name / f"{i:02d}.{'png' if i % 2 == 0 else 'jpg'}"
            pixels = write_image(path, colour, seed=seed + i)
            if path.suffix == ".png":
                written[path] = pixels
    return written


def test_an_image_folder_loads_pngs_exactly_and_jpegs_closely(tmp_path):
    pngs = write_folder(tmp_path / "flat", per_class=3)
    (tmp_path / "flat" / ".DS_Store").write_bytes(b"\0")  # hidden files are skipped
    dataset = load_dataset("image-folder", {"path": str(tmp_path / "flat")})
    assert dataset.classes == ("blue", "red") and dataset.bounds == (0.0, 1.0)
    assert dataset.x_test.shape == (6, 3, 8, 8) and dataset.x_test.dtype == torch.float32
    assert dataset.y_test.tolist() == [0, 0, 0, 1, 1, 1] and dataset.x_train.shape == (0, 3, 8, 8)
    first_png = torch.from_numpy(pngs[tmp_path / "flat" / "blue" / "00.png"]).permute(2, 0, 1).float() / 255
    assert torch.equal(dataset.x_test[0], first_png)
    jpeg = dataset.x_test[1]  # blue/01.jpg: lossy, but still blue
    assert (jpeg[2] - jpeg[0]).mean() > 0.5

    grey = load_dataset("image-folder", {"path": str(tmp_path / "flat"), "grayscale": True, "resize": [5, 7]})
    assert grey.x_test.shape == (6, 1, 5, 7) and grey.fingerprint != dataset.fingerprint


def test_an_image_folder_with_train_and_test_runs_from_a_spec(tmp_path):
    write_folder(tmp_path / "pictures" / "train", per_class=12, seed=0)
    write_folder(tmp_path / "pictures" / "test", per_class=6, seed=100)
    dataset = load_dataset("image-folder", {"path": str(tmp_path / "pictures")})
    assert dataset.x_train.shape == (24, 3, 8, 8) and dataset.x_test.shape == (12, 3, 8, 8)
    assert run_dataset_spec(tmp_path, 'name = "image-folder"\npath = "pictures"') >= 0.8


def test_images_of_mixed_sizes_name_two_files_and_their_sizes_unless_resized(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    write_image(tmp_path / "cat" / "a.png", (1, 2, 3), size=(8, 8))
    write_image(tmp_path / "dog" / "b.jpeg", (1, 2, 3), size=(6, 9))
    message = refusal("image-folder", {"path": str(tmp_path)})
    assert f"{tmp_path / 'cat' / 'a.png'} is 8x8 but {tmp_path / 'dog' / 'b.jpeg'} is 6x9" in message
    assert "resize = [height, width]" in message
    resized = load_dataset("image-folder", {"path": str(tmp_path), "resize": [4, 4]})
    assert resized.x_test.shape == (2, 3, 4, 4)


def test_an_unreadable_image_or_a_stray_file_is_refused_naming_it(tmp_path):
    (tmp_path / "a").mkdir()
    write_image(tmp_path / "a" / "good.png", (9, 9, 9))
    (tmp_path / "a" / "garbage.png").write_bytes(b"not an image at all")
    message = refusal("image-folder", {"path": str(tmp_path)})
    assert message.startswith(f"{tmp_path / 'a' / 'garbage.png'}: cannot read it as a PNG or JPEG image")

    (tmp_path / "a" / "garbage.png").unlink()
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(buffer, "PNG")
    (tmp_path / "a" / "cut.png").write_bytes(buffer.getvalue()[:60])
    assert refusal("image-folder", {"path": str(tmp_path)}).startswith(f"{tmp_path / 'a' / 'cut.png'}: ")

    (tmp_path / "a" / "cut.png").unlink()
    (tmp_path / "a" / "notes.txt").write_text("hello")
    assert refusal("image-folder", {"path": str(tmp_path)}).startswith(
        f"{tmp_path / 'a' / 'notes.txt'}: not a PNG"
    )

    (tmp_path / "a" / "notes.txt").unlink()
    Image.fromarray(np.zeros((4, 4), np.uint16) + 999).save(tmp_path / "a" / "deep.png")
    assert "deep.png: pixel mode I;16" in refusal("image-folder", {"path": str(tmp_path)})


def test_an_image_folder_layout_mistake_is_named(tmp_path):
    assert "does not exist" in refusal("image-folder", {"path": str(tmp_path / "nowhere")})
    write_folder(tmp_path / "split" / "test", per_class=1)
    (tmp_path / "split" / "train" / "blue").mkdir(parents=True)
    write_image(tmp_path / "split" / "train" / "blue" / "x.png", (0, 0, 255))
    message = refusal("image-folder", {"path": str(tmp_path / "split")})
    assert message.startswith(f"{tmp_path / 'split'}: train/ and test/ must hold the same class folders")
    assert message.endswith("; red is in only one of them")
    write_folder(tmp_path / "only-train" / "train", per_class=1)
    assert "holds train/ but no test/" in refusal("image-folder", {"path": str(tmp_path / "only-train")})


# --- CIFAR-10 binary batches ----------------------------------------------------------------------------


def batch_bytes(labels: list[int], seed: int) -> bytes:
    """Records of a CIFAR-10 binary batch: each label's image is bright in channel ``label % 3``."""
    rng = np.random.default_rng(seed)
    records = []
    for label in labels:
        image = rng.integers(0, 40, (3, 32, 32), dtype=np.uint8)
        image[label % 3] += 180
        records.append(bytes([label]) + image.tobytes())
    return b"".join(records)


def write_batches(folder: Path, per_batch: int = 6, train: bool = True, meta: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    labels = [i % 3 for i in range(per_batch)]
    (folder / "test_batch.bin").write_bytes(batch_bytes(labels, seed=99))
    for i in range(1, 6) if train else ():
        (folder / f"data_batch_{i}.bin").write_bytes(batch_bytes(labels, seed=i))
    if meta:
        (folder / "batches.meta.txt").write_text("\n".join(cifar10.CLASSES) + "\n\n")
    return folder


def test_a_cifar_batch_reads_label_then_red_green_blue_planes_row_by_row(tmp_path):
    pixels = np.arange(3072, dtype=np.uint16).astype(np.uint8)  # byte k of the image is k % 256
    (tmp_path / "one.bin").write_bytes(bytes([7]) + pixels.tobytes() + bytes([2]) + pixels[::-1].tobytes())
    x, y, sha256 = cifar10.read_batch(tmp_path / "one.bin")
    assert y.tolist() == [7, 2] and x.shape == (2, 3, 32, 32)
    assert x[0, 1, 2, 5] * 255 == (1024 + 2 * 32 + 5) % 256  # green plane, row 2, column 5
    assert torch.equal(x[1].flatten() * 255, torch.from_numpy(pixels[::-1].astype(np.float32)))
    assert sha256 == hashlib.sha256((tmp_path / "one.bin").read_bytes()).hexdigest()


def test_cifar_batches_load_from_the_data_root_and_run_from_a_spec(tmp_path, monkeypatch):
    write_batches(tmp_path / "data" / "cifar10" / "cifar-10-batches-bin")
    monkeypatch.setenv("ADVSEC_DATA", str(tmp_path / "data"))
    dataset = load_dataset("cifar10")
    assert dataset.x_train.shape == (30, 3, 32, 32) and dataset.x_test.shape == (6, 3, 32, 32)
    assert dataset.classes == cifar10.CLASSES and dataset.y_test.tolist() == [0, 1, 2, 0, 1, 2]
    assert dataset.x_test.min() >= 0 and dataset.x_test.max() <= 1
    assert run_dataset_spec(tmp_path, 'name = "cifar10"') >= 0.8


def test_a_cifar_test_batch_alone_is_evaluation_data_named_by_path(tmp_path):
    folder = write_batches(tmp_path / "mine" / "cifar-10-batches-bin", train=False, meta=False)
    for path in (folder, folder.parent):  # the batches folder, or the folder holding it
        dataset = load_dataset("cifar10", {"path": str(path)})
        assert dataset.x_train.shape == (0, 3, 32, 32) and len(dataset.y_test) == 6
        assert dataset.classes == cifar10.CLASSES


def test_a_bad_cifar_batch_is_refused_naming_the_file(tmp_path):
    folder = write_batches(tmp_path / "b")
    whole = (folder / "data_batch_3.bin").read_bytes()
    (folder / "data_batch_3.bin").write_bytes(whole[:-100])
    message = refusal("cifar10", {"path": str(folder)})
    assert message.startswith(f"{folder / 'data_batch_3.bin'}: 18,338 bytes is not a whole number of 3,073")
    assert "truncated" in message

    (folder / "data_batch_3.bin").write_bytes(bytes([10]) + whole[1:])
    message = refusal("cifar10", {"path": str(folder)})
    assert message.startswith(f"{folder / 'data_batch_3.bin'}: record 0 has label 10; labels are 0..9")

    (folder / "data_batch_3.bin").unlink()
    message = refusal("cifar10", {"path": str(folder)})
    assert message.startswith(f"{folder}: holds data_batch_1.bin, data_batch_2.bin, data_batch_4.bin")

    (folder / "batches.meta.txt").write_text("cat\ndog\n")
    assert refusal("cifar10", {"path": str(folder)}).startswith(f"{folder / 'batches.meta.txt'}: lists 2")
    assert "advsec download cifar10" in refusal("cifar10", {"path": str(tmp_path / "absent")})


def fake_archive(mirror: Path, *, extra: dict[str, bytes] | None = None) -> str:
    """A tar.gz shaped like the published archive, of tiny batches, in ``mirror``; its sha256."""
    source = write_batches(mirror.parent / "source" / "cifar-10-batches-bin", per_batch=3)
    mirror.mkdir(parents=True, exist_ok=True)
    with tarfile.open(mirror / "cifar-10-binary.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-bin")
        for name, content in (extra or {}).items():
            member = tarfile.TarInfo(name)
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    return hashlib.sha256((mirror / "cifar-10-binary.tar.gz").read_bytes()).hexdigest()


def test_the_download_refuses_an_archive_whose_sha256_is_not_the_published_one(tmp_path):
    fake_archive(tmp_path / "mirror")
    with pytest.raises(DataError) as caught:
        cifar10.download(tmp_path / "data", mirrors=[(tmp_path / "mirror").as_uri()], progress=False)
    message = str(caught.value)
    assert f"expected {cifar10.ARCHIVE_SHA256} (truncated or corrupt)" in message
    assert list((tmp_path / "data" / "cifar10").iterdir()) == []  # nothing kept, nothing extracted


def test_the_cli_download_of_cifar10_reports_the_refusal(tmp_path, monkeypatch):
    fake_archive(tmp_path / "mirror")
    monkeypatch.setattr(cifar10, "MIRRORS", ((tmp_path / "mirror").as_uri(),))
    result = CliRunner().invoke(main, ["download", "cifar10", "--dir", str(tmp_path / "data")])
    assert result.exit_code == 2
    assert re.search(r"advsec: error: could not download cifar-10-binary\.tar\.gz .*sha256", result.output)


def test_a_verified_archive_is_extracted_with_a_manifest_that_later_loads_check(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "ARCHIVE_SHA256", fake_archive(tmp_path / "mirror"))
    mirrors = [(tmp_path / "mirror").as_uri()]
    folder = cifar10.download(tmp_path / "data", mirrors=mirrors, progress=False)
    assert folder == tmp_path / "data" / "cifar10" / "cifar-10-batches-bin"
    assert not (tmp_path / "data" / "cifar10" / "cifar-10-binary.tar.gz").exists()
    assert len((folder / "SHA256SUMS").read_text().splitlines()) == 6
    monkeypatch.setenv("ADVSEC_DATA", str(tmp_path / "data"))
    assert load_dataset("cifar10").x_train.shape == (15, 3, 32, 32)
    assert cifar10.download(tmp_path / "data", mirrors=[], progress=False) == folder  # intact: kept

    batch = folder / "test_batch.bin"
    batch.write_bytes(batch.read_bytes()[: 2 * cifar10.RECORD])  # whole records, but not what was fetched
    message = refusal("cifar10", {})
    assert message.startswith(f"{batch}: sha256 ") and "(its SHA256SUMS at download)" in message


def test_an_archive_member_leaving_the_folder_is_refused(tmp_path, monkeypatch):
    escape = {"cifar-10-batches-bin/../../../escaped.txt": b"outside"}
    monkeypatch.setattr(cifar10, "ARCHIVE_SHA256", fake_archive(tmp_path / "mirror", extra=escape))
    with pytest.raises(DataError, match="cannot extract it safely"):
        cifar10.download(tmp_path / "data", mirrors=[(tmp_path / "mirror").as_uri()], progress=False)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (tmp_path / "data" / "cifar10" / "cifar-10-batches-bin").exists()

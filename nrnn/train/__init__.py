"""Training: Adam with step learning-rate decay, per-epoch JSON-lines metrics, atomic
checkpoints and exact resumption.

A run lives in a directory (by default its place in the store of trained runs,
``.cache/runs/<dataset>/<key>``, :mod:`.keys`) holding

    config.json      the resolved configuration
    checkpoint.pt    model, optimiser and scheduler state after the last finished epoch, with
                     a digest of its content (a damaged file is detected, not used)
    metrics.jsonl    one JSON object per finished epoch (written before the checkpoint, so
                     it covers every epoch the checkpoint holds)
    events.jsonl     one JSON object per start or resumption of training (epoch, process id,
                     device, time), so an interrupted and resumed run shows where it picked
                     up; and per damaged run set aside
    final.json       the last epoch's metrics, written when the run completes

The training step (forward, backward, Adam) comes from ``nrnn.graphs``: on CUDA it is captured
in a CUDA graph (``train.cuda_graph``), and every batch's loss stays on the device until
the epoch ends, when the losses are read back once (checked finite, averaged).

With ``train.stop_window`` set, training stops when the validation accuracy stops improving
(:func:`plateau_decision`); ``train.epochs`` is then a cap. The epoch at which the rule
found a plateau carries ``"plateau": "decay" | "stop"`` in its metrics record, and the
checkpoint of the last epoch says ``"stopped": true``.

Randomness is re-seeded from (seed, epoch) at the start of every epoch, so a run resumed
from the checkpoint of epoch k continues exactly as the uninterrupted run would have.
Identical runs write byte-identical checkpoints.

:func:`train` does not lock its directory: the harness (``nrnn.harness``) and ``nrnn train``
hold the run's lease (``nrnn.lease``) around it.

Modules: :mod:`.keys` (a run's key and directory), :mod:`.factory` (device, data, model),
:mod:`.objective` (the loss of a batch, evaluation, the optimiser and the training step),
:mod:`.checkpoint` (the format), :mod:`.stopping` (the plateau rule), :mod:`.runs` (the
files of a run directory), :mod:`.loop` (:func:`train`); the errors in :mod:`.errors`.
"""

from .checkpoint import (
    CHECKPOINT_FORMAT,
    READABLE_FORMATS,
    load_checkpoint,
    save_checkpoint,
    state_digest,
)
from .errors import CheckpointError, DamagedRunError, TrainingDivergedError
from .factory import (
    SUBSET_SEED,
    build_model,
    fixed_subset_indices,
    load_split,
    resolve_device,
)
from .keys import CODE_VERSION, DEFAULT_STORE, run_directory, run_key
from .loop import TrainResult, train
from .objective import evaluate, make_optimizer, make_step, objective_loss
from .runs import (
    check_request,
    covering_metrics,
    finished_epochs,
    is_complete,
    load_model,
    read_events,
    read_metrics,
    set_aside,
    verified_epochs,
    verified_progress,
)
from .stopping import PLATEAU_KEY, plateau_decision

default_run_dir = run_directory
"""The earlier name of :func:`run_directory`."""

__all__ = [
    "CHECKPOINT_FORMAT",
    "CODE_VERSION",
    "DEFAULT_STORE",
    "PLATEAU_KEY",
    "READABLE_FORMATS",
    "SUBSET_SEED",
    "CheckpointError",
    "DamagedRunError",
    "TrainResult",
    "TrainingDivergedError",
    "build_model",
    "check_request",
    "covering_metrics",
    "default_run_dir",
    "evaluate",
    "finished_epochs",
    "fixed_subset_indices",
    "is_complete",
    "load_checkpoint",
    "load_model",
    "load_split",
    "make_optimizer",
    "make_step",
    "objective_loss",
    "plateau_decision",
    "read_events",
    "read_metrics",
    "resolve_device",
    "run_directory",
    "run_key",
    "save_checkpoint",
    "set_aside",
    "state_digest",
    "train",
    "verified_epochs",
    "verified_progress",
]

"""The training step a CUDA graph captures (``nrnn.graphs``), and what capture needs.

On a CPU: the step of every noise form, recurrence, cell and objective runs without a host
synchronisation and without a random draw a graph could not replay
(``nrnn.graph_safety.record_hazards``), with negative controls that show each kind of
hazard is seen; the epoch's losses read back once give the numbers read back per batch;
``train.cuda_graph`` changes nothing on a CPU. On a machine with CUDA (skipped elsewhere,
with the reason): the captured step equals the eager step on the same noise, the last and
smaller batch runs eagerly, a new learning rate captures anew, a failed capture falls back
to eager with one line, and training with the graph resumes exactly.
"""

from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch
import torch.nn.functional as F

import nrnn
import nrnn.train as training
from nrnn import cells, graphs
from nrnn.config import RunConfig, default_config
from nrnn.graph_safety import record_hazards
from nrnn.train import TrainingDivergedError, objective_loss, train

CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine (CPU-only torch build)"
)

NOISES = {
    "paper-diagonal": nrnn.Noise(0.2, 0.1),
    "paper-scalar": nrnn.Noise(0.2, 0.1, "scalar"),
    "released": nrnn.ReferenceNoise(0.05, 0.02),
}
CELLS = {
    "lipschitz": lambda d: cells.LipschitzCell(d),
    "cornn": lambda d: cells.CoRNNCell(d),
    "gru": lambda d: cells.GRUODECell(d),
}


@pytest.fixture
def capturable_adam_on_the_cpu(monkeypatch):
    """torch's capturable Adam refuses CPU tensors (a graph needs a GPU); the recorder
    needs its capturable code path on the CPU, so the CPU joins its supported devices."""
    adam = importlib.import_module("torch.optim.adam")
    supported = adam._get_capturable_supported_devices
    monkeypatch.setattr(
        adam,
        "_get_capturable_supported_devices",
        lambda supports_xla=True: [*supported(supports_xla), "cpu"],
    )


def make_step(
    noise=NOISES["paper-diagonal"],
    *,
    cell="lipschitz",
    recurrence="fused",
    objective="noise",
    method="exact",
    capturable=True,
    device="cpu",
    seed=0,
):
    """A small model, its capturable Adam and the training step (clipping on), with a
    batch: (step, model, x, y)."""
    torch.manual_seed(seed)
    model = nrnn.NoisyRNN(
        3, 5, 4, dt=0.1, noise=noise, cell=CELLS[cell](5), recurrence=recurrence
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, capturable=capturable)
    step = graphs.EagerStep(
        lambda x, y: objective_loss(model, x, y, objective, regularizer_method=method, probes=3),
        optimizer,
        grad_clip=1.0,
    )
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(6, 7, 3, generator=generator).to(device)
    y = torch.randint(0, 4, (6,), generator=generator).to(device)
    return step, model, x, y


def hazards_of(step, x, y) -> list[str]:
    step(x, y)  # the first step creates the optimiser state: the warm-up's work
    with record_hazards("cpu") as hazards:
        step(x, y)
    return [str(h) for h in hazards]


# ---------------------------------------------------------------------- capture safety
CASES = [
    *[
        (name, "lipschitz", recurrence, "noise", "exact")
        for name in NOISES
        for recurrence in ("fused", "reference")
    ],
    *[
        ("paper-scalar", cell, recurrence, "noise", "exact")
        for cell in ("cornn", "gru")
        for recurrence in ("fused", "reference")
    ],
    ("paper-diagonal", "lipschitz", "fused", "clean", "exact"),
    ("paper-diagonal", "lipschitz", "fused", "explicit", "exact"),
    ("released", "lipschitz", "fused", "explicit", "probe"),
]


@pytest.mark.parametrize(("noise", "cell", "recurrence", "objective", "method"), CASES)
def test_the_training_step_reads_nothing_back_and_draws_only_on_its_device(
    capturable_adam_on_the_cpu, noise, cell, recurrence, objective, method
):
    step, _, x, y = make_step(
        NOISES[noise], cell=cell, recurrence=recurrence, objective=objective, method=method
    )
    assert hazards_of(step, x, y) == []


def test_a_step_that_reads_its_loss_back_is_flagged(capturable_adam_on_the_cpu):
    step, model, x, y = make_step()
    loss_of = step.loss_of

    def reading(x, y):
        loss = loss_of(x, y)
        print(loss.item())
        return loss

    step.loss_of = reading
    found = hazards_of(step, x, y)
    assert any("Tensor.item" in h and "test_graphs.py" in h for h in found), found


def test_the_model_checks_its_inputs_by_reading_them_outside_the_step(
    capturable_adam_on_the_cpu,
):
    """The forward pass of an eager caller checks that x is finite (a read-back);
    the step skips that check (contract.values_checked)."""
    _, model, x, _ = make_step()
    with record_hazards("cpu") as hazards:
        model(x)
    assert any("Tensor.__bool__" in str(h) and "contract.py" in str(h) for h in hazards)
    with pytest.raises(ValueError, match="x contains NaN"):
        model(torch.full_like(x, float("nan")))


def test_noise_from_a_cpu_generator_is_flagged(capturable_adam_on_the_cpu):
    step, model, x, y = make_step()
    generator = torch.Generator().manual_seed(3)

    def private_noise(x, y):
        xi = torch.randn(*x.shape[:2], model.noise_dim, generator=generator)
        return F.cross_entropy(model(x, xi.to(x.device)), y)

    step.loss_of = private_noise
    assert any("random draw" in h and "explicit generator" in h for h in hazards_of(step, x, y))


def test_a_read_back_inside_a_backward_pass_is_flagged(capturable_adam_on_the_cpu):
    class ReadsInBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value):
            return value * 1.0

        @staticmethod
        def backward(ctx, grad):
            if grad.abs().sum() > 0:  # bool() of a tensor: a read-back
                return grad
            return grad

    step, model, x, y = make_step()
    loss_of = step.loss_of
    step.loss_of = lambda x, y: ReadsInBackward.apply(loss_of(x, y))
    assert any("aten._local_scalar_dense" in h for h in hazards_of(step, x, y))


def test_adam_that_is_not_capturable_is_flagged():
    """torch's Adam reads its step count back unless capturable (seen from the step's
    optimizer.step() call)."""
    step, _, x, y = make_step(capturable=False)
    found = hazards_of(step, x, y)
    assert any("Tensor.item" in h and "graphs.py" in h for h in found), found


def test_boolean_mask_indexing_is_flagged():
    values = torch.arange(6.0)
    with record_hazards("cpu") as hazards:
        values[values > 2]
    assert [h.operation for h in hazards] == ["aten.index with a boolean mask"]


# ------------------------------------------------------------------------ the step
def test_capture_only_on_cuda_with_auto():
    assert graphs.captures("auto", torch.device("cuda"))
    assert not graphs.captures("auto", torch.device("cpu"))
    assert not graphs.captures("off", torch.device("cuda"))
    with pytest.raises(ValueError, match="train.cuda_graph must be one of"):
        graphs.captures("on", torch.device("cuda"))


def test_a_captured_step_needs_capturable_adam():
    step, *_ = make_step(capturable=False)
    with pytest.raises(ValueError, match="capturable=True"):
        graphs.CapturedStep(step, 6, torch.device("cuda"))


def test_the_losses_read_back_once_are_the_losses_read_back_per_batch():
    losses = graphs.BatchLosses(3)
    values, sizes = [0.7, 1.3, float("inf")], [32, 32, 8]
    read_each: list[float] = []
    for value, size in zip(values, sizes, strict=True):
        losses.add(torch.tensor(value), size)
        read_each.append(losses.last())
    assert losses.read() == read_each == pytest.approx(values)
    assert losses.first_non_finite() == (3, float("inf"))
    finite = graphs.BatchLosses(2)
    for value, size in zip(values[:2], sizes[:2], strict=True):
        finite.add(torch.tensor(value, dtype=torch.float32), size)
    total = 0.0
    for value, size in zip(values[:2], sizes[:2], strict=True):
        total += float(torch.tensor(value, dtype=torch.float32)) * size
    assert finite.mean() == total / 64  # the same sum, in the same order
    assert finite.first_non_finite() is None


# -------------------------------------------------------------------------- training
def tiny_config(device: str = "cpu", **train_options) -> RunConfig:
    config = default_config("digits-rows")
    config.model.hidden_dim = 8
    config.noise = dataclasses.replace(config.noise, additive=0.1, multiplicative=0.1)
    config.data.train_subset, config.data.eval_subset = 200, 64
    config.data.batch_size = 32  # 6 batches of 32 and a last one of 8
    config.train.epochs = 2
    config.train.device = device
    for key, value in train_options.items():
        setattr(config.train, key, value)
    return config


def test_cuda_graph_keeps_old_run_keys_and_is_validated():
    assert "cuda_graph" not in RunConfig().canonical_dict()["train"]
    off = RunConfig()
    off.train.cuda_graph = "off"
    assert off.identity_hash() != RunConfig().identity_hash()
    off.train.cuda_graph = "sometimes"
    with pytest.raises(ValueError, match="train.cuda_graph must be one of"):
        off.validate()


def test_cuda_graph_changes_nothing_on_a_cpu(tmp_path):
    auto = train(tiny_config(), tmp_path / "auto", progress=False)
    off = train(tiny_config(cuda_graph="off"), tmp_path / "off", progress=False)
    strip = [{k: v for k, v in m.items() if k != "seconds"} for m in auto.metrics]
    assert strip == [{k: v for k, v in m.items() if k != "seconds"} for m in off.metrics]
    for a, b in zip(auto.model.parameters(), off.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_reading_the_losses_once_per_epoch_gives_the_same_run(tmp_path, monkeypatch):
    """The read-back a GPU does (once per epoch) against the one a CPU does (per batch)."""
    each = train(tiny_config(), tmp_path / "each", progress=False)
    monkeypatch.setattr(graphs, "read_back_is_free", lambda device: False)
    once = train(tiny_config(), tmp_path / "once", progress=False)
    strip = [{k: v for k, v in m.items() if k != "seconds"} for m in each.metrics]
    assert strip == [{k: v for k, v in m.items() if k != "seconds"} for m in once.metrics]


def test_a_non_finite_loss_read_at_the_end_of_the_epoch_names_its_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(graphs, "read_back_is_free", lambda device: False)
    original = training.objective_loss
    calls = {"count": 0}

    def poisoned(model, x, y, objective, **options):
        calls["count"] += 1
        loss = original(model, x, y, objective, **options)
        return loss * float("nan") if calls["count"] == 10 else loss  # 7 batches per epoch

    monkeypatch.setattr(training.objective, "objective_loss", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at epoch 2, batch 3 of 7;.*1"):
        train(tiny_config(), tmp_path, progress=False)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1


# ---------------------------------------------------------------------------- on CUDA
def _steps(step, batches):
    return [step(x, y).clone() for x, y in batches]


def _batches(x, y, count, smaller_at=None):
    batches = []
    for k in range(count):
        if k == smaller_at:
            batches.append((x[:4], y[:4]))
        else:
            batches.append((x.roll(k, 0), y.roll(k, 0)))
    return batches


@CUDA
@pytest.mark.parametrize(
    ("noise", "recurrence", "objective", "method"),
    [
        ("paper-diagonal", "fused", "noise", "exact"),
        ("paper-scalar", "reference", "noise", "exact"),
        ("released", "fused", "noise", "exact"),
        ("paper-diagonal", "fused", "clean", "exact"),
        ("released", "fused", "explicit", "probe"),
    ],
)
def test_the_captured_step_equals_the_eager_step_on_the_same_noise(
    noise, recurrence, objective, method
):
    """Five steps from the same state and CUDA generator state, one batch smaller (it
    runs eagerly), a learning-rate change before the last two (a new capture)."""
    cuda = torch.device("cuda")
    options = {"recurrence": recurrence, "objective": objective, "method": method}
    eager, eager_model, x, y = make_step(NOISES[noise], device=cuda, **options)
    captured_eager, captured_model, _, _ = make_step(NOISES[noise], device=cuda, **options)
    reports: list[str] = []
    captured = graphs.CapturedStep(captured_eager, len(x), cuda, reports.append)
    batches = _batches(x, y, 5, smaller_at=2)
    results = {}
    for name, step, optimizer, model in (
        ("eager", eager, eager.optimizer, eager_model),
        ("captured", captured, captured_eager.optimizer, captured_model),
    ):
        torch.cuda.manual_seed(7)
        losses = _steps(step, batches[:3])
        for group in optimizer.param_groups:
            group["lr"] = 5e-3
        losses += _steps(step, batches[3:])
        results[name] = (torch.stack(losses), [p.detach().clone() for p in model.parameters()])
    assert reports == [] and captured.failure is None, reports
    assert captured.captured == 2  # one per learning rate; the smaller batch ran eagerly
    torch.testing.assert_close(results["captured"][0], results["eager"][0], rtol=1e-5, atol=1e-6)
    for got, want in zip(results["captured"][1], results["eager"][1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@CUDA
def test_a_failed_capture_falls_back_to_eager_with_one_line():
    cuda = torch.device("cuda")
    eager, eager_model, x, y = make_step(device=cuda)
    reading, reading_model, _, _ = make_step(device=cuda)
    loss_of = reading.loss_of

    def reads_back(x, y):
        loss = loss_of(x, y)
        float(loss)  # not capturable
        return loss

    reading.loss_of = reads_back
    reports: list[str] = []
    captured = graphs.CapturedStep(reading, len(x), cuda, reports.append)
    batches = _batches(x, y, 3)
    torch.cuda.manual_seed(7)
    want = _steps(eager, batches)
    torch.cuda.manual_seed(7)
    got = _steps(captured, batches)
    assert len(reports) == 1 and "capture failed" in reports[0], reports
    torch.testing.assert_close(torch.stack(got), torch.stack(want), rtol=1e-5, atol=1e-6)
    for a, b in zip(reading_model.parameters(), eager_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@CUDA
def test_training_with_the_graph_matches_eager_training_and_resumes_exactly(tmp_path):
    straight = train(tiny_config("cuda"), tmp_path / "straight", progress=False)
    eager = train(tiny_config("cuda", cuda_graph="off"), tmp_path / "eager", progress=False)
    for got, want in zip(straight.metrics, eager.metrics, strict=True):
        for key in ("train_objective", "valid_loss", "test_loss"):
            assert got[key] == pytest.approx(want[key], rel=1e-4), key

    class Interrupt(Exception):
        pass

    def interrupt(epoch, batch, loss):
        if epoch == 2 and batch == 3:
            raise Interrupt

    run_dir = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        train(tiny_config("cuda"), run_dir, progress=False, on_batch=interrupt)
    resumed = train(tiny_config("cuda"), run_dir, resume=True, progress=False)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [m["train_objective"] for m in resumed.metrics] == [
        m["train_objective"] for m in straight.metrics
    ]

"""Input perturbations: known cases (linear classifier), budgets, statistics, determinism,
bad arguments, and accuracy under perturbation."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

from nrnn import Noise, NoisyRNN, perturb
from nrnn.perturb import (
    PERTURBATIONS,
    evaluate_under,
    fgsm,
    multiplicative_noise,
    pgd,
    salt_and_pepper,
    white_noise,
)
from nrnn.train import evaluate

from independent import normal_quantile

BATCH, STEPS, FEATURES, CLASSES = 6, 5, 3, 4


class LinearClassifier(nn.Module):
    """logits = W vec(x) + b for x (batch, M, p)."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(STEPS * FEATURES, CLASSES)

    def forward(self, x):
        return self.linear(x.flatten(1))


def linear_gradient(model, x, y):
    """∇_x CE = Wᵀ(softmax(logits) − e_y), reshaped to (batch, M, p)."""
    with torch.no_grad():
        p = torch.softmax(model(x), dim=-1)
        p[torch.arange(len(y)), y] -= 1
        return (p @ model.linear.weight).view_as(x)


def inputs(seed=0, batch=BATCH):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, STEPS, FEATURES), generator=generator)
    y = torch.randint(0, CLASSES, (batch,), generator=generator)
    return x, y


def rnn(seed=0, noise=None, input_scale=1.0):
    """A small noisy RNN (noise off by default); ``input_scale`` > 1 saturates tanh (a
    clearly nonlinear model)."""
    torch.manual_seed(seed)
    model = NoisyRNN(FEATURES, 8, CLASSES, dt=0.3, noise=Noise() if noise is None else noise)
    with torch.no_grad():
        model.input.weight.mul_(input_scale)
    return model


def losses(model, x, y):
    with torch.no_grad():
        return nn.functional.cross_entropy(model(x), y, reduction="none")


# ------------------------------------------------------------------------ known cases
def test_fgsm_linf_moves_every_entry_by_level_along_the_gradient_sign():
    model, (x, y) = LinearClassifier(), inputs()
    level = 0.07
    delta = fgsm(model, x, y, level, norm="linf") - x
    gradient = linear_gradient(model, x, y)
    assert (gradient != 0).all()
    torch.testing.assert_close(delta, level * gradient.sign(), rtol=0, atol=1e-6)


def test_fgsm_l2_is_level_times_normalised_gradient():
    model, (x, y) = LinearClassifier(), inputs()
    level = 0.5
    delta = fgsm(model, x, y, level, norm="l2") - x
    gradient = linear_gradient(model, x, y)
    expected = level * gradient / gradient.flatten(1).norm(dim=1).view(-1, 1, 1)
    torch.testing.assert_close(delta, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(delta.flatten(1).norm(dim=1), torch.full((BATCH,), level))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_on_a_linear_classifier_reaches_at_least_the_fgsm_loss(norm):
    """For a linear model FGSM is the exact maximiser of the linear part; PGD's loss must
    not be far below it."""
    model, (x, y) = LinearClassifier(), inputs()
    level = 0.3
    fgsm_loss = losses(model, fgsm(model, x, y, level, norm=norm), y)
    pgd_loss = losses(model, pgd(model, x, y, level, norm=norm, steps=20, seed=1), y)
    assert (pgd_loss >= fgsm_loss - 0.02 * fgsm_loss.abs() - 1e-4).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_is_at_least_as_strong_as_fgsm_on_a_nonlinear_model(norm):
    model, (x, y) = rnn(input_scale=3.0), inputs(batch=32)
    level = 0.5 if norm == "linf" else 1.5
    fgsm_loss = losses(model, fgsm(model, x, y, level, norm=norm), y)
    pgd_loss = losses(model, pgd(model, x, y, level, norm=norm, steps=10, seed=0), y)
    assert pgd_loss.mean() >= fgsm_loss.mean()
    assert (pgd_loss >= fgsm_loss - 1e-6).float().mean() >= 0.8
    assert (pgd_loss >= losses(model, x, y) - 1e-6).all()  # never worse than clean


@settings(max_examples=12)
@given(
    level=st.floats(0.0, 3.0),
    norm=st.sampled_from(["linf", "l2"]),
    random_start=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_pgd_never_leaves_the_budget_ball(level, norm, random_start, seed):
    model, (x, y) = LinearClassifier(), inputs(seed)
    delta = pgd(model, x, y, level, norm=norm, steps=3, seed=seed, random_start=random_start) - x
    if norm == "linf":
        assert delta.abs().max() <= level * (1 + 1e-6) + 1e-6
    else:
        assert (delta.flatten(1).norm(dim=1) <= level * (1 + 1e-5) + 1e-6).all()


def test_pgd_stays_in_the_ball_with_a_large_step_on_the_rnn():
    model, (x, y) = rnn(), inputs()
    for norm, measure in (
        ("linf", lambda d: d.abs().flatten(1).max(1).values),
        ("l2", lambda d: d.flatten(1).norm(dim=1)),
    ):
        delta = pgd(model, x, y, 0.2, norm=norm, steps=4, step_size=5.0) - x
        assert (measure(delta) <= 0.2 * (1 + 1e-5)).all()


def test_pgd_l2_step_inside_the_ball_keeps_its_length():
    """From δ₀ = 0, one L2 step of length level/2 along the gradient stays inside the ball,
    so the projection must leave it alone: |δ₁| = level/2 exactly (a projection onto the
    sphere would give level). On a linear model the loss is convex in x, so the step raises
    it and PGD returns x + δ₁."""
    model, (x, y) = LinearClassifier(), inputs()
    level = 0.4
    delta = pgd(model, x, y, level, norm="l2", steps=1, step_size=level / 2, random_start=False)
    delta = delta - x
    gradient = linear_gradient(model, x, y)
    direction = gradient / gradient.flatten(1).norm(dim=1).view(-1, 1, 1)
    torch.testing.assert_close(delta, level / 2 * direction, rtol=1e-5, atol=1e-7)


def test_pgd_l2_step_leaving_the_ball_is_projected_back_to_its_radius():
    """A step of length 3 · level from the origin lands outside the ball; the projection
    shrinks it radially to length level, the FGSM point."""
    model, (x, y) = LinearClassifier(), inputs()
    level = 0.4
    delta = pgd(model, x, y, level, norm="l2", steps=1, step_size=3 * level, random_start=False)
    torch.testing.assert_close(delta, fgsm(model, x, y, level, norm="l2"), rtol=1e-5, atol=1e-6)


def uniform_ball_moments(dimension: int) -> dict[int, float]:
    """E|δ|^k / level^k for δ uniform in the n-ball: the radius has density n r^(n−1) on
    [0, 1], so E R^k = n / (n + k)."""
    return {k: dimension / (dimension + k) for k in (1, 2, 4)}


@pytest.mark.parametrize("steps, features", [(1, 1), (2, 3), (5, 4)])
def test_l2_random_start_is_uniform_in_the_ball(steps, features):
    """The L2 random start against the moments of the uniform law on the n-ball, n = M·p:
    E|δ| = n/(n+1) level, E|δ|² = n/(n+2) level², and by symmetry each coordinate has mean
    0 and E δ_i² = level²/(n+2). Standard errors from the exact law (Var R = E R² − (E R)²,
    Var R² = E R⁴ − (E R²)², Var δ_i = level²/(n+2)), not from the sample; 200 000 draws;
    z from a Bonferroni bound over the 2 + n comparisons: false failure ≤ 1e-5."""
    samples, level = 200_000, 0.7
    n = steps * features
    x = torch.zeros(samples, steps, features, dtype=torch.float64)
    delta = perturb._random_start(x, level, "l2", torch.Generator().manual_seed(11)) / level
    radius = delta.flatten(1).norm(dim=1)
    moment = uniform_ball_moments(n)
    z = normal_quantile(1e-5, comparisons=2 + n)
    assert radius.max() <= 1 + 1e-12
    se_radius = math.sqrt((moment[2] - moment[1] ** 2) / samples)
    se_square = math.sqrt((moment[4] - moment[2] ** 2) / samples)
    assert abs(float(radius.mean()) - moment[1]) <= z * se_radius
    assert abs(float((radius**2).mean()) - moment[2]) <= z * se_square
    se_coordinate = math.sqrt(1 / (n + 2) / samples)
    assert (delta.flatten(1).mean(0).abs() <= z * se_coordinate).all()


def test_linf_random_start_is_uniform_in_the_cube():
    """Each coordinate uniform on [−level, level]: mean 0 (SE level/√(3N)) and E δ² =
    level²/3 (SE level² √(4/45 / N)); Bonferroni over 2·n comparisons, false failure ≤ 1e-5."""
    samples, level, n = 100_000, 0.3, 6
    x = torch.zeros(samples, 2, 3, dtype=torch.float64)
    delta = perturb._random_start(x, level, "linf", torch.Generator().manual_seed(5)) / level
    flat = delta.flatten(1)
    z = normal_quantile(1e-5, comparisons=2 * n)
    assert flat.abs().max() <= 1
    assert (flat.mean(0).abs() <= z * math.sqrt(1 / 3 / samples)).all()
    assert ((flat**2).mean(0) - 1 / 3).abs().max() <= z * math.sqrt(4 / 45 / samples)


# ---------------------------------------------------------------- random perturbations
def test_white_noise_has_the_requested_standard_deviation():
    """ξ = (x' − x)/level over 60 000 entries: |mean| and |std − 1| within 5 standard
    errors (false failure < 1e-6)."""
    x = torch.randn(200, 100, 3)
    xi = (white_noise(x, 0.3, 0) - x) / 0.3
    n = xi.numel()
    assert abs(xi.mean()) < 5 / math.sqrt(n)
    assert abs(xi.std() - 1) < 5 * math.sqrt(0.5 / n)


def test_multiplicative_noise_scales_each_entry():
    x = torch.rand(200, 100, 3) + 0.5
    xi = (multiplicative_noise(x, 0.2, 1) / x - 1) / 0.2
    n = xi.numel()
    assert abs(xi.mean()) < 5 / math.sqrt(n)
    assert abs(xi.std() - 1) < 5 * math.sqrt(0.5 / n)


@pytest.mark.parametrize("level", [0.1, 0.25, 0.5, 1.0])
def test_salt_and_pepper_sets_the_exact_fraction_half_low_half_high(level):
    x = torch.rand(50, 8, 5) * 0.8 + 0.1  # strictly inside (0, 1)
    out = salt_and_pepper(x, level, 3, low=0.0, high=1.0)
    count = round(level * 40)
    low = (out == 0.0).flatten(1).sum(1)
    high = (out == 1.0).flatten(1).sum(1)
    assert (low == count // 2).all() and (high == count - count // 2).all()
    untouched = (out != 0.0) & (out != 1.0)
    assert torch.equal(out[untouched], x[untouched])


def test_salt_and_pepper_defaults_to_the_data_range():
    x, _ = inputs()
    out = salt_and_pepper(x, 0.5, 0)
    changed = out != x
    assert set(out[changed].unique().tolist()) <= {x.min().item(), x.max().item()}
    assert changed.any()


ALL_RANDOM = [white_noise, multiplicative_noise, salt_and_pepper]


@pytest.mark.parametrize("perturbation", ALL_RANDOM, ids=lambda f: f.__name__)
def test_random_perturbations_are_reproducible_and_seed_dependent(perturbation):
    x, _ = inputs()
    first = perturbation(x, 0.3, 5)
    assert torch.equal(first, perturbation(x, 0.3, 5))
    assert torch.equal(first, perturbation(x, 0.3, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, perturbation(x, 0.3, 6))
    generator = torch.Generator().manual_seed(5)
    assert not torch.equal(perturbation(x, 0.3, generator), perturbation(x, 0.3, generator))


def test_pgd_random_start_is_reproducible():
    model, (x, y) = rnn(), inputs()
    one = pgd(model, x, y, 0.3, steps=2, seed=4)
    assert torch.equal(one, pgd(model, x, y, 0.3, steps=2, seed=4))


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_level_zero_returns_an_unchanged_copy_and_x_is_never_modified(name):
    model, (x, y) = rnn(), inputs()
    original = x.clone()
    entry = PERTURBATIONS[name]
    zero = entry.apply(model, x, y, 0.0, torch.Generator().manual_seed(0), (-1.0, 1.0))
    assert torch.equal(zero, x) and zero is not x
    perturbed = entry.apply(model, x, y, 0.2, torch.Generator().manual_seed(0), (-1.0, 1.0))
    assert perturbed.shape == x.shape and perturbed.dtype == x.dtype
    assert not torch.equal(perturbed, x)
    assert torch.equal(x, original)


def test_attacks_use_eval_mode_and_restore_the_mode():
    model, (x, y) = rnn(noise=Noise(additive=0.5, multiplicative=0.5)), inputs()
    model.train()
    first = fgsm(model, x, y, 0.1)
    assert torch.equal(first, fgsm(model, x, y, 0.1))  # noise off: deterministic
    assert torch.equal(pgd(model, x, y, 0.1, steps=2), pgd(model, x, y, 0.1, steps=2))
    assert model.training
    assert all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda x, y, m: white_noise(x.numpy(), 0.1), TypeError, "torch.Tensor"),
        (lambda x, y, m: white_noise(x[0], 0.1), ValueError, "batch, M, p"),
        (lambda x, y, m: white_noise(x.long(), 0.1), TypeError, "floating-point"),
        (lambda x, y, m: white_noise(x * float("nan"), 0.1), ValueError, "NaN"),
        (lambda x, y, m: white_noise(x, -0.1), ValueError, ">= 0"),
        (lambda x, y, m: white_noise(x, float("inf")), ValueError, "finite"),
        (lambda x, y, m: white_noise(x, True), TypeError, "real number"),
        (lambda x, y, m: white_noise(x, "0.1"), TypeError, "real number"),
        (lambda x, y, m: white_noise(x, 0.1, seed=1.5), TypeError, "seed"),
        (lambda x, y, m: white_noise(x, 0.1, seed=-1), ValueError, "seed"),
        (lambda x, y, m: multiplicative_noise(x, -1.0), ValueError, ">= 0"),
        (lambda x, y, m: salt_and_pepper(x, 1.5), ValueError, r"\[0, 1\]"),
        (lambda x, y, m: salt_and_pepper(x, 0.1, low=1.0, high=0.0), ValueError, "low must be <="),
        (lambda x, y, m: salt_and_pepper(x, 0.1, low=float("nan")), ValueError, "low"),
        (lambda x, y, m: fgsm(m, x, y, 0.1, norm="l1"), ValueError, "norm"),
        (lambda x, y, m: fgsm(m, x, y[:2], 0.1), ValueError, "y must have shape"),
        (lambda x, y, m: fgsm(m, x, y.float(), 0.1), TypeError, "int64"),
        (lambda x, y, m: fgsm(lambda t: t, x, y, 0.1), TypeError, "nn.Module"),
        (lambda x, y, m: pgd(m, x, y, 0.1, steps=0), ValueError, "steps"),
        (lambda x, y, m: pgd(m, x, y, 0.1, step_size=-1.0), ValueError, ">= 0"),
        (lambda x, y, m: perturb.get("gaussian"), ValueError, "unknown perturbation"),
        (lambda x, y, m: perturb.pgd_perturbation("linf", 0), ValueError, "steps"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, error, match):
    x, y = inputs()
    with pytest.raises(error, match=match):
        call(x, y, rnn())


# ---------------------------------------------------------------------- evaluate_under
def test_evaluate_under_level_zero_is_the_clean_accuracy_and_is_deterministic():
    model = LinearClassifier()
    x, y = inputs(batch=24)
    dataset = TensorDataset(x, y)
    clean = evaluate(model, dataset, batch_size=24)["accuracy"]
    for name in PERTURBATIONS:
        result = evaluate_under(model, dataset, name, [0.0, 0.3], seed=1, batch_size=16)
        assert list(result) == [0.0, 0.3]
        assert result[0.0] == pytest.approx(clean)
        if not PERTURBATIONS[name].adversarial or name.startswith("pgd"):
            assert result == evaluate_under(model, dataset, name, [0.0, 0.3], seed=1, batch_size=16)


def test_evaluate_under_adversarial_never_beats_clean_and_strong_noise_hurts():
    x = torch.randn((200, STEPS, FEATURES), generator=torch.Generator().manual_seed(123))
    model = LinearClassifier()
    y = model(x).argmax(-1)  # the model is right on every sample
    dataset = TensorDataset(x, y)
    assert evaluate_under(model, dataset, "fgsm-linf", [0.0])[0.0] == 1.0
    attacked = evaluate_under(model, dataset, "pgd-l2", [0.5, 2.0, 8.0])
    assert attacked[8.0] <= attacked[2.0] <= attacked[0.5] <= 1.0
    assert attacked[8.0] < 0.2
    assert evaluate_under(model, dataset, "white", [20.0], seed=7)[20.0] < 0.6

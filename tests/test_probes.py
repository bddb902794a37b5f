"""The probes against known answers: quadratics with analytic Hessians and distances, linear losses whose batch
gradients are batch means, a plain-autograd reference for a small conv net; and that no probe changes the model."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from augworth.trainables.probes import (
    filter_normalized_direction,
    flatness,
    grad_noise,
    hessian_top_eig,
    run_probes,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def half_squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """0.5 |out_i - y_i|^2, averaged over the batch (y: float targets)."""
    return 0.5 * (out - y.view(len(out), -1)).pow(2).sum(1).mean()


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 4))


def cnn_data(n: int = 40, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    return torch.randn(n, 2, 4, 4, generator=g), torch.randint(0, 4, (n,), generator=g)


def warmed_up(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """Running statistics away from their defaults, and gradients in place, as a model mid-training has."""
    model.train()
    F.cross_entropy(model(x), y).backward()
    return model


# ----- Hessian --------------------------------------------------------------------------------------

def test_hessian_of_least_squares_is_the_design_matrix_gram_over_n():
    # out = X w + b, loss 0.5 |out - t|^2 averaged: H = [X 1]^T [X 1] / n over (w, b), the bias included.
    # 2,100 samples: three loss batches (1,024, 1,024, 52) whose HVPs must add up weighted by size.
    g = gen(3)
    n, d = 2100, 4
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.5, 0.2], dtype=torch.float64)
    t = torch.randn(n, generator=g, dtype=torch.float64)
    model = nn.Linear(d, 1).double()
    design = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)
    expected = torch.linalg.eigvalsh(design.T @ design / n)[-1].item()
    got = hessian_top_eig(model, x, t, iterations=200, tolerance=1e-10, generator=gen(0),
                          loss_fn=half_squared_error)
    assert got == pytest.approx(expected, rel=1e-3)


class DiagonalQuadratic(nn.Module):
    """loss = 0.5 sum_i lambda_i w_i^2 (the output is the loss for every sample): H = diag(lambda)."""

    def __init__(self, eigenvalues: list[float]):
        super().__init__()
        self.w = nn.Parameter(torch.ones(len(eigenvalues), dtype=torch.float64))
        self.register_buffer("lam", torch.tensor(eigenvalues, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 * self.lam * self.w**2).sum().expand(len(x))


def mean_output(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return out.mean()


def test_hessian_top_eigenvalue_of_a_diagonal_quadratic():
    x = torch.zeros(8, 1)
    assert hessian_top_eig(DiagonalQuadratic([5.0, 2.0, 1.0]), x, x, iterations=100, generator=gen(),
                           loss_fn=mean_output) == pytest.approx(5.0, rel=1e-3)


def test_hessian_eigenvalue_is_the_largest_in_magnitude_with_its_sign():
    x = torch.zeros(8, 1)
    assert hessian_top_eig(DiagonalQuadratic([1.0, -4.0, 2.0]), x, x, iterations=100, generator=gen(),
                           loss_fn=mean_output) == pytest.approx(-4.0, rel=1e-3)


def test_hessian_of_a_linear_loss_is_zero():
    model = nn.Linear(3, 1, bias=False)
    x = torch.randn(10, 3, generator=gen())
    assert hessian_top_eig(model, x, x, generator=gen(), loss_fn=mean_output) == 0.0


# ----- flatness -------------------------------------------------------------------------------------

def test_direction_filters_have_the_weights_filter_norms_and_biases_none():
    model = small_cnn()
    direction = filter_normalized_direction(model, gen())
    assert sorted(direction) == ["0.weight", "4.weight"]  # no biases, no BatchNorm parameters
    for name, d in direction.items():
        w = dict(model.named_parameters())[name]
        torch.testing.assert_close(d.flatten(1).norm(dim=1), w.detach().flatten(1).norm(dim=1))


def test_a_layer_norms_two_dimensional_weight_is_not_a_filter():
    model = nn.Sequential(nn.Linear(4, 8), nn.Unflatten(1, (2, 4)), nn.LayerNorm((2, 4)))
    assert sorted(filter_normalized_direction(model, gen())) == ["0.weight"]


def test_flatness_of_a_quadratic_is_the_root_of_its_quadratic():
    # A linear model with 3 filters (rows) and a bias: along a direction D that moves the rows only,
    # out(t) = out0 + t X D^T, so the loss 0.5 |out|^2 (batch mean) is A t^2 + B t + C.
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    x = torch.randn(16, 4, generator=gen(5), dtype=torch.float64)
    zeros = torch.zeros(16, 3, dtype=torch.float64)
    d = filter_normalized_direction(model, gen(7))["weight"]
    with torch.no_grad():
        out0, moved = model(x), x @ d.T
    a = 0.5 * moved.pow(2).sum(1).mean().item()
    b = (out0 * moved).sum(1).mean().item()
    c = 0.5 * out0.pow(2).sum(1).mean().item()
    threshold = c + 1.0
    expected = (-b + math.sqrt(b * b + 4 * a * (threshold - c))) / (2 * a)
    mean, std = flatness(model, x, zeros, threshold=threshold, generator=gen(7), tolerance=1e-5,
                         loss_fn=half_squared_error)
    assert mean == pytest.approx(expected, rel=1e-3) and std == 0.0


def test_flatness_is_zero_when_the_loss_is_already_past_the_threshold():
    model = small_cnn()
    x, y = cnn_data()
    assert flatness(model, x, y, threshold=1e-3, directions=2, generator=gen()) == (0.0, 0.0)


def test_flatness_is_censored_at_max_distance_when_only_biases_and_norms_move_the_loss():
    # x = 0: the linear layer's output is its bias, and BatchNorm's affine parameters act on that. Neither gets
    # a direction, so the loss never changes and never reaches the threshold.
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).double()
    x = torch.zeros(8, 4, dtype=torch.float64)
    zeros = torch.zeros(8, 3, dtype=torch.float64)
    with torch.no_grad():
        start = half_squared_error(model.eval()(x), zeros).item()
    assert flatness(model, x, zeros, threshold=start + 1.0, generator=gen(), max_distance=10.0,
                    loss_fn=half_squared_error) == (10.0, 0.0)


def test_flatness_evaluates_the_eval_mode_loss():
    # A model in train mode with BatchNorm, and a threshold halfway between its eval-mode loss (running stats)
    # and its train-mode loss (batch stats): at t = 0 only the eval-mode loss decides which side it is on.
    model = small_cnn()
    x, y = cnn_data()
    warmed_up(model, x, y)
    with torch.no_grad():
        eval_loss = F.cross_entropy(copy.deepcopy(model).eval()(x), y).item()
        train_loss = F.cross_entropy(copy.deepcopy(model).train()(x), y).item()
    assert abs(eval_loss - train_loss) > 0.01
    halfway = flatness(model, x, y, threshold=(eval_loss + train_loss) / 2, generator=gen())[0]
    assert (halfway > 0) == (eval_loss < train_loss)
    assert flatness(model, x, y, threshold=eval_loss * (1 - 1e-4), generator=gen())[0] == 0.0
    assert flatness(model, x, y, threshold=eval_loss * (1 + 1e-4), generator=gen())[0] > 0.0


def test_several_directions_give_the_mean_and_sample_std_of_single_ones():
    model = small_cnn()
    x, y = cnn_data()
    one_by_one = gen(4)
    singles = [flatness(model, x, y, threshold=2.0, generator=one_by_one)[0] for _ in range(3)]
    mean, std = flatness(model, x, y, threshold=2.0, directions=3, generator=gen(4))
    assert mean == pytest.approx(np.mean(singles), rel=1e-12)
    assert std == pytest.approx(np.std(singles, ddof=1), rel=1e-9) and std > 0


# ----- gradient noise -------------------------------------------------------------------------------

def test_grad_noise_of_a_linear_loss_is_the_spread_of_batch_means_over_filter_norms():
    # loss = mean of the outputs over batch and units: row j's gradient is the batch mean of x_i / 2 for both
    # rows, so the answer is |std_b(mean x over batch b) / 2| * sqrt(1 / |w_0|^2 + 1 / |w_1|^2).
    torch.manual_seed(0)
    model = nn.Linear(3, 2, bias=False).double()
    with torch.no_grad():
        model.weight[1] *= 10  # filters of different norms
    x = torch.randn(50, 3, generator=gen(2), dtype=torch.float64)
    batch = 8  # 6 batches, the last 2 samples dropped
    order = torch.randperm(50, generator=gen(9))[:48].view(6, 8)
    batch_means = x.numpy()[order.numpy()].mean(1) / 2  # (6, 3)
    spread = np.linalg.norm(batch_means.std(0, ddof=1))
    norms = model.weight.detach().norm(dim=1).numpy()
    expected = spread * math.sqrt((1 / norms**2).sum())
    got = grad_noise(model, x, x, batch_size=batch, generator=gen(9), loss_fn=mean_output)
    assert got == pytest.approx(expected, rel=1e-9)


def test_grad_noise_matches_plain_autograd_on_a_conv_net():
    # The reference: a deep copy in eval mode, .backward per batch, numpy's std, conv out-channels and linear
    # rows as filters; biases and BatchNorm's parameters left out.
    model = small_cnn()
    x, y = cnn_data(n=40)
    warmed_up(model, x, y)
    reference = copy.deepcopy(model).eval()
    order = torch.randperm(40, generator=gen(3))[:40].view(4, 10)
    grads: dict[str, list[np.ndarray]] = {"0.weight": [], "4.weight": []}
    for idx in order:
        reference.zero_grad()
        F.cross_entropy(reference(x[idx]), y[idx]).backward()
        for name, p in reference.named_parameters():
            if name in grads:
                grads[name].append(p.grad.double().numpy().copy())
    total = 0.0
    for name, gs in grads.items():
        std = np.stack(gs).std(0, ddof=1).reshape(len(gs[0]), -1)
        w = dict(reference.named_parameters())[name].detach().double().numpy().reshape(len(gs[0]), -1)
        total += ((std**2).sum(1) / (w**2).sum(1)).sum()
    got = grad_noise(model, x, y, batch_size=10, generator=gen(3))
    assert got == pytest.approx(math.sqrt(total), rel=1e-5)


def test_grad_noise_needs_two_batches():
    model = small_cnn()
    x, y = cnn_data(n=40)
    with pytest.raises(ValueError, match="at least 2 batches"):
        grad_noise(model, x, y, batch_size=21, generator=gen())


# ----- the model, untouched; reproducibility; run_probes ---------------------------------------------

def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["state"].keys() == after["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), k  # bit for bit
    assert before["modes"] == after["modes"] and before["requires_grad"] == after["requires_grad"]
    for old, new in zip(before["grads"], after["grads"], strict=True):
        assert (old is None and new is None) or torch.equal(old, new)


ALL = {"grad_noise", "flatness", "hessian_top_eig"}


def test_probes_leave_the_model_as_they_found_it():
    model = small_cnn()
    x, y = cnn_data()
    warmed_up(model, x, y)  # train mode, moved running stats, gradients present
    model[4].bias.grad = None  # one without a gradient
    model[0].bias.requires_grad_(False)  # one frozen
    model[2].eval()  # one submodule in another mode
    before = snapshot(model)
    run_probes(model, x, y, which=ALL, generator=gen(), batch_size=10, threshold=2.0, directions=2,
               hessian_iterations=3)
    assert_same(before, snapshot(model))
    assert model.training and not model[2].training


class CountsCalls(nn.Module):
    """A module that writes a buffer on every forward, even in eval mode."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x


def test_probes_restore_buffers_a_forward_writes():
    model = nn.Sequential(small_cnn(), CountsCalls())
    x, y = cnn_data()
    run_probes(model, x, y, which=ALL, generator=gen(), batch_size=10, threshold=2.0, hessian_iterations=2)
    assert model[1].calls.item() == 0


def test_probes_are_reproducible_from_the_generator_seed():
    model = small_cnn()
    x, y = cnn_data()

    def measure(seed: int) -> dict[str, float]:
        return run_probes(model, x, y, which=ALL, generator=gen(seed), batch_size=10, threshold=2.0,
                          directions=2, hessian_iterations=3)

    first = measure(0)
    assert set(first) == {"grad_noise", "flatness", "flatness_std", "hessian_top_eig"}
    assert measure(0) == first
    assert measure(1)["flatness"] != first["flatness"]


def test_run_probes_returns_only_the_asked_columns_and_rejects_unknown_names():
    model = small_cnn()
    x, y = cnn_data()
    only = run_probes(model, x, y, which={"flatness"}, generator=gen(), batch_size=10, threshold=2.0)
    assert set(only) == {"flatness", "flatness_std"}
    with pytest.raises(ValueError, match="valid: grad_noise, flatness, hessian_top_eig"):
        run_probes(model, x, y, which={"hessian"}, generator=gen(), batch_size=10)

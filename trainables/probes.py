"""Probes: what the loss landscape looks like around a model at one training step (the paper's §5, stochasticity).

Three measurements on UN-augmented training images, read top to bottom: gradient noise (how much the batch
gradients scatter), flatness (how far a random, filter-normalised step goes before the loss reaches a
threshold), and the Hessian's top eigenvalue (the sharpest curvature).

Conventions shared by every probe:
- The loss is evaluated in eval mode: BatchNorm normalises with its running statistics, so the loss is a
  deterministic function of the weights (a train-mode loss would depend on the batch's composition, and
  evaluating it would move the running statistics).
- The model is never changed. Parameters are never written: each probe differentiates or perturbs detached
  copies through `torch.func.functional_call`, and `torch.autograd.grad` never accumulates into `.grad`, so
  values, `.grad` and `requires_grad` stay as they were; every module's train/eval mode and every buffer are
  restored on the way out.
- All randomness (batch orders, directions, the starting vector) comes from the `generator` argument: the same
  generator state gives the same values. Draws are made on the generator's device.
- `loss_fn(output, y)` defaults to mean cross-entropy. A custom one (tests pass quadratics) must return the
  MEAN over the batch: the probes cut (x, y) into batches of at most PROBE_BATCH and weight each batch's loss
  by its size, which is exact only for a mean.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from augworth.search_spaces.cells import ProbeSettings

from .datasets import to_float

__all__ = ["PROBES", "filter_normalized_direction", "flatness", "grad_noise", "hessian_top_eig", "probe_cell",
           "run_probes"]

Tensor = torch.Tensor
LossFn = Callable[[Tensor, Tensor], Tensor]

PROBES = ("grad_noise", "flatness", "hessian_top_eig")  # the names run_probes accepts, in the order it runs them
PROBE_BATCH = 1024  # images per forward pass when a probe evaluates the loss on all of (x, y)
# Flatness doubles the step from here: directions are filter-normalised, so t = 1 moves every filter by its own
# norm, and distances to a loss of 1.0 are fractions of that. Starting small costs only a few doublings.
FLATNESS_FIRST_STEP = 2.0**-10
# Parameters of these layers are not filters: they scale and shift normalised activations (Li et al. 2018 give
# them no direction). Their 1-D parameters would be excluded anyway; LayerNorm over several dims has 2-D ones.
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d,
               nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def _cross_entropy(output: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(output.float(), y)


# ----- the model, untouched -------------------------------------------------------------------------

@contextlib.contextmanager
def _measuring(model: nn.Module) -> Iterator[None]:
    """The model in eval mode for the measurement; afterwards every module's own mode and every buffer as before.

    Each module's flag is saved, not just the root's: a model may hold a submodule in another mode (a frozen
    backbone in eval). Buffers are restored too, in case a custom module updates one even in eval mode.
    """
    modes = [(module, module.training) for module in model.modules()]
    buffers = [(buffer, buffer.clone()) for buffer in model.buffers()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)


def _detached(model: nn.Module) -> dict[str, Tensor]:
    """The parameters by name, detached: perturbing or differentiating these never touches the model's."""
    return {name: p.detach() for name, p in model.named_parameters()}


def _filter_weight_names(model: nn.Module) -> list[str]:
    """Names of the parameters that are banks of filters: >= 2-D and not a normalisation layer's.

    A filter is one output unit, the slice weight[i]: a conv's out-channel, a linear layer's row. Biases (1-D)
    and normalisation layers' parameters have no filter to be measured against.
    """
    name_of = {id(p): name for name, p in model.named_parameters()}  # deduplicated: a tied weight once
    names: list[str] = []
    for module in model.modules():
        if isinstance(module, NORM_LAYERS):
            continue
        for p in module.parameters(recurse=False):
            if p.ndim >= 2 and id(p) in name_of and name_of[id(p)] not in names:
                names.append(name_of[id(p)])
    return names


def _filter_sq_norms(w: Tensor) -> Tensor:
    """(out,): the squared norm of every filter w[i], in float64."""
    return w.detach().double().flatten(1).pow(2).sum(1)


def _randn_like(p: Tensor, generator: torch.Generator) -> Tensor:
    """Gaussian noise shaped like p, drawn on the generator's device, then in p's device and memory format."""
    noise = torch.randn(p.shape, generator=generator, device=generator.device, dtype=p.dtype)
    return torch.empty_like(p).copy_(noise)


def _mean_loss(model: nn.Module, params: dict[str, Tensor], x: Tensor, y: Tensor, loss_fn: LossFn) -> float:
    """The loss on all of (x, y) at `params`, batch by batch, weighted by batch size (no graph)."""
    total = torch.zeros((), dtype=torch.float64, device=y.device)
    with torch.no_grad():
        for xb, yb in zip(x.split(PROBE_BATCH), y.split(PROBE_BATCH), strict=True):
            total += loss_fn(functional_call(model, params, (xb,)), yb).double() * len(yb)
    return total.item() / len(y)  # one host sync per evaluation


# ----- gradient noise -------------------------------------------------------------------------------

def grad_noise(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int, generator: torch.Generator,
               loss_fn: LossFn | None = None) -> float:
    """Filter-normalised standard deviation of the batch gradients over one shuffled pass through (x, y).

    The batches are `torch.randperm(len(y), generator=generator)` cut into `batch_size` pieces, the incomplete
    last one dropped (a smaller batch's gradient is noisier and would inflate the spread); at least 2 batches
    are needed for a standard deviation, else ValueError. Per weight element the unbiased (ddof=1) standard
    deviation across batches of the batch-loss gradient; every filter's vector of standard deviations divided
    by that filter's weight norm (gradient noise relative to the filter's scale, which BatchNorm makes
    arbitrary); the result is the Euclidean norm of all of these: sqrt(sum_i ||std_i||^2 / ||w_i||^2).

    Only filter weights count (see _filter_weight_names): biases and normalisation layers' parameters have no
    filter to normalise by. Filters of norm zero are skipped (their relative noise is undefined). Means and
    spreads are accumulated in float64 with Welford's update, one batch at a time.
    Cost: len(y) // batch_size forward + backward passes on batches of batch_size (one epoch of (x, y)).
    """
    n_batches = len(y) // batch_size
    if n_batches < 2:
        raise ValueError(f"grad_noise needs at least 2 batches of {batch_size}; got {len(y)} samples")
    loss_fn = loss_fn or _cross_entropy
    names = _filter_weight_names(model)
    with _measuring(model):
        params = _detached(model)
        for name in names:
            params[name] = params[name].detach().requires_grad_()  # a fresh leaf sharing the weight's storage
        weights = [params[name] for name in names]
        mean = [torch.zeros_like(w, dtype=torch.float64) for w in weights]
        m2 = [torch.zeros_like(w, dtype=torch.float64) for w in weights]  # sum of squared deviations
        order = torch.randperm(len(y), generator=generator, device=generator.device).to(y.device)
        for k, idx in enumerate(order[: n_batches * batch_size].split(batch_size), start=1):
            loss = loss_fn(functional_call(model, params, (x[idx],)), y[idx])
            grads = torch.autograd.grad(loss, weights, allow_unused=True, materialize_grads=True)
            for mu, sq, g in zip(mean, m2, grads, strict=True):
                g = g.double()
                delta = g - mu
                mu += delta / k
                sq += delta * (g - mu)
        total = torch.zeros((), dtype=torch.float64, device=y.device)
        for w, sq in zip(weights, m2, strict=True):
            noise = (sq / (n_batches - 1)).flatten(1).sum(1)  # (out,): ||std_i||^2 of every filter
            norms = _filter_sq_norms(w)
            kept = norms > 0
            total += (noise[kept] / norms[kept]).sum()
    return math.sqrt(total.item())


# ----- flatness -------------------------------------------------------------------------------------

def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> dict[str, Tensor]:
    """A random direction in weight space, filter-normalised (Li et al. 2018, "Visualizing the Loss Landscape").

    One Gaussian draw per filter weight, in `model.named_parameters()` order, each filter d[i] then rescaled to
    the norm of the weight's filter w[i]. Parameters that are not filter weights (biases, normalisation layers'
    parameters) get no entry: their direction is zero. Filter normalisation makes distances comparable across
    models whose BatchNorm leaves the filters' scale arbitrary.
    """
    direction: dict[str, Tensor] = {}
    params = _detached(model)
    for name in _filter_weight_names(model):
        w = params[name]
        d = _randn_like(w, generator)
        scale = _filter_sq_norms(w).sqrt() / _filter_sq_norms(d).sqrt()  # (out,)
        direction[name] = d * scale.to(w.dtype).view(-1, *([1] * (w.ndim - 1)))
    return direction


def flatness(model: nn.Module, x: Tensor, y: Tensor, *, threshold: float = 1.0, directions: int = 1,
             generator: torch.Generator, max_distance: float = 100.0, tolerance: float = 1e-3,
             loss_fn: LossFn | None = None) -> tuple[float, float]:
    """(mean, std) over `directions` random filter-normalised directions d of the distance t to the loss threshold.

    For each d, the smallest t > 0 with loss(w + t d) >= `threshold`, an ABSOLUTE loss on (x, y) (the paper's
    1.0), found by doubling t from FLATNESS_FIRST_STEP and then bisecting until the bracket is within
    `tolerance` of its upper end, which is returned (a t where the loss has reached the threshold). If the loss
    is not monotone along d, bisection finds a crossing inside the first doubling bracket that reaches it.
    A loss already at the threshold gives 0; one that stays below it up to `max_distance` gives `max_distance`,
    a censored value (inf would break the parquet statistics). A NaN or inf loss counts as reaching it.
    Larger is flatter; t is in units of the filters' norms (t = 1 moves every filter by its own norm).

    std is the sample standard deviation (ddof=1) across directions, an estimate of the spread over random
    directions; 0.0 for a single direction. The loss is evaluated in eval mode, without gradients.
    Cost per direction: about log2(t / FLATNESS_FIRST_STEP) + log2(1 / tolerance) + 1 forward passes over
    (x, y) (~20 for t ~ 0.1..1 at the default tolerance; 18 when censored at 100), plus one pass at t = 0.
    """
    if directions < 1:
        raise ValueError(f"flatness needs at least one direction; got {directions}")
    loss_fn = loss_fn or _cross_entropy
    with _measuring(model):
        base = _detached(model)

        def reached(direction: dict[str, Tensor], t: float) -> bool:
            params = dict(base)
            for name, d in direction.items():
                params[name] = base[name] + t * d
            return not _mean_loss(model, params, x, y, loss_fn) < threshold  # NaN and inf reach it

        at_start = reached({}, 0.0)
        distances = []
        for _ in range(directions):
            direction = filter_normalized_direction(model, generator)  # drawn even when at_start: same stream
            distances.append(0.0 if at_start else _distance(direction, reached, max_distance, tolerance))
    mean = sum(distances) / len(distances)
    if len(distances) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((d - mean) ** 2 for d in distances) / (len(distances) - 1))


def _distance(direction: dict[str, Tensor], reached: Callable[[dict[str, Tensor], float], bool],
              max_distance: float, tolerance: float) -> float:
    """Doubling then bisection for the first t with reached(t), given not reached(0); max_distance if none."""
    lo, hi = 0.0, min(FLATNESS_FIRST_STEP, max_distance)
    while not reached(direction, hi):
        if hi >= max_distance:
            return max_distance
        lo, hi = hi, min(2 * hi, max_distance)
    while hi - lo > tolerance * hi:
        mid = (lo + hi) / 2
        if reached(direction, mid):
            hi = mid
        else:
            lo = mid
    return hi


# ----- Hessian --------------------------------------------------------------------------------------

def _hessian_vector_product(model: nn.Module, params: dict[str, Tensor], v: list[Tensor], x: Tensor, y: Tensor,
                            loss_fn: LossFn) -> list[Tensor]:
    """H v for the loss on all of (x, y), by double backward, batch by batch.

    The HVP is linear in the loss, so the sum of the batches' HVPs of loss_b * n_b / N is exactly the full one.
    """
    leaves = list(params.values())
    total = [torch.zeros_like(p) for p in leaves]
    for xb, yb in zip(x.split(PROBE_BATCH), y.split(PROBE_BATCH), strict=True):
        loss = loss_fn(functional_call(model, params, (xb,)), yb) * (len(yb) / len(y))
        grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True, materialize_grads=True)
        # a gradient that does not depend on the parameters (the loss is linear in them) has no graph: H is 0 there
        pairs = [(g, u) for g, u in zip(grads, v, strict=True) if g.requires_grad]
        if not pairs:
            continue
        products = torch.autograd.grad([g for g, _ in pairs], leaves, grad_outputs=[u for _, u in pairs],
                                       allow_unused=True, materialize_grads=True)
        for t, hv in zip(total, products, strict=True):
            t += hv
    return total


def _dot(a: list[Tensor], b: list[Tensor]) -> float:
    return sum((u.double() * w.double()).sum() for u, w in zip(a, b, strict=True)).item()  # type: ignore[union-attr]  # a sum of tensors


def hessian_top_eig(model: nn.Module, x: Tensor, y: Tensor, *, iterations: int = 20, generator: torch.Generator,
                    tolerance: float = 1e-4, loss_fn: LossFn | None = None) -> float:
    """The Hessian's eigenvalue of largest magnitude (signed), by power iteration on Hessian-vector products.

    The Hessian of the eval-mode loss on all of (x, y) with respect to EVERY parameter: filter weights, biases
    and BatchNorm's affine parameters alike (curvature along any of them is curvature of the loss; frozen ones
    count too). Starts from a random unit vector drawn from `generator`; each iteration computes H v, the
    Rayleigh quotient v.Hv, and v <- Hv / |Hv|; stops after `iterations` products, or as soon as the quotient
    changes by less than `tolerance` relative to itself, and returns the last quotient. Converges at the rate
    (|lambda_2| / |lambda_1|)^2 per iteration: a poor gap needs more iterations.
    Cost: at most `iterations` x (forward + backward keeping the graph + double backward) over (x, y).
    """
    loss_fn = loss_fn or _cross_entropy
    with _measuring(model):
        params = {name: p.requires_grad_() for name, p in _detached(model).items()}  # fresh leaves
        if not params:
            return 0.0
        v = [_randn_like(p, generator) for p in params.values()]
        norm = math.sqrt(_dot(v, v))
        v = [u / norm for u in v]
        quotient, previous = 0.0, None
        for _ in range(iterations):
            hv = _hessian_vector_product(model, params, v, x, y, loss_fn)
            quotient = _dot(v, hv)
            if previous is not None and abs(quotient - previous) <= tolerance * abs(quotient):
                break
            previous = quotient
            norm = math.sqrt(_dot(hv, hv))
            if norm == 0:  # v is in the Hessian's null space (or H = 0): its eigenvalue is 0
                break
            v = [h / norm for h in hv]
    return quotient


# ----- all at once ----------------------------------------------------------------------------------

def run_probes(model: nn.Module, x: Tensor, y: Tensor, *, which: set[str] | frozenset[str],
               generator: torch.Generator, batch_size: int, threshold: float = 1.0, directions: int = 1,
               hessian_iterations: int = 20, loss_fn: LossFn | None = None) -> dict[str, float]:
    """The probes named in `which` (any of PROBES) at one training step, as row columns.

    Keys: "grad_noise"; "flatness" and "flatness_std" for flatness; "hessian_top_eig". The probes run in
    PROBES' order whatever the set's, so one generator gives the same values every time.
    """
    unknown = set(which) - set(PROBES)
    if unknown:
        raise ValueError(f"unknown probes {sorted(unknown)}; valid: {', '.join(PROBES)}")
    measured: dict[str, float] = {}
    if "grad_noise" in which:
        measured["grad_noise"] = grad_noise(model, x, y, batch_size=batch_size, generator=generator,
                                            loss_fn=loss_fn)
    if "flatness" in which:
        measured["flatness"], measured["flatness_std"] = flatness(
            model, x, y, threshold=threshold, directions=directions, generator=generator, loss_fn=loss_fn)
    if "hessian_top_eig" in which:
        measured["hessian_top_eig"] = hessian_top_eig(model, x, y, iterations=hessian_iterations,
                                                      generator=generator, loss_fn=loss_fn)
    return measured


def probe_cell(model: nn.Module, train_x: Tensor, train_y: Tensor, settings: ProbeSettings,
               memory_format: torch.memory_format, seed: int) -> dict[str, float]:
    """The probes `settings` asks for, on the cell's first `samples` training images, un-augmented (the loop
    leaves them out of train_seconds, like evaluation)."""
    n = min(len(train_y), settings.samples)
    x = to_float(train_x[:n]).contiguous(memory_format=memory_format)
    which = {name for name in ("grad_noise", "flatness") if getattr(settings, name)}
    if settings.hessian:
        which.add("hessian_top_eig")
    generator = torch.Generator(device=x.device).manual_seed(seed)
    batch_size = max(1, min(settings.batch_size or 128, n // 2))  # gradient noise needs 2 batches
    return run_probes(model, x, train_y[:n], which=which, generator=generator, batch_size=batch_size,
                      threshold=settings.threshold, directions=settings.directions,
                      hessian_iterations=settings.hessian_iterations)

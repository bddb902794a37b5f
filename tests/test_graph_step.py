"""The CUDA-graph step (`execution.cuda_graph`, trainables/graph_step.py): on the CPU, what it rests on and that
CPU cells do not change; on a GPU, that the graph trains the cell the eager step trains."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from factories import make_cell

from augworth.trainables.checkpoint import Checkpointer
from augworth.trainables.datasets import load_dataset
from augworth.trainables.graph_step import eager_optimizer_state, graph_optimizer
from augworth.trainables.train import lr_factor, train_cell

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def tiny_cell(digits, **over):
    base = make_cell(dataset_fingerprint=digits.fingerprint, model="small_cnn", width=4, steps=12,
                     batch_size=16, eval_every=6, warmup_steps=2, data_size=60, augmentation="trivialaugment",
                     strength=None)
    return dataclasses.replace(base, **over)


def rows(result):
    return [(e.step, e.eval_set, e.accuracy, e.loss) for e in result.evaluations]


def test_a_cpu_cell_asked_for_a_graph_trains_exactly_as_without(digits):
    cell = tiny_cell(digits)
    assert rows(train_cell(cell, digits, ["test"], cuda_graph=True)) == rows(train_cell(cell, digits, ["test"]))


def test_the_schedule_fills_a_tensor_learning_rate_in_place_so_a_captured_step_sees_every_value():
    # what the graph rests on: LambdaLR, made while the rate is a float, writes into the tensor it finds later
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, steps=10, warmup_steps=2))
    graph_optimizer(optimizer, torch.device("cpu"))
    lr = optimizer.param_groups[0]["lr"]
    for step in range(1, 10):
        weight.grad = torch.ones(3)
        optimizer.step()  # fused SGD, reading the tensor
        schedule.step()
        assert optimizer.param_groups[0]["lr"] is lr  # the same memory, as a replayed graph reads it
        assert lr.item() == pytest.approx(0.1 * lr_factor(step, steps=10, warmup_steps=2))
    assert all(isinstance(b, float) for b in schedule.base_lrs)


def test_a_graph_optimizers_checkpoint_is_the_eager_one(digits):
    eager = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.05, momentum=0.9)
    graphed = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.05, momentum=0.9)
    graph_optimizer(graphed, torch.device("cpu"))
    assert isinstance(graphed.param_groups[0]["lr"], torch.Tensor) and graphed.param_groups[0]["fused"]
    assert eager_optimizer_state(eager) == eager.state_dict()
    state, lr = eager_optimizer_state(graphed), eager.state_dict()["param_groups"][0]["lr"]
    assert state["param_groups"][0]["lr"] == pytest.approx(lr, rel=1e-7)  # a float32 on the device
    state["param_groups"][0]["lr"] = lr
    assert state == eager.state_dict()


def test_the_spec_key_reaches_the_cells_context():
    from augworth.search_spaces import parse_spec  # here: the GPU machine's Python has torch, not pydantic
    from augworth.trainables.trainable import CellContext

    text = ("name: g\ndataset: {name: digits}\nmodel: {name: small_cnn}\naugmentations: [{policy: none}]\n"
            "data_sizes: [40]\nseeds: [0]\nexecution: {cuda_graph: true}\n")
    spec = parse_spec(text)
    assert spec.execution.cuda_graph and not parse_spec(text.replace("true", "false")).execution.cuda_graph
    assert CellContext.from_spec(spec, checkpoint_dir=None, code_revision=None).cuda_graph


@GPU
def test_on_a_gpu_the_graph_trains_the_cell_the_eager_step_trains(digits):
    cell = tiny_cell(digits, model="resnet18", width=8, steps=60, eval_every=30, batch_size=32, data_size=300)
    eager = train_cell(cell, digits, ["test"], device="cuda", deterministic=True)
    graphed = train_cell(cell, digits, ["test"], device="cuda", deterministic=True, cuda_graph=True)
    again = train_cell(cell, digits, ["test"], device="cuda", deterministic=True, cuda_graph=True)
    assert rows(graphed) == rows(again)  # deterministic mode reproduces a graphed cell
    # the eager step's SGD is torch's foreach one, the graph's the fused one: the same update, rounded otherwise
    for e, g in zip(eager.evaluations, graphed.evaluations, strict=True):
        assert e.step == g.step and abs(e.accuracy - g.accuracy) <= 0.1 and g.loss == pytest.approx(e.loss, rel=0.25)


@GPU
def test_on_a_gpu_a_graphed_cell_resumed_from_its_checkpoint_ends_as_an_uninterrupted_one(digits, tmp_path):
    cell = tiny_cell(digits, model="resnet18", width=8, steps=48, eval_every=24, batch_size=32, data_size=300)
    whole = train_cell(cell, digits, ["test"], device="cuda", deterministic=True, cuda_graph=True)
    checkpoint = Checkpointer(str(tmp_path), cell.cell_key, every=16)

    def stop_after_first_save(step):
        if step == 33:
            raise KeyboardInterrupt  # killed after the checkpoint at step 32

    with pytest.raises(KeyboardInterrupt):
        train_cell(cell, digits, ["test"], device="cuda", deterministic=True, cuda_graph=True,
                   checkpoint=checkpoint, on_step=stop_after_first_save)
    resumed = train_cell(cell, digits, ["test"], device="cuda", deterministic=True, cuda_graph=True,
                         checkpoint=checkpoint)
    assert rows(resumed) == rows(whole)

"""What a policy covers, derived from the ops it applies (`OP_COVERS`), never declared by hand: every policy x
corruption pair against the derivation, and every kernel policy's declared ops against what its sampler draws."""

from __future__ import annotations

import pytest
import torch
from factories import gen

from augworth.analysis.questions import shift_kind
from augworth.orchestrator.cli_questions import policy_covers
from augworth.trainables.augmentations import AUGMENTATIONS, KERNEL_OPS, OP_COVERS, TA_OPS, covers
from augworth.trainables.augmentations.auto_augment import (
    AA_POLICY_OPS,
    AUGMIX_OPS,
    RA_OPS,
    draw_augmix,
    draw_autoaugment,
    draw_randaugment,
)
from augworth.trainables.augmentations.trivialaugment import draw_trivialaugment
from augworth.trainables.datasets.builtin import CORRUPTIONS
from augworth.trainables.datasets.cifar import CIFAR10C_CORRUPTIONS, CIFAR10C_EXTRA

ALL_CORRUPTIONS = sorted({*CORRUPTIONS, *CIFAR10C_CORRUPTIONS, *CIFAR10C_EXTRA})


def ops_of(policy: str) -> tuple[str, ...]:
    return tuple(AUGMENTATIONS.get(policy).meta.get("ops", ()))


@pytest.mark.parametrize("policy", AUGMENTATIONS.names())
def test_every_policy_covers_a_corruption_exactly_where_one_of_its_ops_makes_it(policy):
    ops = ops_of(policy)
    assert all(op in OP_COVERS for op in ops), ops
    for corruption in ALL_CORRUPTIONS:
        made = any(corruption in OP_COVERS[op] for op in ops)
        assert (corruption in covers(policy)) == made, (policy, corruption)


def test_each_op_names_corruptions_that_an_eval_set_holds_and_every_kernel_op_is_known():
    assert {c for names in OP_COVERS.values() for c in names} <= set(ALL_CORRUPTIONS)
    assert set(KERNEL_OPS) <= set(OP_COVERS)


def names(kernel_ids: torch.Tensor) -> set[str]:
    return {KERNEL_OPS[i] for i in kernel_ids.flatten().tolist()}


def test_each_kernel_policy_declares_exactly_the_ops_its_sampler_draws():
    batch = 20_000
    drawn = {
        "trivialaugment": names(draw_trivialaugment(batch, 32, 32, gen(0))[0]),
        "randaugment": names(draw_randaugment(batch, 32, 32, gen(1))[0]),
        "autoaugment": names(draw_autoaugment(batch, 32, 32, gen(2))[2]) - {"Identity"},  # an op not applied
        "augmix": names(draw_augmix(batch, 32, 32, gen(3))[1]) - {"Identity"},  # a step past its chain's depth
    }
    assert drawn == {"trivialaugment": set(TA_OPS), "randaugment": set(RA_OPS), "autoaugment": set(AA_POLICY_OPS),
                     "augmix": set(AUGMIX_OPS)}
    for policy in drawn:
        assert set(ops_of(policy)) == drawn[policy]
    for composite, parts in {"trivialaugment_crop_flip": ("trivialaugment", "crop", "flip"),
                             "randaugment_crop_flip": ("randaugment", "crop", "flip"),
                             "crop_flip": ("crop", "flip"), "cutout_crop_flip": ("cutout", "crop", "flip")}.items():
        assert set(ops_of(composite)) == {op for part in parts for op in ops_of(part)}


def test_augmix_and_trivialaugment_cover_what_their_colour_ops_make():
    # AugMix (all_ops, as torchvision's) changes brightness, colour, contrast and sharpness; TrivialAugment's Color
    # op changes the saturation and its Sharpness blurs: none of those shifts is held out for them
    for policy in ("augmix", "trivialaugment"):
        assert {"brightness", "contrast", "saturate", "blur", "gaussian_blur"} <= set(covers(policy))
    assert shift_kind(policy_covers(["augmix"])["augmix"], ["contrast"])[0] == "covered"
    assert shift_kind(policy_covers(["augmix"])["augmix"], ["noise"])[0] == "held-out"
    assert shift_kind(policy_covers(["crop"])["crop"], ["shift", "blur"]) == ("partly covered", "shift")

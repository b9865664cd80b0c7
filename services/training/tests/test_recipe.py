"""The recipe's pieces: the loss, crops, replay mixing, learning on a phantom, and divergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atlasloop.imaging.preprocess import labels_to_model, preprocess_image
from atlasloop.imaging.synth.phantom import render
from atlasloop.imaging.synth.sites import SITES
from atlasloop.models.architectures import build, config
from atlasloop.training.learning import Diverged, Example, Sampler, crop, dice_bce_loss, train_epochs
from atlasloop.training.recipe import Recipe


def _example(seed: int, name: str = "c") -> Example:
    ct, labels = render(np.random.default_rng([seed, 0]), SITES["A"], 3.0)
    pre = preprocess_image(ct)
    return Example(name, "v1", pre.image, labels_to_model(labels, pre.grid))


def test_loss_is_lower_for_the_right_answer_than_for_a_wrong_one():
    labels = torch.zeros(1, 8, 8, 8, dtype=torch.uint8)
    labels[0, 2:6, 2:6, 2:6] = 5
    right = torch.full((1, 10, 8, 8, 8), -8.0)
    right[:, 0] = 8.0
    right[0, 0, 2:6, 2:6, 2:6], right[0, 5, 2:6, 2:6, 2:6] = -8.0, 8.0
    wrong = right.clone()
    wrong[:, [5, 6]] = wrong[:, [6, 5]]  # pancreas where the liver is
    assert dice_bce_loss(right, labels) < 0.01 < 1.0 < dice_bce_loss(wrong, labels)


def test_crops_have_the_crop_size_and_pad_small_volumes():
    example = Example("c", "v", np.ones((10, 40, 70), np.float32), np.full((10, 40, 70), 3, np.uint8))
    image, labels, verified = crop(example, np.array([5, 39, 0]), 32)
    assert image.shape == labels.shape == verified.shape == (32, 32, 32) and verified.all()
    assert image[:10].all() and not image[10:].any() and (labels[:10] == 3).all()


def test_replay_fraction_mixes_revised_and_replay_examples():
    revised = [Example("new", "v", np.zeros((8, 8, 8), np.float32), np.zeros((8, 8, 8), np.uint8))]
    replay = [Example("old", "v", np.ones((8, 8, 8), np.float32), np.zeros((8, 8, 8), np.uint8))]
    sampler = Sampler(revised, replay, Recipe(replay_fraction=0.25, batch_size=1, crop=16, intensity_jitter=0), seed=3)
    picks = [sampler._example().case_id for _ in range(2000)]
    assert 0.2 < picks.count("old") / len(picks) < 0.3
    assert {Sampler(revised, [], Recipe(), seed=1)._example().case_id for _ in range(20)} == {"new"}


def test_training_on_a_phantom_lowers_the_loss():
    torch.manual_seed(0)
    module = build(config("unet", "tiny"))
    recipe = Recipe(epochs=3, steps_per_epoch=6, batch_size=2, crop=48, learning_rate=3e-3)
    losses = train_epochs(module, Sampler([_example(1)], [], recipe, seed=0), recipe)
    assert len(losses) == 3 and losses[-1] < losses[0] * 0.9


def test_a_diverging_loss_stops_training():
    module = build(config("unet", "tiny"))
    for parameter in module.parameters():
        parameter.data.fill_(float("nan"))
    recipe = Recipe(epochs=2, steps_per_epoch=2, batch_size=1, crop=32)
    with pytest.raises(Diverged, match="loss is nan at epoch 1"):
        train_epochs(module, Sampler([_example(2)], [], recipe, seed=0), recipe)


def test_the_trained_network_is_saved_with_or_without_the_parallel_wrapper():
    """One worker trains the bare network, several a DistributedDataParallel around it; the saved
    state dict is the network's either way (keys without a 'module.' prefix)."""
    from atlasloop.models.architectures import build, config
    from atlasloop.training.distributed import unwrapped

    network = build(config("unet", "tiny"))
    assert unwrapped(network) is network
    wrapped = torch.nn.DataParallel(network)  # the same .module wrapping as DDP, without a process group
    assert unwrapped(wrapped) is network
    assert not any(k.startswith("module.") for k in unwrapped(wrapped).state_dict())


def test_the_loss_ignores_what_no_person_verified():
    """Outside the verified voxels the label is the ensemble's own: any prediction costs nothing there."""
    labels = torch.zeros((1, 8, 8, 8), dtype=torch.long)
    labels[0, 2:6, 2:6, 2:6] = 5
    right = torch.full((1, 10, 8, 8, 8), -8.0)
    right[:, 0] = 8.0
    right[0, 0, 2:6, 2:6, 2:6], right[0, 5, 2:6, 2:6, 2:6] = -8.0, 8.0
    wrong_outside = right.clone()
    wrong_outside[0, :, :, :, 6:] = -right[0, :, :, :, 6:]  # everything wrong in two unverified slices
    verified = torch.ones((1, 8, 8, 8))
    verified[0, :, :, 6:] = 0
    assert dice_bce_loss(wrong_outside, labels, verified) < 0.01 < 1.0 < dice_bce_loss(wrong_outside, labels)


def test_masked_crops_are_drawn_where_a_person_looked():
    labels = np.zeros((40, 40, 40), np.uint8)
    verified = np.zeros((40, 40, 40), bool)
    verified[30:34, 30:34, 30:34] = True
    example = Example("c", "v", np.zeros((40, 40, 40), np.float32), labels, verified)
    sampler = Sampler([example], [], Recipe(batch_size=4, crop=16, intensity_jitter=0), seed=0)
    for _ in range(5):
        _images, _labels, mask = sampler.batch()
        assert mask is not None and mask.shape == (4, 16, 16, 16) and mask.flatten(1).sum(1).min() > 0
    whole = Sampler([example], [], Recipe(batch_size=4, crop=16, partial_labels="whole"), seed=0)
    assert whole.batch()[2] is None


def test_each_architecture_trains_at_its_own_learning_rate():
    recipe = Recipe(learning_rate=3e-3)
    assert recipe.learning_rate_of("segresnet") == pytest.approx(9e-3)  # the default factor (docs/adr/0011)
    assert recipe.learning_rate_of("unet") == 3e-3
    assert Recipe(learning_rate=0.5).learning_rate_of("segresnet") == 1.0  # never above the recipe's bound
    custom = Recipe(learning_rate=1e-3, learning_rate_scale={"unet": 0.5})
    assert custom.learning_rate_of("unet") == 5e-4 and custom.learning_rate_of("segresnet") == 1e-3


@pytest.mark.parametrize(
    ("scales", "message"),
    [({"transformer9000": 2.0}, "unknown architectures"), ({"unet": 0.0}, r"in \(0, 100\]"), ({"unet": 1e3}, "100")],
)
def test_learning_rate_scales_are_checked(scales, message):
    with pytest.raises(ValueError, match=message):
        Recipe(learning_rate_scale=scales)


def test_the_member_learning_rate_is_the_one_the_optimiser_uses():
    """A module whose step is measured: the same crops at twice the rate move its weights twice as far."""
    moved = []
    for rate in (1e-4, 2e-4):
        torch.manual_seed(0)
        module = build(config("unet", "tiny"))
        before = [p.detach().clone() for p in module.parameters()]
        recipe = Recipe(epochs=1, steps_per_epoch=1, batch_size=1, crop=32, learning_rate=5e-5)
        train_epochs(module, Sampler([_example(1)], [], recipe, seed=0), recipe, learning_rate=rate)
        moved.append(sum(float((p.detach() - b).abs().sum()) for p, b in zip(module.parameters(), before, strict=True)))
    assert moved[1] / moved[0] == pytest.approx(2.0, rel=0.05)

"""Batch augmentation: crops against explicit padding and slicing, exact flips, labels
kept aligned through the job's batches, and runs that repeat under a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchharness import BenchError
from benchharness.augment import (
    Augmentation,
    crop,
    draw_crop_offsets,
    draw_flips,
    flip,
    from_data_section,
)


def _images(n=6, c=3, h=7, w=5, seed=0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("mode", "np_mode"), [("zeros", "constant"), ("reflect", "reflect")])
def test_crop_matches_explicit_padding_and_slicing(mode, np_mode):
    x = _images()
    p = 3
    offsets = draw_crop_offsets(len(x), p, torch.Generator().manual_seed(1))
    out = crop(x, offsets, p, mode)
    for i in range(len(x)):
        padded = np.pad(x[i].numpy(), ((0, 0), (p, p), (p, p)), mode=np_mode)
        r, c = offsets[i].tolist()
        expected = padded[:, r : r + x.shape[2], c : c + x.shape[3]]
        np.testing.assert_array_equal(out[i].numpy(), expected)


def test_crop_offsets_cover_the_padded_range_and_centre_is_identity():
    offsets = draw_crop_offsets(5000, 4, torch.Generator().manual_seed(0))
    assert offsets.dtype == torch.int64 and offsets.shape == (5000, 2)
    assert set(offsets.flatten().tolist()) == set(range(9))
    x = _images()
    centre = torch.full((len(x), 2), 4)
    assert torch.equal(crop(x, centre, 4), x)
    # offset (0, 0): the top-left corner of the padded image, a shift down and right by 4
    shifted = crop(x, torch.zeros(len(x), 2, dtype=torch.int64), 4)
    assert torch.equal(shifted[:, :, 4:, 4:], x[:, :, :-4, :-4])
    assert shifted[:, :, :4].abs().sum() == 0 and shifted[:, :, :, :4].abs().sum() == 0


def test_flip_is_exactly_a_horizontal_flip_of_the_chosen_samples():
    x = _images()
    which = torch.tensor([True, False, True, True, False, False])
    out = flip(x, which)
    for i in range(len(x)):
        expected = x[i].numpy()[:, :, ::-1] if which[i] else x[i].numpy()
        np.testing.assert_array_equal(out[i].numpy(), expected)
    draws = draw_flips(10000, torch.Generator().manual_seed(0))
    assert abs(draws.float().mean().item() - 0.5) < 0.02


def test_augmentation_repeats_under_a_seed_and_differs_across_seeds():
    aug = Augmentation(crop=True, flip=True, padding=4)
    x = _images(n=32, h=32, w=32)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    c = aug(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and not torch.equal(a, x)


def test_augmentation_is_crop_then_flip_with_the_generator_draws():
    aug = Augmentation(crop=True, flip=True, padding=2)
    x = _images(n=8)
    g = torch.Generator().manual_seed(9)
    offsets = draw_crop_offsets(8, 2, g)
    flips = draw_flips(8, g)
    expected = flip(crop(x, offsets, 2), flips)
    assert torch.equal(aug(x, torch.Generator().manual_seed(9)), expected)


def test_labels_stay_aligned():
    """Image i is filled with the value label_i + 1: a crop pads with zeros and a flip
    mirrors, so every pixel is 0 or label + 1, and the maximum is label + 1."""
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(0))
    x = (y.float() + 1).view(-1, 1, 1, 1).expand(-1, 3, 12, 12).clone()
    aug = Augmentation(crop=True, flip=True, padding=4)
    out = aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(out.amax(dim=(1, 2, 3)), y.float() + 1)
    assert bool(((out == 0) | (out == (y.float() + 1).view(-1, 1, 1, 1))).all())


def test_from_data_section():
    assert from_data_section(None) is None
    assert from_data_section({"augment": []}) is None
    aug = from_data_section({"augment": ["flip"], "crop_padding": 2})
    assert aug == Augmentation(crop=False, flip=True, padding=2)
    aug = from_data_section({"augment": ["crop", "flip"], "crop_padding_mode": "reflect"})
    assert aug == Augmentation(crop=True, flip=True, padding=4, padding_mode="reflect")


def test_non_image_batches_and_too_much_reflection_are_one_line_errors():
    with pytest.raises(
        BenchError, match=r"needs image batches \(N, C, H, W\), got shape \(4, 10\)"
    ):
        Augmentation(flip=True)(torch.zeros(4, 10), torch.Generator())
    with pytest.raises(BenchError, match="crop_padding = 5 is too large to reflect 5×5 images"):
        Augmentation(crop=True, padding=5, padding_mode="reflect")(
            torch.zeros(2, 1, 5, 5), torch.Generator()
        )
